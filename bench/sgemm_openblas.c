/* bench/sgemm_openblas.c: the OpenBLAS yardstick of `qkvlab bench matmul` (bench/run.sh, `make bench`).
 *
 * Times cblas_sgemm on the shapes of qkvlab's bench matmul (app/cmd_bench.cpp, kMatShapes: same names, sizes and
 * layouts), so that the table can print ours / OpenBLAS. Batched shapes make one cblas_sgemm call per batch entry,
 * as a framework without a batched BLAS call does.
 *
 *   cc -O2 bench/sgemm_openblas.c -o sgemm_openblas -lopenblas      (libopenblas-dev; bench/run.sh does this)
 *   OPENBLAS_NUM_THREADS=1 ./sgemm_openblas --shapes sq512,s_mlp_up --samples 5
 *
 * Options: --shapes LIST (default: all), --samples N (default 9), --min-ms M (default 5: each sample repeats the
 * product until it has run M ms), --impl openblas (the only one; accepted for the caller's sake).
 * Threads: OPENBLAS_NUM_THREADS. Kernels: OpenBLAS picks them from the CPU it detects, or OPENBLAS_CORETYPE;
 * --corename prints the core it uses and exits (bench/run.sh checks that it is not a generic fallback).
 * Output, one line per shape (11 fields, a header line starting with '#' first):
 *   shape impl M K N batch op best_GFLOP/s median_GFLOP/s reps max_rel_err
 * op: two letters, N or T for A and for B (T: stored transposed). max_rel_err: the largest error of 64 sampled
 * entries of C against a double-precision dot product, relative to sum |a b| (a wrong call shows as ~1).
 * The best sample is the figure: on a shared machine other processes only ever make a sample slower.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct shape {
  const char* name;
  int M, K, N, batch;
  int ta, tb; /* A stored K x M; B stored N x K (x @ W^T as nn.Linear) */
};

