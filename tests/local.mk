# SPDX-License-Identifier: MIT
# Engine-level tests (goldens, soundness sampling).
# Golden cases, sessions, sampling and random graphs for the engine suites.
ENGINE_TESTLIB = tests/engine-testlib.c tests/engine-testlib.h \
	hosts/api/session_setup.c hosts/api/session_setup.h

check_PROGRAMS += tests/check-engine
tests_check_engine_SOURCES = tests/check-engine.c $(ENGINE_TESTLIB)
tests_check_engine_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(JSON_GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_engine_LDADD = hosts/engine/libsbengine.la plugin/libshardbound.la \
	$(JSON_GLIB_LIBS) $(GLIB_LIBS) $(CHECK_LIBS) -lm

# Data the tests read (copied from the shared VNN-COMP set and goldens).
EXTRA_DIST += tests/data/goldens tests/data/onnx tests/data/vnnlib \
	tests/data/reference_results.csv tests/data/instances.csv

check_PROGRAMS += tests/check-verify
tests_check_verify_SOURCES = tests/check-verify.c $(ENGINE_TESTLIB)
tests_check_verify_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(JSON_GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_verify_LDADD = hosts/engine/libsbengine.la plugin/libshardbound.la \
	$(JSON_GLIB_LIBS) $(GLIB_LIBS) $(CHECK_LIBS) -lm

check_PROGRAMS += tests/check-multirank
tests_check_multirank_SOURCES = tests/check-multirank.c $(ENGINE_TESTLIB)
tests_check_multirank_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(JSON_GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_multirank_LDADD = hosts/engine/libsbengine.la plugin/libshardbound.la \
	$(JSON_GLIB_LIBS) $(GLIB_LIBS) $(CHECK_LIBS) -lm

# Inputs the fuzz harnesses found (tests/data/regress), replayed through
# the harnesses' code paths; the load path is the harness's own file.
check_PROGRAMS += tests/check-regress
tests_check_regress_SOURCES = tests/check-regress.c fuzz/load_path.c fuzz/load_path.h \
	hosts/api/session_setup.c hosts/api/session_setup.h
tests_check_regress_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_regress_LDADD = hosts/engine/libsbengine.la plugin/libshardbound.la \
	$(GLIB_LIBS) $(CHECK_LIBS) -lm
EXTRA_DIST += tests/data/regress
# Ranks as MPI processes: tests/check-mpi.sh runs the communicator's own
# test program and the command under mpirun (-np 2 and 4).
TESTS += tests/check-mpi.sh
EXTRA_DIST += tests/check-mpi.sh
if HAVE_MPI
# Not a test itself (check-mpi.sh runs it under mpirun), so not among
# check_PROGRAMS, which are the tests; check_DATA builds it before the
# tests run.
EXTRA_PROGRAMS = tests/check-comm-mpi
check_DATA = tests/check-comm-mpi$(EXEEXT)
CLEANFILES += tests/check-comm-mpi$(EXEEXT)
tests_check_comm_mpi_SOURCES = tests/check-comm-mpi.c
tests_check_comm_mpi_CFLAGS = $(AM_CFLAGS) $(MPI_CFLAGS) $(CHECK_CFLAGS)
tests_check_comm_mpi_LDADD = backends/common/libsbranks.la \
	backends/common/libsbdevice.la $(MPI_LIBS) $(CHECK_LIBS) -ldl -lm \
	-lpthread
endif
