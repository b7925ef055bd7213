/* The ABI version: the library this program runs with has the ABI its header describes, and
 * says so through hw_abi_version() and HW_ABI_COMPATIBLE(), the check a host makes at
 * start-up (see "ABI VERSION" at the top of the header). */
#include "harness.h"

int main(void) {
  /* The check a host makes first, before any other call. */
  CHECK(HW_ABI_COMPATIBLE());

  uint32_t version = hw_abi_version();
  CHECK(version == HW_ABI_VERSION);
  CHECK(version >> 16 == HW_ABI_VERSION_MAJOR);
  CHECK((version & 0xffffu) == HW_ABI_VERSION_MINOR);

  /* It leaves this thread's last error as it was, like hw_status_str. */
  hw_worker_id id;
  CHECK_STATUS(hw_worker_id_parse("not-a-uuid", &id), HW_ERR_INVALID_ARGUMENT);
  CHECK(strstr(hw_last_error_message(), "hw_worker_id_parse") != NULL);
  CHECK(hw_abi_version() == HW_ABI_VERSION);
  CHECK(strstr(hw_last_error_message(), "hw_worker_id_parse") != NULL);

  return hw_test_report();
}
