#!/usr/bin/env bash
# Installs exactly the Debian bookworm packages the build and the tests need.
# Idempotent: does nothing (and needs no network) when all are present.
# Then scripts/install-go-tools.sh (grpcurl, ghz) where Go is present.
#   scripts/install-deps.sh            build + test dependencies
#   scripts/install-deps.sh --golden   also python3-torch/numpy to regenerate golden files
#   scripts/install-deps.sh --build-only   only what building the binaries needs (image)
set -euo pipefail

packages=(
  g++ make cmake pkg-config
  libdnnl-dev          # oneDNN 2.6.3: the matrix primitives of core/
  ocl-icd-opencl-dev   # OpenCL headers + libOpenCL.so, required by oneDNN's CMake config
  libabsl-dev          # absl::Status, StatusOr, containers, synchronization
  libcpp-httplib-dev   # the /metrics endpoint (server/metrics.cc)
  nlohmann-json3-dev   # the JSON call log and reports
  libgtest-dev libgmock-dev
  openssl              # certificates for the TLS tests
  clang libclang-rt-14-dev libomp-14-dev  # the libFuzzer target (tests/fuzz)
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc  # the service
  python3-grpcio python3-protobuf python3-numpy python3-pytest  # the Python client's tests
  python3-venv         # tests/clients: the client installed from PyPI into build/venv-client
  python3-yaml         # tests/deploy/yaml_test.py
  chromium             # headless: tests/loadtest/report_render_test.sh draws the HTML report
)
if [[ "${1:-}" == "--golden" ]]; then
  packages+=(python3-torch python3-numpy)
fi

if [[ "${1:-}" == "--build-only" ]]; then
  # What the CMake build of the binaries needs (the container image's build stage).
  packages=(g++ make cmake pkg-config libdnnl-dev ocl-icd-opencl-dev libabsl-dev
            libcpp-httplib-dev nlohmann-json3-dev
            libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The Node client needs node >= 18 with npm (a preinstalled Node.js counts).
if [[ "${1:-}" != "--build-only" ]] && ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# grpcurl and ghz for their tests, where Go is present.
if [[ "${1:-}" != "--build-only" ]]; then
  "$(dirname "${BASH_SOURCE[0]}")/install-go-tools.sh"
fi
