"""End-to-end tests of the Python client (client/python) against the real server.

    /usr/bin/python3 -m unittest tests/clients/test_python_client.py

The server binary is $ATTENTION_SERVER (default build/bin/attention_server,
relative to the repository root); it is started on a free loopback port and
stopped with SIGTERM at the end. The gRPC stubs are generated if missing.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import zlib

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT_DIR = os.path.join(REPO, "client", "python")

subprocess.run(["bash", os.path.join(CLIENT_DIR, "generate_stubs.sh"), "--if-missing"], check=True)
sys.path.insert(0, CLIENT_DIR)

import grpc  # noqa: E402

from attention_client import (  # noqa: E402
    AttentionClient,
    AttentionError,
    from_bfloat16_bytes,
    round_to_bfloat16,
    to_bfloat16_bytes,
)


# ---------------------------------------------------------------------------
# NumPy references


def softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention_ref(q, k, v, causal=False, key_lengths=None, keep=None, scale=None):
    """Scaled-dot-product attention with GQA head sharing and -1e9 masking,
    in float64. q [B,Hq,Lq,Dk], k [B,Hkv,Lk,Dk], v [B,Hkv,Lk,Dv]."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    B, Hq, Lq, Dk = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    group = Hq // Hkv
    k = np.repeat(k, group, axis=1)  # torch.repeat_interleave(k, group, dim=1)
    v = np.repeat(v, group, axis=1)
    s = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / np.sqrt(Dk) if scale is None else scale)
    visible = np.ones((B, Hq, Lq, Lk), bool)
    if causal:
        i = np.arange(Lq)[:, None]
        j = np.arange(Lk)[None, :]
        visible &= j <= i + (Lk - Lq)
    if key_lengths is not None:
        lengths = np.asarray(key_lengths).reshape(B, 1, 1, 1)
        visible &= np.arange(Lk).reshape(1, 1, 1, Lk) < lengths
    if keep is not None:
        visible &= np.broadcast_to(np.asarray(keep) != 0, visible.shape)
    s = np.where(visible, s, -1e9)
    p = softmax(s)
    return p @ v, p


def linear_init(rng, out_features, in_features, bias=True):
    """nn.Linear's default initialisation: U(-1/sqrt(in), 1/sqrt(in))."""
    bound = 1.0 / np.sqrt(in_features)
    w = rng.uniform(-bound, bound, (out_features, in_features)).astype(np.float32)
    b = rng.uniform(-bound, bound, (out_features,)).astype(np.float32) if bias else None
    return w, b


def attention_state_dict(rng, d_model, num_q_heads, num_kv_heads, bias=True):
    """A PyTorch-style state_dict (names as the reference modules' nn.Linear
    parameters, converted with .numpy()) for MHA (Hq == Hkv) or GQA."""
    d_head = d_model // num_q_heads
    sd = {}
    for name, out_features in (("W_q", d_model), ("W_k", num_kv_heads * d_head),
                               ("W_v", num_kv_heads * d_head), ("W_o", d_model)):
        w, b = linear_init(rng, out_features, d_model, bias)
        sd[name + ".weight"] = w
        if bias:
            sd[name + ".bias"] = b
    return sd


def attention_layer_ref(sd, query, key, value, num_q_heads, num_kv_heads, causal=False):
    """The MHA/GQA layer: y = x W^T + b projections, heads split as
    view(B, L, H, d_head).transpose(1, 2), attention with scale
    1/sqrt(d_head), heads merged back, then W_o."""
    query, key, value = (np.asarray(t, np.float64) for t in (query, key, value))
    B, Lq, d_model = query.shape
    Lk = key.shape[1]
    d_head = d_model // num_q_heads

    def linear(name, x):
        y = x @ sd[name + ".weight"].astype(np.float64).T
        if name + ".bias" in sd:
            y = y + sd[name + ".bias"]
        return y

    def heads(x, L, H):
        return x.reshape(B, L, H, d_head).transpose(0, 2, 1, 3)

    q = heads(linear("W_q", query), Lq, num_q_heads)
    k = heads(linear("W_k", key), Lk, num_kv_heads)
    v = heads(linear("W_v", value), Lk, num_kv_heads)
    o, _ = attention_ref(q, k, v, causal=causal)
    o = o.transpose(0, 2, 1, 3).reshape(B, Lq, d_model)
    return linear("W_o", o)


# ---------------------------------------------------------------------------
# The server


