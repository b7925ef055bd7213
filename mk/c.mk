# The C ABI: header generation, C tests (plain and under valgrind), install with pkg-config.
#
#   make header     regenerate include/hodei_workers.h (cbindgen, from ffi/src)
#   make abi-pin    regenerate the header, then re-pin the C ABI (constants, enum values,
#                   structs with their sizes, functions) in ffi/abi/surface.txt; refused unless
#                   ffi/src/abi/version.rs has the bump the change needs (ffi/src/abi/surface.rs)
#   make test-c     header checks + every tests/c program and examples/c, plain and under valgrind
#   make install    PREFIX=/usr/local: libhodei_workers.a, libhodei_workers.so.MAJOR.MINOR (the ABI
#                   version; + the soname link libhodei_workers.so.MAJOR and the dev link
#                   libhodei_workers.so), the header, hodei_workers.pc
#
# The C tests and examples link the static library; the last step of test-c links the installed
# shared one through pkg-config, checks its soname and runs the examples with it.

HW_CC       ?= gcc
HW_CXX      ?= g++
HW_CFLAGS   := -std=c11 -Wall -Wextra -Wpedantic -Werror -g -Iinclude -Itests/c
HW_CLIBS    := -lpthread -ldl -lm
HW_CPROFILE ?= debug
HW_CBUILD   := target/c
HW_CTESTS   := $(sort $(basename $(notdir $(wildcard tests/c/test_*.c))))
HW_CEXAMPLES := $(sort $(basename $(notdir $(wildcard examples/c/*.c))))
HW_VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full \
               --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect
PREFIX      ?= /usr/local
HW_INSTALL_PROFILE ?= release
HW_VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# The ABI version, read where it is written once (ffi/build.rs reads the major there for the
# soname, cbindgen for the header's HW_ABI_VERSION_MAJOR / _MINOR).
HW_ABI_FILE := ffi/src/abi/version.rs
HW_ABI_MAJOR := $(shell sed -n 's/^pub const HW_ABI_VERSION_MAJOR: u32 = \([0-9]*\);$$/\1/p' $(HW_ABI_FILE))
HW_ABI_MINOR := $(shell sed -n 's/^pub const HW_ABI_VERSION_MINOR: u32 = \([0-9]*\);$$/\1/p' $(HW_ABI_FILE))
HW_SONAME   := libhodei_workers.so.$(HW_ABI_MAJOR)
ifeq ($(HW_ABI_MAJOR)$(HW_ABI_MINOR),)
$(error cannot read HW_ABI_VERSION_MAJOR / _MINOR from $(HW_ABI_FILE))
endif

.PHONY: header abi-pin test-c c-lib c-header-checks c-api-coverage c-readme-example c-valgrind-install

test: test-c

header:
	HW_UPDATE_HEADER=1 $(CARGO) test -p hodei-workers-ffi --test header

# The pin is read from the committed header: regenerate it first.
abi-pin: header
	HW_ABI_REPIN=1 $(CARGO) test -p hodei-workers-ffi --lib abi::surface

c-lib:
	$(CARGO) build -p hodei-workers-ffi $(if $(filter release,$(HW_CPROFILE)),--release)

# The header alone, included twice, and as C++ (with the ABI check, unevaluated: no library).
c-header-checks:
	@mkdir -p $(HW_CBUILD)
	printf '#include "hodei_workers.h"\nint main(void) { return HW_OK; }\n' > $(HW_CBUILD)/header_alone.c
	$(HW_CC) $(HW_CFLAGS) -o $(HW_CBUILD)/header_alone $(HW_CBUILD)/header_alone.c
	printf '#include "hodei_workers.h"\n#include "hodei_workers.h"\nint main(void) { return HW_OK; }\n' > $(HW_CBUILD)/header_twice.c
	$(HW_CC) $(HW_CFLAGS) -o $(HW_CBUILD)/header_twice $(HW_CBUILD)/header_twice.c
	printf '#include "hodei_workers.h"\nstatic_assert(sizeof(HW_ABI_COMPATIBLE()) != 0, "the ABI check compiles as C++");\nint main() { hw_status s = HW_OK; hw_worker_state st = HW_WORKER_STATE_READY; return static_cast<int>(s) + static_cast<int>(st) - 2; }\n' > $(HW_CBUILD)/header_cxx.cc
	$(HW_CXX) -x c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -Iinclude -o $(HW_CBUILD)/header_cxx $(HW_CBUILD)/header_cxx.cc
	$(HW_CBUILD)/header_alone && $(HW_CBUILD)/header_twice && $(HW_CBUILD)/header_cxx
	@# The C compiler's layout of each public struct is the one ffi/abi/surface.txt pins (the
	@# pin's sizes come from Rust's #[repr(C)]: this checks that C agrees with them).
	{ echo '#include "hodei_workers.h"'; \
	  awk '$$1 == "struct" && $$3 == "size" { printf "_Static_assert(sizeof(struct %s) == %s && _Alignof(struct %s) == %s, \"struct %s: C and the pin (ffi/abi/surface.txt) disagree\");\n", $$2, $$4, $$2, $$6, $$2 }' ffi/abi/surface.txt; \
	  echo 'int main(void) { return 0; }'; } > $(HW_CBUILD)/header_layout.c
	test "$$(grep -c _Static_assert $(HW_CBUILD)/header_layout.c)" -gt 0
	$(HW_CC) $(HW_CFLAGS) -o $(HW_CBUILD)/header_layout $(HW_CBUILD)/header_layout.c

# Every function the header declares must be exercised by the bad-input suite.
# Every exported function is called in test_bad_input.c, with NULL in each of its pointer
# parameters at least once (the parameters read from the header).
c-api-coverage:
	@$(PYTHON) scripts/c_api_coverage.py include/hodei_workers.h tests/c/test_bad_input.c

# The README's C example is examples/c/quickstart.c, verbatim (so the tests compile it).
c-readme-example:
	@awk '/^## C$$/ {in_c = 1} in_c && /^```c$$/ {code = 1; next} code && /^```$$/ {exit} code {print}' README.md \
	  | diff -u examples/c/quickstart.c - \
	  && echo "c-readme-example: README's C example is examples/c/quickstart.c"

c-valgrind-install:
	@command -v valgrind >/dev/null 2>&1 || { \
	  echo "valgrind missing: installing it with apt-get"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y valgrind; \
	  else sudo apt-get update && sudo apt-get install -y valgrind; fi; }

test-c: c-lib c-header-checks c-api-coverage c-readme-example c-valgrind-install
	@mkdir -p $(HW_CBUILD)
	@set -e; lib=target/$(HW_CPROFILE)/libhodei_workers.a; \
	for t in $(HW_CTESTS); do \
	  $(HW_CC) $(HW_CFLAGS) -o $(HW_CBUILD)/$$t tests/c/$$t.c $$lib $(HW_CLIBS); \
	done; \
	for e in $(HW_CEXAMPLES); do \
	  $(HW_CC) $(HW_CFLAGS) -o $(HW_CBUILD)/example_$$e examples/c/$$e.c $$lib $(HW_CLIBS); \
	done; \
	for t in $(HW_CTESTS); do echo "== $$t"; $(HW_CBUILD)/$$t; done; \
	for e in $(HW_CEXAMPLES); do echo "== example $$e"; $(HW_CBUILD)/example_$$e; done; \
	for t in $(HW_CTESTS); do echo "== valgrind $$t"; HW_TEST_SCALE=1 $(HW_VALGRIND) $(HW_CBUILD)/$$t; done; \
	for e in $(HW_CEXAMPLES); do echo "== valgrind example $$e"; $(HW_VALGRIND) $(HW_CBUILD)/example_$$e; done
	@# The installed library as a user finds it: pkg-config, shared and static. The shared
	@# library names its ABI major (soname), and a program linked with it asks for that name.
	@set -e; p=$(CURDIR)/$(HW_CBUILD)/prefix; rm -rf $$p; \
	$(MAKE) --no-print-directory install PREFIX=$$p HW_INSTALL_PROFILE=$(HW_CPROFILE) >/dev/null; \
	soname=$$(readelf -d $$p/lib/libhodei_workers.so | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'); \
	if [ "$$soname" != "$(HW_SONAME)" ]; then \
	  echo "the installed libhodei_workers.so has soname '$$soname', expected $(HW_SONAME)"; exit 1; \
	fi; \
	echo "== the installed shared library's soname is $(HW_SONAME)"; \
	for e in $(HW_CEXAMPLES); do \
	  PKG_CONFIG_PATH=$$p/lib/pkgconfig $(HW_CC) $(HW_CFLAGS) -o $(HW_CBUILD)/pc_$$e examples/c/$$e.c \
	    $$(PKG_CONFIG_PATH=$$p/lib/pkgconfig pkg-config --cflags --libs hodei_workers); \
	  readelf -d $(HW_CBUILD)/pc_$$e | grep -q "(NEEDED).*\[$(HW_SONAME)\]" \
	    || { echo "pc_$$e does not ask for $(HW_SONAME)"; exit 1; }; \
	  LD_LIBRARY_PATH=$$p/lib $(HW_CBUILD)/pc_$$e >/dev/null; \
	  LD_LIBRARY_PATH=$$p/lib $(HW_VALGRIND) $(HW_CBUILD)/pc_$$e >/dev/null; \
	  echo "== example $$e built with pkg-config against the installed shared library ($(HW_SONAME)), plain and under valgrind: ok"; \
	done

install:
	$(CARGO) build -p hodei-workers-ffi $(if $(filter release,$(HW_INSTALL_PROFILE)),--release)
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 644 target/$(HW_INSTALL_PROFILE)/libhodei_workers.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 target/$(HW_INSTALL_PROFILE)/libhodei_workers.so \
	  $(DESTDIR)$(PREFIX)/lib/$(HW_SONAME).$(HW_ABI_MINOR)
	ln -sf $(HW_SONAME).$(HW_ABI_MINOR) $(DESTDIR)$(PREFIX)/lib/$(HW_SONAME)
	ln -sf $(HW_SONAME) $(DESTDIR)$(PREFIX)/lib/libhodei_workers.so
	install -m 644 include/hodei_workers.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(HW_VERSION)|' ffi/hodei_workers.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hodei_workers.pc
