/* SPDX-License-Identifier: MIT */
/*
 * OpenBLAS, opened by the CPU device itself.
 *
 * Debian's OpenBLAS carries every CPU's kernels (DYNAMIC_ARCH), in tables
 * of 13,922 pointers that are symbolic relocations: the dynamic linker
 * looks each one up as the library loads. Linked by the backends, every
 * lookup first walked the host's ten libraries, a quarter of the CPU time
 * of `bounds` on mnist 256x6 (about 15 ms as a whole); opened with
 * RTLD_DEEPBIND, its own symbols first, loading it still took about 4 ms,
 * a quarter of the process. So the backends carry OpenBLAS in a module of
 * their own beside them, shardbound-openblas.so (openblas_module.c),
 * linked with its static archive where configure finds one: its symbols
 * are hidden there, the tables are plain relative relocations, and it
 * loads in about 0.5 ms. Where there is no archive the module links the
 * shared OpenBLAS instead. Measured in docs/bench-cpu.md.
 *
 * The device opens the module as it opens (or the first caller of this
 * file does, in tests), not when its backend is loaded, and
 *  - with RTLD_DEEPBIND, so that a shared OpenBLAS's lookups try its own
 *    symbols first, where all but a few are, and a BLAS that a host
 *    (numpy, say) loaded into the global scope cannot capture its calls;
 *    hidden symbols of the static archive cannot be captured anyway;
 *  - with RTLD_LAZY, so that only the entries it calls are resolved.
 * A host that uses OpenBLAS itself keeps its own copy, threads included.
 *
 * With RTLD_DEEPBIND, the module's calls to malloc or dlopen also go to
 * the C library first. A sanitizer's runtime refuses such a library
 * outright, and a preloaded allocator would not see OpenBLAS's own
 * blocks; so where anything interposes malloc or dlopen, the module is
 * opened without it.
 */
#define _GNU_SOURCE /* RTLD_DEEPBIND, RTLD_DEFAULT */
#include "config.h"

#include "backends/common/blas_cpu.h"
#include "backends/common/beside_self.h"
#include "backends/common/device_cpu.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#ifdef __GLIBC__
#include <gnu/lib-names.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#endif

/* What this file takes from OpenBLAS; NULL until it is open. */
static const SbOpenblasModule *blas;
static char open_error[512];
static int cpu_threads = 1;

#ifdef MADV_HUGEPAGE
/* OpenBLAS packs each product's blocks of A and B into a buffer of its
 * own (128 MiB of address space, mmap'd on first use), of which a small
 * product writes the first few hundred KiB: on the virtual machines
 * measured, that was 73 page faults of about 20 us each in `bounds` on
 * mnist 256x6, 1.5 ms. The buffer a product gets next is the first free
 * one of OpenBLAS's pool (driver/others/memory.c), so this takes it,
 * advises the first whole 2 MiB inside it (its start: mmap aligns
 * mappings this large) for a transparent huge page, one fault, and gives
 * it back. A product larger than that, or made on another thread, faults
 * the rest in as before. */
static void advise_openblas_buffer(void) {
  if (blas->memory_alloc == NULL || blas->memory_free == NULL)
    return;
  void *buffer = blas->memory_alloc(0);
  if (buffer == NULL)
    return;
  const uintptr_t start = (uintptr_t)buffer,
                  first =
                      (start + SB_CPU_HUGE_PAGE - 1) & ~(SB_CPU_HUGE_PAGE - 1);
  sb_cpu_advise_huge_pages(start, first + SB_CPU_HUGE_PAGE);
  blas->memory_free(buffer);
}
#endif

