/* The life of a worker driven from C on a manual clock: register -> ready -> claim -> release ->
 * heartbeat timeout -> lost job reported -> removal. Runs on the in-memory registry, and again
 * on PostgreSQL with HW_TEST_BACKEND=postgres (backend.h). */
#include "harness.h"
#include "backend.h"

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

/* A provider written in C: counts what the engine asks of it. */
typedef struct fake_cloud {
  int created;
  int destroyed;
  int released;
  int fail_creates;
  /* Refuse the next create's fencing token (as a cloud that served a larger one would). */
  int refuse_token;
  /* The worker id the last create was asked for (the manager makes it first). */
  hw_worker_id last_created_id;
  char last_destroyed[64];
  char zone_seen[64];
  /* The fencing token of the last create and destroy (a lone manager's: its term, 1). */
  uint64_t create_token;
  uint64_t destroy_token;
  /* What the cloud really runs (for list_workers). */
  char live[16][32];
  int nlive;
} fake_cloud;

static void cloud_forget(fake_cloud *cloud, const char *resource_id) {
  for (int i = 0; i < cloud->nlive; i++) {
    if (strcmp(cloud->live[i], resource_id) == 0) {
      memmove(cloud->live[i], cloud->live[i + 1], sizeof cloud->live[0] * (size_t)(cloud->nlive - i - 1));
      cloud->nlive--;
      return;
    }
  }
}

static uint32_t cloud_create(void *user_data, hw_worker_id worker_id, const hw_worker_spec *spec,
                             hw_provider_call *call) {
  fake_cloud *cloud = (fake_cloud *)user_data;
  /* A real provider starts the instance with this id (e.g. HODEI_WORKER_ID=<id>). */
  cloud->last_created_id = worker_id;
  if (hw_provider_call_get_fencing_token(call, &cloud->create_token) != HW_OK) return HW_PROVIDER_RESULT_FAILED;
  if (cloud->fail_creates) {
    hw_provider_call_set_error(call, "quota exhausted");
    return HW_PROVIDER_RESULT_FAILED;
  }
  if (cloud->refuse_token) {
    cloud->refuse_token = 0;
    hw_provider_call_set_error(call, "token 1 is below 2, already served");
    return HW_PROVIDER_RESULT_FENCED;
  }
  char *image = NULL;
  if (hw_worker_spec_get_image(spec, &image) != HW_OK) return HW_PROVIDER_RESULT_FAILED;
  int ok = strcmp(image, "ubuntu:24.04") == 0;
  hw_string_free(image);
  if (!ok) return HW_PROVIDER_RESULT_FAILED;
  char resource[32];
  snprintf(resource, sizeof resource, "vm-%d", ++cloud->created);
  if (cloud->nlive < 16) snprintf(cloud->live[cloud->nlive++], sizeof cloud->live[0], "%s", resource);
  if (hw_provider_call_set_resource_id(call, resource) != HW_OK) return HW_PROVIDER_RESULT_FAILED;
  if (hw_provider_call_add_metadata(call, "zone", "eu-1") != HW_OK) return HW_PROVIDER_RESULT_FAILED;
  return HW_PROVIDER_RESULT_OK;
}

static uint32_t cloud_destroy(void *user_data, hw_worker_id id, const char *resource_id,
                              hw_provider_call *call) {
  fake_cloud *cloud = (fake_cloud *)user_data;
  (void)id;
  const char *zone = NULL;
  if (hw_provider_call_get_metadata(call, "zone", &zone) == HW_OK && zone) {
    snprintf(cloud->zone_seen, sizeof cloud->zone_seen, "%s", zone);
  }
  if (hw_provider_call_get_fencing_token(call, &cloud->destroy_token) != HW_OK) return HW_PROVIDER_RESULT_FAILED;
  snprintf(cloud->last_destroyed, sizeof cloud->last_destroyed, "%s", resource_id);
  cloud_forget(cloud, resource_id);
  cloud->destroyed++;
  return HW_PROVIDER_RESULT_OK;
}

static uint32_t cloud_list(void *user_data, hw_provider_call *call) {
  fake_cloud *cloud = (fake_cloud *)user_data;
  for (int i = 0; i < cloud->nlive; i++) {
    if (hw_provider_call_add_instance(call, cloud->live[i]) != HW_OK) return HW_PROVIDER_RESULT_FAILED;
  }
  return HW_PROVIDER_RESULT_OK;
}

