/* SPDX-License-Identifier: MIT */
/* The CPU device's parts (cpu_parts.h): every part runs once, the parts
 * of a call run at the same time, the threads that run them are kept
 * between calls, two callers at once both finish, and a child of fork
 * runs parts with threads of its own. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backends/common/cpu_parts.h"

/* Parts that meet: each waits (up to 5 s) until all of its call's parts
 * have started, which only parts running at the same time can do. */
typedef struct {
  atomic_int *arrived;
  int n;
  int runs;
  int met;
  pid_t thread;
} Meeting;

static void *meet(void *p) {
  Meeting *m = p;
  m->runs++;
  m->thread = (pid_t)syscall(SYS_gettid);
  atomic_fetch_add(m->arrived, 1);
  const struct timespec pause = {0, 1000 * 1000};
  for (int waited = 0; waited < 5000; waited++) {
    if (atomic_load(m->arrived) >= m->n) {
      m->met = 1;
      break;
    }
    nanosleep(&pause, NULL);
  }
  return NULL;
}

/* Runs n meeting parts; TRUE when each ran once and all met. */
static int run_meeting(int n, Meeting *parts) {
  atomic_int arrived = 0;
  for (int t = 0; t < n; t++)
    parts[t] = (Meeting){&arrived, n, 0, 0, 0};
  sb_cpu_run_parts(parts, sizeof parts[0], n, meet);
  int ok = 1;
  for (int t = 0; t < n; t++)
    ok &= parts[t].runs == 1 && parts[t].met;
  return ok;
}

START_TEST(test_every_part_runs_once_and_all_at_once) {
  Meeting parts[5];
  ck_assert(run_meeting(5, parts));
  ck_assert_int_eq(parts[0].thread, (pid_t)syscall(SYS_gettid));
  for (int t = 1; t < 5; t++)
    for (int u = 0; u < t; u++)
      ck_assert_int_ne(parts[t].thread, parts[u].thread);
}
END_TEST

START_TEST(test_threads_are_kept_between_calls) {
  Meeting first[4], second[4];
  ck_assert(run_meeting(4, first));
  ck_assert(run_meeting(4, second));
  /* A thread started anew would have a new kernel thread id. */
  for (int t = 1; t < 4; t++) {
    int kept = 0;
    for (int u = 1; u < 4; u++)
      kept |= second[t].thread == first[u].thread;
    ck_assert_msg(kept, "part %d ran on thread %d, not one of the first call's",
                  t, (int)second[t].thread);
  }
}
END_TEST

static void *call_meeting(void *result) {
  Meeting parts[3];
  *(int *)result = run_meeting(3, parts);
  return NULL;
}

START_TEST(test_two_callers_at_once_both_finish) {
  for (int round = 0; round < 20; round++) {
    pthread_t other;
    int mine = 0, theirs = 0;
    ck_assert_int_eq(pthread_create(&other, NULL, call_meeting, &theirs), 0);
    call_meeting(&mine);
    pthread_join(other, NULL);
    ck_assert(mine && theirs);
  }
}
END_TEST

START_TEST(test_a_forked_child_runs_parts_on_threads_of_its_own) {
  Meeting parts[3];
  ck_assert(run_meeting(3, parts)); /* the parent's threads exist */
  pid_t child = fork();
  ck_assert_int_ge(child, 0);
  if (child == 0) {
    alarm(20);
    Meeting again[3];
    _exit(run_meeting(3, again) ? 0 : 1);
  }
  int status = 0;
  ck_assert_int_eq(waitpid(child, &status, 0), child);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the child's parts did not all run at once (status %d)",
                status);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cpu-parts");
  TCase *tc = tcase_create("parts");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_every_part_runs_once_and_all_at_once);
  tcase_add_test(tc, test_threads_are_kept_between_calls);
  tcase_add_test(tc, test_two_callers_at_once_both_finish);
  tcase_add_test(tc, test_a_forked_child_runs_parts_on_threads_of_its_own);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
