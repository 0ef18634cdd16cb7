/* SPDX-License-Identifier: MIT */
/* The device and communicator options of the multi-rank backends (device=,
 * devices=, comm=) on any machine: bad values are refused by name, GPU
 * options are refused with the reason where no GPU, CUDA or NCCL is usable,
 * and cpu ranks never load the CUDA runtime. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi/shardbound.h"
#include "tests/backend-testlib.h"

static const char *const rank_backends[] = {"fsdp", "tp"};

/* Whether this process has mapped a file whose name contains `what`. */
static int process_maps(const char *what) {
  FILE *f = fopen("/proc/self/maps", "r");
  ck_assert_ptr_nonnull(f);
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof line, f))
    found = strstr(line, what) != NULL;
  fclose(f);
  return found;
}

/* context_create with the options; the status, the context (or NULL) and
 * the message. */
static int create(const Backend *b, const sb_option *opts, size_t n,
                  sb_context **ctx, char *err, size_t err_size) {
  err[0] = '\0';
  *ctx = NULL;
  return b->d->context_create(NULL, opts, n, ctx, err, err_size);
}

static void expect_refusal(const Backend *b, const sb_option *opts, size_t n,
                           int status, const char *needle) {
  sb_context *ctx;
  char err[1024];
  int st = create(b, opts, n, &ctx, err, sizeof err);
  ck_assert_msg(st == status, "%s: status %s, expected %s (%s)", b->d->name,
                sb_status_to_string(st), sb_status_to_string(status), err);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(err, needle) != NULL, "%s: '%s' not in: %s", b->d->name,
                needle, err);
}

START_TEST(test_cpu_ranks_never_load_the_cuda_runtime) {
  for (size_t k = 0; k < 2; k++) {
    Backend b = load(rank_backends[k]);
    sb_option o[2] = {{"ranks", "3"}, {"device", "cpu"}};
    Ctx c = open_ctx(&b, o, 2);
    const float v[6] = {1, 2, 3, 4, 5, 6};
    sb_tensor *t = tensor(&c, SB_MEM_COEFFICIENTS, 3, 2, 0, v);
    float *back = read_all(&c, t, 6);
    ck_assert(memcmp(back, v, sizeof v) == 0);
    free(back);
    c.d->tensor_free(c.ctx, t);
    c.d->context_destroy(c.ctx);
  }
  ck_assert_msg(!process_maps("libcudart"), "cpu ranks loaded libcudart");
  ck_assert_msg(!process_maps("shardbound-device-cuda"),
                "cpu ranks loaded the CUDA device module");
}
END_TEST

START_TEST(test_device_cuda_is_refused_with_the_reason_or_works) {
  for (size_t k = 0; k < 2; k++) {
    Backend b = load(rank_backends[k]);
    sb_option o[2] = {{"ranks", "2"}, {"device", "cuda"}};
    sb_context *ctx;
    char err[1024];
    int st = create(&b, o, 2, &ctx, err, sizeof err);
#ifndef HAVE_CUDA
    ck_assert_int_eq(st, SB_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err, "this build has no CUDA support") != NULL, "%s",
                  err);
#endif
    if (st == SB_OK) {
      /* A GPU is at hand: the context is real. */
      ck_assert_int_eq(b.d->rank_count(ctx), 2);
      b.d->context_destroy(ctx);
      continue;
    }
    ck_assert_ptr_null(ctx);
    ck_assert_msg(st == SB_ERR_UNSUPPORTED || st == SB_ERR_DEVICE,
                  "status %s: %s", sb_status_to_string(st), err);
    char want[64];
    snprintf(want, sizeof want,
             "%s: option device='cuda' is not available: ", b.d->name);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
    ck_assert_msg(strlen(err) > strlen(want) + 8, "no reason given: %s", err);
  }
}
END_TEST

START_TEST(test_malformed_devices_lists_are_named) {
  static const char *const bad[] = {"",   "x",     "0,", ",1",          "1,,2",
                                    "-1", "0,1,x", "1 ", "99999999999", "0;1"};
  char many[400] = "0";
  for (int i = 1; i <= 64; i++)
    strcat(many, ",0");
  for (size_t k = 0; k < 2; k++) {
    Backend b = load(rank_backends[k]);
    for (size_t i = 0; i <= sizeof bad / sizeof bad[0]; i++) {
      const char *v = i < sizeof bad / sizeof bad[0] ? bad[i] : many;
      sb_option o[2] = {{"device", "cuda"}, {"devices", v}};
      char needle[512];
      snprintf(needle, sizeof needle, "option devices='%s' is not a list", v);
      expect_refusal(&b, o, 2, SB_ERR_INVALID_ARGUMENT, needle);
    }
  }
  /* Refused before any GPU library was touched. */
  ck_assert(!process_maps("libcudart"));
}
END_TEST

