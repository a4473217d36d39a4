#!/usr/bin/env python3
"""Our attention against PyTorch SDPA and ONNX Runtime's CPU attention ops, same run.

For each thread count and each standard workload (core/workload.h) in each
dtype, times three implementations of the same attention, alternating them in
rounds and keeping each one's fastest time:
  ours   `attention_bench --json --filter NAME --dtype DT --threads N` (its "ms":
         the fastest of its own runs)
  torch  torch.nn.functional.scaled_dot_product_attention, torch.set_num_threads(N),
         enable_gqa=True where Hkv < Hq; MLA decode: value = key[..., :Dv], Hkv = 1,
         and a second line with the Hq heads given as Hq query rows of the one kv
         head (the same attention, which torch runs on its fused path)
  ORT    onnxruntime's CPU contrib ops (com.microsoft), intra_op_num_threads = N:
         MultiHeadAttention for MHA, GroupQueryAttention for GQA/MQA prefill and
         decode with the KV buffer shared through IOBinding (one OrtValue bound as
         past_key and present_key, another as past_value and present_value), as
         ONNX Runtime GenAI runs it; the graphs are built here with onnx.helper
Then prints a markdown table: the three times, ours ÷ torch and ours ÷ ORT as
speed ratios (> 1: we are faster), and whether the bars hold (≥ 1× each; MLA
decode ≥ 20× PyTorch). A side that cannot run a case is "n/a", its reason in
a note under the table. Each case's torch and ORT outputs (the timed inputs,
real shapes) are checked once against a float64 NumPy reference.

  scripts/setup-bench-venv.sh     # torch, onnxruntime, onnx, numpy in build/venv-bench
  build/venv-bench/bin/python bench/anchors.py [--bench build/bin/attention_bench]
      [--threads 2,16] [--dtypes f32,bf16] [--filter SUBSTR] [--min_time 1]
      [--rounds 3] [--json out.json]

Exit status: 0 when every check passed (bars that do not hold are reported,
not failed), 1 when an anchor's output did not match the reference, 2 on a
usage or setup error.
"""
import argparse
import json
import math
import platform
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    """One standard workload; mirrors core/workload.h's StandardWorkloads()."""

    name: str
    b: int
    hq: int
    hkv: int
    lq: int
    lk: int
    dk: int
    dv: int
    causal: bool
    value_in_key: bool  # MLA decode: the value is the first Dv columns of the key

    def tolerance(self, dtype):
        """Relative max-norm error allowed against the float64 reference."""
        if dtype == "bf16":
            return 1e-2  # inputs are the bf16 values; products and output in bf16
        return 1e-5 * (4.0 + math.sqrt(self.lk))  # Workload::Tolerance()


WORKLOADS = [
    Workload("mha_b4_h16_l512_d64", 4, 16, 16, 512, 512, 64, 64, False, False),
    Workload("gqa_prefill_b1_h32kv8_l2048_d128_causal", 1, 32, 8, 2048, 2048, 128, 128, True,
             False),
    Workload("gqa_decode_b8_h32kv8_lk4096_d128", 8, 32, 8, 1, 4096, 128, 128, False, False),
    Workload("mqa_decode_b8_h32kv1_lk4096_d128", 8, 32, 1, 1, 4096, 128, 128, False, False),
    Workload("mla_decode_b8_h16_lk4096_dk576_dv512", 8, 16, 1, 1, 4096, 576, 512, False, True),
]
DIMS = ("b", "hq", "hkv", "lq", "lk", "dk", "dv", "causal", "value_in_key")


class NotAvailable(Exception):
    """A side cannot run a case; the message is the note's reason."""


def best_time(fn, min_time):
    """Fastest of repeated calls (at least 3) over min_time seconds, in ms."""
    fn()  # warm-up: first-call allocations, kernel selection
    best = float("inf")
    count = 0
    start = time.perf_counter()
    while count < 3 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        count += 1
    return best * 1e3


