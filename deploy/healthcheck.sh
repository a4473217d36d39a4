#!/bin/sh
# The image's HEALTHCHECK: grpc.health.v1.Health/Check through attention_cli;
# exits 0 only when the server answers SERVING (it answers NOT_SERVING while
# draining). Asks $ATTN_HEALTH_TARGET, else 127.0.0.1 at the port of $ATTN_LISTEN.
set -eu
listen="${ATTN_LISTEN:-0.0.0.0:50051}"
target="${ATTN_HEALTH_TARGET:-127.0.0.1:${listen##*:}}"
exec /usr/local/bin/attention_cli health --target "$target" --timeout_s 3
