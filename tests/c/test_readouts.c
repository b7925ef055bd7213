/* The manager's read-outs from C, on the backend tests/c/backend.h picks (memory, or
 * PostgreSQL with HW_TEST_BACKEND=postgres): the registered providers (sorted), the providers
 * backing off after failed creates, the destroys being retried, the interruption notices, the
 * orphan instances being retried (all, and one provider's: two providers list an instance of
 * one resource id), the scaling target and the leader as last seen — each after
 * the manager was made to hold it, through real providers written in C. On PostgreSQL a second
 * replica (another handle, another holder) follows: it names the first as the leader, and
 * holds none of the leader's state. */
#include "backend.h"
#include "harness.h"

#define T0 1700000000000ULL
#define MAX_CREATED 16

/* A provider whose creates fail ("alpha"), or succeed ("beta"), while every destroy fails and
 * whose listing shows its instances plus one no record knows, "orphan-1" for both (two
 * clusters, one pod name). */
typedef struct fake {
  int fail_creates;
  int creates;
  int destroys;
  char created[MAX_CREATED][32];
  int n_created;
} fake;

static uint32_t f_create(void *user_data, hw_worker_id worker_id, const hw_worker_spec *spec,
                         hw_provider_call *call) {
  fake *f = (fake *)user_data;
  (void)worker_id;
  (void)spec;
  f->creates++;
  if (f->fail_creates) {
    hw_provider_call_set_error(call, "quota exceeded");
    return HW_PROVIDER_RESULT_FAILED;
  }
  if (f->n_created == MAX_CREATED) return HW_PROVIDER_RESULT_NO_CAPACITY;
  snprintf(f->created[f->n_created], sizeof f->created[0], "vm-%d", f->n_created);
  hw_provider_call_set_resource_id(call, f->created[f->n_created]);
  f->n_created++;
  return HW_PROVIDER_RESULT_OK;
}

static uint32_t f_destroy(void *user_data, hw_worker_id id, const char *resource_id,
                          hw_provider_call *call) {
  fake *f = (fake *)user_data;
  (void)id;
  (void)resource_id;
  f->destroys++;
  hw_provider_call_set_error(call, "the cloud API is down");
  return HW_PROVIDER_RESULT_FAILED;
}

static uint32_t f_list(void *user_data, hw_provider_call *call) {
  fake *f = (fake *)user_data;
  for (int i = 0; i < f->n_created; i++) hw_provider_call_add_instance(call, f->created[i]);
  hw_provider_call_add_instance(call, "orphan-1");
  return HW_PROVIDER_RESULT_OK;
}

static hw_provider_callbacks callbacks(fake *f) {
  hw_provider_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.user_data = f;
  cb.create_worker = f_create;
  cb.destroy_worker = f_destroy;
  cb.list_workers = f_list;
  return cb;
}

static uint64_t now(const hw_registry *reg) {
  uint64_t t = 0;
  CHECK_OK(hw_registry_now(reg, &t));
  return t;
}

/* The read-outs of a manager that holds no leader state: every list empty (NULL, 0). */
static void check_no_leader_state(const hw_manager *mgr) {
  hw_provider_backoff *backoff = (hw_provider_backoff *)&backoff;
  size_t n = 99;
  CHECK_OK(hw_manager_provider_backoff(mgr, &backoff, &n));
  CHECK(backoff == NULL && n == 0);
  hw_provider_backoffs_free(backoff, n);
  hw_pending_destroy *destroys = (hw_pending_destroy *)&destroys;
  n = 99;
  CHECK_OK(hw_manager_pending_destroys(mgr, &destroys, &n));
  CHECK(destroys == NULL && n == 0);
  hw_pending_destroys_free(destroys, n);
  hw_interruption *notices = (hw_interruption *)&notices;
  n = 99;
  CHECK_OK(hw_manager_interruptions(mgr, &notices, &n));
  CHECK(notices == NULL && n == 0);
  hw_interruptions_free(notices, n);
  hw_pending_orphan *orphans = (hw_pending_orphan *)&orphans;
  n = 99;
  CHECK_OK(hw_manager_pending_orphans(mgr, &orphans, &n));
  CHECK(orphans == NULL && n == 0);
  hw_pending_orphans_free(orphans, n);
}

