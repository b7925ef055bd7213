/* Leadership from C: a single-process manager leads under term 1 as "local"; after
 * hw_manager_step_down it follows, and leader-only calls fail with HW_ERR_NOT_LEADER and change
 * nothing, until a tick takes the lease again and announces it (HW_EVENT_KIND_LEADER_CHANGED). */
#include "harness.h"

int main(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_manager *mgr = NULL;
  hw_worker_spec *spec = NULL;
  hw_manager_config config;
  REQUIRE_OK(hw_clock_new_manual(1700000000000ULL, &clock));
  REQUIRE_OK(hw_registry_new_with_clock(clock, &reg));
  REQUIRE_OK(hw_worker_spec_new("img", &spec));
  REQUIRE_OK(hw_manager_config_default(&config));
  REQUIRE_OK(hw_manager_new(reg, &config, &mgr));

  bool leading = false;
  CHECK_OK(hw_manager_is_leader(mgr, &leading));
  CHECK(leading);

  hw_report *rep = NULL;
  REQUIRE_OK(hw_manager_tick(mgr, 0, &rep));
  hw_report_summary sum;
  CHECK_OK(hw_report_get_summary(rep, &sum));
  CHECK(sum.leading);
  hw_leader_info leader;
  memset(&leader, 0, sizeof leader);
  bool found = false;
  CHECK_OK(hw_report_get_leader(rep, &leader, &found));
  CHECK(found);
  CHECK_STR(leader.holder, "local");
  CHECK(leader.term == 1 && leader.expires_at_ms == UINT64_MAX);
  hw_report_free(rep);

  /* A stepped-down manager follows: leader-only calls are refused. */
  hw_subscription *events = NULL;
  REQUIRE_OK(hw_registry_subscribe(reg, HW_DEFAULT_SUBSCRIPTION_CAPACITY, false, &events));
  CHECK_OK(hw_manager_step_down(mgr));
  CHECK_OK(hw_manager_is_leader(mgr, &leading));
  CHECK(!leading);
  hw_worker *w = NULL;
  CHECK_STATUS(hw_manager_provision(mgr, "cloud", spec, &w), HW_ERR_NOT_LEADER);
  CHECK(w == NULL);
  CHECK(strstr(hw_last_error_message(), "not the leader") != NULL);
  hw_report *rec = NULL;
  CHECK_STATUS(hw_manager_reconcile(mgr, &rec), HW_ERR_NOT_LEADER);
  CHECK(rec == NULL);
  CHECK_STR(hw_status_str(HW_ERR_NOT_LEADER), "HW_ERR_NOT_LEADER");

  /* The next tick takes the lease again (a takeover: grace, reconcile). */
  REQUIRE_OK(hw_manager_tick(mgr, 0, &rep));
  CHECK_OK(hw_report_get_summary(rep, &sum));
  CHECK(sum.leading);
  const char *first = NULL;
  CHECK_OK(hw_report_get_decision(rep, 0, &first));
  CHECK(first != NULL && strncmp(first, "took the lease: local leads under term 1", 40) == 0);
  hw_report_free(rep);
  CHECK_OK(hw_manager_is_leader(mgr, &leading));
  CHECK(leading);

  /* The takeover is announced by a leader-changed event: a kind of this header, not
   * HW_EVENT_KIND_UNKNOWN (which is for kinds newer than the header). */
  int announced = 0;
  hw_event *ev = NULL;
  while (hw_subscription_recv(events, 0, &ev) == HW_OK && ev != NULL) {
    hw_event_kind kind = HW_EVENT_KIND_UNKNOWN;
    CHECK_OK(hw_event_get_kind(ev, &kind));
    char *json = NULL;
    CHECK_OK(hw_event_to_json(ev, &json));
    if (json != NULL && strstr(json, "leader_changed") != NULL) {
      CHECK(kind == HW_EVENT_KIND_LEADER_CHANGED);
      CHECK(strstr(json, "\"holder\":\"local\"") != NULL);
      bool has_worker = true;
      hw_worker_id none;
      CHECK_OK(hw_event_get_worker_id(ev, &has_worker, &none));
      CHECK(!has_worker);
      announced++;
    } else {
      CHECK(kind != HW_EVENT_KIND_UNKNOWN);
    }
    hw_string_free(json);
    hw_event_free(ev);
  }
  CHECK(announced == 1);
  hw_subscription_free(events);

  /* A report that is not a tick's names no leader. */
  REQUIRE_OK(hw_manager_reconcile(mgr, &rec));
  found = true;
  CHECK_OK(hw_report_get_leader(rec, &leader, &found));
  CHECK(!found);
  hw_report_free(rec);

  hw_manager_free(mgr);

  /* A replicated manager on a registry that is not shared between processes always leads. */
  hw_manager *rep_mgr = NULL;
  CHECK_OK(hw_manager_new_replicated(reg, &config, "host-1", 15000, &rep_mgr));
  CHECK_OK(hw_manager_is_leader(rep_mgr, &leading));
  CHECK(leading);
  hw_manager_free(rep_mgr);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
  return hw_test_report();
}
