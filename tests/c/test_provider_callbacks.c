/* C providers that misbehave or call back into the library. Every refused registration
 * releases its user data once; a create that returns garbage (no resource id, an over-long
 * one, too much metadata, a result that is no hw_provider_result, a failure after the
 * resource id was set) is a documented error, its instance destroyed when it was created; an
 * over-long error message is cut; callbacks may call the manager again; and a callback may
 * free the manager it is called by: the call in progress finishes on an engine that is still
 * there, and `release` runs once, after the callback (valgrind checks the rest). */
#include "harness.h"

#define T0 1700000000000ULL

typedef struct probe {
  int created;
  int destroyed;
  int released;
  int mode;
  char last_destroyed[HW_MAX_RESOURCE_ID_LEN + 8];
  char last_zone[16];      /* the "zone" metadata destroy_worker was given, or "" */
  hw_manager *mgr;         /* the manager, for callbacks that call back into it */
  hw_status inner;         /* the status of the call a callback made */
  int released_in_callback; /* `released` seen right after the callback freed the manager */
} probe;

enum {
  MODE_OK = 0,
  MODE_NO_RESOURCE_ID,
  MODE_FAILED_NO_MESSAGE,
  MODE_LONG_RESOURCE_ID,
  MODE_TOO_MUCH_METADATA,
  MODE_EMPTY_RESOURCE_ID,
  MODE_OUT_OF_RANGE,
  MODE_REENTER_PROVISION,
  MODE_REENTER_TICK,
  MODE_REENTER_UNREGISTER,
  MODE_FREE_MANAGER,
  MODE_LONG_MESSAGE,
  MODE_CREATED_THEN_FAILED,
  MODE_CREATED_THEN_NO_CAPACITY,
  MODE_CREATED_THEN_FENCED,
};

/* A message far over HW_MAX_PROVIDER_MESSAGE_LEN: "x" then two-byte characters, so that a
 * cut at the limit falls inside one of them. */
#define LONG_MESSAGE_SIZE (1 << 20)
static char long_message[LONG_MESSAGE_SIZE + 1];

static char long_id[HW_MAX_RESOURCE_ID_LEN + 2]; /* one byte over the limit */

static uint32_t p_create(void *user_data, hw_worker_id worker_id, const hw_worker_spec *spec,
                         hw_provider_call *call) {
  probe *p = (probe *)user_data;
  (void)worker_id;
  char rid[32];
  snprintf(rid, sizeof rid, "r-%d", ++p->created);
  switch (p->mode) {
  case MODE_NO_RESOURCE_ID:
    return HW_PROVIDER_RESULT_OK;
  case MODE_FAILED_NO_MESSAGE:
    return HW_PROVIDER_RESULT_FAILED;
  case MODE_LONG_RESOURCE_ID:
    p->inner = hw_provider_call_set_resource_id(call, long_id);
    return HW_PROVIDER_RESULT_OK;
  case MODE_TOO_MUCH_METADATA:
    hw_provider_call_set_resource_id(call, rid);
    for (int i = 0; i < HW_MAX_ENTRIES + 1; i++) {
      char key[16];
      snprintf(key, sizeof key, "k%d", i);
      hw_provider_call_add_metadata(call, key, "v");
    }
    return HW_PROVIDER_RESULT_OK;
  case MODE_EMPTY_RESOURCE_ID:
    p->inner = hw_provider_call_set_resource_id(call, "");
    return HW_PROVIDER_RESULT_OK;
  case MODE_OUT_OF_RANGE:
    hw_provider_call_set_resource_id(call, rid);
    return 0xFFFFFFFFu;
  case MODE_LONG_MESSAGE:
    p->inner = hw_provider_call_set_error(call, long_message);
    return HW_PROVIDER_RESULT_FAILED;
  case MODE_CREATED_THEN_FAILED:
  case MODE_CREATED_THEN_NO_CAPACITY:
  case MODE_CREATED_THEN_FENCED:
    /* The instance was launched, then a later step failed. */
    hw_provider_call_set_resource_id(call, rid);
    hw_provider_call_add_metadata(call, "zone", "z1");
    hw_provider_call_set_error(call, "tagging the instance failed");
    return p->mode == MODE_CREATED_THEN_FAILED        ? HW_PROVIDER_RESULT_FAILED
           : p->mode == MODE_CREATED_THEN_NO_CAPACITY ? HW_PROVIDER_RESULT_NO_CAPACITY
                                                      : HW_PROVIDER_RESULT_FENCED;
  case MODE_REENTER_PROVISION: {
    hw_worker *w = NULL;
    p->mode = MODE_OK;
    p->inner = hw_manager_provision(p->mgr, "p", spec, &w);
    hw_worker_free(w);
    break;
  }
  case MODE_REENTER_TICK: {
    hw_report *r = NULL;
    p->inner = hw_manager_tick(p->mgr, 0, &r);
    hw_report_free(r);
    break;
  }
  case MODE_REENTER_UNREGISTER:
    p->inner = hw_manager_unregister_provider(p->mgr, "p");
    p->released_in_callback = p->released;
    break;
  case MODE_FREE_MANAGER:
    hw_manager_free(p->mgr);
    p->mgr = NULL;
    p->released_in_callback = p->released;
    break;
  default:
    break;
  }
  hw_provider_call_set_resource_id(call, rid);
  return HW_PROVIDER_RESULT_OK;
}

