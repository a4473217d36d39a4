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
