#!/usr/bin/env python3
"""Golden data recorded from Hugging Face transformers' own attention modules.

Run from the repository root with the venv that scripts/setup-golden-venv.sh
creates:

    build/venv-golden/bin/python tests/golden/make_hf_golden.py

For every case the script builds a tiny whole model (1 or 2 layers, random
init, float32, CPU, eager attention) from the family's config class, with no
network and no checkpoint, re-initialises every parameter of the captured
attention module with non-trivial random values (biases, norm weights and
sinks included), runs the model over random `inputs_embeds` [B=2, L=11] at
positions 0..10 (no padding) and records, with a forward hook on
`model.layers[i].self_attn`, exactly the hidden states HF passes the module
and the output it returns. HF's own RoPE (with its frequency scaling: linear,
llama3, yarn), masks, softcap, sinks and scaling are thereby what is recorded.

Before writing a case the script recomputes the output independently in
float64 NumPy from the state_dict, the hidden states and the parameters written
into the manifest, and asserts a maximum error below 1e-5 of max |output|. It
also asserts that the mask HF passed the module is exactly the causal (+ window)
mask the manifest describes, that the inverse RoPE frequencies computed from
the manifest's rope_* keys equal HF's own `rotary_emb.inv_freq` buffer (to
1e-6 relative), that HF's attention factor and DeepSeek's softmax scale equal
the ones the keys give, and that each feature bites: the recomputation
with the other RoPE style, full rotary_dim, a window one wider or narrower,
no softcap, no sinks, no QK-norm or QK-norm after RoPE, 1/sqrt(head_dim)
in place of a custom scale, no RoPE scaling (and, for llama3, linear scaling
instead; for yarn, unscaled frequencies, attention factor 1, `truncate`
flipped, mscale ignored) misses by more than 1e-3. Interleaved (gptj /
rope_interleave) cases must also match NeoX RoPE after the rope rows of the
q and k projections are reordered evens-then-odds.

Positions stay 0..10 for the scaled cases too: RoPE scores depend only on the
distance between query and key (cos and sin scaled by one attention factor
included), so starting the positions at an offset changes nothing but HF's
float32 rounding (at offset 3000 HF's own output moves by up to 5e-5 of
max |output|, which no float64 recomputation can follow). Scaling only
changes low frequencies, which over distances up to 10 turn by small angles;
a larger init scale for the llama3 and yarn cases (INIT_SCALED) makes that
show in the output.

It deletes and rewrites tests/golden/hf/ completely (all but its README.md):
manifest.txt plus one <case>.safetensors per case (the module's state_dict
under its full HF names, e.g. `model.layers.0.self_attn.q_proj.weight`, plus
`hidden_states` and `output`, both [B, L, d_model], float32).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import math
import shutil
import sys

import numpy as np
import torch

import safetensors
import transformers
from safetensors.torch import save_file

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "hf")
B, L = 2, 11
TOL = 1e-5          # max |ref - hf| / max |hf|
MUST_MISS = 1e-3    # a perturbed description must miss by more than this


# --------------------------------------------------------------------------
# Case definitions: (case name, family, config class, model class, config
# kwargs, layer to capture, seed, init scale)
# --------------------------------------------------------------------------

def rope(theta, **extra):
    return {"rope_type": "default", "rope_theta": float(theta), **extra}


INIT_SCALED = 0.5   # init scale of the llama3 / yarn cases (so that their scaling bites)


COMMON = dict(vocab_size=32, intermediate_size=32, max_position_embeddings=64,
              attention_dropout=0.0, tie_word_embeddings=False,
              pad_token_id=0, bos_token_id=1, eos_token_id=2)

CASES = [
    dict(case="llama_gqa", family="llama", config="LlamaConfig", model="LlamaForCausalLM",
         kwargs=dict(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, head_dim=8,
                     num_hidden_layers=1, attention_bias=False, rope_parameters=rope(10000)),
         layer=0),
    dict(case="qwen2_bias", family="qwen2", config="Qwen2Config", model="Qwen2ForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=4,
                     num_hidden_layers=1, use_sliding_window=False, rope_parameters=rope(1e6)),
         layer=0),
    dict(case="qwen3_qknorm", family="qwen3", config="Qwen3Config", model="Qwen3ForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                     num_hidden_layers=1, attention_bias=False, rms_norm_eps=1e-6,
                     use_sliding_window=False, rope_parameters=rope(1e6)),
         layer=0),
    dict(case="mistral_window", family="mistral", config="MistralConfig", model="MistralForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                     num_hidden_layers=1, sliding_window=4, rope_parameters=rope(10000)),
         layer=0),
    dict(case="gemma2_local", family="gemma2", config="Gemma2Config", model="Gemma2ForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     num_hidden_layers=2, attention_bias=False, sliding_window=4,
                     query_pre_attn_scalar=12, attn_logit_softcapping=2.0,
                     final_logit_softcapping=None, rope_parameters=rope(10000)),
         layer=0),
    dict(case="gemma2_global", family="gemma2", config="Gemma2Config", model="Gemma2ForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     num_hidden_layers=2, attention_bias=False, sliding_window=4,
                     query_pre_attn_scalar=12, attn_logit_softcapping=2.0,
                     final_logit_softcapping=None, rope_parameters=rope(10000)),
         layer=1),
    dict(case="gpt_oss_sliding", family="gpt_oss", config="GptOssConfig", model="GptOssForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     num_hidden_layers=2, sliding_window=4, attention_bias=True,
                     num_local_experts=2, num_experts_per_tok=1, rope_parameters=rope(150000)),
         layer=0),
    dict(case="gpt_oss_full", family="gpt_oss", config="GptOssConfig", model="GptOssForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     num_hidden_layers=2, sliding_window=4, attention_bias=True,
                     num_local_experts=2, num_experts_per_tok=1, rope_parameters=rope(150000)),
         layer=1),
    dict(case="glm_interleaved_partial", family="glm", config="GlmConfig", model="GlmForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                     num_hidden_layers=1, attention_bias=True,
                     rope_parameters=rope(10000, partial_rotary_factor=0.5)),
         layer=0),
    dict(case="cohere_interleaved", family="cohere", config="CohereConfig", model="CohereForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=4,
                     num_hidden_layers=1, attention_bias=False, use_qk_norm=False,
                     rope_parameters=rope(10000)),
         layer=0),
    dict(case="stablelm_partial", family="stablelm", config="StableLmConfig", model="StableLmForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
                     num_hidden_layers=1, use_qkv_bias=True, qk_layernorm=False,
                     rope_parameters=rope(10000, partial_rotary_factor=0.25)),
         layer=0),
    dict(case="deepseek_v2_mla", family="deepseek_v2", config="DeepseekV2Config",
         model="DeepseekV2ForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=1,
                     q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4,
                     v_head_dim=6, attention_bias=False, first_k_dense_replace=1,
                     n_routed_experts=2, num_experts_per_tok=1, moe_intermediate_size=16,
                     rope_parameters=rope(10000)),
         layer=0),
    dict(case="deepseek_v2_mla_noqlora", family="deepseek_v2", config="DeepseekV2Config",
         model="DeepseekV2ForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=1,
                     q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4,
                     v_head_dim=6, attention_bias=False, first_k_dense_replace=1,
                     n_routed_experts=2, num_experts_per_tok=1, moe_intermediate_size=16,
                     rope_parameters=rope(10000)),
         layer=0),
    # RoPE frequency scaling (modeling_rope_utils.ROPE_INIT_FUNCTIONS). llama3
    # and yarn only change frequencies whose wavelength exceeds about
    # original_max / 32, i.e. angles well below 1 rad over the distances 0..10
    # of L = 11 (an offset on the positions would not help: scores depend on
    # distances only); INIT_SCALED makes those small angle changes move the
    # output by more than MUST_MISS (the script prints the margins).
    dict(case="llama3_scaled", family="llama", config="LlamaConfig", model="LlamaForCausalLM",
         kwargs=dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     num_hidden_layers=1, attention_bias=False,
                     rope_parameters=rope(500000, rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                          high_freq_factor=4.0,
                                          original_max_position_embeddings=8192)),
         layer=0, init=INIT_SCALED),
    dict(case="gpt_oss_yarn", family="gpt_oss", config="GptOssConfig", model="GptOssForCausalLM",
         # no rope_parameters: GptOssConfig's own default (YaRN factor 32, truncate False)
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                     num_hidden_layers=2, sliding_window=4, attention_bias=True,
                     num_local_experts=2, num_experts_per_tok=1),
         layer=0, init=INIT_SCALED),
    dict(case="qwen2_yarn", family="qwen2", config="Qwen2Config", model="Qwen2ForCausalLM",
         kwargs=dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                     num_hidden_layers=1, use_sliding_window=False,
                     rope_parameters=rope(1e6, rope_type="yarn", factor=4.0,
                                          original_max_position_embeddings=32768)),
         layer=0, init=INIT_SCALED),
    dict(case="deepseek_v2_yarn", family="deepseek_v2", config="DeepseekV2Config",
         model="DeepseekV2ForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=1,
                     q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4,
                     v_head_dim=6, attention_bias=False, first_k_dense_replace=1,
                     n_routed_experts=2, num_experts_per_tok=1, moe_intermediate_size=16,
                     rope_parameters=rope(10000, rope_type="yarn", factor=40.0,
                                          original_max_position_embeddings=4096,
                                          beta_fast=32.0, beta_slow=1.0,
                                          mscale=0.707, mscale_all_dim=0.707)),
         layer=0, init=INIT_SCALED),
    dict(case="linear_scaled", family="llama", config="LlamaConfig", model="LlamaForCausalLM",
         kwargs=dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                     num_hidden_layers=1, attention_bias=False,
                     rope_parameters=rope(10000, rope_type="linear", factor=4.0)),
         layer=0),
]


# --------------------------------------------------------------------------
# Building and capturing
# --------------------------------------------------------------------------

def build(spec):
    cfg_cls = getattr(transformers, spec["config"])
    model_cls = getattr(transformers, spec["model"])
    kwargs = dict(COMMON)
    kwargs.update(spec["kwargs"])
    config = cfg_cls(**kwargs)
    config._attn_implementation = "eager"
    model = model_cls(config)
    model.eval()
    return config, model


def reinit_attention(attn, scale):
    """Non-trivial random values for every attention parameter (HF zero-inits
    biases and sinks and one-inits norms; those would hide bugs)."""
    with torch.no_grad():
        for name, p in attn.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            if "norm" in owner or "layernorm" in owner:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif leaf == "sinks":
                p.copy_(torch.randn_like(p))
            elif leaf == "bias":
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(scale * torch.randn_like(p))


def capture(spec):
    torch.manual_seed(spec["seed"])
    config, model = build(spec)
    layer = spec["layer"]
    attn = model.model.layers[layer].self_attn
    reinit_attention(attn, spec.get("init", 0.2))
    prefix = next(n for n, m in model.named_modules() if m is attn) + "."

    got = {}

    def hook(module, args, kwargs, output):
        hs = args[0] if args else kwargs["hidden_states"]
        got["hidden_states"] = hs.detach().clone()
        got["output"] = output[0].detach().clone()
        got["mask"] = kwargs.get("attention_mask")

    handle = attn.register_forward_hook(hook, with_kwargs=True)
    embeds = torch.randn(B, L, config.hidden_size)
    pos = torch.arange(L).unsqueeze(0).expand(B, L)
    with torch.no_grad():
        model(inputs_embeds=embeds, position_ids=pos, use_cache=False)
    handle.remove()

    sd = {prefix + k: v.detach().float().contiguous().clone() for k, v in attn.state_dict().items()}
    return config, model, attn, prefix, sd, got


def allowed_from_hf_mask(mask):
    """[L, L] bool of the keys HF lets each query see (batch 0, head 0; the
    mask has no padding so every batch row is the same)."""
    assert mask is not None, "HF passed no attention_mask to the eager module"
    m = mask
    if m.dim() == 4:
        assert torch.equal(m[0], m[-1]), "mask differs between batch rows"
        m = m[0, 0]
    if m.dtype == torch.bool:
        return m.numpy()
    return (m > torch.finfo(m.dtype).min / 2).numpy()


# --------------------------------------------------------------------------
# Independent float64 NumPy recomputation from the manifest's description
# --------------------------------------------------------------------------

def f64(t):
    return t.detach().double().numpy()


def linear(x, sd, name):
    y = x @ sd[name + ".weight"].T
    if name + ".bias" in sd:
        y = y + sd[name + ".bias"]
    return y


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def yarn_get_mscale(scale, mscale=1.0):
    """YaRN's mscale (paper eq. 21), as modeling_rope_utils.yarn_get_mscale."""
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def yarn_attention_factor(m):
    """The factor cos and sin are multiplied by, from the manifest's YaRN keys
    (what HF derives when rope_parameters has no explicit attention_factor)."""
    f, ms, msa = m["rope_factor"], m["rope_mscale"], m["rope_mscale_all_dim"]
    if ms and msa:
        return yarn_get_mscale(f, ms) / yarn_get_mscale(f, msa)
    return yarn_get_mscale(f)