static void cloud_release(void *user_data) { ((fake_cloud *)user_data)->released++; }

/* The manager part: provision through a C provider, lose the heartbeat, tick: the job is
 * reported lost and the worker destroyed through the provider. */
static void manager_lifecycle(void) {
  fake_cloud cloud;
  memset(&cloud, 0, sizeof cloud);
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker_filter *any = NULL;
  CHECK_OK(hw_clock_new_manual(T0, &clock));
  CHECK_OK(hw_test_registry_new(clock, &reg));
  CHECK_OK(hw_worker_spec_new("ubuntu:24.04", &spec));
  CHECK_OK(hw_worker_filter_new(&any));

  hw_manager_config config;
  CHECK_OK(hw_manager_config_default(&config));
  CHECK(config.heartbeat_timeout_ms == 60000 && config.max_workers == 10);
  /* The brake's bound: 300 s by default; zero would make the brake useless and is refused. */
  CHECK(config.max_mass_expiry_hold_ms == 300000);
  /* The periodic reconcile: every 600 s by default; 0 disables it (valid). */
  CHECK(config.reconcile_interval_ms == 600000);
  config.max_mass_expiry_hold_ms = 0;
  CHECK_STATUS(hw_manager_new(reg, &config, &mgr), HW_ERR_INVALID_ARGUMENT);
  CHECK(mgr == NULL);
  config.max_mass_expiry_hold_ms = 120000;
  config.reconcile_interval_ms = 0;
  config.heartbeat_timeout_ms = 30000;
  config.health_check_interval_ms = 1000;
  config.min_ready_workers = 5;
  config.max_workers = 3; /* min ready above max: refused */
  CHECK_STATUS(hw_manager_new(reg, &config, &mgr), HW_ERR_INVALID_ARGUMENT);
  CHECK(mgr == NULL);
  config.min_ready_workers = 1;
  CHECK_OK(hw_manager_new(reg, &config, &mgr));
  if (!mgr) return;
  hw_manager_config got;
  CHECK_OK(hw_manager_get_config(mgr, &got));
  CHECK(got.heartbeat_timeout_ms == 30000 && got.max_workers == 3);
  CHECK(got.max_mass_expiry_hold_ms == 120000);
  CHECK(got.reconcile_interval_ms == 0);

  hw_provider_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.user_data = &cloud;
  cb.create_worker = cloud_create;
  cb.destroy_worker = cloud_destroy;
  cb.release = cloud_release;
  CHECK_OK(hw_manager_register_provider(mgr, "cloud", "custom:fake", &cb));
  /* The same id again is refused, and that registration's user data is released at once. */
  CHECK_STATUS(hw_manager_register_provider(mgr, "cloud", "custom:fake", &cb), HW_ERR_INVALID_ARGUMENT);
  CHECK(cloud.released == 1);

  /* Provision: the provider is called on this thread; the worker starts in CREATING. */
  hw_worker *w = NULL;
  CHECK_OK(hw_manager_provision(mgr, "cloud", spec, &w));
  CHECK(cloud.created == 1);
  CHECK(cloud.create_token == 1);
  hw_worker_id id;
  memset(&id, 0, sizeof id);
  if (w) {
    id = worker_id_of(w);
    /* The worker is registered under the id its create callback was given. */
    CHECK(memcmp(id.bytes, cloud.last_created_id.bytes, sizeof id.bytes) == 0);
    const char *text = NULL;
    CHECK_OK(hw_worker_get_resource_id(w, &text));
    CHECK_STR(text, "vm-1");
    CHECK_OK(hw_worker_get_provider_type(w, &text));
    CHECK_STR(text, "custom:fake");
  }
  hw_worker_free(w);
  CHECK_STATUS(hw_manager_provision(mgr, "nope", spec, &w), HW_ERR_PROVIDER_NOT_FOUND);

  /* A failing provider becomes a provider error carrying its message, and an event. */
  hw_subscription *events = NULL;
  CHECK_OK(hw_registry_subscribe(reg, HW_DEFAULT_SUBSCRIPTION_CAPACITY, false, &events));
  cloud.fail_creates = 1;
  CHECK_STATUS(hw_manager_provision(mgr, "cloud", spec, &w), HW_ERR_PROVIDER);
  CHECK(strstr(hw_last_error_message(), "quota exhausted") != NULL);
  cloud.fail_creates = 0;
  int failed_events = 0;
  hw_event *ev = NULL;
  while (hw_subscription_recv(events, 0, &ev) == HW_OK && ev != NULL) {
    hw_event_kind kind = 0;
    CHECK_OK(hw_event_get_kind(ev, &kind));
    if (kind == HW_EVENT_KIND_PROVISION_FAILED) {
      const char *text = NULL;
      CHECK_OK(hw_event_get_message(ev, &text));
      CHECK(text != NULL && strstr(text, "quota exhausted") != NULL);
      CHECK_OK(hw_event_get_provider_id(ev, &text));
      CHECK_STR(text, "cloud");
      bool has = true;
      hw_worker_id none;
      CHECK_OK(hw_event_get_worker_id(ev, &has, &none));
      CHECK(!has);
      failed_events++;
    }
    hw_event_free(ev);
  }
  CHECK(failed_events == 1);

  /* A refused fencing token is not a failure of the provider: HW_ERR_NOT_LEADER, no event,
   * and no further provider call until a tick's renewal says this manager leads again. */
  cloud.refuse_token = 1;
  int created_before = cloud.created;
  CHECK_STATUS(hw_manager_provision(mgr, "cloud", spec, &w), HW_ERR_NOT_LEADER);
  CHECK(strstr(hw_last_error_message(), "refused fencing token 1") != NULL);
  CHECK(strstr(hw_last_error_message(), "token 1 is below 2") != NULL);
  bool leading = true;
  CHECK_OK(hw_manager_is_leader(mgr, &leading));
  CHECK(!leading);
  CHECK_STATUS(hw_manager_provision(mgr, "cloud", spec, &w), HW_ERR_NOT_LEADER);
  CHECK(cloud.created == created_before);
  while (hw_subscription_recv(events, 0, &ev) == HW_OK && ev != NULL) {
    hw_event_kind kind = 0;
    CHECK_OK(hw_event_get_kind(ev, &kind));
    CHECK(kind != HW_EVENT_KIND_PROVISION_FAILED);
    hw_event_free(ev);
  }
  hw_subscription_free(events);

  /* The agent reports in, takes a job, heartbeats. */
  CHECK_OK(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, &w));
  hw_worker_free(w);
  CHECK_OK(hw_registry_claim(reg, any, "job-42", &w));
  CHECK(w != NULL);
  hw_worker_free(w);
  CHECK_OK(hw_manager_process_heartbeat(mgr, id));
  bool up = false;
  CHECK_OK(hw_manager_should_scale_up(mgr, 7, &up));
  CHECK(up); /* no ready worker and jobs pending */
  hw_scaling_plan plan;
  char *plan_json = NULL;
  CHECK_OK(hw_manager_plan_scaling(mgr, 7, &plan, &plan_json));
  CHECK(plan.busy == 1 && plan.total == 1 && plan.pending_jobs == 7);
  CHECK(plan.provision + plan.total <= 3); /* never above max_workers */
  CHECK(plan_json != NULL && strstr(plan_json, "explanation") != NULL);
  hw_string_free(plan_json);

  /* Ticks every 10 s with the agent silent: past 30 s it is declared unhealthy, the job it
   * held is reported lost, and it is destroyed through the C provider and unregistered. */
  hw_report_summary sum;
  memset(&sum, 0, sizeof sum);
  int lost_reported = 0;
  int terminated_reported = 0;
  for (int i = 0; i < 5; i++) {
    uint64_t now = 0;
    CHECK_OK(hw_clock_advance(clock, 10000, &now));
    hw_report *report = NULL;
    CHECK_OK(hw_manager_tick(mgr, 0, &report));
    CHECK_OK(hw_report_get_summary(report, &sum));
    CHECK(sum.at_ms == now && !sum.skipped);
    for (size_t j = 0; j < sum.lost_jobs; j++) {
      hw_worker_id who;
      const char *job = NULL;
      CHECK_OK(hw_report_get_lost_job(report, j, &who, &job));
      CHECK(hw_id_eq(who, id));
      CHECK_STR(job, "job-42");
      lost_reported++;
    }
    for (size_t j = 0; j < sum.terminated; j++) {
      hw_worker_id who;
      hw_termination_reason why = 99;
      CHECK_OK(hw_report_get_terminated(report, j, &who, &why));
      CHECK(hw_id_eq(who, id) && why == HW_TERMINATION_REASON_UNHEALTHY);
      terminated_reported++;
    }
    const char *json = NULL;
    CHECK_OK(hw_report_get_json(report, &json));
    CHECK(json != NULL && json[0] == '{');
    /* No tick here panicked: found is false, the out-param left alone, null in the JSON.
     * (A C host cannot make a tick panic: its providers' failures are provider errors.) */
    const char *panic_message = "untouched";
    bool panicked = true;
    CHECK_OK(hw_report_get_panicked(report, &panic_message, &panicked));
    CHECK(!panicked);
    CHECK_STR(panic_message, "untouched");
    CHECK(json != NULL && strstr(json, "\"panicked\":null") != NULL);
    hw_report_free(report);
  }
  CHECK(lost_reported == 1);
  CHECK(terminated_reported == 1);
  CHECK(cloud.destroyed == 1);
  CHECK(cloud.destroy_token == 1);
  CHECK_STR(cloud.last_destroyed, "vm-1");
  CHECK_STR(cloud.zone_seen, "eu-1");
  size_t count = 99;
  CHECK_OK(hw_registry_count(reg, &count));
  CHECK(count == 0);
  char *stats = NULL;
  CHECK_OK(hw_manager_stats_json(mgr, &stats));
  CHECK(stats != NULL && strstr(stats, "\"lost_jobs_total\":1") != NULL);
  /* The quota failure counted; the refused token did not. */
  CHECK(stats != NULL && strstr(stats, "\"provision_failures_total\":1") != NULL);
  hw_string_free(stats);
  /* The ticks' renewals said this (lone) manager leads again. */
  CHECK_OK(hw_manager_is_leader(mgr, &leading));
  CHECK(leading);

  /* Terminate on request, then drain: both through the manager. */
  CHECK_OK(hw_manager_provision(mgr, "cloud", spec, &w));
  if (w) id = worker_id_of(w);
  hw_worker_free(w);
  CHECK_OK(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, &w));
  hw_worker_free(w);
  CHECK_OK(hw_manager_drain(mgr, id, &w));
  hw_worker_state state = 99;
  if (w) CHECK_OK(hw_worker_get_state(w, &state));
  CHECK(state == HW_WORKER_STATE_DRAINING);
  hw_worker_free(w);
  hw_report *report = NULL;
  CHECK_OK(hw_manager_terminate(mgr, id, HW_TERMINATION_REASON_REQUESTED, &report));
  CHECK_OK(hw_report_get_summary(report, &sum));
  CHECK(sum.terminated == 1 && sum.failed == 0 && sum.kind == HW_REPORT_KIND_TERMINATE);
  hw_report_free(report);
  CHECK(cloud.destroyed == 2);
  CHECK_STATUS(hw_manager_terminate(mgr, id, HW_TERMINATION_REASON_REQUESTED, &report), HW_ERR_NOT_FOUND);

  CHECK(cloud.released == 1);
  hw_manager_free(mgr);
  CHECK(cloud.released == 2); /* the registered provider, released with the manager */
  hw_worker_filter_free(any);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
}

