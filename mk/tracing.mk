# The core's optional `tracing` feature (off by default): its lints and its test, which a plain
# `cargo test --workspace` does not build (the test needs the feature).
.PHONY: test-tracing
test: test-tracing

test-tracing:
	$(CARGO) clippy -p hodei-workers --features tracing --all-targets -- -D warnings
	$(CARGO) test -p hodei-workers --features tracing --test tracing
