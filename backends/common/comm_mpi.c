/* SPDX-License-Identifier: MIT */
/* The MPI communicator: one rank per process, every collective preceded by
 * a vote so that a rank that failed anywhere makes all of them fail
 * together, and sums taken in rank order so that every process holds the
 * same bits as the loopback communicator would. */
#include "config.h"

#include "backends/common/comm.h"
#include "backends/common/ranks.h"

#include <stdio.h>
#include <string.h>

#ifndef HAVE_MPI

int sb_comm_mpi_new(SbComm **out, char *error, size_t error_size) {
  *out = NULL;
  snprintf(error, error_size,
           "comm=mpi is not available: this build has no MPI (configure "
           "found no Open MPI; install libopenmpi-dev and reconfigure with "
           "--with-mpi)");
  return SB_ERR_UNSUPPORTED;
}

#else

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <mpi.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* What a failing rank tells the others. */
typedef struct Verdict {
  int32_t status;
  char message[1000];
} Verdict;

typedef struct Mpi {
  SbComm base;
  MPI_Comm comm;
  int me;
  int initialized_here; /* MPI_Init was ours, so MPI_Finalize is too */
  /* State of the current sb_ranks_run: once a vote failed, every later
   * collective of the run fails at once without touching MPI, and the run
   * does not vote again, so every process makes the same MPI calls. */
  int failed;
  Verdict verdict; /* of the failed vote */
  int origin;      /* its lowest failing rank, or -1 */
  /* For lost_rank: peers' process ids and whether to check them by id
   * (same host); for peers on other hosts, one connected TCP socket each
   * (-1 where none), on which nothing is ever sent after the handshake:
   * the kernel closes a process's sockets when it ends, however it ends,
   * so the peer's end of file (or reset) means it is gone. */
  pid_t *pids;
  char *same_host;
  int *watch;
} Mpi;

static Mpi *mp(SbComm *c) { return (Mpi *)c; }

static int mpi_fail(Mpi *s, SbExec *x, const char *what, int rc) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
    snprintf(msg, sizeof msg, "MPI error %d", rc);
  /* After an MPI error the processes no longer agree on the call sequence:
   * the communicator stays broken for the rest of the run. */
  s->failed = 1;
  s->verdict.status = SB_ERR_COMMUNICATION;
  snprintf(s->verdict.message, sizeof s->verdict.message,
           "%s failed on rank %d: %s", what, s->me, msg);
  if (s->origin < 0)
    s->origin = s->me;
  return sb_exec_fail(x, SB_ERR_COMMUNICATION, "%s", s->verdict.message);
}

/* Every rank states whether it is fine; all learn the lowest failing rank
 * and its status and message. Returns SB_OK when every rank is, else
 * `status` itself on a rank that failed and SB_ERR_COMMUNICATION on the
 * others, whose message names the culprit. */
static int vote(Mpi *s, SbExec *x, const char *what, int status) {
  if (s->failed) {
    if (status == SB_OK)
      sb_exec_fail(x, SB_ERR_COMMUNICATION,
                   "%s abandoned on rank %d: rank %d failed: %s", what, s->me,
                   s->origin, s->verdict.message);
    return status != SB_OK ? status : SB_ERR_COMMUNICATION;
  }
  int mine = status == SB_OK ? INT_MAX : s->me, lowest = INT_MAX;
  int rc = MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, s->comm);
  if (rc != MPI_SUCCESS)
    return mpi_fail(s, x, what, rc);
  if (lowest == INT_MAX)
    return SB_OK;
  Verdict v = {0};
  if (s->me == lowest) {
    v.status = status;
    snprintf(v.message, sizeof v.message, "%s",
             x->error && x->error[0] ? x->error : sb_status_to_string(status));
  }
  rc = MPI_Bcast(&v, (int)sizeof v, MPI_BYTE, lowest, s->comm);
  if (rc != MPI_SUCCESS)
    return mpi_fail(s, x, what, rc);
  s->failed = 1;
  s->verdict = v;
  s->origin = lowest;
  if (status == SB_OK)
    sb_exec_fail(x, SB_ERR_COMMUNICATION,
                 "%s abandoned on rank %d: rank %d failed: %s", what, s->me,
                 lowest, v.message);
  return status != SB_OK ? status : SB_ERR_COMMUNICATION;
}