/* Scaling toward a target inside ticks, explicit health check and cleanup, and reconcile
 * against what the C provider lists: an orphan instance is destroyed, a vanished one
 * unregistered. */
static void manager_scaling_and_reconcile(void) {
  fake_cloud cloud;
  memset(&cloud, 0, sizeof cloud);
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  hw_worker_spec *spec = NULL;
  CHECK_OK(hw_clock_new_manual(T0, &clock));
  CHECK_OK(hw_test_registry_new(clock, &reg));
  CHECK_OK(hw_worker_spec_new("ubuntu:24.04", &spec));
  CHECK_OK(hw_manager_new_from_json(reg, "{\"max_workers\": 3, \"min_ready_workers\": 1}", &mgr));
  if (!mgr) return;
  hw_provider_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.user_data = &cloud;
  cb.create_worker = cloud_create;
  cb.destroy_worker = cloud_destroy;
  cb.list_workers = cloud_list;
  cb.release = cloud_release;
  CHECK_OK(hw_manager_register_provider(mgr, "cloud", "ec2", &cb));
  CHECK_OK(hw_manager_set_scaling_target(mgr, "cloud", spec));

  /* Seven jobs pending, room for three workers: the tick provisions, capped by max_workers,
   * and explains why. */
  hw_report *report = NULL;
  hw_report_summary sum;
  memset(&sum, 0, sizeof sum);
  CHECK_OK(hw_manager_tick(mgr, 7, &report));
  CHECK_OK(hw_report_get_summary(report, &sum));
  CHECK(sum.provisioned >= 1 && sum.provisioned <= 3);
  CHECK(sum.pending_jobs == 7 && sum.decisions >= 1);
  CHECK((size_t)cloud.created == sum.provisioned);
  const char *line = NULL;
  CHECK_OK(hw_report_get_decision(report, 0, &line));
  CHECK(line != NULL && strstr(line, "pending 7") != NULL);
  hw_worker_id first;
  memset(&first, 0, sizeof first);
  CHECK_OK(hw_report_get_provisioned(report, 0, &first));
  hw_worker *w = NULL;
  CHECK_OK(hw_registry_get(reg, first, &w));
  CHECK(w != NULL);
  hw_worker_free(w);
  hw_report_free(report);
  size_t count = 0;
  CHECK_OK(hw_registry_count(reg, &count));
  CHECK(count == (size_t)cloud.created);
  hw_manager_clear_scaling_target(mgr);

  /* Explicit health check and cleanup: nothing is due yet. */
  CHECK_OK(hw_manager_run_health_check(mgr, &report));
  CHECK_OK(hw_report_get_summary(report, &sum));
  CHECK(sum.health_checked && sum.unhealthy == 0 && sum.terminated == 0);
  CHECK(sum.kind == HW_REPORT_KIND_HEALTH_CHECK);
  hw_report_free(report);
  CHECK_OK(hw_manager_cleanup(mgr, &report));
  CHECK_OK(hw_report_get_summary(report, &sum));
  CHECK(sum.terminated == 0 && sum.failed == 0);
  CHECK(sum.kind == HW_REPORT_KIND_CLEANUP);
  hw_report_free(report);

  /* The cloud lost the first instance and runs one the registry never heard of. */
  int before = cloud.destroyed;
  char vanished[32];
  snprintf(vanished, sizeof vanished, "%s", cloud.live[0]);
  cloud_forget(&cloud, vanished);
  snprintf(cloud.live[cloud.nlive++], sizeof cloud.live[0], "vm-orphan");
  /* (A record registered at the very instant of the listing is given the benefit of doubt.) */
  uint64_t now = 0;
  CHECK_OK(hw_clock_advance(clock, 1000, &now));
  CHECK_OK(hw_manager_reconcile(mgr, &report));
  CHECK_OK(hw_report_get_summary(report, &sum));
  CHECK(sum.terminated == 1 && sum.kind == HW_REPORT_KIND_RECONCILE);
  hw_worker_id gone;
  hw_termination_reason why = 99;
  CHECK_OK(hw_report_get_terminated(report, 0, &gone, &why));
  CHECK(why == HW_TERMINATION_REASON_VANISHED);
  const char *json = NULL;
  CHECK_OK(hw_report_get_json(report, &json));
  CHECK(json != NULL && strstr(json, "vm-orphan") != NULL);
  hw_report_free(report);
  CHECK(cloud.destroyed == before + 1);
  CHECK_STR(cloud.last_destroyed, "vm-orphan");
  w = (hw_worker *)1;
  CHECK_OK(hw_registry_get(reg, gone, &w));
  CHECK(w == NULL);
  CHECK_OK(hw_registry_count(reg, &count));
  CHECK(count == (size_t)cloud.created - 1);

  hw_manager_free(mgr);
  CHECK(cloud.released == 1);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
}

