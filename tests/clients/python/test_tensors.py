"""Array conversions (client/python/attention_client/tensors.py): bfloat16
rounding, and which arrays are converted or refused."""

import numpy as np
import pytest

from attention_client import (attention_pb2, from_bfloat16_bytes, from_tensor,
                              to_bfloat16_bytes, to_tensor)
from reference import randn


def test_bfloat16_rounds_to_nearest_even():
    x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5,
                  np.inf, -np.inf], np.float32)
    expected = np.array([1.0, 1.0, 1 + 2 ** -6, 1 + 2 ** -7, -2.5, np.inf, -np.inf],
                        np.float32)
    data = to_bfloat16_bytes(x)
    assert len(data) == 2 * x.size
    np.testing.assert_array_equal(from_bfloat16_bytes(data, x.shape), expected)
    assert np.isnan(from_bfloat16_bytes(to_bfloat16_bytes(np.float32("nan")))).all()
    assert to_bfloat16_bytes(np.float32(1.0)) == b"\x80\x3f"


@pytest.mark.parametrize("wire", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("source", [np.float16, np.float32, np.float64])
def test_float_arrays_of_any_precision_are_converted(wire, source):
    x = np.array([[0.5, -2.0, 3.25]], source)
    t = to_tensor(x, wire, "query")
    assert list(t.shape) == [1, 3]
    np.testing.assert_array_equal(np.asarray(from_tensor(t), np.float64), x.astype(np.float64))


def test_float16_beyond_range_becomes_infinity():
    t = to_tensor(np.array([1e6, -1e6]), "float16", "query")
    np.testing.assert_array_equal(from_tensor(t), [np.inf, -np.inf])


@pytest.mark.parametrize("array", [np.arange(6).reshape(2, 3), np.ones((2, 3), bool),
                                   np.ones((2, 3), np.complex64), np.array([["a"]])],
                         ids=["int64", "bool", "complex64", "str"])
def test_non_float_arrays_are_refused_by_name(array):
    with pytest.raises(TypeError, match=r"^query: expected a floating-point array.*got dtype"):
        to_tensor(array, "float32", "query")


def test_masks_take_bool_or_numbers():
    t = to_tensor(np.array([0, 2, -1]), "bool", "mask.keep")
    assert t.dtype == attention_pb2.DTYPE_BOOL
    np.testing.assert_array_equal(from_tensor(t), [False, True, True])
    with pytest.raises(TypeError, match=r"^mask\.keep: "):
        to_tensor(np.array(["x"]), "bool", "mask.keep")


def test_client_names_the_argument_of_a_non_float_array(client, rng):
    q = randn(rng, 1, 2, 3, 8)
    with pytest.raises(TypeError, match=r"^key: .*int64"):
        client.attend(q, np.arange(48).reshape(1, 2, 3, 8), q)
    weights = {"W_q.weight": np.zeros((8, 8), np.int32)}
    with pytest.raises(TypeError, match=r"^weights\['W_q.weight'\]: .*int32"):
        client.load_module("py-int", {"d_model": 8, "mha": {"num_heads": 2}},
                           state_dict=weights)
    with pytest.raises(TypeError, match=r"^tokens: "):
        list(client.decode("demo-mha", [np.zeros((1, 1, 64), np.int64)]))
    assert client.health() == "SERVING"