/* MPI counts are ints: element counts and displacements above INT_MAX
 * need a chunked protocol this communicator does not have. */
static int fits_int(int64_t n) { return n >= 0 && n <= INT_MAX; }

static int too_large(SbExec *x, const char *what, int64_t n) {
  return sb_exec_fail(x, SB_ERR_UNSUPPORTED,
                      "%s: %lld elements exceed MPI's int counts", what,
                      (long long)n);
}

/* The shared rules, then MPI's int counts. */
static int check_counts(Mpi *s, SbExec *x, const char *what, int rank,
                        const int64_t *counts, const void *whole,
                        const void *block, int64_t *total) {
  int st = sb_comm_check_blocks(s->base.size, rank, x, what, counts, whole,
                                block, total);
  if (st == SB_OK && !fits_int(*total))
    st = too_large(x, what, *total);
  return st;
}

/* counts and displacements as MPI ints (the caller checked the total). */
static void int_layout(int size, const int64_t *counts, int *n, int *at) {
  int64_t sum = 0;
  for (int q = 0; q < size; q++) {
    n[q] = (int)counts[q];
    at[q] = (int)sum;
    sum += counts[q];
  }
}

static int mpi_all_gather(SbComm *c, int rank, SbExec *x, const float *send,
                          const int64_t *counts, float *recv) {
  static const char what[] = "all_gather";
  Mpi *s = mp(c);
  int64_t total = 0;
  int st = s->failed
               ? SB_OK
               : check_counts(s, x, what, rank, counts, recv, send, &total);
  if ((st = vote(s, x, what, st)) != SB_OK)
    return st;
  int n[SB_RANKS_MAX], at[SB_RANKS_MAX];
  int_layout(c->size, counts, n, at);
  const void *src = send == recv + at[rank] ? MPI_IN_PLACE : (const void *)send;
  int rc =
      MPI_Allgatherv(src, n[rank], MPI_FLOAT, recv, n, at, MPI_FLOAT, s->comm);
  return rc == MPI_SUCCESS ? SB_OK : mpi_fail(s, x, what, rc);
}

/* recv [counts[rank]] = sum over q in order of rank q's block `rank`. */
static int mpi_reduce_scatter(SbComm *c, int rank, SbExec *x, const float *send,
                              const int64_t *counts, float *recv) {
  static const char what[] = "reduce_scatter";
  Mpi *s = mp(c);
  int64_t total = 0, mine = 0;
  SbBuffer blocks = {0};
  int st = s->failed
               ? SB_OK
               : check_counts(s, x, what, rank, counts, send, recv, &total);
  if (st == SB_OK && !s->failed) {
    mine = counts[rank];
    if (!fits_int(mine * c->size))
      st = too_large(x, what, mine * c->size);
    else
      st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, mine * c->size, &blocks);
  }
  if ((st = vote(s, x, what, st)) != SB_OK) {
    sb_exec_free(x, &blocks);
    return st;
  }
  int sn[SB_RANKS_MAX], sat[SB_RANKS_MAX];
  int rn[SB_RANKS_MAX], rat[SB_RANKS_MAX];
  int_layout(c->size, counts, sn, sat);
  for (int q = 0; q < c->size; q++) {
    rn[q] = (int)mine;
    rat[q] = (int)(q * mine);
  }
  int rc = MPI_Alltoallv(send, sn, sat, MPI_FLOAT, blocks.ptr, rn, rat,
                         MPI_FLOAT, s->comm);
  if (rc != MPI_SUCCESS) {
    sb_exec_free(x, &blocks);
    return mpi_fail(s, x, what, rc);
  }
  /* The same additions, in the same order, as the loopback's. */
  const float *b = blocks.ptr;
  if (mine > 0) {
    st = x->ops->copy(x->dev, recv, b, (size_t)mine * sizeof(float));
    for (int q = 1; q < c->size && st == SB_OK; q++)
      st = x->ops->add(x->dev, mine, recv, b + q * mine, recv);
    if (st != SB_OK)
      st = sb_exec_device_fail(x, st, "collective sum");
  }
  sb_exec_free(x, &blocks);
  /* A local device failure after the exchange is this rank's alone: it
   * must still be agreed on, or the peers would go on without it. */
  return vote(s, x, what, st);
}