/* The retired-id limit: of 3 ids retired under a limit of 2, the oldest is forgotten (it may
 * be registered again) and the newest 2 stay refused. In memory at once; in PostgreSQL at the
 * registry's next prune, which a handle's first health-check query (find_for_termination) runs. */
/* The periodic reconcile (reconcile_interval_ms): an orphan instance the cloud runs is
 * destroyed by the ticks alone once the interval has passed since the manager started (or its
 * last complete reconcile), not before; the tick's decisions say so. */
static void manager_periodic_reconcile(void) {
  fake_cloud cloud;
  memset(&cloud, 0, sizeof cloud);
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  CHECK_OK(hw_clock_new_manual(T0, &clock));
  CHECK_OK(hw_test_registry_new(clock, &reg));
  hw_manager_config config;
  CHECK_OK(hw_manager_config_default(&config));
  config.min_ready_workers = 0;
  config.reconcile_interval_ms = 120000;
  CHECK_OK(hw_manager_new(reg, &config, &mgr));
  if (!mgr) return;
  hw_provider_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.user_data = &cloud;
  cb.create_worker = cloud_create;
  cb.destroy_worker = cloud_destroy;
  cb.list_workers = cloud_list;
  cb.release = cloud_release;
  CHECK_OK(hw_manager_register_provider(mgr, "cloud", "ec2", &cb));
  snprintf(cloud.live[cloud.nlive++], sizeof cloud.live[0], "vm-orphan");

  hw_report *report = NULL;
  hw_report_summary sum;
  uint64_t now = 0;
  CHECK_OK(hw_clock_advance(clock, 60000, &now));
  CHECK_OK(hw_manager_tick(mgr, 0, &report));
  hw_report_free(report);
  CHECK(cloud.destroyed == 0); /* not due yet */
  CHECK_OK(hw_clock_advance(clock, 60000, &now));
  CHECK_OK(hw_manager_tick(mgr, 0, &report));
  CHECK(cloud.destroyed == 1);
  CHECK_STR(cloud.last_destroyed, "vm-orphan");
  memset(&sum, 0, sizeof sum);
  CHECK_OK(hw_report_get_summary(report, &sum));
  int said = 0;
  for (size_t i = 0; i < sum.decisions; i++) {
    const char *line = NULL;
    CHECK_OK(hw_report_get_decision(report, i, &line));
    if (line && strstr(line, "periodic reconcile: 0 Terminating adopted, 1 orphan") != NULL) said = 1;
  }
  CHECK(said);
  hw_report_free(report);

  hw_manager_free(mgr);
  CHECK(cloud.released == 1);
  hw_registry_free(reg);
  hw_clock_free(clock);
}

