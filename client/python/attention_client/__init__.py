"""NumPy client of the attention.v1 gRPC service (proto/attention/v1/attention.proto).

    from attention_client import AttentionClient
    with AttentionClient("127.0.0.1:50051") as c:
        out = c.attend(q, k, v, causal=True).output

The package ships the gRPC stubs (attention_pb2, attention_pb2_grpc) generated
from the proto by client/python/generate_stubs.sh.
"""

from .client import (
    AttendResult,
    AttentionClient,
    AttentionError,
    DecodeStep,
    Estimate,
    ForwardResult,
    ModuleInfo,
    Timing,
    message_to_dict,
)
from .config import ConfigError, module_config
from .tensors import (
    BFLOAT16,
    FLOAT16,
    FLOAT32,
    from_bfloat16_bytes,
    from_tensor,
    round_to_bfloat16,
    to_bfloat16_bytes,
    to_tensor,
)
from ._gen.attention.v1 import attention_pb2, attention_pb2_grpc

__all__ = [
    "AttentionClient", "AttentionError", "ConfigError", "module_config", "AttendResult",
    "ForwardResult", "DecodeStep", "ModuleInfo", "Estimate", "Timing", "message_to_dict",
    "to_bfloat16_bytes", "from_bfloat16_bytes", "round_to_bfloat16", "to_tensor", "from_tensor",
    "FLOAT32", "FLOAT16", "BFLOAT16", "attention_pb2", "attention_pb2_grpc",
]
