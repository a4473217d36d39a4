#!/usr/bin/env python3
"""Generate golden reference data for the C++ attention tests.

Run from the repository root with Debian's Python (it has torch and numpy):

    /usr/bin/python3 tests/golden/make_golden.py

The script is deterministic (float32, CPU, one thread, torch.manual_seed per
case) and rewrites tests/golden/data/ completely on every run.  CI never runs
it; the C++ tests only read the committed files.

Layout of tests/golden/data/:
  manifest.txt            one line per case: `<case_name> key=value ...`
                          (`#` lines are comments, integer lists are
                          comma-separated without spaces)
  <case_name>/*.npy       inputs, keep-mask, expected output and softmax
                          weights (float32 '<f4', masks uint8 '|u1', 1 = keep)
  <case_name>/sd/*.npy    (module cases) the module's state_dict, one file per
                          entry, named `<state_dict key>.npy`

Mask semantics (all AND-ed, broadcast to [B,H,Lq,Lk]):
  causal=1       query i sees key j iff j <= i + (Lk - Lq)  (bottom-right)
  key_lengths    keys j >= key_lengths[b] are masked for batch row b
  keep=<shape>   keep.npy (uint8) broadcast NumPy-style
Masked scores are replaced by -1e9 after scaling, then softmax over keys, so
a fully masked row gives uniform weights (the mean of all values).
"""

import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
MASK_FILL = -1e9


# --------------------------------------------------------------------------
# Reference modules
# --------------------------------------------------------------------------

def masked_softmax(scores, mask):
    """scores [B,H,Lq,Lk]; mask: bool keep-mask broadcastable, or None."""
    if mask is not None:
        scores = scores.masked_fill(mask == 0, MASK_FILL)
    return torch.softmax(scores, dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, d_model, d_k, d_v, bias=True):
        super().__init__()
        self.d_k = d_k
        self.w_q = nn.Linear(d_model, d_k, bias=bias)
        self.w_k = nn.Linear(d_model, d_k, bias=bias)
        self.w_v = nn.Linear(d_model, d_v, bias=bias)

    def forward(self, x_q, x_k, x_v, mask=None):
        q = self.w_q(x_q)                       # [B,Lq,d_k]
        k = self.w_k(x_k)                       # [B,Lk,d_k]
        v = self.w_v(x_v)                       # [B,Lk,d_v]
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        scores = scores.unsqueeze(1)            # [B,1,Lq,Lk]
        attn = masked_softmax(scores, mask)
        out = torch.matmul(attn.squeeze(1), v)  # [B,Lq,d_v]
        return out, attn


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        assert d_model % num_heads == 0
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        self.W_q = nn.Linear(d_model, d_model, bias=bias)
        self.W_k = nn.Linear(d_model, d_model, bias=bias)
        self.W_v = nn.Linear(d_model, d_model, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x_q, x_k, x_v, mask=None):
        B, Lq, _ = x_q.shape
        Lk = x_k.shape[1]
        H, D = self.num_heads, self.d_head
        q = self.W_q(x_q).view(B, Lq, H, D).transpose(1, 2)
        k = self.W_k(x_k).view(B, Lk, H, D).transpose(1, 2)
        v = self.W_v(x_v).view(B, Lk, H, D).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(D)
        attn = masked_softmax(scores, mask)
        out = torch.matmul(attn, v)
        out = out.transpose(1, 2).contiguous().view(B, Lq, self.d_model)
        return self.W_o(out), attn


class GroupedQueryAttention(nn.Module):
    def __init__(self, d_model, num_q_heads, num_kv_heads, bias=True):
        super().__init__()
        assert d_model % num_q_heads == 0
        assert num_q_heads % num_kv_heads == 0
        self.d_model = d_model
        self.num_q_heads = num_q_heads
        self.num_kv_heads = num_kv_heads
        self.d_head = d_model // num_q_heads
        self.W_q = nn.Linear(d_model, d_model, bias=bias)
        self.W_k = nn.Linear(d_model, num_kv_heads * self.d_head, bias=bias)
        self.W_v = nn.Linear(d_model, num_kv_heads * self.d_head, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x_q, x_k, x_v, mask=None):
        B, Lq, _ = x_q.shape
        Lk = x_k.shape[1]
        Hq, Hkv, D = self.num_q_heads, self.num_kv_heads, self.d_head
        q = self.W_q(x_q).view(B, Lq, Hq, D).transpose(1, 2)
        k = self.W_k(x_k).view(B, Lk, Hkv, D).transpose(1, 2)
        v = self.W_v(x_v).view(B, Lk, Hkv, D).transpose(1, 2)
        group = Hq // Hkv
        k = k.repeat_interleave(group, dim=1)   # query head h -> kv head h // group
        v = v.repeat_interleave(group, dim=1)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(D)
        attn = masked_softmax(scores, mask)
        out = torch.matmul(attn, v)
        out = out.transpose(1, 2).contiguous().view(B, Lq, self.d_model)
        return self.W_o(out), attn