/* A reduce-scatter over an even split of the elements, then an all-gather:
 * each element is summed once, in rank order, by the rank that owns it,
 * so every process receives the same bits. */
static int mpi_all_reduce(SbComm *c, int rank, SbExec *x, const float *send,
                          float *recv, int64_t count) {
  static const char what[] = "all_reduce";
  Mpi *s = mp(c);
  int64_t counts[SB_RANKS_MAX] = {0}, start, mine = 0;
  SbBuffer part = {0};
  int st = SB_OK;
  if (!s->failed) {
    st = sb_comm_check_all_reduce(rank, x, what, send, recv, count);
    if (st == SB_OK) {
      for (int q = 0; q < c->size; q++)
        sb_split_range(count, c->size, q, &start, &counts[q]);
      mine = counts[rank];
      st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, mine, &part);
    }
  }
  if (st == SB_OK || s->failed)
    st = mpi_reduce_scatter(c, rank, x, send, counts, part.ptr);
  else
    st = vote(s, x, what, st);
  if (st == SB_OK)
    st = mpi_all_gather(c, rank, x, part.ptr, counts, recv);
  sb_exec_free(x, &part);
  return st;
}

/* count is in the caller's units (elements of elem_bytes). */
static int mpi_broadcast_bytes(Mpi *s, SbExec *x, const char *what, void *buf,
                               int64_t count, size_t elem_bytes, int root) {
  int st = s->failed ? SB_OK
                     : sb_comm_check_broadcast(s->base.size, s->me, x, what,
                                               buf, count, root);
  int64_t bytes = count * (int64_t)elem_bytes;
  if ((st = vote(s, x, what, st)) != SB_OK)
    return st;
  /* MPI_BYTE counts are ints: large buffers go in pieces. */
  for (int64_t done = 0; done < bytes;) {
    int64_t k = bytes - done < (1 << 30) ? bytes - done : (1 << 30);
    int rc = MPI_Bcast((char *)buf + done, (int)k, MPI_BYTE, root, s->comm);
    if (rc != MPI_SUCCESS)
      return mpi_fail(s, x, what, rc);
    done += k;
  }
  return SB_OK;
}

static int mpi_broadcast(SbComm *c, int rank, SbExec *x, float *buf,
                         int64_t count, int root) {
  return mpi_broadcast_bytes(mp(c), x, "broadcast", buf, count, sizeof(float),
                             root);
}

static int mpi_broadcast_host(SbComm *c, int rank, SbExec *x, void *buf,
                              size_t bytes, int root) {
  return mpi_broadcast_bytes(mp(c), x, "broadcast_host", buf, (int64_t)bytes, 1,
                             root);
}

static int mpi_all_gather_host(SbComm *c, int rank, SbExec *x, void *buf,
                               const int64_t *byte_counts) {
  static const char what[] = "all_gather_host";
  Mpi *s = mp(c);
  int64_t total = 0;
  int st = s->failed
               ? SB_OK
               : check_counts(s, x, what, rank, byte_counts, buf, buf, &total);
  if ((st = vote(s, x, what, st)) != SB_OK)
    return st;
  int n[SB_RANKS_MAX], at[SB_RANKS_MAX];
  int_layout(c->size, byte_counts, n, at);
  int rc =
      MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_BYTE, buf, n, at, MPI_BYTE, s->comm);
  return rc == MPI_SUCCESS ? SB_OK : mpi_fail(s, x, what, rc);
}

