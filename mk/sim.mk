# The core's optional `sim` feature (off by default, so that the C library and the Python module
# do not carry the simulation): its lints and the tests that need it, which a plain
# `cargo test --workspace` does not build (core/Cargo.toml's `required-features` on the `sim`
# test binary, core/tests/sim/main.rs, and the one `#[cfg(feature = "sim")]` test in
# core/tests/metrics.rs).
.PHONY: test-sim
test: test-sim

test-sim:
	$(CARGO) clippy -p hodei-workers --features sim --all-targets -- -D warnings
	$(CARGO) test -p hodei-workers --features sim --lib sim::
	$(CARGO) test -p hodei-workers --features sim --test sim --test metrics
	$(CARGO) test -p hodei-workers --features sim --doc src/sim/
