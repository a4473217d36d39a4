#!/usr/bin/python3
"""attention_bench --json: one JSON object on stdout, with the documented keys.

  bench_json_test.py BIN_DIR

Runs the bench on tiny filters (one workload and its variant's layer-decode
rows, the windowed decode, then the layer forward) at --min_time 0.01, so it checks the schema,
not the speed. The schema is in docs/PERFORMANCE.md.
"""
import json
import os
import subprocess
import sys
import unittest

BENCH = None

NUMBER = (int, float)
MACHINE = {"cpu": str, "isa": str, "kernels": str, "threads": int, "onednn": str}
WORKLOAD = {"name": str, "dtype": str, "b": int, "hq": int, "hkv": int, "lq": int, "lk": int,
            "dk": int, "dv": int, "causal": bool, "value_in_key": bool, "ms": NUMBER,
            "median_ms": NUMBER, "gflops": NUMBER, "kv_gbs": NUMBER, "roof": str,
            "roof_fraction": NUMBER}
DECODE = {"variant": str, "kv_dtype": str, "compute_dtype": str, "kv_bytes_per_token": int,
          "layer_ms": NUMBER, "layer_tokens_per_s": NUMBER, "attention_ms": NUMBER,
          "attention_kv_gbs": NUMBER, "attention_roof_fraction": NUMBER,
          "attention_vs_f32": NUMBER}
FORWARD = {"name": str, "ms": NUMBER, "median_ms": NUMBER, "gflops": NUMBER}
WINDOW = {"variant": str, "batch": int, "window": int, "position": int, "kv_held_mib": NUMBER,
          "kv_appended_mib": NUMBER, "layer_ms": NUMBER, "layer_median_ms": NUMBER,
          "layer_tokens_per_s": NUMBER, "layer_vs_first": NUMBER, "attention_ms": NUMBER,
          "attention_median_ms": NUMBER, "attention_vs_first": NUMBER}


def run_bench(*args, env=None):
    result = subprocess.run([BENCH, "--json", "--threads", "2", "--min_time", "0.01", *args],
                            check=True, capture_output=True, text=True,
                            env=dict(os.environ, **(env or {})))
    return json.loads(result.stdout)  # fails on anything else on stdout