def reference(q, k, v, causal):
    """float64 softmax(q·kᵀ/sqrt(Dk))·v; q [B,Hq,Lq,Dk], k [B,Hkv,Lk,Dk],
    v [B,Hkv,Lk,Dv] → [B,Hq,Lq,Dv]; query head h uses kv head h / (Hq/Hkv);
    causal: query i sees key j iff j <= i + Lk - Lq."""
    b, hq, lq, _ = q.shape
    hkv, lk, dv = k.shape[1], k.shape[2], v.shape[3]
    g = hq // hkv
    out = np.empty((b, hq, lq, dv))
    keep = np.tril(np.ones((lq, lk), bool), lk - lq) if causal else None
    for bi in range(b):
        for h in range(hkv):
            qs = q[bi, h * g:(h + 1) * g].astype(np.float64)  # [G, Lq, Dk]
            s = qs @ k[bi, h].astype(np.float64).T / math.sqrt(q.shape[3])
            if keep is not None:
                s = np.where(keep, s, -np.inf)
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            out[bi, h * g:(h + 1) * g] = s @ v[bi, h].astype(np.float64)
    return out


def rel_err(out, ref):
    return float(np.max(np.abs(out.astype(np.float64) - ref)) / np.max(np.abs(ref)))


class Inputs:
    """The case's q, k, v as torch tensors in the case's dtype, and the same
    values as float32 NumPy arrays ([B,H,L,D]; v is a view of k for MLA)."""

    def __init__(self, torch, w, dtype, seed=1):
        gen = torch.Generator().manual_seed(seed)
        tdt = torch.bfloat16 if dtype == "bf16" else torch.float32
        self.q = torch.randn(w.b, w.hq, w.lq, w.dk, generator=gen).to(tdt)
        self.k = torch.randn(w.b, w.hkv, w.lk, w.dk, generator=gen).to(tdt)
        if w.value_in_key:
            self.v = self.k[..., :w.dv]
        else:
            self.v = torch.randn(w.b, w.hkv, w.lk, w.dv, generator=gen).to(tdt)
        self.q_np, self.k_np, self.v_np = (t.float().numpy() for t in (self.q, self.k, self.v))


# ---------------------------------------------------------------- torch


def torch_case(torch, w, x):
    """A no-argument callable running SDPA on x; returns [B, Hq, Lq, Dv]."""
    import torch.nn.functional as F
    kwargs = {"is_causal": w.causal}
    if w.hkv != w.hq:
        kwargs["enable_gqa"] = True

    def run():
        with torch.inference_mode():
            return F.scaled_dot_product_attention(x.q, x.k, x.v, **kwargs)

    return run


def torch_rows_case(torch, w, x):
    """One-token decode with one kv head (MLA), the Hq query heads passed as
    Hq query rows of one head: q [B, 1, Hq, Dk] against k [B, 1, Lk, Dk], the
    same attention without enable_gqa. Returns [B, Hq, 1, Dv]."""
    import torch.nn.functional as F
    q_rows = x.q.transpose(1, 2)

    def run():
        with torch.inference_mode():
            return F.scaled_dot_product_attention(q_rows, x.k, x.v).transpose(1, 2)

    return run


TORCH_ROWS_NOTE = (
    "torch's second MLA line: the same attention with the Hq query heads given to SDPA as Hq "
    "query rows of its one kv head (q.transpose(1, 2), no enable_gqa), which PyTorch runs on "
    "its fused CPU path; the form the first line times (enable_gqa=True, Dk ≠ Dv, v a view "
    "of k) takes its unfused math path")


# ---------------------------------------------------------------- ONNX Runtime