class MultiQueryAttention(GroupedQueryAttention):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__(d_model, num_heads, 1, bias=bias)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return x * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((-x2, x1), dim=-1)


def rope_cos_sin(length, dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    pos = torch.arange(length, dtype=torch.float32)
    freqs = torch.outer(pos, inv_freq)           # [L, dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)      # [L, dim]
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    """x [..., L, dim]; cos/sin [L, dim]."""
    return x * cos + rotate_half(x) * sin


class MultiHeadLatentAttention(nn.Module):
    """DeepSeek-V2 MLA (arXiv 2405.04434), naive (non-absorbed) form."""

    def __init__(self, d_model, num_heads, q_lora_rank, kv_lora_rank,
                 qk_nope_head_dim, qk_rope_head_dim, v_head_dim,
                 rope_theta=10000.0):
        super().__init__()
        assert qk_rope_head_dim % 2 == 0
        self.num_heads = num_heads
        self.q_lora_rank = q_lora_rank
        self.kv_lora_rank = kv_lora_rank
        self.nope = qk_nope_head_dim
        self.rope = qk_rope_head_dim
        self.v_dim = v_head_dim
        self.rope_theta = rope_theta
        H = num_heads
        qk_dim = qk_nope_head_dim + qk_rope_head_dim
        if q_lora_rank > 0:
            self.q_a_proj = nn.Linear(d_model, q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(q_lora_rank, eps=1e-6)
            self.q_b_proj = nn.Linear(q_lora_rank, H * qk_dim, bias=False)
        else:
            self.q_proj = nn.Linear(d_model, H * qk_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d_model, kv_lora_rank + qk_rope_head_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(kv_lora_rank, eps=1e-6)
        self.kv_b_proj = nn.Linear(kv_lora_rank, H * (qk_nope_head_dim + v_head_dim), bias=False)
        self.o_proj = nn.Linear(H * v_head_dim, d_model, bias=False)
        self.scale = 1.0 / math.sqrt(qk_dim)

    def forward(self, x_q, x_kv, mask=None):
        B, Lq, _ = x_q.shape
        Lk = x_kv.shape[1]
        H, nope, rope, vd = self.num_heads, self.nope, self.rope, self.v_dim
        if self.q_lora_rank > 0:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x_q)))
        else:
            q = self.q_proj(x_q)
        q = q.view(B, Lq, H, nope + rope).transpose(1, 2)        # [B,H,Lq,nope+rope]
        q_nope, q_rope = torch.split(q, [nope, rope], dim=-1)

        kv_in = self.kv_a_proj_with_mqa(x_kv)
        c_kv, k_rope = torch.split(kv_in, [self.kv_lora_rank, rope], dim=-1)
        kv = self.kv_b_proj(self.kv_a_layernorm(c_kv))
        kv = kv.view(B, Lk, H, nope + vd).transpose(1, 2)        # [B,H,Lk,nope+v]
        k_nope, v = torch.split(kv, [nope, vd], dim=-1)

        cos_q, sin_q = rope_cos_sin(Lq, rope, self.rope_theta)
        cos_k, sin_k = rope_cos_sin(Lk, rope, self.rope_theta)
        q_rope = apply_rope(q_rope, cos_q, sin_q)
        k_rope = apply_rope(k_rope, cos_k, sin_k).unsqueeze(1)  # [B,1,Lk,rope] shared
        k_rope = k_rope.expand(B, H, Lk, rope)

        q_full = torch.cat((q_nope, q_rope), dim=-1)
        k_full = torch.cat((k_nope, k_rope), dim=-1)
        scores = torch.matmul(q_full, k_full.transpose(-2, -1)) * self.scale
        attn = masked_softmax(scores, mask)
        out = torch.matmul(attn, v)                               # [B,H,Lq,v]
        out = out.transpose(1, 2).contiguous().view(B, Lq, H * vd)
        return self.o_proj(out), attn


