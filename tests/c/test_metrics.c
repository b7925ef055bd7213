/* The manager's metrics from C: OpenMetrics text with the registry's and the manager's numbers,
 * freed with hw_string_free; the duration histograms turned off and on again
 * (hw_manager_metrics_set_timing), the counts going on meanwhile. */
#include "harness.h"

#define T0 1700000000000ULL

static int has(const char *text, const char *needle) {
  if (text == NULL || strstr(text, needle) == NULL) {
    fprintf(stderr, "metrics text lacks %s\n", needle);
    return 0;
  }
  return 1;
}

int main(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  hw_manager_config config;
  hw_worker_spec *spec = NULL;
  hw_worker_filter *filter = NULL;
  hw_subscription *sub = NULL;
  REQUIRE_OK(hw_clock_new_manual(T0, &clock));
  REQUIRE_OK(hw_registry_new_with_clock(clock, &reg));
  REQUIRE_OK(hw_manager_config_default(&config));
  REQUIRE_OK(hw_manager_new(reg, &config, &mgr));
  REQUIRE_OK(hw_worker_spec_new("img", &spec));
  REQUIRE_OK(hw_worker_filter_new(&filter));
  /* A subscriber with room for one event: it drops the rest. */
  REQUIRE_OK(hw_registry_subscribe(reg, 1, false, &sub));

  /* Two workers report in; one takes a job and gives it back, the other takes one. */
  hw_worker *w = NULL;
  hw_worker_id ids[2];
  for (int i = 0; i < 2; i++) {
    REQUIRE_OK(hw_registry_register(reg, "docker-local", "docker", i ? "c-2" : "c-1", spec, &w));
    CHECK_OK(hw_worker_get_id(w, &ids[i]));
    hw_worker_free(w);
    CHECK_OK(hw_registry_update_state(reg, ids[i], HW_WORKER_STATE_READY, &w));
    hw_worker_free(w);
  }
  CHECK_OK(hw_registry_claim(reg, filter, "job-1", &w));
  hw_worker_id busy;
  memset(&busy, 0, sizeof busy);
  if (w) CHECK_OK(hw_worker_get_id(w, &busy));
  hw_worker_free(w);
  char *job = NULL;
  CHECK_OK(hw_registry_release(reg, busy, &job));
  hw_string_free(job);
  CHECK_OK(hw_registry_claim(reg, filter, "job-2", &w));
  hw_worker_free(w);

  hw_report *report = NULL;
  CHECK_OK(hw_manager_tick(mgr, 0, &report));
  hw_report_free(report);

  char *text = NULL;
  CHECK_OK(hw_manager_metrics_text(mgr, &text));
  CHECK(has(text, "# TYPE hodei_workers_workers gauge\n"));
  CHECK(has(text, "hodei_workers_workers{state=\"ready\"} 1\n"));
  CHECK(has(text, "hodei_workers_workers{state=\"busy\"} 1\n"));
  CHECK(has(text, "hodei_workers_workers_by_provider{provider=\"docker-local\"} 2\n"));
  CHECK(has(text, "hodei_workers_jobs_assigned_total 2\n"));
  CHECK(has(text, "hodei_workers_jobs_released_total 1\n"));
  CHECK(has(text, "hodei_workers_heartbeat_monitored_workers 2\n"));
  CHECK(has(text, "hodei_workers_heartbeat_age_seconds{quantile=\"1\"} 0"));
  CHECK(has(text, "hodei_workers_tick_duration_seconds_count 1\n"));
  CHECK(has(text, "# TYPE hodei_workers_ticks counter\n"));
  CHECK(has(text, "hodei_workers_ticks_total 1\n"));
  CHECK(has(text, "# TYPE hodei_workers_health_checks counter\n"));
  CHECK(has(text, "hodei_workers_event_drops_total{subscriber="));
  CHECK(has(text, "hodei_workers_lost_jobs_total 0\n"));
  CHECK(has(text, "hodei_workers_provisions_in_flight 0\n"));
  size_t len = text ? strlen(text) : 0;
  CHECK(len > 6 && strcmp(text + len - 6, "# EOF\n") == 0);
  hw_string_free(text);

  /* Timing off: ticks and health checks are counted, the histograms stand still. */
  bool timing = false;
  CHECK_OK(hw_manager_metrics_timing(mgr, &timing));
  CHECK(timing);
  CHECK_OK(hw_manager_metrics_set_timing(mgr, false));
  CHECK_OK(hw_manager_metrics_timing(mgr, &timing));
  CHECK(!timing);
  for (int i = 0; i < 2; i++) {
    CHECK_OK(hw_manager_tick(mgr, 0, &report));
    hw_report_free(report);
  }
  text = NULL;
  CHECK_OK(hw_manager_metrics_text(mgr, &text));
  CHECK(has(text, "hodei_workers_ticks_total 3\n"));
  CHECK(has(text, "hodei_workers_tick_duration_seconds_count 1\n"));
  hw_string_free(text);
  /* On again: the next tick is observed. */
  CHECK_OK(hw_manager_metrics_set_timing(mgr, true));
  CHECK_OK(hw_manager_metrics_timing(mgr, &timing));
  CHECK(timing);
  CHECK_OK(hw_manager_tick(mgr, 0, &report));
  hw_report_free(report);
  text = NULL;
  CHECK_OK(hw_manager_metrics_text(mgr, &text));
  CHECK(has(text, "hodei_workers_ticks_total 4\n"));
  CHECK(has(text, "hodei_workers_tick_duration_seconds_count 2\n"));
  hw_string_free(text);

  /* Bad input: the documented error, nothing written. */
  char *untouched = (char *)&len;
  CHECK_STATUS(hw_manager_metrics_text(NULL, &untouched), HW_ERR_INVALID_ARGUMENT);
  CHECK(untouched == (char *)&len);
  CHECK_STATUS(hw_manager_metrics_text(mgr, NULL), HW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(hw_manager_metrics_set_timing(NULL, false), HW_ERR_INVALID_ARGUMENT);
  CHECK_OK(hw_manager_metrics_timing(mgr, &timing));
  CHECK(timing);
  CHECK_STATUS(hw_manager_metrics_timing(NULL, &timing), HW_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(hw_manager_metrics_timing(mgr, NULL), HW_ERR_INVALID_ARGUMENT);
  CHECK(timing);

  hw_subscription_free(sub);
  hw_worker_filter_free(filter);
  hw_worker_spec_free(spec);
  hw_manager_free(mgr);
  hw_registry_free(reg);
  hw_clock_free(clock);
  return hw_test_report();
}
