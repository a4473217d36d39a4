#!/usr/bin/env python3
"""attention_bench against PyTorch's scaled_dot_product_attention, same workloads.

For each thread count, runs `attention_bench --threads N` (our kernel, and the
oneDNN GEMM rate of the same run) and times torch.nn.functional.
scaled_dot_product_attention on the same shapes with torch.set_num_threads(N),
then prints a markdown table: GFLOP/s of each (causal pairs counted once, as
attention_bench counts them), ours ÷ PyTorch, and whether the issue's bar is
met (≥ 1×, MLA decode ≥ 20×).

  bench/compare_pytorch.py [--bench build/bin/attention_bench] [--threads 2,16]
                           [--min_time 1] [--json out.json]

On the device machine (no installs there): carry build/bin/attention_bench
and the shared libraries it needs (bench/carry_libs.sh collects them), set
LD_LIBRARY_PATH, and run this script with the machine's own Python + torch.

Shapes ([B, H, L, D], float32, random normal):
  mha_b4_h16_l512_d64                     q, k, v [4, 16, 512, 64]
  gqa_prefill_b1_h32kv8_l2048_d128_causal q [1, 32, 2048, 128], k, v [1, 8, 2048, 128], causal
  gqa_decode_b8_h32kv8_lk4096_d128        q [8, 32, 1, 128], k, v [8, 8, 4096, 128]
  mqa_decode_b8_h32kv1_lk4096_d128        q [8, 32, 1, 128], k, v [8, 1, 4096, 128]
  mla_decode_b8_h16_lk4096_dk576_dv512    q [8, 16, 1, 576], k [8, 1, 4096, 576], v = k[..., :512]
GQA/MQA use enable_gqa=True where this torch has it (2.5+); older versions
get K/V repeated per query head before timing (torch then reads more bytes:
noted in the output). torch < 2.0 has no SDPA at all: its math path
(softmax(Q·Kᵀ·scale)·V, what SDPA falls back to) is timed instead, and noted.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

WORKLOADS = [
    # name, b, hq, hkv, lq, lk, dk, dv, causal, value_in_key
    ("mha_b4_h16_l512_d64", 4, 16, 16, 512, 512, 64, 64, False, False),
    ("gqa_prefill_b1_h32kv8_l2048_d128_causal", 1, 32, 8, 2048, 2048, 128, 128, True, False),
    ("gqa_decode_b8_h32kv8_lk4096_d128", 8, 32, 8, 1, 4096, 128, 128, False, False),
    ("mqa_decode_b8_h32kv1_lk4096_d128", 8, 32, 1, 1, 4096, 128, 128, False, False),
    ("mla_decode_b8_h16_lk4096_dk576_dv512", 8, 16, 1, 1, 4096, 576, 512, False, True),
]


def flops(b, hq, lq, lk, dk, dv, causal):
    """2·B·Hq·(visible pairs)·(Dk + Dv), as core/sdpa.h's SdpaFlops."""
    if causal:
        pairs = sum(min(max(i + lk - lq + 1, 0), lk) for i in range(lq))
    else:
        pairs = lq * lk
    return 2.0 * b * hq * pairs * (dk + dv)


def run_ours(bench, threads, min_time):
    out = subprocess.run([bench, "--json", "--threads", str(threads), "--min_time", str(min_time),
                          "--filter", "_b", "--dtype", "f32"],
                         check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    gemm = report["probes"]["gemm_f32_gflops"]
    rows = {w["name"]: {"ms": w["ms"], "gflops": w["gflops"]} for w in report["workloads"]
            if w["dtype"] == "f32"}
    return gemm, rows


def time_torch(torch, fn, min_time):
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_torch(torch, threads, min_time):
    import torch.nn.functional as F
    import inspect
    torch.set_num_threads(threads)
    sdpa = getattr(F, "scaled_dot_product_attention", None)
    fused = sdpa is not None
    if not fused:
        # torch < 2.0 (Debian bookworm ships 1.13) has no SDPA: its math
        # path, what SDPA itself falls back to, written out.
        def sdpa(q, k, v, is_causal=False):
            s = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
            if is_causal:
                lq, lk = s.shape[-2], s.shape[-1]
                s.masked_fill_(torch.ones(lq, lk, dtype=torch.bool).triu(lk - lq + 1),
                               float("-inf"))
            return torch.softmax(s, dim=-1) @ v
    gqa_native = fused and "enable_gqa" in inspect.signature(sdpa).parameters
    gen = torch.Generator().manual_seed(1)
    rows = {}
    for name, b, hq, hkv, lq, lk, dk, dv, causal, value_in_key in WORKLOADS:
        q = torch.randn(b, hq, lq, dk, generator=gen)
        k = torch.randn(b, hkv, lk, dk, generator=gen)
        v = k[..., :dv] if value_in_key else torch.randn(b, hkv, lk, dv, generator=gen)
        kwargs = {"is_causal": causal}
        note = ""
        if hkv != hq:
            if gqa_native:
                kwargs["enable_gqa"] = True
            else:
                k = k.repeat_interleave(hq // hkv, dim=1)
                v = v.repeat_interleave(hq // hkv, dim=1)
                note = "K/V repeated per head (torch < 2.5)"
        if not fused:
            note = "; ".join(x for x in ["math path (torch < 2.0)", note] if x)
        with torch.inference_mode():
            t = time_torch(torch, lambda: sdpa(q, k, v, **kwargs), min_time)
        rows[name] = {"ms": t * 1e3, "gflops": flops(b, hq, lq, lk, dk, dv, causal) / t / 1e9,
                      "note": note}
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", default="build/bin/attention_bench")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--min_time", type=float, default=1.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("compare_pytorch.py: needs torch (Debian: python3-torch; "
                 "scripts/install-deps.sh --golden installs it)")
    report = {"torch": torch.__version__, "runs": []}
    all_met = True
    for threads in [int(t) for t in args.threads.split(",")]:
        gemm, ours = run_ours(args.bench, threads, args.min_time)
        theirs = run_torch(torch, threads, args.min_time)
        print(f"\n## {threads} threads (torch {torch.__version__}, oneDNN GEMM {gemm:.1f} GFLOP/s "
              f"in the same run)\n")
        print("| workload | ours GFLOP/s | PyTorch GFLOP/s | ours ÷ PyTorch | bar | met |")
        print("|---|---:|---:|---:|---:|---|")
        run = {"threads": threads, "gemm_gflops": gemm, "workloads": []}
        for w in WORKLOADS:
            name = w[0]
            if name not in ours:
                sys.exit(f"compare_pytorch.py: {name} missing from attention_bench's output")
            ratio = ours[name]["gflops"] / theirs[name]["gflops"]
            bar = 20.0 if name.startswith("mla") else 1.0
            met = ratio >= bar
            all_met &= met
            note = f" ({theirs[name]['note']})" if theirs[name]["note"] else ""
            print(f"| {name} | {ours[name]['gflops']:.1f} | {theirs[name]['gflops']:.1f}{note} | "
                  f"{ratio:.2f}× | ≥ {bar:g}× | {'yes' if met else 'NO'} |")
            run["workloads"].append({"name": name, "ours": ours[name], "torch": theirs[name],
                                     "ratio": ratio, "bar": bar, "met": met})
        report["runs"].append(run)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
