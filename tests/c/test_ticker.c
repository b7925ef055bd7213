/* The opt-in ticker from C: the demand callback reaches the tick, reports arrive on the ticker's
 * thread, stop joins without waiting for the next slot, release runs exactly once (also when the
 * start is refused), stopping from inside a callback does not deadlock, and the manager may be
 * freed before the ticker (its providers are then released by hw_ticker_free, on its thread). No timing assertion: waits are on a condition variable. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "harness.h"

#define HOUR_MS 3600000ULL

typedef struct host {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  size_t pending;     /* what demand() answers */
  int demands;        /* demand() calls */
  int reports;        /* on_report() calls */
  size_t last_pending; /* the last report's pending_jobs */
  int released;
  pthread_t caller;   /* the thread that started the ticker */
  int on_caller_thread; /* callbacks seen on the caller's thread (must stay 0) */
  /* For the stop-from-a-callback test: the ticker, published once hw_ticker_start returned. */
  hw_ticker *self;
  int stop_from_callback;
  hw_status stop_status;
} host;

static void host_init(host *h, size_t pending) {
  memset(h, 0, sizeof *h);
  pthread_mutex_init(&h->lock, NULL);
  pthread_cond_init(&h->changed, NULL);
  h->pending = pending;
  h->caller = pthread_self();
  h->stop_status = HW_ERR_PANIC;
}

static void host_destroy(host *h) {
  pthread_mutex_destroy(&h->lock);
  pthread_cond_destroy(&h->changed);
}

static size_t demand(void *user_data) {
  host *h = (host *)user_data;
  pthread_mutex_lock(&h->lock);
  h->demands++;
  if (pthread_equal(pthread_self(), h->caller)) h->on_caller_thread++;
  size_t n = h->pending;
  pthread_mutex_unlock(&h->lock);
  return n;
}

static void on_report(void *user_data, const hw_report *report) {
  host *h = (host *)user_data;
  hw_report_summary sum;
  memset(&sum, 0, sizeof sum);
  hw_status st = hw_report_get_summary(report, &sum);
  pthread_mutex_lock(&h->lock);
  if (st == HW_OK) h->last_pending = sum.pending_jobs;
  if (pthread_equal(pthread_self(), h->caller)) h->on_caller_thread++;
  h->reports++;
  while (h->stop_from_callback && h->self == NULL) pthread_cond_wait(&h->changed, &h->lock);
  hw_ticker *self = h->stop_from_callback ? h->self : NULL;
  pthread_cond_broadcast(&h->changed);
  pthread_mutex_unlock(&h->lock);
  if (self) {
    /* From the ticker's own thread: asks it to stop after this tick, returns at once. */
    hw_status s = hw_ticker_stop(self);
    pthread_mutex_lock(&h->lock);
    h->stop_status = s;
    pthread_cond_broadcast(&h->changed);
    pthread_mutex_unlock(&h->lock);
  }
}

static void release(void *user_data) {
  host *h = (host *)user_data;
  pthread_mutex_lock(&h->lock);
  h->released++;
  pthread_mutex_unlock(&h->lock);
}

static void wait_reports(host *h, int n) {
  pthread_mutex_lock(&h->lock);
  while (h->reports < n) pthread_cond_wait(&h->changed, &h->lock);
  pthread_mutex_unlock(&h->lock);
}

static hw_ticker_callbacks callbacks_for(host *h) {
  hw_ticker_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.user_data = h;
  cb.demand = demand;
  cb.on_report = on_report;
  cb.release = release;
  return cb;
}

static hw_manager *new_manager(hw_registry **reg, hw_clock **clock) {
  hw_manager *mgr = NULL;
  hw_manager_config config;
  CHECK_OK(hw_clock_new_manual(1700000000000ULL, clock));
  CHECK_OK(hw_registry_new_with_clock(*clock, reg));
  CHECK_OK(hw_manager_config_default(&config));
  CHECK_OK(hw_manager_new(*reg, &config, &mgr));
  return mgr;
}

