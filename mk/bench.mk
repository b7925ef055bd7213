# make bench — the benchmarks of issue 6 (slow: about 15 minutes on 2 cores; never part of
# `make test`). See BENCHMARKS.md.
#
#   make bench                     everything below, then the table (target/bench-extra/report.md)
#   make bench-rust                criterion: library vs naive baseline at 10k and 1M workers,
#                                  memory per worker, the machine's limits (pointer chase,
#                                  sequential read)
#   make bench-c                   heartbeat through the C ABI (bench/c/heartbeat.c) and its Rust
#                                  twin (core/benches/heartbeat_loop.rs), alternating three times: C,
#                                  Rust, C, Rust, C, Rust
#   make bench-python              the Python module vs a plain-Python registry (10k, 100k)
#   make bench-report              the table again from the last run
#   make bench-pg                  the PostgreSQL registry at 1M workers beside the raw floor, in
#                                  its own throwaway server (BENCHMARKS.md, PostgreSQL section)
#   make bench BENCH_SIZES=10k     a quick pass on the small fleet only
#
# One run's results only: `bench` removes the previous run's criterion data and extra results
# first, so that the table never mixes two runs.

BENCH_SIZES    ?= 10k,1M
BENCH_PY_SIZES ?= 10000,100000
BENCH_DIR      := $(CURDIR)/target/criterion
BENCH_OUT      := $(CURDIR)/target/bench-extra
BENCH_ENV      := CRITERION_HOME=$(BENCH_DIR) HODEI_BENCH_OUT=$(BENCH_OUT) HODEI_BENCH_SIZES=$(BENCH_SIZES)
# The Python rows need an optimised wheel; it goes to its own virtual environment so that the
# debug wheel of `make test-python` in .venv is left alone.
BENCH_VENV     := .venv-bench
BENCH_CBUILD   := target/c-bench
# 10k,1M -> 10000 1000000
BENCH_COUNTS    = $(shell echo '$(BENCH_SIZES)' | sed -e 's/[kK]/000/g' -e 's/[mM]/000000/g' -e 's/,/ /g')

.PHONY: bench bench-clean bench-rust bench-c bench-python bench-report
bench: bench-clean
	@echo "load before the run: $$(cat /proc/loadavg 2>/dev/null)" | tee $(BENCH_OUT)/load.txt
	$(MAKE) --no-print-directory bench-rust
	$(MAKE) --no-print-directory bench-c
	$(MAKE) --no-print-directory bench-python
	$(MAKE) --no-print-directory bench-pg
	@echo "load after the run: $$(cat /proc/loadavg 2>/dev/null)" | tee -a $(BENCH_OUT)/load.txt
	@$(MAKE) --no-print-directory bench-report

bench-clean:
	rm -rf $(BENCH_DIR) $(BENCH_OUT)
	mkdir -p $(BENCH_OUT)

bench-rust:
	@mkdir -p $(BENCH_OUT)
	$(BENCH_ENV) $(CARGO) bench -p hodei-workers --bench registry --bench memory --bench metrics --bench heartbeat_sample --bench limits

bench-c:
	@mkdir -p $(BENCH_OUT) $(BENCH_CBUILD)
	$(CARGO) build --release -p hodei-workers-ffi
	$(HW_CC) -std=c11 -O2 -Wall -Wextra -Wpedantic -Werror -Iinclude -o $(BENCH_CBUILD)/heartbeat \
	  bench/c/heartbeat.c target/release/libhodei_workers.a -lpthread -ldl -lm
	$(BENCH_ENV) $(CARGO) bench -p hodei-workers --bench heartbeat_loop --no-run
	rm -f $(BENCH_OUT)/c_loop*.json $(BENCH_OUT)/rust_loop*.json
	@# The C loop and its Rust twin in one window, alternating three times (each the best of its
	@# three runs in the table): measured minutes apart, as when the twin ran with the criterion
	@# rows, their difference was the machine's drift between the two moments as much as the
	@# ABI's. They start once the disk has the previous rows' output and 10 s have passed: in
	@# `make bench` the first C run, right after the criterion rows, read 10k at 36.7–52.0 ns
	@# against 31–32 ns in every later run (BENCHMARKS.md, thirteenth round).
	sync; sleep 10
	for round in 1 2 3; do \
	  $(BENCH_CBUILD)/heartbeat $(BENCH_OUT)/c_loop.$$round.json $(BENCH_COUNTS) || exit 1; \
	  $(BENCH_ENV) $(CARGO) bench -q -p hodei-workers --bench heartbeat_loop || exit 1; \
	  mv $(BENCH_OUT)/rust_loop.json $(BENCH_OUT)/rust_loop.$$round.json || exit 1; \
	done

bench-python:
	@mkdir -p $(BENCH_OUT)
	$(MAKE) --no-print-directory python-wheel VENV=$(BENCH_VENV) PY_BUILD=--release PY_WHEELS=build/bench-wheels
	$(BENCH_VENV)/bin/python bench/py_bench.py $(BENCH_OUT)/python.json --sizes $(BENCH_PY_SIZES)

bench-report:
	$(PYTHON) bench/report.py target | tee $(BENCH_OUT)/report.md

# The PostgreSQL registry (pg/examples/bench_pg.rs): always its own throwaway server (never the
# one HODEI_PG_URL names: the bench changes server settings, see scripts/bench-pg.sh), 1M
# workers, each row beside the same work done by raw statements in the same run. About 4
# minutes. The table goes to $(BENCH_OUT)/pg.md (and pg.json).
BENCH_PG_WORKERS ?= 1000000
.PHONY: bench-pg
bench-pg:
	@mkdir -p $(BENCH_OUT)
	$(CARGO) build --release -p hodei-workers-postgres --example bench_pg
	env -u HODEI_PG_URL scripts/pg-tmp.sh run scripts/bench-pg.sh \
	  target/release/examples/bench_pg --workers $(BENCH_PG_WORKERS) --out $(BENCH_OUT)/pg.json
