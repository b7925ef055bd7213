/* Bad input for EVERY exported function: NULL for each pointer argument, invalid UTF-8,
 * over-long strings, out-of-range enum values, nil and unknown ids. Each call must return the
 * documented status (never crash), set a message, and leave its out-params untouched.
 * `make test-c` checks that every function of the header is called in this file, with NULL in
 * each of its pointer parameters at least once (scripts/c_api_coverage.py). */
#include "harness.h"

/* Expects HW_ERR_INVALID_ARGUMENT with a non-empty message naming the function. */
#define INVALID(call)                                                                  \
  do {                                                                                 \
    CHECK_STATUS(call, HW_ERR_INVALID_ARGUMENT);                                       \
    CHECK(hw_last_error_message()[0] != '\0');                                         \
  } while (0)

#define NOT_FOUND(call) CHECK_STATUS(call, HW_ERR_NOT_FOUND)

static const char BAD_UTF8[] = {(char)0xff, (char)0xfe, 'x', 0};
static char LONG_PROVIDER[130]; /* 129 bytes: one over the limit */
static char LONG_JOB[258];      /* 257 bytes */
static char LONG_TYPE[80];      /* "custom:" + 70 bytes: over the 64-byte name limit */

static void *const SENTINEL = (void *)&SENTINEL;

/* --- a provider whose callbacks check the hw_provider_call functions from the inside --- */
static int callback_checks_run;

static uint32_t bad_create(void *user_data, hw_worker_id worker_id, const hw_worker_spec *spec,
                           hw_provider_call *call) {
  (void)user_data;
  (void)worker_id;
  (void)spec;
  INVALID(hw_provider_call_set_error(call, NULL));
  INVALID(hw_provider_call_set_error(call, BAD_UTF8));
  INVALID(hw_provider_call_set_resource_id(call, NULL));
  INVALID(hw_provider_call_set_resource_id(call, BAD_UTF8));
  INVALID(hw_provider_call_add_metadata(call, NULL, "v"));
  INVALID(hw_provider_call_add_metadata(call, "k", NULL));
  INVALID(hw_provider_call_add_metadata(call, BAD_UTF8, "v"));
  INVALID(hw_provider_call_add_metadata(call, "k", BAD_UTF8));
  INVALID(hw_provider_call_add_instance(call, "i-1")); /* list_workers only */
  /* The fencing token of a lone manager: its term, 1. */
  uint64_t token = 0;
  INVALID(hw_provider_call_get_fencing_token(call, NULL));
  CHECK_OK(hw_provider_call_get_fencing_token(call, &token));
  CHECK(token == 1);
  CHECK_OK(hw_provider_call_set_resource_id(call, "r-1"));
  callback_checks_run++;
  return HW_PROVIDER_RESULT_OK;
}

static uint32_t bad_destroy(void *user_data, hw_worker_id id, const char *resource_id,
                            hw_provider_call *call) {
  (void)user_data;
  (void)id;
  (void)resource_id;
  const char *out = (const char *)SENTINEL;
  INVALID(hw_provider_call_get_metadata(call, NULL, &out));
  INVALID(hw_provider_call_get_metadata(call, "k", NULL));
  INVALID(hw_provider_call_get_metadata(call, BAD_UTF8, &out));
  CHECK(out == (const char *)SENTINEL);
  INVALID(hw_provider_call_set_resource_id(call, "r")); /* create_worker only */
  CHECK_OK(hw_provider_call_get_metadata(call, "absent", &out));
  CHECK(out == NULL);
  uint64_t token = 0;
  INVALID(hw_provider_call_get_fencing_token(call, NULL));
  CHECK_OK(hw_provider_call_get_fencing_token(call, &token));
  CHECK(token == 1);
  callback_checks_run++;
  /* An out-of-range result is a provider failure, not undefined behaviour. */
  return 77;
}

static uint32_t bad_list(void *user_data, hw_provider_call *call) {
  (void)user_data;
  INVALID(hw_provider_call_add_instance(call, NULL));
  INVALID(hw_provider_call_add_instance(call, BAD_UTF8));
  /* A listing changes nothing: it has no fencing token, and the out value stays. */
  uint64_t token = 42;
  INVALID(hw_provider_call_get_fencing_token(call, &token));
  CHECK(token == 42);
  callback_checks_run++;
  return HW_PROVIDER_RESULT_OK;
}

/* A ticker's demand callback that sets NULL and then malformed JSON: both refused, and the
 * call is a failed demand call (counted), never a crash. */
static hw_status demand_set_null = HW_ERR_PANIC;
static hw_status demand_set_malformed = HW_ERR_PANIC;
static void bad_demand_json(void *user_data, hw_ticker_demand *demand) {
  (void)user_data;
  if (demand_set_null != HW_ERR_PANIC) return; /* the first call checks, later ones set nothing */
  demand_set_null = hw_ticker_demand_set_json(demand, NULL);
  demand_set_malformed = hw_ticker_demand_set_json(demand, "[{\"count\": 1,");
}

static uint32_t ok_create(void *user_data, hw_worker_id worker_id, const hw_worker_spec *spec,
                          hw_provider_call *call) {
  (void)user_data;
  (void)worker_id;
  (void)spec;
  return hw_provider_call_set_resource_id(call, "r") == HW_OK ? HW_PROVIDER_RESULT_OK
                                                               : HW_PROVIDER_RESULT_FAILED;
}

static uint32_t ok_destroy(void *user_data, hw_worker_id id, const char *resource_id,
                           hw_provider_call *call) {
  (void)user_data;
  (void)id;
  (void)resource_id;
  (void)call;
  return HW_PROVIDER_RESULT_OK;
}

/* Extreme but valid numbers (times at the end of the clock, durations and counts at their
 * maximum) must be handled, never panic: every call answers HW_OK, or the documented error
 * just past a documented limit. */
static void extreme_values(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker_filter *f = NULL;
  hw_worker_list *l = NULL;
  hw_worker *w = NULL;
  hw_worker_id id;
  memset(&id, 0, sizeof id);
  uint64_t now = 0;
  CHECK_OK(hw_clock_new_manual(UINT64_MAX - 10, &clock));
  CHECK_OK(hw_registry_new_with_clock(clock, &reg));
  CHECK_OK(hw_worker_spec_new("img", &spec));
  /* Spec durations beyond HW_MAX_DURATION_MS (100 years) could not be read back from a
   * snapshot: refused at the setter, the spec unchanged; the limit itself is fine. */
  CHECK_STATUS(hw_worker_spec_set_idle_timeout_ms(spec, UINT64_MAX), HW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(hw_worker_spec_set_max_lifetime_ms(spec, HW_MAX_DURATION_MS + 1),
               HW_ERR_INVALID_ARGUMENT);
  CHECK_OK(hw_worker_spec_set_idle_timeout_ms(spec, HW_MAX_DURATION_MS));
  CHECK_OK(hw_worker_spec_set_max_lifetime_ms(spec, HW_MAX_DURATION_MS));
  /* Strings at their documented limits pass; one byte more is HW_ERR_INVALID_ARGUMENT (issue 10
   * item 23: the core's validate() enforces them, C maps the error). */
  {
    static char big[HW_MAX_VALUE_LEN + 2];
    hw_worker_spec *limits = NULL;
    hw_worker *lw = NULL;
    memset(big, 'x', HW_MAX_IMAGE_LEN);
    big[HW_MAX_IMAGE_LEN] = '\0';
    CHECK_OK(hw_worker_spec_new(big, &limits));
    CHECK_OK(hw_registry_register(reg, "p", "docker", "image-at-limit", limits, &lw));
    hw_worker_free(lw);
    lw = NULL;
    big[HW_MAX_IMAGE_LEN] = 'x';
    big[HW_MAX_IMAGE_LEN + 1] = '\0';
    CHECK_OK(hw_worker_spec_set_image(limits, big));
    CHECK_STATUS(hw_registry_register(reg, "p", "docker", "image-over", limits, &lw),
                 HW_ERR_INVALID_ARGUMENT);
    CHECK(lw == NULL && strstr(hw_last_error_message(), "4096") != NULL);
    CHECK_OK(hw_worker_spec_set_image(limits, "img"));
    memset(big, 'v', HW_MAX_VALUE_LEN + 1);
    big[HW_MAX_VALUE_LEN + 1] = '\0';
    CHECK_OK(hw_worker_spec_add_label(limits, "k", big));
    CHECK_STATUS(hw_registry_register(reg, "p", "docker", "label-over", limits, &lw),
                 HW_ERR_INVALID_ARGUMENT);
    hw_worker_spec_free(limits);
  }
  CHECK_OK(hw_registry_register(reg, "p", "docker", "r", spec, &w));
  if (w) CHECK_OK(hw_worker_get_id(w, &id));
  hw_worker_free(w);
  CHECK_OK(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, &w));
  hw_worker_free(w);
  hw_manager_config c;
  CHECK_OK(hw_manager_config_default(&c));
  c.heartbeat_timeout_ms = c.health_check_interval_ms = c.startup_timeout_ms = UINT64_MAX;
  c.scale_up_cooldown_ms = c.scale_down_cooldown_ms = UINT64_MAX;
  c.destroy_retry_initial_ms = c.destroy_retry_max_ms = UINT64_MAX;
  c.provider_backoff_initial_ms = c.provider_backoff_max_ms = UINT64_MAX;
  c.max_workers = c.max_provision_per_tick = c.max_actions_per_tick = (size_t)-1;
  /* Durations that could not round-trip through the config's JSON are refused... */
  CHECK_STATUS(hw_manager_new(reg, &c, &mgr), HW_ERR_INVALID_ARGUMENT);
  CHECK(mgr == NULL);
  /* ...the longest accepted one (100 years, MAX_CONFIG_DURATION) is not. */
  const uint64_t longest_ms = 3153600000000ull;
  c.heartbeat_timeout_ms = c.health_check_interval_ms = c.startup_timeout_ms = longest_ms;
  c.scale_up_cooldown_ms = c.scale_down_cooldown_ms = longest_ms;
  c.destroy_retry_initial_ms = c.destroy_retry_max_ms = longest_ms;
  c.provider_backoff_initial_ms = c.provider_backoff_max_ms = longest_ms;
  CHECK_OK(hw_manager_new(reg, &c, &mgr));
  for (int i = 0; mgr && i < 3; i++) {
    hw_report *r = NULL;
    CHECK_OK(hw_manager_tick(mgr, (size_t)-1, &r));
    hw_report_free(r);
    CHECK_OK(hw_clock_advance(clock, UINT64_MAX, &now));
    CHECK(now == UINT64_MAX);
  }
  bool up = false;
  hw_scaling_plan plan;
  char *json = NULL;
  CHECK_OK(hw_manager_should_scale_up(mgr, (size_t)-1, &up));
  CHECK_OK(hw_manager_plan_scaling(mgr, (size_t)-1, &plan, &json));
  hw_string_free(json);
  CHECK_OK(hw_registry_find_unhealthy(reg, UINT64_MAX, &l));
  hw_worker_list_free(l);
  CHECK_OK(hw_registry_find_startup_expired(reg, UINT64_MAX, &l));
  hw_worker_list_free(l);
  CHECK_OK(hw_registry_find_for_termination(reg, &l));
  hw_worker_list_free(l);
  CHECK_OK(hw_worker_filter_new(&f));
  CHECK_OK(hw_worker_filter_set_idle_for_ms(f, UINT64_MAX));
  CHECK_OK(hw_worker_filter_set_unhealthy_for_ms(f, UINT64_MAX));
  CHECK_OK(hw_worker_filter_set_limit(f, (size_t)-1));
  CHECK_OK(hw_registry_claim(reg, f, "j", &w));
  hw_worker_free(w);
  CHECK_OK(hw_registry_find(reg, f, &l));
  hw_worker_list_free(l);
  CHECK_OK(hw_registry_grant_grace(reg, UINT64_MAX));
  CHECK_OK(hw_clock_set(clock, 0, &now)); /* the past is ignored */
  CHECK(now == UINT64_MAX);
  hw_worker_filter_free(f);
  /* Pools whose limits are SIZE_MAX ("only the global cap"; a warm pool as large as it gets)
   * and no warm worker yet, with a demand of SIZE_MAX (twice, so that the sums overflow too):
   * the planner saturates instead of overflowing (it used to answer HW_ERR_PANIC, after the
   * tick's health check had run: the jobs it found lost were in no report). */
  {
    hw_registry *preg = NULL;
    hw_manager *pmgr = NULL;
    hw_manager_config pc;
    hw_provider_callbacks cb;
    char demand[128];
    char *plan_json = NULL;
    hw_report *r = NULL;
    hw_report_summary sum;
    CHECK_OK(hw_registry_new(&preg));
    CHECK_OK(hw_manager_config_default(&pc));
    pc.max_workers = (size_t)-1;
    pc.max_provision_per_tick = 2; /* each tick provisions a little, never SIZE_MAX */
    CHECK_OK(hw_manager_new(preg, &pc, &pmgr));
    memset(&cb, 0, sizeof cb);
    cb.create_worker = ok_create;
    cb.destroy_worker = ok_destroy;
    CHECK_OK(hw_manager_register_provider(pmgr, "p", "docker", &cb));
    CHECK_OK(hw_manager_add_pool(pmgr, "warm", "p", spec, 1, (size_t)-1, 1));
    CHECK_OK(hw_manager_add_pool(pmgr, "huge", "p", spec, (size_t)-1, (size_t)-1, 0));
    snprintf(demand, sizeof demand, "[{\"count\": %zu}, {\"count\": %zu}]", (size_t)-1,
             (size_t)-1);
    CHECK_OK(hw_manager_plan_pools_json(pmgr, demand, &plan_json));
    CHECK(plan_json != NULL);
    hw_string_free(plan_json);
    CHECK_OK(hw_manager_tick_demand(pmgr, demand, &r));
    memset(&sum, 0, sizeof sum);
    if (r) CHECK_OK(hw_report_get_summary(r, &sum));
    CHECK(sum.provisioned == 2);
    hw_report_free(r);
    r = NULL;
    CHECK_OK(hw_manager_tick(pmgr, (size_t)-1, &r));
    hw_report_free(r);
    hw_manager_free(pmgr);
    hw_registry_free(preg);
  }
  hw_manager_free(mgr);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
}

