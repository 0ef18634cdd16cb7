# SPDX-License-Identifier: MIT
# Python tests of the host API's package and the auto_LiRPA drop-in: each
# file is a unittest module run by $(PYTHON); 77 (skipped) where numpy, or
# torch for the drop-in, is missing.
PYTHON_TESTS = \
	tests/python/test_session.py \
	tests/python/test_lirpa_goldens.py \
	tests/python/test_lirpa_torch.py \
	tests/python/test_lirpa_errors.py \
	tests/python/test_example.py
EXTRA_DIST += $(PYTHON_TESTS) tests/python/sbtest.py tests/python/torch_models.py \
	tests/data/goldens-torch tools/compare-auto-lirpa.py
if HAVE_PYTHON
TESTS += $(PYTHON_TESTS)
endif
TEST_EXTENSIONS = .py
PY_LOG_COMPILER = $(PYTHON)
AM_TESTS_ENVIRONMENT += \
	PYTHONPATH='$(abs_top_srcdir)/hosts/python:$(abs_top_srcdir)/tests/python'; \
	SHARDBOUND_HOST_LIBRARY='$(abs_top_builddir)/hosts/api/.libs/libshardbound-host.so.0'; \
	export PYTHONPATH SHARDBOUND_HOST_LIBRARY;