static void test_reports_on_the_ticker_thread_and_stop_joins(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = new_manager(&reg, &clock);
  host h;
  host_init(&h, 7);
  hw_ticker_callbacks cb = callbacks_for(&h);
  hw_ticker *t = NULL;
  CHECK_OK(hw_ticker_start(mgr, HOUR_MS, &cb, &t));
  CHECK(t != NULL);
  wait_reports(&h, 1); /* the first tick runs at once */
  /* An hour to the next slot: a stop that waited for it would hang here. */
  CHECK_OK(hw_ticker_stop(t));
  CHECK_OK(hw_ticker_stop(t)); /* idempotent */
  hw_ticker_stats stats;
  memset(&stats, 0xff, sizeof stats);
  CHECK_OK(hw_ticker_get_stats(t, &stats));
  CHECK(stats.ticks == 1 && stats.overruns == 0 && stats.missed_slots == 0);
  CHECK(stats.report_panics == 0 && stats.tick_panics == 0);
  CHECK(h.demands == 1 && h.reports == 1);
  CHECK(h.last_pending == 7);
  CHECK(h.on_caller_thread == 0);
  CHECK(h.released == 0); /* not before hw_ticker_free */
  hw_ticker_free(t);
  CHECK(h.released == 1);
  hw_ticker_free(NULL);
  hw_manager_free(mgr);
  hw_registry_free(reg);
  hw_clock_free(clock);
  host_destroy(&h);
}

static void test_refused_start_releases_once(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = new_manager(&reg, &clock);
  host h;
  host_init(&h, 0);
  hw_ticker_callbacks cb = callbacks_for(&h);
  hw_ticker *t = (hw_ticker *)&h; /* untouched on failure */
  CHECK_STATUS(hw_ticker_start(mgr, 0, &cb, &t), HW_ERR_INVALID_ARGUMENT);
  CHECK(h.released == 1);
  CHECK_STATUS(hw_ticker_start(NULL, 1000, &cb, &t), HW_ERR_INVALID_ARGUMENT);
  CHECK(h.released == 2);
  CHECK_STATUS(hw_ticker_start(mgr, 1000, &cb, NULL), HW_ERR_INVALID_ARGUMENT);
  CHECK(h.released == 3);
  CHECK_STATUS(hw_ticker_start(mgr, 1000, NULL, &t), HW_ERR_INVALID_ARGUMENT);
  CHECK(h.released == 3); /* no callbacks, nothing to release */
  CHECK(t == (hw_ticker *)&h);
  CHECK(h.demands == 0 && h.reports == 0);
  hw_manager_free(mgr);
  hw_registry_free(reg);
  hw_clock_free(clock);
  host_destroy(&h);
}

static void test_stop_from_the_report_callback(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = new_manager(&reg, &clock);
  host h;
  host_init(&h, 1);
  h.stop_from_callback = 1;
  hw_ticker_callbacks cb = callbacks_for(&h);
  hw_ticker *t = NULL;
  CHECK_OK(hw_ticker_start(mgr, 1, &cb, &t));
  pthread_mutex_lock(&h.lock);
  h.self = t;
  pthread_cond_broadcast(&h.changed);
  /* Wait until the callback's stop returned (it did not deadlock on its own thread). */
  while (h.stop_status == HW_ERR_PANIC) pthread_cond_wait(&h.changed, &h.lock);
  pthread_mutex_unlock(&h.lock);
  CHECK_OK(hw_ticker_stop(t)); /* joins: the thread ends after the tick that stopped it */
  hw_ticker_stats stats;
  CHECK_OK(hw_ticker_get_stats(t, &stats));
  CHECK(stats.ticks == 1);
  CHECK(h.reports == 1 && h.stop_status == HW_OK);
  hw_ticker_free(t);
  CHECK(h.released == 1);
  hw_manager_free(mgr);
  hw_registry_free(reg);
  hw_clock_free(clock);
  host_destroy(&h);
}

