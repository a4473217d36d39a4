#!/usr/bin/env python3
"""Load a multi-head attention layer from a PyTorch-style state_dict (NumPy
arrays named as nn.Linear parameters), run a causal Forward, and check it
against a NumPy reference of the layer.

    python client/python/examples/forward_mha.py --target 127.0.0.1:50051

With PyTorch, pass {k: t.numpy() for k, t in module.state_dict().items()}.
"""
import argparse
import sys

import numpy as np

from attention_client import AttentionClient, AttentionError


def linear_init(rng, out_features, in_features):
    bound = 1.0 / np.sqrt(in_features)  # nn.Linear's default init range
    w = rng.uniform(-bound, bound, (out_features, in_features)).astype(np.float32)
    b = rng.uniform(-bound, bound, (out_features,)).astype(np.float32)
    return w, b


def mha_reference(sd, x, heads, causal):
    B, L, d = x.shape
    dh = d // heads

    def lin(name, t):
        return t @ sd[name + ".weight"].T + sd[name + ".bias"]

    def split(t):
        return t.reshape(B, L, heads, dh).transpose(0, 2, 1, 3)

    q, k, v = split(lin("W_q", x)), split(lin("W_k", x)), split(lin("W_v", x))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
    if causal:
        s = np.where(np.tril(np.ones((L, L), bool)), s, -1e9)
    p = np.exp(s - s.max(-1, keepdims=True))
    o = (p / p.sum(-1, keepdims=True)) @ v
    return lin("W_o", o.transpose(0, 2, 1, 3).reshape(B, L, d))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="127.0.0.1:50051")
    ap.add_argument("--name", default="example-mha")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    d_model, heads = 64, 4
    state_dict = {}
    for name in ("W_q", "W_k", "W_v", "W_o"):
        state_dict[name + ".weight"], state_dict[name + ".bias"] = linear_init(rng, d_model, d_model)
    x = rng.standard_normal((2, 10, d_model), dtype=np.float32)

    with AttentionClient(args.target, timeout=30) as client:
        try:
            info = client.load_module(args.name, {"d_model": d_model, "mha": {"num_heads": heads}},
                                      state_dict=state_dict, replace=True)
            print("loaded %s: %s, %d parameters, %d KV bytes/token"
                  % (info.name, info.config, info.parameter_count, info.kv_cache_bytes_per_token))
            r = client.forward(args.name, x, causal=True)
            client.unload_module(args.name)
        except AttentionError as e:
            sys.exit("failed: %s" % e)
    ref = mha_reference(state_dict, x, heads, causal=True)
    print("output %s, compute %d us; max |server - reference| = %.2e"
          % (r.output.shape, r.timing.compute_us, np.abs(r.output - ref).max()))


if __name__ == "__main__":
    main()