int main(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  hw_worker_spec *spec = NULL;
  hw_manager_config config;
  REQUIRE_OK(hw_clock_new_manual(T0, &clock));
  REQUIRE_OK(hw_test_registry_new(clock, &reg));
  REQUIRE_OK(hw_worker_spec_new("ci:latest", &spec));
  REQUIRE_OK(hw_manager_config_default(&config));
  config.min_ready_workers = 0;
  config.provider_backoff_initial_ms = 5000;
  config.destroy_retry_initial_ms = 2000;
  config.reconcile_interval_ms = 0;
  const char *holder = hw_test_on_postgres() ? "replica-a" : "local";
  REQUIRE_OK(hw_manager_new_replicated(reg, &config, "replica-a", 15000, &mgr));

  /* A fresh manager: no provider, no target, nothing pending. */
  hw_provider_name *names = (hw_provider_name *)&names;
  size_t n = 99;
  CHECK_OK(hw_manager_providers(mgr, &names, &n));
  CHECK(names == NULL && n == 0);
  hw_provider_names_free(names, n);
  char *target_provider = (char *)&target_provider;
  hw_worker_spec *target_spec = (hw_worker_spec *)&target_spec;
  CHECK_OK(hw_manager_scaling_target(mgr, &target_provider, &target_spec));
  CHECK(target_provider == NULL && target_spec == NULL);
  check_no_leader_state(mgr);
  /* No provider at all: one provider's orphans cannot be asked for. */
  hw_pending_orphan *orphans = (hw_pending_orphan *)&orphans;
  n = 99;
  CHECK_STATUS(hw_manager_pending_orphans_of(mgr, "beta", &orphans, &n),
               HW_ERR_PROVIDER_NOT_FOUND);
  CHECK(orphans == (hw_pending_orphan *)&orphans && n == 99);

  /* The first tick takes the lease: the leader is this manager. */
  hw_report *rep = NULL;
  REQUIRE_OK(hw_manager_tick(mgr, 0, &rep));
  hw_report_free(rep);
  hw_leader_state leader;
  memset(&leader, 0, sizeof leader);
  bool found = false;
  CHECK_OK(hw_manager_leader(mgr, &leader, &found));
  CHECK(found);
  CHECK_STR(leader.holder, holder);
  CHECK(leader.term >= 1);
  CHECK(leader.expires_at_ms > leader.since_ms);
  uint64_t term = leader.term;

  /* Providers, sorted whatever the order they were registered in. */
  fake alpha, beta;
  memset(&alpha, 0, sizeof alpha);
  memset(&beta, 0, sizeof beta);
  alpha.fail_creates = 1;
  hw_provider_callbacks cb_beta = callbacks(&beta);
  hw_provider_callbacks cb_alpha = callbacks(&alpha);
  REQUIRE_OK(hw_manager_register_provider(mgr, "beta", "docker", &cb_beta));
  REQUIRE_OK(hw_manager_register_provider(mgr, "alpha", "docker", &cb_alpha));
  REQUIRE_OK(hw_manager_providers(mgr, &names, &n));
  CHECK(n == 2);
  if (n == 2) {
    CHECK_STR(names[0].id, "alpha");
    CHECK_STR(names[1].id, "beta");
  }
  hw_provider_names_free(names, n);

  /* The scaling target: its provider and a spec of its own to read and free. */
  CHECK_OK(hw_manager_set_scaling_target(mgr, "alpha", spec));
  REQUIRE_OK(hw_manager_scaling_target(mgr, &target_provider, &target_spec));
  CHECK_STR(target_provider, "alpha");
  CHECK(target_spec != NULL && target_spec != spec);
  char *image = NULL;
  if (target_spec != NULL) CHECK_OK(hw_worker_spec_get_image(target_spec, &image));
  CHECK_STR(image, "ci:latest");
  hw_string_free(image);
  hw_string_free(target_provider);
  hw_worker_spec_free(target_spec);

  /* A tick that scales toward it: alpha's create fails, so alpha backs off. */
  REQUIRE_OK(hw_manager_tick(mgr, 1, &rep));
  hw_report_free(rep);
  CHECK(alpha.creates == 1);
  hw_provider_backoff *backoff = NULL;
  REQUIRE_OK(hw_manager_provider_backoff(mgr, &backoff, &n));
  CHECK(n == 1);
  if (n == 1) {
    CHECK_STR(backoff[0].provider_id, "alpha");
    CHECK(backoff[0].consecutive_failures == 1);
    CHECK(backoff[0].until_ms == now(reg) + 5000);
  }
  hw_provider_backoffs_free(backoff, n);
  CHECK_OK(hw_manager_clear_scaling_target(mgr));
  CHECK_OK(hw_manager_scaling_target(mgr, &target_provider, &target_spec));
  CHECK(target_provider == NULL && target_spec == NULL);

  /* A worker of beta terminated: its destroy fails and is retried. */
  hw_worker *w = NULL;
  REQUIRE_OK(hw_manager_provision(mgr, "beta", spec, &w));
  hw_worker_id doomed;
  CHECK_OK(hw_worker_get_id(w, &doomed));
  hw_worker_free(w);
  REQUIRE_OK(hw_manager_terminate(mgr, doomed, HW_TERMINATION_REASON_REQUESTED, &rep));
  hw_report_free(rep);
  CHECK(beta.destroys == 1);
  hw_pending_destroy *destroys = NULL;
  REQUIRE_OK(hw_manager_pending_destroys(mgr, &destroys, &n));
  CHECK(n == 1);
  if (n == 1) {
    CHECK(hw_id_eq(destroys[0].worker, doomed));
    CHECK(destroys[0].attempts == 1);
    CHECK(destroys[0].next_at_ms == now(reg) + 2000);
  }
  hw_pending_destroys_free(destroys, n);

  /* A running worker of beta under an interruption notice, with its deadline. */
  REQUIRE_OK(hw_manager_provision(mgr, "beta", spec, &w));
  hw_worker_id spot;
  CHECK_OK(hw_worker_get_id(w, &spot));
  hw_worker_free(w);
  REQUIRE_OK(hw_registry_update_state(reg, spot, HW_WORKER_STATE_CONNECTING, &w));
  hw_worker_free(w);
  REQUIRE_OK(hw_registry_update_state(reg, spot, HW_WORKER_STATE_READY, &w));
  hw_worker_free(w);
  uint64_t deadline = now(reg) + 120000;
  REQUIRE_OK(hw_manager_notify_interruption(mgr, spot, deadline, &w));
  hw_worker_free(w);
  hw_interruption *notices = NULL;
  REQUIRE_OK(hw_manager_interruptions(mgr, &notices, &n));
  CHECK(n == 1);
  if (n == 1) {
    CHECK(hw_id_eq(notices[0].worker, spot));
    CHECK(notices[0].deadline_ms == deadline);
  }
  hw_interruptions_free(notices, n);

  /* alpha and beta each list an instance "orphan-1" no record knows: reconcile's destroys of
   * them fail, so both are kept and retried. The whole list has both, by provider (alpha
   * first), with nothing to tell them apart but the worker ids made for the listings;
   * hw_manager_pending_orphans_of lists one provider's. */
  REQUIRE_OK(hw_manager_reconcile(mgr, &rep));
  hw_report_free(rep);
  orphans = NULL;
  REQUIRE_OK(hw_manager_pending_orphans(mgr, &orphans, &n));
  CHECK(n == 2);
  hw_worker_id listed[2];
  memset(listed, 0, sizeof listed);
  for (size_t i = 0; i < n && i < 2; i++) {
    CHECK_STR(orphans[i].resource_id, "orphan-1");
    CHECK(orphans[i].attempts == 1);
    CHECK(orphans[i].next_at_ms > now(reg));
    CHECK(!hw_id_eq(orphans[i].worker, doomed) && !hw_id_eq(orphans[i].worker, spot));
    listed[i] = orphans[i].worker;
  }
  CHECK(!hw_id_eq(listed[0], listed[1]));
  hw_pending_orphans_free(orphans, n);
  const char *owners[2] = {"alpha", "beta"};
  for (int p = 0; p < 2; p++) {
    orphans = NULL;
    n = 99;
    REQUIRE_OK(hw_manager_pending_orphans_of(mgr, owners[p], &orphans, &n));
    CHECK(n == 1);
    if (n == 1) {
      CHECK_STR(orphans[0].resource_id, "orphan-1");
      CHECK(orphans[0].attempts == 1);
      CHECK(hw_id_eq(orphans[0].worker, listed[p]));
    }
    hw_pending_orphans_free(orphans, n);
  }
  /* An invalid provider id, and one this manager never saw: refused, nothing written. */
  orphans = (hw_pending_orphan *)&orphans;
  n = 99;
  CHECK_STATUS(hw_manager_pending_orphans_of(mgr, "", &orphans, &n), HW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(hw_manager_pending_orphans_of(mgr, "gamma", &orphans, &n),
               HW_ERR_PROVIDER_NOT_FOUND);
  CHECK(orphans == (hw_pending_orphan *)&orphans && n == 99);
  /* A provider unregistered since: its orphans are still the manager's (their destroys fail
   * until a provider of that id comes back), and still listed as its own. */
  CHECK_OK(hw_manager_unregister_provider(mgr, "alpha"));
  orphans = NULL;
  REQUIRE_OK(hw_manager_pending_orphans_of(mgr, "alpha", &orphans, &n));
  CHECK(n == 1);
  if (n == 1) CHECK(hw_id_eq(orphans[0].worker, listed[0]));
  hw_pending_orphans_free(orphans, n);

  if (hw_test_on_postgres()) {
    /* Another replica on another handle: it follows, names replica-a under the same term,
     * and holds none of the leader's state. */
    hw_registry *reg_b = NULL;
    hw_manager *mgr_b = NULL;
    REQUIRE_OK(hw_test_registry_reopen(clock, reg, &reg_b));
    REQUIRE_OK(hw_manager_new_replicated(reg_b, &config, "replica-b", 15000, &mgr_b));
    REQUIRE_OK(hw_manager_tick(mgr_b, 0, &rep));
    hw_report_summary sum;
    CHECK_OK(hw_report_get_summary(rep, &sum));
    CHECK(!sum.leading);
    hw_report_free(rep);
    memset(&leader, 0, sizeof leader);
    found = false;
    CHECK_OK(hw_manager_leader(mgr_b, &leader, &found));
    CHECK(found);
    CHECK_STR(leader.holder, "replica-a");
    CHECK(leader.term == term);
    check_no_leader_state(mgr_b);
    /* With beta registered on it too (every replica registers the providers), the follower
     * lists none of beta's orphans. */
    fake beta_b;
    memset(&beta_b, 0, sizeof beta_b);
    hw_provider_callbacks cb_beta_b = callbacks(&beta_b);
    REQUIRE_OK(hw_manager_register_provider(mgr_b, "beta", "docker", &cb_beta_b));
    orphans = (hw_pending_orphan *)&orphans;
    n = 99;
    CHECK_OK(hw_manager_pending_orphans_of(mgr_b, "beta", &orphans, &n));
    CHECK(orphans == NULL && n == 0);
    hw_pending_orphans_free(orphans, n);
    hw_manager_free(mgr_b);
    hw_registry_free(reg_b);
  }

  hw_manager_free(mgr);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
  hw_test_backend_cleanup();
  return hw_test_report();
}
