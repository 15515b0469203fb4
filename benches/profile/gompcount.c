// Counts OpenMP parallel regions (libgomp's GOMP_parallel, which libtorch's at::parallel_for
// and MKL open) and the wall time spent in them, for a process it is preloaded into; prints one
// line at exit (to $GOMPCOUNT_OUT if set, else stderr). Regions per training step are the
// difference of two runs with different step counts, divided by the difference of the counts:
//
//   gcc -O2 -shared -fPIC -o /tmp/libgompcount.so benches/profile/gompcount.c -ldl
//   LD_PRELOAD=/tmp/libgompcount.so target/release/vae bench --phase train --config C \
//       --checkpoint target/bench/cpu-default/model.safetensors --warmup 3 --steps 10
//   (again with --steps 30; the same with benches/reference/flowvae_ref.py bench --phase train)
//
// Written by hand: a profiler that counts libgomp's regions needs the symbol interposed, which
// no Rust crate of the project can do for libtorch's own calls.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef void (*real_t)(void (*)(void *), void *, unsigned, unsigned);
static real_t real;
static unsigned long long n, ns_total, hist[6];
static double now_ns(void){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec*1e9+t.tv_nsec;}
void GOMP_parallel(void (*fn)(void *), void *data, unsigned nt, unsigned flags) {
  if (!real) real = (real_t)dlvsym(RTLD_NEXT, "GOMP_parallel", "GOMP_4.0");
  double t0 = now_ns();
  real(fn, data, nt, flags);
  double d = now_ns() - t0;
  n++; ns_total += (unsigned long long)d;
  int b = d < 2000 ? 0 : d < 5000 ? 1 : d < 20000 ? 2 : d < 100000 ? 3 : d < 1000000 ? 4 : 5;
  hist[b]++;
}
__attribute__((destructor)) static void report(void) {
  const char *p = getenv("GOMPCOUNT_OUT");
  FILE *f = p ? fopen(p, "a") : stderr;
  if (!f) return;
  fprintf(f, "regions %llu ms_in_regions %.1f hist(<2us,<5us,<20us,<100us,<1ms,>=1ms) %llu %llu %llu %llu %llu %llu\n",
          n, ns_total/1e6, hist[0],hist[1],hist[2],hist[3],hist[4],hist[5]);
  if (p) fclose(f);
}
