# The lifecycle demo: real OS processes as workers (core/examples/demo.rs).
#
#   make demo        the full demonstration (~10 s), release build
#   make test-demo   the short variant (--quick); its exit status checks the demo's own
#                    assertions (no job lost for good, the killed worker's job requeued and
#                    finished elsewhere, scale-down to min_ready_workers, no leaked process)

.PHONY: demo test-demo

demo:
	$(CARGO) run --release -p hodei-workers --example demo

test-demo:
	$(CARGO) run -p hodei-workers --example demo -- --quick

test: test-demo