static void retired_id_limit(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker *w = NULL;
  CHECK_OK(hw_clock_new_manual(T0, &clock));
  CHECK_OK(hw_test_registry_new(clock, &reg));
  CHECK_OK(hw_worker_spec_new("ubuntu:24.04", &spec));
  CHECK_OK(hw_registry_set_retired_id_limit(reg, 2));
  hw_worker_id ids[3];
  for (int i = 0; i < 3; i++) {
    w = NULL;
    CHECK_OK(hw_registry_register(reg, "docker-local", "docker", "r", spec, &w));
    if (w == NULL) return; /* reported: the rest would only repeat it */
    ids[i] = worker_id_of(w);
    hw_worker_free(w);
    CHECK_OK(hw_registry_unregister(reg, ids[i], HW_TERMINATION_REASON_REQUESTED, &w));
    hw_worker_free(w);
  }
  hw_worker_list *list = NULL;
  CHECK_OK(hw_registry_find_for_termination(reg, &list));
  hw_worker_list_free(list);
  w = NULL;
  CHECK_STATUS(hw_registry_register_with_id(reg, ids[1], "docker-local", "docker", "r", spec, &w),
               HW_ERR_ALREADY_EXISTS);
  CHECK_STATUS(hw_registry_register_with_id(reg, ids[2], "docker-local", "docker", "r", spec, &w),
               HW_ERR_ALREADY_EXISTS);
  CHECK(w == NULL);
  CHECK_OK(hw_registry_register_with_id(reg, ids[0], "docker-local", "docker", "r", spec, &w));
  CHECK(w != NULL && hw_id_eq(worker_id_of(w), ids[0]));
  hw_worker_free(w);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
}

int main(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker_filter *ci = NULL;
  hw_subscription *events = NULL;
  REQUIRE_OK(hw_clock_new_manual(T0, &clock));
  REQUIRE_OK(hw_test_registry_new(clock, &reg));
  REQUIRE_OK(hw_registry_subscribe(reg, HW_DEFAULT_SUBSCRIPTION_CAPACITY, false, &events));

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

  manager_lifecycle();
  manager_scaling_and_reconcile();
  manager_periodic_reconcile();
  retired_id_limit();
  hw_test_backend_cleanup();
  printf("backend: %s\n", hw_test_backend_name());
  return hw_test_report();
}