class Server:
    """The attention_server binary on a free loopback port."""

    def __init__(self):
        self.binary = os.environ.get("ATTENTION_SERVER") or os.path.join(
            REPO, "build", "bin", "attention_server")
        if not os.path.isabs(self.binary):
            self.binary = os.path.join(REPO, self.binary)
        if not os.access(self.binary, os.X_OK):
            raise unittest.SkipTest("no server binary at %s (set ATTENTION_SERVER)" % self.binary)
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [self.binary, "--listen=127.0.0.1:0", "--log_calls=false"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.port = self._wait_for_port(timeout=30)
        self.target = "127.0.0.1:%d" % self.port

    def _read_log(self):
        self.log.seek(0)
        return self.log.read()

    def _wait_for_port(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"\(port (\d+)\)", self._read_log())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError("attention_server exited with %d:\n%s"
                                   % (self.proc.returncode, self._read_log()))
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("attention_server printed no port within %d s:\n%s"
                           % (timeout, self._read_log()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class ServerTestCase(unittest.TestCase):
    """One server for the whole class, stopped (SIGTERM, wait) in tearDownClass."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.client = AttentionClient(cls.server.target, timeout=60)
        cls.client.wait_for_ready(timeout=15)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        rc = cls.server.stop()
        # A clean SIGTERM drain exits 0.
        if rc != 0:
            raise AssertionError("attention_server exited with %r" % rc)

    def setUp(self):
        self.rng = np.random.default_rng(zlib.crc32(self.id().encode()))

    def randn(self, *shape):
        return self.rng.standard_normal(shape).astype(np.float32)

    def assertClose(self, actual, expected, atol, rtol=0.0):
        actual = np.asarray(actual, np.float64)
        expected = np.asarray(expected, np.float64)
        self.assertEqual(actual.shape, expected.shape)
        np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol)

    def assertRaisesCode(self, code, fn, *args, **kwargs):
        with self.assertRaises(AttentionError) as cm:
            result = fn(*args, **kwargs)
            if hasattr(result, "__next__"):  # a generator: run it
                list(result)
        self.assertEqual(cm.exception.code, code, cm.exception.details)
        return cm.exception


# ---------------------------------------------------------------------------
# Tests


class AttendTest(ServerTestCase):
    def test_gqa_causal_fp32(self):
        B, Hq, Hkv, Lq, Lk, Dk, Dv = 2, 8, 2, 5, 9, 16, 12
        q, k, v = self.randn(B, Hq, Lq, Dk), self.randn(B, Hkv, Lk, Dk), self.randn(B, Hkv, Lk, Dv)
        r = self.client.attend(q, k, v, causal=True, return_weights=True)
        out, weights = attention_ref(q, k, v, causal=True)
        self.assertEqual(r.variant, "gqa")
        self.assertEqual(r.output.dtype, np.float32)
        self.assertClose(r.output, out, atol=1e-5)
        self.assertClose(r.weights, weights, atol=1e-5)
        self.assertGreater(r.timing.flops, 0)
        self.assertGreaterEqual(r.timing.compute_us, 0)

    def test_gqa_causal_fp16(self):
        B, Hq, Hkv, Lq, Lk, Dk, Dv = 2, 8, 2, 6, 6, 16, 16
        q = self.randn(B, Hq, Lq, Dk).astype(np.float16)
        k = self.randn(B, Hkv, Lk, Dk).astype(np.float16)
        v = self.randn(B, Hkv, Lk, Dv).astype(np.float16)
        r = self.client.attend(q, k, v, causal=True, dtype=np.float16)
        self.assertEqual(r.output.dtype, np.float16)
        self.assertClose(r.output, attention_ref(q, k, v, causal=True)[0], atol=1e-2)
        # FP16 in, FP32 out.
        r32 = self.client.attend(q, k, v, causal=True, dtype=np.float16, output_dtype=np.float32)
        self.assertEqual(r32.output.dtype, np.float32)
        self.assertClose(r32.output, attention_ref(q, k, v, causal=True)[0], atol=1e-5)

    def test_bfloat16(self):
        B, Hq, Hkv, L, D = 1, 4, 1, 7, 8
        q, k, v = self.randn(B, Hq, L, D), self.randn(B, Hkv, L, D), self.randn(B, Hkv, L, D)
        r = self.client.attend(q, k, v, causal=True, dtype="bfloat16")
        self.assertEqual(r.variant, "mqa")
        self.assertEqual(r.output.dtype, np.float32)
        # Results are exact bfloat16 values.
        np.testing.assert_array_equal(r.output, round_to_bfloat16(r.output))
        qb, kb, vb = (round_to_bfloat16(t) for t in (q, k, v))
        self.assertClose(r.output, attention_ref(qb, kb, vb, causal=True)[0], atol=3e-2)

    def test_masks(self):
        B, H, Lq, Lk, D = 2, 2, 4, 6, 8
        q, k, v = self.randn(B, H, Lq, D), self.randn(B, H, Lk, D), self.randn(B, H, Lk, D)
        keep = self.rng.random((Lq, Lk)) > 0.3
        keep[1, :] = False  # a fully masked row averages all (unpadded) values
        r = self.client.attend(q, k, v, key_lengths=[6, 3], keep=keep, scale=0.5)
        self.assertEqual(r.variant, "mha")
        ref, _ = attention_ref(q, k, v, key_lengths=[6, 3], keep=keep, scale=0.5)
        self.assertClose(r.output, ref, atol=1e-5)
        self.assertClose(r.output[:, :, 1], v.mean(axis=2), atol=1e-5)

    def test_bad_head_sharing(self):
        q, k, v = self.randn(1, 6, 3, 8), self.randn(1, 4, 3, 8), self.randn(1, 4, 3, 8)
        e = self.assertRaisesCode(grpc.StatusCode.INVALID_ARGUMENT, self.client.attend, q, k, v)
        self.assertIn("Hkv", e.details)
        self.assertIn("Hkv", str(e))

    def test_bad_mask(self):
        q, k, v = self.randn(2, 2, 3, 8), self.randn(2, 2, 4, 8), self.randn(2, 2, 4, 8)
        e = self.assertRaisesCode(grpc.StatusCode.INVALID_ARGUMENT, self.client.attend,
                                  q, k, v, key_lengths=[1])
        self.assertIn("mask.key_lengths", e.details)


class ModuleTest(ServerTestCase):
    D_MODEL, HEADS = 64, 4

    def test_mha_state_dict_forward(self):
        sd = attention_state_dict(self.rng, self.D_MODEL, self.HEADS, self.HEADS)
        info = self.client.load_module("py-mha", {"d_model": self.D_MODEL, "bias": True,
                                                  "mha": {"num_heads": self.HEADS}}, state_dict=sd)
        self.assertEqual(info.name, "py-mha")
        self.assertEqual(info.config["mha"], {"num_heads": self.HEADS})
        self.assertEqual(info.parameter_count, sum(a.size for a in sd.values()))
        self.assertEqual(info.kv_cache_bytes_per_token, 2 * self.D_MODEL * 4)
        self.assertIn("py-mha", [m.name for m in self.client.list_modules()])

        x = self.randn(2, 7, self.D_MODEL)
        r = self.client.forward("py-mha", x, causal=True, return_weights=True)
        self.assertEqual(r.output.shape, (2, 7, self.D_MODEL))
        self.assertEqual(r.weights.shape, (2, self.HEADS, 7, 7))
        self.assertClose(r.output, attention_layer_ref(sd, x, x, x, self.HEADS, self.HEADS,
                                                       causal=True), atol=1e-4)

        # Cross-attention, not causal.
        kv = self.randn(2, 5, self.D_MODEL)
        r = self.client.forward("py-mha", x, key=kv, value=kv)
        self.assertClose(r.output, attention_layer_ref(sd, x, kv, kv, self.HEADS, self.HEADS),
                         atol=1e-4)

        self.assertRaisesCode(grpc.StatusCode.ALREADY_EXISTS, self.client.load_module,
                              "py-mha", {"d_model": self.D_MODEL, "mha": {"num_heads": 4}})
        self.client.unload_module("py-mha")
        self.assertNotIn("py-mha", [m.name for m in self.client.list_modules()])
        self.assertRaisesCode(grpc.StatusCode.NOT_FOUND, self.client.forward, "py-mha", x)

    def test_gqa_state_dict_forward(self):
        Hq, Hkv = 8, 2
        sd = attention_state_dict(self.rng, self.D_MODEL, Hq, Hkv)
        self.assertEqual(sd["W_k.weight"].shape, (Hkv * self.D_MODEL // Hq, self.D_MODEL))
        info = self.client.load_module(
            "py-gqa", {"d_model": self.D_MODEL, "gqa": {"num_q_heads": Hq, "num_kv_heads": Hkv},
                       "bias": True}, state_dict=sd)
        self.assertEqual(info.kv_cache_bytes_per_token, 2 * Hkv * (self.D_MODEL // Hq) * 4)
        x = self.randn(3, 6, self.D_MODEL)
        r = self.client.forward("py-gqa", x, causal=True)
        self.assertClose(r.output, attention_layer_ref(sd, x, x, x, Hq, Hkv, causal=True),
                         atol=1e-4)
        self.client.unload_module("py-gqa")

    def test_bad_weight_shape(self):
        sd = attention_state_dict(self.rng, self.D_MODEL, self.HEADS, self.HEADS)
        sd["W_k.weight"] = sd["W_k.weight"][:32]
        e = self.assertRaisesCode(grpc.StatusCode.INVALID_ARGUMENT, self.client.load_module,
                                  "py-bad", {"d_model": self.D_MODEL, "mha": {"num_heads": 4}},
                                  state_dict=sd)
        self.assertIn("W_k.weight", e.details)

    def test_unknown_module(self):
        x = self.randn(1, 2, 8)
        e = self.assertRaisesCode(grpc.StatusCode.NOT_FOUND, self.client.forward, "no-such", x)
        self.assertIn("no-such", e.details)
        self.assertRaisesCode(grpc.StatusCode.NOT_FOUND, self.client.unload_module, "no-such")
        self.assertRaisesCode(grpc.StatusCode.NOT_FOUND, self.client.decode, "no-such", [x])

    def test_decode_matches_forward(self):
        sd = attention_state_dict(self.rng, self.D_MODEL, self.HEADS, self.HEADS)
        info = self.client.load_module("py-dec", {"d_model": self.D_MODEL,
                                                  "mha": {"num_heads": self.HEADS}}, state_dict=sd)
        sizes = [5, 1, 1, 3, 1]
        B = 2
        tokens = self.randn(B, sum(sizes), self.D_MODEL)
        chunks = np.split(tokens, np.cumsum(sizes)[:-1], axis=1)

        def produce():  # a generator: chunks are streamed as produced
            for c in chunks:
                yield c

        steps = list(self.client.decode("py-dec", produce(), max_tokens=16))
        self.assertEqual([s.output.shape for s in steps],
                         [(B, n, self.D_MODEL) for n in sizes])
        self.assertEqual([s.cached_tokens for s in steps], list(np.cumsum(sizes)))
        self.assertEqual([s.kv_cache_bytes for s in steps],
                         [n * B * info.kv_cache_bytes_per_token for n in np.cumsum(sizes)])
        full = self.client.forward("py-dec", tokens, causal=True).output
        self.assertClose(np.concatenate([s.output for s in steps], axis=1), full, atol=1e-4)
        self.assertClose(full, attention_layer_ref(sd, tokens, tokens, tokens, self.HEADS,
                                                   self.HEADS, causal=True), atol=1e-4)

        # Past max_tokens: FAILED_PRECONDITION ends the stream.
        self.assertRaisesCode(grpc.StatusCode.FAILED_PRECONDITION, self.client.decode,
                              "py-dec", chunks, max_tokens=6)
        self.client.unload_module("py-dec")

    def test_random_init_estimate(self):
        config = {"d_model": 32, "gqa": {"num_q_heads": 4, "num_kv_heads": 2}, "bias": False}
        info = self.client.load_module("py-rand", config, seed=7)
        self.assertEqual(info.config, config)
        est = self.client.estimate(config, batch=2, seq_len=10)
        self.assertEqual(est.parameters, info.parameter_count)
        self.assertEqual(est.kv_cache_bytes_per_token, info.kv_cache_bytes_per_token)
        self.assertEqual(est.kv_cache_bytes, 2 * 10 * info.kv_cache_bytes_per_token)
        self.assertGreater(est.prefill_flops, 0)
        # Same seed, same weights: replace and get the same output.
        x = self.randn(1, 4, 32)
        a = self.client.forward("py-rand", x).output
        self.client.load_module("py-rand", config, seed=7, replace=True)
        np.testing.assert_array_equal(self.client.forward("py-rand", x).output, a)
        self.client.unload_module("py-rand")
        self.assertRaisesCode(grpc.StatusCode.INVALID_ARGUMENT, self.client.estimate,
                              {"d_model": 100, "mha": {"num_heads": 3}}, 1, 1)


class ServerInfoTest(ServerTestCase):
    def test_server_info_and_health(self):
        info = self.client.server_info()
        self.assertTrue(info["version"])
        self.assertEqual(sorted(info["variants"]),
                         sorted(["self_attention", "mha", "gqa", "mqa", "mla"]))
        self.assertGreater(info["limits"]["max_message_bytes"], 0)
        self.assertEqual(self.client.health(), "SERVING")
        names = [m.name for m in self.client.list_modules()]
        self.assertTrue({"demo-sa", "demo-mha", "demo-gqa", "demo-mqa", "demo-mla"} <= set(names))


class Bfloat16HelpersTest(unittest.TestCase):
    def test_round_to_nearest_even(self):
        x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5,
                      np.inf, -np.inf], np.float32)
        expected = np.array([1.0, 1.0, 1 + 2 ** -6, 1 + 2 ** -7, -2.5, np.inf, -np.inf],
                            np.float32)
        data = to_bfloat16_bytes(x)
        self.assertEqual(len(data), 2 * x.size)
        np.testing.assert_array_equal(from_bfloat16_bytes(data, x.shape), expected)
        self.assertTrue(np.isnan(from_bfloat16_bytes(to_bfloat16_bytes(np.float32("nan")))).all())
        self.assertEqual(to_bfloat16_bytes(np.float32(1.0)), b"\x80\x3f")


if __name__ == "__main__":
    unittest.main()
