"""NumPy references of the service's computations, in float64, and the
assertions the client tests share."""

import numpy as np
import pytest

from attention_client import AttentionError


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def assert_close(actual, expected, atol, rtol=0.0):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol)


def raises_code(code, fn, *args, **kwargs):
    """Calls fn (running it to the end if it returns a generator) and returns
    the AttentionError it raised, which must carry `code`."""
    with pytest.raises(AttentionError) as info:
        result = fn(*args, **kwargs)
        if hasattr(result, "__next__"):
            list(result)
    assert info.value.code == code, info.value.details
    return info.value


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
