# PostgreSQL (pg/, DESIGN.md §10): the PostgreSQL part of the tests.
#
#   make test-pg          only the PostgreSQL parts, in one throwaway server (or HODEI_PG_URL):
#                         the pg crate's tests (the registry conformance suite of core/tests/registry
#                         on PostgreSQL, processes sharing one registry, faults), the C tests of
#                         test-c-pg, pytest's PostgreSQL half
#   make test-pg-rust     the pg crate's tests alone
#   make test-c-pg        tests/c/test_lifecycle.c, test_publish.c, test_heartbeat_many.c,
#                         test_longest_idle.c and test_readouts.c on PostgreSQL
#                         (HW_TEST_BACKEND=postgres)
#   make test-python-pg   the pytest runs on PostgreSQL alone
#
# The server: HODEI_PG_URL (any libpq connection string: 'host=/tmp user=postgres dbname=postgres'
# or 'postgresql://user@host/db'; the user must be allowed to create schemas); without it the
# Makefile runs the whole goal inside one throwaway server started by scripts/pg-tmp.sh (initdb,
# pg_ctl; PostgreSQL installed with apt-get when missing). `make test` runs every part: the pg
# crate's tests within `cargo test --workspace`, pytest's PostgreSQL half within test-python, and
# test-c-pg below.
#
# How long (issue 13: < 5 minutes on 2 cores), measured 2026-12-04 on the shared 2-core machine
# with a warm build, load average 8-15: the pg crate's tests 100-190 s (the conformance suite
# 70-120 s of it, its model-based test alone ~65 s), test-c-pg ~16 s (valgrind 14 s of it),
# pytest's PostgreSQL half ~41 s: 2.6-4.1 minutes in all.

.PHONY: test-pg test-pg-rust test-c-pg test-python-pg
test: test-c-pg

test-pg: test-pg-rust test-c-pg test-python-pg

test-pg-rust:
	$(CARGO) test -p hodei-workers-postgres

# The programs of test-c that take their registry from tests/c/backend.h, run on PostgreSQL,
# plain and under valgrind.
HW_CTESTS_PG := test_lifecycle test_publish test_heartbeat_many test_longest_idle test_readouts
test-c-pg: c-lib
	@mkdir -p $(HW_CBUILD)
	@set -e; for t in $(HW_CTESTS_PG); do \
	  $(HW_CC) $(HW_CFLAGS) -o $(HW_CBUILD)/$${t}_pg tests/c/$$t.c \
	    target/$(HW_CPROFILE)/libhodei_workers.a $(HW_CLIBS); \
	done; \
	for t in $(HW_CTESTS_PG); do echo "== $$t on postgres"; HW_TEST_BACKEND=postgres $(HW_CBUILD)/$${t}_pg; done; \
	for t in $(HW_CTESTS_PG); do echo "== valgrind $$t on postgres"; \
	  HW_TEST_BACKEND=postgres HW_TEST_SCALE=1 $(HW_VALGRIND) $(HW_CBUILD)/$${t}_pg; done

test-python-pg: python-wheel
	$(VENV_PY) -m pytest -q tests/python -k postgres
