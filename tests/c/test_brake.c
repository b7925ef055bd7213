/* The mass-expiry brake as C sees it in the report summary (issue 10 item 13): a fleet where
 * four of five workers die for good. The brake holds (mass_expiry_held, with the counts it
 * judged on, `suspect` included), then gives up after max_mass_expiry_hold_ms
 * (brake_gave_up, brake_held_for_ms) and the dead are declared unhealthy, their job lost. */
#include "harness.h"

#define T0 1700000000000ULL

int main(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  hw_worker_spec *spec = NULL;
  REQUIRE_OK(hw_clock_new_manual(T0, &clock));
  REQUIRE_OK(hw_registry_new_with_clock(clock, &reg));
  REQUIRE_OK(hw_worker_spec_new("runner:1", &spec));
  CHECK_OK(hw_worker_spec_set_idle_timeout_ms(spec, 3600000));
  hw_manager_config config;
  REQUIRE_OK(hw_manager_config_default(&config));
  config.heartbeat_timeout_ms = 60000;
  config.health_check_interval_ms = 30000;
  config.max_workers = 5;
  config.max_mass_expiry_hold_ms = 120000;
  REQUIRE_OK(hw_manager_new(reg, &config, &mgr));

  hw_worker_id ids[5];
  for (int i = 0; i < 5; i++) {
    char resource[16];
    snprintf(resource, sizeof resource, "c-%d", i);
    hw_worker *w = NULL;
    REQUIRE_OK(hw_registry_register(reg, "gone", "docker", resource, spec, &w));
    REQUIRE_OK(hw_worker_get_id(w, &ids[i]));
    hw_worker_free(w);
    hw_worker *ready = NULL;
    CHECK_OK(hw_registry_update_state(reg, ids[i], HW_WORKER_STATE_READY, &ready));
    hw_worker_free(ready);
  }
  hw_worker *busy = NULL;
  CHECK_OK(hw_registry_assign(reg, ids[0], "job-1", &busy));
  hw_worker_free(busy);

  hw_report *report = NULL;
  CHECK_OK(hw_manager_tick(mgr, 0, &report));
  hw_report_free(report);

  int held = 0, gave_up = 0;
  uint64_t now = 0;
  for (int i = 0; i < 8; i++) {
    CHECK_OK(hw_clock_advance(clock, 30000, &now));
    CHECK_OK(hw_registry_heartbeat(reg, ids[4]));
    report = NULL;
    CHECK_OK(hw_manager_tick(mgr, 0, &report));
    hw_report_summary sum;
    memset(&sum, 0xff, sizeof sum);
    CHECK_OK(hw_report_get_summary(report, &sum));
    CHECK(!sum.brake_released);
    CHECK(sum.kind == HW_REPORT_KIND_TICK);
    if (sum.mass_expiry_held) {
      held++;
      CHECK(sum.unhealthy == 0 && !sum.brake_gave_up && sum.brake_held_for_ms == 0);
      CHECK(sum.hold.live == 5 && sum.hold.allowed < sum.hold.suspect);
      CHECK(sum.hold.suspect >= sum.hold.would_expire);
    } else if (sum.brake_gave_up) {
      gave_up++;
      CHECK(sum.brake_held_for_ms == 150000);
      CHECK(sum.hold.would_expire == 4 && sum.hold.suspect == 4 && sum.hold.live == 5);
      CHECK(sum.unhealthy == 4 && sum.lost_jobs == 1);
      hw_worker_id who;
      const char *job = NULL;
      CHECK_OK(hw_report_get_lost_job(report, 0, &who, &job));
      CHECK(hw_id_eq(who, ids[0]));
      CHECK_STR(job, "job-1");
    } else {
      CHECK(sum.hold.would_expire == 0 && sum.hold.suspect == 0 && sum.hold.live == 0);
    }
    hw_report_free(report);
  }
  CHECK(held == 5);
  CHECK(gave_up == 1);

  hw_manager_free(mgr);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
  return hw_test_report();
}
