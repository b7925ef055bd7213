/* hw_registry_heartbeat_many: the bulk heartbeat of a host that gathers its agents'. One status
 * per id (HW_OK, HW_ERR_NOT_FOUND for an unknown or unregistered worker), the heartbeats
 * recorded as hw_registry_heartbeat records them; a nil id or a NULL array refuses the whole
 * call, records nothing and writes nothing.
 *
 * Runs on the in-memory registry (make test-c) and on PostgreSQL (make test-c-pg). */
#include "backend.h"
#include "harness.h"

static uint64_t last_heartbeat(const hw_registry *reg, hw_worker_id id) {
  hw_worker *w = NULL;
  hw_worker_timestamps t = {0};
  CHECK_OK(hw_registry_get(reg, id, &w));
  if (w != NULL) CHECK_OK(hw_worker_get_timestamps(w, &t));
  hw_worker_free(w);
  return t.last_heartbeat_ms;
}

int main(void) {
  if (!HW_ABI_COMPATIBLE() || (hw_abi_version() & 0xffff) < 1) {
    fprintf(stderr, "the library lacks ABI 1.1 (hw_registry_heartbeat_many)\n0 passed, 1 failed\n");
    return 1;
  }
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker *w = NULL;
  REQUIRE_OK(hw_clock_new_manual(5000, &clock));
  REQUIRE_OK(hw_test_registry_new(clock, &reg));
  REQUIRE_OK(hw_worker_spec_new("img", &spec));
  hw_worker_id ids[4];
  for (int i = 0; i < 3; i++) {
    REQUIRE_OK(hw_registry_register(reg, "p1", "docker", "c", spec, &w));
    REQUIRE_OK(hw_worker_get_id(w, &ids[i]));
    hw_worker_free(w);
  }
  REQUIRE_OK(hw_registry_unregister(reg, ids[1], HW_TERMINATION_REASON_REQUESTED, &w));
  hw_worker_free(w);
  REQUIRE_OK(hw_worker_id_parse("00000000-0000-4000-8000-000000000001", &ids[3]));

  uint64_t now = 0;
  REQUIRE_OK(hw_clock_advance(clock, 1000, &now));
  hw_status statuses[4] = {99, 99, 99, 99};
  CHECK_OK(hw_registry_heartbeat_many(reg, ids, 4, statuses));
  CHECK(statuses[0] == HW_OK && statuses[2] == HW_OK);
  CHECK(statuses[1] == HW_ERR_NOT_FOUND && statuses[3] == HW_ERR_NOT_FOUND);
  CHECK(last_heartbeat(reg, ids[0]) == 6000 && last_heartbeat(reg, ids[2]) == 6000);
  /* As many answers as ids, no more: the rest of the array is untouched. */
  hw_status one[2] = {99, 99};
  CHECK_OK(hw_registry_heartbeat_many(reg, ids, 1, one));
  CHECK(one[0] == HW_OK && one[1] == 99);
  /* None: nothing to do, nothing written. */
  CHECK_OK(hw_registry_heartbeat_many(reg, ids, 0, one));
  CHECK(one[1] == 99);

  /* The nil id, NULL arrays, an impossible count: refused, nothing recorded or written. */
  REQUIRE_OK(hw_clock_advance(clock, 1000, &now));
  hw_worker_id with_nil[2] = {ids[0]};
  memset(&with_nil[1], 0, sizeof with_nil[1]);
  hw_status untouched[2] = {99, 99};
  CHECK_STATUS(hw_registry_heartbeat_many(reg, with_nil, 2, untouched), HW_ERR_INVALID_ARGUMENT);
  CHECK(untouched[0] == 99 && untouched[1] == 99);
  CHECK(last_heartbeat(reg, ids[0]) == 6000);
  CHECK_STATUS(hw_registry_heartbeat_many(NULL, ids, 1, untouched), HW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(hw_registry_heartbeat_many(reg, NULL, 1, untouched), HW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(hw_registry_heartbeat_many(reg, ids, 1, NULL), HW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(hw_registry_heartbeat_many(reg, ids, SIZE_MAX, untouched),
               HW_ERR_INVALID_ARGUMENT);
  CHECK(untouched[0] == 99 && last_heartbeat(reg, ids[0]) == 6000);

  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
  hw_test_backend_cleanup();
  printf("test_heartbeat_many (%s): ", hw_test_backend_name());
  return hw_test_report();
}
