# Thin wrapper over CMake. Every target first installs missing Debian packages.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 20

.PHONY: all deps build test test-fast test-asan demo demo-assistant bench fuzz clean llamacpp check-llamacpp

all: build

deps:
	@sh scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The README's test command: the release build's tests, then the same tests under ASan+UBSan.
test: test-fast test-asan

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFTC_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

demo: build
	@sh examples/demo.sh $(BUILD)/ftc

# The generative case: SmolLM2-135M-Instruct as it is, with RAG, LoRA- and fully tuned (examples/assistant).
demo-assistant: build
	@sh examples/assistant/run.sh $(BUILD)/ftc

bench: build
	@sh bench/run.sh $(BUILD)/ftc

# Each libFuzzer target runs FUZZ_SECONDS on its committed seed corpus (fuzz/corpus/<name>).
fuzz:
	@sh scripts/install-deps.sh --fuzz
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFTC_FUZZ=ON -DFTC_SANITIZE=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@for f in $(FUZZ_BUILD)/fuzz_*; do n=$$(basename $$f); mkdir -p $(FUZZ_BUILD)/corpus-$$n; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(FUZZ_BUILD)/corpus-$$n fuzz/corpus/$$n || exit 1; done

# llama.cpp, the peer for GGUF export and decode speed: built once from a pinned source into a cache outside the
# repo (scripts/build-llamacpp.sh; FTC_LLAMACPP_DIR). Optional: not part of `make test`.
llamacpp:
	@sh scripts/build-llamacpp.sh

check-llamacpp: build
	@sh scripts/build-llamacpp.sh >/dev/null
	@sh scripts/check-llamacpp.sh $(BUILD)/ftc

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