class OrtCase:
    """One ORT session for a case with its inputs and outputs bound once."""

    def __init__(self, ort, onnx, w, dtype, x, threads):
        from onnx import TensorProto, helper
        self.ort, self.w, self.dtype = ort, w, dtype
        self.elem = TensorProto.BFLOAT16 if dtype == "bf16" else TensorProto.FLOAT
        self.note = ""
        self.keep = []  # NumPy buffers behind the bound OrtValues
        vi = helper.make_tensor_value_info
        if w.hkv == w.hq and not w.value_in_key and w.lq > 1:
            # MHA: query [B, Lq, Hq·Dk], key [B, Lk, Hkv·Dk], value [B, Lk, Hkv·Dv].
            if w.causal:
                raise NotAvailable("no causal MHA case")  # none among the standard ones
            op = "MultiHeadAttention"
            names_in = ["query", "key", "value"]
            shapes_in = [("B", "S", w.hq * w.dk), ("B", "L", w.hkv * w.dk),
                         ("B", "L", w.hkv * w.dv)]
            names_out, shapes_out = ["output"], [("B", "S", w.hq * w.dv)]
            attrs = {"num_heads": w.hq}
        else:
            # GroupQueryAttention: BSNH query and new key/value, BNSH KV buffers
            # of Lk tokens shared between past_* and present_*; always causal
            # (bottom-right aligned), which is the decode and causal-prefill mask.
            if not w.causal and w.lq > 1:
                raise NotAvailable("GroupQueryAttention is causal only")
            if w.dk != w.dv and not w.value_in_key:
                raise NotAvailable("GroupQueryAttention needs Dk = Dv")
            op = "GroupQueryAttention"
            d = w.dk
            names_in = ["query", "key", "value", "past_key", "past_value", "seqlens_k",
                        "total_sequence_length"]
            shapes_in = [("B", "S", w.hq * d), ("B", "S", w.hkv * d), ("B", "S", w.hkv * d),
                         ("B", w.hkv, "M", d), ("B", w.hkv, "M", d), ("B",), ()]
            names_out = ["output", "present_key", "present_value"]
            shapes_out = [("B", "S", w.hq * d), ("B", w.hkv, "M", d), ("B", w.hkv, "M", d)]
            attrs = {"num_heads": w.hq, "kv_num_heads": w.hkv}
            if w.value_in_key:
                self.note = (f"ORT: GroupQueryAttention with head size {w.dk} and the value = "
                             f"the whole key row (one buffer bound as past_key, past_value, "
                             f"present_key and present_value), so Dv = {w.dk} and the first "
                             f"{w.dv} output columns are the case's; its P·V does "
                             f"{w.dk / w.dv - 1:.1%} more work than ours and torch's")
        int_inputs = {"seqlens_k", "total_sequence_length"}
        inputs = [vi(n, TensorProto.INT32 if n in int_inputs else self.elem, list(s))
                  for n, s in zip(names_in, shapes_in)]
        outputs = [vi(n, self.elem, list(s)) for n, s in zip(names_out, shapes_out)]
        node = helper.make_node(op, names_in, names_out, domain="com.microsoft", **attrs)
        model = helper.make_model(
            helper.make_graph([node], f"{op}_{w.name}", inputs, outputs),
            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            msg = str(e)
            if "NOT_IMPLEMENTED" in msg or "Could not find an implementation" in msg:
                raise NotAvailable(f"ORT's CPU execution provider has no {dtype} kernel of "
                                   f"com.microsoft {op} (session creation: NOT_IMPLEMENTED)")
            raise
        self.op = op
        self.io = self.session.io_binding()
        bsd = lambda a: np.ascontiguousarray(a.transpose(0, 2, 1, 3).reshape(  # noqa: E731
            a.shape[0], a.shape[2], -1))
        if op == "MultiHeadAttention":
            self._bind_in("query", bsd(x.q_np))
            self._bind_in("key", bsd(x.k_np))
            self._bind_in("value", bsd(x.v_np))
            self.out = self._bind_out("output", (w.b, w.lq, w.hq * w.dv))
        else:
            # The query's Lq tokens are the last of the Lk: their keys and values
            # are the new ones, written into the buffer at Lk - Lq.. by the op.
            new = slice(w.lk - w.lq, w.lk)
            v_all = x.k_np if w.value_in_key else x.v_np
            self._bind_in("query", bsd(x.q_np))
            self._bind_in("key", bsd(x.k_np[:, :, new, :]))
            self._bind_in("value", bsd(v_all[:, :, new, :]))
            k_buf = self._value(np.ascontiguousarray(x.k_np))
            v_buf = k_buf if w.value_in_key else self._value(np.ascontiguousarray(v_all))
            self.io.bind_ortvalue_input("past_key", k_buf)
            self.io.bind_ortvalue_input("past_value", v_buf)
            self.io.bind_ortvalue_output("present_key", k_buf)
            self.io.bind_ortvalue_output("present_value", v_buf)
            self.io.bind_cpu_input("seqlens_k", np.full((w.b,), w.lk - 1, np.int32))
            self.io.bind_cpu_input("total_sequence_length", np.array(w.lk, np.int32))
            self.out = self._bind_out("output", (w.b, w.lq, w.hq * w.dk))

    def _value(self, a):
        """An OrtValue over the NumPy array a (float32) in the case's dtype."""
        if self.dtype == "bf16":
            bits = (np.ascontiguousarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16)
            self.keep.append(bits)
            return self.ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, self.elem)
        a = np.ascontiguousarray(a, np.float32)
        self.keep.append(a)
        return self.ort.OrtValue.ortvalue_from_numpy(a)

    def _bind_in(self, name, a):
        self.io.bind_ortvalue_input(name, self._value(a))

    def _bind_out(self, name, shape):
        buf = np.zeros(shape, np.uint16 if self.dtype == "bf16" else np.float32)
        self.keep.append(buf)
        if self.dtype == "bf16":
            value = self.ort.OrtValue.ortvalue_from_numpy_with_onnx_type(buf, self.elem)
        else:
            value = self.ort.OrtValue.ortvalue_from_numpy(buf)
        self.io.bind_ortvalue_output(name, value)
        return buf

    def run(self):
        self.session.run_with_iobinding(self.io)

    def output(self):
        """The last run's output as float32 [B, Hq, Lq, Dv]."""
        w = self.w
        out = self.out
        if self.dtype == "bf16":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        d = w.dv if self.op == "MultiHeadAttention" else w.dk
        return out.reshape(w.b, w.lq, w.hq, d).transpose(0, 2, 1, 3)[..., :w.dv]