static uint32_t p_destroy(void *user_data, hw_worker_id id, const char *resource_id,
                          hw_provider_call *call) {
  probe *p = (probe *)user_data;
  (void)id;
  p->destroyed++;
  snprintf(p->last_destroyed, sizeof p->last_destroyed, "%s", resource_id);
  const char *zone = NULL;
  if (hw_provider_call_get_metadata(call, "zone", &zone) != HW_OK) zone = "(error)";
  snprintf(p->last_zone, sizeof p->last_zone, "%s", zone ? zone : "");
  if (p->mode == MODE_FREE_MANAGER && p->mgr != NULL) {
    hw_manager_free(p->mgr);
    p->mgr = NULL;
    p->released_in_callback = p->released;
  }
  return HW_PROVIDER_RESULT_OK;
}

static void p_release(void *user_data) { ((probe *)user_data)->released++; }

static hw_provider_callbacks callbacks_for(probe *p) {
  hw_provider_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.user_data = p;
  cb.create_worker = p_create;
  cb.destroy_worker = p_destroy;
  cb.release = p_release;
  return cb;
}

static size_t count(const hw_registry *reg) {
  size_t n = 99;
  CHECK_OK(hw_registry_count(reg, &n));
  return n;
}

static hw_manager *new_manager(const hw_registry *reg) {
  hw_manager_config config;
  hw_manager *mgr = NULL;
  CHECK_OK(hw_manager_config_default(&config));
  config.min_ready_workers = 0;
  CHECK_OK(hw_manager_new(reg, &config, &mgr));
  return mgr;
}

/* Every refusal releases the user data it was given, once, at once. */
static void refused_registrations(const hw_registry *reg, const hw_worker_spec *spec,
                                  hw_clock *clock) {
  (void)spec;
  (void)clock;
  hw_manager *mgr = new_manager(reg);
  probe p;
  memset(&p, 0, sizeof p);
  hw_provider_callbacks cb = callbacks_for(&p);
  CHECK_STATUS(hw_manager_register_provider(NULL, "p", "docker", &cb), HW_ERR_INVALID_ARGUMENT);
  CHECK(p.released == 1);
  CHECK_STATUS(hw_manager_register_provider(mgr, NULL, "docker", &cb), HW_ERR_INVALID_ARGUMENT);
  CHECK(p.released == 2);
  CHECK_STATUS(hw_manager_register_provider(mgr, "p", "podman", &cb), HW_ERR_INVALID_ARGUMENT);
  CHECK(p.released == 3);
  hw_provider_callbacks no_create = cb;
  no_create.create_worker = NULL;
  CHECK_STATUS(hw_manager_register_provider(mgr, "p", "docker", &no_create), HW_ERR_INVALID_ARGUMENT);
  CHECK(p.released == 4);
  /* NULL callbacks: nothing to release. */
  CHECK_STATUS(hw_manager_register_provider(mgr, "p", "docker", NULL), HW_ERR_INVALID_ARGUMENT);
  CHECK(p.released == 4);
  hw_manager_free(mgr);
  CHECK(p.released == 4);
}

