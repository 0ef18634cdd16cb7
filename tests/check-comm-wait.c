/* SPDX-License-Identifier: MIT */
/* Tests, on the CPU, of the logic around a device communicator that no GPU
 * is needed to check: the bounded wait (done, failure, deadline, stop,
 * each with or without the abort), the agreed steps of making a
 * communicator (no start unless every process is ready, an abort after
 * any failure), and each rank's choice of GPU. */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "abi/shardbound.h"
#include "backends/common/comm_join.h"
#include "backends/common/comm_wait.h"
#include "backends/common/ranks.h"

/* ---- sb_comm_wait ------------------------------------------------------ */

/* Work that is pending for `pending` polls, then answers `then`; a clock
 * that advances one second per reading. */
typedef struct Fake {
  int polls, pending, aborts;
  SbPoll then;
  double clock_s;
} Fake;

static SbPoll fake_poll(void *arg, char *why, size_t why_size) {
  Fake *f = arg;
  if (f->aborts > 0)
    ck_abort_msg("polled after the abort");
  if (f->polls++ < f->pending)
    return SB_POLL_PENDING;
  if (f->then == SB_POLL_FAILED)
    snprintf(why, why_size, "NCCL unhandled system error: peer gone");
  return f->then;
}

static void fake_abort(void *arg) { ((Fake *)arg)->aborts++; }

static double fake_clock(void *arg) { return ((Fake *)arg)->clock_s += 1.0; }

static int wait_fake(Fake *f, double timeout_s, char *err, size_t size) {
  SbWait w = {fake_poll, fake_abort, f, timeout_s, fake_clock};
  err[0] = '\0';
  return sb_comm_wait(&w, 3, "all_reduce", err, size);
}