# --------------------------------------------------------------------------
# Masks and plain SDPA reference
# --------------------------------------------------------------------------

def build_mask(B, H, Lq, Lk, causal=False, key_lengths=None, keep=None):
    """Returns a bool keep-mask [B,H,Lq,Lk] (numpy) or None if unmasked."""
    if not causal and key_lengths is None and keep is None:
        return None
    m = np.ones((B, H, Lq, Lk), dtype=bool)
    i = np.arange(Lq)[:, None]
    j = np.arange(Lk)[None, :]
    if causal:
        m &= (j <= i + (Lk - Lq))[None, None]
    if key_lengths is not None:
        kl = np.asarray(key_lengths)[:, None, None, None]
        m &= (np.arange(Lk)[None, None, None, :] < kl)
    if keep is not None:
        m &= np.broadcast_to(keep.astype(bool), m.shape)
    return m


def sdpa_reference(q, k, v, scale, mask):
    """q [B,Hq,Lq,Dk], k [B,Hkv,Lk,Dk], v [B,Hkv,Lk,Dv]; torch float32."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    attn = masked_softmax(scores, None if mask is None else torch.from_numpy(mask))
    return torch.matmul(attn, v), attn


def sdpa_numpy64(q, k, v, scale, mask):
    """Independent float64 NumPy recomputation (for self-checks)."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    Hq, Hkv = q.shape[1], k.shape[1]
    idx = np.arange(Hq) // (Hq // Hkv)
    k, v = k[:, idx], v[:, idx]
    s = np.einsum("bhqd,bhkd->bhqk", q, k) * scale
    if mask is not None:
        s = np.where(mask, s, MASK_FILL)
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bhkd->bhqd", p, v), p


# --------------------------------------------------------------------------
# Self-checks
# --------------------------------------------------------------------------

def check_close(name, what, got, ref, tol=1e-5):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (name, what, got.shape, ref.shape)
    err = np.max(np.abs(got - ref)) if got.size else 0.0
    assert np.allclose(got, ref, rtol=tol, atol=tol), f"{name}: {what} max abs err {err}"


def check_rows_sum_to_one(name, w):
    s = w.sum(-1)
    assert np.allclose(s, 1.0, atol=1e-5), f"{name}: weights rows do not sum to 1"
    assert np.all(w >= 0), f"{name}: negative weights"


def check_masked_zero(name, w, mask):
    """Masked entries of rows that are not fully masked must be exactly 0."""
    if mask is None:
        return
    m = np.broadcast_to(mask, w.shape)
    partial = m.any(-1, keepdims=True)
    bad = (~m) & partial & (w != 0)
    assert not bad.any(), f"{name}: masked entries with non-zero weight"
    full = ~m.any(-1)
    if full.any():
        Lk = w.shape[-1]
        assert np.allclose(w[full], 1.0 / Lk, atol=1e-6), f"{name}: fully masked row not uniform"


def np_linear(sd, prefix, x):
    y = x @ sd[prefix + ".weight"].astype(np.float64).T
    if prefix + ".bias" in sd:
        y = y + sd[prefix + ".bias"]
    return y


