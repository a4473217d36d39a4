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
and the output it returns. HF's own RoPE, masks, softcap, sinks and scaling are
thereby what is recorded.

Before writing a case the script recomputes the output independently in
float64 NumPy from the state_dict, the hidden states and the parameters written
into the manifest, and asserts a maximum error below 1e-5 of max |output|. It
also asserts that the mask HF passed the module is exactly the causal (+ window)
mask the manifest describes, and that each feature bites: the recomputation
with the other RoPE style, full rotary_dim, a window one wider or narrower,
no softcap, no sinks, no QK-norm or QK-norm after RoPE, or 1/sqrt(head_dim)
in place of a custom scale misses by more than 1e-3. Interleaved (gptj /
rope_interleave) cases must also match NeoX RoPE after the rope rows of the
q and k projections are reordered evens-then-odds.

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


def apply_rope(x, style, theta, rotary_dim):
    """x [..., L, D]: rotate the first rotary_dim dims at positions 0..L-1."""
    if rotary_dim == 0:
        return x
    n = x.shape[-2]
    inv = theta ** (-np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim)
    ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]     # [L, rd/2]
    cos, sin = np.cos(ang), np.sin(ang)
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
    q = apply_rope(q, m["rope"], m["rope_theta"], m["rotary_dim"])
    k = apply_rope(k, m["rope"], m["rope_theta"], m["rotary_dim"])
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
    q_pe = apply_rope(q_pe, style, m["rope_theta"], dr)
    k_pe = apply_rope(k_pe[:, None], style, m["rope_theta"], dr)       # one shared head
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


def describe(spec, config, attn, prefix):
    fam = spec["family"]
    rp = config.rope_parameters
    assert rp.get("rope_type", "default") == "default", rp
    m = {"family": fam, "class": type(attn).__name__, "transformers": transformers.__version__,
         "prefix": prefix}
    if fam == "deepseek_v2":
        m.update(variant="mla", d_model=config.hidden_size, B=B, L=L,
                 num_heads=attn.num_heads, q_lora_rank=attn.q_lora_rank or 0,
                 kv_lora_rank=attn.kv_lora_rank, qk_nope_head_dim=attn.qk_nope_head_dim,
                 qk_rope_head_dim=attn.qk_rope_head_dim, v_head_dim=attn.v_head_dim,
                 rope_theta=float(rp["rope_theta"]), scale=float(attn.scaling),
                 rope_interleave=1, norm_eps=float(attn.kv_a_layernorm.variance_epsilon))
        if attn.q_a_layernorm is not None:
            assert attn.q_a_layernorm.variance_epsilon == m["norm_eps"]
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
             attention_sinks=int(hasattr(attn, "sinks")))
    assert (attn.k_proj.bias is not None) == bool(m["bias"])
    assert (attn.v_proj.bias is not None) == bool(m["bias"])
    return m


KEYS_STD = ["family", "class", "transformers", "prefix", "variant", "d_model", "B", "L",
            "num_q_heads", "num_kv_heads", "head_dim", "bias", "output_bias", "rope",
            "rope_theta", "rotary_dim", "qk_norm", "norm_eps", "scale", "sliding_window",
            "hf_sliding_window", "logit_softcap", "attention_sinks"]
KEYS_MLA = ["family", "class", "transformers", "prefix", "variant", "d_model", "B", "L",
            "num_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
            "v_head_dim", "rope_theta", "scale", "rope_interleave", "norm_eps"]


def fmt(v):
    if isinstance(v, float):
        return repr(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


def manifest_line(case, m):
    keys = KEYS_MLA if m["variant"] == "mla" else KEYS_STD
    return case + " " + " ".join(f"{k}={fmt(m[k])}" for k in keys)


# --------------------------------------------------------------------------
# Per-case check and write
# --------------------------------------------------------------------------

def perturbations(m):
    """Descriptions that differ in one feature; each must miss HF's output."""
    out = []
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


def check(case, m, sd, got, prefix):
    sd64 = {k[len(prefix):]: f64(v) for k, v in sd.items()}
    x = f64(got["hidden_states"])
    hf = f64(got["output"])

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

    notes = [f"err {err:.1e}", f"last row sees {seen_last} keys"]
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
        notes.append(f"{what}: {e:.2f}")
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
        m = describe(spec, config, attn, prefix)
        notes = check(case, m, sd, got, prefix)
        line = manifest_line(case, m)
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
        f"# transformers {transformers.__version__}, torch {torch.__version__}",
    ]
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(header + lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT) if n != "README.md")
    print(f"wrote {len(lines)} cases to {OUT} ({total} bytes)")


if __name__ == "__main__":
    sys.exit(main())
