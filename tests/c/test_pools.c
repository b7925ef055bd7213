/* Pools from C: two pools on two C providers, a demand by requirement, fallback when the
 * preferred pool's provider fails, an unschedulable requirement, claim by fit, an
 * interruption notice whose job is reported lost at the deadline, removal of a pool, and the
 * registry's per-pool counts. */
#include "harness.h"

#define T0 1700000000000ULL

typedef struct cloud {
  const char *name;
  int fail;
  int created;
  int destroyed;
} cloud;

static uint32_t cloud_create(void *user_data, hw_worker_id worker_id, const hw_worker_spec *spec,
                             hw_provider_call *call) {
  cloud *c = (cloud *)user_data;
  (void)worker_id;
  (void)spec;
  if (c->fail) {
    hw_provider_call_set_error(call, "no spot capacity in eu-west-1a");
    return HW_PROVIDER_RESULT_NO_CAPACITY;
  }
  char resource[64];
  snprintf(resource, sizeof resource, "%s-%d", c->name, ++c->created);
  return hw_provider_call_set_resource_id(call, resource) == HW_OK ? HW_PROVIDER_RESULT_OK
                                                                    : HW_PROVIDER_RESULT_FAILED;
}

static uint32_t cloud_destroy(void *user_data, hw_worker_id id, const char *resource_id,
                              hw_provider_call *call) {
  (void)id;
  (void)resource_id;
  (void)call;
  ((cloud *)user_data)->destroyed++;
  return HW_PROVIDER_RESULT_OK;
}

static void register_cloud(hw_manager *mgr, cloud *c) {
  hw_provider_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.user_data = c;
  cb.create_worker = cloud_create;
  cb.destroy_worker = cloud_destroy;
  CHECK_OK(hw_manager_register_provider(mgr, c->name, "ec2", &cb));
}

/* Whether some decision line of `rep` contains `needle`. */
static int has_decision(const hw_report *rep, const char *needle) {
  const char *line = NULL;
  for (size_t i = 0; hw_report_get_decision(rep, i, &line) == HW_OK; i++) {
    if (strstr(line, needle) != NULL) return 1;
  }
  return 0;
}

#define POOLS                                                                                   \
  "[{\"name\": \"gpu-spot\", \"provider_id\": \"spot\", \"priority\": 10, \"max_workers\": 8,"  \
  "  \"template\": {\"image\": \"trainer\", \"labels\": {\"gpu\": \"a100\"},"                   \
  "                \"resources\": {\"cpu_cores\": 16, \"gpu_count\": 1, \"gpu_type\": \"a100\"}}}," \
  " {\"name\": \"gpu-ondemand\", \"provider_id\": \"ondemand\", \"max_workers\": 4,"            \
  "  \"template\": {\"image\": \"trainer\", \"labels\": {\"gpu\": \"a100\"},"                   \
  "                \"resources\": {\"cpu_cores\": 16, \"gpu_count\": 1, \"gpu_type\": \"a100\"}}}]"