/* MPI_Scatterv's counts and displacements are ints: root's buffer is sent
 * in windows of SCATTER_WINDOW bytes, each rank receiving, per window, the
 * piece of its part that lies in it. Every process derives the same
 * windows from the same offsets and counts, so they make the same calls.
 * Parts may overlap (TP's conv channels shared by two ranks): MPI's
 * advice that no byte of root's be read twice mirrors Gatherv's rule
 * (where two writes would clash); the send buffer is only read. */
#define SCATTER_WINDOW ((int64_t)1 << 30)

static int mpi_scatter_host(SbComm *c, int rank, SbExec *x, const void *send,
                            const int64_t *offsets, const int64_t *byte_counts,
                            void *recv, int root) {
  static const char what[] = "scatter_host";
  Mpi *s = mp(c);
  int64_t extent = 0;
  int st = s->failed
               ? SB_OK
               : sb_comm_check_scatter(c->size, rank, x, what, send, offsets,
                                       byte_counts, recv, root, &extent);
  if ((st = vote(s, x, what, st)) != SB_OK)
    return st;
  /* In place on root: its part stays where it is. */
  int in_place = rank == root && byte_counts[rank] > 0 &&
                 (const char *)send + offsets[rank] == (const char *)recv;
  int n[SB_RANKS_MAX], at[SB_RANKS_MAX];
  for (int64_t w = 0; w < extent; w += SCATTER_WINDOW) {
    int any = 0;
    for (int q = 0; q < c->size; q++) {
      int64_t a = offsets[q] > w ? offsets[q] : w;
      int64_t b = offsets[q] + byte_counts[q];
      if (b > w + SCATTER_WINDOW)
        b = w + SCATTER_WINDOW;
      n[q] = b > a ? (int)(b - a) : 0;
      at[q] = b > a ? (int)(a - w) : 0;
      any |= n[q] > 0;
    }
    if (!any)
      continue;
    /* Where this window's piece lands in this rank's part. */
    int64_t from = offsets[rank] > w ? offsets[rank] : w;
    char *dst = n[rank] > 0 ? (char *)recv + (from - offsets[rank]) : recv;
    const char *base = rank == root ? (const char *)send + w : NULL;
    int rc = MPI_Scatterv(base, n, at, MPI_BYTE,
                          in_place ? MPI_IN_PLACE : (void *)dst, n[rank],
                          MPI_BYTE, root, s->comm);
    if (rc != MPI_SUCCESS)
      return mpi_fail(s, x, what, rc);
  }
  return SB_OK;
}

/* The vote itself is the synchronisation. */
static int mpi_barrier(SbComm *c, int rank, SbExec *x) {
  return vote(mp(c), x, "barrier", SB_OK);
}

/* A rank that fails outside a collective votes its failure in settle(),
 * where it meets the peers' next vote: nothing to do here but remember. */
static void mpi_abort(SbComm *c, int rank) {
  Mpi *s = mp(c);
  if (s->origin < 0)
    s->origin = rank;
}

static int mpi_failed_rank(SbComm *c) { return mp(c)->origin; }

static void mpi_reset(SbComm *c) {
  Mpi *s = mp(c);
  s->failed = 0;
  s->origin = -1;
  memset(&s->verdict, 0, sizeof s->verdict);
}

static int mpi_settle(SbComm *c, int rank, SbExec *x, int status) {
  Mpi *s = mp(c);
  if (s->failed) {
    /* Every process gets the culprit's own message. */
    sb_exec_fail(x, s->verdict.status, "%s", s->verdict.message);
    return s->verdict.status;
  }
  int st = vote(s, x, "settle", status);
  if (st == SB_OK)
    return SB_OK;
  sb_exec_fail(x, s->verdict.status, "%s", s->verdict.message);
  return s->verdict.status;
}

