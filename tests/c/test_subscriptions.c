/* Event subscriptions: order and seq, non-blocking and timed receive, accessors, heartbeat
 * opt-in, the drop counter of a full queue, and waking up when the registry goes away. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <time.h>

#include "harness.h"

static uint64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Receives without waiting; returns the kind, or 1000 when the queue is empty. */
static uint32_t next_kind(const hw_subscription *sub, hw_event **out) {
  hw_event *ev = NULL;
  CHECK_OK(hw_subscription_recv(sub, 0, &ev));
  *out = ev;
  if (ev == NULL) return 1000;
  hw_event_kind kind = 999;
  CHECK_OK(hw_event_get_kind(ev, &kind));
  return kind;
}

int main(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_subscription *all = NULL, *beats = NULL, *tiny = NULL;
  hw_worker_spec *spec = NULL;
  REQUIRE_OK(hw_clock_new_manual(5000, &clock));
  REQUIRE_OK(hw_registry_new_with_clock(clock, &reg));
  REQUIRE_OK(hw_registry_subscribe(reg, HW_DEFAULT_SUBSCRIPTION_CAPACITY, false, &all));
  REQUIRE_OK(hw_registry_subscribe(reg, 64, true, &beats));
  REQUIRE_OK(hw_registry_subscribe(reg, 2, false, &tiny));
  REQUIRE_OK(hw_worker_spec_new("img", &spec));

  /* Nothing yet: a non-blocking receive gives NULL at once, a timed one after the timeout. */
  hw_event *ev = (hw_event *)1;
  CHECK_OK(hw_subscription_recv(all, 0, &ev));
  CHECK(ev == NULL);
  uint64_t t0 = monotonic_ms();
  ev = (hw_event *)1;
  CHECK_OK(hw_subscription_recv(all, 30, &ev));
  CHECK(ev == NULL);
  CHECK(monotonic_ms() - t0 >= 25);

  /* register, ready, assign, release, heartbeat, unregister. */
  hw_worker *w = NULL;
  REQUIRE_OK(hw_registry_register(reg, "p1", "kubernetes", "pod-1", spec, &w));
  hw_worker_id id;
  CHECK_OK(hw_worker_get_id(w, &id));
  hw_worker_free(w);
  CHECK_OK(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, &w));
  hw_worker_free(w);
  /* The same state again is a no-op without an event. */
  CHECK_OK(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, &w));
  hw_worker_free(w);
  CHECK_OK(hw_registry_assign(reg, id, "j1", &w));
  hw_worker_free(w);
  char *job = NULL;
  CHECK_OK(hw_registry_release(reg, id, &job));
  hw_string_free(job);
  CHECK_OK(hw_registry_heartbeat(reg, id));
  CHECK_OK(hw_registry_unregister(reg, id, HW_TERMINATION_REASON_REQUESTED, &w));
  hw_worker_free(w);

  size_t pending = 0;
  CHECK_OK(hw_subscription_pending(all, &pending));
  /* registered, ready, (ready -> busy), assigned, released, (busy -> ready), unregistered */
  CHECK(pending == 7);

  /* In order, with strictly increasing seq and the registry's time. */
  uint32_t expected[] = {HW_EVENT_KIND_REGISTERED,      HW_EVENT_KIND_STATE_CHANGED,
                         HW_EVENT_KIND_STATE_CHANGED,   HW_EVENT_KIND_ASSIGNED_TO_JOB,
                         HW_EVENT_KIND_RELEASED_FROM_JOB, HW_EVENT_KIND_STATE_CHANGED,
                         HW_EVENT_KIND_UNREGISTERED};
  uint64_t last_seq = 0;
  size_t n_expected = sizeof expected / sizeof expected[0];
  size_t i = 0;
  for (;; i++) {
    uint32_t kind = next_kind(all, &ev);
    if (ev == NULL) break;
    uint64_t seq = 0, at = 0;
    CHECK_OK(hw_event_get_seq(ev, &seq));
    CHECK_OK(hw_event_get_at(ev, &at));
    CHECK(seq > last_seq);
    CHECK(at == 5000);
    last_seq = seq;
    bool has = false;
    hw_worker_id who;
    CHECK_OK(hw_event_get_worker_id(ev, &has, &who));
    CHECK(has && hw_id_eq(who, id));
    if (kind == HW_EVENT_KIND_REGISTERED) {
      const char *provider = NULL;
      CHECK_OK(hw_event_get_provider_id(ev, &provider));
      CHECK_STR(provider, "p1");
    }
    if (kind == HW_EVENT_KIND_ASSIGNED_TO_JOB || kind == HW_EVENT_KIND_RELEASED_FROM_JOB) {
      const char *j = NULL;
      CHECK_OK(hw_event_get_job_id(ev, &j));
      CHECK_STR(j, "j1");
    }
    hw_worker_state from = 99, to = 99;
    if (kind == HW_EVENT_KIND_STATE_CHANGED) {
      CHECK_OK(hw_event_get_states(ev, &from, &to));
      CHECK(from != to);
    } else {
      CHECK_STATUS(hw_event_get_states(ev, &from, &to), HW_ERR_INVALID_ARGUMENT);
      CHECK(from == 99 && to == 99); /* out-params untouched on failure */
    }
    if (kind == HW_EVENT_KIND_UNREGISTERED) {
      hw_termination_reason reason = 99;
      CHECK_OK(hw_event_get_reason(ev, &reason));
      CHECK(reason == HW_TERMINATION_REASON_REQUESTED);
    }
    char *json = NULL;
    CHECK_OK(hw_event_to_json(ev, &json));
    CHECK(json != NULL && strstr(json, "\"seq\"") != NULL);
    hw_string_free(json);
    CHECK(i < n_expected && kind == expected[i]);
    if (i < n_expected && kind != expected[i]) fprintf(stderr, "event %zu is kind %u\n", i, kind);
    hw_event_free(ev);
  }
  CHECK(i == n_expected);

  /* Heartbeat events only for the subscriber that asked. */
  int heartbeats = 0;
  for (;;) {
    uint32_t kind = next_kind(beats, &ev);
    if (ev == NULL) break;
    if (kind == HW_EVENT_KIND_HEARTBEAT_RECEIVED) heartbeats++;
    hw_event_free(ev);
  }
  CHECK(heartbeats == 1);

  /* The tiny queue kept 2 events and counted the rest as dropped; the registry never blocked. */
  uint64_t dropped = 0;
  CHECK_OK(hw_subscription_dropped(tiny, &dropped));
  CHECK(dropped == pending - 2);
  CHECK_OK(hw_subscription_pending(tiny, &pending));
  CHECK(pending == 2);
  uint64_t dropped_all = 99;
  CHECK_OK(hw_subscription_dropped(all, &dropped_all));
  CHECK(dropped_all == 0);

  /* A burst with a scale-dependent size: everything arrives or is counted as dropped. */
  int burst = 20 * hw_test_scale();
  for (int k = 0; k < burst; k++) {
    CHECK_OK(hw_registry_register(reg, "p1", "docker", "c", spec, &w));
    hw_worker_free(w);
  }
  /* The tiny queue was full already: every event of the burst was dropped for it. */
  uint64_t after = 0;
  CHECK_OK(hw_subscription_dropped(tiny, &after));
  CHECK(after == dropped + (uint64_t)burst);
  int received = 0;
  while (next_kind(all, &ev) != 1000) {
    received++;
    hw_event_free(ev);
  }
  CHECK(received == burst);

  /* Freed subscriptions stop receiving; a blocked receive wakes when the registry is freed. */
  hw_subscription_free(tiny);
  hw_subscription_free(beats);
  hw_registry_free(reg);
  ev = (hw_event *)1;
  CHECK_OK(hw_subscription_recv(all, HW_WAIT_FOREVER, &ev));
  CHECK(ev == NULL);
  hw_subscription_free(all);
  hw_worker_spec_free(spec);
  hw_clock_free(clock);
  return hw_test_report();
}