START_TEST(test_wait_done_returns_ok_without_abort) {
  Fake f = {.pending = 5, .then = SB_POLL_DONE};
  char err[256];
  ck_assert_int_eq(wait_fake(&f, 60, err, sizeof err), SB_OK);
  ck_assert_int_eq(f.polls, 6);
  ck_assert_int_eq(f.aborts, 0);
  ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(test_wait_past_the_deadline_aborts_and_names_the_rank) {
  /* Pending for ever: the clock passes 10 s after ten polls or so. */
  Fake f = {.pending = 1 << 30, .then = SB_POLL_DONE};
  char err[256];
  ck_assert_int_eq(wait_fake(&f, 10, err, sizeof err), SB_ERR_COMMUNICATION);
  ck_assert_int_eq(f.aborts, 1);
  ck_assert_msg(f.polls >= 9 && f.polls <= 11, "%d polls", f.polls);
  ck_assert_msg(strstr(err, "all_reduce on rank 3: no progress within 10 s "
                            "(comm_timeout)") == err &&
                    strstr(err, "aborted") != NULL,
                "%s", err);
}
END_TEST

START_TEST(test_wait_failure_aborts_and_gives_the_library_message) {
  Fake f = {.pending = 2, .then = SB_POLL_FAILED};
  char err[256];
  ck_assert_int_eq(wait_fake(&f, 60, err, sizeof err), SB_ERR_COMMUNICATION);
  ck_assert_int_eq(f.aborts, 1);
  ck_assert_str_eq(err, "all_reduce failed on rank 3: NCCL unhandled system "
                        "error: peer gone");
}
END_TEST

START_TEST(test_wait_stop_gives_up_without_abort_or_message) {
  Fake f = {.pending = 1, .then = SB_POLL_STOP};
  char err[256];
  ck_assert_int_eq(wait_fake(&f, 60, err, sizeof err), SB_COMM_WAIT_STOPPED);
  ck_assert_int_eq(f.aborts, 0);
  ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(test_wait_done_before_the_deadline_is_not_a_timeout) {
  /* Done at the ninth poll, the clock then at 9 or 10 s of 10. */
  Fake f = {.pending = 8, .then = SB_POLL_DONE};
  char err[256];
  ck_assert_int_eq(wait_fake(&f, 10.5, err, sizeof err), SB_OK);
  ck_assert_int_eq(f.aborts, 0);
}
END_TEST

/* The real clock: a short deadline is kept, neither early nor late. */
START_TEST(test_wait_on_the_monotonic_clock_keeps_the_deadline) {
  Fake f = {.pending = 1 << 30, .then = SB_POLL_DONE};
  SbWait w = {fake_poll, fake_abort, &f, 0.1, NULL};
  char err[256];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ck_assert_int_eq(sb_comm_wait(&w, 0, "barrier", err, sizeof err),
                   SB_ERR_COMMUNICATION);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double took = (double)(t1.tv_sec - t0.tv_sec) +
                1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  ck_assert_msg(took >= 0.1 && took < 5, "took %g s", took);
  ck_assert_int_eq(f.aborts, 1);
  ck_assert_msg(strstr(err, "barrier on rank 0: no progress within 0.1 s"),
                "%s", err);
}
END_TEST

/* ---- sb_comm_join -------------------------------------------------------- */

typedef struct Steps {
  int prepare_st, start_st; /* what prepare and start answer */
  Fake init;                /* the initialisation, once started */
  int prepared, started, aborts;
  /* The other processes, as the agreement sees them: the status the vote
   * number k (0, 1, 2) gets from them (SB_OK: all fine). */
  int others[3];
  int votes;
  char last_why[256];
} Steps;

static int steps_prepare(void *arg, char *error, size_t size) {
  Steps *s = arg;
  s->prepared++;
  if (s->prepare_st != SB_OK)
    snprintf(error, size, "rank 1 cannot use cuda device 1");
  return s->prepare_st;
}

static int steps_start(void *arg, char *error, size_t size) {
  Steps *s = arg;
  s->started++;
  if (s->start_st != SB_OK)
    snprintf(error, size, "ncclCommInitRankConfig: invalid usage");
  return s->start_st;
}

static SbPoll steps_poll(void *arg, char *why, size_t size) {
  return fake_poll(&((Steps *)arg)->init, why, size);
}

static void steps_abort(void *arg) {
  Steps *s = arg;
  s->aborts++;
  s->init.aborts = 0; /* polling ends with sb_comm_wait's own abort */
}

/* A vote: the lowest failure wins, this process's own first. */
static int steps_agree(void *arg, int status, const char *why) {
  Steps *s = arg;
  int k = s->votes++;
  snprintf(s->last_why, sizeof s->last_why, "%s", why);
  if (status != SB_OK)
    return status;
  return k < 3 ? s->others[k] : SB_OK;
}

static int join(Steps *s, double timeout_s, char *err, size_t size) {
  SbCommJoinSteps steps = {s, steps_prepare, steps_start, steps_poll,
                           steps_abort};
  SbCommSetup setup = {timeout_s, steps_agree, s};
  return sb_comm_join(&steps, &setup, 1, err, size);
}

START_TEST(test_join_all_ready_starts_waits_and_votes_three_times) {
  Steps s = {.init = {.pending = 3, .then = SB_POLL_DONE}};
  char err[256];
  ck_assert_int_eq(join(&s, 60, err, sizeof err), SB_OK);
  ck_assert_int_eq(s.prepared, 1);
  ck_assert_int_eq(s.started, 1);
  ck_assert_int_eq(s.votes, 3);
  ck_assert_int_eq(s.aborts, 0);
}
END_TEST

/* Another process not ready: nobody starts the collective initialisation,
 * so nothing waits in it. */
START_TEST(test_join_other_process_not_ready_never_starts) {
  Steps s = {.init = {.then = SB_POLL_DONE},
             .others = {SB_ERR_COMMUNICATION, SB_OK, SB_OK}};
  char err[256];
  ck_assert_int_eq(join(&s, 60, err, sizeof err), SB_ERR_COMMUNICATION);
  ck_assert_int_eq(s.started, 0);
  ck_assert_int_eq(s.votes, 1);
  ck_assert_int_eq(s.aborts, 0);
  ck_assert_msg(strstr(err, "another process failed") != NULL, "%s", err);
}
END_TEST

/* This one not ready: it votes its reason and starts nothing. */
START_TEST(test_join_not_ready_votes_its_reason_and_never_starts) {
  Steps s = {.prepare_st = SB_ERR_DEVICE, .init = {.then = SB_POLL_DONE}};
  char err[256];
  ck_assert_int_eq(join(&s, 60, err, sizeof err), SB_ERR_DEVICE);
  ck_assert_int_eq(s.started, 0);
  ck_assert_int_eq(s.votes, 1);
  ck_assert_str_eq(s.last_why, "rank 1 cannot use cuda device 1");
  ck_assert_str_eq(err, "rank 1 cannot use cuda device 1");
}
END_TEST

/* Another process's start failed: this one aborts what it started instead
 * of waiting for a peer that will never come. */
START_TEST(test_join_other_start_failed_aborts_without_waiting) {
  Steps s = {.init = {.pending = 1 << 30, .then = SB_POLL_DONE},
             .others = {SB_OK, SB_ERR_COMMUNICATION, SB_OK}};
  char err[256];
  ck_assert_int_eq(join(&s, 60, err, sizeof err), SB_ERR_COMMUNICATION);
  ck_assert_int_eq(s.started, 1);
  ck_assert_int_eq(s.init.polls, 0);
  ck_assert_int_eq(s.aborts, 1);
  ck_assert_int_eq(s.votes, 2);
}
END_TEST

START_TEST(test_join_own_start_failed_votes_it_and_aborts) {
  Steps s = {.start_st = SB_ERR_COMMUNICATION, .init = {.then = SB_POLL_DONE}};
  char err[256];
  ck_assert_int_eq(join(&s, 60, err, sizeof err), SB_ERR_COMMUNICATION);
  ck_assert_int_eq(s.aborts, 1);
  ck_assert_int_eq(s.votes, 2);
  ck_assert_str_eq(s.last_why, "ncclCommInitRankConfig: invalid usage");
}
END_TEST

/* The initialisation never ends here: the deadline aborts it and the
 * timeout is voted, naming the rank. */
START_TEST(test_join_init_past_the_deadline_aborts_and_votes_timeout) {
  Steps s = {.init = {.pending = 1 << 30, .then = SB_POLL_DONE}};
  char err[256];
  ck_assert_int_eq(join(&s, 0.05, err, sizeof err), SB_ERR_COMMUNICATION);
  ck_assert_int_eq(s.votes, 3);
  ck_assert_msg(strstr(s.last_why, "on rank 1: no progress within 0.05 s") !=
                    NULL,
                "%s", s.last_why);
  ck_assert_str_eq(err, s.last_why);
}
END_TEST

/* Done here but another process's initialisation failed: abort. */
START_TEST(test_join_other_init_failed_aborts) {
  Steps s = {.init = {.then = SB_POLL_DONE},
             .others = {SB_OK, SB_OK, SB_ERR_COMMUNICATION}};
  char err[256];
  ck_assert_int_eq(join(&s, 60, err, sizeof err), SB_ERR_COMMUNICATION);
  ck_assert_int_eq(s.aborts, 1);
  ck_assert_int_eq(s.votes, 3);
}
END_TEST

/* Without an agreement (one process): the same steps, no vote. */
START_TEST(test_join_alone_fails_with_its_own_reason) {
  Steps s = {.init = {.pending = 1, .then = SB_POLL_FAILED}};
  SbCommJoinSteps steps = {&s, steps_prepare, steps_start, steps_poll,
                           steps_abort};
  char err[256];
  ck_assert_int_eq(sb_comm_join(&steps, NULL, 0, err, sizeof err),
                   SB_ERR_COMMUNICATION);
  ck_assert_int_eq(s.votes, 0);
  ck_assert_int_eq(s.aborts, 1);
  ck_assert_str_eq(err, "initialising the communicator failed on rank 0: NCCL "
                        "unhandled system error: peer gone");
}
END_TEST

/* ---- the GPU of a rank ----------------------------------------------------
 */

START_TEST(test_device_ordinal_is_node_rank_mod_count_or_from_the_list) {
  /* Two hosts of 4 GPUs, 4 processes each: node ranks 0..3 on both. */
  for (int node_rank = 0; node_rank < 4; node_rank++)
    ck_assert_int_eq(sb_ranks_device_ordinal(node_rank, 4, NULL, 0), node_rank);
  /* More processes than GPUs: they wrap. */
  ck_assert_int_eq(sb_ranks_device_ordinal(5, 4, NULL, 0), 1);
  ck_assert_int_eq(sb_ranks_device_ordinal(2, 1, NULL, 0), 0);
  /* devices= wins over the count, also wrapped. */
  const int list[3] = {3, 1, 2};
  ck_assert_int_eq(sb_ranks_device_ordinal(0, 4, list, 3), 3);
  ck_assert_int_eq(sb_ranks_device_ordinal(1, 4, list, 3), 1);
  ck_assert_int_eq(sb_ranks_device_ordinal(4, 4, list, 3), 1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("comm-wait");
  TCase *w = tcase_create("wait");
  tcase_add_test(w, test_wait_done_returns_ok_without_abort);
  tcase_add_test(w, test_wait_past_the_deadline_aborts_and_names_the_rank);
  tcase_add_test(w, test_wait_failure_aborts_and_gives_the_library_message);
  tcase_add_test(w, test_wait_stop_gives_up_without_abort_or_message);
  tcase_add_test(w, test_wait_done_before_the_deadline_is_not_a_timeout);
  tcase_add_test(w, test_wait_on_the_monotonic_clock_keeps_the_deadline);
  suite_add_tcase(s, w);
  TCase *j = tcase_create("join");
  tcase_add_test(j, test_join_all_ready_starts_waits_and_votes_three_times);
  tcase_add_test(j, test_join_other_process_not_ready_never_starts);
  tcase_add_test(j, test_join_not_ready_votes_its_reason_and_never_starts);
  tcase_add_test(j, test_join_other_start_failed_aborts_without_waiting);
  tcase_add_test(j, test_join_own_start_failed_votes_it_and_aborts);
  tcase_add_test(j, test_join_init_past_the_deadline_aborts_and_votes_timeout);
  tcase_add_test(j, test_join_other_init_failed_aborts);
  tcase_add_test(j, test_join_alone_fails_with_its_own_reason);
  suite_add_tcase(s, j);
  TCase *d = tcase_create("devices");
  tcase_add_test(d,
                 test_device_ordinal_is_node_rank_mod_count_or_from_the_list);
  suite_add_tcase(s, d);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
