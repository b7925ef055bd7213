# hodei-workers — every target installs what it needs on a fresh machine
# (Rust toolchain, gcc and Python are assumed; the rest comes from crates.io, PyPI, apt).
#
#   make test     every Rust, C and Python test, plus fmt and clippy (with a throwaway
#                 PostgreSQL server, or the one HODEI_PG_URL names; see below)
#   make demo     the main demonstration (real OS processes as workers)
#   make header   regenerate include/hodei_workers.h with cbindgen
#   make bench    criterion benchmarks and the Python/C timings (slow; not part of test)

CARGO  ?= cargo
PYTHON ?= python3

# The tests need a PostgreSQL server (the pg/ registry's suite, and the C and Python tests' runs
# on it). HODEI_PG_URL (any libpq connection string) names one; without it, a goal that runs tests
# makes make run itself again inside ONE throwaway server for the whole run (scripts/pg-tmp.sh:
# initdb as a non-root user, a Unix socket in a temporary directory, stopped and removed
# afterwards even on failure; mk/pg.mk). Tests that need the server and lack HODEI_PG_URL fail.
PG_GOALS := all test test-rust test-c test-python test-pg test-pg-rust test-c-pg test-python-pg
PG_RUN_GOALS := $(or $(MAKECMDGOALS),all)
ifeq ($(strip $(HODEI_PG_URL)),)
ifneq ($(filter $(PG_GOALS),$(PG_RUN_GOALS)),)
PG_WRAP := 1
endif
endif

ifdef PG_WRAP
.PHONY: $(PG_RUN_GOALS)
$(firstword $(PG_RUN_GOALS)):
	@scripts/pg-tmp.sh run $(MAKE) --no-print-directory $(PG_RUN_GOALS)
$(wordlist 2,$(words $(PG_RUN_GOALS)),$(PG_RUN_GOALS)): $(firstword $(PG_RUN_GOALS))
	@:
else

.PHONY: all test lint test-rust demo header bench install clean
all: test

test: lint test-rust

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# The API docs users read: a broken or private link is an error.
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps -q

test-rust:
	$(CARGO) test --workspace

clean:
	$(CARGO) clean
	rm -rf .venv build

# Each part of the project adds its targets (and its dependencies of `test`) here.
include $(sort $(wildcard mk/*.mk))
endif
