#!/bin/sh
# Layers.WireAndLoadtestDoNotLinkOneDnn: the binaries that compute nothing
# locally (the wire library's tests, the load tester) do not link oneDNN;
# attention_server, which computes, does (so the check can fail).
# Usage: onednn_links_test.sh <build/bin>
bin="$1"
status=0
for b in wire_tests attention_loadtest attention_server; do
  if [ ! -x "$bin/$b" ]; then echo "$b: not built"; status=1; fi
done
for b in wire_tests attention_loadtest; do
  if ldd "$bin/$b" | grep -q dnnl; then echo "$b links oneDNN"; status=1; fi
done
if ! ldd "$bin/attention_server" | grep -q dnnl; then
  echo "attention_server does not link oneDNN: the check sees nothing"; status=1
fi
exit $status
