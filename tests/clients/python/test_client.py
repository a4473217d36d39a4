"""AttentionClient (client/python/attention_client/client.py) against the real
server: Attend, modules (LoadModule, Forward, Decode, Estimate) and server info."""

import grpc
import numpy as np
import pytest

from attention_client import round_to_bfloat16
from reference import (assert_close, attention_layer_ref, attention_ref, attention_state_dict,
                       randn, raises_code)

D_MODEL, HEADS = 64, 4


# -- Attend -------------------------------------------------------------------


def test_attend_gqa_causal_fp32(client, rng):
    B, Hq, Hkv, Lq, Lk, Dk, Dv = 2, 8, 2, 5, 9, 16, 12
    q, k, v = randn(rng, B, Hq, Lq, Dk), randn(rng, B, Hkv, Lk, Dk), randn(rng, B, Hkv, Lk, Dv)
    r = client.attend(q, k, v, causal=True, return_weights=True)
    out, weights = attention_ref(q, k, v, causal=True)
    assert r.variant == "gqa"
    assert r.output.dtype == np.float32
    assert_close(r.output, out, atol=1e-5)
    assert_close(r.weights, weights, atol=1e-5)
    assert r.timing.flops > 0
    assert r.timing.compute_us >= 0


def test_attend_bf16_compute_within_its_bound(client, rng):
    B, Hq, Hkv, Lq, Lk, Dk, Dv = 1, 4, 2, 6, 9, 16, 16
    q, k, v = randn(rng, B, Hq, Lq, Dk), randn(rng, B, Hkv, Lk, Dk), randn(rng, B, Hkv, Lk, Dv)
    out, _ = attention_ref(q, k, v, causal=True)
    r = client.attend(q, k, v, causal=True, compute_dtype="bfloat16")
    err = np.max(np.abs(r.output - out)) / np.max(np.abs(out))
    assert 1e-7 < err < 1e-2
    with pytest.raises(ValueError, match="compute_dtype"):
        client.attend(q, k, v, compute_dtype="complex")


def test_decode_with_an_int8_cache(client, rng):
    x = randn(rng, 1, 7, 512)
    f32 = [s.output for s in client.decode("demo-gqa", [x[:, :4], x[:, 4:]])]
    steps = list(client.decode("demo-gqa", [x[:, :4], x[:, 4:]], kv_cache_dtype="int8"))
    # demo-gqa: 2 kv heads x (64 + 64 bytes + 8 of scales) per token.
    assert steps[-1].kv_cache_bytes == 7 * 272
    for got, want in zip(steps, f32):
        assert np.max(np.abs(got.output - want)) / np.max(np.abs(want)) < 2e-2


def test_attend_gqa_causal_fp16(client, rng):
    B, Hq, Hkv, Lq, Lk, Dk, Dv = 2, 8, 2, 6, 6, 16, 16
    q = randn(rng, B, Hq, Lq, Dk).astype(np.float16)
    k = randn(rng, B, Hkv, Lk, Dk).astype(np.float16)
    v = randn(rng, B, Hkv, Lk, Dv).astype(np.float16)
    r = client.attend(q, k, v, causal=True, dtype=np.float16)
    assert r.output.dtype == np.float16
    assert_close(r.output, attention_ref(q, k, v, causal=True)[0], atol=1e-2)
    # FP16 in, FP32 out.
    r32 = client.attend(q, k, v, causal=True, dtype=np.float16, output_dtype=np.float32)
    assert r32.output.dtype == np.float32
    assert_close(r32.output, attention_ref(q, k, v, causal=True)[0], atol=1e-5)