/* A provider whose release records the thread it runs on. */
typedef struct provider_witness {
  pthread_t expected;
  int released;
  int on_expected_thread;
  /* When set, release stops this ticker (a host's shutdown routine called from release). */
  hw_ticker *stop_on_release;
  hw_status stop_status;
} provider_witness;

static uint32_t witness_create(void *user_data, hw_worker_id id, const hw_worker_spec *spec,
                               hw_provider_call *call) {
  (void)user_data;
  (void)id;
  (void)spec;
  (void)call;
  return HW_PROVIDER_RESULT_FAILED;
}

static uint32_t witness_destroy(void *user_data, hw_worker_id id, const char *resource_id,
                                hw_provider_call *call) {
  (void)user_data;
  (void)id;
  (void)resource_id;
  (void)call;
  return HW_PROVIDER_RESULT_OK;
}

static void witness_release(void *user_data) {
  provider_witness *w = user_data;
  w->released++;
  w->on_expected_thread = pthread_equal(pthread_self(), w->expected);
  if (w->stop_on_release) w->stop_status = hw_ticker_stop(w->stop_on_release);
}

/* Registers provider "p" on `mgr`, its calls witnessed by `pw` (zeroed first), which expects
 * its release on this thread. */
static void register_witness(hw_manager *mgr, provider_witness *pw) {
  memset(pw, 0, sizeof *pw);
  pw->expected = pthread_self();
  hw_provider_callbacks pcb;
  memset(&pcb, 0, sizeof pcb);
  pcb.user_data = pw;
  pcb.create_worker = witness_create;
  pcb.destroy_worker = witness_destroy;
  pcb.release = witness_release;
  CHECK_OK(hw_manager_register_provider(mgr, "p", "docker", &pcb));
}

static void test_the_ticker_keeps_the_manager_alive(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = new_manager(&reg, &clock);
  host h;
  host_init(&h, 3);
  hw_ticker_callbacks cb = callbacks_for(&h);
  cb.demand = NULL; /* optional: 0 pending */
  provider_witness pw;
  register_witness(mgr, &pw);
  hw_ticker *t = NULL;
  CHECK_OK(hw_ticker_start(mgr, 1, &cb, &t));
  /* The handles go; the ticker's thread goes on ticking the manager it holds. */
  hw_manager_free(mgr);
  hw_registry_free(reg);
  hw_clock_free(clock);
  wait_reports(&h, 3);
  CHECK(pw.released == 0); /* the ticker still runs the manager */
  hw_ticker_free(t);
  CHECK(h.released == 1);
  CHECK(h.demands == 0 && h.last_pending == 0);
  /* The manager went with the ticker: its provider released in hw_ticker_free, on this
   * thread (not on the ticker's). */
  CHECK(pw.released == 1);
  CHECK(pw.on_expected_thread);
  host_destroy(&h);
}

/* hw_ticker_stop is idempotent and a provider's release may call back into the library: a
 * release run by hw_ticker_stop (the manager freed before) that stops the same ticker again
 * returns at once. It used to wait for the outer stop, on its own thread: a hang. */
static void test_a_provider_release_run_by_stop_may_stop_the_ticker_again(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = new_manager(&reg, &clock);
  host h;
  host_init(&h, 0);
  hw_ticker_callbacks cb = callbacks_for(&h);
  provider_witness pw;
  register_witness(mgr, &pw);
  pw.stop_status = HW_ERR_PANIC;
  hw_ticker *t = NULL;
  CHECK_OK(hw_ticker_start(mgr, HOUR_MS, &cb, &t));
  wait_reports(&h, 1);
  pw.stop_on_release = t;
  hw_manager_free(mgr); /* the ticker's reference is the manager's last */
  CHECK_OK(hw_ticker_stop(t)); /* joins; the provider's release runs here, and stops t again */
  CHECK(pw.released == 1);
  CHECK(pw.on_expected_thread);
  CHECK(pw.stop_status == HW_OK);
  hw_ticker_free(t);
  CHECK(h.released == 1);
  hw_registry_free(reg);
  hw_clock_free(clock);
  host_destroy(&h);
}

