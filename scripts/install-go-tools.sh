#!/usr/bin/env bash
# Installs the standard gRPC tools the tests drive, from the Go module proxy,
# into build/tools/bin (or $GOBIN): grpcurl (calls by reflection, JSON in and
# out) and ghz (a gRPC load generator). Does nothing where Go is absent or the
# pinned versions are already there; needs network only to install.
#   scripts/install-go-tools.sh        install what is missing
#   scripts/install-go-tools.sh --bin  print the directory the tools go to
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${GOBIN:-$repo/build/tools/bin}"
if [[ "${1:-}" == "--bin" ]]; then
  echo "$bin"
  exit 0
fi
tools=(
  github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
  github.com/bojand/ghz/cmd/ghz@v0.120.0
)
if ! command -v go >/dev/null 2>&1; then
  echo "install-go-tools: no go on PATH: grpcurl and ghz not installed (their tests skip)"
  exit 0
fi
mkdir -p "$bin"
for t in "${tools[@]}"; do
  path="${t%@*}" version="${t#*@}" name="${path##*/}"
  # `go version -m` names the module version a binary was built from.
  if [[ -x "$bin/$name" ]] && go version -m "$bin/$name" 2>/dev/null | grep -q "[[:space:]]$version[[:space:]]"; then
    continue
  fi
  echo "install-go-tools: go install $t"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "$t"
done