def test_attend_bfloat16_results_are_exact_bfloat16_values(client, rng):
    B, Hq, Hkv, L, D = 1, 4, 1, 7, 8
    q, k, v = randn(rng, B, Hq, L, D), randn(rng, B, Hkv, L, D), randn(rng, B, Hkv, L, D)
    r = client.attend(q, k, v, causal=True, dtype="bfloat16")
    assert r.variant == "mqa"
    assert r.output.dtype == np.float32
    np.testing.assert_array_equal(r.output, round_to_bfloat16(r.output))
    qb, kb, vb = (round_to_bfloat16(t) for t in (q, k, v))
    assert_close(r.output, attention_ref(qb, kb, vb, causal=True)[0], atol=3e-2)


def test_attend_float64_input_is_rounded_to_float32(client, rng):
    q, k, v = (rng.standard_normal((1, 2, 3, 8)) for _ in range(3))  # float64
    r = client.attend(q, k, v)
    assert r.output.dtype == np.float32
    assert_close(r.output, attention_ref(q, k, v)[0], atol=1e-5)


def test_attend_masks(client, rng):
    B, H, Lq, Lk, D = 2, 2, 4, 6, 8
    q, k, v = randn(rng, B, H, Lq, D), randn(rng, B, H, Lk, D), randn(rng, B, H, Lk, D)
    keep = rng.random((Lq, Lk)) > 0.3
    keep[1, :] = False  # a fully masked row averages all (unpadded) values
    r = client.attend(q, k, v, key_lengths=[6, 3], keep=keep, scale=0.5)
    assert r.variant == "mha"
    ref, _ = attention_ref(q, k, v, key_lengths=[6, 3], keep=keep, scale=0.5)
    assert_close(r.output, ref, atol=1e-5)
    assert_close(r.output[:, :, 1], v.mean(axis=2), atol=1e-5)
    # A 0/1 integer mask keeps the same entries as the bool one.
    r01 = client.attend(q, k, v, key_lengths=[6, 3], keep=keep.astype(np.int32), scale=0.5)
    np.testing.assert_array_equal(r01.output, r.output)