/* Whether the peer at the other end of fd has gone: readable with
 * nothing to read (end of file), a reset, or a hang-up. poll and recv are
 * async-signal-safe and neither blocks here. */
static int socket_closed(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, 0) <= 0)
    return 0;
  if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
    return 1;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 ||
         (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int mpi_lost_rank(const SbComm *c) {
  const Mpi *s = (const Mpi *)c;
  int saved = errno; /* a signal handler must leave errno as it was */
  int lost = -1;
  for (int q = 0; q < c->size && lost < 0; q++) {
    if (q == s->me)
      continue;
    if (s->same_host[q] && kill(s->pids[q], 0) != 0 && errno == ESRCH)
      lost = q;
    else if (s->watch && s->watch[q] >= 0 && socket_closed(s->watch[q]))
      lost = q;
  }
  errno = saved;
  return lost;
}

static void close_watch(Mpi *s) {
  for (int q = 0; s->watch && q < s->base.size; q++)
    if (s->watch[q] >= 0)
      close(s->watch[q]);
  free(s->watch);
  s->watch = NULL;
}

static void mpi_destroy(SbComm *c) {
  if (c == NULL)
    return;
  Mpi *s = mp(c);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && s->comm != MPI_COMM_NULL)
    MPI_Comm_free(&s->comm);
  if (!finalized && s->initialized_here)
    MPI_Finalize();
  free(s->pids);
  free(s->same_host);
  close_watch(s);
  free(s);
}

static const SbCommOps mpi_ops = {
    .name = "mpi",
    .all_gather = mpi_all_gather,
    .reduce_scatter = mpi_reduce_scatter,
    .all_reduce = mpi_all_reduce,
    .broadcast = mpi_broadcast,
    .barrier = mpi_barrier,
    .broadcast_host = mpi_broadcast_host,
    .all_gather_host = mpi_all_gather_host,
    .scatter_host = mpi_scatter_host,
    .abort = mpi_abort,
    .failed_rank = mpi_failed_rank,
    .reset = mpi_reset,
    .destroy = mpi_destroy,
    .settle = mpi_settle,
    .lost_rank = mpi_lost_rank,
};

/* ---- the sockets that watch peers on other hosts ----
 * Each process listens on a TCP port of every address; the addresses are
 * exchanged over MPI; each process connects to every lower rank on
 * another host and accepts every higher one, so that each such pair holds
 * one socket. A handshake (the job's token and both ranks, answered by the
 * acceptor) makes sure that an address that means another machine here
 * (a bridge, a VPN) never leaves a socket to a stranger. If any pair
 * cannot be connected, every process closes its sockets and lost_rank
 * names peers on this host only, as without them: a quiet fallback. */

#define WATCH_ADDRS      8
#define WATCH_CONNECT_MS 3000  /* per address */
#define WATCH_REPLY_MS   10000 /* for the acceptor's answer */
#define WATCH_ACCEPT_MS  15000 /* for all higher ranks to connect */

/* The test setting: every peer counts as on another host, so that one
 * machine exercises the sockets (check-mpi.sh). */
#define WATCH_TEST_ENV   "SB_TEST_REMOTE_PEERS"

typedef struct WatchAddr {
  uint64_t token; /* rank 0's is the job's */
  uint32_t ip[WATCH_ADDRS];
  int32_t n_ip;
  int32_t port;       /* host order; 0 when not listening */
  int32_t all_remote; /* WATCH_TEST_ENV is set on this process */
} WatchAddr;

