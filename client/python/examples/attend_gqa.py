#!/usr/bin/env python3
"""Attend with grouped-query head sharing (8 query heads, 2 KV heads) and a
causal mask, checked against a NumPy reference.

    python client/python/examples/attend_gqa.py --target 127.0.0.1:50051
"""
import argparse
import sys

import numpy as np

from attention_client import AttentionClient, AttentionError


def reference(q, k, v, causal):
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    if causal:
        lq, lk = s.shape[-2:]
        s = np.where(np.tril(np.ones((lq, lk), bool), lk - lq), s, -1e9)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="127.0.0.1:50051")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    B, Hq, Hkv, Lq, Lk, Dk, Dv = 2, 8, 2, 5, 7, 32, 16
    q = rng.standard_normal((B, Hq, Lq, Dk), dtype=np.float32)
    k = rng.standard_normal((B, Hkv, Lk, Dk), dtype=np.float32)
    v = rng.standard_normal((B, Hkv, Lk, Dv), dtype=np.float32)

    with AttentionClient(args.target, timeout=30) as client:
        try:
            r = client.attend(q, k, v, causal=True)
            half = client.attend(q, k, v, causal=True, dtype=np.float16)
            bf = client.attend(q, k, v, causal=True, dtype="bfloat16")
        except AttentionError as e:
            sys.exit("attend failed: %s" % e)
    ref = reference(q, k, v, causal=True)
    print("variant %s, output %s %s, compute %d us, %.0f FLOPs"
          % (r.variant, r.output.dtype, r.output.shape, r.timing.compute_us, r.timing.flops))
    print("max |fp32 - reference| = %.2e" % np.abs(r.output - ref).max())
    print("max |fp16 - reference| = %.2e (output %s)"
          % (np.abs(half.output.astype(np.float32) - ref).max(), half.output.dtype))
    print("max |bf16 - reference| = %.2e" % np.abs(bf.output - ref).max())


if __name__ == "__main__":
    main()
