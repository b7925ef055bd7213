/* Finding workers from C: every filter condition, the find variants, termination reasons,
 * specs built from JSON, stats, and caller-chosen ids. */
#include "harness.h"

#define T0 1700000000000ULL

static size_t find_count(const hw_registry *reg, const hw_worker_filter *f) {
  hw_worker_list *list = NULL;
  size_t n = 999;
  CHECK_OK(hw_registry_find(reg, f, &list));
  CHECK_OK(hw_worker_list_len(list, &n));
  hw_worker_list_free(list);
  return n;
}

static size_t list_count(hw_worker_list *list) {
  size_t n = 999;
  CHECK_OK(hw_worker_list_len(list, &n));
  hw_worker_list_free(list);
  return n;
}

static hw_worker_id reg_worker(const hw_registry *reg, const char *provider, const char *type,
                               const hw_worker_spec *spec, uint32_t state) {
  hw_worker *w = NULL;
  hw_worker_id id;
  memset(&id, 0, sizeof id);
  CHECK_OK(hw_registry_register(reg, provider, type, "r", spec, &w));
  if (w) CHECK_OK(hw_worker_get_id(w, &id));
  hw_worker_free(w);
  if (state != HW_WORKER_STATE_CREATING) {
    CHECK_OK(hw_registry_update_state(reg, id, state, &w));
    hw_worker_free(w);
  }
  return id;
}

