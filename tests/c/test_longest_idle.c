/* hw_registry_longest_idle: a host's scale-in candidates, the READY workers idle longest first,
 * answered from the ready index. Busy and starting workers are never listed; n caps the list;
 * a worker claimed and released starts its idle time again.
 *
 * Runs on the in-memory registry (make test-c) and on PostgreSQL (make test-c-pg). */
#include "backend.h"
#include "harness.h"

/* The ids of `list`, in order, into `ids` (at most `cap`); returns the length. */
static size_t ids_of(const hw_worker_list *list, hw_worker_id *ids, size_t cap) {
  size_t len = 0;
  CHECK_OK(hw_worker_list_len(list, &len));
  for (size_t i = 0; i < len && i < cap; i++) {
    const hw_worker *w = NULL;
    CHECK_OK(hw_worker_list_get(list, i, &w));
    if (w != NULL) CHECK_OK(hw_worker_get_id(w, &ids[i]));
  }
  return len;
}

int main(void) {
  if (!HW_ABI_COMPATIBLE() || (hw_abi_version() & 0xffff) < 1) {
    fprintf(stderr, "the library lacks ABI 1.1 (hw_registry_longest_idle)\n0 passed, 1 failed\n");
    return 1;
  }
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker *w = NULL;
  hw_worker_list *list = NULL;
  uint64_t now = 0;
  REQUIRE_OK(hw_clock_new_manual(5000, &clock));
  REQUIRE_OK(hw_test_registry_new(clock, &reg));
  REQUIRE_OK(hw_worker_spec_new("img", &spec));

  /* Three READY workers, a second apart (w[0] idle longest), one busy, one starting. */
  hw_worker_id ready[3], busy, starting;
  for (int i = 0; i < 3; i++) {
    REQUIRE_OK(hw_registry_register(reg, "p1", "docker", "c", spec, &w));
    REQUIRE_OK(hw_worker_get_id(w, &ready[i]));
    hw_worker_free(w);
    REQUIRE_OK(hw_registry_update_state(reg, ready[i], HW_WORKER_STATE_READY, &w));
    hw_worker_free(w);
    REQUIRE_OK(hw_clock_advance(clock, 1000, &now));
  }
  REQUIRE_OK(hw_registry_register(reg, "p1", "docker", "c", spec, &w));
  REQUIRE_OK(hw_worker_get_id(w, &busy));
  hw_worker_free(w);
  REQUIRE_OK(hw_registry_update_state(reg, busy, HW_WORKER_STATE_READY, &w));
  hw_worker_free(w);
  REQUIRE_OK(hw_registry_assign(reg, busy, "job-1", &w));
  hw_worker_free(w);
  REQUIRE_OK(hw_registry_register(reg, "p1", "docker", "c", spec, &w));
  REQUIRE_OK(hw_worker_get_id(w, &starting));
  hw_worker_free(w);

  hw_worker_id got[8];
  CHECK_OK(hw_registry_longest_idle(reg, 10, &list));
  size_t len = ids_of(list, got, 8);
  CHECK(len == 3);
  CHECK(len == 3 && hw_id_eq(got[0], ready[0]) && hw_id_eq(got[1], ready[1]) &&
        hw_id_eq(got[2], ready[2]));
  hw_worker_list_free(list);
  list = NULL;

  CHECK_OK(hw_registry_longest_idle(reg, 2, &list));
  len = ids_of(list, got, 8);
  CHECK(len == 2 && hw_id_eq(got[0], ready[0]) && hw_id_eq(got[1], ready[1]));
  hw_worker_list_free(list);
  list = NULL;
  CHECK_OK(hw_registry_longest_idle(reg, 0, &list));
  CHECK(ids_of(list, got, 8) == 0);
  hw_worker_list_free(list);
  list = NULL;

  /* The longest idle claimed and released: its idle time starts again, it goes last. */
  char *job = NULL;
  REQUIRE_OK(hw_registry_assign(reg, ready[0], "job-2", &w));
  hw_worker_free(w);
  REQUIRE_OK(hw_clock_advance(clock, 1000, &now));
  REQUIRE_OK(hw_registry_release(reg, ready[0], &job));
  hw_string_free(job);
  CHECK_OK(hw_registry_longest_idle(reg, SIZE_MAX, &list));
  len = ids_of(list, got, 8);
  CHECK(len == 3 && hw_id_eq(got[0], ready[1]) && hw_id_eq(got[2], ready[0]));
  hw_worker_list_free(list);

  hw_worker_list *untouched = (hw_worker_list *)&untouched;
  CHECK_STATUS(hw_registry_longest_idle(NULL, 1, &untouched), HW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(hw_registry_longest_idle(reg, 1, NULL), HW_ERR_INVALID_ARGUMENT);
  CHECK(untouched == (hw_worker_list *)&untouched);

  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
  hw_test_backend_cleanup();
  printf("test_longest_idle (%s): ", hw_test_backend_name());
  return hw_test_report();
}