def check_projected_module(name, variant, cfg, sd, xq, xk, xv, mask, out, w):
    """Independent float64 NumPy recomputation of the non-MLA layers."""
    xq, xk, xv = (np.asarray(a, dtype=np.float64) for a in (xq, xk, xv))
    B, Lq, _ = xq.shape
    Lk = xk.shape[1]
    if variant == "self_attention":
        q = np_linear(sd, "w_q", xq)[:, None]
        k = np_linear(sd, "w_k", xk)[:, None]
        v = np_linear(sd, "w_v", xv)[:, None]
        o, p = sdpa_numpy64(q, k, v, 1.0 / math.sqrt(cfg["d_k"]), mask)
        o = o[:, 0]
    else:
        Hq = cfg.get("num_heads", cfg.get("num_q_heads"))
        Hkv = {"mha": Hq, "mqa": 1}.get(variant, cfg.get("num_kv_heads"))
        D = cfg["d_model"] // Hq
        q = np_linear(sd, "W_q", xq).reshape(B, Lq, Hq, D).transpose(0, 2, 1, 3)
        k = np_linear(sd, "W_k", xk).reshape(B, Lk, Hkv, D).transpose(0, 2, 1, 3)
        v = np_linear(sd, "W_v", xv).reshape(B, Lk, Hkv, D).transpose(0, 2, 1, 3)
        o, p = sdpa_numpy64(q, k, v, 1.0 / math.sqrt(D), mask)
        o = np_linear(sd, "W_o", o.transpose(0, 2, 1, 3).reshape(B, Lq, Hq * D))
    check_close(name, "weights vs numpy64", w, p)
    check_close(name, "output vs numpy64", out, o)


def mla_absorbed(m, x_q, x_kv, mask):
    """Independent absorbed-form MLA in float64: W_UK folded into the query,
    attention over the latent [RMSNorm(c_kv) | roped k_rope], W_UV applied after."""
    d = torch.float64
    x_q, x_kv = x_q.to(d), x_kv.to(d)
    H, nope, rope, vd, r = m.num_heads, m.nope, m.rope, m.v_dim, m.kv_lora_rank
    B, Lq, _ = x_q.shape
    Lk = x_kv.shape[1]

    def rms(x, w, eps):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w.to(d)

    def rope_pairs(x, theta):
        # x [..., L, rope]; element i pairs with i + rope/2 (rotate-half layout)
        L, half = x.shape[-2], rope // 2
        ang = torch.arange(L, dtype=d)[:, None] * \
            torch.tensor([theta ** (-2.0 * i / rope) for i in range(half)], dtype=d)[None, :]
        c, s = torch.cos(ang), torch.sin(ang)
        a, b = x[..., :half], x[..., half:]
        return torch.cat((a * c - b * s, b * c + a * s), dim=-1)

    if m.q_lora_rank > 0:
        cq = rms(x_q @ m.q_a_proj.weight.to(d).T, m.q_a_layernorm.weight, m.q_a_layernorm.eps)
        q = cq @ m.q_b_proj.weight.to(d).T
    else:
        q = x_q @ m.q_proj.weight.to(d).T
    q = q.reshape(B, Lq, H, nope + rope)
    q_nope, q_pe = q[..., :nope], q[..., nope:]
    q_pe = rope_pairs(q_pe.permute(0, 2, 1, 3), m.rope_theta)          # [B,H,Lq,rope]

    kv_in = x_kv @ m.kv_a_proj_with_mqa.weight.to(d).T
    c = rms(kv_in[..., :r], m.kv_a_layernorm.weight, m.kv_a_layernorm.eps)  # [B,Lk,r]
    k_pe = rope_pairs(kv_in[..., r:], m.rope_theta)                    # [B,Lk,rope]

    W = m.kv_b_proj.weight.to(d).view(H, nope + vd, r)
    W_UK, W_UV = W[:, :nope, :], W[:, nope:, :]
    q_lat = torch.einsum("bqhn,hnr->bhqr", q_nope, W_UK)
    s = torch.einsum("bhqr,bkr->bhqk", q_lat, c) + torch.einsum("bhqp,bkp->bhqk", q_pe, k_pe)
    s = s / math.sqrt(nope + rope)
    if mask is not None:
        s = s.masked_fill(~torch.from_numpy(np.broadcast_to(mask, s.shape).copy()), MASK_FILL)
    p = torch.softmax(s, dim=-1)
    o_lat = torch.einsum("bhqk,bkr->bhqr", p, c)
    o = torch.einsum("bhqr,hvr->bqhv", o_lat, W_UV).reshape(B, Lq, H * vd)
    return o @ m.o_proj.weight.to(d).T, p


# --------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------

def save(dirpath, name, arr):
    arr = np.asarray(arr)
    if arr.dtype == np.bool_ or arr.dtype == np.uint8:
        arr = np.ascontiguousarray(arr.astype(np.uint8))
        assert arr.dtype.str == "|u1"
    else:
        arr = np.ascontiguousarray(arr.astype("<f4"))
        assert arr.dtype.str == "<f4"
    np.save(os.path.join(dirpath, name + ".npy"), arr)


