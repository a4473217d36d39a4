#!/bin/sh
# The image's entrypoint: attention_server on $ATTN_LISTEN with the flags of
# $ATTN_SERVER_FLAGS (split on spaces) and then its own arguments. exec: the
# server is PID 1 and takes SIGTERM itself (it drains, then exits 0).
# A first argument that is not a flag runs that command instead, e.g.
#   podman run --rm --network host attention-service attention_cli health --target 10.0.0.7:50051
set -eu
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi
# shellcheck disable=SC2086  # word splitting of ATTN_SERVER_FLAGS is wanted
exec /usr/local/bin/attention_server --listen="${ATTN_LISTEN:-0.0.0.0:50051}" ${ATTN_SERVER_FLAGS:-} "$@"