# ---------------------------------------------------------------- ours


def run_ours(bench, w, dtype, threads, min_time):
    """attention_bench's report, and its row for (w, dtype) or None."""
    cmd = [bench, "--json", "--filter", w.name, "--dtype", dtype, "--threads", str(threads),
           "--min_time", str(min_time)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NotAvailable(f"`{' '.join(cmd)}` exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-300:]}")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        sys.exit(f"anchors.py: {bench} --json printed no JSON (it needs attention_bench's "
                 f"--json report): {proc.stdout[:200]!r}")
    rows = [r for r in report.get("workloads", [])
            if r.get("name") == w.name and r.get("dtype") == dtype]
    if rows:
        row = rows[0]
        theirs = {k: row.get(k) for k in DIMS}
        mine = {k: getattr(w, k) for k in DIMS}
        if theirs != mine:
            sys.exit(f"anchors.py: attention_bench's {w.name} has dims {theirs}, this script "
                     f"{mine}: update WORKLOADS from core/workload.h")
        return report, row
    return report, None


# ---------------------------------------------------------------- one case


def check_case(w, dtype, x, runs):
    """Each side's output on the timed inputs against the float64 reference."""
    ref = reference(x.q_np, x.k_np, x.v_np, w.causal)
    tol = w.tolerance(dtype)
    c = {"workload": w.name, "dtype": dtype, "tolerance": tol}
    for side, output in runs.items():
        c[side] = rel_err(output(), ref) if output is not None else None
    c["passed"] = all(c[side] is None or c[side] <= tol for side in runs)
    return c


def measure_case(args, torch, ort, onnx, w, dtype, threads, checked, setup):
    """Times ours, torch (and torch's heads-as-rows form for MLA) and ORT on one
    case in alternating rounds; returns its table rows."""
    x = Inputs(torch, w, dtype)
    runs = {"torch": torch_case(torch, w, x)}
    if w.value_in_key and w.lq == 1:
        runs["torch_rows"] = torch_rows_case(torch, w, x)
    try:
        ort_case = OrtCase(ort, onnx, w, dtype, x, threads)
        ort_na = None
        runs["ort"] = ort_case.run
    except NotAvailable as e:
        ort_case, ort_na = None, str(e)
    key = (w.name, dtype)
    if key not in checked:
        outputs = {side: (lambda f=f: f().float().numpy()) for side, f in runs.items()
                   if side != "ort"}
        outputs["ort"] = (lambda: (ort_case.run(), ort_case.output())[1]) if ort_case else None
        checked[key] = check_case(w, dtype, x, outputs)
    best = {"ours": math.inf, **{side: math.inf for side in runs}}
    ours_na = None
    for _ in range(args.rounds):
        try:
            report, row = run_ours(args.bench, w, dtype, threads, args.min_time)
            setup["bench"][str(threads)] = {"machine": report.get("machine"),
                                            "probes": report.get("probes")}
            if row is None:
                ours_na = f"attention_bench --json gives no {dtype} row for this workload"
            else:
                best["ours"] = min(best["ours"], row["ms"])
        except NotAvailable as e:
            ours_na = str(e)
        for side, run in runs.items():
            best[side] = min(best[side], best_time(run, args.min_time))
    best = {side: (t if t < math.inf else None) for side, t in best.items()}
    print(f"  {w.name} {dtype} {threads} threads: " +
          ", ".join(f"{side} {t:.3f}" if t else f"{side} n/a" for side, t in best.items()) +
          " ms", file=sys.stderr)
    rows = []
    for torch_side in [s for s in ("torch", "torch_rows") if s in runs]:
        rows.append({
            "workload": w.name, "dtype": dtype, "threads": threads,
            "torch_form": "heads as rows" if torch_side == "torch_rows" else "",
            "ours_ms": best["ours"], "torch_ms": best[torch_side], "ort_ms": best.get("ort"),
            "ours_vs_torch": ratio(best["ours"], best[torch_side]),
            "ours_vs_ort": ratio(best["ours"], best.get("ort")),
            "bar_torch": 20.0 if w.value_in_key else 1.0, "bar_ort": 1.0,
            "ours_na": ours_na if best["ours"] is None else None,
            "ort_na": ort_na, "ort_note": ort_case.note if ort_case else "",
            "check_passed": checked[key]["passed"]})
    return rows


# ---------------------------------------------------------------- table


def ratio(ours, theirs):
    return theirs / ours if ours is not None and theirs is not None else None


def lscpu_summary():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    info = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    flags = info.get("Flags", "").split()
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return (f"{info.get('Model name', '?')} (family {info.get('CPU family', '?')} model "
            f"{info.get('Model', '?')}), {info.get('CPU(s)', '?')} CPUs, {' '.join(isa)}")


class Notes:
    """n/a reasons and remarks, lettered in order of first use."""

    def __init__(self):
        self.text = []

    def mark(self, text):
        if text not in self.text:
            self.text.append(text)
        return f"({chr(ord('a') + self.text.index(text))})"

    def lines(self):
        return [f"({chr(ord('a') + i)}) {t}" for i, t in enumerate(self.text)]


def fmt_ms(v):
    return f"{v:.3f}" if v is not None else None


def fmt_ratio(v):
    return f"{v:.2f}×" if v is not None else "n/a"


def print_report(setup, rows, checks, notes, args):
    """The setup lines, the markdown table, its notes and the checks' table."""
    print(f"\nSetup: {setup['cpu']}; Python {setup['python']}, torch {setup['torch']}, "
          f"onnxruntime {setup['onnxruntime']}, onnx {setup['onnx']}, numpy {setup['numpy']}; "
          f"{args.rounds} rounds of ours, torch, ORT alternating, fastest of each, "
          f"--min_time {args.min_time}.")
    for threads, b in setup["bench"].items():
        m, p = b.get("machine") or {}, b.get("probes") or {}
        print(f"attention_bench at {threads} threads: isa {m.get('isa')}, kernels "
              f"{m.get('kernels')}, oneDNN {m.get('onednn')}; last run's probes: GEMM f32 "
              f"{p.get('gemm_f32_gflops')} GFLOP/s, GEMM bf16 {p.get('gemm_bf16_gflops')} "
              f"GFLOP/s, read bandwidth {p.get('bandwidth_gbs')} GB/s.")
    print()
    print("| workload | dtype | threads | ours ms | torch ms | ORT ms | ours ÷ torch | "
          "ours ÷ ORT | bars |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ours = fmt_ms(r["ours_ms"]) or f"n/a {notes.mark(r['ours_na'])}"
        torch_ms = fmt_ms(r["torch_ms"])
        if r["torch_form"]:
            torch_ms += f" {notes.mark(TORCH_ROWS_NOTE)}"
        if r["ort_na"]:
            ort_ms = f"n/a {notes.mark(r['ort_na'])}"
        else:
            ort_ms = fmt_ms(r["ort_ms"])
            if r["ort_note"]:
                ort_ms += f" {notes.mark(r['ort_note'])}"
        bars = []
        for side, value, bar in (("torch", r["ours_vs_torch"], r["bar_torch"]),
                                 ("ORT", r["ours_vs_ort"], r["bar_ort"])):
            verdict = "n/a" if value is None else ("yes" if value >= bar else "NO")
            bars.append(f"{side} ≥ {bar:g}×: {verdict}")
        if not r["check_passed"]:
            bars.append("CHECK FAILED")
        name = r["workload"] + (f", torch: {r['torch_form']}" if r["torch_form"] else "")
        print(f"| {name} | {r['dtype']} | {r['threads']} | {ours} | {torch_ms} | "
              f"{ort_ms} | {fmt_ratio(r['ours_vs_torch'])} | {fmt_ratio(r['ours_vs_ort'])} | "
              f"{'; '.join(bars)} |")
    print()
    for line in notes.lines():
        print(line)
    print("\nChecks, the timed inputs against a float64 NumPy reference "
          "(max |x − ref| / max |ref|; torch rows: the heads-as-rows form):\n")
    print("| workload | dtype | torch | torch rows | ORT | tolerance | passed |")
    print("|---|---|---:|---:|---:|---:|---|")
    for c in checks:
        errs = [f"{c[side]:.1e}" if c.get(side) is not None else "n/a"
                for side in ("torch", "torch_rows", "ort")]
        print(f"| {c['workload']} | {c['dtype']} | {' | '.join(errs)} | "
              f"{c['tolerance']:.1e} | {'yes' if c['passed'] else 'NO'} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", default="build/bin/attention_bench")
    parser.add_argument("--threads", default="2", help="comma list, e.g. 2,16")
    parser.add_argument("--dtypes", default="f32,bf16", help="comma list of f32, bf16")
    parser.add_argument("--filter", default="", help="only workloads whose name contains it")
    parser.add_argument("--min_time", type=float, default=1.0,
                        help="seconds each side times a case per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default="", help="also write the table as JSON here")
    args = parser.parse_args()
    threads_list = [int(t) for t in args.threads.split(",")]
    dtypes = args.dtypes.split(",")
    if any(d not in ("f32", "bf16") for d in dtypes):
        parser.error("--dtypes takes f32 and bf16")
    workloads = [w for w in WORKLOADS if args.filter in w.name]
    if not workloads:
        parser.error(f"--filter {args.filter!r} matches no workload")
    try:
        import onnx
        import onnxruntime as ort
        import torch
    except ImportError as e:
        print(f"anchors.py: {e}; run scripts/setup-bench-venv.sh and use "
              f"build/venv-bench/bin/python", file=sys.stderr)
        return 2

    setup = {"cpu": lscpu_summary(), "python": platform.python_version(),
             "torch": torch.__version__, "onnxruntime": ort.__version__,
             "onnx": onnx.__version__, "numpy": np.__version__, "min_time": args.min_time,
             "rounds": args.rounds, "bench": {}}
    rows = []
    checked = {}  # (workload, dtype) → its check, done at the first thread count
    for threads in threads_list:
        torch.set_num_threads(threads)
        for w in workloads:
            for dtype in dtypes:
                rows += measure_case(args, torch, ort, onnx, w, dtype, threads, checked, setup)
    checks = list(checked.values())
    failed = not all(c["passed"] for c in checks)

    notes = Notes()
    print_report(setup, rows, checks, notes, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"setup": setup, "rows": rows, "checks": checks,
                       "notes": notes.lines()}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
