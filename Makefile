# The two commands of the README:
#   make serve   install what is missing, build Release, start the server
#   make test    install what is missing, build, run every test
#   make anchors our attention against PyTorch and ONNX Runtime (docs/PERFORMANCE.md)
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps build test serve bench anchors sanitize sanitize-core sanitize-thread fuzz golden format clean image image-test

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j$(JOBS)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

# Starts the server in the foreground with the demo modules on
# 127.0.0.1:$(PORT), metrics on http://127.0.0.1:$(METRICS_PORT)/metrics;
# Ctrl-C drains and stops it. E.g. make serve PORT=50052 METRICS_PORT=-1
# (no metrics) SERVE_FLAGS=--workers=4.
PORT ?= 50051
METRICS_PORT ?= 9090
SERVE_FLAGS ?=
serve: build
	@exec $(BUILD_DIR)/bin/attention_server --listen=127.0.0.1:$(PORT) --metrics_port=$(METRICS_PORT) \
	  --demo_modules $(SERVE_FLAGS)

bench: build
	@$(BUILD_DIR)/bin/attention_bench

# attention_bench against PyTorch SDPA and ONNX Runtime at 2 threads; the
# venv (build/venv-bench, torch from PyPI) is created on the first run.
anchors: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j$(JOBS) --target attention_bench
	@VENV=$(BUILD_DIR)/venv-bench scripts/setup-bench-venv.sh
	@$(BUILD_DIR)/venv-bench/bin/python bench/anchors.py --bench $(BUILD_DIR)/bin/attention_bench --threads 2

# Address + undefined-behaviour sanitizers over the whole test suite.
sanitize: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=address,undefined >/dev/null
	@cmake --build build-asan -j$(JOBS)
	@cd build-asan && ctest --output-on-failure -j$(JOBS) -E 'Clients|Fuzz'

# The core's suite alone under ASan/UBSan (what CI runs after make test).
sanitize-core: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=address,undefined >/dev/null
	@cmake --build build-asan -j$(JOBS) --target core_tests
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ./bin/core_tests --gtest_brief=1

# ThreadSanitizer over the C++ suites. libgomp is not instrumented, so TSan
# cannot see its barriers and reports every OpenMP team as racing: the run
# uses one OpenMP thread per calling thread (OMP_NUM_THREADS=1); races
# between our own threads (gRPC's, the compute pool's, clients') are checked.
sanitize-thread: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=thread >/dev/null
	@cmake --build build-tsan -j$(JOBS)
	@cd build-tsan && OMP_NUM_THREADS=1 TSAN_OPTIONS="ignore_noninstrumented_modules=1 halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  ctest --output-on-failure -j$(JOBS) -E 'Clients|Binary|Fuzz'

# libFuzzer over request validation and tensor decoding (clang, ASan+UBSan):
# FUZZ_SECONDS of fuzzing from tests/fuzz/corpus.
FUZZ_SECONDS ?= 600
fuzz: deps
	@tests/fuzz/run_fuzzer.sh $(FUZZ_SECONDS)

# The container image (Dockerfile): podman, else docker; see deploy/README.md.
IMAGE ?= attention-service:latest
image:
	@IMAGE=$(IMAGE) scripts/image.sh build

# Builds the image from a clean clone of HEAD, runs it, makes real RPCs, stops it.
image-test:
	@tests/deploy/container_test.sh

# Regenerates tests/golden/data from the PyTorch reference modules (needs
# python3-torch), and tests/golden/hf from Hugging Face transformers' own
# attention modules (build/venv-golden, torch and transformers from PyPI,
# created on the first run). make test needs neither.
golden:
	@scripts/install-deps.sh --golden
	@/usr/bin/python3 tests/golden/make_golden.py
	@VENV=$(BUILD_DIR)/venv-golden scripts/setup-golden-venv.sh
	@$(BUILD_DIR)/venv-golden/bin/python tests/golden/make_hf_golden.py

format:
	@clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	@rm -rf $(BUILD_DIR) build-asan build-tsan build-fuzz
