/* Heartbeat through the C ABI, timed the same way as the Rust twin
 * (core/benches/heartbeat_loop.rs): the same fleet of N ready workers on a manual clock (one
 * spec with the same image, label, idle timeout and lifetime; fresh ids from the registry),
 * then OPS heartbeats visiting the workers in the order k * STRIDE mod N, best of REPS runs;
 * all that on FLEETS fleets built one after the other, and the best of them is the result.
 *
 *   heartbeat OUT.json 10000 1000000
 *
 * Why several fleets: at 1M workers a fleet's heartbeat time depends on where its tables
 * landed in memory (measured: three fleets alive in one process, visited in turns, 163, 198
 * and 206 ns), and on a shared machine on when it ran; one fleet per program made the C - Rust
 * difference a draw of two layouts and two moments. The C path and the Rust call, on one
 * fleet and in turns, agree within a few ns.
 *
 * Writes [{"size": "10k", "ns": ...}, ...] to OUT.json. HODEI_HB_OPS, HODEI_HB_REPS and
 * HODEI_HB_FLEETS override OPS, REPS and FLEETS (both programs read them): on a loaded
 * machine, shorter loops and more of them give the best-of a better chance of one undisturbed
 * loop. */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c11 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hodei_workers.h"

#define STRIDE 999983u
#define OPS 2000000u
#define REPS 5
#define FLEETS 3
#define T0 1700000000000ull
/* The Rust twin's spec (core/benches/common/mod.rs, shared_spec). */
#define IDLE_TIMEOUT_MS (30ull * 24 * 3600 * 1000)
#define MAX_LIFETIME_MS (365ull * 24 * 3600 * 1000)

#define TRY(call)                                                                   \
  do {                                                                              \
    hw_status st_ = (call);                                                         \
    if (st_ != HW_OK) {                                                             \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, hw_status_str(st_),      \
              hw_last_error_message());                                             \
      exit(1);                                                                      \
    }                                                                               \
  } while (0)

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* A positive count from the environment variable `name`, or `fallback`. */
static uint64_t env_count(const char *name, uint64_t fallback) {
  const char *text = getenv(name);
  unsigned long long v = text != NULL ? strtoull(text, NULL, 10) : 0;
  return v > 0 ? (uint64_t)v : fallback;
}

static void label(size_t n, char *out, size_t len) {
  if (n >= 1000000 && n % 1000000 == 0) snprintf(out, len, "%zuM", n / 1000000);
  else if (n >= 1000 && n % 1000 == 0) snprintf(out, len, "%zuk", n / 1000);
  else snprintf(out, len, "%zu", n);
}

/* Best ns per heartbeat over `reps` runs of `ops` heartbeats on a fleet of n. */
static double run(size_t n, uint64_t ops, uint64_t reps) {
  hw_clock *clock = NULL;
  hw_registry *reg = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker *w = NULL;
  hw_worker_id *ids = malloc(n * sizeof *ids);
  char resource[32];
  double best = 1e30;
  if (ids == NULL) exit(1);
  TRY(hw_clock_new_manual(T0, &clock));
  TRY(hw_registry_new_with_clock(clock, &reg));
  TRY(hw_worker_spec_new("ghcr.io/acme/ci-runner:2024.11", &spec));
  TRY(hw_worker_spec_add_label(spec, "pool", "ci"));
  TRY(hw_worker_spec_set_idle_timeout_ms(spec, IDLE_TIMEOUT_MS));
  TRY(hw_worker_spec_set_max_lifetime_ms(spec, MAX_LIFETIME_MS));
  for (size_t i = 0; i < n; i++) {
    snprintf(resource, sizeof resource, "c-%08zx", i);
    TRY(hw_registry_register(reg, "docker-local", "docker", resource, spec, &w));
    TRY(hw_worker_get_id(w, &ids[i]));
    hw_worker_free(w);
    TRY(hw_registry_update_state(reg, ids[i], HW_WORKER_STATE_READY, &w));
    hw_worker_free(w);
  }
  for (uint64_t rep = 0; rep < reps; rep++) {
    uint64_t k0 = rep * ops;
    double start = now_ns();
    for (uint64_t k = 0; k < ops; k++) {
      size_t i = (size_t)(((k0 + k) * STRIDE) % n);
      if (hw_registry_heartbeat(reg, ids[i]) != HW_OK) exit(1);
    }
    double per = (now_ns() - start) / (double)ops;
    if (per < best) best = per;
  }
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  hw_clock_free(clock);
  free(ids);
  return best;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s OUT.json N...\n", argv[0]);
    return 2;
  }
  FILE *out = fopen(argv[1], "w");
  if (out == NULL) {
    perror(argv[1]);
    return 1;
  }
  uint64_t ops = env_count("HODEI_HB_OPS", OPS);
  uint64_t reps = env_count("HODEI_HB_REPS", REPS);
  uint64_t fleets = env_count("HODEI_HB_FLEETS", FLEETS);
  fprintf(out, "[");
  for (int a = 2; a < argc; a++) {
    size_t n = (size_t)strtoull(argv[a], NULL, 10);
    char name[32];
    if (n == 0) return 2;
    label(n, name, sizeof name);
    double ns = 1e30;
    char each[256] = "";
    size_t used = 0;
    for (uint64_t f = 0; f < fleets; f++) {
      double v = run(n, ops, reps);
      if (v < ns) ns = v;
      int w = snprintf(each + used, sizeof each - used, " %.1f", v);
      if (w > 0) used += (size_t)w;
      if (used >= sizeof each) used = sizeof each - 1;
    }
    printf("C heartbeat, %s workers: %.1f ns (each fleet:%s)\n", name, ns, each);
    fprintf(out, "%s{\"size\":\"%s\",\"ns\":%.2f}", a > 2 ? "," : "", name, ns);
  }
  fprintf(out, "]\n");
  fclose(out);
  return 0;
}
