# make bench — the benchmarks of issue 6 (slow: ~10 minutes on 2 cores; never part of `make test`).
#
#   make bench                     library vs naive baseline at 10k and 1M workers, memory per
#                                  worker, then the table (target/bench-extra/report.md)
#   make bench BENCH_SIZES=10k     a quick pass on the small fleet only
#   make bench-report              the table again from the last run
#
# Results of one run only: the previous run's criterion data and extra results are removed first,
# so that the table never mixes two runs.

BENCH_SIZES ?= 10k,1M
BENCH_DIR   := $(CURDIR)/target/criterion
BENCH_OUT   := $(CURDIR)/target/bench-extra
BENCH_ENV   := CRITERION_HOME=$(BENCH_DIR) HODEI_BENCH_OUT=$(BENCH_OUT) HODEI_BENCH_SIZES=$(BENCH_SIZES)

.PHONY: bench bench-rust bench-report
bench: bench-rust
	@$(MAKE) --no-print-directory bench-report

bench-rust:
	rm -rf $(BENCH_DIR) $(BENCH_OUT)
	mkdir -p $(BENCH_OUT)
	@echo "load before the run: $$(cat /proc/loadavg 2>/dev/null)" | tee $(BENCH_OUT)/load.txt
	$(BENCH_ENV) $(CARGO) bench -p hodei-workers --bench registry --bench memory
	@echo "load after the run: $$(cat /proc/loadavg 2>/dev/null)" | tee -a $(BENCH_OUT)/load.txt

bench-report:
	$(PYTHON) bench/report.py target | tee $(BENCH_OUT)/report.md