/* A refused string of any size gets a short message: what hw_last_error_message echoes of it is
 * at most 64 characters and its length ("… (N bytes)"), not the whole megabyte. */
#define HUGE_LEN ((size_t)1 << 20)
#define SHORT_REFUSAL(call, status, limit)                                                 \
  do {                                                                                     \
    CHECK_STATUS(call, status);                                                            \
    size_t len_ = strlen(hw_last_error_message());                                         \
    CHECK(len_ > 0 && len_ < (limit));                                                     \
    CHECK(strstr(hw_last_error_message(), "(1048576 bytes)") != NULL);                     \
    if (len_ >= (limit)) fprintf(stderr, "  (a %zu-byte message)\n", len_);              \
  } while (0)

static char *huge_json(const char *before, const char *after) {
  size_t b = strlen(before), a = strlen(after);
  char *text = malloc(b + HUGE_LEN + a + 1);
  if (text == NULL) abort();
  memcpy(text, before, b);
  memset(text + b, 'k', HUGE_LEN);
  memcpy(text + b + HUGE_LEN, after, a + 1);
  return text;
}

static void huge_inputs(void) {
  char *huge = huge_json("", "");
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  hw_manager_config config;
  if (hw_registry_new(&reg) != HW_OK || hw_manager_config_default(&config) != HW_OK ||
      hw_manager_new(reg, &config, &mgr) != HW_OK) {
    CHECK(!"huge_inputs: fixtures");
    return;
  }
  void *out = SENTINEL;
  char *owned = (char *)SENTINEL;
  size_t drained = 777;
  hw_worker_id wid;
  memset(&wid, 0xab, sizeof wid);
  SHORT_REFUSAL(hw_worker_id_parse(huge, &wid), HW_ERR_INVALID_ARGUMENT, 400);
  SHORT_REFUSAL(hw_manager_new_replicated(reg, &config, huge, 1000, (hw_manager **)&out),
                HW_ERR_INVALID_ARGUMENT, 400);
  SHORT_REFUSAL(hw_manager_remove_pool(mgr, huge, &drained), HW_ERR_INVALID_ARGUMENT, 400);
  SHORT_REFUSAL(hw_registry_new_postgres("host=/nonexistent", huge, (hw_registry **)&out),
                HW_ERR_INVALID_ARGUMENT, 400);
  SHORT_REFUSAL(hw_registry_drop_postgres("host=/nonexistent", huge), HW_ERR_INVALID_ARGUMENT,
                400);
  /* JSON documents refused for a huge key or string (serde quotes them whole): the message
   * keeps serde's list of expected fields, so the bound is looser. */
  char *doc = huge_json("{\"", "\": 1}");
  SHORT_REFUSAL(hw_worker_spec_from_json(doc, (hw_worker_spec **)&out), HW_ERR_INVALID_ARGUMENT,
                1024);
  SHORT_REFUSAL(hw_manager_new_from_json(reg, doc, (hw_manager **)&out), HW_ERR_INVALID_ARGUMENT,
                1024);
  SHORT_REFUSAL(hw_registry_restore(reg, doc), HW_ERR_SNAPSHOT, 1024);
  free(doc);
  doc = huge_json("[{\"", "\": 1}]");
  SHORT_REFUSAL(hw_manager_set_pools_json(mgr, doc, &drained), HW_ERR_INVALID_ARGUMENT, 1024);
  SHORT_REFUSAL(hw_manager_plan_pools_json(mgr, doc, &owned), HW_ERR_INVALID_ARGUMENT, 1024);
  free(doc);
  doc = huge_json("[{\"name\": \"", "\", \"provider_id\": \"p\", \"template\": {}}]");
  SHORT_REFUSAL(hw_manager_set_pools_json(mgr, doc, &drained), HW_ERR_INVALID_ARGUMENT, 400);
  free(doc);
  CHECK(out == SENTINEL && owned == (char *)SENTINEL && drained == 777 && wid.bytes[0] == 0xab);
  hw_manager_free(mgr);
  hw_registry_free(reg);
  free(huge);
}