/* OpenBLAS is set to one thread, and the backend threads large products
 * itself with the count OpenBLAS chose (why: gemm_cpu.c).
 *
 * The pthread build starts its workers as it loads, and each spins on
 * sched_yield for about 0.1 s (2^28 cycles) before it sleeps, although at
 * one thread OpenBLAS never hands them a job: a short process paid a
 * second core for nothing. So they are stopped, through the call the
 * pthread build's fork handler makes (blas_thread_shutdown_,
 * driver/others/blas_server.c); OpenBLAS starts them again by itself if a
 * host sets it to more threads. Whole process, `bounds --method crown`,
 * medians of 30-60 runs alternated with the build before, two rounds:
 * resnet_2b took 57-71 ms of CPU instead of 100-131 (elapsed 58-72 ms
 * against 59-76), mnist 256x6 20 ms instead of 21-24 (elapsed unchanged,
 * 20-21 ms). The OpenMP build's threads are OpenMP's, left alone. */
static void take_threads_from_openblas(void) {
  cpu_threads = blas->get_num_threads();
  if (cpu_threads < 1)
    cpu_threads = 1;
  blas->set_num_threads(1);
  if (blas->thread_shutdown != NULL && blas->get_parallel() == 1)
    blas->thread_shutdown();
#ifdef MADV_HUGEPAGE
  advise_openblas_buffer();
#endif
}

/* Whether the process's `name` is the C library's own. */
static int from_the_c_library(const char *name) {
#if defined(__GLIBC__) && defined(RTLD_DEEPBIND)
  void *libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
  if (libc == NULL)
    return 0;
  const int own = dlsym(RTLD_DEFAULT, name) == dlsym(libc, name);
  dlclose(libc);
  return own;
#else
  (void)name;
  return 0;
#endif
}

/* The module beside this file's shared object (a backend), or else, for
 * programs that link the CPU device themselves, such as the tests, the
 * one the dynamic linker finds by its name. */
static void *open_module(int flags) {
  char path[4096];
  if (!sb_path_beside_self(SB_OPENBLAS_MODULE_FILE, path, sizeof path)) {
    snprintf(open_error, sizeof open_error,
             "cannot load OpenBLAS: cannot find the directory of this "
             "backend to look for %s",
             SB_OPENBLAS_MODULE_FILE);
    return NULL;
  }
  void *so = dlopen(path, flags);
  if (so == NULL) {
    const char *why = dlerror();
    snprintf(open_error, sizeof open_error, "cannot load OpenBLAS: %s",
             why ? why : SB_OPENBLAS_MODULE_FILE);
    so = dlopen(SB_OPENBLAS_MODULE_FILE, flags);
  }
  return so;
}

static void open_openblas(void) {
  int flags = RTLD_LAZY | RTLD_LOCAL;
#ifdef RTLD_DEEPBIND
  if (from_the_c_library("malloc") && from_the_c_library("dlopen"))
    flags |= RTLD_DEEPBIND;
#endif
  /* Never closed: OpenBLAS stays for the life of the process. */
  void *so = open_module(flags);
  if (so == NULL)
    return;
  SbOpenblasModuleGetFn *get;
  /* POSIX's blessed way from void * to a function pointer. */
  *(void **)&get = dlsym(so, SB_OPENBLAS_MODULE_SYMBOL);
  const SbOpenblasModule *m = get ? get() : NULL;
  if (m == NULL || m->struct_size < sizeof(SbOpenblasModule)) {
    snprintf(open_error, sizeof open_error,
             "cannot load OpenBLAS: %s is not the OpenBLAS module of this "
             "version of shardbound (rebuild it with the backends)",
             SB_OPENBLAS_MODULE_FILE);
    return;
  }
  open_error[0] = '\0';
  blas = m;
  take_threads_from_openblas();
}

static pthread_once_t opened = PTHREAD_ONCE_INIT;

SbCpuSgemmFn *sb_cpu_blas_sgemm(void) {
  pthread_once(&opened, open_openblas);
  return blas ? blas->sgemm : NULL;
}

SbCpuSgemvFn *sb_cpu_blas_sgemv(void) {
  pthread_once(&opened, open_openblas);
  return blas ? blas->sgemv : NULL;
}

const char *sb_cpu_blas_error(void) {
  pthread_once(&opened, open_openblas);
  return open_error;
}

int sb_cpu_threads(void) {
  pthread_once(&opened, open_openblas);
  return cpu_threads;
}
