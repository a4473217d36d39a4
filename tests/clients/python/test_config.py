"""Module configs (client/python/attention_client/config.py): a dict that does not
fit ModuleConfig raises ConfigError naming the snake_case field, before any call."""

import numpy as np
import pytest

from attention_client import ConfigError, attention_pb2, module_config


@pytest.mark.parametrize("config, field, says", [
    ({"d_model": 64, "gqa": {"numQHeads": 8, "num_kv_heads": 2}}, "gqa.numQHeads",
     "did you mean num_q_heads?"),
    ({"d_model": 64, "gqa": {"num_q_head": 8, "num_kv_heads": 2}}, "gqa.num_q_head",
     "did you mean num_q_heads?"),
    ({"dmodel": 64, "mha": {"num_heads": 4}}, "dmodel", "did you mean d_model?"),
    ({"d_model": "64", "mha": {"num_heads": 4}}, "d_model", "expected an integer"),
    ({"d_model": 64.0, "mha": {"num_heads": 4}}, "d_model", "expected an integer"),
    ({"d_model": 64, "bias": 1, "mha": {"num_heads": 4}}, "bias", "expected true or false"),
    ({"d_model": 64, "mha": 4}, "mha", "expected a dict"),
    ({"d_model": 2 ** 70, "mha": {"num_heads": 4}}, "d_model", "out of range"),
    ({"d_model": 64, "mha": {"num_heads": 4}, "gqa": {"num_q_heads": 4, "num_kv_heads": 2}},
     "gqa", "mha is already set"),
    ({"d_model": 64, "mha": {"num_heads": 4}, "kv_cache_dtype": "int9"}, "kv_cache_dtype",
     "expected one of float32, float16, bfloat16"),
    ({"d_model": 64, "mha": {"num_heads": 4}, "kv_cache_dtype": 5}, "kv_cache_dtype",
     "expected one of"),
    ({"d_model": 64, "mla": {"num_heads": 4, "rope_theta": "1e4"}}, "mla.rope_theta",
     "expected a number"),
])
def test_bad_config_names_the_field(config, field, says):
    with pytest.raises(ConfigError) as info:
        module_config(config)
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")
    assert says in str(info.value)
    assert isinstance(info.value, ValueError)


def test_config_dict_becomes_the_message():
    msg = module_config({"d_model": np.int64(64), "bias": np.bool_(False),
                         "gqa": {"num_q_heads": 8, "num_kv_heads": 2}})
    assert msg == attention_pb2.ModuleConfig(
        d_model=64, bias=False,
        gqa=attention_pb2.GroupedQueryConfig(num_q_heads=8, num_kv_heads=2))
    # An empty dict still selects the variant; the server then names what is missing.
    assert module_config({"d_model": 8, "mqa": {}}).WhichOneof("variant") == "mqa"


def test_config_must_be_a_dict():
    with pytest.raises(TypeError, match="config must be a dict"):
        module_config([("d_model", 64)])


def test_load_module_and_estimate_refuse_a_typo_and_the_server_keeps_serving(client):
    bad = {"d_model": 64, "gqa": {"numQHeads": 8, "num_kv_heads": 2}}
    with pytest.raises(ConfigError, match=r"^gqa\.numQHeads: .*num_q_heads"):
        client.load_module("py-typo", bad)
    with pytest.raises(ConfigError, match=r"^gqa\.numQHeads: "):
        client.estimate(bad, batch=1, seq_len=1)
    assert "py-typo" not in [m.name for m in client.list_modules()]
    assert client.health() == "SERVING"


def test_enums_by_name_and_numbers_as_floats():
    msg = module_config({"d_model": 64, "mla": {"num_heads": 4, "rope_theta": 5e5},
                         "kv_cache_dtype": "int8"})
    assert msg.kv_cache_dtype == attention_pb2.DTYPE_INT8
    assert msg.mla.rope_theta == 5e5
    assert module_config({"d_model": 64, "mha": {"num_heads": 4},
                          "kv_cache_dtype": "DTYPE_BFLOAT16"}).kv_cache_dtype == \
        attention_pb2.DTYPE_BFLOAT16
