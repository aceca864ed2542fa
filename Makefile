# Everything a newcomer needs: `make demo` and `make test` (see README.md).
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all setup configure build image test unit integration kube kube-up kube-down demo bench bench-hbone bench-quick bench-relay bench-kube bench-istiod asan fuzz format clean

all: build

setup:
	@./scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# The node's container images as OCI archives in $(BUILD_DIR)/image (no Docker engine):
# ztunnel (node process) and ztunnel-cni (node agent). TAG=... overrides the version.
image: build
	@/usr/bin/python3 scripts/image.py --build-dir $(BUILD_DIR) $(if $(TAG),--tag $(TAG))

# Every test: unit tests, the root-only integration tests and the bench smoke run on
# the release build; then the unit and integration tests again under ASan + UBSan;
# then each fuzz target for 30 s (ASan + UBSan, libFuzzer).
test: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j 1
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=30

unit: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -L unit

integration: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -L integration

# The ambient tests on a real single-node Kubernetes (integration/kube/), which they
# start and tear down; kube-up/kube-down keep one running for manual work
# (ZTUNNEL_KUBE_REUSE=1 lets the tests use it).
kube: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -L kube

kube-up: setup
	@/usr/bin/python3 integration/kube/node.py up

kube-down:
	@/usr/bin/python3 integration/kube/node.py down

demo: build
	@/usr/bin/python3 scripts/demo.py --ztunnel $(BUILD_DIR)/ztunnel/app/ztunnel --agent $(BUILD_DIR)/ztunnel/agent/ztunnel-agent

# The mesh benchmark (direct vs ambient vs sidecar), about 13 minutes; see docs/BENCHMARKS.md.
bench: build
	@/usr/bin/python3 bench/run --ztunnel $(BUILD_DIR)/ztunnel/app/ztunnel --agent $(BUILD_DIR)/ztunnel/agent/ztunnel-agent

bench-hbone: build
	@/usr/bin/python3 bench/hbone --ztunnel $(BUILD_DIR)/ztunnel/app/ztunnel

bench-quick: build
	@/usr/bin/python3 bench/run --quick --ztunnel $(BUILD_DIR)/ztunnel/app/ztunnel --agent $(BUILD_DIR)/ztunnel/agent/ztunnel-agent --out /tmp/ztunnel-bench-quick

# The Kubernetes agent on the real node: enrollment latency, API change -> node, agent
# RSS/CPU idle and during a 100-pod rollout, the config channel at 1,000 pods.
bench-kube: build
	@/usr/bin/python3 bench/kube

# Our node process fed by a real istiod: RSS at 1,000 pods of state (needs make kube-up).
bench-istiod: build
	@/usr/bin/python3 bench/istiod

bench-relay: build
	@/usr/bin/python3 bench/relay --ztunnel $(BUILD_DIR)/ztunnel/app/ztunnel

# AddressSanitizer + UndefinedBehaviorSanitizer build (asserts on) running the unit
# tests and the root-only integration tests; any sanitizer report fails the test.
asan: setup
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DZTUNNEL_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS)
	@ctest --test-dir $(ASAN_DIR) --output-on-failure -L 'unit|integration'

# The libFuzzer targets (fuzz/), built with clang into $(FUZZ_DIR) with ASan + UBSan,
# each run for FUZZ_SECONDS; prints executions and coverage, fails on any crash.
fuzz: setup
	@cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
		-DCMAKE_BUILD_TYPE=Debug -DZTUNNEL_FUZZ=ON -DZTUNNEL_BUILD_TESTS=OFF >/dev/null
	@cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzzers
	@/usr/bin/python3 fuzz/run --build $(FUZZ_DIR) --seconds $(FUZZ_SECONDS)

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	@rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