/* A create that returns garbage: the documented status, the out-param untouched, nothing
 * registered, and an instance the provider did create is destroyed rather than leaked. */
static void garbage_from_create(const hw_registry *reg, const hw_worker_spec *spec, hw_clock *clock) {
  (void)clock;
  hw_manager *mgr = new_manager(reg);
  probe p;
  memset(&p, 0, sizeof p);
  hw_provider_callbacks cb = callbacks_for(&p);
  CHECK_OK(hw_manager_register_provider(mgr, "p", "docker", &cb));
  hw_worker *const untouched = (hw_worker *)&p;
  hw_worker *w = untouched;

  p.mode = MODE_NO_RESOURCE_ID;
  CHECK_STATUS(hw_manager_provision(mgr, "p", spec, &w), HW_ERR_PROVIDER);
  CHECK(strstr(hw_last_error_message(), "without a resource id") != NULL);
  p.mode = MODE_FAILED_NO_MESSAGE;
  CHECK_STATUS(hw_manager_provision(mgr, "p", spec, &w), HW_ERR_PROVIDER);
  CHECK(strstr(hw_last_error_message(), "create_worker of C provider p failed") != NULL);
  CHECK(w == untouched);
  CHECK(p.destroyed == 0);
  /* A result that is no hw_provider_result after the resource id was set: a failure, and the
   * instance the callback said it made is destroyed, not leaked. */
  p.mode = MODE_OUT_OF_RANGE;
  CHECK_STATUS(hw_manager_provision(mgr, "p", spec, &w), HW_ERR_PROVIDER);
  CHECK(strstr(hw_last_error_message(), "not a hw_provider_result") != NULL);
  CHECK(w == untouched);
  CHECK(p.destroyed == 1 && strcmp(p.last_destroyed, "r-3") == 0);

  p.mode = MODE_LONG_RESOURCE_ID;
  CHECK_STATUS(hw_manager_provision(mgr, "p", spec, &w), HW_ERR_INVALID_ARGUMENT);
  CHECK(strstr(hw_last_error_message(), "resource_id") != NULL);
  CHECK(p.inner == HW_OK); /* the call object takes it; the registry refuses it */
  CHECK(p.destroyed == 2 && strcmp(p.last_destroyed, long_id) == 0);
  p.mode = MODE_TOO_MUCH_METADATA;
  CHECK_STATUS(hw_manager_provision(mgr, "p", spec, &w), HW_ERR_INVALID_ARGUMENT);
  CHECK(strstr(hw_last_error_message(), "metadata") != NULL);
  CHECK(p.destroyed == 3);
  /* An empty resource id names no instance: refused like an over-long one, and what the
   * callback made is destroyed (with the id it gave). */
  p.mode = MODE_EMPTY_RESOURCE_ID;
  CHECK_STATUS(hw_manager_provision(mgr, "p", spec, &w), HW_ERR_INVALID_ARGUMENT);
  CHECK(strstr(hw_last_error_message(), "resource_id") != NULL);
  CHECK(strstr(hw_last_error_message(), "empty") != NULL);
  CHECK(p.inner == HW_OK);
  CHECK(p.destroyed == 4 && strcmp(p.last_destroyed, "") == 0);
  CHECK(w == untouched);
  CHECK(count(reg) == 0);

  hw_manager_free(mgr);
  CHECK(p.released == 1);
}

/* A create that set a resource id (the instance exists) and then failed: the library destroys
 * that instance (same worker id, resource id and metadata) before it reports the failure,
 * rather than drop the only record of it. FENCED is the exception: the provider refuses this
 * manager's token, so the instance is left to the replica that leads (its reconcile). */
