/* The life of a worker driven from C on a manual clock: register -> ready -> claim -> release ->
 * heartbeat timeout -> lost job reported -> removal. */
#include "harness.h"

#define T0 1700000000000ULL

static hw_worker_id worker_id_of(const hw_worker *w) {
  hw_worker_id id;
  memset(&id, 0, sizeof id);
  CHECK_OK(hw_worker_get_id(w, &id));
  return id;
}

static hw_worker_state state_of(const hw_registry *reg, hw_worker_id id) {
  hw_worker *w = NULL;
  hw_worker_state state = 99;
  CHECK_OK(hw_registry_get(reg, id, &w));
  CHECK(w != NULL);
  if (w) {
    CHECK_OK(hw_worker_get_state(w, &state));
  }
  hw_worker_free(w);
  return state;
}

int main(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker_filter *ci = NULL;
  hw_subscription *events = NULL;
  REQUIRE_OK(hw_clock_new_manual(T0, &clock));
  REQUIRE_OK(hw_registry_new_with_clock(clock, &reg));
  REQUIRE_OK(hw_registry_subscribe(reg, 0, false, &events));

  /* A spec with labels and capabilities. */
  REQUIRE_OK(hw_worker_spec_new("ubuntu:24.04", &spec));
  CHECK_OK(hw_worker_spec_add_label(spec, "pool", "ci"));
  CHECK_OK(hw_worker_spec_add_label(spec, "zone", "eu-1"));
  CHECK_OK(hw_worker_spec_add_capability(spec, "docker"));
  CHECK_OK(hw_worker_spec_set_idle_timeout_ms(spec, 60000));
  CHECK_OK(hw_worker_spec_set_resources(spec, 2.0, 4ULL << 30, 0, 0));

  /* Register: CREATING, with everything readable back. */
  hw_worker *w = NULL;
  REQUIRE_OK(hw_registry_register(reg, "docker-local", "docker", "c-1", spec, &w));
  hw_worker_id id = worker_id_of(w);
  hw_worker_state state = 99;
  CHECK_OK(hw_worker_get_state(w, &state));
  CHECK(state == HW_WORKER_STATE_CREATING);
  const char *text = NULL;
  CHECK_OK(hw_worker_get_provider_id(w, &text));
  CHECK_STR(text, "docker-local");
  CHECK_OK(hw_worker_get_provider_type(w, &text));
  CHECK_STR(text, "docker");
  CHECK_OK(hw_worker_get_resource_id(w, &text));
  CHECK_STR(text, "c-1");
  CHECK_OK(hw_worker_get_image(w, &text));
  CHECK_STR(text, "ubuntu:24.04");
  text = "unchanged";
  CHECK_OK(hw_worker_get_current_job(w, &text));
  CHECK(text == NULL);
  CHECK_OK(hw_worker_get_label(w, "pool", &text));
  CHECK_STR(text, "ci");
  CHECK_OK(hw_worker_get_label(w, "nope", &text));
  CHECK(text == NULL);
  size_t n = 0;
  CHECK_OK(hw_worker_get_label_count(w, &n));
  CHECK(n == 2);
  const char *key = NULL, *value = NULL;
  CHECK_OK(hw_worker_get_label_at(w, 1, &key, &value));
  CHECK_STR(key, "zone");
  CHECK_STR(value, "eu-1");
  CHECK_OK(hw_worker_get_capability_count(w, &n));
  CHECK(n == 1);
  CHECK_OK(hw_worker_get_capability_at(w, 0, &text));
  CHECK_STR(text, "docker");
  hw_worker_timestamps ts;
  CHECK_OK(hw_worker_get_timestamps(w, &ts));
  CHECK(ts.created_at_ms == T0 && ts.last_heartbeat_ms == T0 && !ts.has_idle_since);
  char idtext[HW_WORKER_ID_STRING_SIZE];
  CHECK_OK(hw_worker_id_format(id, idtext, sizeof idtext));
  hw_worker_id parsed;
  CHECK_OK(hw_worker_id_parse(idtext, &parsed));
  CHECK(hw_id_eq(parsed, id));
  hw_worker_free(w);

  /* Not ready yet: a claim finds nobody (NULL, not an error). */
  REQUIRE_OK(hw_worker_filter_new(&ci));
  CHECK_OK(hw_worker_filter_add_label(ci, "pool", "ci"));
  CHECK_OK(hw_worker_filter_add_capability(ci, "docker"));
  w = (hw_worker *)1;
  CHECK_OK(hw_registry_claim(reg, ci, "job-1", &w));
  CHECK(w == NULL);

  /* Ready -> claim -> busy. */
  REQUIRE_OK(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, &w));
  CHECK_OK(hw_worker_get_timestamps(w, &ts));
  CHECK(ts.has_idle_since && ts.idle_since_ms == T0);
  hw_worker_free(w);
  uint64_t now = 0;
  CHECK_OK(hw_clock_advance(clock, 1000, &now));
  CHECK(now == T0 + 1000);
  REQUIRE_OK(hw_registry_claim(reg, ci, "job-1", &w));
  CHECK(w != NULL);
  if (w) {
    CHECK(hw_id_eq(worker_id_of(w), id));
    CHECK_OK(hw_worker_get_current_job(w, &text));
    CHECK_STR(text, "job-1");
    CHECK_OK(hw_worker_get_state(w, &state));
    CHECK(state == HW_WORKER_STATE_BUSY);
  }
  hw_worker_free(w);

  /* The job is held once; a busy worker takes no other job; update_state never leaves BUSY. */
  CHECK_STATUS(hw_registry_assign(reg, id, "job-2", &w), HW_ERR_NOT_AVAILABLE);
  CHECK_STATUS(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, &w),
               HW_ERR_INVALID_TRANSITION);
  CHECK(strstr(hw_last_error_message(), "busy -> ready") != NULL);

  /* A stale release naming another job changes nothing; the right one frees the worker. */
  char *job = NULL;
  CHECK_STATUS(hw_registry_release_job(reg, id, "job-0", &job), HW_ERR_NOT_BUSY);
  CHECK(job == NULL);
  CHECK(state_of(reg, id) == HW_WORKER_STATE_BUSY);
  CHECK_OK(hw_registry_release_job(reg, id, "job-1", &job));
  CHECK_STR(job, "job-1");
  hw_string_free(job);
  job = NULL;
  CHECK(state_of(reg, id) == HW_WORKER_STATE_READY);
  CHECK_STATUS(hw_registry_release(reg, id, &job), HW_ERR_NOT_BUSY);

  /* Claim again, heartbeat, then go silent past the heartbeat timeout. */
  REQUIRE_OK(hw_registry_claim(reg, ci, "job-3", &w));
  CHECK(w != NULL);
  hw_worker_free(w);
  CHECK_OK(hw_clock_advance(clock, 5000, &now));
  CHECK_OK(hw_registry_heartbeat(reg, id));
  hw_worker_list *list = NULL;
  CHECK_OK(hw_registry_find_unhealthy(reg, 60000, &list));
  CHECK_OK(hw_worker_list_len(list, &n));
  CHECK(n == 0);
  hw_worker_list_free(list);
  CHECK_OK(hw_clock_advance(clock, 60001, &now));
  CHECK_OK(hw_registry_find_unhealthy(reg, 60000, &list));
  CHECK_OK(hw_worker_list_len(list, &n));
  CHECK(n == 1);
  const hw_worker *due = NULL;
  CHECK_OK(hw_worker_list_get(list, 0, &due));
  if (due) {
    CHECK(hw_id_eq(worker_id_of(due), id));
    CHECK_OK(hw_worker_get_timestamps(due, &ts));
    CHECK(ts.last_heartbeat_ms == T0 + 6000);
  }
  CHECK_STATUS(hw_worker_list_get(list, 1, &due), HW_ERR_INVALID_ARGUMENT);
  hw_worker_list_free(list);

  /* Taking it out of service reports the job it held as lost. */
  REQUIRE_OK(hw_registry_update_state(reg, id, HW_WORKER_STATE_TERMINATING, &w));
  CHECK_OK(hw_worker_get_current_job(w, &text));
  CHECK(text == NULL);
  hw_worker_free(w);
  int lost = 0;
  hw_event *ev = NULL;
  for (;;) {
    CHECK_OK(hw_subscription_recv(events, 0, &ev));
    if (ev == NULL) break;
    hw_event_kind kind = 0;
    CHECK_OK(hw_event_get_kind(ev, &kind));
    if (kind == HW_EVENT_KIND_JOB_LOST) {
      const char *lost_job = NULL;
      CHECK_OK(hw_event_get_job_id(ev, &lost_job));
      CHECK_STR(lost_job, "job-3");
      lost++;
    }
    hw_event_free(ev);
  }
  CHECK(lost == 1);

  /* Unregister; the id is never valid again. */
  REQUIRE_OK(hw_registry_unregister(reg, id, HW_TERMINATION_REASON_UNHEALTHY, &w));
  hw_worker_free(w);
  w = (hw_worker *)1;
  CHECK_OK(hw_registry_get(reg, id, &w));
  CHECK(w == NULL);
  CHECK_STATUS(hw_registry_heartbeat(reg, id), HW_ERR_NOT_FOUND);
  hw_worker_counts stats;
  CHECK_OK(hw_registry_stats(reg, &stats));
  CHECK(stats.total == 0 && stats.terminating == 0);

  hw_subscription_free(events);
  hw_worker_filter_free(ci);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
  return hw_test_report();
}