def yarn_correction_range(m, dim):
    """(low, high) dimension-pair bounds of YaRN's ramp (find_correction_range)."""
    theta, orig = m["rope_theta"], m["rope_original_max"]

    def corr_dim(rotations):
        return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = corr_dim(m["rope_beta_fast"]), corr_dim(m["rope_beta_slow"])
    if m["rope_truncate"]:
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, dim - 1)


def rope_inv_freq(m, dim, f32=False):
    """Inverse frequencies of the first `dim` rotary dims from the manifest keys,
    in float64 (f32: every step rounded to float32 in HF's order of operations,
    the way modeling_rope_utils computes them; only to measure the difference)."""
    dt = np.float32 if f32 else np.float64

    def t(a):
        return np.asarray(a, dtype=dt)

    theta, kind, f = m["rope_theta"], m["rope_scaling"], m["rope_factor"]
    pos_freqs = t(t(theta) ** t(t(np.arange(0, dim, 2)) / t(dim)))   # theta^(2i/dim)
    inv = t(1.0 / pos_freqs)
    if kind == "none":
        return inv
    if kind == "linear":
        return t(inv / t(f))
    if kind == "llama3":
        orig = m["rope_original_max"]
        lo, hi = m["rope_low_freq_factor"], m["rope_high_freq_factor"]
        wavelen = t(t(2 * math.pi) / inv)
        low_wavelen, high_wavelen = orig / lo, orig / hi
        out = np.where(wavelen > low_wavelen, t(inv / t(f)), inv)    # low band: / factor
        smooth = t(t(t(orig) / wavelen - t(lo)) / t(hi - lo))
        smoothed = t(t(t(t(1 - smooth) * out) / t(f)) + t(smooth * out))
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return t(np.where(medium, smoothed, out))                   # high band: unchanged
    if kind == "yarn":
        low, high = yarn_correction_range(m, dim)                   # Python floats
        if low == high:
            high += 0.001
        ramp = np.clip(t(t(t(np.arange(dim // 2)) - t(low)) / t(high - low)), 0, 1)
        extrapolation = t(1 - ramp)        # 1: keep theta^(-2i/dim); 0: divide by factor
        interpolation = t(1.0 / t(t(f) * pos_freqs))
        return t(t(interpolation * t(1 - extrapolation)) + t(inv * extrapolation))
    raise ValueError(kind)


def apply_rope(x, style, m, rotary_dim):
    """x [..., L, D]: rotate the first rotary_dim dims at positions 0..L-1, with
    cos and sin multiplied by rope_attention_factor."""
    if rotary_dim == 0:
        return x
    n = x.shape[-2]
    inv = rope_inv_freq(m, rotary_dim, f32=m.get("_f32_inv_freq", False)).astype(np.float64)
    ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]     # [L, rd/2]
    af = m["rope_attention_factor"]
    cos, sin = af * np.cos(ang), af * np.sin(ang)
    r, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    if style == "neox":
        a, b = r[..., : rotary_dim // 2], r[..., rotary_dim // 2:]
        out = np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
    elif style == "gptj":
        a, b = r[..., 0::2], r[..., 1::2]
        out = np.stack([a * cos - b * sin, b * cos + a * sin], axis=-1).reshape(r.shape)
    else:
        raise ValueError(style)
    return np.concatenate([out, rest], axis=-1)


def window_mask(n, window):
    """Our contract: query p sees keys p-W+1 .. p (W keys, itself included)."""
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    keep = j <= i
    if window:
        keep &= j > i - window
    return keep


def attend(q, k, v, m, sinks=None):
    """q [B,H,L,Dk], k [B,H,L,Dk], v [B,H,L,Dv] (kv already repeated)."""
    s = np.einsum("bhid,bhjd->bhij", q, k) * m["scale"]
    if m["logit_softcap"]:
        c = m["logit_softcap"]
        s = c * np.tanh(s / c)
    keep = window_mask(s.shape[-1], m.get("sliding_window", 0))
    s = np.where(keep, s, -np.inf)
    if sinks is not None:
        col = np.broadcast_to(sinks[None, :, None, None], s.shape[:-1] + (1,))
        s = np.concatenate([s, col], axis=-1)
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p = p / p.sum(axis=-1, keepdims=True)
    if sinks is not None:
        p = p[..., :-1]
    return np.einsum("bhij,bhjd->bhid", p, v), s


def reference_standard(m, sd, x):
    Hq, Hkv, hd = m["num_q_heads"], m["num_kv_heads"], m["head_dim"]
    b, n, _ = x.shape
    q = linear(x, sd, "q_proj").reshape(b, n, Hq, hd).transpose(0, 2, 1, 3)
    k = linear(x, sd, "k_proj").reshape(b, n, Hkv, hd).transpose(0, 2, 1, 3)
    v = linear(x, sd, "v_proj").reshape(b, n, Hkv, hd).transpose(0, 2, 1, 3)
    norm_first = not m.get("_norm_after_rope")   # perturbation only
    if m["qk_norm"] and norm_first:
        q = rms_norm(q, sd["q_norm.weight"], m["norm_eps"])
        k = rms_norm(k, sd["k_norm.weight"], m["norm_eps"])
    q = apply_rope(q, m["rope"], m, m["rotary_dim"])
    k = apply_rope(k, m["rope"], m, m["rotary_dim"])
    if m["qk_norm"] and not norm_first:
        q = rms_norm(q, sd["q_norm.weight"], m["norm_eps"])
        k = rms_norm(k, sd["k_norm.weight"], m["norm_eps"])
    rep = Hq // Hkv
    k = np.repeat(k, rep, axis=1)   # query head h uses kv head h // rep
    v = np.repeat(v, rep, axis=1)
    o, s = attend(q, k, v, m, sd["sinks"] if m["attention_sinks"] else None)
    o = o.transpose(0, 2, 1, 3).reshape(b, n, Hq * hd)
    return linear(o, sd, "o_proj"), s


def reference_mla(m, sd, x):
    H, dn, dr, dv = m["num_heads"], m["qk_nope_head_dim"], m["qk_rope_head_dim"], m["v_head_dim"]
    ckv_rank, eps = m["kv_lora_rank"], m["norm_eps"]
    b, n, _ = x.shape
    if m["q_lora_rank"]:
        q = linear(rms_norm(linear(x, sd, "q_a_proj"), sd["q_a_layernorm.weight"], eps), sd, "q_b_proj")
    else:
        q = linear(x, sd, "q_proj")
    q = q.reshape(b, n, H, dn + dr).transpose(0, 2, 1, 3)
    q_nope, q_pe = q[..., :dn], q[..., dn:]
    kv_a = linear(x, sd, "kv_a_proj_with_mqa")
    c_kv, k_pe = kv_a[..., :ckv_rank], kv_a[..., ckv_rank:]
    c_kv = rms_norm(c_kv, sd["kv_a_layernorm.weight"], eps)
    kv = linear(c_kv, sd, "kv_b_proj").reshape(b, n, H, dn + dv).transpose(0, 2, 1, 3)
    k_nope, v = kv[..., :dn], kv[..., dn:]
    style = "gptj" if m["rope_interleave"] else "neox"
    q_pe = apply_rope(q_pe, style, m, dr)
    k_pe = apply_rope(k_pe[:, None], style, m, dr)       # one shared head
    k = np.concatenate([k_nope, np.broadcast_to(k_pe, (b, H, n, dr))], axis=-1)
    qq = np.concatenate([q_nope, q_pe], axis=-1)
    mm = dict(m, logit_softcap=0, sliding_window=0)
    o, s = attend(qq, k, v, mm)
    o = o.transpose(0, 2, 1, 3).reshape(b, n, H * dv)
    return linear(o, sd, "o_proj"), s


def reference(m, sd, x):
    if m["variant"] == "mla":
        return reference_mla(m, sd, x)
    return reference_standard(m, sd, x)


def interleaved_to_halves(sd, m):
    """The same layer with its rope dims reordered (x0,x1,x2,x3,..) -> (x0,x2,..|x1,x3,..)
    in the rows of every projection that feeds RoPE (and the q/k norm weights).
    Scores are invariant under one permutation applied to both q and k, and
    gptj-rope(x) permuted == neox-rope(x permuted), so the permuted layer with
    NeoX rope must give the same output as the original with interleaved rope."""
    sd = dict(sd)

    def perm(rd):
        return np.concatenate([np.arange(0, rd, 2), np.arange(1, rd, 2)])

    def rows(name, heads, width, start, rd):
        if name not in sd:
            return
        t = sd[name]
        t = t.reshape((heads, width) + t.shape[1:]).copy()
        seg = t[:, start:start + rd]
        t[:, start:start + rd] = seg[:, perm(rd)]
        sd[name] = t.reshape((heads * width,) + t.shape[2:])

    if m["variant"] == "mla":
        dn, dr = m["qk_nope_head_dim"], m["qk_rope_head_dim"]
        q = "q_b_proj.weight" if m["q_lora_rank"] else "q_proj.weight"
        rows(q, m["num_heads"], dn + dr, dn, dr)
        rows("kv_a_proj_with_mqa.weight", 1, m["kv_lora_rank"] + dr, m["kv_lora_rank"], dr)
        return sd, dict(m, rope_interleave=0)
    hd, rd = m["head_dim"], m["rotary_dim"]
    for proj, heads in (("q_proj", m["num_q_heads"]), ("k_proj", m["num_kv_heads"])):
        rows(proj + ".weight", heads, hd, 0, rd)
        rows(proj + ".bias", heads, hd, 0, rd)
    for norm in ("q_norm.weight", "k_norm.weight"):
        rows(norm, 1, hd, 0, rd)
    return sd, dict(m, rope="neox")


def rel_err(ref, hf):
    return float(np.max(np.abs(ref - hf)) / np.max(np.abs(hf)))


# --------------------------------------------------------------------------
# Describing HF's module in manifest terms (read from the module and config,
# never from the case table, so the self-check tests the description)
# --------------------------------------------------------------------------

ROPE_STYLE = {  # how each family's modeling file rotates (see README.md)
    "llama": "neox", "qwen2": "neox", "qwen3": "neox", "mistral": "neox", "gemma2": "neox",
    "gpt_oss": "neox", "stablelm": "neox", "glm": "gptj", "cohere": "gptj",
}


ROPE_KEYS = ["rope_scaling", "rope_factor", "rope_original_max", "rope_low_freq_factor",
             "rope_high_freq_factor", "rope_beta_fast", "rope_beta_slow", "rope_attention_factor",
             "rope_truncate", "rope_mscale", "rope_mscale_all_dim"]


def describe_rope(config, rotary):
    """The RoPE scaling keys, read from the config's standardised rope_parameters
    the way modeling_rope_utils reads them, and the attention factor from HF's
    rotary embedding module itself."""
    rp = config.rope_parameters
    kind = rp.get("rope_type", "default")
    assert rotary.rope_type == kind, (rotary.rope_type, kind)
    d = dict(rope_scaling="none", rope_factor=0.0, rope_original_max=0, rope_low_freq_factor=0.0,
             rope_high_freq_factor=0.0, rope_beta_fast=0.0, rope_beta_slow=0.0,
             rope_attention_factor=float(rotary.attention_scaling), rope_truncate=1,
             rope_mscale=0.0, rope_mscale_all_dim=0.0)
    if kind == "default":
        pass
    elif kind == "linear":
        d.update(rope_scaling="linear", rope_factor=float(rp["factor"]))
    elif kind == "llama3":
        d.update(rope_scaling="llama3", rope_factor=float(rp["factor"]),
                 rope_original_max=int(rp["original_max_position_embeddings"]),
                 rope_low_freq_factor=float(rp["low_freq_factor"]),
                 rope_high_freq_factor=float(rp["high_freq_factor"]))
    elif kind == "yarn":
        orig = int(rp["original_max_position_embeddings"])
        factor = rp.get("factor")
        if factor is None:   # HF: the ratio of the context lengths
            factor = config.max_position_embeddings / orig
        d.update(rope_scaling="yarn", rope_factor=float(factor), rope_original_max=orig,
                 rope_beta_fast=float(rp.get("beta_fast") or 32),   # HF: `or 32`, `or 1`
                 rope_beta_slow=float(rp.get("beta_slow") or 1),
                 # HF reads config.rope_parameters.get("truncate", True)
                 rope_truncate=int(bool(config.rope_parameters.get("truncate", True))),
                 rope_mscale=float(rp.get("mscale") or 0.0),
                 rope_mscale_all_dim=float(rp.get("mscale_all_dim") or 0.0))
        if rp.get("attention_factor") is None:
            af = yarn_attention_factor(d)
            assert d["rope_attention_factor"] == af, (d["rope_attention_factor"], af)
    else:
        raise NotImplementedError(f"rope_type {kind}")
    if kind != "yarn":
        assert d["rope_attention_factor"] == 1.0, d
        assert not rp.get("mscale_all_dim"), rp   # yarn_apply_mscale would scale MLA's softmax
    return d


def mla_scale(m):
    """DeepseekV2Attention.scaling from the manifest keys: qk_head_dim^-0.5, times
    yarn_get_mscale(factor, mscale_all_dim)^2 when mscale_all_dim is set
    (modeling_rope_utils.yarn_apply_mscale)."""
    s = (m["qk_nope_head_dim"] + m["qk_rope_head_dim"]) ** (-0.5)
    if m["rope_scaling"] != "none" and m["rope_mscale_all_dim"]:
        ms = yarn_get_mscale(m["rope_factor"], m["rope_mscale_all_dim"])
        s = s * ms * ms
    return s


def describe(spec, config, model, attn, prefix):
    fam = spec["family"]
    rp = config.rope_parameters
    rope_keys = describe_rope(config, model.model.rotary_emb)
    m = {"family": fam, "class": type(attn).__name__, "transformers": transformers.__version__,
         "prefix": prefix}
    if fam == "deepseek_v2":
        m.update(variant="mla", d_model=config.hidden_size, B=B, L=L,
                 num_heads=attn.num_heads, q_lora_rank=attn.q_lora_rank or 0,
                 kv_lora_rank=attn.kv_lora_rank, qk_nope_head_dim=attn.qk_nope_head_dim,
                 qk_rope_head_dim=attn.qk_rope_head_dim, v_head_dim=attn.v_head_dim,
                 rope_theta=float(rp["rope_theta"]), scale=float(attn.scaling),
                 rope_interleave=1, norm_eps=float(attn.kv_a_layernorm.variance_epsilon),
                 **rope_keys)
        if attn.q_a_layernorm is not None:
            assert attn.q_a_layernorm.variance_epsilon == m["norm_eps"]
        assert m["scale"] == mla_scale(m), (m["scale"], mla_scale(m))
        return m
    Hq = config.num_attention_heads
    Hkv = config.num_key_value_heads
    hd = attn.head_dim
    variant = "mha" if Hkv == Hq else ("mqa" if Hkv == 1 else "gqa")
    prf = rp.get("partial_rotary_factor", 1.0)
    rotary_dim = int(hd * prf)
    window = getattr(attn, "sliding_window", None)
    if fam == "mistral":
        window = config.sliding_window
    softcap = getattr(attn, "attn_logit_softcapping", None) or 0
    qk_norm = hasattr(attn, "q_norm")
    eps = float(attn.q_norm.variance_epsilon) if qk_norm else 1e-6
    m.update(variant=variant, d_model=config.hidden_size, B=B, L=L, num_q_heads=Hq,
             num_kv_heads=Hkv, head_dim=hd, bias=int(attn.q_proj.bias is not None),
             output_bias=int(attn.o_proj.bias is not None), rope=ROPE_STYLE[fam],
             rope_theta=float(rp["rope_theta"]), rotary_dim=rotary_dim, qk_norm=int(qk_norm),
             norm_eps=eps, scale=float(attn.scaling), sliding_window=int(window or 0),
             hf_sliding_window=int(window or 0), logit_softcap=float(softcap),
             attention_sinks=int(hasattr(attn, "sinks")), **rope_keys)
    assert (attn.k_proj.bias is not None) == bool(m["bias"])
    assert (attn.v_proj.bias is not None) == bool(m["bias"])
    return m


KEYS_STD = ["family", "class", "transformers", "prefix", "variant", "d_model", "B", "L",
            "num_q_heads", "num_kv_heads", "head_dim", "bias", "output_bias", "rope",
            "rope_theta", "rotary_dim", *ROPE_KEYS, "qk_norm", "norm_eps", "scale", "sliding_window",
            "hf_sliding_window", "logit_softcap", "attention_sinks"]
KEYS_MLA = ["family", "class", "transformers", "prefix", "variant", "d_model", "B", "L",
            "num_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
            "v_head_dim", "rope_theta", "scale", "rope_interleave", *ROPE_KEYS, "norm_eps"]


def fmt(v):
    if isinstance(v, float):
        return repr(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


def manifest_line(case, m, init):
    """The case's line; `init` is the scale of its random weights (larger
    weights, larger scores: bf16's rounding error grows with them)."""
    keys = KEYS_MLA if m["variant"] == "mla" else KEYS_STD
    return case + " " + " ".join(f"{k}={fmt(m[k])}" for k in keys) + f" init={fmt(float(init))}"


# --------------------------------------------------------------------------
# Per-case check and write
# --------------------------------------------------------------------------

def perturbations(m):
    """Descriptions that differ in one feature; each must miss HF's output."""
    out = []
    if m["rope_scaling"] != "none":
        unscaled = dict(m, rope_scaling="none", rope_attention_factor=1.0)
        if m["variant"] == "mla":
            unscaled["scale"] = mla_scale(unscaled)
        out.append(("no rope scaling", unscaled))
        if m["rope_scaling"] == "llama3":
            out.append(("linear in place of llama3", dict(m, rope_scaling="linear")))
        if m["rope_scaling"] == "yarn":
            out.append(("yarn inv_freq unscaled", dict(m, rope_scaling="none")))
            if m["rope_attention_factor"] != 1.0:
                out.append(("attention_factor 1", dict(m, rope_attention_factor=1.0)))
            out.append(("truncate flipped", dict(m, rope_truncate=1 - m["rope_truncate"])))
            if m["rope_mscale"] and m["rope_mscale_all_dim"]:
                out.append(("attention_factor get_mscale(factor), mscale ignored",
                            dict(m, rope_attention_factor=yarn_get_mscale(m["rope_factor"]))))
            if m["variant"] == "mla" and m["rope_mscale_all_dim"]:
                out.append(("mla scale without mscale_all_dim", dict(m, scale=mla_scale(unscaled))))
    if m["variant"] == "mla":
        out.append(("rope_interleave=0", dict(m, rope_interleave=0)))
        return out
    if m["rotary_dim"]:
        out.append(("other rope style", dict(m, rope={"neox": "gptj", "gptj": "neox"}[m["rope"]])))
        if m["rotary_dim"] < m["head_dim"]:
            out.append(("full rotary_dim", dict(m, rotary_dim=m["head_dim"])))
    if m["sliding_window"]:
        out.append(("window W+1", dict(m, sliding_window=m["sliding_window"] + 1)))
        out.append(("window W-1", dict(m, sliding_window=m["sliding_window"] - 1)))
    if m["logit_softcap"]:
        out.append(("no softcap", dict(m, logit_softcap=0.0)))
    if m["attention_sinks"]:
        out.append(("no sinks", dict(m, attention_sinks=0)))
    if abs(m["scale"] - m["head_dim"] ** -0.5) > 1e-12:
        out.append(("scale 1/sqrt(head_dim)", dict(m, scale=m["head_dim"] ** -0.5)))
    if m["qk_norm"]:
        out.append(("qk_norm after rope", dict(m, _norm_after_rope=True)))
        out.append(("no qk_norm", dict(m, qk_norm=0)))
    return out


def rope_bands(m, dim):
    """How the scaling treats each frequency pair: counts by band."""
    inv0 = rope_inv_freq(dict(m, rope_scaling="none"), dim)
    if m["rope_scaling"] == "llama3":
        wavelen = 2 * math.pi / inv0
        lo = m["rope_original_max"] / m["rope_low_freq_factor"]
        hi = m["rope_original_max"] / m["rope_high_freq_factor"]
        return {"kept": int(np.sum(wavelen < hi)), "smoothed": int(np.sum((wavelen >= hi) & (wavelen <= lo))),
                "divided": int(np.sum(wavelen > lo))}
    if m["rope_scaling"] == "yarn":
        low, high = yarn_correction_range(m, dim)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2) - low) / (high - low), 0, 1)
        return {"extrapolated": int(np.sum(ramp == 0)), "ramped": int(np.sum((ramp > 0) & (ramp < 1))),
                "interpolated": int(np.sum(ramp == 1)), "range": f"[{low:.4g}, {high:.4g}]"}
    return {}


def check(case, m, sd, got, prefix, rotary):
    sd64 = {k[len(prefix):]: f64(v) for k, v in sd.items()}
    x = f64(got["hidden_states"])
    hf = f64(got["output"])

    # The inverse frequencies from the manifest keys are HF's own (float32 buffer).
    dim = m["qk_rope_head_dim"] if m["variant"] == "mla" else m["rotary_dim"]
    hf_inv = f64(rotary.inv_freq)
    ours = rope_inv_freq(m, dim)
    assert hf_inv.shape == ours.shape, (case, hf_inv.shape, ours.shape)
    inv_err = float(np.max(np.abs(ours - hf_inv) / hf_inv))
    assert inv_err < 1e-6, f"{case}: inv_freq from the manifest differs from HF's by {inv_err:.3g}"
    bands = rope_bands(m, dim)
    if m["rope_scaling"] == "llama3":
        assert bands["divided"] >= 1 and bands["smoothed"] >= 1 and bands["kept"] >= 1, (case, bands)
    if m["rope_scaling"] == "yarn":
        assert bands["extrapolated"] >= 1 and bands["ramped"] >= 1, (case, bands)

    # The mask HF built is the one the manifest describes.
    allowed = allowed_from_hf_mask(got["mask"])
    want = window_mask(L, m.get("sliding_window", 0))
    assert np.array_equal(allowed, want), f"{case}: HF mask\n{allowed.astype(int)}"
    seen_last = int(allowed[-1].sum())
    if m.get("hf_sliding_window"):
        assert seen_last == m["sliding_window"], (case, seen_last)

    ref, s = reference(m, sd64, x)
    err = rel_err(ref, hf)
    assert err < TOL, f"{case}: max rel err {err:.3g} >= {TOL}"

    notes = [f"err {err:.1e}", f"last row sees {seen_last} keys", f"inv_freq vs HF {inv_err:.1e}"]
    if m["rope_scaling"] != "none":
        e32 = rel_err(reference(dict(m, _f32_inv_freq=True), sd64, x)[0], hf)
        notes.append(f"{m['rope_scaling']} bands {bands}, err with float32 inv_freq {e32:.1e}")
    if m.get("logit_softcap"):
        # raw scaled scores must exceed the cap for it to matter
        mm = dict(m, logit_softcap=0.0)
        _, raw = reference(mm, sd64, x)
        raw = np.abs(raw[np.isfinite(raw)])
        c = m["logit_softcap"]
        assert np.max(raw) > 2 * c, f"{case}: softcap {c} hardly bites"
        notes.append(f"max|raw scaled score| {np.max(raw):.1f}, {np.mean(raw > c):.0%} above cap {c}")
    if m.get("rope_interleave") or m.get("rope") == "gptj":
        psd, pm = interleaved_to_halves(sd64, m)
        e = rel_err(reference(pm, psd, x)[0], hf)
        assert e < TOL, f"{case}: interleaved != neox after row permutation ({e:.3g})"
        notes.append(f"== neox rope after rope-row permutation: {e:.1e}")
    for what, pm in perturbations(m):
        e = rel_err(reference(pm, sd64, x)[0], hf)
        assert e > MUST_MISS, f"{case}: '{what}' still matches (err {e:.3g}); feature does not bite"
        notes.append(f"{what}: {e:.3g}")
    return notes


def main():
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"safetensors {safetensors.__version__}, numpy {np.__version__}")
    # Everything here but README.md is generated: remove it all, then rewrite.
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if name == "README.md":
            continue
        path = os.path.join(OUT, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    lines = []
    for seed, spec in enumerate(CASES, start=1):
        spec = dict(spec, seed=1000 + seed)
        case = spec["case"]
        config, model, attn, prefix, sd, got = capture(spec)
        m = describe(spec, config, model, attn, prefix)
        notes = check(case, m, sd, got, prefix, model.model.rotary_emb)
        line = manifest_line(case, m, spec.get("init", 0.2))
        tensors = dict(sd)
        tensors["hidden_states"] = got["hidden_states"].float().contiguous()
        tensors["output"] = got["output"].float().contiguous()
        path = os.path.join(OUT, case + ".safetensors")
        save_file(tensors, path, metadata={"manifest": line})
        os.chmod(path, 0o644)
        lines.append(line)
        print(f"{case}: {type(attn).__name__} ({type(model).__name__}) {prefix} -- " + "; ".join(notes))
        readme_check = sorted(k[len(prefix):] for k in sd)
        print(f"    weights: {' '.join(readme_check)}")

    header = [
        "# Golden attention layers recorded from Hugging Face transformers' own modules",
        "# (tests/golden/make_hf_golden.py; see README.md). One case per line:",
        "# <case> key=value ...; <case>.safetensors holds the module's state_dict under its",
        "# full HF names (strip `prefix`), hidden_states and output [B, L, d_model], float32.",
        "# Positions 0..L-1, causal, no padding. sliding_window: the query at p sees keys",
        "# p-W+1..p (W keys, itself included); hf_sliding_window is the config value.",
        "# rope_scaling none|linear|llama3|yarn and its rope_* parameters: see README.md.",
        f"# transformers {transformers.__version__}, torch {torch.__version__}",
    ]
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(header + lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT) if n != "README.md")
    print(f"wrote {len(lines)} cases to {OUT} ({total} bytes)")


if __name__ == "__main__":
    sys.exit(main())
