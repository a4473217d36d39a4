"""Loads the generated attention.v1 stubs, generating them on first use.

The stubs are not checked in: ``client/python/generate_stubs.sh`` writes them
to ``attention_client/_gen/`` with Debian's ``protoc`` and
``grpc_python_plugin``. If they are missing when the package is imported, the
script is run once (it needs ``protoc`` and ``grpc_python_plugin`` on PATH).
"""

import os
import subprocess

_HERE = os.path.dirname(os.path.abspath(__file__))
_SCRIPT = os.path.join(os.path.dirname(_HERE), "generate_stubs.sh")


def _import():
    from ._gen.attention.v1 import attention_pb2, attention_pb2_grpc  # noqa: F401

    return attention_pb2, attention_pb2_grpc


try:
    pb2, pb2_grpc = _import()
except ImportError:  # not generated yet
    if not os.path.exists(_SCRIPT):
        raise
    try:
        subprocess.run(["bash", _SCRIPT, "--if-missing"], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise ImportError(
            "attention_client: the gRPC stubs are missing and %s failed (%s); "
            "install protobuf-compiler and protobuf-compiler-grpc" % (_SCRIPT, e)
        ) from e
    pb2, pb2_grpc = _import()
