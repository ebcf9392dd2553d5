# nkern -- build, test, demo, bench.  `make demo` and `make test` install what is missing
# from Debian's packages first (tools/deps.sh), so both work on a fresh Debian machine.
CC      ?= cc
OPT     ?= -O3 -fno-math-errno -fno-trapping-math
WARN    := -Wall -Wextra -Werror
CFLAGS  := -std=c11 $(OPT) -g $(WARN) -fopenmp -fPIC -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc/engine -I/usr/include/x86_64-linux-gnu
LDLIBS  := -llapacke -lopenblas -lz -lm -fopenmp
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

SRC     := $(wildcard src/*/*.c)
OBJ     := $(SRC:src/%.c=build/obj/%.o)
SAN_OBJ := $(SRC:src/%.c=build/san/%.o)
TESTS   := $(wildcard tests/test_*.c)
TEST_BIN := $(TESTS:tests/%.c=build/tests/%)
SAN_TEST_BIN := $(TESTS:tests/%.c=build/san-tests/%)
HDR     := $(wildcard include/*.h src/*/*.h cli/*.h)
CLI_SRC := $(wildcard cli/*.c)

.PHONY: all deps demo test test-quick bench clean san mpi calibrate install uninstall python-test

# The shared library's version comes from NK_VERSION in include/nkern.h; its soname carries the
# major number (libnkern.so.0), so programs linked against it keep working across minor versions.
VERSION := $(shell sed -n 's/^\#define NK_VERSION "\(.*\)"/\1/p' include/nkern.h)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib

all: build/nkern build/libnkern.so $(TEST_BIN)

deps:
	@bash tools/deps.sh

build/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

build/san/%.o: src/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -O1 -c $< -o $@

build/libnkern.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

build/libnkern.so.$(VERSION): $(OBJ)
	$(CC) -shared -Wl,-soname,libnkern.so.$(SOMAJOR) -o $@ $^ $(LDLIBS)

build/libnkern.so: build/libnkern.so.$(VERSION)
	ln -sf libnkern.so.$(VERSION) build/libnkern.so.$(SOMAJOR)
	ln -sf libnkern.so.$(VERSION) $@

build/libnkern-san.a: $(SAN_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/nkern: $(CLI_SRC) build/libnkern.a $(HDR)
	$(CC) $(CFLAGS) -Icli cli/*.c build/libnkern.a -o $@ $(LDLIBS)

build/nkern-san: $(CLI_SRC) build/libnkern-san.a $(HDR)
	$(CC) $(CFLAGS) $(SAN) -O1 -Icli cli/*.c build/libnkern-san.a -o $@ $(LDLIBS)

build/tests/%: tests/%.c build/libnkern.a $(HDR) tests/nk_test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< build/libnkern.a -o $@ $(LDLIBS)

build/san-tests/%: tests/%.c build/libnkern-san.a $(HDR) tests/nk_test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -O1 $< build/libnkern-san.a -o $@ $(LDLIBS)

build/bench: bench/bench.c build/libnkern.a $(HDR)
	$(CC) $(CFLAGS) bench/bench.c build/libnkern.a -o $@ $(LDLIBS)

build/calibrate: bench/calibrate.c build/libnkern.a $(HDR)
	$(CC) $(CFLAGS) bench/calibrate.c build/libnkern.a -o $@ $(LDLIBS)

# the per-op costs of the time model (nk_costs in src/engine/plan.c), and its check
calibrate: build/calibrate
	@build/calibrate

san: build/nkern-san $(SAN_TEST_BIN)

demo: deps
	@$(MAKE) --no-print-directory all
	@bash tools/demo.sh

test: deps
	@$(MAKE) --no-print-directory all san $(if $(shell command -v mpicc),mpi)
	@bash tests/run.sh

bench:
	@bash tools/deps.sh bench
	@$(MAKE) --no-print-directory all
	@bash bench/run.sh

# MPI (issue 19): build/nkern-mpi and the MPI tests, with Debian's OpenMPI and ScaLAPACK; the
# default build never needs them.  src/dist/mpi/ is outside the src/*/*.c wildcard.
MPICC   ?= mpicc
MPI_SRC := $(wildcard src/dist/mpi/*.c)
MPI_LIBS := -lscalapack-openmpi $(LDLIBS)
MPI_TESTS := $(wildcard tests/mpi/test_*.c)

mpi: build/nkern-mpi $(MPI_TESTS:tests/mpi/%.c=build/mpi-tests/%)

build/nkern-mpi: cli/mpi/nkern_mpi.c $(filter-out cli/nkern.c,$(CLI_SRC)) $(MPI_SRC) build/libnkern.a $(HDR)
	$(MPICC) $(CFLAGS) -Icli cli/mpi/nkern_mpi.c $(filter-out cli/nkern.c,$(CLI_SRC)) $(MPI_SRC) build/libnkern.a -o $@ $(MPI_LIBS)

build/mpi-tests/%: tests/mpi/%.c $(MPI_SRC) build/libnkern.a $(HDR)
	@mkdir -p $(dir $@)
	$(MPICC) $(CFLAGS) $< $(MPI_SRC) build/libnkern.a -o $@ $(MPI_LIBS)

# Install the library (shared, versioned, and static), headers, CLI, man page and pkg-config
# file under $(DESTDIR)$(PREFIX).  The CLI is linked statically against libnkern.a.
install: build/nkern build/libnkern.so build/libnkern.a
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin \
	    $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 build/libnkern.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libnkern.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libnkern.so.$(SOMAJOR)
	ln -sf libnkern.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libnkern.so
	install -m 644 build/libnkern.a $(DESTDIR)$(LIBDIR)/
	install -m 644 include/*.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 build/nkern $(DESTDIR)$(PREFIX)/bin/
	install -m 644 docs/nkern.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    tools/nkern.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/nkern.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libnkern.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libnkern.so.$(SOMAJOR) \
	    $(DESTDIR)$(LIBDIR)/libnkern.so $(DESTDIR)$(LIBDIR)/libnkern.a $(DESTDIR)$(LIBDIR)/pkgconfig/nkern.pc \
	    $(DESTDIR)$(PREFIX)/bin/nkern $(DESTDIR)$(PREFIX)/share/man/man1/nkern.1 \
	    $(addprefix $(DESTDIR)$(PREFIX)/include/,$(notdir $(wildcard include/*.h)))

# The Python package's tests (python/tests, pytest from Debian's python3-pytest); `make test`
# runs them too, through tests/test_python.sh.
python-test: build/libnkern.so build/nkern
	/usr/bin/python3 -m pytest -q python/tests

clean:
	rm -rf build