def _terms_ref(q, k, v, scale, window=0, softcap=0.0, sinks=None):
    """Attention with a sliding window, a logit soft-cap and sinks, in float64:
    returns (output, lse). q [B,Hq,Lq,D], k/v [B,Hkv,Lk,D], sinks [Hq]."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    B, Hq, Lq, _ = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    k = np.repeat(k, Hq // Hkv, axis=1)
    v = np.repeat(v, Hq // Hkv, axis=1)
    s = (q @ k.transpose(0, 1, 3, 2)) * scale
    if softcap:
        s = softcap * np.tanh(s / softcap)
    if window:
        p = np.arange(Lq)[:, None] + (Lk - Lq)
        j = np.arange(Lk)[None, :]
        s = np.where((j >= p - window + 1) & (j <= p), s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    if sinks is not None:
        m = np.maximum(m, np.asarray(sinks, np.float64).reshape(1, Hq, 1, 1))
    e = np.exp(s - m)
    denom = e.sum(axis=-1, keepdims=True)
    if sinks is not None:
        denom = denom + np.exp(np.asarray(sinks, np.float64).reshape(1, Hq, 1, 1) - m)
    return (e / denom) @ v, (np.log(denom) + m)[..., 0]


def test_attend_sliding_window_softcap_sinks_and_lse(client, rng):
    B, Hq, Hkv, Lq, Lk, D = 2, 4, 2, 5, 9, 8
    q, k, v = randn(rng, B, Hq, Lq, D) * 3, randn(rng, B, Hkv, Lk, D), randn(rng, B, Hkv, Lk, D)
    sinks = randn(rng, Hq)
    r = client.attend(q, k, v, scale=0.5, sliding_window=3, logit_softcap=2.5, sinks=sinks,
                      return_lse=True, return_weights=True)
    out, lse = _terms_ref(q, k, v, 0.5, window=3, softcap=2.5, sinks=sinks)
    assert r.variant == "gqa"
    assert_close(r.output, out, atol=1e-5)
    assert r.lse.dtype == np.float32 and r.lse.shape == (B, Hq, Lq)
    assert_close(r.lse, lse, atol=1e-5)
    # The sink takes probability mass: each row's weights sum to < 1, and
    # keys outside the window get none.
    assert np.all(r.weights.sum(axis=-1) < 1)
    assert np.all(r.weights[:, :, -1, :Lk - 3] == 0)
    # Each term alone; sinks as a list; no lse unless asked.
    for kwargs in ({"sliding_window": 2}, {"logit_softcap": 1.0}, {"sinks": list(map(float, sinks))}):
        r1 = client.attend(q, k, v, scale=0.5, return_lse=True, **kwargs)
        out1, lse1 = _terms_ref(q, k, v, 0.5, window=kwargs.get("sliding_window", 0),
                                softcap=kwargs.get("logit_softcap", 0.0), sinks=kwargs.get("sinks"))
        assert_close(r1.output, out1, atol=1e-5)
        assert_close(r1.lse, lse1, atol=1e-5)
    assert client.attend(q, k, v).lse is None
    # Bad terms name the field.
    for kwargs, field in (({"sliding_window": -1}, "mask.sliding_window"),
                          ({"logit_softcap": -1.0}, "logit_softcap"),
                          ({"sinks": np.zeros(3)}, "sinks")):
        e = raises_code(grpc.StatusCode.INVALID_ARGUMENT, client.attend, q, k, v, **kwargs)
        assert field in e.details


def test_attend_lse_merges_key_shards(client, rng):
    B, H, Lq, Lk, D = 1, 2, 3, 8, 8
    q, k, v = randn(rng, B, H, Lq, D), randn(rng, B, H, Lk, D), randn(rng, B, H, Lk, D)
    sinks = randn(rng, H)
    full = client.attend(q, k, v, sinks=sinks, return_lse=True)
    a = client.attend(q, k[:, :, :5], v[:, :, :5], sinks=sinks, return_lse=True)
    b = client.attend(q, k[:, :, 5:], v[:, :, 5:], return_lse=True)
    lse = np.logaddexp(a.lse, b.lse)
    out = np.exp(a.lse - lse)[..., None] * a.output + np.exp(b.lse - lse)[..., None] * b.output
    assert_close(lse, full.lse, atol=1e-5)
    assert_close(out, full.output, atol=1e-5)


def test_attend_bad_head_sharing_names_hkv(client, rng):
    q, k, v = randn(rng, 1, 6, 3, 8), randn(rng, 1, 4, 3, 8), randn(rng, 1, 4, 3, 8)
    e = raises_code(grpc.StatusCode.INVALID_ARGUMENT, client.attend, q, k, v)
    assert "Hkv" in e.details
    assert "Hkv" in str(e)


def test_attend_bad_mask_names_the_field(client, rng):
    q, k, v = randn(rng, 2, 2, 3, 8), randn(rng, 2, 2, 4, 8), randn(rng, 2, 2, 4, 8)
    e = raises_code(grpc.StatusCode.INVALID_ARGUMENT, client.attend, q, k, v, key_lengths=[1])
    assert "mask.key_lengths" in e.details


# -- Modules ------------------------------------------------------------------


def test_mha_state_dict_forward(client, rng):
    sd = attention_state_dict(rng, D_MODEL, HEADS, HEADS)
    info = client.load_module("py-mha", {"d_model": D_MODEL, "bias": True,
                                         "mha": {"num_heads": HEADS}}, state_dict=sd)
    assert info.name == "py-mha"
    assert info.config["mha"] == {"num_heads": HEADS}
    assert info.parameter_count == sum(a.size for a in sd.values())
    assert info.kv_cache_bytes_per_token == 2 * D_MODEL * 4
    assert "py-mha" in [m.name for m in client.list_modules()]

    x = randn(rng, 2, 7, D_MODEL)
    r = client.forward("py-mha", x, causal=True, return_weights=True)
    assert r.output.shape == (2, 7, D_MODEL)
    assert r.weights.shape == (2, HEADS, 7, 7)
    assert_close(r.output, attention_layer_ref(sd, x, x, x, HEADS, HEADS, causal=True),
                 atol=1e-4)

    # Cross-attention, not causal.
    kv = randn(rng, 2, 5, D_MODEL)
    r = client.forward("py-mha", x, key=kv, value=kv)
    assert_close(r.output, attention_layer_ref(sd, x, kv, kv, HEADS, HEADS), atol=1e-4)

    raises_code(grpc.StatusCode.ALREADY_EXISTS, client.load_module,
                "py-mha", {"d_model": D_MODEL, "mha": {"num_heads": 4}})
    client.unload_module("py-mha")
    assert "py-mha" not in [m.name for m in client.list_modules()]
    raises_code(grpc.StatusCode.NOT_FOUND, client.forward, "py-mha", x)


def test_gqa_state_dict_forward(client, rng):
    Hq, Hkv = 8, 2
    sd = attention_state_dict(rng, D_MODEL, Hq, Hkv)
    assert sd["W_k.weight"].shape == (Hkv * D_MODEL // Hq, D_MODEL)
    info = client.load_module(
        "py-gqa", {"d_model": D_MODEL, "gqa": {"num_q_heads": Hq, "num_kv_heads": Hkv},
                   "bias": True}, state_dict=sd)
    assert info.kv_cache_bytes_per_token == 2 * Hkv * (D_MODEL // Hq) * 4
    x = randn(rng, 3, 6, D_MODEL)
    r = client.forward("py-gqa", x, causal=True)
    assert_close(r.output, attention_layer_ref(sd, x, x, x, Hq, Hkv, causal=True), atol=1e-4)
    client.unload_module("py-gqa")


def test_bad_weight_shape_names_the_weight(client, rng):
    sd = attention_state_dict(rng, D_MODEL, HEADS, HEADS)
    sd["W_k.weight"] = sd["W_k.weight"][:32]
    e = raises_code(grpc.StatusCode.INVALID_ARGUMENT, client.load_module,
                    "py-bad", {"d_model": D_MODEL, "mha": {"num_heads": 4}}, state_dict=sd)
    assert "W_k.weight" in e.details


def test_unknown_module_is_not_found(client, rng):
    x = randn(rng, 1, 2, 8)
    e = raises_code(grpc.StatusCode.NOT_FOUND, client.forward, "no-such", x)
    assert "no-such" in e.details
    raises_code(grpc.StatusCode.NOT_FOUND, client.unload_module, "no-such")
    raises_code(grpc.StatusCode.NOT_FOUND, client.decode, "no-such", [x])


def test_rope_layer_decode_matches_forward_at_absolute_positions(client, rng):
    config = {"d_model": D_MODEL, "gqa": {"num_q_heads": HEADS, "num_kv_heads": 2},
              "rope": {"style": "ROPE_NEOX", "theta": 10000.0}}
    info = client.load_module("py-rope", config, seed=3)
    assert info.config["rope"]["style"] == "ROPE_NEOX"
    tokens = randn(rng, 1, 7, D_MODEL)
    full = client.forward("py-rope", tokens, causal=True).output
    steps = list(client.decode("py-rope", np.split(tokens, [4, 5], axis=1), max_tokens=8))
    assert_close(np.concatenate([s.output for s in steps], axis=1), full, atol=1e-4)
    # Scores see relative positions only: the same tokens at offset 3 give
    # the same outputs (to rounding).
    shifted = client.forward("py-rope", tokens, causal=True, position_offset=3).output
    assert_close(shifted, full, atol=1e-4)
    client.unload_module("py-rope")


def test_sliding_window_and_sinks_layer(client, rng):
    H, d = HEADS, D_MODEL // HEADS
    config = {"d_model": D_MODEL, "gqa": {"num_q_heads": H, "num_kv_heads": 2}, "bias": False,
              "sliding_window": 3, "logit_softcap": 4.0, "attention_sinks": True}
    sd = {"W_q.weight": randn(rng, D_MODEL, D_MODEL) * 0.2,
          "W_k.weight": randn(rng, 2 * d, D_MODEL) * 0.2,
          "W_v.weight": randn(rng, 2 * d, D_MODEL) * 0.2,
          "W_o.weight": randn(rng, D_MODEL, D_MODEL) * 0.2,
          "sinks": randn(rng, H)}
    info = client.load_module("py-swa", config, state_dict=sd)
    assert info.config["sliding_window"] == 3
    assert info.config["logit_softcap"] == 4.0
    assert info.config["attention_sinks"] is True
    assert [m.config["sliding_window"] for m in client.list_modules() if m.name == "py-swa"] == [3]
    # Forward equals Attend over the layer's own projections with the same terms.
    B, L = 2, 6
    x = randn(rng, B, L, D_MODEL)
    heads = lambda w, n: (x @ w.T).reshape(B, L, n, d).transpose(0, 2, 1, 3)
    q, k, v = heads(sd["W_q.weight"], H), heads(sd["W_k.weight"], 2), heads(sd["W_v.weight"], 2)
    want, _ = _terms_ref(q, k, v, 1 / np.sqrt(d), window=3, softcap=4.0, sinks=sd["sinks"])
    want = want.transpose(0, 2, 1, 3).reshape(B, L, D_MODEL) @ sd["W_o.weight"].T
    assert_close(client.forward("py-swa", x).output, want, atol=1e-4)
    # A narrower mask window applies; Decode reads the same window.
    narrower = client.forward("py-swa", x, sliding_window=2).output
    want2, _ = _terms_ref(q, k, v, 1 / np.sqrt(d), window=2, softcap=4.0, sinks=sd["sinks"])
    assert_close(narrower, want2.transpose(0, 2, 1, 3).reshape(B, L, D_MODEL) @ sd["W_o.weight"].T,
                 atol=1e-4)
    steps = list(client.decode("py-swa", [x[:, :4], x[:, 4:5], x[:, 5:]]))
    assert_close(np.concatenate([s.output for s in steps], axis=1), want, atol=1e-4)
    # Without the "sinks" weight the layer does not load; on mla the terms are refused.
    del sd["sinks"]
    e = raises_code(grpc.StatusCode.INVALID_ARGUMENT, client.load_module, "py-swa2", config,
                    state_dict=sd)
    assert "sinks" in e.details
    e = raises_code(grpc.StatusCode.INVALID_ARGUMENT, client.estimate,
                    {"d_model": 32, "mla": {"num_heads": 2, "kv_lora_rank": 8,
                                            "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
                                            "v_head_dim": 8}, "sliding_window": 4}, 1, 4)
    assert "config.sliding_window" in e.details
    client.unload_module("py-swa")


def test_mla_rope_interleave_is_accepted_and_shown(client):
    config = {"d_model": 32, "mla": {"num_heads": 2, "kv_lora_rank": 8, "qk_nope_head_dim": 8,
                                     "qk_rope_head_dim": 4, "v_head_dim": 8,
                                     "rope_interleave": True}}
    info = client.load_module("py-mla-il", config, seed=1)
    assert info.config["mla"]["rope_interleave"] is True
    assert client.estimate(config, batch=1, seq_len=4).parameters == info.parameter_count
    client.unload_module("py-mla-il")


def test_decode_matches_forward(client, rng):
    sd = attention_state_dict(rng, D_MODEL, HEADS, HEADS)
    info = client.load_module("py-dec", {"d_model": D_MODEL, "mha": {"num_heads": HEADS}},
                              state_dict=sd)
    sizes = [5, 1, 1, 3, 1]
    B = 2
    tokens = randn(rng, B, sum(sizes), D_MODEL)
    chunks = np.split(tokens, np.cumsum(sizes)[:-1], axis=1)

    def produce():  # a generator: chunks are streamed as produced
        yield from chunks

    steps = list(client.decode("py-dec", produce(), max_tokens=16))
    assert [s.output.shape for s in steps] == [(B, n, D_MODEL) for n in sizes]
    assert [s.cached_tokens for s in steps] == list(np.cumsum(sizes))
    assert [s.kv_cache_bytes for s in steps] == [
        n * B * info.kv_cache_bytes_per_token for n in np.cumsum(sizes)]
    full = client.forward("py-dec", tokens, causal=True).output
    assert_close(np.concatenate([s.output for s in steps], axis=1), full, atol=1e-4)
    assert_close(full, attention_layer_ref(sd, tokens, tokens, tokens, HEADS, HEADS,
                                           causal=True), atol=1e-4)

    # Past max_tokens: FAILED_PRECONDITION ends the stream.
    raises_code(grpc.StatusCode.FAILED_PRECONDITION, client.decode, "py-dec", chunks,
                max_tokens=6)
    client.unload_module("py-dec")


def test_random_init_and_estimate(client, rng):
    config = {"d_model": 32, "gqa": {"num_q_heads": 4, "num_kv_heads": 2}, "bias": False}
    info = client.load_module("py-rand", config, seed=7)
    assert info.config == {**config, "kv_cache_dtype": "DTYPE_UNSPECIFIED",
                           "compute_dtype": "DTYPE_UNSPECIFIED",  # float32
                           "qk_norm": False, "norm_eps": 0.0, "scale": 0.0,
                           "sliding_window": 0, "logit_softcap": 0.0, "attention_sinks": False,
                           "head_dim": 0}
    est = client.estimate(config, batch=2, seq_len=10)
    assert est.parameters == info.parameter_count
    assert est.kv_cache_bytes_per_token == info.kv_cache_bytes_per_token
    assert est.kv_cache_bytes == 2 * 10 * info.kv_cache_bytes_per_token
    assert est.prefill_flops > 0
    # Same seed, same weights: replace and get the same output.
    x = randn(rng, 1, 4, 32)
    a = client.forward("py-rand", x).output
    client.load_module("py-rand", config, seed=7, replace=True)
    np.testing.assert_array_equal(client.forward("py-rand", x).output, a)
    client.unload_module("py-rand")
    raises_code(grpc.StatusCode.INVALID_ARGUMENT, client.estimate,
                {"d_model": 100, "mha": {"num_heads": 3}}, 1, 1)


# -- Server -------------------------------------------------------------------


def test_server_info_and_health(client):
    info = client.server_info()
    assert info["version"]
    assert sorted(info["variants"]) == sorted(["self_attention", "mha", "gqa", "mqa", "mla"])
    assert info["limits"]["max_message_bytes"] > 0
    assert client.health() == "SERVING"
    names = {m.name for m in client.list_modules()}
    assert {"demo-sa", "demo-mha", "demo-gqa", "demo-mqa", "demo-mla"} <= names


def test_kv_cache_dtype_counts_the_stored_bytes(client, rng):
    # GQA d_model 32, 4 / 2 heads of 8: int8 K and V of 2 heads plus their scales.
    config = {"d_model": 32, "gqa": {"num_q_heads": 4, "num_kv_heads": 2}, "kv_cache_dtype": "int8"}
    info = client.load_module("py-int8", config, seed=3)
    assert info.config["kv_cache_dtype"] == "DTYPE_INT8"
    assert info.kv_cache_bytes_per_token == 2 * (8 + 8 + 8)
    steps = list(client.decode("py-int8", [rng.standard_normal((1, 3, 32)).astype(np.float32)]))
    assert steps[0].kv_cache_bytes == 3 * info.kv_cache_bytes_per_token
    client.unload_module("py-int8")
