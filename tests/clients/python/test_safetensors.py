"""load_module(state_dict=PATH) reads a .safetensors file (the `safetensors` extra)."""

import pytest

from reference import assert_close, attention_layer_ref, attention_state_dict, randn

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def test_load_module_from_a_safetensors_file(client, rng, tmp_path):
    sd = attention_state_dict(rng, 32, 4, 2)
    path = tmp_path / "gqa.safetensors"
    safetensors_numpy.save_file(sd, str(path))
    config = {"d_model": 32, "gqa": {"num_q_heads": 4, "num_kv_heads": 2}}
    info = client.load_module("py-safetensors", config, state_dict=path)
    assert info.parameter_count == sum(a.size for a in sd.values())
    x = randn(rng, 2, 5, 32)
    assert_close(client.forward("py-safetensors", x, causal=True).output,
                 attention_layer_ref(sd, x, x, x, 4, 2, causal=True), atol=1e-4)
    client.unload_module("py-safetensors")


def test_one_layer_of_a_hugging_face_checkpoint(client, rng, tmp_path):
    sd = attention_state_dict(rng, 32, 4, 2)
    hf = {}
    for name, value in sd.items():  # W_q.weight -> model.layers.N.self_attn.q_proj.weight
        proj, part = name.split(".")
        for layer in (0, 2):
            hf["model.layers.%d.self_attn.%s_proj.%s" % (layer, proj[-1], part)] = (
                value if layer == 2 else value + 1.0)
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(hf, str(path))
    config = {"d_model": 32, "gqa": {"num_q_heads": 4, "num_kv_heads": 2}}
    info = client.load_module("py-hf", config, state_dict=path,
                              weights_prefix="model.layers.2.self_attn.")
    assert info.parameter_count == sum(a.size for a in sd.values())
    x = randn(rng, 2, 5, 32)
    assert_close(client.forward("py-hf", x, causal=True).output,
                 attention_layer_ref(sd, x, x, x, 4, 2, causal=True), atol=1e-4)
    client.unload_module("py-hf")
