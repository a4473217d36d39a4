#!/usr/bin/env bash
# Generates the Python gRPC stubs for proto/attention/v1/attention.proto into
# client/python/attention_client/_gen/ (gitignored). Uses Debian's protoc and
# grpc_python_plugin (packages protobuf-compiler, protobuf-compiler-grpc);
# grpc_tools is not needed.
#
# Usage: client/python/generate_stubs.sh [--if-missing]
#   --if-missing  do nothing when the stubs exist and are newer than the proto
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
proto_dir="$repo/proto"
proto_rel="attention/v1/attention.proto"
out="$here/attention_client/_gen"
plugin="${GRPC_PYTHON_PLUGIN:-$(command -v grpc_python_plugin || echo /usr/bin/grpc_python_plugin)}"

if [[ "${1:-}" == "--if-missing" ]]; then
  if [[ -f "$out/attention/v1/attention_pb2_grpc.py" &&
        "$out/attention/v1/attention_pb2_grpc.py" -nt "$proto_dir/$proto_rel" ]]; then
    exit 0
  fi
fi

command -v protoc >/dev/null || { echo "generate_stubs.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
[[ -x "$plugin" ]] || { echo "generate_stubs.sh: grpc_python_plugin not found (apt-get install protobuf-compiler-grpc)" >&2; exit 1; }

# Generate into a temporary directory, then move into place, so that a
# concurrent import never sees half-written stubs.
tmp="$(mktemp -d "$here/attention_client/.gen.XXXXXX")"
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
protoc -I "$proto_dir" \
  --python_out="$tmp" \
  --grpc_out="$tmp" \
  --plugin=protoc-gen-grpc="$plugin" \
  "$proto_dir/$proto_rel"

# The generated attention_pb2_grpc.py imports "attention.v1.attention_pb2" as
# a top-level package; make it relative so the stubs live inside
# attention_client._gen without touching sys.path.
sed -i 's/^from attention\.v1 import attention_pb2 as/from . import attention_pb2 as/' \
  "$tmp/attention/v1/attention_pb2_grpc.py"
for d in "$tmp" "$tmp/attention" "$tmp/attention/v1"; do
  : > "$d/__init__.py"
done

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "generate_stubs.sh: wrote $out" >&2