typedef struct Handshake {
  uint64_t token;
  int32_t from, to;
} Handshake;

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline (ms): 1 when ready, else 0. */
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left < 0)
      return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, (int)left);
    if (n > 0)
      return (p.revents & events) != 0 && !(p.revents & (POLLERR | POLLNVAL));
    if (n == 0 || errno != EINTR)
      return 0;
  }
}

/* All of buf over a non-blocking socket, by deadline. */
static int send_by(int fd, const void *buf, size_t n, int64_t deadline) {
  for (size_t done = 0; done < n;) {
    if (!wait_fd(fd, POLLOUT, deadline))
      return 0;
    ssize_t k = send(fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);
    if (k < 0 && errno != EAGAIN && errno != EINTR)
      return 0;
    done += k > 0 ? (size_t)k : 0;
  }
  return 1;
}

static int recv_by(int fd, void *buf, size_t n, int64_t deadline) {
  for (size_t done = 0; done < n;) {
    if (!wait_fd(fd, POLLIN, deadline))
      return 0;
    ssize_t k = recv(fd, (char *)buf + done, n - done, 0);
    if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
      return 0;
    done += k > 0 ? (size_t)k : 0;
  }
  return 1;
}

/* A non-blocking socket connected to ip:port (network order), or -1. */
static int connect_by(uint32_t ip, uint16_t port, int64_t deadline) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = port};
  a.sin_addr.s_addr = ip;
  int err = 0;
  socklen_t len = sizeof err;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 ||
      (errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) &&
       getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0))
    return fd;
  close(fd);
  return -1;
}

/* This process's listening socket (-1 when none) and what peers need. */
static int watch_listen(WatchAddr *mine) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(fd, SOMAXCONN) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  mine->port = ntohs(a.sin_port);
  /* Every IPv4 address but loopback: which one MPI uses is unknown. */
  struct ifaddrs *list = NULL;
  if (getifaddrs(&list) == 0) {
    for (struct ifaddrs *i = list; i && mine->n_ip < WATCH_ADDRS;
         i = i->ifa_next)
      if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
          !(i->ifa_flags & IFF_LOOPBACK) && (i->ifa_flags & IFF_UP))
        mine->ip[mine->n_ip++] =
            ((const struct sockaddr_in *)(const void *)i->ifa_addr)
                ->sin_addr.s_addr;
    freeifaddrs(list);
  }
  return fd;
}

/* Connects to peer q (addresses in `a`, plus loopback when it runs on this
 * host) and completes the handshake: the socket, or -1. */
static int watch_connect(const Mpi *s, const WatchAddr *a, int q,
                         int host_match, uint64_t token) {
  if (a->port <= 0)
    return -1;
  uint32_t ips[WATCH_ADDRS + 1];
  int n = 0;
  for (int i = 0; i < a->n_ip && i < WATCH_ADDRS; i++)
    ips[n++] = a->ip[i];
  if (host_match)
    ips[n++] = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < n; i++) {
    int fd = connect_by(ips[i], htons((uint16_t)a->port),
                        now_ms() + WATCH_CONNECT_MS);
    if (fd < 0)
      continue;
    Handshake h = {token, s->me, q}, back = {0};
    int64_t deadline = now_ms() + WATCH_REPLY_MS;
    if (send_by(fd, &h, sizeof h, deadline) &&
        recv_by(fd, &back, sizeof back, deadline) && back.token == token &&
        back.from == q && back.to == s->me)
      return fd;
    close(fd);
  }
  return -1;
}

/* Accepts the higher ranks in `remote` until each has its socket or the
 * deadline passes: 1 when all have. Strangers are turned away. */
