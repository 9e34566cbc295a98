/* bench/cpu_peak.c: this machine's measured float32 FMA peak, the ceiling for the GFLOP/s of `make bench`
 * (docs/PERFORMANCE.md puts the matmul figures beside it).
 *
 *   cc -O2 -march=native -fopenmp bench/cpu_peak.c -o cpu_peak && ./cpu_peak      (bench/run.sh does this)
 *
 * Each thread runs chains of vector fused multiply-adds with enough independent accumulators to hide the FMA
 * latency (12 vectors of 8 floats with AVX2 + FMA, of 16 with AVX-512; 24 vectors of 4 floats with ARM NEON, as
 * 12 pairs; a scalar fallback otherwise). Prints GFLOP/s
 * for 1 thread and for all cores (OMP_NUM_THREADS), the best of 5 samples of about 0.2 s each: an upper bound that
 * no matmul reaches. Where the CPU has AVX-512 (tensor/gemm.cpp then uses it) both widths are measured and the
 * wider one is the ceiling: some CPUs run 512-bit FMAs at twice the 256-bit rate, others (AMD Zen 4) at the same.
 */
#include <stdio.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum { kAcc = 12 };

/* iters rounds of kAcc independent FMAs; returns a value that depends on all of them (so nothing is dropped). */
static float fma_chains(long iters) {
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc[kAcc];
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int k = 0; k < kAcc; ++k) acc[k] = _mm256_set1_ps((float)k);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < kAcc; ++k) acc[k] = _mm256_fmadd_ps(acc[k], a, b);  /* unrolled: acc stays in registers */
  }
  float out[8], s = 0;
  for (int k = 0; k < kAcc; ++k) {
    _mm256_storeu_ps(out, acc[k]);
    for (int j = 0; j < 8; ++j) s += out[j];
  }
  return s;
#elif defined(__aarch64__)
  /* kAcc pairs of 4-float vectors: 8 floats an accumulator as above, 24 independent chains (ARM cores have 2-4
   * FMA pipes of latency 4, and 32 vector registers). */
  float32x4_t lo[kAcc], hi[kAcc];
  const float32x4_t a = vdupq_n_f32(0.999999f), b = vdupq_n_f32(1e-7f);
  for (int k = 0; k < kAcc; ++k) lo[k] = hi[k] = vdupq_n_f32((float)k);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < kAcc; ++k) {
      lo[k] = vfmaq_f32(b, lo[k], a); /* b + lo * a */
      hi[k] = vfmaq_f32(b, hi[k], a);
    }
  }
  float s = 0;
  for (int k = 0; k < kAcc; ++k) s += vaddvq_f32(lo[k]) + vaddvq_f32(hi[k]);
  return s;
#else
  float acc[kAcc * 8];
  for (int k = 0; k < kAcc * 8; ++k) acc[k] = (float)k;
  for (long i = 0; i < iters; ++i)
    for (int k = 0; k < kAcc * 8; ++k) acc[k] = acc[k] * 0.999999f + 1e-7f;
  float s = 0;
  for (int k = 0; k < kAcc * 8; ++k) s += acc[k];
  return s;
#endif
}

#ifdef __AVX512F__
/* The same with 16-float vectors. */
static float fma_chains_512(long iters) {
  __m512 acc[kAcc];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int k = 0; k < kAcc; ++k) acc[k] = _mm512_set1_ps((float)k);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < kAcc; ++k) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
  }
  float s = 0;
  for (int k = 0; k < kAcc; ++k) s += _mm512_reduce_add_ps(acc[k]);
  return s;
}
#endif

typedef float (*chains_fn)(long);

/* Best GFLOP/s of 5 samples with `threads` threads, all running at once; `lanes` floats per vector. */
static double peak(chains_fn fn, int lanes, int threads, long iters, float* sink) {
  double best = 0;
  for (int s = 0; s < 5; ++s) {
    double t0 = now_s();
    float sum = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : sum)
#endif
    sum += fn(iters);
    double g = kAcc * lanes * 2.0 * (double)iters * threads / (now_s() - t0) * 1e-9;
    *sink += sum;
    if (g > best) best = g;
  }
  return best;
}

/* Calibrates a sample to about 0.2 s. */
static long calibrate(chains_fn fn, float* sink) {
  long iters = 1000;
  double t0 = now_s();
  fn(iters);
  while (now_s() - t0 < 0.05) {
    iters *= 2;
    t0 = now_s();
    *sink += fn(iters);
  }
  return (long)(iters * 0.2 / (now_s() - t0)) + 1;
}

static void report(const char* how, chains_fn fn, int lanes, int cores, float* sink) {
  long iters = calibrate(fn, sink);
  printf("FP32 FMA peak (%s): 1 thread %.1f GFLOP/s", how, peak(fn, lanes, 1, iters, sink));
  if (cores > 1) printf(", %d threads %.1f GFLOP/s", cores, peak(fn, lanes, cores, iters, sink));
}

int main(void) {
  int cores = 1;
#ifdef _OPENMP
  cores = omp_get_max_threads();
#endif
  float sink = 0;
#ifdef __AVX512F__
  report("AVX-512 FMA, 16 lanes", fma_chains_512, 16, cores, &sink);
  printf("; ");
  report("AVX2 FMA, 8 lanes", fma_chains, 8, cores, &sink);
#elif defined(__AVX2__) && defined(__FMA__)
  report("AVX2 FMA, 8 lanes", fma_chains, 8, cores, &sink);
#elif defined(__aarch64__)
  report("NEON FMA, 4 lanes", fma_chains, 8, cores, &sink);
#else
  report("scalar code (compile with -march=native for the vector peak)", fma_chains, 8, cores, &sink);
#endif
  printf("\n");
  return sink == 12345.f; /* never: keeps the work observable */
}
