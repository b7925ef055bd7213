/* The manager's contract of issue 10, seen from C: the create callback gets the worker id its
 * agent will report in with; a worker the host moved to TERMINATING is destroyed by the next
 * tick; workers past their startup deadline are expired even while the brake holds. */
#include "harness.h"

#define T0 1700000000000ULL

typedef struct cloud {
  int created;
  int destroyed;
  hw_worker_id agents[8];      /* the HODEI_WORKER_ID each instance was started with */
  hw_worker_id last_destroyed; /* the worker id of the last destroy call */
} cloud;

static uint32_t cloud_create(void *user_data, hw_worker_id worker_id, const hw_worker_spec *spec,
                             hw_provider_call *call) {
  cloud *c = (cloud *)user_data;
  (void)spec;
  if (c->created >= 8) return HW_PROVIDER_RESULT_FAILED;
  c->agents[c->created] = worker_id; /* really: start the agent with HODEI_WORKER_ID=<id> */
  char resource[32];
  snprintf(resource, sizeof resource, "vm-%d", ++c->created);
  return hw_provider_call_set_resource_id(call, resource) == HW_OK ? HW_PROVIDER_RESULT_OK
                                                                   : HW_PROVIDER_RESULT_FAILED;
}

static uint32_t cloud_destroy(void *user_data, hw_worker_id id, const char *resource_id,
                              hw_provider_call *call) {
  cloud *c = (cloud *)user_data;
  (void)resource_id;
  (void)call;
  c->last_destroyed = id;
  c->destroyed++;
  return HW_PROVIDER_RESULT_OK;
}

static int same_id(hw_worker_id a, hw_worker_id b) { return memcmp(a.bytes, b.bytes, 16) == 0; }

static hw_worker_id provision(hw_manager *mgr, const hw_worker_spec *spec) {
  hw_worker *w = NULL;
  hw_worker_id id;
  memset(&id, 0, sizeof id);
  CHECK_OK(hw_manager_provision(mgr, "cloud", spec, &w));
  if (w) CHECK_OK(hw_worker_get_id(w, &id));
  hw_worker_free(w);
  return id;
}

static void set_state(hw_registry *reg, hw_worker_id id, uint32_t state) {
  hw_worker *w = NULL;
  CHECK_OK(hw_registry_update_state(reg, id, state, &w));
  hw_worker_free(w);
}

static int registered(hw_registry *reg, hw_worker_id id) {
  hw_worker *w = NULL;
  CHECK_OK(hw_registry_get(reg, id, &w));
  int present = w != NULL;
  hw_worker_free(w);
  return present;
}

int main(void) {
  cloud c;
  memset(&c, 0, sizeof c);
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  hw_worker_spec *spec = NULL;
  uint64_t now = 0;
  REQUIRE_OK(hw_clock_new_manual(T0, &clock));
  REQUIRE_OK(hw_registry_new_with_clock(clock, &reg));
  REQUIRE_OK(hw_worker_spec_new("img", &spec));
  hw_manager_config config;
  REQUIRE_OK(hw_manager_config_default(&config));
  REQUIRE_OK(hw_manager_new(reg, &config, &mgr));
  hw_provider_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.user_data = &c;
  cb.create_worker = cloud_create;
  cb.destroy_worker = cloud_destroy;
  REQUIRE_OK(hw_manager_register_provider(mgr, "cloud", "custom:fake", &cb));

  /* The agent's id is the registered worker's id. */
  hw_worker_id w = provision(mgr, spec);
  CHECK(c.created == 1 && same_id(c.agents[0], w));
  set_state(reg, c.agents[0], HW_WORKER_STATE_READY); /* the agent reports in with its id */

  /* The host moves it to TERMINATING: the next tick destroys and unregisters it. */
  set_state(reg, w, HW_WORKER_STATE_TERMINATING);
  CHECK_OK(hw_clock_advance(clock, 1000, &now));
  hw_report *r = NULL;
  CHECK_OK(hw_manager_tick(mgr, 0, &r));
  hw_worker_id gone;
  hw_termination_reason reason = 0;
  memset(&gone, 0, sizeof gone);
  CHECK_OK(hw_report_get_terminated(r, 0, &gone, &reason));
  CHECK(same_id(gone, w) && reason == HW_TERMINATION_REASON_REQUESTED);
  CHECK(hw_report_get_terminated(r, 1, &gone, &reason) != HW_OK);
  hw_report_free(r);
  CHECK(c.destroyed == 1 && same_id(c.last_destroyed, w));
  CHECK(!registered(reg, w));

  /* Two workers that never reach READY and never heartbeat: the brake holds their heartbeat
   * expiry (2 of 2 silent), never their startup expiry (300 s). */
  hw_worker_id a = provision(mgr, spec), b = provision(mgr, spec);
  set_state(reg, a, HW_WORKER_STATE_CONNECTING);
  set_state(reg, b, HW_WORKER_STATE_CONNECTING);
  int expired = 0;
  uint64_t expired_at = 0;
  for (int i = 0; i < 11; i++) {
    CHECK_OK(hw_clock_advance(clock, 30000, &now));
    CHECK_OK(hw_manager_tick(mgr, 0, &r));
    for (size_t k = 0; r && hw_report_get_terminated(r, k, &gone, &reason) == HW_OK; k++) {
      CHECK(reason == HW_TERMINATION_REASON_STARTUP_TIMEOUT);
      CHECK(same_id(gone, a) || same_id(gone, b));
      expired++;
      expired_at = now;
    }
    hw_report_free(r);
  }
  CHECK(expired == 2);
  CHECK(expired_at - T0 <= 1000 + 330000); /* the first check past 300 s */
  CHECK(!registered(reg, a) && !registered(reg, b));

  hw_manager_free(mgr);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
  return hw_test_report();
}