static void created_then_failed(const hw_registry *reg, const hw_worker_spec *spec,
                                hw_clock *clock) {
  (void)clock;
  hw_manager *mgr = new_manager(reg);
  probe p;
  memset(&p, 0, sizeof p);
  hw_provider_callbacks cb = callbacks_for(&p);
  CHECK_OK(hw_manager_register_provider(mgr, "p", "docker", &cb));
  hw_worker *const untouched = (hw_worker *)&p;
  hw_worker *w = untouched;

  p.mode = MODE_CREATED_THEN_FAILED;
  CHECK_STATUS(hw_manager_provision(mgr, "p", spec, &w), HW_ERR_PROVIDER);
  CHECK(strstr(hw_last_error_message(), "tagging the instance failed") != NULL);
  CHECK(strstr(hw_last_error_message(), "r-1 was destroyed") != NULL);
  CHECK(p.created == 1 && p.destroyed == 1);
  CHECK_STR(p.last_destroyed, "r-1");
  CHECK_STR(p.last_zone, "z1");

  p.mode = MODE_CREATED_THEN_NO_CAPACITY;
  CHECK_STATUS(hw_manager_provision(mgr, "p", spec, &w), HW_ERR_PROVIDER);
  CHECK(strstr(hw_last_error_message(), "r-2 was destroyed") != NULL);
  CHECK(p.created == 2 && p.destroyed == 2);
  CHECK_STR(p.last_destroyed, "r-2");

  p.mode = MODE_CREATED_THEN_FENCED;
  CHECK_STATUS(hw_manager_provision(mgr, "p", spec, &w), HW_ERR_NOT_LEADER);
  CHECK(p.created == 3 && p.destroyed == 2);
  CHECK(w == untouched);
  CHECK(count(reg) == 0);
  hw_manager_free(mgr);
  CHECK(p.released == 1);
}

/* hw_provider_call_set_error cuts a message over HW_MAX_PROVIDER_MESSAGE_LEN bytes (a callback
 * cannot act on a refusal): the failure, its last error text and its PROVISION_FAILED event
 * carry the cut message, marked, valid UTF-8. */
static void long_error_message(const hw_registry *reg, const hw_worker_spec *spec,
                               hw_clock *clock) {
  (void)clock;
  hw_manager *mgr = new_manager(reg);
  probe p;
  memset(&p, 0, sizeof p);
  hw_provider_callbacks cb = callbacks_for(&p);
  CHECK_OK(hw_manager_register_provider(mgr, "p", "docker", &cb));
  hw_subscription *sub = NULL;
  CHECK_OK(hw_registry_subscribe(reg, HW_DEFAULT_SUBSCRIPTION_CAPACITY, false, &sub));
  hw_worker *w = NULL;
  p.mode = MODE_LONG_MESSAGE;
  p.inner = HW_ERR_PANIC;
  CHECK_STATUS(hw_manager_provision(mgr, "p", spec, &w), HW_ERR_PROVIDER);
  CHECK(p.inner == HW_OK);
  const char *text = hw_last_error_message();
  size_t len = strlen(text);
  CHECK(len > HW_MAX_PROVIDER_MESSAGE_LEN / 2 && len < HW_MAX_PROVIDER_MESSAGE_LEN + 256);
  CHECK(strstr(text, "x\xc3\xa9\xc3\xa9") != NULL);
  CHECK(strstr(text, "(truncated)") != NULL);
  int found = 0;
  hw_event *ev = NULL;
  while (sub != NULL && hw_subscription_recv(sub, 0, &ev) == HW_OK && ev != NULL) {
    hw_event_kind kind = HW_EVENT_KIND_UNKNOWN;
    CHECK_OK(hw_event_get_kind(ev, &kind));
    if (kind == HW_EVENT_KIND_PROVISION_FAILED) {
      const char *message = NULL;
      CHECK_OK(hw_event_get_message(ev, &message));
      CHECK(message != NULL && strlen(message) < HW_MAX_PROVIDER_MESSAGE_LEN + 256);
      /* Cut on a character boundary: the text ends with whole two-byte characters. */
      const char *cut = message ? strstr(message, "x\xc3\xa9") : NULL;
      CHECK(cut != NULL);
      if (cut != NULL) {
        size_t run = strspn(cut + 1, "\xc3\xa9");
        CHECK(run > 0 && run % 2 == 0);
      }
      found++;
    }
    hw_event_free(ev);
    ev = NULL;
  }
  CHECK(found == 1);
  hw_subscription_free(sub);
  hw_manager_free(mgr);
}