START_TEST(test_gpu_options_need_device_cuda) {
  for (size_t k = 0; k < 2; k++) {
    Backend b = load(rank_backends[k]);
    sb_option devices[1] = {{"devices", "0,1"}};
    expect_refusal(&b, devices, 1, SB_ERR_INVALID_ARGUMENT,
                   "option devices='0,1' needs device=cuda");
    sb_option nccl[1] = {{"comm", "nccl"}};
    expect_refusal(&b, nccl, 1, SB_ERR_UNSUPPORTED,
                   "option comm='nccl' needs device=cuda");
    sb_option cpu_nccl[2] = {{"comm", "nccl"}, {"device", "cpu"}};
    expect_refusal(&b, cpu_nccl, 2, SB_ERR_UNSUPPORTED,
                   "option comm='nccl' needs device=cuda");
  }
  ck_assert(!process_maps("libcudart"));
}
END_TEST

START_TEST(test_unknown_device_and_comm_values_are_named) {
  for (size_t k = 0; k < 2; k++) {
    Backend b = load(rank_backends[k]);
    sb_option gpu[1] = {{"device", "gpu"}};
    expect_refusal(&b, gpu, 1, SB_ERR_UNSUPPORTED,
                   "option device='gpu' is not a device kind (expected cpu "
                   "or cuda)");
    sb_option upper[1] = {{"device", "CUDA"}};
    expect_refusal(&b, upper, 1, SB_ERR_UNSUPPORTED, "device='CUDA'");
    sb_option none[1] = {{"device", NULL}};
    expect_refusal(&b, none, 1, SB_ERR_UNSUPPORTED, "device='(null)'");
    sb_option comm[1] = {{"comm", "gloo"}};
    expect_refusal(&b, comm, 1, SB_ERR_UNSUPPORTED,
                   "option comm='gloo' is not a communicator (expected "
                   "loopback, nccl or mpi)");
    sb_option empty[1] = {{"comm", ""}};
    expect_refusal(&b, empty, 1, SB_ERR_UNSUPPORTED, "comm=''");
  }
}
END_TEST

/* comm_timeout bounds NCCL's waits: a positive number of seconds, refused
 * by name otherwise; accepted (and unused) by cpu ranks. */
START_TEST(test_comm_timeout_is_checked_by_name) {
  static const char *const bad[] = {"",    "x",   "0",   "-1", "nan",
                                    "inf", "1e7", "60s", " 5", "5 "};
  for (size_t k = 0; k < 2; k++) {
    Backend b = load(rank_backends[k]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      sb_option o[1] = {{"comm_timeout", bad[i]}};
      char needle[128];
      snprintf(needle, sizeof needle,
               "option comm_timeout='%s' is not a number of seconds", bad[i]);
      expect_refusal(&b, o, 1, SB_ERR_INVALID_ARGUMENT, needle);
    }
    sb_option none[1] = {{"comm_timeout", NULL}};
    expect_refusal(&b, none, 1, SB_ERR_INVALID_ARGUMENT,
                   "comm_timeout='(null)'");
    static const char *const good[] = {"60", "0.5", "1e6"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
      sb_option o[2] = {{"ranks", "2"}, {"comm_timeout", good[i]}};
      sb_context *ctx;
      char err[1024];
      int st = create(&b, o, 2, &ctx, err, sizeof err);
      ck_assert_msg(st == SB_OK, "comm_timeout=%s: %s", good[i], err);
      b.d->context_destroy(ctx);
    }
  }
}
END_TEST

START_TEST(test_comm_nccl_is_refused_with_the_reason_or_works) {
  for (size_t k = 0; k < 2; k++) {
    Backend b = load(rank_backends[k]);
    sb_option o[3] = {{"ranks", "1"}, {"device", "cuda"}, {"comm", "nccl"}};
    sb_context *ctx;
    char err[1024];
    int st = create(&b, o, 3, &ctx, err, sizeof err);
    if (st == SB_OK) {
#if !defined(HAVE_CUDA) || !defined(HAVE_NCCL)
      ck_abort_msg("comm=nccl accepted by a build without NCCL");
#endif
      ck_assert_int_eq(b.d->rank_count(ctx), 1);
      b.d->context_destroy(ctx);
      continue;
    }
    ck_assert_ptr_null(ctx);
    /* No GPU (device=cuda refused first), or a GPU but no NCCL. */
    int no_gpu = strstr(err, "option device='cuda' is not available") != NULL;
    int no_nccl =
        strstr(err, "option comm='nccl' is not available: this build has no "
                    "NCCL") != NULL;
    ck_assert_msg(no_gpu || no_nccl, "%s", err);
#ifdef HAVE_NCCL
    ck_assert_msg(!no_nccl, "%s", err);
#endif
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("rank-devices");
  TCase *tc = tcase_create("options");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_cpu_ranks_never_load_the_cuda_runtime);
  tcase_add_test(tc, test_device_cuda_is_refused_with_the_reason_or_works);
  tcase_add_test(tc, test_malformed_devices_lists_are_named);
  tcase_add_test(tc, test_gpu_options_need_device_cuda);
  tcase_add_test(tc, test_unknown_device_and_comm_values_are_named);
  tcase_add_test(tc, test_comm_nccl_is_refused_with_the_reason_or_works);
  tcase_add_test(tc, test_comm_timeout_is_checked_by_name);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
