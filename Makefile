# hodei-workers — every target installs what it needs on a fresh machine
# (Rust toolchain, gcc and Python are assumed; the rest comes from crates.io, PyPI, apt).
#
#   make test     every Rust, C and Python test, plus fmt and clippy
#   make demo     the main demonstration (real OS processes as workers)
#   make header   regenerate include/hodei_workers.h with cbindgen
#   make bench    criterion benchmarks and the Python/C timings (slow; not part of test)

CARGO  ?= cargo
PYTHON ?= python3

.PHONY: all test lint test-rust demo header bench install clean
all: test

test: lint test-rust

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --workspace

clean:
	$(CARGO) clean
	rm -rf .venv build

# Each part of the project adds its targets (and its dependencies of `test`) here.
include $(sort $(wildcard mk/*.mk))