int main(void) {
  memset(LONG_PROVIDER, 'p', 129);
  memset(LONG_JOB, 'j', 257);
  memcpy(LONG_TYPE, "custom:", 7);
  memset(LONG_TYPE + 7, 't', 70);

  hw_worker_id nil, unknown;
  memset(&nil, 0, sizeof nil);
  REQUIRE_OK(hw_worker_id_parse("6f1c4e3a-9b2d-4c8e-a1f0-123456789abc", &unknown));

  /* Valid fixtures, so that each call below is wrong in exactly one argument. */
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker_filter *filter = NULL;
  hw_subscription *sub = NULL;
  hw_worker *w = NULL;
  hw_worker_list *list = NULL;
  hw_event *ev = NULL;
  hw_manager *mgr = NULL;
  hw_report *rep = NULL;
  REQUIRE_OK(hw_clock_new_manual(1000, &clock));
  REQUIRE_OK(hw_registry_new_with_clock(clock, &reg));
  REQUIRE_OK(hw_worker_spec_new("img", &spec));
  REQUIRE_OK(hw_worker_filter_new(&filter));
  REQUIRE_OK(hw_registry_subscribe(reg, HW_DEFAULT_SUBSCRIPTION_CAPACITY, false, &sub));
  REQUIRE_OK(hw_registry_register(reg, "p", "docker", "r", spec, &w));
  hw_worker_id id;
  REQUIRE_OK(hw_worker_get_id(w, &id));
  REQUIRE_OK(hw_registry_find(reg, filter, &list));
  REQUIRE_OK(hw_subscription_recv(sub, 0, &ev));
  hw_manager_config config;
  REQUIRE_OK(hw_manager_config_default(&config));
  REQUIRE_OK(hw_manager_new(reg, &config, &mgr));
  REQUIRE_OK(hw_manager_tick(mgr, 0, &rep));

  void *out = SENTINEL;
  uint64_t u64 = 12345;
  size_t sz = 12345;
  bool flag = true;
  uint32_t u32 = 12345;
  const char *text = (const char *)SENTINEL;
  char *owned = (char *)SENTINEL;
  hw_worker_id wid;
  memset(&wid, 0xab, sizeof wid);

  /* ---- types, strings, status ---- */
  CHECK_STR(hw_status_str(HW_OK), "HW_OK");
  CHECK_STR(hw_status_str(HW_ERR_PANIC), "HW_ERR_PANIC");
  CHECK_STR(hw_status_str(HW_ERR_NOT_LEADER), "HW_ERR_NOT_LEADER");
  CHECK_STR(hw_status_str(15), "HW_UNKNOWN_STATUS");
  CHECK_STR(hw_status_str(0xffffffffu), "HW_UNKNOWN_STATUS");
  CHECK_STR(hw_worker_state_str(HW_WORKER_STATE_BUSY), "busy");
  CHECK_STR(hw_worker_state_str(7), "unknown");
  CHECK(hw_version() != NULL && hw_version()[0] != '\0');
  CHECK(hw_abi_version() == HW_ABI_VERSION); /* no argument to get wrong (test_abi.c) */
  hw_string_free(NULL);
  INVALID(hw_worker_id_parse(NULL, &wid));
  INVALID(hw_worker_id_parse("6f1c4e3a-9b2d-4c8e-a1f0-123456789abc", NULL));
  INVALID(hw_worker_id_parse(BAD_UTF8, &wid));
  INVALID(hw_worker_id_parse("not-a-uuid", &wid));
  INVALID(hw_worker_id_parse("00000000-0000-0000-0000-000000000000", &wid));
  INVALID(hw_worker_id_parse(LONG_JOB, &wid));
  CHECK(wid.bytes[0] == 0xab);
  char buf[HW_WORKER_ID_STRING_SIZE];
  buf[0] = 'z';
  INVALID(hw_worker_id_format(id, NULL, sizeof buf));
  INVALID(hw_worker_id_format(id, buf, sizeof buf - 1));
  INVALID(hw_worker_id_format(nil, buf, sizeof buf));
  CHECK(buf[0] == 'z');
  /* The message of the last failure names the function; a success clears it. */
  CHECK(strstr(hw_last_error_message(), "hw_worker_id_format") != NULL);
  CHECK_OK(hw_worker_id_format(id, buf, sizeof buf));
  CHECK_STR(hw_last_error_message(), "");

  /* ---- clock ---- */
  INVALID(hw_clock_new_system(NULL));
  INVALID(hw_clock_new_manual(0, NULL));
  INVALID(hw_clock_now(NULL, &u64));
  INVALID(hw_clock_now(clock, NULL));
  INVALID(hw_clock_advance(NULL, 1, &u64));
  INVALID(hw_clock_advance(clock, 1, NULL));
  INVALID(hw_clock_set(NULL, 1, &u64));
  INVALID(hw_clock_set(clock, 1, NULL));
  CHECK(u64 == 12345);
  hw_clock *sys = NULL;
  CHECK_OK(hw_clock_new_system(&sys));
  INVALID(hw_clock_advance(sys, 1, &u64)); /* the system clock cannot be moved */
  INVALID(hw_clock_set(sys, 1, &u64));
  CHECK_OK(hw_clock_now(sys, &u64));
  CHECK(u64 > 1600000000000ULL);
  u64 = 12345;
  hw_clock_free(sys);
  hw_clock_free(NULL);

  /* ---- spec ---- */
  out = SENTINEL;
  INVALID(hw_worker_spec_new(NULL, (hw_worker_spec **)&out));
  INVALID(hw_worker_spec_new("img", NULL));
  INVALID(hw_worker_spec_new(BAD_UTF8, (hw_worker_spec **)&out));
  INVALID(hw_worker_spec_from_json(NULL, (hw_worker_spec **)&out));
  INVALID(hw_worker_spec_from_json("{}", NULL));
  INVALID(hw_worker_spec_from_json(BAD_UTF8, (hw_worker_spec **)&out));
  INVALID(hw_worker_spec_from_json("{\"image\": 5}", (hw_worker_spec **)&out));
  INVALID(hw_worker_spec_from_json("{\"max_jobs\": 0}", (hw_worker_spec **)&out));
  INVALID(hw_worker_spec_from_json("{\"idle_timeout\": -1}", (hw_worker_spec **)&out));
  INVALID(hw_worker_spec_to_json(NULL, &owned));
  INVALID(hw_worker_spec_to_json(spec, NULL));
  INVALID(hw_worker_spec_get_image(NULL, &owned));
  INVALID(hw_worker_spec_get_image(spec, NULL));
  INVALID(hw_worker_spec_clone(NULL, (hw_worker_spec **)&out));
  INVALID(hw_worker_spec_clone(spec, NULL));
  CHECK(out == SENTINEL && owned == (char *)SENTINEL);
  INVALID(hw_worker_spec_set_image(NULL, "x"));
  INVALID(hw_worker_spec_set_image(spec, NULL));
  INVALID(hw_worker_spec_set_image(spec, BAD_UTF8));
  INVALID(hw_worker_spec_add_label(NULL, "k", "v"));
  INVALID(hw_worker_spec_add_label(spec, NULL, "v"));
  INVALID(hw_worker_spec_add_label(spec, "k", NULL));
  INVALID(hw_worker_spec_add_label(spec, "k", BAD_UTF8));
  INVALID(hw_worker_spec_add_label(spec, BAD_UTF8, "v"));
  INVALID(hw_worker_spec_add_env(NULL, "k", "v"));
  INVALID(hw_worker_spec_add_env(spec, NULL, "v"));
  INVALID(hw_worker_spec_add_env(spec, "k", NULL));
  INVALID(hw_worker_spec_add_env(spec, BAD_UTF8, "v"));
  INVALID(hw_worker_spec_add_env(spec, "k", BAD_UTF8));
  INVALID(hw_worker_spec_add_capability(NULL, "gpu"));
  INVALID(hw_worker_spec_add_capability(spec, NULL));
  INVALID(hw_worker_spec_add_capability(spec, BAD_UTF8));
  INVALID(hw_worker_spec_set_idle_timeout_ms(NULL, 1));
  INVALID(hw_worker_spec_set_idle_timeout_ms(spec, 0));
  INVALID(hw_worker_spec_set_max_lifetime_ms(NULL, 1));
  INVALID(hw_worker_spec_set_max_lifetime_ms(spec, 0));
  INVALID(hw_worker_spec_set_max_jobs(NULL, 1));
  INVALID(hw_worker_spec_set_resources(NULL, 1.0, 0, 0, 0));
  INVALID(hw_worker_spec_set_resources(spec, -1.0, 0, 0, 0));
  INVALID(hw_worker_spec_set_resources(spec, 1.0 / 0.0, 0, 0, 0));
  INVALID(hw_worker_spec_set_gpu_type(NULL, "a100"));
  INVALID(hw_worker_spec_set_gpu_type(spec, NULL));
  INVALID(hw_worker_spec_set_gpu_type(spec, BAD_UTF8));
  INVALID(hw_worker_spec_set_architecture(NULL, HW_ARCHITECTURE_ARM));
  INVALID(hw_worker_spec_set_architecture(spec, 3));
  INVALID(hw_worker_spec_set_architecture(spec, 0xffffffffu));
  /* None of the refused calls changed the spec. */
  CHECK_OK(hw_worker_spec_to_json(spec, &owned));
  CHECK(strstr(owned, "\"image\":\"img\"") != NULL && strstr(owned, "\"labels\":{}") != NULL &&
        strstr(owned, "\"capabilities\":[]") != NULL && strstr(owned, "\"amd64\"") != NULL);
  hw_string_free(owned);
  owned = (char *)SENTINEL;
  hw_worker_spec_free(NULL);

  /* ---- filter ---- */
  INVALID(hw_worker_filter_new(NULL));
  INVALID(hw_worker_filter_add_state(NULL, HW_WORKER_STATE_READY));
  INVALID(hw_worker_filter_add_state(filter, 7));
  INVALID(hw_worker_filter_add_state(filter, 0xffffffffu));
  INVALID(hw_worker_filter_set_provider_id(NULL, "p"));
  INVALID(hw_worker_filter_set_provider_id(filter, NULL));
  INVALID(hw_worker_filter_set_provider_id(filter, BAD_UTF8));
  INVALID(hw_worker_filter_set_provider_id(filter, LONG_PROVIDER));
  INVALID(hw_worker_filter_set_provider_id(filter, ""));
  INVALID(hw_worker_filter_set_provider_id(filter, "a\nb"));
  INVALID(hw_worker_filter_set_provider_type(NULL, "docker"));
  INVALID(hw_worker_filter_set_provider_type(filter, NULL));
  INVALID(hw_worker_filter_set_provider_type(filter, BAD_UTF8));
  INVALID(hw_worker_filter_set_provider_type(filter, "podman"));
  INVALID(hw_worker_filter_set_provider_type(filter, LONG_TYPE));
  INVALID(hw_worker_filter_set_accepting_jobs(NULL, true));
  INVALID(hw_worker_filter_set_idle_for_ms(NULL, 1));
  INVALID(hw_worker_filter_set_unhealthy_for_ms(NULL, 1));
  INVALID(hw_worker_filter_add_label(NULL, "k", "v"));
  INVALID(hw_worker_filter_add_label(filter, NULL, "v"));
  INVALID(hw_worker_filter_add_label(filter, "k", NULL));
  INVALID(hw_worker_filter_add_label(filter, BAD_UTF8, "v"));
  INVALID(hw_worker_filter_add_label(filter, "k", BAD_UTF8));
  INVALID(hw_worker_filter_add_capability(NULL, "gpu"));
  INVALID(hw_worker_filter_add_capability(filter, NULL));
  INVALID(hw_worker_filter_add_capability(filter, BAD_UTF8));
  INVALID(hw_worker_filter_set_limit(NULL, 1));
  hw_worker_filter_free(NULL);
  /* Over-long label keys and values, capabilities and GPU types (DESIGN.md section 7): no
   * worker can hold them, so a filter asking for them is refused, not silently empty. */
  {
    static char over_key[HW_MAX_KEY_LEN + 2];
    static char over_value[HW_MAX_VALUE_LEN + 2];
    memset(over_key, 'k', HW_MAX_KEY_LEN + 1);
    memset(over_value, 'v', HW_MAX_VALUE_LEN + 1);
    INVALID(hw_worker_filter_add_label(filter, over_key, "v"));
    CHECK(strstr(hw_last_error_message(), "256") != NULL);
    INVALID(hw_worker_filter_add_label(filter, "k", over_value));
    CHECK(strstr(hw_last_error_message(), "16384") != NULL);
    INVALID(hw_worker_filter_add_capability(filter, over_key));
    CHECK(strstr(hw_last_error_message(), "256") != NULL);
    hw_worker_spec *gpu = NULL;
    CHECK_OK(hw_worker_spec_new("img", &gpu));
    CHECK_OK(hw_worker_spec_set_gpu_type(gpu, over_key));
    INVALID(hw_worker_filter_set_fits(filter, gpu));
    hw_worker_spec_free(gpu);
    /* At the limits they are taken (on a filter of their own: `filter` must stay empty). */
    hw_worker_filter *at_limit = NULL;
    CHECK_OK(hw_worker_filter_new(&at_limit));
    over_key[HW_MAX_KEY_LEN] = '\0';
    over_value[HW_MAX_VALUE_LEN] = '\0';
    CHECK_OK(hw_worker_filter_add_label(at_limit, over_key, over_value));
    CHECK_OK(hw_worker_filter_add_capability(at_limit, over_key));
    /* More labels or capabilities than a worker may hold (HW_MAX_ENTRIES): refused too; a
     * label already required may still be replaced. */
    int taken = 0;
    for (int i = 1; i < HW_MAX_ENTRIES; i++) {
      char k[16];
      snprintf(k, sizeof k, "k%d", i);
      taken += hw_worker_filter_add_label(at_limit, k, "v") == HW_OK;
      taken += hw_worker_filter_add_capability(at_limit, k) == HW_OK;
    }
    CHECK(taken == 2 * (HW_MAX_ENTRIES - 1));
    INVALID(hw_worker_filter_add_label(at_limit, "one-more", "v"));
    CHECK(strstr(hw_last_error_message(), "1024") != NULL);
    INVALID(hw_worker_filter_add_capability(at_limit, "one-more"));
    CHECK_OK(hw_worker_filter_add_label(at_limit, "k1", "other"));
    CHECK_OK(hw_worker_filter_add_capability(at_limit, "k1"));
    hw_worker_filter_free(at_limit);
  }
  /* The refused calls left the filter matching everything. */
  hw_worker_list *all = NULL;
  CHECK_OK(hw_registry_find(reg, filter, &all));
  CHECK_OK(hw_worker_list_len(all, &sz));
  CHECK(sz == 1);
  sz = 12345;
  hw_worker_list_free(all);

  /* ---- registry ---- */
  out = SENTINEL;
  INVALID(hw_registry_new(NULL));
  INVALID(hw_registry_new_with_clock(NULL, (hw_registry **)&out));
  INVALID(hw_registry_new_with_clock(clock, NULL));
  /* PostgreSQL: argument checks come before any connection, so no server is needed here. */
  const char *pg = "host=/nonexistent-hodei-dir user=postgres dbname=postgres";
  INVALID(hw_registry_new_postgres(NULL, "r", (hw_registry **)&out));
  INVALID(hw_registry_new_postgres(pg, NULL, (hw_registry **)&out));
  INVALID(hw_registry_new_postgres(pg, "r", NULL));
  INVALID(hw_registry_new_postgres(BAD_UTF8, "r", (hw_registry **)&out));
  INVALID(hw_registry_new_postgres(pg, BAD_UTF8, (hw_registry **)&out));
  INVALID(hw_registry_new_postgres(pg, "Not-A-Schema", (hw_registry **)&out));
  INVALID(hw_registry_new_postgres(pg, "pg_catalog", (hw_registry **)&out));
  INVALID(hw_registry_new_postgres("host=x port=notaport", "r", (hw_registry **)&out));
  /* A NUL percent-encoded in a URL is malformed too (not an unreachable server). */
  INVALID(hw_registry_new_postgres("postgresql://%2Ftmp%00x/postgres", "r", (hw_registry **)&out));
  INVALID(hw_registry_drop_postgres("postgresql://%2Ftmp%00x/postgres", "r"));
  /* A server that is not there: HW_ERR_BACKEND, with the cause in the message. */
  CHECK_STATUS(hw_registry_new_postgres(pg, "r", (hw_registry **)&out), HW_ERR_BACKEND);
  CHECK(hw_last_error_message()[0] != '\0');
  INVALID(hw_registry_new_postgres_with_clock(NULL, "r", clock, (hw_registry **)&out));
  INVALID(hw_registry_new_postgres_with_clock(pg, NULL, clock, (hw_registry **)&out));
  INVALID(hw_registry_new_postgres_with_clock(pg, "r", NULL, (hw_registry **)&out));
  INVALID(hw_registry_new_postgres_with_clock(pg, "r", clock, NULL));
  INVALID(hw_registry_new_postgres_with_clock(pg, "1r", clock, (hw_registry **)&out));
  INVALID(hw_registry_new_postgres_with_clock(BAD_UTF8, "r", clock, (hw_registry **)&out));
  INVALID(hw_registry_new_postgres_with_clock(pg, BAD_UTF8, clock, (hw_registry **)&out));
  CHECK_STATUS(hw_registry_new_postgres_with_clock(pg, "r", clock, (hw_registry **)&out),
               HW_ERR_BACKEND);
  INVALID(hw_registry_drop_postgres(NULL, "r"));
  INVALID(hw_registry_drop_postgres(pg, NULL));
  INVALID(hw_registry_drop_postgres(BAD_UTF8, "r"));
  INVALID(hw_registry_drop_postgres(pg, BAD_UTF8));
  INVALID(hw_registry_drop_postgres(pg, "public"));
  CHECK_STATUS(hw_registry_drop_postgres(pg, "r"), HW_ERR_BACKEND);
  CHECK(out == SENTINEL);
  INVALID(hw_registry_set_retired_id_limit(NULL, 2));
  INVALID(hw_registry_now(NULL, &u64));
  INVALID(hw_registry_now(reg, NULL));
  INVALID(hw_registry_register(NULL, "p", "docker", "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register(reg, NULL, "docker", "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register(reg, "p", NULL, "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register(reg, "p", "docker", NULL, spec, (hw_worker **)&out));
  INVALID(hw_registry_register(reg, "p", "docker", "r", NULL, (hw_worker **)&out));
  INVALID(hw_registry_register(reg, "p", "docker", "r", spec, NULL));
  INVALID(hw_registry_register(reg, BAD_UTF8, "docker", "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register(reg, "p", BAD_UTF8, "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register(reg, "p", "docker", BAD_UTF8, spec, (hw_worker **)&out));
  INVALID(hw_registry_register(reg, LONG_PROVIDER, "docker", "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register(reg, "p", LONG_TYPE, "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register(reg, "p", "custom:", "r", spec, (hw_worker **)&out));
  /* An empty resource id names no instance. */
  INVALID(hw_registry_register(reg, "p", "docker", "", spec, (hw_worker **)&out));
  CHECK(strstr(hw_last_error_message(), "empty") != NULL);
  INVALID(hw_registry_register_with_id(reg, unknown, "p", "docker", "", spec, (hw_worker **)&out));
  INVALID(hw_registry_register_with_id(NULL, unknown, "p", "docker", "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register_with_id(reg, nil, "p", "docker", "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register_with_id(reg, unknown, NULL, "docker", "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register_with_id(reg, unknown, "p", NULL, "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register_with_id(reg, unknown, "p", "docker", NULL, spec, (hw_worker **)&out));
  INVALID(hw_registry_register_with_id(reg, unknown, "p", "docker", "r", NULL, (hw_worker **)&out));
  INVALID(hw_registry_register_with_id(reg, unknown, "p", "docker", "r", spec, NULL));
  INVALID(hw_registry_register_with_id(reg, unknown, BAD_UTF8, "docker", "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register_with_id(reg, unknown, "p", BAD_UTF8, "r", spec, (hw_worker **)&out));
  INVALID(hw_registry_register_with_id(reg, unknown, "p", "docker", BAD_UTF8, spec, (hw_worker **)&out));
  CHECK_STATUS(hw_registry_register_with_id(reg, id, "p", "docker", "r", spec, (hw_worker **)&out),
               HW_ERR_ALREADY_EXISTS);
  CHECK(out == SENTINEL);
  INVALID(hw_registry_unregister(NULL, id, HW_TERMINATION_REASON_REQUESTED, (hw_worker **)&out));
  INVALID(hw_registry_unregister(reg, nil, HW_TERMINATION_REASON_REQUESTED, (hw_worker **)&out));
  INVALID(hw_registry_unregister(reg, id, 10, (hw_worker **)&out));
  INVALID(hw_registry_unregister(reg, id, 0xffffffffu, (hw_worker **)&out));
  INVALID(hw_registry_unregister(reg, id, HW_TERMINATION_REASON_REQUESTED, NULL));
  NOT_FOUND(hw_registry_unregister(reg, unknown, HW_TERMINATION_REASON_REQUESTED, (hw_worker **)&out));
  INVALID(hw_registry_get(NULL, id, (hw_worker **)&out));
  INVALID(hw_registry_get(reg, nil, (hw_worker **)&out));
  INVALID(hw_registry_get(reg, id, NULL));
  CHECK(out == SENTINEL);
  CHECK_OK(hw_registry_get(reg, unknown, (hw_worker **)&out));
  CHECK(out == NULL); /* an unknown id is "no worker", not an error */
  out = SENTINEL;
  INVALID(hw_registry_find(NULL, filter, (hw_worker_list **)&out));
  INVALID(hw_registry_find(reg, NULL, (hw_worker_list **)&out));
  INVALID(hw_registry_find(reg, filter, NULL));
  INVALID(hw_registry_find_available(NULL, (hw_worker_list **)&out));
  INVALID(hw_registry_find_available(reg, NULL));
  INVALID(hw_registry_find_by_provider(NULL, "p", (hw_worker_list **)&out));
  INVALID(hw_registry_find_by_provider(reg, NULL, (hw_worker_list **)&out));
  INVALID(hw_registry_find_by_provider(reg, "p", NULL));
  INVALID(hw_registry_find_by_provider(reg, BAD_UTF8, (hw_worker_list **)&out));
  INVALID(hw_registry_find_by_provider(reg, LONG_PROVIDER, (hw_worker_list **)&out));
  INVALID(hw_registry_find_unhealthy(NULL, 1, (hw_worker_list **)&out));
  INVALID(hw_registry_find_unhealthy(reg, 1, NULL));
  INVALID(hw_registry_find_startup_expired(NULL, 1, (hw_worker_list **)&out));
  INVALID(hw_registry_find_startup_expired(reg, 1, NULL));
  INVALID(hw_registry_find_for_termination(NULL, (hw_worker_list **)&out));
  INVALID(hw_registry_find_for_termination(reg, NULL));
  CHECK(out == SENTINEL);
  INVALID(hw_registry_update_state(NULL, id, HW_WORKER_STATE_READY, (hw_worker **)&out));
  INVALID(hw_registry_update_state(reg, nil, HW_WORKER_STATE_READY, (hw_worker **)&out));
  INVALID(hw_registry_update_state(reg, id, 7, (hw_worker **)&out));
  INVALID(hw_registry_update_state(reg, id, 0xffffffffu, (hw_worker **)&out));
  INVALID(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, NULL));
  NOT_FOUND(hw_registry_update_state(reg, unknown, HW_WORKER_STATE_READY, (hw_worker **)&out));
  CHECK_STATUS(hw_registry_update_state(reg, id, HW_WORKER_STATE_BUSY, (hw_worker **)&out),
               HW_ERR_INVALID_TRANSITION);
  INVALID(hw_registry_heartbeat(NULL, id));
  INVALID(hw_registry_heartbeat(reg, nil));
  NOT_FOUND(hw_registry_heartbeat(reg, unknown));
  INVALID(hw_registry_longest_idle(NULL, 1, (hw_worker_list **)&out));
  INVALID(hw_registry_longest_idle(reg, 1, NULL));
  hw_status answers[2] = {HW_ERR_PANIC, HW_ERR_PANIC};
  hw_worker_id pair[2] = {id, nil};
  INVALID(hw_registry_heartbeat_many(NULL, pair, 1, answers));
  INVALID(hw_registry_heartbeat_many(reg, NULL, 1, answers));
  INVALID(hw_registry_heartbeat_many(reg, pair, 1, NULL));
  INVALID(hw_registry_heartbeat_many(reg, pair, 2, answers)); /* the nil id */
  INVALID(hw_registry_heartbeat_many(reg, pair, SIZE_MAX, answers));
  CHECK(answers[0] == HW_ERR_PANIC && answers[1] == HW_ERR_PANIC);
  pair[1] = unknown;
  CHECK_OK(hw_registry_heartbeat_many(reg, pair, 2, answers));
  CHECK(answers[0] == HW_OK && answers[1] == HW_ERR_NOT_FOUND);
  INVALID(hw_registry_assign(NULL, id, "j", (hw_worker **)&out));
  INVALID(hw_registry_assign(reg, nil, "j", (hw_worker **)&out));
  INVALID(hw_registry_assign(reg, id, NULL, (hw_worker **)&out));
  INVALID(hw_registry_assign(reg, id, BAD_UTF8, (hw_worker **)&out));
  INVALID(hw_registry_assign(reg, id, LONG_JOB, (hw_worker **)&out));
  INVALID(hw_registry_assign(reg, id, "", (hw_worker **)&out));
  INVALID(hw_registry_assign(reg, id, "j", NULL));
  NOT_FOUND(hw_registry_assign(reg, unknown, "j", (hw_worker **)&out));
  CHECK_STATUS(hw_registry_assign(reg, id, "j", (hw_worker **)&out), HW_ERR_NOT_AVAILABLE);
  CHECK(out == SENTINEL);
  INVALID(hw_registry_release(NULL, id, &owned));
  INVALID(hw_registry_release(reg, nil, &owned));
  INVALID(hw_registry_release(reg, id, NULL));
  NOT_FOUND(hw_registry_release(reg, unknown, &owned));
  CHECK_STATUS(hw_registry_release(reg, id, &owned), HW_ERR_NOT_BUSY);
  INVALID(hw_registry_release_job(NULL, id, "j", &owned));
  INVALID(hw_registry_release_job(reg, nil, "j", &owned));
  INVALID(hw_registry_release_job(reg, id, NULL, &owned));
  INVALID(hw_registry_release_job(reg, id, BAD_UTF8, &owned));
  INVALID(hw_registry_release_job(reg, id, LONG_JOB, &owned));
  INVALID(hw_registry_release_job(reg, id, "j", NULL));
  NOT_FOUND(hw_registry_release_job(reg, unknown, "j", &owned));
  CHECK(owned == (char *)SENTINEL);
  INVALID(hw_registry_claim(NULL, filter, "j", (hw_worker **)&out));
  INVALID(hw_registry_claim(reg, NULL, "j", (hw_worker **)&out));
  INVALID(hw_registry_claim(reg, filter, NULL, (hw_worker **)&out));
  INVALID(hw_registry_claim(reg, filter, BAD_UTF8, (hw_worker **)&out));
  INVALID(hw_registry_claim(reg, filter, LONG_JOB, (hw_worker **)&out));
  INVALID(hw_registry_claim(reg, filter, "j", NULL));
  CHECK(out == SENTINEL);
  INVALID(hw_registry_grant_grace(NULL, 0));
  hw_worker_counts counts;
  counts.total = 777;
  INVALID(hw_registry_stats(NULL, &counts));
  INVALID(hw_registry_stats(reg, NULL));
  CHECK(counts.total == 777);
  INVALID(hw_registry_stats_json(NULL, &owned));
  INVALID(hw_registry_stats_json(reg, NULL));
  INVALID(hw_registry_count(NULL, &sz));
  INVALID(hw_registry_count(reg, NULL));
  INVALID(hw_registry_snapshot(NULL, &owned));
  INVALID(hw_registry_snapshot(reg, NULL));
  CHECK(owned == (char *)SENTINEL);
  INVALID(hw_registry_restore(NULL, "{}"));
  INVALID(hw_registry_restore(reg, NULL));
  INVALID(hw_registry_restore(reg, BAD_UTF8));
  hw_registry *empty = NULL;
  CHECK_OK(hw_registry_new(&empty));
  CHECK_STATUS(hw_registry_restore(empty, "{not json"), HW_ERR_SNAPSHOT);
  hw_registry_free(empty);
  hw_registry_free(NULL);

  /* ---- subscriptions and events ---- */
  out = SENTINEL;
  INVALID(hw_registry_subscribe(NULL, 0, false, (hw_subscription **)&out));
  INVALID(hw_registry_subscribe(reg, 0, false, NULL));
  /* Capacity 0 is refused, as in Rust and Python (issue 10 item 22), and writes nothing. */
  INVALID(hw_registry_subscribe(reg, 0, false, (hw_subscription **)&out));
  INVALID(hw_subscription_recv(NULL, 0, (hw_event **)&out));
  INVALID(hw_subscription_recv(sub, 0, NULL));
  INVALID(hw_subscription_dropped(NULL, &u64));
  INVALID(hw_subscription_dropped(sub, NULL));
  INVALID(hw_subscription_pending(NULL, &sz));
  INVALID(hw_subscription_pending(sub, NULL));
  CHECK(out == SENTINEL);
  hw_subscription_free(NULL);
  /* An absurd queue capacity is no reason to abort the host. */
  hw_subscription *huge = NULL;
  CHECK_OK(hw_registry_subscribe(reg, (size_t)-1, true, &huge));
  CHECK_OK(hw_registry_heartbeat(reg, id));
  CHECK_OK(hw_subscription_pending(huge, &sz));
  CHECK(sz == 1);
  sz = 12345;
  hw_subscription_free(huge);
  INVALID(hw_event_get_kind(NULL, &u32));
  INVALID(hw_event_get_kind(ev, NULL));
  INVALID(hw_event_get_seq(NULL, &u64));
  INVALID(hw_event_get_seq(ev, NULL));
  INVALID(hw_event_get_at(NULL, &u64));
  INVALID(hw_event_get_at(ev, NULL));
  INVALID(hw_event_get_worker_id(NULL, &flag, &wid));
  INVALID(hw_event_get_worker_id(ev, NULL, &wid));
  INVALID(hw_event_get_worker_id(ev, &flag, NULL));
  INVALID(hw_event_get_job_id(NULL, &text));
  INVALID(hw_event_get_job_id(ev, NULL));
  INVALID(hw_event_get_provider_id(NULL, &text));
  INVALID(hw_event_get_provider_id(ev, NULL));
  INVALID(hw_event_get_message(NULL, &text));
  INVALID(hw_event_get_message(ev, NULL));
  INVALID(hw_event_get_states(NULL, &u32, &u32));
  INVALID(hw_event_get_states(ev, NULL, &u32));
  INVALID(hw_event_get_states(ev, &u32, NULL));
  INVALID(hw_event_get_states(ev, &u32, &u32)); /* a registered event has no states */
  INVALID(hw_event_get_reason(NULL, &u32));
  INVALID(hw_event_get_reason(ev, NULL));
  INVALID(hw_event_get_reason(ev, &u32)); /* nor a reason */
  INVALID(hw_event_to_json(NULL, &owned));
  INVALID(hw_event_to_json(ev, NULL));
  hw_event_fields fields, before;
  memset(&before, 0xab, sizeof before);
  fields = before;
  INVALID(hw_event_get_fields(NULL, &fields));
  INVALID(hw_event_get_fields(ev, NULL));
  CHECK(memcmp(&fields, &before, sizeof fields) == 0);
  /* Publishing: NULL, out-of-range and the registry's own kinds, NULL or bad strings. */
  hw_event_fields publishable = {0};
  publishable.kind = HW_EVENT_KIND_PROVISION_REQUESTED;
  publishable.provider_id = "p";
  INVALID(hw_registry_publish(NULL, &publishable));
  INVALID(hw_registry_publish(reg, NULL));
  publishable.kind = HW_EVENT_KIND_UNKNOWN;
  INVALID(hw_registry_publish(reg, &publishable));
  publishable.kind = HW_EVENT_KIND_JOB_LOST;
  INVALID(hw_registry_publish(reg, &publishable));
  publishable.kind = HW_EVENT_KIND_PROVISION_FAILED;
  publishable.message = NULL;
  INVALID(hw_registry_publish(reg, &publishable));
  publishable.message = BAD_UTF8;
  INVALID(hw_registry_publish(reg, &publishable));
  publishable.kind = HW_EVENT_KIND_LEADER_CHANGED;
  publishable.by = NULL;
  INVALID(hw_registry_publish(reg, &publishable));
  CHECK(u32 == 12345 && u64 == 12345 && sz == 12345 && flag && wid.bytes[0] == 0xab);
  CHECK(text == (const char *)SENTINEL && owned == (char *)SENTINEL);
  hw_event_free(NULL);

  /* ---- worker snapshots and lists ---- */
  INVALID(hw_worker_get_id(NULL, &wid));
  INVALID(hw_worker_get_id(w, NULL));
  INVALID(hw_worker_get_state(NULL, &u32));
  INVALID(hw_worker_get_state(w, NULL));
  INVALID(hw_worker_get_provider_id(NULL, &text));
  INVALID(hw_worker_get_provider_id(w, NULL));
  INVALID(hw_worker_get_provider_type(NULL, &text));
  INVALID(hw_worker_get_provider_type(w, NULL));
  INVALID(hw_worker_get_resource_id(NULL, &text));
  INVALID(hw_worker_get_resource_id(w, NULL));
  INVALID(hw_worker_get_current_job(NULL, &text));
  INVALID(hw_worker_get_current_job(w, NULL));
  INVALID(hw_worker_get_image(NULL, &text));
  INVALID(hw_worker_get_image(w, NULL));
  INVALID(hw_worker_get_jobs_executed(NULL, &u64));
  INVALID(hw_worker_get_jobs_executed(w, NULL));
  hw_worker_timestamps ts;
  ts.created_at_ms = 5;
  INVALID(hw_worker_get_timestamps(NULL, &ts));
  INVALID(hw_worker_get_timestamps(w, NULL));
  CHECK(ts.created_at_ms == 5);
  INVALID(hw_worker_get_label_count(NULL, &sz));
  INVALID(hw_worker_get_label_count(w, NULL));
  INVALID(hw_worker_get_capability_count(NULL, &sz));
  INVALID(hw_worker_get_capability_count(w, NULL));
  INVALID(hw_worker_get_label(NULL, "k", &text));
  INVALID(hw_worker_get_label(w, NULL, &text));
  INVALID(hw_worker_get_label(w, "k", NULL));
  INVALID(hw_worker_get_label(w, BAD_UTF8, &text));
  const char *key = (const char *)SENTINEL;
  INVALID(hw_worker_get_label_at(NULL, 0, &key, &text));
  INVALID(hw_worker_get_label_at(w, 0, NULL, &text));
  INVALID(hw_worker_get_label_at(w, 0, &key, NULL));
  INVALID(hw_worker_get_label_at(w, 0, &key, &text)); /* no labels: index out of range */
  INVALID(hw_worker_get_capability_at(NULL, 0, &text));
  INVALID(hw_worker_get_capability_at(w, 0, NULL));
  INVALID(hw_worker_get_capability_at(w, (size_t)-1, &text));
  INVALID(hw_worker_to_json(NULL, &owned));
  INVALID(hw_worker_to_json(w, NULL));
  CHECK(key == (const char *)SENTINEL && text == (const char *)SENTINEL);
  CHECK(owned == (char *)SENTINEL && u64 == 12345 && sz == 12345);
  hw_worker_free(NULL);
  const hw_worker *borrowed = (const hw_worker *)SENTINEL;
  INVALID(hw_worker_list_len(NULL, &sz));
  INVALID(hw_worker_list_len(list, NULL));
  INVALID(hw_worker_list_get(NULL, 0, &borrowed));
  INVALID(hw_worker_list_get(list, 0, NULL));
  INVALID(hw_worker_list_get(list, 1, &borrowed));
  INVALID(hw_worker_list_get_reason(NULL, 0, &u32));
  INVALID(hw_worker_list_get_reason(list, 0, NULL));
  INVALID(hw_worker_list_get_reason(list, 0, &u32)); /* a find result has no reasons */
  CHECK(borrowed == (const hw_worker *)SENTINEL);
  hw_worker_list_free(NULL);

  /* ---- manager ---- */
  out = SENTINEL;
  INVALID(hw_manager_config_default(NULL));
  INVALID(hw_manager_new(NULL, &config, (hw_manager **)&out));
  INVALID(hw_manager_new(reg, NULL, (hw_manager **)&out));
  INVALID(hw_manager_new(reg, &config, NULL));
  hw_manager_config bad = config;
  bad.heartbeat_timeout_ms = 0;
  INVALID(hw_manager_new(reg, &bad, (hw_manager **)&out));
  bad = config;
  bad.max_unhealthy_fraction = 1.5;
  INVALID(hw_manager_new(reg, &bad, (hw_manager **)&out));
  bad = config;
  bad.max_mass_expiry_hold_ms = 0;
  INVALID(hw_manager_new(reg, &bad, (hw_manager **)&out));
  bad = config;
  bad.max_workers = 0;
  INVALID(hw_manager_new(reg, &bad, (hw_manager **)&out));
  INVALID(hw_manager_new_from_json(NULL, "{}", (hw_manager **)&out));
  INVALID(hw_manager_new_from_json(reg, NULL, (hw_manager **)&out));
  INVALID(hw_manager_new_from_json(reg, "{}", NULL));
  INVALID(hw_manager_new_from_json(reg, BAD_UTF8, (hw_manager **)&out));
  INVALID(hw_manager_new_from_json(reg, "{\"no_such_field\": 1}", (hw_manager **)&out));
  INVALID(hw_manager_new_from_json(reg, "{\"min_ready_workers\": 20}", (hw_manager **)&out));
  CHECK(out == SENTINEL);
  hw_manager_config got;
  got.max_workers = 4242;
  INVALID(hw_manager_get_config(NULL, &got));
  INVALID(hw_manager_get_config(mgr, NULL));
  CHECK(got.max_workers == 4242);
  hw_manager_free(NULL);

  hw_provider_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.create_worker = bad_create;
  cb.destroy_worker = bad_destroy;
  cb.list_workers = bad_list;
  INVALID(hw_manager_register_provider(NULL, "bad", "docker", &cb));
  INVALID(hw_manager_register_provider(mgr, NULL, "docker", &cb));
  INVALID(hw_manager_register_provider(mgr, "bad", NULL, &cb));
  INVALID(hw_manager_register_provider(mgr, "bad", "docker", NULL));
  INVALID(hw_manager_register_provider(mgr, BAD_UTF8, "docker", &cb));
  INVALID(hw_manager_register_provider(mgr, "bad", BAD_UTF8, &cb));
  INVALID(hw_manager_register_provider(mgr, LONG_PROVIDER, "docker", &cb));
  INVALID(hw_manager_register_provider(mgr, "bad", "podman", &cb));
  hw_provider_callbacks incomplete = cb;
  incomplete.destroy_worker = NULL;
  INVALID(hw_manager_register_provider(mgr, "bad", "docker", &incomplete));
  CHECK_OK(hw_manager_register_provider(mgr, "bad", "docker", &cb));
  INVALID(hw_manager_unregister_provider(NULL, "bad"));
  INVALID(hw_manager_unregister_provider(mgr, NULL));
  INVALID(hw_manager_unregister_provider(mgr, BAD_UTF8));
  CHECK_STATUS(hw_manager_unregister_provider(mgr, "nope"), HW_ERR_PROVIDER_NOT_FOUND);
  /* Outside a callback there is no call object. */
  INVALID(hw_provider_call_set_error(NULL, "x"));
  INVALID(hw_provider_call_set_resource_id(NULL, "x"));
  INVALID(hw_provider_call_add_metadata(NULL, "k", "v"));
  INVALID(hw_provider_call_get_metadata(NULL, "k", &text));
  INVALID(hw_provider_call_add_instance(NULL, "x"));
  uint64_t token = 42;
  INVALID(hw_provider_call_get_fencing_token(NULL, &token));
  CHECK(token == 42);

  INVALID(hw_manager_provision(NULL, "bad", spec, (hw_worker **)&out));
  INVALID(hw_manager_provision(mgr, NULL, spec, (hw_worker **)&out));
  INVALID(hw_manager_provision(mgr, "bad", NULL, (hw_worker **)&out));
  INVALID(hw_manager_provision(mgr, "bad", spec, NULL));
  INVALID(hw_manager_provision(mgr, BAD_UTF8, spec, (hw_worker **)&out));
  CHECK_STATUS(hw_manager_provision(mgr, "nope", spec, (hw_worker **)&out), HW_ERR_PROVIDER_NOT_FOUND);
  CHECK(out == SENTINEL);
  /* The provider's callbacks run their own bad-input checks on the call object. */
  hw_worker *provisioned = NULL;
  CHECK_OK(hw_manager_provision(mgr, "bad", spec, &provisioned));
  hw_worker_id pid;
  memset(&pid, 0, sizeof pid);
  if (provisioned) CHECK_OK(hw_worker_get_id(provisioned, &pid));
  hw_worker_free(provisioned);
  hw_report *trep = NULL;
  CHECK_OK(hw_manager_terminate(mgr, pid, HW_TERMINATION_REASON_REQUESTED, &trep));
  hw_report_summary sum;
  memset(&sum, 0, sizeof sum);
  CHECK_OK(hw_report_get_summary(trep, &sum));
  CHECK(sum.failed == 1 && sum.terminated == 0); /* destroy returned 77: a failure */
  hw_report_free(trep);
  CHECK_OK(hw_manager_reconcile(mgr, &trep));
  hw_report_free(trep);
  CHECK(callback_checks_run == 3);

  INVALID(hw_manager_process_heartbeat(NULL, id));
  INVALID(hw_manager_process_heartbeat(mgr, nil));
  NOT_FOUND(hw_manager_process_heartbeat(mgr, unknown));
  INVALID(hw_manager_run_health_check(NULL, (hw_report **)&out));
  INVALID(hw_manager_run_health_check(mgr, NULL));
  INVALID(hw_manager_cleanup(NULL, (hw_report **)&out));
  INVALID(hw_manager_cleanup(mgr, NULL));
  INVALID(hw_manager_should_scale_up(NULL, 1, &flag));
  INVALID(hw_manager_should_scale_up(mgr, 1, NULL));
  INVALID(hw_manager_should_scale_down(NULL, &flag));
  INVALID(hw_manager_should_scale_down(mgr, NULL));
  hw_scaling_plan plan;
  plan.wanted = 999;
  INVALID(hw_manager_plan_scaling(NULL, 1, &plan, &owned));
  INVALID(hw_manager_plan_scaling(mgr, 1, NULL, &owned));
  INVALID(hw_manager_plan_scaling(mgr, 1, &plan, NULL));
  CHECK(plan.wanted == 999 && owned == (char *)SENTINEL);
  INVALID(hw_manager_set_scaling_target(NULL, "bad", spec));
  INVALID(hw_manager_set_scaling_target(mgr, NULL, spec));
  INVALID(hw_manager_set_scaling_target(mgr, "bad", NULL));
  INVALID(hw_manager_set_scaling_target(mgr, BAD_UTF8, spec));
  CHECK_STATUS(hw_manager_set_scaling_target(mgr, "nope", spec), HW_ERR_PROVIDER_NOT_FOUND);
  INVALID(hw_manager_clear_scaling_target(NULL));
  INVALID(hw_manager_drain(NULL, id, (hw_worker **)&out));
  INVALID(hw_manager_drain(mgr, nil, (hw_worker **)&out));
  INVALID(hw_manager_drain(mgr, id, NULL));
  NOT_FOUND(hw_manager_drain(mgr, unknown, (hw_worker **)&out));
  INVALID(hw_manager_terminate(NULL, id, HW_TERMINATION_REASON_REQUESTED, (hw_report **)&out));
  INVALID(hw_manager_terminate(mgr, nil, HW_TERMINATION_REASON_REQUESTED, (hw_report **)&out));
  INVALID(hw_manager_terminate(mgr, id, 10, (hw_report **)&out));
  INVALID(hw_manager_terminate(mgr, id, HW_TERMINATION_REASON_REQUESTED, NULL));
  NOT_FOUND(hw_manager_terminate(mgr, unknown, HW_TERMINATION_REASON_REQUESTED, (hw_report **)&out));
  INVALID(hw_manager_reconcile(NULL, (hw_report **)&out));
  INVALID(hw_manager_reconcile(mgr, NULL));
  INVALID(hw_manager_tick(NULL, 0, (hw_report **)&out));
  INVALID(hw_manager_tick(mgr, 0, NULL));
  INVALID(hw_manager_new_replicated(NULL, &config, "h", 1000, (hw_manager **)&out));
  INVALID(hw_manager_new_replicated(reg, NULL, "h", 1000, (hw_manager **)&out));
  INVALID(hw_manager_new_replicated(reg, &config, NULL, 1000, (hw_manager **)&out));
  INVALID(hw_manager_new_replicated(reg, &config, BAD_UTF8, 1000, (hw_manager **)&out));
  INVALID(hw_manager_new_replicated(reg, &config, "h", 1000, NULL));
  /* The lease's holder and ttl are checked on every registry (the in-memory one too). */
  INVALID(hw_manager_new_replicated(reg, &config, "", 1000, (hw_manager **)&out));
  INVALID(hw_manager_new_replicated(reg, &config, "h", 0, (hw_manager **)&out));
  INVALID(hw_manager_new_replicated(reg, &config, "h", 2, (hw_manager **)&out));
  /* At most HW_MAX_DURATION_MS (100 years), as the config's durations. */
  INVALID(hw_manager_new_replicated(reg, &config, "h", HW_MAX_DURATION_MS + 1, (hw_manager **)&out));
  INVALID(hw_manager_new_replicated(reg, &config, "h", UINT64_MAX, (hw_manager **)&out));
  INVALID(hw_manager_is_leader(NULL, &flag));
  INVALID(hw_manager_is_leader(mgr, NULL));
  INVALID(hw_manager_step_down(NULL));
  INVALID(hw_manager_stats_json(NULL, &owned));
  INVALID(hw_manager_stats_json(mgr, NULL));
  /* The read-outs: NULL for the manager or either out-param, the out-params untouched. */
  size_t n_items = 777;
  INVALID(hw_manager_providers(NULL, (hw_provider_name **)&out, &n_items));
  INVALID(hw_manager_providers(mgr, NULL, &n_items));
  INVALID(hw_manager_providers(mgr, (hw_provider_name **)&out, NULL));
  INVALID(hw_manager_provider_backoff(NULL, (hw_provider_backoff **)&out, &n_items));
  INVALID(hw_manager_provider_backoff(mgr, NULL, &n_items));
  INVALID(hw_manager_provider_backoff(mgr, (hw_provider_backoff **)&out, NULL));
  INVALID(hw_manager_pending_destroys(NULL, (hw_pending_destroy **)&out, &n_items));
  INVALID(hw_manager_pending_destroys(mgr, NULL, &n_items));
  INVALID(hw_manager_pending_destroys(mgr, (hw_pending_destroy **)&out, NULL));
  INVALID(hw_manager_interruptions(NULL, (hw_interruption **)&out, &n_items));
  INVALID(hw_manager_interruptions(mgr, NULL, &n_items));
  INVALID(hw_manager_interruptions(mgr, (hw_interruption **)&out, NULL));
  INVALID(hw_manager_pending_orphans(NULL, (hw_pending_orphan **)&out, &n_items));
  INVALID(hw_manager_pending_orphans(mgr, NULL, &n_items));
  INVALID(hw_manager_pending_orphans(mgr, (hw_pending_orphan **)&out, NULL));
  INVALID(hw_manager_pending_orphans_of(NULL, "p", (hw_pending_orphan **)&out, &n_items));
  INVALID(hw_manager_pending_orphans_of(mgr, NULL, (hw_pending_orphan **)&out, &n_items));
  INVALID(hw_manager_pending_orphans_of(mgr, "p", NULL, &n_items));
  INVALID(hw_manager_pending_orphans_of(mgr, "p", (hw_pending_orphan **)&out, NULL));
  /* An invalid provider id is refused as by every call taking one; an unknown one (not
   * registered, no orphan pending) is HW_ERR_PROVIDER_NOT_FOUND. */
  INVALID(hw_manager_pending_orphans_of(mgr, "", (hw_pending_orphan **)&out, &n_items));
  INVALID(hw_manager_pending_orphans_of(mgr, BAD_UTF8, (hw_pending_orphan **)&out, &n_items));
  INVALID(hw_manager_pending_orphans_of(mgr, LONG_PROVIDER, (hw_pending_orphan **)&out, &n_items));
  CHECK_STATUS(hw_manager_pending_orphans_of(mgr, "nope", (hw_pending_orphan **)&out, &n_items),
               HW_ERR_PROVIDER_NOT_FOUND);
  INVALID(hw_manager_scaling_target(NULL, &owned, (hw_worker_spec **)&out));
  INVALID(hw_manager_scaling_target(mgr, NULL, (hw_worker_spec **)&out));
  INVALID(hw_manager_scaling_target(mgr, &owned, NULL));
  hw_leader_state seen;
  seen.term = 777;
  INVALID(hw_manager_leader(NULL, &seen, &flag));
  INVALID(hw_manager_leader(mgr, NULL, &flag));
  INVALID(hw_manager_leader(mgr, &seen, NULL));
  CHECK(n_items == 777 && seen.term == 777);
  /* Their frees take NULL (whatever the count). */
  hw_provider_names_free(NULL, 0);
  hw_provider_backoffs_free(NULL, 0);
  hw_pending_destroys_free(NULL, 3);
  hw_interruptions_free(NULL, 0);
  hw_pending_orphans_free(NULL, 5);
  INVALID(hw_manager_metrics_text(NULL, &owned));
  INVALID(hw_manager_metrics_text(mgr, NULL));
  INVALID(hw_manager_metrics_set_timing(NULL, false));
  INVALID(hw_manager_metrics_timing(NULL, &flag));
  INVALID(hw_manager_metrics_timing(mgr, NULL));
  CHECK(out == SENTINEL && owned == (char *)SENTINEL && flag);

  /* ---- pools, demand, interruptions, fit filters ---- */
  size_t drained = 777;
  INVALID(hw_manager_set_pools_json(NULL, "[]", &drained));
  INVALID(hw_manager_set_pools_json(mgr, NULL, &drained));
  INVALID(hw_manager_set_pools_json(mgr, "[]", NULL));
  INVALID(hw_manager_set_pools_json(mgr, "not json", &drained));
  INVALID(hw_manager_set_pools_json(mgr, BAD_UTF8, &drained));
  CHECK_STATUS(hw_manager_set_pools_json(
                   mgr, "[{\"name\": \"p\", \"provider_id\": \"nope\", \"template\": {}}]", &drained),
               HW_ERR_PROVIDER_NOT_FOUND);
  INVALID(hw_manager_add_pool(NULL, "p", "bad", spec, 0, 1, 0));
  INVALID(hw_manager_add_pool(mgr, NULL, "bad", spec, 0, 1, 0));
  INVALID(hw_manager_add_pool(mgr, "p", NULL, spec, 0, 1, 0));
  INVALID(hw_manager_add_pool(mgr, "p", "bad", NULL, 0, 1, 0));
  INVALID(hw_manager_add_pool(mgr, "no spaces", "bad", spec, 0, 1, 0));
  INVALID(hw_manager_add_pool(mgr, BAD_UTF8, "bad", spec, 0, 1, 0));
  INVALID(hw_manager_add_pool(mgr, "p", BAD_UTF8, spec, 0, 1, 0));
  INVALID(hw_manager_add_pool(mgr, "p", "bad", spec, 2, 1, 0)); /* min_ready > max_workers */
  CHECK_STATUS(hw_manager_add_pool(mgr, "p", "nope", spec, 0, 1, 0), HW_ERR_PROVIDER_NOT_FOUND);
  INVALID(hw_manager_remove_pool(NULL, "p", &drained));
  INVALID(hw_manager_remove_pool(mgr, NULL, &drained));
  INVALID(hw_manager_remove_pool(mgr, BAD_UTF8, &drained));
  INVALID(hw_manager_remove_pool(mgr, "p", NULL));
  INVALID(hw_manager_remove_pool(mgr, "p", &drained)); /* no such pool */
  INVALID(hw_manager_get_pools_json(NULL, &owned));
  INVALID(hw_manager_get_pools_json(mgr, NULL));
  INVALID(hw_manager_plan_pools_json(NULL, "[]", &owned));
  INVALID(hw_manager_plan_pools_json(mgr, NULL, &owned));
  INVALID(hw_manager_plan_pools_json(mgr, "[]", NULL));
  INVALID(hw_manager_plan_pools_json(mgr, "[{\"count\": 1, \"lables\": {}}]", &owned));
  INVALID(hw_manager_plan_pools_json(mgr, "[{\"count\": -1}]", &owned));
  INVALID(hw_manager_plan_pools_json(mgr, BAD_UTF8, &owned));
  INVALID(hw_manager_tick_demand(NULL, "[]", (hw_report **)&out));
  INVALID(hw_manager_tick_demand(mgr, NULL, (hw_report **)&out));
  INVALID(hw_manager_tick_demand(mgr, "[]", NULL));
  INVALID(hw_manager_tick_demand(mgr, "{", (hw_report **)&out));
  INVALID(hw_manager_tick_demand(mgr, BAD_UTF8, (hw_report **)&out));
  INVALID(hw_manager_notify_interruption(NULL, id, 5000, (hw_worker **)&out));
  INVALID(hw_manager_notify_interruption(mgr, nil, 5000, (hw_worker **)&out));
  INVALID(hw_manager_notify_interruption(mgr, id, 5000, NULL));
  NOT_FOUND(hw_manager_notify_interruption(mgr, unknown, 5000, (hw_worker **)&out));
  INVALID(hw_worker_filter_set_fits(NULL, spec));
  INVALID(hw_worker_filter_set_fits(filter, NULL));
  INVALID(hw_worker_filter_set_architecture(NULL, HW_ARCHITECTURE_ARM64));
  INVALID(hw_worker_filter_set_architecture(filter, 3));
  {
    hw_worker_counts pc;
    pc.total = 777;
    INVALID(hw_registry_pool_counts(NULL, "p", &pc));
    INVALID(hw_registry_pool_counts(reg, NULL, &pc));
    INVALID(hw_registry_pool_counts(reg, BAD_UTF8, &pc));
    INVALID(hw_registry_pool_counts(reg, "p", NULL));
    CHECK(pc.total == 777);
  }
  CHECK(drained == 777 && out == SENTINEL && owned == (char *)SENTINEL);

  /* ---- the positional form: a JSON object written as the array of its values ----
     serde's derived readers would take it (a spec from "[]"); only the documented object
     form is accepted, at the top and inside, with a message naming the array. */
#define POSITIONAL(call)                                                                 \
  do {                                                                                 \
    INVALID(call);                                                                     \
    CHECK(strstr(hw_last_error_message(), "invalid type: array, expected") != NULL);   \
  } while (0)
  POSITIONAL(hw_worker_spec_from_json("[]", (hw_worker_spec **)&out));
  POSITIONAL(hw_worker_spec_from_json("[\"img\"]", (hw_worker_spec **)&out));
  POSITIONAL(hw_worker_spec_from_json("{\"image\": \"img\", \"resources\": [2.0, 0, 0, 1]}",
                                      (hw_worker_spec **)&out));
  POSITIONAL(hw_manager_new_from_json(reg, "[]", (hw_manager **)&out));
  POSITIONAL(hw_manager_new_from_json(reg, "[60, 30, 300]", (hw_manager **)&out));
  POSITIONAL(hw_manager_set_pools_json(mgr, "[[\"p\", \"bad\", {\"image\": \"x\"}]]", &drained));
  POSITIONAL(hw_manager_set_pools_json(
      mgr, "[{\"name\": \"p\", \"provider_id\": \"bad\", \"template\": [\"x\"]}]", &drained));
  POSITIONAL(hw_manager_set_pools_json(
      mgr, "[{\"name\": \"p\", \"provider_id\": \"bad\", \"template\": {\"resources\": []}}]",
      &drained));
  POSITIONAL(hw_manager_plan_pools_json(mgr, "[[{}, [], {}, null, 3]]", &owned));
  POSITIONAL(hw_manager_plan_pools_json(mgr, "[{\"resources\": [1.0], \"count\": 1}]", &owned));
  POSITIONAL(hw_manager_tick_demand(mgr, "[[{}, [], {}, null, 3]]", (hw_report **)&out));
  POSITIONAL(hw_manager_tick_demand(mgr, "[{\"resources\": [], \"count\": 1}]",
                                    (hw_report **)&out));
#undef POSITIONAL
  {
    /* A snapshot, its records, and the specs and handles inside them: HW_ERR_SNAPSHOT. */
    static const char *const positional_snapshots[] = {
        "[\"hodei-workers.snapshot/1\", 0, 0, []]",
        "{\"format\": \"hodei-workers.snapshot/1\", \"seq\": 0, \"taken_at\": 0, \"workers\": [[]]}",
    };
    hw_registry *fresh = NULL;
    REQUIRE_OK(hw_registry_new(&fresh));
    for (size_t i = 0; i < sizeof positional_snapshots / sizeof *positional_snapshots; i++) {
      CHECK_STATUS(hw_registry_restore(fresh, positional_snapshots[i]), HW_ERR_SNAPSHOT);
      CHECK(strstr(hw_last_error_message(), "invalid type: array, expected") != NULL);
    }
    /* A real snapshot with its first worker's spec written positionally. */
    char *snap = NULL;
    CHECK_OK(hw_registry_snapshot(reg, &snap));
    char *spec_at = snap != NULL ? strstr(snap, "\"spec\":{") : NULL;
    CHECK(spec_at != NULL);
    if (spec_at != NULL) {
      /* Replace the spec object by an array of one value: "spec":["img"] + the rest. */
      char *end = strstr(spec_at, "\"state\":");
      CHECK(end != NULL);
      if (end != NULL) {
        size_t head = (size_t)(spec_at - snap) + strlen("\"spec\":");
        size_t size = head + strlen("[\"img\"],") + strlen(end) + 1;
        char *bad_snap = malloc(size);
        CHECK(bad_snap != NULL);
        if (bad_snap != NULL) {
          memcpy(bad_snap, snap, head);
          strcpy(bad_snap + head, "[\"img\"],");
          strcat(bad_snap, end);
          CHECK_STATUS(hw_registry_restore(fresh, bad_snap), HW_ERR_SNAPSHOT);
          CHECK(strstr(hw_last_error_message(), "invalid type: array, expected") != NULL);
          free(bad_snap);
        }
      }
      /* The snapshot itself restores (nothing was changed by the refusals). */
      CHECK_OK(hw_registry_restore(fresh, snap));
    }
    hw_string_free(snap);
    hw_registry_free(fresh);
  }
  CHECK(drained == 777 && out == SENTINEL && owned == (char *)SENTINEL);
  /* ---- tickers ---- */
  {
    hw_ticker_callbacks tcb;
    memset(&tcb, 0, sizeof tcb); /* no callbacks: reports discarded, no demand */
    hw_ticker *ticker = NULL;
    hw_ticker_stats tstats;
    tstats.ticks = 777;
    INVALID(hw_ticker_start(NULL, 1000, &tcb, (hw_ticker **)&out));
    INVALID(hw_ticker_start(mgr, 1000, NULL, (hw_ticker **)&out));
    INVALID(hw_ticker_start(mgr, 1000, &tcb, NULL));
    INVALID(hw_ticker_start(mgr, 0, &tcb, (hw_ticker **)&out));
    INVALID(hw_ticker_stop(NULL));
    INVALID(hw_ticker_get_stats(NULL, &tstats));
    uint64_t dfail = 777;
    INVALID(hw_ticker_get_demand_failures(NULL, &dfail));
    INVALID(hw_ticker_start_demand(NULL, 1000, &tcb, bad_demand_json, (hw_ticker **)&out));
    INVALID(hw_ticker_start_demand(mgr, 1000, NULL, bad_demand_json, (hw_ticker **)&out));
    INVALID(hw_ticker_start_demand(mgr, 1000, &tcb, NULL, (hw_ticker **)&out));
    INVALID(hw_ticker_start_demand(mgr, 1000, &tcb, bad_demand_json, NULL));
    INVALID(hw_ticker_start_demand(mgr, 0, &tcb, bad_demand_json, (hw_ticker **)&out));
    INVALID(hw_ticker_demand_set_json(NULL, "[]"));
    CHECK(tstats.ticks == 777 && dfail == 777 && out == SENTINEL);
    /* A real ticker on a manager of its own (its tick must not touch the fixtures). */
    hw_registry *treg = NULL;
    hw_manager *tmgr = NULL;
    REQUIRE_OK(hw_registry_new(&treg));
    REQUIRE_OK(hw_manager_new(treg, &config, &tmgr));
    REQUIRE_OK(hw_ticker_start(tmgr, 3600000, &tcb, &ticker));
    INVALID(hw_ticker_get_stats(ticker, NULL));
    INVALID(hw_ticker_get_demand_failures(ticker, NULL));
    CHECK_OK(hw_ticker_stop(ticker));
    CHECK_OK(hw_ticker_get_stats(ticker, &tstats));
    CHECK(tstats.ticks <= 1); /* stopped before or after its first tick */
    hw_ticker_free(ticker);
    /* A demand ticker whose callback sets NULL, then malformed JSON: its first tick runs
     * without a demand (a failed call, counted), the ticker goes on. */
    ticker = NULL;
    REQUIRE_OK(hw_ticker_start_demand(tmgr, 3600000, &tcb, bad_demand_json, &ticker));
    dfail = 0;
    for (long spin = 0; dfail == 0 && spin < 100000000L; spin++) {
      if (hw_ticker_get_demand_failures(ticker, &dfail) != HW_OK) break;
    }
    CHECK_OK(hw_ticker_stop(ticker));
    CHECK(dfail == 1);
    CHECK(demand_set_null == HW_ERR_INVALID_ARGUMENT);
    CHECK(demand_set_malformed == HW_ERR_INVALID_ARGUMENT);
    hw_ticker_free(ticker);
    hw_ticker_free(NULL);
    hw_manager_free(tmgr);
    hw_registry_free(treg);
  }

  /* ---- tick reports ---- */
  INVALID(hw_report_get_summary(NULL, &sum));
  INVALID(hw_report_get_summary(rep, NULL));
  INVALID(hw_report_get_lost_job(NULL, 0, &wid, &text));
  INVALID(hw_report_get_lost_job(rep, 0, NULL, &text));
  INVALID(hw_report_get_lost_job(rep, 0, &wid, NULL));
  INVALID(hw_report_get_lost_job(rep, 0, &wid, &text)); /* none: out of range */
  INVALID(hw_report_get_unhealthy(NULL, 0, &wid));
  INVALID(hw_report_get_unhealthy(rep, 0, NULL));
  INVALID(hw_report_get_unhealthy(rep, 0, &wid));
  INVALID(hw_report_get_terminated(NULL, 0, &wid, &u32));
  INVALID(hw_report_get_terminated(rep, 0, NULL, &u32));
  INVALID(hw_report_get_terminated(rep, 0, &wid, NULL));
  INVALID(hw_report_get_terminated(rep, 0, &wid, &u32));
  INVALID(hw_report_get_failed(NULL, 0, &wid));
  INVALID(hw_report_get_failed(rep, 0, NULL));
  INVALID(hw_report_get_failed(rep, 0, &wid));
  INVALID(hw_report_get_drained(NULL, 0, &wid));
  INVALID(hw_report_get_drained(rep, 0, NULL));
  INVALID(hw_report_get_drained(rep, 0, &wid));
  INVALID(hw_report_get_provisioned(NULL, 0, &wid));
  INVALID(hw_report_get_provisioned(rep, 0, NULL));
  INVALID(hw_report_get_provisioned(rep, 0, &wid));
  INVALID(hw_report_get_decision(NULL, 0, &text));
  INVALID(hw_report_get_decision(rep, 0, NULL));
  INVALID(hw_report_get_decision(rep, 1000, &text));
  {
    hw_leader_info li;
    li.term = 4242;
    bool found = false;
    INVALID(hw_report_get_leader(NULL, &li, &found));
    INVALID(hw_report_get_leader(rep, NULL, &found));
    INVALID(hw_report_get_leader(rep, &li, NULL));
    CHECK(li.term == 4242 && !found);
  }
  {
    const char *message = (const char *)SENTINEL;
    bool found = false;
    INVALID(hw_report_get_panicked(NULL, &message, &found));
    INVALID(hw_report_get_panicked(rep, NULL, &found));
    INVALID(hw_report_get_panicked(rep, &message, NULL));
    CHECK(message == (const char *)SENTINEL && !found);
  }
  INVALID(hw_report_get_json(NULL, &text));
  INVALID(hw_report_get_json(rep, NULL));
  CHECK(wid.bytes[0] == 0xab && u32 == 12345 && text == (const char *)SENTINEL);
  hw_report_free(NULL);

  /* After all that, the fixtures still work and the registry holds what it held. */
  CHECK_OK(hw_registry_count(reg, &sz));
  CHECK(sz == 2); /* the worker, and the provisioned one whose destroy keeps failing */
  CHECK_OK(hw_registry_heartbeat(reg, id));

  hw_report_free(rep);
  hw_manager_free(mgr);
  hw_event_free(ev);
  hw_worker_list_free(list);
  hw_worker_free(w);
  hw_subscription_free(sub);
  hw_worker_filter_free(filter);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
  extreme_values();
  huge_inputs();
  return hw_test_report();
}