def to_np(t):
    return t.detach().cpu().contiguous().numpy()


def ints(xs):
    return ",".join(str(int(x)) for x in xs)


def fmt(v):
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return ints(v)
    return str(v)


def random_keep(gen_shape, p_keep=0.7, ensure_row=True):
    keep = (torch.rand(gen_shape) < p_keep)
    if ensure_row:
        # guarantee at least one kept key per row
        flat = keep.reshape(-1, gen_shape[-1])
        empty = ~flat.any(-1)
        flat[empty, 0] = True
        keep = flat.reshape(gen_shape)
    return keep.numpy().astype(np.uint8)


MANIFEST = []


# --------------------------------------------------------------------------
# Case kind A: plain SDPA over projected heads
# --------------------------------------------------------------------------

def sdpa_case(name, seed, B, Hq, Hkv, Lq, Lk, Dk, Dv, scale=0.0, causal=False,
              key_lengths=None, keep_fn=None):
    torch.manual_seed(seed)
    q = torch.randn(B, Hq, Lq, Dk)
    k = torch.randn(B, Hkv, Lk, Dk)
    v = torch.randn(B, Hkv, Lk, Dv)
    keep = keep_fn() if keep_fn is not None else None
    eff_scale = scale if scale != 0.0 else 1.0 / math.sqrt(Dk)
    mask = build_mask(B, Hq, Lq, Lk, causal, key_lengths, keep)
    out, w = sdpa_reference(q, k, v, eff_scale, mask)
    out, w = to_np(out), to_np(w)

    check_rows_sum_to_one(name, w)
    check_masked_zero(name, w, mask)
    o64, w64 = sdpa_numpy64(to_np(q), to_np(k), to_np(v), eff_scale, mask)
    check_close(name, "weights vs numpy64", w, w64)
    check_close(name, "output vs numpy64", out, o64)

    d = os.path.join(DATA, name)
    os.makedirs(d)
    save(d, "query", to_np(q))
    save(d, "key", to_np(k))
    save(d, "value", to_np(v))
    if keep is not None:
        save(d, "keep", keep)
    save(d, "output", out)
    save(d, "weights", w)

    kv = [("kind", "sdpa"), ("B", B), ("Hq", Hq), ("Hkv", Hkv), ("Lq", Lq), ("Lk", Lk),
          ("Dk", Dk), ("Dv", Dv), ("scale", float(scale) if scale != 0.0 else 0),
          ("causal", int(causal))]
    if key_lengths is not None:
        kv.append(("key_lengths", list(key_lengths)))
    if keep is not None:
        kv.append(("keep", list(keep.shape)))
    MANIFEST.append(name + " " + " ".join(f"{k_}={fmt(v_)}" for k_, v_ in kv))


# --------------------------------------------------------------------------
# Case kind B: whole modules
# --------------------------------------------------------------------------

def randomize_params(m):
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, RMSNorm):
                mod.weight.copy_(1.0 + 0.1 * torch.randn_like(mod.weight))
            elif isinstance(mod, nn.Linear) and mod.bias is not None:
                # default init is already random non-zero; make it a bit larger
                mod.bias.copy_(0.1 * torch.randn_like(mod.bias))


