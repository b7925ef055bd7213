/* hw_registry_publish: a host's events on the registry's stream. Each publishable kind reaches a
 * subscriber (on PostgreSQL one of another registry handle on the same registry: another
 * replica's) with its fields as hw_event_get_fields reads them back; the registry's own kinds,
 * out-of-range kinds, missing fields and unknown workers are refused and publish nothing.
 *
 * Runs on the in-memory registry (make test-c) and on PostgreSQL (make test-c-pg). */
#include "backend.h"
#include "harness.h"

/* Waits for the next event (it was published before: the wait only bounds a PostgreSQL
 * reader's delivery, it measures nothing). */
static hw_event *next_event(const hw_subscription *sub) {
  hw_event *ev = NULL;
  CHECK_OK(hw_subscription_recv(sub, 30000, &ev));
  CHECK(ev != NULL);
  return ev;
}

/* Reads the next event of `sub` into `*out` (its strings valid until the event is freed). */
static hw_event *next_fields(const hw_subscription *sub, hw_event_fields *out) {
  hw_event *ev = next_event(sub);
  memset(out, 0xab, sizeof *out);
  if (ev != NULL) CHECK_OK(hw_event_get_fields(ev, out));
  return ev;
}

static int str_eq(const char *a, const char *b) {
  return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* The last error names `text`. */
static void check_message(const char *text) {
  const char *msg = hw_last_error_message();
  CHECK(msg != NULL && strstr(msg, text) != NULL);
  if (msg == NULL || strstr(msg, text) == NULL)
    fprintf(stderr, "  last error \"%s\" does not name \"%s\"\n", msg ? msg : "(null)", text);
}

int main(void) {
  if (!HW_ABI_COMPATIBLE() || (hw_abi_version() & 0xffff) < 1) {
    fprintf(stderr, "the library lacks ABI 1.1 (hw_registry_publish)\n0 passed, 1 failed\n");
    return 1;
  }
  hw_clock *clock = NULL;
  hw_registry *reg = NULL, *peer = NULL;
  hw_subscription *sub = NULL, *beats = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker *w = NULL;
  REQUIRE_OK(hw_clock_new_manual(5000, &clock));
  REQUIRE_OK(hw_test_registry_new(clock, &reg));
  /* The subscriber's registry: on PostgreSQL another handle on the same registry (another
   * replica's), in memory the same one. */
  REQUIRE_OK(hw_test_registry_reopen(clock, reg, &peer));
  REQUIRE_OK(hw_registry_subscribe(peer, HW_DEFAULT_SUBSCRIPTION_CAPACITY, false, &sub));
  REQUIRE_OK(hw_registry_subscribe(reg, 64, true, &beats));
  REQUIRE_OK(hw_worker_spec_new("img", &spec));
  REQUIRE_OK(hw_registry_register(reg, "p1", "docker", "c-1", spec, &w));
  hw_worker_id id;
  REQUIRE_OK(hw_worker_get_id(w, &id));
  hw_worker_free(w);
  hw_event *ev = next_event(sub); /* its Registered */
  hw_event_kind kind = HW_EVENT_KIND_UNKNOWN;
  if (ev) CHECK_OK(hw_event_get_kind(ev, &kind));
  CHECK(kind == HW_EVENT_KIND_REGISTERED);
  hw_event_fields f;
  if (ev) {
    CHECK_OK(hw_event_get_fields(ev, &f));
    CHECK(f.kind == HW_EVENT_KIND_REGISTERED && hw_id_eq(f.worker_id, id));
    CHECK(str_eq(f.provider_id, "p1") && f.message == NULL && f.holder == NULL);
  }
  hw_event_free(ev);
  ev = next_event(beats); /* the same Registered, for the other subscription */
  hw_event_free(ev);

  /* Every kind a host may publish, each with its own fields. */
  hw_event_fields requested = {0}, failed = {0}, destroy = {0}, unhealthy = {0}, held = {0},
                  leader = {0}, lost_leader = {0};
  requested.kind = HW_EVENT_KIND_PROVISION_REQUESTED;
  requested.provider_id = "p1";
  CHECK_OK(hw_registry_publish(reg, &requested));
  failed.kind = HW_EVENT_KIND_PROVISION_FAILED;
  failed.provider_id = "p1";
  failed.message = "quota exceeded";
  CHECK_OK(hw_registry_publish(reg, &failed));
  destroy.kind = HW_EVENT_KIND_DESTROY_FAILED;
  destroy.worker_id = id;
  destroy.provider_id = "p1";
  destroy.message = "api down";
  destroy.attempts = 3;
  CHECK_OK(hw_registry_publish(reg, &destroy));
  unhealthy.kind = HW_EVENT_KIND_UNHEALTHY_DETECTED;
  unhealthy.worker_id = id;
  unhealthy.last_heartbeat_ms = 4000;
  CHECK_OK(hw_registry_publish(reg, &unhealthy));
  held.kind = HW_EVENT_KIND_MASS_EXPIRY_HELD;
  held.would_expire = 7;
  held.live = 10;
  CHECK_OK(hw_registry_publish(reg, &held));
  leader.kind = HW_EVENT_KIND_LEADER_CHANGED;
  leader.holder = "replica-a";
  leader.term = 9;
  leader.by = "replica-a";
  CHECK_OK(hw_registry_publish(reg, &leader));
  lost_leader.kind = HW_EVENT_KIND_LEADER_CHANGED;
  lost_leader.term = 9; /* holder NULL: the publisher lost the lease, the new leader unknown */
  lost_leader.by = "replica-a";
  CHECK_OK(hw_registry_publish(reg, &lost_leader));

  uint64_t last_seq = 0, seq = 0, at = 0;
  ev = next_fields(sub, &f);
  CHECK(f.kind == HW_EVENT_KIND_PROVISION_REQUESTED && str_eq(f.provider_id, "p1"));
  CHECK(f.message == NULL && f.holder == NULL && f.by == NULL && f.attempts == 0);
  bool has = true;
  hw_worker_id none;
  if (ev) {
    CHECK_OK(hw_event_get_worker_id(ev, &has, &none));
    CHECK(!has);
    CHECK_OK(hw_event_get_seq(ev, &last_seq));
    CHECK_OK(hw_event_get_at(ev, &at));
    CHECK(at == 5000); /* the registry's time */
  }
  hw_event_free(ev);

  ev = next_fields(sub, &f);
  CHECK(f.kind == HW_EVENT_KIND_PROVISION_FAILED && str_eq(f.provider_id, "p1"));
  CHECK(str_eq(f.message, "quota exceeded"));
  if (ev) {
    const char *message = NULL;
    CHECK_OK(hw_event_get_message(ev, &message));
    CHECK(str_eq(message, "quota exceeded"));
    CHECK_OK(hw_event_get_seq(ev, &seq));
    CHECK(seq > last_seq);
    last_seq = seq;
  }
  hw_event_free(ev);

  ev = next_fields(sub, &f);
  CHECK(f.kind == HW_EVENT_KIND_DESTROY_FAILED && hw_id_eq(f.worker_id, id));
  CHECK(str_eq(f.provider_id, "p1") && str_eq(f.message, "api down") && f.attempts == 3);
  hw_event_free(ev);

  ev = next_fields(sub, &f);
  CHECK(f.kind == HW_EVENT_KIND_UNHEALTHY_DETECTED && hw_id_eq(f.worker_id, id));
  CHECK(f.last_heartbeat_ms == 4000 && f.provider_id == NULL);
  hw_event_free(ev);

  ev = next_fields(sub, &f);
  CHECK(f.kind == HW_EVENT_KIND_MASS_EXPIRY_HELD && f.would_expire == 7 && f.live == 10);
  hw_event_free(ev);

  ev = next_fields(sub, &f);
  CHECK(f.kind == HW_EVENT_KIND_LEADER_CHANGED && f.term == 9);
  CHECK(str_eq(f.holder, "replica-a") && str_eq(f.by, "replica-a"));
  if (ev) {
    char *json = NULL;
    CHECK_OK(hw_event_to_json(ev, &json));
    CHECK(json != NULL && strstr(json, "\"holder\":\"replica-a\"") != NULL);
    hw_string_free(json);
  }
  hw_event_free(ev);

  ev = next_fields(sub, &f);
  CHECK(f.kind == HW_EVENT_KIND_LEADER_CHANGED && f.term == 9 && f.holder == NULL);
  CHECK(str_eq(f.by, "replica-a"));
  hw_event_free(ev);

  /* The registry's own kinds: refused with the core's message, whatever the other fields. */
  static const struct {
    uint32_t kind;
    const char *name;
  } own[] = {{HW_EVENT_KIND_REGISTERED, "registered"},
             {HW_EVENT_KIND_STATE_CHANGED, "state_changed"},
             {HW_EVENT_KIND_ASSIGNED_TO_JOB, "assigned_to_job"},
             {HW_EVENT_KIND_RELEASED_FROM_JOB, "released_from_job"},
             {HW_EVENT_KIND_JOB_LOST, "job_lost"},
             {HW_EVENT_KIND_UNREGISTERED, "unregistered"}};
  for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
    hw_event_fields mine = {0};
    mine.kind = own[i].kind;
    mine.worker_id = id;
    mine.provider_id = "p1";
    CHECK_STATUS(hw_registry_publish(reg, &mine), HW_ERR_INVALID_ARGUMENT);
    check_message(own[i].name);
    check_message("publish refuses it");
  }
  /* Out of range, the unknown kind, NULL, a missing or malformed field, the nil id. */
  static const uint32_t out_of_range[] = {13, HW_EVENT_KIND_UNKNOWN, 1000, UINT32_MAX};
  for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++) {
    hw_event_fields bad = requested;
    bad.kind = out_of_range[i];
    CHECK_STATUS(hw_registry_publish(reg, &bad), HW_ERR_INVALID_ARGUMENT);
    check_message("hw_event_kind");
  }
  CHECK_STATUS(hw_registry_publish(NULL, &requested), HW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(hw_registry_publish(reg, NULL), HW_ERR_INVALID_ARGUMENT);
  hw_event_fields bad = requested;
  bad.provider_id = NULL;
  CHECK_STATUS(hw_registry_publish(reg, &bad), HW_ERR_INVALID_ARGUMENT);
  check_message("provider_id");
  bad.provider_id = "";
  CHECK_STATUS(hw_registry_publish(reg, &bad), HW_ERR_INVALID_ARGUMENT);
  bad = failed;
  bad.message = NULL;
  CHECK_STATUS(hw_registry_publish(reg, &bad), HW_ERR_INVALID_ARGUMENT);
  check_message("message");
  bad = leader;
  bad.by = "\xff";
  CHECK_STATUS(hw_registry_publish(reg, &bad), HW_ERR_INVALID_ARGUMENT);
  check_message("UTF-8");
  bad = unhealthy;
  memset(&bad.worker_id, 0, sizeof bad.worker_id);
  CHECK_STATUS(hw_registry_publish(reg, &bad), HW_ERR_INVALID_ARGUMENT);
  /* Text the manager's own events never carry: a message over HW_MAX_PROVIDER_MESSAGE_LEN +
   * 64 bytes, a holder over a lease holder's 128 bytes. */
  static char long_text[HW_MAX_PROVIDER_MESSAGE_LEN + 66];
  memset(long_text, 'x', HW_MAX_PROVIDER_MESSAGE_LEN + 65);
  bad = failed;
  bad.message = long_text;
  CHECK_STATUS(hw_registry_publish(reg, &bad), HW_ERR_INVALID_ARGUMENT);
  check_message("error of 4161 bytes");
  bad = leader;
  bad.holder = long_text;
  CHECK_STATUS(hw_registry_publish(reg, &bad), HW_ERR_INVALID_ARGUMENT);
  check_message("holder of 4161 bytes");
  /* About a worker the registry does not hold (never did; unregistered): not found. */
  hw_worker_id stranger;
  REQUIRE_OK(hw_worker_id_parse("00000000-0000-4000-8000-000000000001", &stranger));
  bad = destroy;
  bad.worker_id = stranger;
  CHECK_STATUS(hw_registry_publish(reg, &bad), HW_ERR_NOT_FOUND);

  /* None of those published anything: the next event is the marker published after them. */
  hw_event_fields marker = {0};
  marker.kind = HW_EVENT_KIND_PROVISION_REQUESTED;
  marker.provider_id = "marker";
  CHECK_OK(hw_registry_publish(reg, &marker));
  ev = next_fields(sub, &f);
  CHECK(f.kind == HW_EVENT_KIND_PROVISION_REQUESTED && str_eq(f.provider_id, "marker"));
  hw_event_free(ev);
  size_t pending = 99;
  CHECK_OK(hw_subscription_pending(sub, &pending));
  CHECK(pending == 0);

  /* A heartbeat event reaches the subscription that asked for heartbeats only, and records
   * no heartbeat. The other subscription reads the next marker next. */
  for (;;) { /* what `beats` read so far, up to the marker */
    ev = next_fields(beats, &f);
    if (ev == NULL) break;
    int was_marker = str_eq(f.provider_id, "marker");
    hw_event_free(ev);
    if (was_marker) break;
  }
  hw_worker *before = NULL, *after = NULL;
  REQUIRE_OK(hw_registry_get(reg, id, &before));
  uint64_t now = 0;
  REQUIRE_OK(hw_clock_advance(clock, 1000, &now));
  hw_event_fields beat = {0};
  beat.kind = HW_EVENT_KIND_HEARTBEAT_RECEIVED;
  beat.worker_id = id;
  CHECK_OK(hw_registry_publish(reg, &beat));
  ev = next_fields(beats, &f);
  CHECK(f.kind == HW_EVENT_KIND_HEARTBEAT_RECEIVED && hw_id_eq(f.worker_id, id));
  if (ev) {
    CHECK_OK(hw_event_get_at(ev, &at));
    CHECK(at == 6000);
  }
  hw_event_free(ev);
  REQUIRE_OK(hw_registry_get(reg, id, &after));
  hw_worker_timestamps t0, t1;
  CHECK_OK(hw_worker_get_timestamps(before, &t0));
  CHECK_OK(hw_worker_get_timestamps(after, &t1));
  CHECK(t0.last_heartbeat_ms == t1.last_heartbeat_ms);
  hw_worker_free(before);
  hw_worker_free(after);
  marker.provider_id = "marker-2";
  CHECK_OK(hw_registry_publish(reg, &marker));
  ev = next_fields(sub, &f);
  CHECK(f.kind == HW_EVENT_KIND_PROVISION_REQUESTED && str_eq(f.provider_id, "marker-2"));
  hw_event_free(ev);

  /* An unregistered worker takes no event any more. */
  REQUIRE_OK(hw_registry_unregister(reg, id, HW_TERMINATION_REASON_REQUESTED, &w));
  hw_worker_free(w);
  CHECK_STATUS(hw_registry_publish(reg, &destroy), HW_ERR_NOT_FOUND);

  hw_subscription_free(sub);
  hw_subscription_free(beats);
  hw_worker_spec_free(spec);
  if (peer != reg) hw_registry_free(peer);
  hw_registry_free(reg);
  hw_clock_free(clock);
  hw_test_backend_cleanup();
  printf("test_publish (%s): ", hw_test_backend_name());
  return hw_test_report();
}