static int watch_accept(Mpi *s, int listener, const char *remote,
                        uint64_t token) {
  int expect = 0;
  for (int q = s->me + 1; q < s->base.size; q++)
    expect += remote[q];
  if (expect > 0 && listener < 0)
    return 0;
  int64_t deadline = now_ms() + WATCH_ACCEPT_MS;
  while (expect > 0 && wait_fd(listener, POLLIN, deadline)) {
    int fd = accept(listener, NULL, NULL);
    if (fd < 0)
      continue;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    Handshake h = {0};
    int64_t by = now_ms() + WATCH_REPLY_MS;
    int ok = recv_by(fd, &h, sizeof h, by < deadline ? by : deadline) &&
             h.token == token && h.to == s->me && h.from > s->me &&
             h.from < s->base.size && remote[h.from] && s->watch[h.from] < 0;
    Handshake back = {token, s->me, h.from};
    if (ok && send_by(fd, &back, sizeof back, deadline)) {
      s->watch[h.from] = fd;
      expect--;
    } else {
      close(fd);
    }
  }
  return expect == 0;
}

static void watch_remote_peers(Mpi *s, const char *host_match) {
  int size = s->base.size;
  const char *env = getenv(WATCH_TEST_ENV);
  WatchAddr mine = {0};
  mine.all_remote = env != NULL && strcmp(env, "1") == 0;
  mine.token = ((uint64_t)getpid() << 32) ^ (uint64_t)now_ms() ^
               (uint64_t)(uintptr_t)&mine;
  int listener = watch_listen(&mine);
  WatchAddr *all = calloc((size_t)size, sizeof *all);
  char *remote = calloc((size_t)size, 1);
  s->watch = malloc((size_t)size * sizeof *s->watch);
  int ok = all && remote && s->watch, all_ok = 0;
  /* Every process makes the same MPI calls, whatever failed locally. */
  int rc = MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, s->comm);
  ok = rc == MPI_SUCCESS && all_ok;
  if (ok)
    ok = MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine,
                       MPI_BYTE, s->comm) == MPI_SUCCESS;
  if (ok) {
    uint64_t token = all[0].token;
    for (int q = 0; q < size; q++) {
      s->watch[q] = -1;
      /* Symmetric, so both ends of a pair agree. */
      remote[q] = q != s->me &&
                  (!host_match[q] || mine.all_remote || all[q].all_remote);
      if (remote[q])
        s->same_host[q] = 0; /* the socket, not the process id, tells */
    }
    for (int q = 0; q < s->me && ok; q++)
      if (remote[q] && (s->watch[q] = watch_connect(s, &all[q], q,
                                                    host_match[q], token)) < 0)
        ok = 0;
    ok = ok && watch_accept(s, listener, remote, token);
  }
  if (listener >= 0)
    close(listener);
  all_ok = 0;
  rc = MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, s->comm);
  if (rc != MPI_SUCCESS || !all_ok) {
    /* Fall back: peers on other hosts go unnamed, those here are checked
     * by process id again (not under the test setting, whose test must
     * fail without the sockets). */
    close_watch(s);
    for (int q = 0; q < size; q++)
      s->same_host[q] = q != s->me && host_match[q] && !mine.all_remote;
  }
  free(all);
  free(remote);
}

/* Who runs where: process ids and host names of every rank. */
static int learn_peers(Mpi *s, char *error, size_t error_size) {
  int size = s->base.size;
  char name[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  MPI_Get_processor_name(name, &len);
  char *names = calloc((size_t)size, MPI_MAX_PROCESSOR_NAME);
  int *pids = calloc((size_t)size, sizeof *pids);
  s->pids = calloc((size_t)size, sizeof *s->pids);
  s->same_host = calloc((size_t)size, 1);
  if (!names || !pids || !s->pids || !s->same_host) {
    free(names);
    free(pids);
    snprintf(error, error_size, "mpi communicator: out of host memory");
    return SB_ERR_OUT_OF_MEMORY;
  }
  int me = (int)getpid();
  int rc = MPI_Allgather(&me, 1, MPI_INT, pids, 1, MPI_INT, s->comm);
  if (rc == MPI_SUCCESS)
    rc = MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names,
                       MPI_MAX_PROCESSOR_NAME, MPI_CHAR, s->comm);
  for (int q = 0; q < size && rc == MPI_SUCCESS; q++) {
    s->pids[q] = (pid_t)pids[q];
    s->same_host[q] = strncmp(names + (size_t)q * MPI_MAX_PROCESSOR_NAME, name,
                              MPI_MAX_PROCESSOR_NAME) == 0;
  }
  free(pids);
  if (rc != MPI_SUCCESS) {
    free(names);
    snprintf(error, error_size,
             "mpi communicator: exchanging process ids failed (MPI error %d)",
             rc);
    return SB_ERR_COMMUNICATION;
  }
  /* names' room, reused: where each peer runs, before the sockets decide
   * which peers process ids can tell about. */
  memcpy(names, s->same_host, (size_t)size);
  watch_remote_peers(s, names);
  free(names);
  return SB_OK;
}

