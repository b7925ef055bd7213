/* Several pthreads at once: heartbeaters keep their workers alive while claimers take jobs from
 * the same pool and release them. Afterwards: no job ran on two workers at once, every claim was
 * released exactly once, and the counts add up. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "harness.h"

#define WORKERS 16
#define HEARTBEATERS 2
#define CLAIMERS 4

typedef struct shared {
  hw_registry *reg;
  hw_worker_filter *filter;
  hw_worker_id ids[WORKERS];
  int rounds;
} shared;

typedef struct claimer_result {
  int claimed;
  int released;
  int empty; /* claims that found no ready worker */
  int errors;
} claimer_result;

typedef struct heartbeater_arg {
  shared *s;
  int first;
  int errors;
  int beats;
} heartbeater_arg;

typedef struct claimer_arg {
  shared *s;
  int index;
  claimer_result result;
} claimer_arg;

static void *heartbeater(void *p) {
  heartbeater_arg *a = (heartbeater_arg *)p;
  for (int r = 0; r < a->s->rounds * 4; r++) {
    for (int i = a->first; i < WORKERS; i += HEARTBEATERS) {
      if (hw_registry_heartbeat(a->s->reg, a->s->ids[i]) == HW_OK) {
        a->beats++;
      } else {
        a->errors++;
      }
    }
  }
  return NULL;
}

static void *claimer(void *p) {
  claimer_arg *a = (claimer_arg *)p;
  for (int r = 0; r < a->s->rounds; r++) {
    char job[64];
    snprintf(job, sizeof job, "job-%d-%d", a->index, r);
    hw_worker *w = NULL;
    if (hw_registry_claim(a->s->reg, a->s->filter, job, &w) != HW_OK) {
      a->result.errors++;
      continue;
    }
    if (w == NULL) {
      a->result.empty++;
      continue;
    }
    a->result.claimed++;
    hw_worker_id id;
    const char *held = NULL;
    if (hw_worker_get_id(w, &id) != HW_OK || hw_worker_get_current_job(w, &held) != HW_OK ||
        held == NULL || strcmp(held, job) != 0) {
      a->result.errors++;
    }
    hw_worker_free(w);
    /* Release with the expected job: fails if anyone else had taken this worker meanwhile. */
    char *released = NULL;
    if (hw_registry_release_job(a->s->reg, id, job, &released) == HW_OK && released &&
        strcmp(released, job) == 0) {
      a->result.released++;
    } else {
      a->result.errors++;
    }
    hw_string_free(released);
  }
  return NULL;
}

static void *fail_elsewhere(void *p) {
  hw_worker_id id;
  int *ok = (int *)p;
  /* A fresh thread starts without an error; then it gets its own. */
  if (hw_last_error_message()[0] == '\0' &&
      hw_worker_id_parse("nope", &id) == HW_ERR_INVALID_ARGUMENT &&
      strstr(hw_last_error_message(), "hw_worker_id_parse") != NULL) {
    *ok = 1;
  }
  return NULL;
}

int main(void) {
  shared s;
  memset(&s, 0, sizeof s);
  s.rounds = 200 * hw_test_scale();
  hw_worker_spec *spec = NULL;
  REQUIRE_OK(hw_registry_new(&s.reg));
  REQUIRE_OK(hw_worker_filter_new(&s.filter));
  REQUIRE_OK(hw_worker_spec_new("img", &spec));
  for (int i = 0; i < WORKERS; i++) {
    hw_worker *w = NULL;
    REQUIRE_OK(hw_registry_register(s.reg, "pool", "docker", "c", spec, &w));
    REQUIRE_OK(hw_worker_get_id(w, &s.ids[i]));
    hw_worker_free(w);
    REQUIRE_OK(hw_registry_update_state(s.reg, s.ids[i], HW_WORKER_STATE_READY, &w));
    hw_worker_free(w);
  }

  pthread_t threads[HEARTBEATERS + CLAIMERS];
  heartbeater_arg hb[HEARTBEATERS];
  claimer_arg cl[CLAIMERS];
  memset(hb, 0, sizeof hb);
  memset(cl, 0, sizeof cl);
  for (int i = 0; i < HEARTBEATERS; i++) {
    hb[i].s = &s;
    hb[i].first = i;
    CHECK(pthread_create(&threads[i], NULL, heartbeater, &hb[i]) == 0);
  }
  for (int i = 0; i < CLAIMERS; i++) {
    cl[i].s = &s;
    cl[i].index = i;
    CHECK(pthread_create(&threads[HEARTBEATERS + i], NULL, claimer, &cl[i]) == 0);
  }
  for (int i = 0; i < HEARTBEATERS + CLAIMERS; i++) {
    CHECK(pthread_join(threads[i], NULL) == 0);
  }

  int claimed = 0, released = 0;
  for (int i = 0; i < HEARTBEATERS; i++) {
    CHECK(hb[i].errors == 0);
    CHECK(hb[i].beats == s.rounds * 4 * (WORKERS / HEARTBEATERS));
  }
  for (int i = 0; i < CLAIMERS; i++) {
    CHECK(cl[i].result.errors == 0);
    CHECK(cl[i].result.claimed + cl[i].result.empty == s.rounds);
    claimed += cl[i].result.claimed;
    released += cl[i].result.released;
  }
  /* With 16 workers and 4 claimers, a claim never finds the pool empty. */
  CHECK(claimed == CLAIMERS * s.rounds);
  CHECK(released == claimed);

  /* Every worker is ready again, and the jobs executed add up to the releases. */
  hw_worker_counts counts;
  CHECK_OK(hw_registry_stats(s.reg, &counts));
  CHECK(counts.total == WORKERS && counts.ready == WORKERS && counts.busy == 0);
  uint64_t executed = 0;
  for (int i = 0; i < WORKERS; i++) {
    hw_worker *w = NULL;
    CHECK_OK(hw_registry_get(s.reg, s.ids[i], &w));
    uint64_t n = 0;
    if (w) CHECK_OK(hw_worker_get_jobs_executed(w, &n));
    executed += n;
    hw_worker_free(w);
  }
  CHECK(executed == (uint64_t)released);

  /* The last error is per thread: another thread's failure does not replace ours. */
  CHECK_STATUS(hw_registry_count(s.reg, NULL), HW_ERR_INVALID_ARGUMENT);
  pthread_t other;
  int other_saw_own_error = 0;
  CHECK(pthread_create(&other, NULL, fail_elsewhere, &other_saw_own_error) == 0);
  CHECK(pthread_join(other, NULL) == 0);
  CHECK(other_saw_own_error == 1);
  CHECK(strstr(hw_last_error_message(), "hw_registry_count") != NULL);

  hw_worker_spec_free(spec);
  hw_worker_filter_free(s.filter);
  hw_registry_free(s.reg);
  return hw_test_report();
}