int main(void) {
  cloud spot = {"spot", 1, 0, 0};
  cloud ondemand = {"ondemand", 0, 0, 0};
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  REQUIRE_OK(hw_clock_new_manual(T0, &clock));
  REQUIRE_OK(hw_registry_new_with_clock(clock, &reg));
  hw_manager_config config;
  REQUIRE_OK(hw_manager_config_default(&config));
  config.min_ready_workers = 0;
  config.heartbeat_timeout_ms = 600000;
  REQUIRE_OK(hw_manager_new(reg, &config, &mgr));
  register_cloud(mgr, &spot);
  register_cloud(mgr, &ondemand);

  size_t drained = 99;
  REQUIRE_OK(hw_manager_set_pools_json(mgr, POOLS, &drained));
  CHECK(drained == 0);
  char *json = NULL;
  CHECK_OK(hw_manager_get_pools_json(mgr, &json));
  CHECK(json != NULL && strstr(json, "\"gpu-spot\"") != NULL);
  hw_string_free(json);

  /* Spot is preferred but has no capacity: nothing this tick, its provider backs off. */
  const char *demand = "[{\"labels\": {\"gpu\": \"a100\"}, \"count\": 2}]";
  hw_report *rep = NULL;
  REQUIRE_OK(hw_manager_tick_demand(mgr, demand, &rep));
  hw_report_summary sum;
  CHECK_OK(hw_report_get_summary(rep, &sum));
  CHECK(sum.provisioned == 0 && spot.created == 0);
  hw_report_free(rep);

  /* The next tick spills spot's demand to on-demand and says so. */
  uint64_t now = 0;
  CHECK_OK(hw_clock_advance(clock, 1000, &now));
  REQUIRE_OK(hw_manager_tick_demand(mgr, demand, &rep));
  CHECK_OK(hw_report_get_summary(rep, &sum));
  CHECK(sum.provisioned == 2 && ondemand.created == 2);
  CHECK(has_decision(rep, "spilled from gpu-spot (no capacity, retry in 4 s) to gpu-ondemand"));
  hw_worker_id first;
  memset(&first, 0, sizeof first);
  CHECK_OK(hw_report_get_provisioned(rep, 0, &first));
  hw_report_free(rep);

  /* The registry counts each pool's workers (what the manager's tick reads). */
  hw_worker_counts pc;
  memset(&pc, 0xff, sizeof pc);
  CHECK_OK(hw_registry_pool_counts(reg, "gpu-ondemand", &pc));
  CHECK(pc.total == 2 && pc.creating == 2 && pc.ready == 0 && pc.busy == 0);
  CHECK_OK(hw_registry_pool_counts(reg, "gpu-spot", &pc));
  CHECK(pc.total == 0 && pc.creating == 0);
  CHECK_OK(hw_registry_pool_counts(reg, "no-such-pool", &pc));
  CHECK(pc.total == 0);
  char *stats_json = NULL;
  CHECK_OK(hw_registry_stats_json(reg, &stats_json));
  CHECK(stats_json != NULL && strstr(stats_json, "\"by_pool\":{\"gpu-ondemand\":{") != NULL);
  hw_string_free(stats_json);

  /* An H100 job no pool can run is reported unschedulable, with the reason. */
  REQUIRE_OK(hw_manager_tick_demand(mgr, "[{\"labels\": {\"gpu\": \"h100\"}, \"count\": 1}]", &rep));
  CHECK(has_decision(rep, "unschedulable: 1 job(s) needing gpu=h100: no pool offers label gpu=h100"));
  CHECK_OK(hw_report_get_summary(rep, &sum));
  CHECK(sum.unschedulable == 1 && sum.scaled);
  const char *rjson = NULL;
  CHECK_OK(hw_report_get_json(rep, &rjson));
  CHECK(rjson != NULL && strstr(rjson, "\"unschedulable\":[{") != NULL);
  hw_report_free(rep);
  CHECK_OK(hw_manager_plan_pools_json(mgr, demand, &json));
  CHECK(json != NULL && strstr(json, "\"pool\":\"gpu-ondemand\"") != NULL);
  hw_string_free(json);

  /* A requirement asking for a string no worker can hold (a capability or label key over
   * HW_MAX_KEY_LEN, a label value over HW_MAX_VALUE_LEN, more than HW_MAX_ENTRIES of them) is
   * refused like the same filter, not planned as unschedulable and echoed in every report. */
  {
    static char big[HW_MAX_VALUE_LEN + 128];
    static char name[HW_MAX_VALUE_LEN + 2];
    hw_report *const untouched_rep = (hw_report *)&pc;
    char *const untouched_json = (char *)&pc;
    const char *forms[] = {
        "[{\"capabilities\": [\"%s\"], \"count\": 1}]",
        "[{\"labels\": {\"%s\": \"v\"}, \"count\": 1}]",
        "[{\"labels\": {\"k\": \"%s\"}, \"count\": 1}]",
        "[{\"resources\": {\"gpu_type\": \"%s\"}, \"count\": 1}]",
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
      size_t len = i == 2 ? HW_MAX_VALUE_LEN + 1 : HW_MAX_KEY_LEN + 1;
      memset(name, 'x', len);
      name[len] = '\0';
      snprintf(big, sizeof big, forms[i], name);
      hw_report *r = untouched_rep;
      CHECK_STATUS(hw_manager_tick_demand(mgr, big, &r), HW_ERR_INVALID_ARGUMENT);
      CHECK(strstr(hw_last_error_message(), "demand[0]") != NULL);
      CHECK(r == untouched_rep);
      char *plan = untouched_json;
      CHECK_STATUS(hw_manager_plan_pools_json(mgr, big, &plan), HW_ERR_INVALID_ARGUMENT);
      CHECK(plan == untouched_json);
      /* At the limit it is a requirement like any other (unschedulable here). */
      name[len - 1] = '\0';
      snprintf(big, sizeof big, forms[i], name);
      CHECK_OK(hw_manager_plan_pools_json(mgr, big, &plan));
      if (plan != untouched_json) hw_string_free(plan);
    }
  }

  /* The worker reports in; a claim by fit takes it, a bigger job finds nothing. */
  hw_worker *w = NULL;
  CHECK_OK(hw_registry_update_state(reg, first, HW_WORKER_STATE_READY, &w));
  hw_worker_free(w);
  hw_worker_spec *needs = NULL;
  hw_worker_filter *fit = NULL;
  REQUIRE_OK(hw_worker_spec_new("job", &needs));
  REQUIRE_OK(hw_worker_filter_new(&fit));
  CHECK_OK(hw_worker_spec_set_resources(needs, 32, 0, 0, 1));
  CHECK_OK(hw_worker_filter_set_fits(fit, needs));
  CHECK_OK(hw_registry_claim(reg, fit, "too-big", &w));
  CHECK(w == NULL);
  CHECK_OK(hw_worker_spec_set_resources(needs, 8, 0, 0, 1));
  CHECK_OK(hw_worker_filter_set_fits(fit, needs));
  CHECK_OK(hw_worker_filter_set_architecture(fit, HW_ARCHITECTURE_ARM64));
  CHECK_OK(hw_registry_claim(reg, fit, "train-1", &w));
  CHECK(w == NULL); /* amd64 workers */
  CHECK_OK(hw_worker_filter_set_architecture(fit, HW_ARCHITECTURE_AMD64));
  CHECK_OK(hw_worker_filter_add_label(fit, "gpu", "a100"));
  CHECK_OK(hw_registry_claim(reg, fit, "train-1", &w));
  CHECK(w != NULL);
  hw_worker_free(w);
  CHECK_OK(hw_registry_pool_counts(reg, "gpu-ondemand", &pc));
  CHECK(pc.total == 2 && pc.creating == 1 && pc.busy == 1);

  /* A spot-style notice: the busy worker drains; at the deadline its job is lost. */
  CHECK_OK(hw_manager_notify_interruption(mgr, first, now + 60000, &w));
  hw_worker_state state = 0;
  if (w) CHECK_OK(hw_worker_get_state(w, &state));
  CHECK(state == HW_WORKER_STATE_DRAINING);
  hw_worker_free(w);
  CHECK_OK(hw_clock_advance(clock, 60000, &now));
  REQUIRE_OK(hw_manager_tick_demand(mgr, "[]", &rep));
  hw_worker_id lost_on;
  const char *job = NULL;
  CHECK_OK(hw_report_get_lost_job(rep, 0, &lost_on, &job));
  CHECK_STR(job, "train-1");
  CHECK(memcmp(lost_on.bytes, first.bytes, sizeof first.bytes) == 0);
  hw_worker_id gone;
  hw_termination_reason why = 99;
  CHECK_OK(hw_report_get_terminated(rep, 0, &gone, &why));
  CHECK(why == HW_TERMINATION_REASON_INTERRUPTED);
  CHECK(memcmp(gone.bytes, first.bytes, sizeof first.bytes) == 0);
  hw_report_free(rep);

  /* Removing a pool drains what is left of it. */
  CHECK_OK(hw_manager_remove_pool(mgr, "gpu-ondemand", &drained));
  CHECK(drained >= 1);
  CHECK_STATUS(hw_manager_remove_pool(mgr, "gpu-ondemand", &drained), HW_ERR_INVALID_ARGUMENT);

  hw_worker_filter_free(fit);
  hw_worker_spec_free(needs);
  hw_manager_free(mgr);
  hw_registry_free(reg);
  hw_clock_free(clock);
  return hw_test_report();
}
