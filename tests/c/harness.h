/* A tiny test harness for the C tests: CHECK counts, the runner prints "N passed, N failed". */
#ifndef HW_TEST_HARNESS_H
#define HW_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hodei_workers.h"

static int hw_test_passed;
static int hw_test_failed;

#define CHECK(cond)                                                                    \
  do {                                                                                 \
    if (cond) {                                                                        \
      hw_test_passed++;                                                                \
    } else {                                                                           \
      hw_test_failed++;                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);         \
    }                                                                                  \
  } while (0)

/* Checks that `call` returns `expected`; on a mismatch prints both and the last error. */
#define CHECK_STATUS(call, expected)                                                   \
  do {                                                                                 \
    hw_status st_ = (call);                                                            \
    hw_status want_ = (expected);                                                      \
    if (st_ == want_) {                                                                \
      hw_test_passed++;                                                                \
    } else {                                                                           \
      hw_test_failed++;                                                                \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__, \
              #call, hw_status_str(st_), hw_status_str(want_), hw_last_error_message()); \
    }                                                                                  \
  } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, HW_OK)

/* For setup steps the rest of a test depends on: stop the program if they fail. */
#define REQUIRE_OK(call)                                                               \
  do {                                                                                 \
    hw_status st_ = (call);                                                            \
    if (st_ != HW_OK) {                                                                \
      fprintf(stderr, "%s:%d: REQUIRED %s returned %s (%s)\n", __FILE__, __LINE__,     \
              #call, hw_status_str(st_), hw_last_error_message());                     \
      hw_test_failed++;                                                                \
      return hw_test_report();                                                         \
    }                                                                                  \
    hw_test_passed++;                                                                  \
  } while (0)

#define CHECK_STR(actual, expected)                                                    \
  do {                                                                                 \
    const char *a_ = (actual);                                                         \
    const char *e_ = (expected);                                                       \
    if (a_ != NULL && e_ != NULL && strcmp(a_, e_) == 0) {                             \
      hw_test_passed++;                                                                \
    } else {                                                                           \
      hw_test_failed++;                                                                \
      fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__, __LINE__,    \
              #actual, a_ ? a_ : "(null)", e_ ? e_ : "(null)");                        \
    }                                                                                  \
  } while (0)

static inline int hw_test_report(void) {
  printf("%d passed, %d failed\n", hw_test_passed, hw_test_failed);
  return hw_test_failed == 0 && hw_test_passed > 0 ? 0 : 1;
}

/* Iteration counts scale down under valgrind: HW_TEST_SCALE=1 (the default is 10). */
static inline int hw_test_scale(void) {
  const char *s = getenv("HW_TEST_SCALE");
  int v = s ? atoi(s) : 10;
  return v > 0 ? v : 1;
}

static inline int hw_id_eq(hw_worker_id a, hw_worker_id b) {
  return memcmp(a.bytes, b.bytes, sizeof a.bytes) == 0;
}

#endif /* HW_TEST_HARNESS_H */