class BenchJsonTest(unittest.TestCase):
    def assertKeys(self, obj, schema):
        for key, kind in schema.items():
            self.assertIn(key, obj)
            self.assertIsInstance(obj[key], kind, key)
            if kind is NUMBER:  # a bool is an int to Python; not a number here
                self.assertNotIsInstance(obj[key], bool, key)

    def assertProbes(self, probes):
        self.assertIsInstance(probes["gemm_f32_gflops"], NUMBER)
        self.assertGreater(probes["gemm_f32_gflops"], 0)
        self.assertGreater(probes["bandwidth_gbs"], 0)
        self.assertIsInstance(probes["gemm_bf16_note"], str)
        if probes["gemm_bf16_gflops"] is None:
            self.assertTrue(probes["gemm_bf16_note"], "a null bf16 rate says why")
        else:
            self.assertGreater(probes["gemm_bf16_gflops"], 0)

    def test_workload_and_layer_decode_rows(self):
        report = run_bench("--filter", "mqa", "--decode_batch", "1", "--dtype", "f32")
        self.assertEqual(set(report), {"machine", "probes", "workloads", "layer_decode",
                                       "window_decode", "layer_forward"})
        self.assertKeys(report["machine"], MACHINE)
        self.assertProbes(report["probes"])
        self.assertEqual([w["name"] for w in report["workloads"]],
                         ["mqa_decode_b8_h32kv1_lk4096_d128"])
        for w in report["workloads"]:
            self.assertKeys(w, WORKLOAD)
            self.assertEqual(w["dtype"], "f32")
            self.assertIn(w["roof"], ("bandwidth", "gemm"))
            self.assertGreater(w["roof_fraction"], 0)
        rows = report["layer_decode"]
        self.assertTrue(rows)
        for row in rows:
            self.assertKeys(row, DECODE)
            self.assertEqual(row["variant"], "mqa_h32")
            self.assertIn(row["kv_dtype"], ("f32", "bf16", "f16", "int8"))
            self.assertIn(row["compute_dtype"], ("f32", "bf16"))
            self.assertGreater(row["attention_roof_fraction"], 0)
        self.assertEqual({r["kv_dtype"] for r in rows if r["compute_dtype"] == "f32"},
                         {"f32", "bf16", "f16", "int8"})
        reference = [r for r in rows if r["kv_dtype"] == "f32" and r["compute_dtype"] == "f32"]
        self.assertEqual(len(reference), 1)
        self.assertEqual(reference[0]["attention_vs_f32"], 1.0)
        self.assertEqual(report["window_decode"], [])
        self.assertEqual(report["layer_forward"], [])

    def test_bf16_rows_beside_the_all_f32_reference(self):
        report = run_bench("--filter", "mqa", "--decode_batch", "1", "--dtype", "bf16")
        self.assertEqual([(w["name"], w["dtype"]) for w in report["workloads"]],
                         [("mqa_decode_b8_h32kv1_lk4096_d128", "bf16")])
        for w in report["workloads"]:
            self.assertKeys(w, WORKLOAD)
        rows = report["layer_decode"]
        self.assertEqual([(r["kv_dtype"], r["compute_dtype"]) for r in rows],
                         [("f32", "f32"), ("bf16", "bf16")])
        for row in rows:
            self.assertKeys(row, DECODE)
            self.assertIsInstance(row["layer_vs_f32"], NUMBER)
        self.assertEqual(rows[0]["layer_vs_f32"], 1.0)

    def test_layer_forward_row(self):
        report = run_bench("--filter", "forward")
        self.assertEqual(report["workloads"], [])
        self.assertEqual(report["layer_decode"], [])
        self.assertEqual(report["window_decode"], [])
        self.assertEqual([r["compute_dtype"] for r in report["layer_forward"]], ["f32", "bf16"])
        for row in report["layer_forward"]:
            self.assertKeys(row, FORWARD)

    def test_window_decode_rows(self):
        report = run_bench("--filter", "window", "--decode_batch", "1")
        self.assertEqual(report["workloads"], [])
        self.assertEqual(report["layer_decode"], [])
        self.assertEqual(report["layer_forward"], [])
        rows = report["window_decode"]
        self.assertEqual([(r["variant"], r["position"]) for r in rows],
                         [("gqa_h32kv8_w4096", 8192), ("gqa_h32kv8_w4096", 65536)])
        for row in rows:
            self.assertKeys(row, WINDOW)
            self.assertEqual((row["batch"], row["window"]), (1, 4096))
        # The stream holds its window's blocks wherever it is.
        self.assertEqual(rows[0]["kv_held_mib"], rows[1]["kv_held_mib"])
        self.assertEqual(rows[1]["kv_appended_mib"], 8 * rows[0]["kv_appended_mib"])
        self.assertEqual(rows[0]["layer_vs_first"], 1.0)
        self.assertEqual(rows[0]["attention_vs_first"], 1.0)

    def test_forced_avx2_kernels_report_no_bf16_gemm(self):
        report = run_bench("--filter", "no_such_workload", env={"ATTN_ISA": "avx2"})
        self.assertEqual(report["machine"]["kernels"], "avx2")
        self.assertIsNone(report["probes"]["gemm_bf16_gflops"])
        self.assertTrue(report["probes"]["gemm_bf16_note"])

    def test_bad_dtype_is_refused(self):
        result = subprocess.run([BENCH, "--json", "--dtype", "f64"], capture_output=True,
                                text=True)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout, "")
        self.assertIn("--dtype", result.stderr)


if __name__ == "__main__":
    BENCH = os.path.join(sys.argv.pop(1), "attention_bench")
    unittest.main(verbosity=2)
