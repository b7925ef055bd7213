/* The registry backend a C test runs on, chosen by the environment:
 *
 *   HW_TEST_BACKEND unset or "memory"   the in-memory registry
 *   HW_TEST_BACKEND=postgres            the PostgreSQL registry on the server HODEI_PG_URL names
 *                                       (`make test` starts a throwaway one), each registry in a
 *                                       schema of its own, dropped by hw_test_backend_cleanup()
 *
 * A test asked for PostgreSQL without HODEI_PG_URL fails with a message; it is never skipped. */
#ifndef HW_TEST_BACKEND_H
#define HW_TEST_BACKEND_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hodei_workers.h"

#define HW_TEST_MAX_SCHEMAS 64

static char hw_test_schemas[HW_TEST_MAX_SCHEMAS][49];
static int hw_test_schema_count;

static inline int hw_test_on_postgres(void) {
  const char *b = getenv("HW_TEST_BACKEND");
  return b != NULL && strcmp(b, "postgres") == 0;
}

static inline const char *hw_test_backend_name(void) {
  return hw_test_on_postgres() ? "postgres" : "memory";
}

/* The server of a PostgreSQL run; exits the test (failed) when none is named. */
static inline const char *hw_test_pg_url(void) {
  const char *url = getenv("HODEI_PG_URL");
  if (url == NULL || url[0] == '\0') {
    fprintf(stderr,
            "HW_TEST_BACKEND=postgres but HODEI_PG_URL is not set: run `make test` or `make "
            "test-pg` (they start a throwaway server), or set HODEI_PG_URL to a libpq "
            "connection string\n0 passed, 1 failed\n");
    exit(1);
  }
  return url;
}

/* A new, empty registry on `clock` of the backend under test. */
static inline hw_status hw_test_registry_new(const hw_clock *clock, hw_registry **out) {
  if (!hw_test_on_postgres()) return hw_registry_new_with_clock(clock, out);
  const char *url = hw_test_pg_url();
  if (hw_test_schema_count == HW_TEST_MAX_SCHEMAS) {
    fprintf(stderr, "backend.h: more than %d registries in one test\n", HW_TEST_MAX_SCHEMAS);
    exit(1);
  }
  /* Unique across runs sharing a server: the time, an address (ASLR) and a counter. */
  static int counter;
  int local = 0;
  char *name = hw_test_schemas[hw_test_schema_count];
  snprintf(name, sizeof hw_test_schemas[0], "c_%lx_%lx_%d", (unsigned long)time(NULL),
           (unsigned long)(((uintptr_t)&local >> 4) & 0xfffffff), counter++);
  hw_status st = hw_registry_new_postgres_with_clock(url, name, clock, out);
  if (st == HW_OK) hw_test_schema_count++;
  return st;
}

/* Another handle on `reg`, the registry hw_test_registry_new made last: on PostgreSQL a handle
 * of its own on the same registry (what another process sharing it holds), in memory `reg`
 * itself (free it only when it is not `reg`). */
static inline hw_status hw_test_registry_reopen(const hw_clock *clock, hw_registry *reg,
                                                hw_registry **out) {
  if (!hw_test_on_postgres()) {
    *out = reg;
    return HW_OK;
  }
  if (hw_test_schema_count == 0) {
    fprintf(stderr, "backend.h: hw_test_registry_reopen before hw_test_registry_new\n");
    exit(1);
  }
  return hw_registry_new_postgres_with_clock(
      hw_test_pg_url(), hw_test_schemas[hw_test_schema_count - 1], clock, out);
}

/* Drops every schema this test created (call after freeing the registries). */
static inline void hw_test_backend_cleanup(void) {
  for (int i = 0; i < hw_test_schema_count; i++) {
    if (hw_registry_drop_postgres(hw_test_pg_url(), hw_test_schemas[i]) != HW_OK) {
      fprintf(stderr, "warning: could not drop test registry %s: %s\n", hw_test_schemas[i],
              hw_last_error_message());
    }
  }
  hw_test_schema_count = 0;
}

#endif /* HW_TEST_BACKEND_H */