int sb_comm_mpi_new(SbComm **out, char *error, size_t error_size) {
  *out = NULL;
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) {
    snprintf(error, error_size,
             "comm=mpi: MPI was already finalized in this process (a program "
             "that creates several comm=mpi contexts must call MPI_Init "
             "and MPI_Finalize itself)");
    return SB_ERR_COMMUNICATION;
  }
  int initialized_here = 0;
  if (!initialized) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) {
      snprintf(error, error_size, "comm=mpi: MPI_Init_thread failed (%d)", rc);
      return SB_ERR_COMMUNICATION;
    }
    initialized_here = 1;
  }
  Mpi *s = calloc(1, sizeof *s);
  if (s == NULL) {
    if (initialized_here)
      MPI_Finalize();
    snprintf(error, error_size, "mpi communicator: out of host memory");
    return SB_ERR_OUT_OF_MEMORY;
  }
  s->base.ops = &mpi_ops;
  s->initialized_here = initialized_here;
  s->origin = -1;
  s->comm = MPI_COMM_NULL;
  /* A communicator of our own: our collectives never match the
   * program's, and MPI errors come back as codes instead of aborting. */
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &s->comm);
  if (rc == MPI_SUCCESS)
    rc = MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
  int size = 0;
  if (rc == MPI_SUCCESS)
    rc = MPI_Comm_size(s->comm, &size);
  if (rc == MPI_SUCCESS)
    rc = MPI_Comm_rank(s->comm, &s->me);
  if (rc != MPI_SUCCESS) {
    snprintf(error, error_size,
             "comm=mpi: cannot set up a communicator (MPI error %d)", rc);
    mpi_destroy(&s->base);
    return SB_ERR_COMMUNICATION;
  }
  s->base.size = size;
  s->base.local_rank = s->me;
  /* The processes of this host, in job order: this one's place among them
   * picks its GPU (every host counts its GPUs from 0). */
  MPI_Comm node = MPI_COMM_NULL;
  rc = MPI_Comm_split_type(s->comm, MPI_COMM_TYPE_SHARED, s->me, MPI_INFO_NULL,
                           &node);
  if (rc == MPI_SUCCESS)
    rc = MPI_Comm_rank(node, &s->base.node_rank);
  if (node != MPI_COMM_NULL)
    MPI_Comm_free(&node);
  if (rc != MPI_SUCCESS) {
    snprintf(error, error_size,
             "comm=mpi: cannot find the processes of this host (MPI error "
             "%d)",
             rc);
    mpi_destroy(&s->base);
    return SB_ERR_COMMUNICATION;
  }
  if (size > SB_RANKS_MAX) {
    snprintf(error, error_size,
             "comm=mpi: %d processes, more than the %d ranks a context "
             "supports",
             size, SB_RANKS_MAX);
    mpi_destroy(&s->base);
    return SB_ERR_INVALID_ARGUMENT;
  }
  int st = learn_peers(s, error, error_size);
  if (st != SB_OK) {
    mpi_destroy(&s->base);
    return st;
  }
  *out = &s->base;
  return SB_OK;
}

#endif /* HAVE_MPI */