/* ---- a demand by requirement (hw_ticker_start_demand) ---- */

typedef struct cloud {
  const char *name;
  int created; /* read by the test once the ticker was stopped (joined) */
} cloud;

static uint32_t cloud_create(void *user_data, hw_worker_id worker_id, const hw_worker_spec *spec,
                             hw_provider_call *call) {
  cloud *c = (cloud *)user_data;
  (void)worker_id;
  (void)spec;
  char resource[64];
  snprintf(resource, sizeof resource, "%s-%d", c->name, ++c->created);
  return hw_provider_call_set_resource_id(call, resource) == HW_OK ? HW_PROVIDER_RESULT_OK
                                                                    : HW_PROVIDER_RESULT_FAILED;
}

static uint32_t cloud_destroy(void *user_data, hw_worker_id id, const char *resource_id,
                              hw_provider_call *call) {
  (void)user_data;
  (void)id;
  (void)resource_id;
  (void)call;
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

#define GPU_AND_CPU_POOLS                                                                       \
  "[{\"name\": \"gpu\", \"provider_id\": \"gpu\","                                            \
  "  \"template\": {\"image\": \"trainer\", \"labels\": {\"gpu\": \"a100\"},"                   \
  "                \"resources\": {\"gpu_count\": 1, \"gpu_type\": \"a100\"}}},"               \
  " {\"name\": \"cpu\", \"provider_id\": \"cpu\", \"template\": {\"image\": \"builder\"}}]"

#define GPU_JOBS "[{\"labels\": {\"gpu\": \"a100\"}, \"count\": 2}]"

typedef struct demand_host {
  host h;           /* reports, release */
  int calls;        /* demand_json() calls */
  hw_status bad_set; /* what hw_ticker_demand_set_json answered to a malformed demand */
  size_t provisioned[3]; /* per report, the first three */
  size_t pendings[3];
} demand_host;

/* First call: 2 jobs that need an A100 (the string is freed right after the set: the library
 * copied it). Second: a malformed demand. Later: nothing set at all. */
static void demand_json(void *user_data, hw_ticker_demand *demand) {
  demand_host *d = (demand_host *)user_data;
  pthread_mutex_lock(&d->h.lock);
  int call = ++d->calls;
  pthread_mutex_unlock(&d->h.lock);
  if (call == 1) {
    char *json = malloc(sizeof GPU_JOBS);
    memcpy(json, GPU_JOBS, sizeof GPU_JOBS);
    CHECK_OK(hw_ticker_demand_set_json(demand, json));
    free(json);
  } else if (call == 2) {
    hw_status st = hw_ticker_demand_set_json(demand, "[{\"count\": \"two\"}");
    pthread_mutex_lock(&d->h.lock);
    d->bad_set = st;
    pthread_mutex_unlock(&d->h.lock);
  }
}

static void on_demand_report(void *user_data, const hw_report *report) {
  demand_host *d = (demand_host *)user_data;
  hw_report_summary sum;
  memset(&sum, 0, sizeof sum);
  hw_status st = hw_report_get_summary(report, &sum);
  size_t provisioned = 0;
  hw_worker_id id;
  while (hw_report_get_provisioned(report, provisioned, &id) == HW_OK) provisioned++;
  pthread_mutex_lock(&d->h.lock);
  if (d->h.reports < 3) {
    d->provisioned[d->h.reports] = provisioned;
    d->pendings[d->h.reports] = st == HW_OK ? sum.pending_jobs : (size_t)-1;
  }
  d->h.reports++;
  pthread_cond_broadcast(&d->h.changed);
  pthread_mutex_unlock(&d->h.lock);
}

static void test_a_demand_by_requirement_provisions_in_the_pool_that_satisfies_it_only(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = new_manager(&reg, &clock);
  cloud gpu = {"gpu", 0}, cpu = {"cpu", 0};
  register_cloud(mgr, &gpu);
  register_cloud(mgr, &cpu);
  size_t drained = 0;
  CHECK_OK(hw_manager_set_pools_json(mgr, GPU_AND_CPU_POOLS, &drained));
  demand_host d;
  memset(&d, 0, sizeof d);
  host_init(&d.h, 0);
  d.bad_set = HW_ERR_PANIC;
  hw_ticker_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.user_data = &d;
  cb.on_report = on_demand_report;
  cb.release = release;
  hw_ticker *t = NULL;
  CHECK_OK(hw_ticker_start_demand(mgr, 1, &cb, demand_json, &t));
  wait_reports(&d.h, 3);
  CHECK_OK(hw_ticker_stop(t));
  uint64_t failures = 0;
  CHECK_OK(hw_ticker_get_demand_failures(t, &failures));
  hw_ticker_free(t);
  CHECK(d.h.released == 1);
  /* The first tick: the gpu jobs, provisioned in the gpu pool only. */
  CHECK(d.pendings[0] == 2 && d.provisioned[0] == 2);
  /* A malformed demand, then none: failed calls, counted; the last good demand stays. */
  CHECK(d.bad_set == HW_ERR_INVALID_ARGUMENT);
  CHECK(d.pendings[1] == 2 && d.pendings[2] == 2);
  CHECK(d.provisioned[1] == 0 && d.provisioned[2] == 0);
  CHECK(failures >= 2 && failures == (uint64_t)d.calls - 1);
  CHECK(gpu.created == 2);
  CHECK(cpu.created == 0);
  hw_manager_free(mgr);
  hw_registry_free(reg);
  hw_clock_free(clock);
  host_destroy(&d.h);
}

static void test_a_demand_ticker_refuses_a_second_demand_callback_and_releases_once(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = new_manager(&reg, &clock);
  host h;
  host_init(&h, 0);
  hw_ticker_callbacks cb = callbacks_for(&h); /* its demand is set: two demands */
  hw_ticker *t = (hw_ticker *)&h;             /* untouched on failure */
  CHECK_STATUS(hw_ticker_start_demand(mgr, 1000, &cb, demand_json, &t), HW_ERR_INVALID_ARGUMENT);
  CHECK(h.released == 1);
  cb.demand = NULL;
  CHECK_STATUS(hw_ticker_start_demand(mgr, 1000, &cb, NULL, &t), HW_ERR_INVALID_ARGUMENT);
  CHECK(h.released == 2);
  CHECK_STATUS(hw_ticker_start_demand(mgr, 0, &cb, demand_json, &t), HW_ERR_INVALID_ARGUMENT);
  CHECK(h.released == 3);
  CHECK(t == (hw_ticker *)&h);
  /* A plain ticker's demand cannot fail. */
  CHECK_OK(hw_ticker_start(mgr, HOUR_MS, &cb, &t));
  wait_reports(&h, 1);
  uint64_t failures = 1;
  CHECK_OK(hw_ticker_get_demand_failures(t, &failures));
  CHECK(failures == 0);
  hw_ticker_free(t);
  CHECK(h.released == 4);
  hw_manager_free(mgr);
  hw_registry_free(reg);
  hw_clock_free(clock);
  host_destroy(&h);
}

int main(void) {
  test_reports_on_the_ticker_thread_and_stop_joins();
  test_refused_start_releases_once();
  test_stop_from_the_report_callback();
  test_the_ticker_keeps_the_manager_alive();
  test_a_provider_release_run_by_stop_may_stop_the_ticker_again();
  test_a_demand_by_requirement_provisions_in_the_pool_that_satisfies_it_only();
  test_a_demand_ticker_refuses_a_second_demand_callback_and_releases_once();
  return hw_test_report();
}
