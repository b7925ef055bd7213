/* Snapshot and restore through JSON strings: a faithful copy, refusals that leave the registry
 * untouched, and event numbering that continues after the snapshot. */
#include "harness.h"

#define T0 1700000000000ULL

static hw_worker *register_one(const hw_registry *reg, const hw_worker_spec *spec,
                               const char *resource) {
  hw_worker *w = NULL;
  CHECK_OK(hw_registry_register(reg, "docker-local", "docker", resource, spec, &w));
  return w;
}

int main(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL, *copy = NULL;
  hw_worker_spec *spec = NULL;
  REQUIRE_OK(hw_clock_new_manual(T0, &clock));
  REQUIRE_OK(hw_registry_new_with_clock(clock, &reg));
  REQUIRE_OK(hw_worker_spec_new("ubuntu:24.04", &spec));
  CHECK_OK(hw_worker_spec_add_label(spec, "pool", "ci"));
  CHECK_OK(hw_worker_spec_add_capability(spec, "gpu"));
  CHECK_OK(hw_worker_spec_set_max_jobs(spec, 3));
  CHECK_OK(hw_worker_spec_set_architecture(spec, HW_ARCHITECTURE_ARM64));

  /* A small fleet: one busy with a job, one ready, the rest still creating. */
  int fleet = 3 + 2 * hw_test_scale();
  hw_worker_id busy_id, ready_id;
  for (int i = 0; i < fleet; i++) {
    char resource[32];
    snprintf(resource, sizeof resource, "c-%d", i);
    hw_worker *w = register_one(reg, spec, resource);
    hw_worker_id id;
    CHECK_OK(hw_worker_get_id(w, &id));
    hw_worker_free(w);
    if (i == 0) busy_id = id;
    if (i == 1) ready_id = id;
    if (i < 2) {
      CHECK_OK(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, &w));
      hw_worker_free(w);
    }
  }
  hw_worker *w = NULL;
  CHECK_OK(hw_registry_assign(reg, busy_id, "job-7", &w));
  hw_worker_free(w);
  uint64_t now = 0;
  CHECK_OK(hw_clock_advance(clock, 1234, &now));
  CHECK_OK(hw_registry_heartbeat(reg, ready_id));

  char *json = NULL;
  REQUIRE_OK(hw_registry_snapshot(reg, &json));
  CHECK(strstr(json, "hodei-workers.snapshot/1") != NULL);

  /* Restore into a fresh registry: same counts, same records. */
  REQUIRE_OK(hw_registry_new_with_clock(clock, &copy));
  CHECK_OK(hw_registry_restore(copy, json));
  hw_worker_counts a, b;
  CHECK_OK(hw_registry_stats(reg, &a));
  CHECK_OK(hw_registry_stats(copy, &b));
  CHECK(a.total == (size_t)fleet && b.total == a.total);
  CHECK(b.busy == 1 && b.ready == 1 && b.creating == (size_t)fleet - 2);
  CHECK(memcmp(&a, &b, sizeof a) == 0);
  CHECK_OK(hw_registry_get(copy, busy_id, &w));
  CHECK(w != NULL);
  if (w) {
    const char *text = NULL;
    CHECK_OK(hw_worker_get_current_job(w, &text));
    CHECK_STR(text, "job-7");
    CHECK_OK(hw_worker_get_label(w, "pool", &text));
    CHECK_STR(text, "ci");
    CHECK_OK(hw_worker_get_resource_id(w, &text));
    CHECK_STR(text, "c-0");
    char *wjson = NULL;
    CHECK_OK(hw_worker_to_json(w, &wjson));
    CHECK(wjson != NULL && strstr(wjson, "\"max_jobs\":3") != NULL &&
          strstr(wjson, "\"arm64\"") != NULL);
    hw_string_free(wjson);
  }
  hw_worker_free(w);
  CHECK_OK(hw_registry_get(copy, ready_id, &w));
  if (w) {
    hw_worker_timestamps ts;
    CHECK_OK(hw_worker_get_timestamps(w, &ts));
    CHECK(ts.last_heartbeat_ms == T0 + 1234 && ts.created_at_ms == T0);
  }
  hw_worker_free(w);

  /* The job is still held once in the copy: claiming it again is refused. */
  hw_worker_filter *any = NULL;
  CHECK_OK(hw_worker_filter_new(&any));
  CHECK_STATUS(hw_registry_claim(copy, any, "job-7", &w), HW_ERR_JOB_ALREADY_ASSIGNED);
  hw_worker_filter_free(any);

  /* A snapshot of the copy is the same text. */
  char *again = NULL;
  CHECK_OK(hw_registry_snapshot(copy, &again));
  CHECK(again != NULL && strcmp(again, json) == 0);
  hw_string_free(again);

  /* Event numbering continues after the snapshot's seq. */
  hw_subscription *sub = NULL;
  CHECK_OK(hw_registry_subscribe(copy, HW_DEFAULT_SUBSCRIPTION_CAPACITY, false, &sub));
  CHECK_OK(hw_registry_heartbeat(copy, ready_id));
  w = register_one(copy, spec, "after");
  hw_worker_free(w);
  hw_event *ev = NULL;
  CHECK_OK(hw_subscription_recv(sub, 0, &ev));
  uint64_t seq = 0;
  if (ev) CHECK_OK(hw_event_get_seq(ev, &seq));
  CHECK(seq > (uint64_t)fleet); /* registrations and state changes came before */
  hw_event_free(ev);
  hw_subscription_free(sub);

  /* Refusals leave the target untouched. */
  hw_registry *fresh = NULL;
  CHECK_OK(hw_registry_new(&fresh));
  CHECK_STATUS(hw_registry_restore(copy, json), HW_ERR_INVALID_ARGUMENT); /* not empty */
  size_t len = strlen(json);
  char *half = (char *)malloc(len / 2 + 1);
  memcpy(half, json, len / 2);
  half[len / 2] = '\0';
  CHECK_STATUS(hw_registry_restore(fresh, half), HW_ERR_SNAPSHOT);
  free(half);
  CHECK_STATUS(hw_registry_restore(fresh, "{\"format\":\"other/1\",\"seq\":0,\"taken_at\":0,\"workers\":[]}"),
               HW_ERR_SNAPSHOT);
  CHECK_STATUS(hw_registry_restore(fresh, "[]"), HW_ERR_SNAPSHOT);
  CHECK_STATUS(hw_registry_restore(fresh, ""), HW_ERR_SNAPSHOT);
  /* A busy worker without a job is inconsistent: the whole snapshot is refused. */
  char *bad = (char *)malloc(len + 1);
  memcpy(bad, json, len + 1);
  char *ready = strstr(bad, "\"state\":\"ready\"");
  CHECK(ready != NULL);
  if (ready) {
    memcpy(ready, "\"state\":\"busy\" ", 15); /* same length: "ready" -> "busy " */
    CHECK_STATUS(hw_registry_restore(fresh, bad), HW_ERR_SNAPSHOT);
  }
  free(bad);
  size_t count = 99;
  CHECK_OK(hw_registry_count(fresh, &count));
  CHECK(count == 0);
  /* The snapshot restores fine into the still-empty registry after all those refusals. */
  CHECK_OK(hw_registry_restore(fresh, json));
  CHECK_OK(hw_registry_count(fresh, &count));
  CHECK(count == (size_t)fleet);

  /* Text C cannot hold (a NUL inside a restored resource id) is refused at the first boundary
   * it crosses (issue 10 item 17): such a worker could never be destroyed through a C
   * provider. The restore fails whole; the registry stays empty. */
  const char *needle = "\"resource_id\":\"c-0\"";
  const char *with_nul = "\"resource_id\":\"c\\u0000-0\"";
  char *at = strstr(json, needle);
  CHECK(at != NULL);
  if (at) {
    size_t head = (size_t)(at - json);
    char *odd = (char *)malloc(len + strlen(with_nul) + 1);
    memcpy(odd, json, head);
    strcpy(odd + head, with_nul);
    strcat(odd, at + strlen(needle));
    hw_registry *strange = NULL;
    CHECK_OK(hw_registry_new(&strange));
    CHECK_STATUS(hw_registry_restore(strange, odd), HW_ERR_SNAPSHOT);
    CHECK(strstr(hw_last_error_message(), "NUL") != NULL);
    size_t none = 99;
    CHECK_OK(hw_registry_count(strange, &none));
    CHECK(none == 0);
    hw_registry_free(strange);
    free(odd);
  }

  hw_string_free(json);
  hw_registry_free(fresh);
  hw_registry_free(copy);
  hw_registry_free(reg);
  hw_worker_spec_free(spec);
  hw_clock_free(clock);
  return hw_test_report();
}
