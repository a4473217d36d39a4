#!/usr/bin/env python3
"""Stream token chunks through a module's KV cache with Decode, and check the
outputs against one causal Forward over all the tokens.

    python client/python/examples/decode_stream.py --target 127.0.0.1:50051
"""
import argparse
import sys

import numpy as np

from attention_client import AttentionClient, AttentionError


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="127.0.0.1:50051")
    ap.add_argument("--module", default="demo-gqa", help="a loaded module (demo-* by default)")
    ap.add_argument("--chunks", default="5,1,1,3,1", help="tokens per chunk")
    args = ap.parse_args()

    sizes = [int(s) for s in args.chunks.split(",")]
    rng = np.random.default_rng(0)
    with AttentionClient(args.target, timeout=60) as client:
        try:
            modules = {m.name: m for m in client.list_modules()}
            if args.module not in modules:
                sys.exit("no module %r; loaded: %s" % (args.module, ", ".join(modules)))
            d_model = modules[args.module].config["d_model"]
            tokens = rng.standard_normal((1, sum(sizes), d_model), dtype=np.float32)
            chunks = np.split(tokens, np.cumsum(sizes)[:-1], axis=1)
            outputs = []
            for step in client.decode(args.module, chunks):
                print("chunk of %d -> cached_tokens %d, kv_cache_bytes %d, compute %d us"
                      % (step.output.shape[1], step.cached_tokens, step.kv_cache_bytes,
                         step.timing.compute_us))
                outputs.append(step.output)
            full = client.forward(args.module, tokens, causal=True).output
        except AttentionError as e:
            sys.exit("failed: %s" % e)
    print("max |decode - causal forward| = %.2e"
          % np.abs(np.concatenate(outputs, axis=1) - full).max())


if __name__ == "__main__":
    main()
