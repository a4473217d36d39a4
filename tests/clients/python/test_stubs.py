"""The stubs the package ships (client/python/attention_client/_gen) describe
proto/attention/v1/attention.proto as it is; regenerate them with
client/python/generate_stubs.sh when this fails."""

import os
import shutil
import subprocess

import pytest
from google.protobuf import descriptor_pb2

from attention_client import attention_pb2, attention_pb2_grpc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def test_shipped_stubs_match_the_proto(tmp_path):
    protoc = shutil.which("protoc")
    if protoc is None:
        pytest.fail("protoc not found (scripts/install-deps.sh installs protobuf-compiler)")
    out = tmp_path / "attention.pb"
    subprocess.run([protoc, "-I", os.path.join(REPO, "proto"), "--descriptor_set_out=%s" % out,
                    "attention/v1/attention.proto"], check=True, cwd=REPO)
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    _clear_json_names(compiled.message_type)  # protoc adds them to descriptor sets only
    shipped = descriptor_pb2.FileDescriptorProto.FromString(attention_pb2.DESCRIPTOR.serialized_pb)
    assert shipped == compiled, "run client/python/generate_stubs.sh"
    service = compiled.service[0]
    stub_methods = {m for m in dir(attention_pb2_grpc.AttentionServiceServicer)
                    if not m.startswith("_")}
    assert stub_methods == {m.name for m in service.method}


def _clear_json_names(messages):
    for m in messages:
        for f in m.field:
            f.ClearField("json_name")
        _clear_json_names(m.nested_type)