def module_case(name, seed, variant, cfg, B, Lq, Lk, causal=False, cross=False,
                key_lengths=None, keep_fn=None, value_differs=True):
    torch.manual_seed(seed)
    d_model = cfg["d_model"]
    bias = bool(cfg.get("bias", 0))
    if variant == "self_attention":
        m = SelfAttention(d_model, cfg["d_k"], cfg["d_v"], bias=bias)
        H = 1
        cfg_keys = ["d_k", "d_v"]
    elif variant == "mha":
        m = MultiHeadAttention(d_model, cfg["num_heads"], bias=bias)
        H = cfg["num_heads"]
        cfg_keys = ["num_heads"]
    elif variant == "gqa":
        m = GroupedQueryAttention(d_model, cfg["num_q_heads"], cfg["num_kv_heads"], bias=bias)
        H = cfg["num_q_heads"]
        cfg_keys = ["num_q_heads", "num_kv_heads"]
    elif variant == "mqa":
        m = MultiQueryAttention(d_model, cfg["num_heads"], bias=bias)
        H = cfg["num_heads"]
        cfg_keys = ["num_heads"]
    elif variant == "mla":
        assert not bias
        m = MultiHeadLatentAttention(d_model, cfg["num_heads"], cfg["q_lora_rank"],
                                     cfg["kv_lora_rank"], cfg["qk_nope_head_dim"],
                                     cfg["qk_rope_head_dim"], cfg["v_head_dim"],
                                     cfg["rope_theta"])
        H = cfg["num_heads"]
        cfg_keys = ["num_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                    "qk_rope_head_dim", "v_head_dim", "rope_theta"]
    else:
        raise ValueError(variant)
    randomize_params(m)
    m.eval()

    if not cross:
        assert Lk == Lq
    x_q = torch.randn(B, Lq, d_model)
    if cross:
        x_k = torch.randn(B, Lk, d_model)
        if variant == "mla" or not value_differs:
            x_v = x_k
        else:
            x_v = torch.randn(B, Lk, d_model)
    else:
        x_k = x_v = x_q
    keep = keep_fn() if keep_fn is not None else None
    mask = build_mask(B, H, Lq, Lk, causal, key_lengths, keep)
    # modules get a [B,1,Lq,Lk] bool mask broadcast over heads (keep may carry H)
    tmask = None
    if mask is not None:
        tmask = torch.from_numpy(mask[:, :1].copy() if (mask == mask[:, :1]).all() else mask.copy())

    with torch.no_grad():
        if variant == "mla":
            out, w = m(x_q, x_k, tmask)
        else:
            out, w = m(x_q, x_k, x_v, tmask)
    out, w = to_np(out), to_np(w)
    sd = {k_: to_np(v_) for k_, v_ in m.state_dict().items()}

    assert w.shape == (B, H, Lq, Lk), (name, w.shape)
    check_rows_sum_to_one(name, w)
    check_masked_zero(name, w, mask)
    if variant == "mla":
        with torch.no_grad():
            o_abs, w_abs = mla_absorbed(m, x_q, x_k, mask)
        check_close(name, "MLA naive vs absorbed weights", w, to_np(w_abs))
        check_close(name, "MLA naive vs absorbed output", out, to_np(o_abs))
    else:
        check_projected_module(name, variant, cfg, sd, to_np(x_q), to_np(x_k), to_np(x_v),
                               mask, out, w)

    d = os.path.join(DATA, name)
    os.makedirs(os.path.join(d, "sd"))
    save(d, "query", to_np(x_q))
    if cross:
        save(d, "key", to_np(x_k))
        save(d, "value", to_np(x_v))
    if keep is not None:
        save(d, "keep", keep)
    save(d, "output", out)
    save(d, "weights", w)
    for k_, v_ in sd.items():
        save(os.path.join(d, "sd"), k_, v_)

    kv = [("kind", "module"), ("variant", variant), ("d_model", d_model), ("bias", int(bias))]
    kv += [(k_, cfg[k_]) for k_ in cfg_keys]
    kv += [("B", B), ("Lq", Lq), ("Lk", Lk), ("causal", int(causal)), ("cross", int(cross))]
    if key_lengths is not None:
        kv.append(("key_lengths", list(key_lengths)))
    if keep is not None:
        kv.append(("keep", list(keep.shape)))
    MANIFEST.append(name + " " + " ".join(f"{k_}={fmt(v_)}" for k_, v_ in kv))


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

def keep_mqa_fullrow():
    k = random_keep((5, 6))
    k[2, :] = 0                                  # query row 2 fully masked
    return k


def keep_b11l():
    k = np.ones((2, 1, 1, 7), dtype=np.uint8)
    k[0, 0, 0, [1, 4]] = 0
    k[1, 0, 0, [0, 5, 6]] = 0
    return k


def main():
    if os.path.isdir(DATA):
        shutil.rmtree(DATA)
    os.makedirs(DATA)

    # ---- kind=sdpa --------------------------------------------------------
    sdpa_case("sdpa_mha_dk_ne_dv", 101, B=2, Hq=4, Hkv=4, Lq=5, Lk=6, Dk=16, Dv=8)
    sdpa_case("sdpa_gqa_causal_keylen", 102, B=2, Hq=6, Hkv=2, Lq=3, Lk=7, Dk=8, Dv=8,
              causal=True, key_lengths=[7, 4])
    sdpa_case("sdpa_mqa_keep_fullrow", 103, B=2, Hq=4, Hkv=1, Lq=5, Lk=6, Dk=8, Dv=12,
              keep_fn=keep_mqa_fullrow)
    sdpa_case("sdpa_keep_b11l_scale", 104, B=2, Hq=2, Hkv=2, Lq=4, Lk=7, Dk=16, Dv=16,
              scale=0.375, keep_fn=keep_b11l)
    sdpa_case("sdpa_causal_lq_gt_lk", 105, B=2, Hq=2, Hkv=1, Lq=6, Lk=4, Dk=8, Dv=8,
              causal=True)
    sdpa_case("sdpa_decode_odd_dk", 106, B=2, Hq=4, Hkv=2, Lq=1, Lk=9, Dk=13, Dv=13,
              key_lengths=[9, 5])
    sdpa_case("sdpa_keep_full_causal", 107, B=2, Hq=4, Hkv=2, Lq=5, Lk=5, Dk=8, Dv=8,
              causal=True, keep_fn=lambda: random_keep((2, 4, 5, 5)))

    # ---- kind=module ------------------------------------------------------
    module_case("mod_self_attention_self_causal", 201, "self_attention",
                dict(d_model=16, d_k=12, d_v=20, bias=1), B=2, Lq=5, Lk=5, causal=True)
    module_case("mod_self_attention_cross_keylen", 202, "self_attention",
                dict(d_model=16, d_k=12, d_v=20, bias=1), B=2, Lq=4, Lk=7, cross=True,
                key_lengths=[7, 3])
    module_case("mod_mha_self_causal_bias", 203, "mha",
                dict(d_model=32, num_heads=4, bias=1), B=2, Lq=5, Lk=5, causal=True)
    module_case("mod_mha_cross_keylen_nobias", 204, "mha",
                dict(d_model=32, num_heads=4, bias=0), B=2, Lq=4, Lk=6, cross=True,
                key_lengths=[6, 2])
    module_case("mod_gqa_self_causal", 205, "gqa",
                dict(d_model=32, num_q_heads=8, num_kv_heads=2, bias=1), B=2, Lq=5, Lk=5,
                causal=True)
    module_case("mod_gqa_cross_keep", 206, "gqa",
                dict(d_model=32, num_q_heads=8, num_kv_heads=2, bias=1), B=2, Lq=4, Lk=6,
                cross=True, keep_fn=lambda: random_keep((2, 1, 4, 6)))
    module_case("mod_mqa_self_causal", 207, "mqa",
                dict(d_model=24, num_heads=6, bias=1), B=2, Lq=5, Lk=5, causal=True)
    mla_cfg = dict(d_model=32, num_heads=4, q_lora_rank=24, kv_lora_rank=16,
                   qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6,
                   rope_theta=10000.0, bias=0)
    module_case("mod_mla_self_causal_qlora", 208, "mla", mla_cfg, B=2, Lq=5, Lk=5,
                causal=True)
    module_case("mod_mla_self_noqlora_keylen", 209, "mla",
                dict(mla_cfg, q_lora_rank=0, rope_theta=500.0), B=2, Lq=6, Lk=6,
                key_lengths=[6, 4])
    module_case("mod_mla_cross", 210, "mla", mla_cfg, B=2, Lq=3, Lk=6, cross=True)

    with open(os.path.join(DATA, "manifest.txt"), "w") as f:
        f.write("# Golden attention cases, generated by tests/golden/make_golden.py -- do not edit.\n")
        f.write("# <case_name> key=value ...; see tests/golden/README.md\n")
        for line in MANIFEST:
            f.write(line + "\n")

    total = 0
    for root, _, files in os.walk(DATA):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    print(f"wrote {len(MANIFEST)} cases to {os.path.relpath(DATA)} ({total} bytes)")
    assert total < 1_000_000
    return 0


if __name__ == "__main__":
    sys.exit(main())