int main(void) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_worker_spec *gpu = NULL, *plain = NULL, *copy = NULL;
  REQUIRE_OK(hw_clock_new_manual(T0, &clock));
  REQUIRE_OK(hw_registry_new_with_clock(clock, &reg));

  /* A spec from JSON, and one built by hand: both ways give the same thing. */
  REQUIRE_OK(hw_worker_spec_from_json(
      "{\"image\":\"cuda:12\",\"labels\":{\"pool\":\"ml\"},\"capabilities\":[\"gpu\"],"
      "\"idle_timeout\":60,\"max_lifetime\":7200,\"max_jobs\":2,\"architecture\":\"arm64\","
      "\"resources\":{\"cpu_cores\":8,\"memory_bytes\":1024,\"gpu_count\":1,\"gpu_type\":\"a100\"},"
      "\"environment\":{\"MODE\":\"fast\"}}",
      &gpu));
  REQUIRE_OK(hw_worker_spec_new("x", &plain));
  CHECK_OK(hw_worker_spec_set_image(plain, "cuda:12"));
  CHECK_OK(hw_worker_spec_add_label(plain, "pool", "ml"));
  CHECK_OK(hw_worker_spec_add_capability(plain, "gpu"));
  CHECK_OK(hw_worker_spec_set_idle_timeout_ms(plain, 60000));
  CHECK_OK(hw_worker_spec_set_max_lifetime_ms(plain, 7200000));
  CHECK_OK(hw_worker_spec_set_max_jobs(plain, 2));
  CHECK_OK(hw_worker_spec_set_architecture(plain, HW_ARCHITECTURE_ARM64));
  CHECK_OK(hw_worker_spec_set_resources(plain, 8.0, 1024, 0, 1));
  CHECK_OK(hw_worker_spec_set_gpu_type(plain, "a100"));
  CHECK_OK(hw_worker_spec_add_env(plain, "MODE", "fast"));
  char *a = NULL, *b = NULL, *image = NULL;
  CHECK_OK(hw_worker_spec_to_json(gpu, &a));
  CHECK_OK(hw_worker_spec_to_json(plain, &b));
  CHECK(a && b && strcmp(a, b) == 0);
  hw_string_free(a);
  hw_string_free(b);
  CHECK_OK(hw_worker_spec_clone(gpu, &copy));
  CHECK_OK(hw_worker_spec_get_image(copy, &image));
  CHECK_STR(image, "cuda:12");
  hw_string_free(image);
  /* 0 removes the job limit. */
  CHECK_OK(hw_worker_spec_set_max_jobs(plain, 0));
  CHECK_OK(hw_worker_spec_to_json(plain, &b));
  CHECK(b && strstr(b, "\"max_jobs\":null") != NULL);
  hw_string_free(b);
  hw_worker_spec_free(copy);
  /* The plain workers: no labels, no capabilities, default timeouts. */
  hw_worker_spec_free(plain);
  REQUIRE_OK(hw_worker_spec_new("ubuntu", &plain));

  /* The fleet: ml workers (gpu) on docker-a, plain workers on k8s-b. */
  hw_worker_id ml_ready = reg_worker(reg, "docker-a", "docker", gpu, HW_WORKER_STATE_READY);
  hw_worker_id ml_busy = reg_worker(reg, "docker-a", "docker", gpu, HW_WORKER_STATE_READY);
  hw_worker_id plain_ready = reg_worker(reg, "k8s-b", "kubernetes", plain, HW_WORKER_STATE_READY);
  hw_worker_id plain_new = reg_worker(reg, "k8s-b", "kubernetes", plain, HW_WORKER_STATE_CREATING);
  hw_worker_id conn = reg_worker(reg, "k8s-b", "kubernetes", plain, HW_WORKER_STATE_CONNECTING);
  hw_worker *w = NULL;
  CHECK_OK(hw_registry_assign(reg, ml_busy, "train-1", &w));
  hw_worker_free(w);

  hw_worker_filter *f = NULL;
  CHECK_OK(hw_worker_filter_new(&f));
  CHECK(find_count(reg, f) == 5);
  hw_worker_filter_free(f);
  CHECK_OK(hw_worker_filter_new(&f));
  CHECK_OK(hw_worker_filter_add_state(f, HW_WORKER_STATE_READY));
  CHECK_OK(hw_worker_filter_add_state(f, HW_WORKER_STATE_CREATING));
  CHECK(find_count(reg, f) == 3);
  CHECK_OK(hw_worker_filter_set_provider_id(f, "k8s-b"));
  CHECK(find_count(reg, f) == 2);
  CHECK_OK(hw_worker_filter_set_limit(f, 1));
  CHECK(find_count(reg, f) == 1);
  hw_worker_filter_free(f);
  CHECK_OK(hw_worker_filter_new(&f));
  CHECK_OK(hw_worker_filter_set_provider_type(f, "docker"));
  CHECK(find_count(reg, f) == 2);
  CHECK_OK(hw_worker_filter_set_accepting_jobs(f, true));
  CHECK(find_count(reg, f) == 1);
  hw_worker_filter_free(f);
  CHECK_OK(hw_worker_filter_new(&f));
  CHECK_OK(hw_worker_filter_add_label(f, "pool", "ml"));
  CHECK_OK(hw_worker_filter_add_capability(f, "gpu"));
  CHECK(find_count(reg, f) == 2);
  CHECK_OK(hw_worker_filter_add_capability(f, "tpu"));
  CHECK(find_count(reg, f) == 0);
  hw_worker_filter_free(f);
  CHECK_OK(hw_worker_filter_new(&f));
  CHECK_OK(hw_worker_filter_set_accepting_jobs(f, false));
  CHECK(find_count(reg, f) == 3);
  hw_worker_filter_free(f);

  hw_worker_list *list = NULL;
  CHECK_OK(hw_registry_find_available(reg, &list));
  CHECK(list_count(list) == 2);
  CHECK_OK(hw_registry_find_by_provider(reg, "docker-a", &list));
  CHECK(list_count(list) == 2);
  CHECK_OK(hw_registry_find_by_provider(reg, "nobody", &list));
  CHECK(list_count(list) == 0);

  /* Time passes: 61 s. Heartbeat two workers; idle and silence filters see the rest. */
  uint64_t now = 0;
  CHECK_OK(hw_clock_advance(clock, 61000, &now));
  CHECK_OK(hw_registry_heartbeat(reg, ml_busy));
  CHECK_OK(hw_registry_heartbeat(reg, plain_ready));
  CHECK_OK(hw_worker_filter_new(&f));
  CHECK_OK(hw_worker_filter_set_idle_for_ms(f, 60000));
  CHECK(find_count(reg, f) == 2); /* both ready workers: heartbeats do not reset idleness */
  hw_worker_filter_free(f);
  CHECK_OK(hw_worker_filter_new(&f));
  CHECK_OK(hw_worker_filter_set_unhealthy_for_ms(f, 60000));
  CHECK(find_count(reg, f) == 3); /* ml_ready, plain_new, conn */
  hw_worker_filter_free(f);
  CHECK_OK(hw_registry_find_unhealthy(reg, 60000, &list));
  CHECK(list_count(list) == 2); /* ml_ready and conn: creating is not heartbeat-monitored */
  CHECK_OK(hw_registry_find_startup_expired(reg, 60000, &list));
  CHECK(list_count(list) == 2); /* plain_new and conn never became ready */

  /* Due for termination: the gpu worker idle past its 60 s idle timeout. */
  CHECK_OK(hw_registry_find_for_termination(reg, &list));
  size_t n = 0;
  CHECK_OK(hw_worker_list_len(list, &n));
  CHECK(n == 1);
  if (n == 1) {
    const hw_worker *due = NULL;
    hw_termination_reason why = 99;
    hw_worker_id due_id;
    CHECK_OK(hw_worker_list_get(list, 0, &due));
    CHECK_OK(hw_worker_get_id(due, &due_id));
    CHECK(hw_id_eq(due_id, ml_ready));
    CHECK_OK(hw_worker_list_get_reason(list, 0, &why));
    CHECK(why == HW_TERMINATION_REASON_IDLE);
  }
  hw_worker_list_free(list);

  /* Release without naming the job; the counters follow. */
  char *job = NULL;
  CHECK_OK(hw_registry_release(reg, ml_busy, &job));
  CHECK_STR(job, "train-1");
  hw_string_free(job);
  CHECK_OK(hw_registry_get(reg, ml_busy, &w));
  uint64_t executed = 0;
  if (w) CHECK_OK(hw_worker_get_jobs_executed(w, &executed));
  CHECK(executed == 1);
  hw_worker_free(w);
  hw_worker_counts counts;
  CHECK_OK(hw_registry_stats(reg, &counts));
  CHECK(counts.total == 5 && counts.ready == 3 && counts.busy == 0 && counts.creating == 1 &&
        counts.connecting == 1);
  char *stats = NULL;
  CHECK_OK(hw_registry_stats_json(reg, &stats));
  CHECK(stats && strstr(stats, "\"docker-a\":2") != NULL && strstr(stats, "\"kubernetes\":3") != NULL);
  hw_string_free(stats);
  CHECK_OK(hw_registry_now(reg, &now));
  CHECK(now == T0 + 61000);

  /* A caller-chosen id; and the grace period after a host stall. */
  hw_worker_id chosen;
  CHECK_OK(hw_worker_id_parse("{6F1C4E3A-9B2D-4C8E-A1F0-123456789ABC}", &chosen));
  CHECK_OK(hw_registry_register_with_id(reg, chosen, "k8s-b", "kubernetes", "pod-x", plain, &w));
  hw_worker_id got;
  if (w) CHECK_OK(hw_worker_get_id(w, &got));
  CHECK(hw_id_eq(got, chosen));
  hw_worker_free(w);
  CHECK_OK(hw_registry_grant_grace(reg, now));
  CHECK_OK(hw_registry_find_unhealthy(reg, 60000, &list));
  CHECK(list_count(list) == 0); /* everyone got a fresh grace period */
  (void)plain_new;
  (void)conn;

  hw_worker_spec_free(gpu);
  hw_worker_spec_free(plain);
  hw_registry_free(reg);
  hw_clock_free(clock);
  return hw_test_report();
}
