"""Conversions between NumPy arrays and attention.v1 Tensor messages.

Wire format: row-major, little-endian. FLOAT32 and FLOAT16 map to NumPy's
float32/float16; BFLOAT16 (the upper half of a binary32) has no NumPy dtype,
so it is encoded with :func:`to_bfloat16_bytes` (round to nearest, ties to
even) and decoded to float32 with :func:`from_bfloat16_bytes`.
"""

import numpy as np

from ._gen.attention.v1 import attention_pb2 as pb2

FLOAT32 = "float32"
FLOAT16 = "float16"
BFLOAT16 = "bfloat16"
BOOL = "bool"

_ENUM = {
    FLOAT32: pb2.DTYPE_FLOAT32,
    FLOAT16: pb2.DTYPE_FLOAT16,
    BFLOAT16: pb2.DTYPE_BFLOAT16,
    BOOL: pb2.DTYPE_BOOL,
}
_NAME = {v: k for k, v in _ENUM.items()}
_ALIASES = {
    "float32": FLOAT32, "fp32": FLOAT32, "f32": FLOAT32, "float": FLOAT32,
    "float16": FLOAT16, "fp16": FLOAT16, "f16": FLOAT16, "half": FLOAT16,
    "bfloat16": BFLOAT16, "bf16": BFLOAT16,
    "bool": BOOL,
}


def dtype_name(dtype):
    """Normalises a dtype spec to "float32", "float16", "bfloat16" or "bool".

    Accepts those strings (and aliases such as "fp16", "bf16"), NumPy dtypes
    and scalar types (np.float32, np.float16, np.bool_), and the DType enum
    values of the proto.
    """
    if isinstance(dtype, str):
        key = dtype.lower()
        if key in _ALIASES:
            return _ALIASES[key]
        raise ValueError("unsupported dtype %r (float32, float16, bfloat16 or bool)" % dtype)
    if isinstance(dtype, (int, np.integer)) and not isinstance(dtype, bool):
        if int(dtype) in _NAME:
            return _NAME[int(dtype)]
        raise ValueError("unsupported DType enum value %r" % dtype)
    try:
        nd = np.dtype(dtype)
    except TypeError:
        raise ValueError("unsupported dtype %r" % (dtype,)) from None
    if nd == np.float32:
        return FLOAT32
    if nd == np.float16:
        return FLOAT16
    if nd == np.bool_:
        return BOOL
    raise ValueError("unsupported dtype %r (float32, float16, bfloat16 or bool)" % (dtype,))


def dtype_enum(dtype):
    """The proto DType enum value for a dtype spec; None gives DTYPE_UNSPECIFIED."""
    if dtype is None:
        return pb2.DTYPE_UNSPECIFIED
    return _ENUM[dtype_name(dtype)]


def to_bfloat16_bytes(arr):
    """Encodes an array as little-endian bfloat16 bytes.

    Values are rounded from float32 to nearest, ties to even (as the server
    does); NaN stays NaN (a quiet NaN with the input's sign), infinities stay
    infinite, and finite values beyond bfloat16's range round to infinity.
    """
    x = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
    u = x.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x0040).astype(np.uint16)
    return rounded.astype("<u2").tobytes()


def from_bfloat16_bytes(data, shape=None):
    """Decodes little-endian bfloat16 bytes to a float32 array (exactly)."""
    h = np.frombuffer(data, dtype="<u2").astype(np.uint32)
    out = (h << 16).view(np.float32)
    if shape is not None:
        out = out.reshape(tuple(int(s) for s in shape))
    return out


def round_to_bfloat16(arr):
    """Rounds float values to the nearest bfloat16 value, returned as float32."""
    a = np.asarray(arr, dtype=np.float32)
    return from_bfloat16_bytes(to_bfloat16_bytes(a), a.shape)


def _as_array(value):
    # PyTorch tensors (or anything with .numpy()) are accepted without
    # importing torch.
    if not isinstance(value, np.ndarray) and hasattr(value, "numpy"):
        if hasattr(value, "detach"):
            value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        if getattr(value, "dtype", None) is not None and "bfloat16" in str(value.dtype):
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def to_tensor(arr, dtype=FLOAT32, name="tensor"):
    """Packs an array-like into a Tensor message of the given wire dtype.

    For the float wire dtypes, floating-point input of any precision (float16,
    float32, float64; PyTorch bfloat16 too) is converted, rounding to nearest;
    values beyond float16's or bfloat16's range become infinities. Integer,
    bool, complex and other non-float arrays are refused with a TypeError
    naming `name` (the request field, e.g. "query"), so that a wrong array is
    not sent as numbers nobody meant. For BOOL (masks), nonzero is true and
    any numeric or bool array is accepted.
    """
    a = _as_array(arr)
    wire = dtype_name(dtype)
    if wire == BOOL:
        if not (a.dtype == np.bool_ or np.issubdtype(a.dtype, np.number)):
            raise TypeError("%s: a mask needs a bool or numeric array, got dtype %s"
                            % (name, a.dtype))
        data = np.ascontiguousarray(a != 0, dtype=np.uint8).tobytes()
    elif not np.issubdtype(a.dtype, np.floating):
        raise TypeError("%s: expected a floating-point array (float16, float32, float64), "
                        "got dtype %s; convert it with .astype(np.float32) if its values "
                        "are meant as numbers" % (name, a.dtype))
    elif wire == FLOAT32:
        data = np.ascontiguousarray(a, dtype="<f4").tobytes()
    elif wire == FLOAT16:
        with np.errstate(over="ignore"):  # documented: out of range becomes inf
            data = np.ascontiguousarray(a, dtype="<f2").tobytes()
    else:  # BFLOAT16
        data = to_bfloat16_bytes(a)
    return pb2.Tensor(dtype=_ENUM[wire], shape=[int(s) for s in a.shape], data=data)


def from_tensor(t):
    """Unpacks a Tensor message into a new (writable) NumPy array.

    FLOAT32 gives float32, FLOAT16 gives float16, BFLOAT16 gives float32 (the
    exact bfloat16 values), BOOL gives bool. An unset tensor gives None.
    """
    if t is None or (t.dtype == pb2.DTYPE_UNSPECIFIED and not t.shape and not t.data):
        return None
    shape = tuple(int(s) for s in t.shape)
    if t.dtype == pb2.DTYPE_FLOAT32:
        out = np.frombuffer(t.data, dtype="<f4").astype(np.float32)
    elif t.dtype == pb2.DTYPE_FLOAT16:
        out = np.frombuffer(t.data, dtype="<f2").astype(np.float16)
    elif t.dtype == pb2.DTYPE_BFLOAT16:
        out = from_bfloat16_bytes(t.data).copy()
    elif t.dtype == pb2.DTYPE_BOOL:
        out = np.frombuffer(t.data, dtype=np.uint8) != 0
    else:
        raise ValueError("tensor has unknown dtype %d" % t.dtype)
    return out.reshape(shape)