static const struct shape kShapes[] = {
    {"sq256", 256, 256, 256, 1, 0, 0},      {"sq512", 512, 512, 512, 1, 0, 0},
    {"sq1024", 1024, 1024, 1024, 1, 0, 0},  {"sq2048", 2048, 2048, 2048, 1, 0, 0},
    {"s_qkv_fwd", 4096, 128, 384, 1, 0, 1}, {"s_qkv_dx", 4096, 384, 128, 1, 0, 0},
    {"s_mlp_up", 4096, 128, 512, 1, 0, 1},  {"s_mlp_down", 4096, 512, 128, 1, 0, 1},
    {"t_qkv_fwd", 2048, 64, 192, 1, 0, 1},  {"s_qkv_dw", 384, 4096, 128, 1, 1, 0},
    {"s_attn_qk", 128, 32, 128, 128, 0, 1}, {"s_attn_av", 128, 128, 32, 128, 0, 0},
};
enum { kNumShapes = sizeof kShapes / sizeof kShapes[0] };

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* xorshift64*: uniform numbers in [-1, 1) */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float uniform(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
  return (float)((double)(r >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static void run(const struct shape* s, const float* A, const float* B, float* C) {
  const size_t a_sz = (size_t)s->M * s->K, b_sz = (size_t)s->K * s->N, c_sz = (size_t)s->M * s->N;
  for (int b = 0; b < s->batch; ++b)
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->M, s->N,
                s->K, 1.0f, A + b * a_sz, s->ta ? s->M : s->K, B + b * b_sz, s->tb ? s->K : s->N, 0.0f, C + b * c_sz,
                s->N);
}

static double max_rel_err(const struct shape* s, const float* A, const float* B, const float* C) {
  const size_t a_sz = (size_t)s->M * s->K, b_sz = (size_t)s->K * s->N, c_sz = (size_t)s->M * s->N;
  double worst = 0;
  for (int t = 0; t < 64; ++t) {
    int b = (int)((uniform() + 1) * 0.5f * s->batch) % s->batch;
    int i = (int)((uniform() + 1) * 0.5f * s->M) % s->M, j = (int)((uniform() + 1) * 0.5f * s->N) % s->N;
    double ref = 0, mag = 0;
    for (int p = 0; p < s->K; ++p) {
      double x = s->ta ? A[b * a_sz + (size_t)p * s->M + i] : A[b * a_sz + (size_t)i * s->K + p];
      double y = s->tb ? B[b * b_sz + (size_t)j * s->K + p] : B[b * b_sz + (size_t)p * s->N + j];
      ref += x * y;
      mag += fabs(x * y);
    }
    double e = fabs(C[b * c_sz + (size_t)i * s->N + j] - ref) / (mag + 1e-30);
    if (e > worst) worst = e;
  }
  return worst;
}

static int usage(const char* why) {
  fprintf(stderr, "sgemm_openblas: %s (options: --shapes LIST, --samples N, --min-ms M, --impl openblas; or --corename)\n", why);
  return 2;
}

int main(int argc, char** argv) {
  const char* list = "all";
  int samples = 9;
  double min_ms = 5;
  if (argc == 2 && !strcmp(argv[1], "--corename")) {
    printf("%s\n", openblas_get_corename());
    return 0;
  }
  for (int i = 1; i < argc; ++i) {
    if (i + 1 >= argc) return usage("an option without its value");
    if (!strcmp(argv[i], "--shapes")) list = argv[++i];
    else if (!strcmp(argv[i], "--samples")) samples = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--min-ms")) min_ms = atof(argv[++i]);
    else if (!strcmp(argv[i], "--impl")) {
      if (strcmp(argv[++i], "openblas") != 0) return usage("--impl: only openblas is known");
    } else return usage("unknown option");
  }
  if (samples < 1 || samples > 1000 || !(min_ms >= 0)) return usage("--samples must be 1..1000, --min-ms >= 0");

  /* The shapes asked for, in the order given. */
  const struct shape* todo[64];
  int n = 0;
  if (!strcmp(list, "all")) {
    for (int k = 0; k < kNumShapes; ++k) todo[n++] = &kShapes[k];
  } else {
    char* copy = strdup(list);
    for (char* tok = strtok(copy, ","); tok != NULL; tok = strtok(NULL, ",")) {
      int found = -1;
      for (int k = 0; k < kNumShapes; ++k)
        if (!strcmp(kShapes[k].name, tok)) found = k;
      if (found < 0 || n == 64) {
        fprintf(stderr, "sgemm_openblas: unknown shape '%s'\n", tok);
        return 2;
      }
      todo[n++] = &kShapes[found];
    }
    free(copy);
  }

  printf("# shape impl M K N batch op best_GFLOP/s median_GFLOP/s reps max_rel_err\n");
  for (int k = 0; k < n; ++k) {
    const struct shape* s = todo[k];
    const size_t a_n = (size_t)s->M * s->K * s->batch, b_n = (size_t)s->K * s->N * s->batch;
    const size_t c_n = (size_t)s->M * s->N * s->batch;
    float *A = malloc(a_n * sizeof *A), *B = malloc(b_n * sizeof *B), *C = calloc(c_n, sizeof *C);
    double* g = malloc((size_t)samples * sizeof *g);
    if (!A || !B || !C || !g) {
      fprintf(stderr, "sgemm_openblas: out of memory for %s\n", s->name);
      return 1;
    }
    for (size_t i = 0; i < a_n; ++i) A[i] = uniform();
    for (size_t i = 0; i < b_n; ++i) B[i] = uniform();
    const double flops = 2.0 * s->M * (double)s->N * s->K * s->batch;
    run(s, A, B, C); /* warm-up: thread pool, caches */
    double t0 = now_s();
    run(s, A, B, C);
    double one = now_s() - t0;
    int reps = (int)(min_ms * 1e-3 / (one > 1e-7 ? one : 1e-7));
    if (reps < 1) reps = 1;
    for (int q = 0; q < samples; ++q) {
      t0 = now_s();
      for (int r = 0; r < reps; ++r) run(s, A, B, C);
      g[q] = flops / ((now_s() - t0) / reps) * 1e-9;
    }
    qsort(g, (size_t)samples, sizeof *g, cmp_double);
    double median = samples % 2 ? g[samples / 2] : 0.5 * (g[samples / 2 - 1] + g[samples / 2]);
    printf("%s openblas %d %d %d %d %c%c %.2f %.2f %d %.2e\n", s->name, s->M, s->K, s->N, s->batch,
           s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', g[samples - 1], median, reps, max_rel_err(s, A, B, C));
    fflush(stdout);
    free(A), free(B), free(C), free(g);
  }
  return 0;
}
