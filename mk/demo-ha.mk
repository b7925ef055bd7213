# The replicated-manager demo: two scheduler host processes share one fleet on PostgreSQL; the
# leader is killed with SIGKILL mid-run; the other takes over (pg/examples/demo_ha.rs).
#
#   make demo-ha       the full run (~15 s), release build, on a throwaway PostgreSQL server
#                      (scripts/pg-tmp.sh) or the one HODEI_PG_URL names
#   make test-demo-ha  the short run (--quick), part of `make test`: the process-level failover
#                      test. Its exit status is the demo's self-check: every job finished once or
#                      was reported lost and requeued, no agent process left, no record left, no
#                      instance destroyed twice. Bounded: every wait has a deadline.

.PHONY: demo-ha test-demo-ha

define HW_WITH_PG
	@if [ -n "$$HODEI_PG_URL" ]; then $(1); \
	elif [ -x scripts/pg-tmp.sh ]; then scripts/pg-tmp.sh run $(1); \
	else echo "demo-ha: set HODEI_PG_URL to a PostgreSQL server (libpq connection string)"; exit 1; fi
endef

demo-ha:
	$(CARGO) build --release -p hodei-workers-postgres --example demo_ha
	$(call HW_WITH_PG,target/release/examples/demo_ha)

test-demo-ha:
	$(CARGO) build -p hodei-workers-postgres --example demo_ha
	$(call HW_WITH_PG,target/debug/examples/demo_ha --quick)

test: test-demo-ha
