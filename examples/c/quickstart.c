/* hodei-workers from C: register a worker, hand it a job, take it back. */
#include <stdio.h>

#include "hodei_workers.h"

#define TRY(call)                                                                   \
  do {                                                                              \
    hw_status st_ = (call);                                                         \
    if (st_ != HW_OK) {                                                             \
      fprintf(stderr, "%s: %s\n", hw_status_str(st_), hw_last_error_message());     \
      return 1;                                                                     \
    }                                                                               \
  } while (0)

int main(void) {
  hw_registry *reg = NULL;
  hw_worker_spec *spec = NULL;
  hw_worker_filter *ci = NULL;
  hw_worker *w = NULL;
  hw_worker_id id;
  char *job = NULL;
  char text[HW_WORKER_ID_STRING_SIZE];

  /* First: the library this runs with must have the ABI of the header it was built with. */
  if (!HW_ABI_COMPATIBLE()) {
    fprintf(stderr, "libhodei_workers has ABI %#x, this program needs major %d\n",
            (unsigned)hw_abi_version(), HW_ABI_VERSION_MAJOR);
    return 1;
  }

  TRY(hw_registry_new(&reg));
  TRY(hw_worker_spec_new("ubuntu:24.04", &spec));
  TRY(hw_worker_spec_add_label(spec, "pool", "ci"));

  /* The provider started a container; its agent reports in. */
  TRY(hw_registry_register(reg, "docker-local", "docker", "c-1", spec, &w));
  TRY(hw_worker_get_id(w, &id));
  hw_worker_free(w);
  TRY(hw_registry_update_state(reg, id, HW_WORKER_STATE_READY, &w));
  hw_worker_free(w);
  TRY(hw_registry_heartbeat(reg, id));

  /* The scheduler hands out a job atomically... */
  TRY(hw_worker_filter_new(&ci));
  TRY(hw_worker_filter_add_label(ci, "pool", "ci"));
  TRY(hw_registry_claim(reg, ci, "build-1234", &w));
  if (w == NULL) return 1; /* no ready worker matched */
  TRY(hw_worker_id_format(id, text, sizeof text));
  printf("build-1234 runs on worker %s\n", text);
  hw_worker_free(w);

  /* ...and takes it back when done (only if the worker still holds that job). */
  TRY(hw_registry_release_job(reg, id, "build-1234", &job));
  printf("released %s\n", job);
  hw_string_free(job);

  hw_worker_filter_free(ci);
  hw_worker_spec_free(spec);
  hw_registry_free(reg);
  return 0;
}