/* Callbacks calling the manager that called them: no deadlock, and a provider unregistered
 * from its own create is released once, when that call no longer needs it. */
static void reentrant_callbacks(const hw_registry *reg, const hw_worker_spec *spec, hw_clock *clock) {
  (void)clock;
  hw_manager *mgr = new_manager(reg);
  probe p;
  memset(&p, 0, sizeof p);
  p.mgr = mgr;
  hw_provider_callbacks cb = callbacks_for(&p);
  CHECK_OK(hw_manager_register_provider(mgr, "p", "docker", &cb));
  hw_worker *w = NULL;

  p.mode = MODE_REENTER_PROVISION;
  CHECK_OK(hw_manager_provision(mgr, "p", spec, &w));
  CHECK(p.inner == HW_OK && p.created == 2);
  hw_worker_free(w);
  p.mode = MODE_REENTER_TICK;
  CHECK_OK(hw_manager_provision(mgr, "p", spec, &w));
  CHECK(p.inner == HW_OK);
  hw_worker_free(w);
  CHECK(count(reg) == 3);

  p.mode = MODE_REENTER_UNREGISTER;
  CHECK_OK(hw_manager_provision(mgr, "p", spec, &w));
  CHECK(p.inner == HW_OK);
  CHECK(p.released_in_callback == 0); /* not while its own callback runs */
  CHECK(p.released == 1);
  hw_worker_free(w);
  hw_manager_free(mgr);
  CHECK(p.released == 1);
}

/* hw_manager_free from a provider callback: the handle is gone, but the call that runs the
 * callback goes on with the engine ("the manager itself goes once no call on it runs any
 * more"), and the provider is released once, after its callback returned. */
static void manager_freed_from_a_callback(const hw_registry *reg, const hw_worker_spec *spec,
                                          hw_clock *clock) {
  /* From create_worker, inside hw_manager_provision. */
  probe p;
  memset(&p, 0, sizeof p);
  p.mgr = new_manager(reg);
  hw_provider_callbacks cb = callbacks_for(&p);
  CHECK_OK(hw_manager_register_provider(p.mgr, "p", "docker", &cb));
  p.mode = MODE_FREE_MANAGER;
  hw_worker *w = NULL;
  CHECK_OK(hw_manager_provision(p.mgr, "p", spec, &w));
  CHECK(w != NULL);
  CHECK(p.mgr == NULL);
  CHECK(p.released_in_callback == 0);
  CHECK(p.released == 1);
  hw_worker_id id;
  memset(&id, 0, sizeof id);
  if (w) CHECK_OK(hw_worker_get_id(w, &id));
  hw_worker_free(w);
  hw_worker *gone = NULL;
  CHECK_OK(hw_registry_unregister(reg, id, HW_TERMINATION_REASON_REQUESTED, &gone));
  hw_worker_free(gone);

  /* From destroy_worker, inside hw_manager_tick: an idle worker retired by cleanup. */
  memset(&p, 0, sizeof p);
  p.mgr = new_manager(reg);
  cb = callbacks_for(&p);
  CHECK_OK(hw_manager_register_provider(p.mgr, "p", "docker", &cb));
  w = NULL;
  CHECK_OK(hw_manager_provision(p.mgr, "p", spec, &w));
  if (w) CHECK_OK(hw_worker_get_id(w, &id));
  hw_worker_free(w);
  CHECK_OK(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, &w));
  hw_worker_free(w);
  uint64_t now = 0;
  CHECK_OK(hw_clock_advance(clock, 301000, &now)); /* past the 300 s idle timeout */
  CHECK_OK(hw_registry_heartbeat(reg, id));
  p.mode = MODE_FREE_MANAGER;
  hw_report *report = NULL;
  CHECK_OK(hw_manager_tick(p.mgr, 0, &report));
  hw_report_summary sum;
  memset(&sum, 0, sizeof sum);
  CHECK_OK(hw_report_get_summary(report, &sum));
  CHECK(sum.terminated == 1);
  hw_report_free(report);
  CHECK(p.destroyed == 1 && p.mgr == NULL);
  CHECK(p.released_in_callback == 0);
  CHECK(p.released == 1);
  CHECK(count(reg) == 0);

  /* From destroy_worker, inside hw_manager_remove_pool, which terminates the pool's workers
   * still starting, and hw_manager_set_pools_json, which removes the pools it is not given. */
  for (int via_set_pools = 0; via_set_pools < 2; via_set_pools++) {
    memset(&p, 0, sizeof p);
    p.mgr = new_manager(reg);
    cb = callbacks_for(&p);
    CHECK_OK(hw_manager_register_provider(p.mgr, "p", "docker", &cb));
    CHECK_OK(hw_manager_add_pool(p.mgr, "warm", "p", spec, 1, 2, 0));
    CHECK_OK(hw_manager_tick(p.mgr, 0, &report)); /* provisions the pool's one warm worker */
    hw_report_free(report);
    CHECK(p.created == 1 && count(reg) == 1);
    p.mode = MODE_FREE_MANAGER;
    size_t drained = 0;
    if (via_set_pools) {
      CHECK_OK(hw_manager_set_pools_json(p.mgr, "[]", &drained));
    } else {
      CHECK_OK(hw_manager_remove_pool(p.mgr, "warm", &drained));
    }
    CHECK(drained == 1);
    CHECK(p.destroyed == 1 && p.mgr == NULL);
    CHECK(p.released_in_callback == 0);
    CHECK(p.released == 1);
    CHECK(count(reg) == 0);
  }

  /* From destroy_worker, inside hw_manager_notify_interruption, which terminates a worker
   * still starting at the notice. */
  memset(&p, 0, sizeof p);
  p.mgr = new_manager(reg);
  cb = callbacks_for(&p);
  CHECK_OK(hw_manager_register_provider(p.mgr, "p", "docker", &cb));
  w = NULL;
  CHECK_OK(hw_manager_provision(p.mgr, "p", spec, &w));
  if (w) CHECK_OK(hw_worker_get_id(w, &id));
  hw_worker_free(w);
  p.mode = MODE_FREE_MANAGER;
  w = NULL;
  CHECK_OK(hw_manager_notify_interruption(p.mgr, id, now + 60000, &w));
  hw_worker_free(w);
  CHECK(p.destroyed == 1 && p.mgr == NULL);
  CHECK(p.released_in_callback == 0);
  CHECK(p.released == 1);
  CHECK(count(reg) == 0);
}

/* Each part on a registry of its own. */
typedef void (*part_fn)(const hw_registry *reg, const hw_worker_spec *spec, hw_clock *clock);

static void run_part(part_fn part) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_worker_spec *spec = NULL;
  CHECK_OK(hw_clock_new_manual(T0, &clock));
  CHECK_OK(hw_registry_new_with_clock(clock, &reg));
  CHECK_OK(hw_worker_spec_new("img", &spec));
  if (clock && reg && spec) part(reg, spec, clock);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
}

int main(void) {
  memset(long_id, 'x', HW_MAX_RESOURCE_ID_LEN + 1);
  long_message[0] = 'x';
  for (size_t i = 1; i + 1 < LONG_MESSAGE_SIZE; i += 2) {
    long_message[i] = (char)0xc3; /* U+00E9, two bytes */
    long_message[i + 1] = (char)0xa9;
  }
  run_part(refused_registrations);
  run_part(garbage_from_create);
  run_part(created_then_failed);
  run_part(long_error_message);
  run_part(reentrant_callbacks);
  run_part(manager_freed_from_a_callback);
  return hw_test_report();
}
