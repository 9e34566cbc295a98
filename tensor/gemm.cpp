// GEMM: C = A @ B (or C += A @ B) for float and double, in the GotoBLAS / BLIS style.
//
// How it is blocked, from the inside out (read tensor/gemm.h first for the API):
//
//   micro-kernel  computes one MR x NR tile of C (e.g. 14 x 32 floats with AVX-512) entirely in vector
//                 registers: MR*NR/W accumulators (W = floats per vector, 16 for AVX-512). For each k it loads
//                 NR/W vectors of B, broadcasts MR scalars of A and does MR*NR/W fused multiply-adds. Only at
//                 the end are the accumulators added/stored into C, so C is touched once per KC slice of K.
//                 MR and NR are chosen so that the accumulators nearly fill the 32 AVX-512 registers and
//                 there are enough independent FMAs in flight to cover the FMA latency (4 cycles x 2 pipes).
//   KC            the depth of one pass: the kernel multiplies an MR x KC sliver of A by a KC x NR sliver of B.
//                 The B sliver (KC*NR*4 bytes) is reused for every A sliver, so KC is sized to keep it in L1.
//   MC            rows of A packed at a time: an MC x KC block of A (MC*KC*4 bytes) stays in L2 while the
//                 kernel walks over all the B slivers of the panel.
//   NC            columns of B packed at a time: a KC x NC panel of B, reused for every MC block of A (L2/L3).
//
//   for jc in N step NC:                 B panel   = B[pc:pc+KC, jc:jc+NC]  packed into NR-wide slivers
//     for pc in K step KC:
//       pack B panel
//       for ic in M step MC:             A block   = A[ic:ic+MC, pc:pc+KC]  packed into MR-tall slivers
//         pack A block                   (sliver by sliver, just before first use: see macro_kernel)
//         for jr in NC step NR:          (macro-kernel)
//           for ir in MC step MR:
//             micro-kernel(C[ic+ir : +MR, jc+jr : +NR] (+)= A sliver @ B sliver)
//
// Sizes (AVX-512, float): MR x NR = 14 x 32, KC = 256 (B sliver 32 KiB of the 48 KiB L1), MC = 168 (A block
// 168 KiB of the 1 MiB L2), NC = 4096. AVX2 uses 6 x 16 tiles (16 ymm registers); double uses 14 x 16. ARM64
// (NEON, 32 registers of 4 floats) uses 8 x 12. The instruction set is chosen when compiling (-march), one of
// four SIMD policies below; gemm_kernel_name() says which.
//
// Packing copies the operands into contiguous, 64-byte aligned buffers in exactly the order the kernel reads
// them (A sliver: for each k, MR consecutive values; B sliver: for each k, NR consecutive values). Packing reads
// the source through its two strides, so transposed and sliced views cost the same as contiguous matrices.
// Edges: the packed slivers are padded with zeros; kernels specialised for fewer rows (m < MR) and fewer vectors
// (n <= NR/2) avoid most wasted work, and masked stores write back only the valid part of the C tile.
//
// Small N: when each A element is used by only a few B slivers (N <= 16*NR), packing A costs more than it saves,
// so the kernel reads A in place (row-major or transposed views, see a_mode) with software prefetching. Likewise
// a row-major B when A has few rows (read_b_in_place: a weight gradient, K = every token of the batch).
// Bias: gemm(..., bias) starts every row of C from a bias vector, added by the kernel where it first stores a
// tile (a Linear layer's output in one pass). Scale: gemm(..., scale) multiplies C by an array of its shape where
// the kernel last stores a tile (GELU's slope in a backward: (dy @ w) * gelu'(h) without a pass of its own).
//
// Threads (OpenMP, qkvlab::num_threads()): one product is cut into independent blocks of C -- whole MR-slivers
// of rows, or of NR-slivers of columns when C has few rows -- a few per thread, and each thread takes the next
// block still left and runs the loops above on it with its own pack buffers: one fork, one join, no barriers in
// between, and a thread the OS runs late just takes fewer blocks. Batched products with many small matrices hand
// out runs of whole matrices instead. Tiny products run on one thread (forking costs more).
//
// Numerics: plain accumulation in the element type, with fused multiply-adds; the summation order over k is
// the natural one within each KC slice. Built without -ffast-math (never use it: NaN checks and gradcheck).
#include "tensor/gemm.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <vector>
#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#include "tensor/error.h"
#include "tensor/parallel.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
// GCC 12's AVX-512 shuffle intrinsics start from _mm512_undefined_ps(), which it then reports as "used
// uninitialized" once inlined (a known false positive); silence just those two warnings.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace qkvlab {
namespace {

// ------------------------------------------------------------------------------------------------------------
// SIMD policies: one small struct per (instruction set, element type) with the handful of operations the
// micro-kernel needs. The kernel itself is written once, as a template over the policy.
// ------------------------------------------------------------------------------------------------------------
#if defined(__AVX512F__)
struct SimdF {
  using T = float;
  using V = __m512;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_load_ps(p); }  // packed buffers are 64-byte aligned
  static V bcast(const T* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V loadu(const T* p) { return _mm512_loadu_ps(p); }
  static void storeu(T* p, V v) { _mm512_storeu_ps(p, v); }
  static V loadu_n(const T* p, int n) { return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1u), p); }
  static void storeu_n(T* p, V v, int n) { _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1u), v); }
};
struct SimdD {
  using T = double;
  using V = __m512d;
  static constexpr int W = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_load_pd(p); }
  static V bcast(const T* p) { return _mm512_set1_pd(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V loadu(const T* p) { return _mm512_loadu_pd(p); }
  static void storeu(T* p, V v) { _mm512_storeu_pd(p, v); }
  static V loadu_n(const T* p, int n) { return _mm512_maskz_loadu_pd(__mmask8((1u << n) - 1u), p); }
  static void storeu_n(T* p, V v, int n) { _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1u), v); }
};
// 14 x 32 floats: 28 accumulators + 2 B vectors + 1 broadcast = 31 of the 32 zmm registers.
constexpr int kMRf = 14, kNVf = 2, kKCf = 256, kMCf = 14 * 12, kNCf = 4096;
constexpr int kMRd = 14, kNVd = 2, kKCd = 192, kMCd = 14 * 8, kNCd = 2048;

#elif defined(__AVX2__) && defined(__FMA__)
// Masks for partial loads/stores: n leading lanes set.
alignas(32) constexpr int32_t kMask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
alignas(32) constexpr int64_t kMask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
struct SimdF {
  using T = float;
  using V = __m256;
  static constexpr int W = 8;
  static __m256i mask(int n) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask32 + 8 - n)); }
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const T* p) { return _mm256_load_ps(p); }
  static V bcast(const T* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V loadu(const T* p) { return _mm256_loadu_ps(p); }
  static void storeu(T* p, V v) { _mm256_storeu_ps(p, v); }
  static V loadu_n(const T* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  static void storeu_n(T* p, V v, int n) { _mm256_maskstore_ps(p, mask(n), v); }
};
struct SimdD {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4;
  static __m256i mask(int n) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask64 + 4 - n)); }
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const T* p) { return _mm256_load_pd(p); }
  static V bcast(const T* p) { return _mm256_broadcast_sd(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V loadu(const T* p) { return _mm256_loadu_pd(p); }
  static void storeu(T* p, V v) { _mm256_storeu_pd(p, v); }
  static V loadu_n(const T* p, int n) { return _mm256_maskload_pd(p, mask(n)); }
  static void storeu_n(T* p, V v, int n) { _mm256_maskstore_pd(p, mask(n), v); }
};
// 6 x 16 floats: 12 accumulators + 2 B vectors + broadcasts fit the 16 ymm registers.
constexpr int kMRf = 6, kNVf = 2, kKCf = 256, kMCf = 6 * 24, kNCf = 4096;
constexpr int kMRd = 6, kNVd = 2, kKCd = 192, kMCd = 6 * 16, kNCd = 2048;

#elif defined(__aarch64__) && defined(__ARM_NEON)
// ARM64 (Apple M-series, Graviton, Raspberry Pi 4/5 ...): 32 NEON registers of 128 bits. Every ARMv8-A core has
// NEON with fused multiply-add, so this needs no -march flag. The broadcast is one ld1r (load and replicate).
// NEON has no masked loads: partial loads and stores (the right edge of C) go through a small stack buffer.
template <class S>
typename S::V load_via_buffer(const typename S::T* p, int n) {
  typename S::T t[S::W] = {};
  for (int i = 0; i < n; ++i) t[i] = p[i];
  return S::loadu(t);
}
template <class S>
void store_via_buffer(typename S::T* p, typename S::V v, int n) {
  typename S::T t[S::W];
  S::storeu(t, v);
  for (int i = 0; i < n; ++i) p[i] = t[i];
}
struct SimdF {
  using T = float;
  using V = float32x4_t;
  static constexpr int W = 4;
  static V zero() { return vdupq_n_f32(0.0f); }
  static V load(const T* p) { return vld1q_f32(p); }
  static V bcast(const T* p) { return vld1q_dup_f32(p); }
  static V fma(V a, V b, V c) { return vfmaq_f32(c, a, b); }  // c + a * b, one rounding
  static V add(V a, V b) { return vaddq_f32(a, b); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static V loadu(const T* p) { return vld1q_f32(p); }
  static void storeu(T* p, V v) { vst1q_f32(p, v); }
  static V loadu_n(const T* p, int n) { return load_via_buffer<SimdF>(p, n); }
  static void storeu_n(T* p, V v, int n) { store_via_buffer<SimdF>(p, v, n); }
};
struct SimdD {
  using T = double;
  using V = float64x2_t;
  static constexpr int W = 2;
  static V zero() { return vdupq_n_f64(0.0); }
  static V load(const T* p) { return vld1q_f64(p); }
  static V bcast(const T* p) { return vld1q_dup_f64(p); }
  static V fma(V a, V b, V c) { return vfmaq_f64(c, a, b); }
  static V add(V a, V b) { return vaddq_f64(a, b); }
  static V mul(V a, V b) { return vmulq_f64(a, b); }
  static V loadu(const T* p) { return vld1q_f64(p); }
  static void storeu(T* p, V v) { vst1q_f64(p, v); }
  static V loadu_n(const T* p, int n) { return load_via_buffer<SimdD>(p, n); }
  static void storeu_n(T* p, V v, int n) { store_via_buffer<SimdD>(p, v, n); }
};
// 8 x 12 floats: 24 accumulators + 3 B vectors + 1 broadcast = 28 of the 32 registers (the BLIS shape for
// ARMv8); KC 256 keeps the 12 KiB B sliver in a 32 KiB L1, MC 128 rows the 128 KiB A block in L2.
// 6 x 8 doubles: 24 accumulators + 4 B vectors + 1 broadcast = 29.
constexpr int kMRf = 8, kNVf = 3, kKCf = 256, kMCf = 8 * 16, kNCf = 12 * 340;  // NC: whole slivers (4080)
constexpr int kMRd = 6, kNVd = 4, kKCd = 192, kMCd = 6 * 16, kNCd = 2048;

#else
// Portable fallback (plain SSE2, 32-bit ARM, ...): GCC/Clang vector extensions, 16-byte vectors.
template <class T_, int W_>
struct SimdGeneric {
  using T = T_;
  typedef T_ V __attribute__((vector_size(W_ * sizeof(T_))));
  static constexpr int W = W_;
  static V zero() { return V{}; }
  static V load(const T* p) { V v; std::memcpy(&v, p, sizeof v); return v; }
  static V bcast(const T* p) { V v; for (int i = 0; i < W; ++i) v[i] = *p; return v; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V add(V a, V b) { return a + b; }
  static V mul(V a, V b) { return a * b; }
  static V loadu(const T* p) { return load(p); }
  static void storeu(T* p, V v) { std::memcpy(p, &v, sizeof v); }
  static V loadu_n(const T* p, int n) { V v{}; for (int i = 0; i < n; ++i) v[i] = p[i]; return v; }
  static void storeu_n(T* p, V v, int n) { for (int i = 0; i < n; ++i) p[i] = v[i]; }
};
using SimdF = SimdGeneric<float, 4>;
using SimdD = SimdGeneric<double, 2>;
constexpr int kMRf = 6, kNVf = 4, kKCf = 256, kMCf = 6 * 16, kNCf = 4096;
constexpr int kMRd = 6, kNVd = 4, kKCd = 192, kMCd = 6 * 16, kNCd = 2048;
#endif

static_assert(kKCf == kGemmKBlock, "tensor/gemm.h promises float products blocked by kGemmKBlock along K");

// Block sizes per element type (see the comment at the top). MC is a multiple of MR.
template <class T> struct Cfg;
template <> struct Cfg<float> {
  using S = SimdF;
  static constexpr int MR = kMRf, NV = kNVf, NR = kNVf * SimdF::W, KC = kKCf, MC = kMCf, NC = kNCf;
};
template <> struct Cfg<double> {
  using S = SimdD;
  static constexpr int MR = kMRd, NV = kNVd, NR = kNVd * SimdD::W, KC = kKCd, MC = kMCd, NC = kNCd;
};
// The pack buffers hold whole slivers: a B panel of NC columns is NC / NR slivers, an A block MC / MR.
static_assert(Cfg<float>::NC % Cfg<float>::NR == 0 && Cfg<float>::MC % Cfg<float>::MR == 0);
static_assert(Cfg<double>::NC % Cfg<double>::NR == 0 && Cfg<double>::MC % Cfg<double>::MR == 0);

// ------------------------------------------------------------------------------------------------------------
// Micro-kernel: C[0:MRe, 0:n] (+)= (A sliver, MRe rows used) @ (packed B sliver, NVe vectors used), or
// C = bias[0:n] + ... when the epilogue has a bias (the first pass over K of a product with a bias, never with
// add), and the tile multiplied by the epilogue's scale before it is stored when it has one (the last pass).
// MRe <= MR and NVe <= NV are compile-time so the accumulators live in registers; the table below holds one
// instance per (MRe, NVe) for the edges. n (valid columns, <= NVe*W) is only used when writing C.
// A sliver: packed (AMode kPacked: element (i,k) at a[k*MR + i]) or read in place, which saves packing A when
// each A element is used by only a few B slivers: kRows for a row-major A (element (i,k) at a[i*lda + k]),
// kCols for a transposed view (element (i,k) at a[i + k*lda]).
// B sliver: element (k,j) at b[k*ldb + j]: packed (ldb = NR) or a row-major B read in place (ldb = its row stride).
// ------------------------------------------------------------------------------------------------------------
enum AMode : int { kPacked = 0, kRows = 1, kCols = 2 };

// What happens to C besides the product (gemm's bias and scale): the bias (N values) is where each row of C starts;
// the scale (an array of C's shape, element (i,j) at scale[i*lds + j]) multiplies the finished product.
template <class T>
struct Epilogue {
  const T* bias = nullptr;
  const T* scale = nullptr;
  int64_t lds = 0;
  Epilogue at(int64_t i, int64_t j) const {  // for the block of C that starts at (i, j)
    return {bias ? bias + j : nullptr, scale ? scale + i * lds + j : nullptr, lds};
  }
  Epilogue pass(bool first, bool last) const {  // the bias goes with the first pass over K, the scale the last
    return {first ? bias : nullptr, last ? scale : nullptr, lds};
  }
};

template <class T>
using KernelFn = void (*)(int64_t kc, const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, int n,
                         bool add, const Epilogue<T>& e);

template <class T, int Mode, int MRe, int NVe>
void micro_kernel(int64_t kc, const T* __restrict a, int64_t lda, const T* __restrict b, int64_t ldb,
                  T* __restrict c, int64_t ldc, int n, bool add, const Epilogue<T>& e) {
  using S = typename Cfg<T>::S;
  using V = typename S::V;
  constexpr int MR = Cfg<T>::MR, W = S::W;
  const T* __restrict bias = e.bias;
  const T* __restrict scale = e.scale;
  V acc[MRe][NVe];
#pragma GCC unroll 16
  for (int i = 0; i < MRe; ++i) {
    // C is needed only at the end: start fetching its lines now (a tile row spans NVe*W*sizeof(T) bytes)
    __builtin_prefetch(c + i * ldc, 1, 3);
    if constexpr (NVe * W * sizeof(T) > 64) __builtin_prefetch(c + i * ldc + NVe * W - 1, 1, 3);
#pragma GCC unroll 4
    for (int v = 0; v < NVe; ++v) acc[i][v] = S::zero();
  }
  [[maybe_unused]] const T* const a0 = a;
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    if constexpr (Mode == kRows) {
      // A is read in place, MR rows side by side: software-prefetch one line per k, cycling over 16 rows, a fixed
      // distance ahead; past the end of the rows it continues with the next sliver's rows (the next call's A).
      // Not for a pass over at most 32 values of K (a head's q in attention scores: two lines of floats), where
      // the prefetch's address arithmetic was ~15 % of the product (16 x 32 @ 32 x 16: 66 -> 57 us for 256).
      constexpr int64_t D = 128 / sizeof(T) * 4;  // 8 lines ahead
      const int64_t r = k & 15, kk = k + D;
      if (kc > 32) __builtin_prefetch(kk < kc ? a0 + r * lda + kk : a0 + (r + MR) * lda + (kk - kc), 0, 3);
    }
    V bv[NVe];
#pragma GCC unroll 4
    for (int v = 0; v < NVe; ++v) bv[v] = S::loadu(b + v * W);  // loadu: B read in place need not be aligned
#pragma GCC unroll 16
    for (int i = 0; i < MRe; ++i) {
      const V ai = S::bcast(Mode == kRows ? a + i * lda : a + i);
#pragma GCC unroll 4
      for (int v = 0; v < NVe; ++v) acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
    }
    a += Mode == kRows ? 1 : Mode == kCols ? lda : MR;
    b += ldb;
  }
  // C's value: the product, added to C or to the bias, then multiplied by the scale (each rounded as the separate
  // add and multiply would be)
  if (n == NVe * W) {  // full tile
#pragma GCC unroll 16
    for (int i = 0; i < MRe; ++i) {
      T* ci = c + i * ldc;
#pragma GCC unroll 4
      for (int v = 0; v < NVe; ++v) {
        V r = add    ? S::add(S::loadu(ci + v * W), acc[i][v])
              : bias ? S::add(S::loadu(bias + v * W), acc[i][v])
                     : acc[i][v];
        if (scale) r = S::mul(r, S::loadu(scale + i * e.lds + v * W));
        S::storeu(ci + v * W, r);
      }
    }
  } else {  // right edge: masked
#pragma GCC unroll 16
    for (int i = 0; i < MRe; ++i) {
      T* ci = c + i * ldc;
#pragma GCC unroll 4
      for (int v = 0; v < NVe; ++v) {
        const int cnt = std::min(n - v * W, W);
        if (cnt <= 0) break;
        T* p = ci + v * W;
        if (cnt == W) {
          V r = add    ? S::add(S::loadu(p), acc[i][v])
                : bias ? S::add(S::loadu(bias + v * W), acc[i][v])
                       : acc[i][v];
          if (scale) r = S::mul(r, S::loadu(scale + i * e.lds + v * W));
          S::storeu(p, r);
        } else {
          V r = add    ? S::add(S::loadu_n(p, cnt), acc[i][v])
                : bias ? S::add(S::loadu_n(bias + v * W, cnt), acc[i][v])
                       : acc[i][v];
          if (scale) r = S::mul(r, S::loadu_n(scale + i * e.lds + v * W, cnt));
          S::storeu_n(p, r, cnt);
        }
      }
    }
  }
}

template <class T, int Mode, int NVe, std::size_t... I>
constexpr std::array<KernelFn<T>, sizeof...(I)> kernel_row(std::index_sequence<I...>) {
  return {{&micro_kernel<T, Mode, int(I) + 1, NVe>...}};
}
template <class T, int Mode, std::size_t... J>
constexpr std::array<std::array<KernelFn<T>, Cfg<T>::MR>, sizeof...(J)> kernel_table(std::index_sequence<J...>) {
  return {{kernel_row<T, Mode, int(J) + 1>(std::make_index_sequence<Cfg<T>::MR>{})...}};
}
// kKernels<T, Mode>[nv - 1][m - 1]
template <class T, int Mode>
constexpr auto kKernels = kernel_table<T, Mode>(std::make_index_sequence<Cfg<T>::NV>{});

// ------------------------------------------------------------------------------------------------------------
// Packing.
// ------------------------------------------------------------------------------------------------------------
#if defined(__AVX512F__)
// In-register transpose of a 16 x 16 float block: r[i] holds row i on entry and column i on exit.
inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {  // per 128-bit lane: t[2i] = a0 b0 a1 b1, t[2i+1] = a2 b2 a3 b3
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // lane L of r[4i+c] = column 4L+c of rows 4i..4i+3
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int c = 0; c < 4; ++c) {  // gather lane L of r[c], r[4+c], r[8+c], r[12+c] into column 4L+c
    const __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88),
                 u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
    t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    t[8 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    t[4 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// Up to 16 vectors, each holding 16 consecutive floats of one source line (row of A / column of B), are
// loaded from src[l*ld + k0 ...], transposed, and out(k, vector) is called for each of the kb k's.
// When `ahead` is not null, the same 16 values of the next group of lines are prefetched (one group ahead), so
// that packing a block that comes from L3 or memory keeps many cache misses in flight.
// Lines is the count known when compiling; `lines` (<= Lines) may cut it at run time: the lines from there on are
// zeros.
template <int Lines, class Out>
inline __attribute__((always_inline)) void load_transpose(const float* src, int64_t ld, int kb, const float* ahead,
                                                          Out&& out, int lines = Lines) {
  __m512 r[16];
  const __mmask16 km = __mmask16((1u << kb) - 1u);
  if (ahead)
#pragma GCC unroll 16
    for (int l = 0; l < Lines; ++l) _mm_prefetch(reinterpret_cast<const char*>(ahead + l * ld), _MM_HINT_T0);
#pragma GCC unroll 16
  for (int l = 0; l < 16; ++l)
    r[l] = l >= Lines || l >= lines
               ? _mm512_setzero_ps()
               : kb == 16 ? _mm512_loadu_ps(src + l * ld) : _mm512_maskz_loadu_ps(km, src + l * ld);
  transpose16x16(r);
  for (int k = 0; k < kb; ++k) out(k, r[k]);
}

// Row-major A (csa == 1), one full MR-row sliver of floats: MR rows -> kc x MR, 16 k's at a time.
// next: the first row of the next sliver (prefetched), or null.
inline void pack_A_rows_avx512(int64_t kc, const float* src, int64_t rsa, float* dst, const float* next) {
  static_assert(kMRf <= 16, "one 16x16 transpose per 16 k's");
  constexpr __mmask16 rows = __mmask16((1u << kMRf) - 1u);
  for (int64_t k0 = 0; k0 < kc; k0 += 16) {
    const int kb = int(std::min<int64_t>(16, kc - k0));
    load_transpose<kMRf>(src + k0, rsa, kb, next ? next + k0 : nullptr,
                         [&](int k, __m512 v) { _mm512_mask_storeu_ps(dst + (k0 + k) * kMRf, rows, v); });
  }
}

// B^T view (rsb == 1), one NR-column sliver of floats: n <= NR columns -> kc x NR. Only the ceil(n/16) vectors the
// kernel reads are written, the columns past n within them as zeros (e.g. Q K^T per head, n = the sequence length).
inline void pack_B_cols_avx512(int64_t kc, int n, const float* src, int64_t csb, float* dst) {
  constexpr int NR = kNVf * 16;
  for (int64_t k0 = 0; k0 < kc; k0 += 16) {
    const int kb = int(std::min<int64_t>(16, kc - k0));
    for (int h = 0; h * 16 < n; ++h)
      load_transpose<16>(
          src + k0 + 16 * h * csb, csb, kb, nullptr,
          [&](int k, __m512 v) { _mm512_store_ps(dst + (k0 + k) * NR + 16 * h, v); }, n - 16 * h);
  }
}
#endif

// One MR-row sliver of A (m <= MR rows from src, element (i,p) at src[i*rsa + p*csa]) -> kc x MR, k-major,
// zero padded to MR rows. next: where the next sliver starts (prefetched while this one is packed), or null.
template <class T>
void pack_A_sliver(int m, int64_t kc, const T* src, int64_t rsa, int64_t csa, T* __restrict dst, const T* next) {
  constexpr int MR = Cfg<T>::MR;
  if (m == MR && rsa == 1) {  // columns of A contiguous (A is a transposed view): straight copies
    for (int64_t k = 0; k < kc; ++k) {
      const T* s = src + k * csa;
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) dst[k * MR + i] = s[i];
    }
  } else if (m == MR && csa == 1) {  // row-major A: read MR rows side by side
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) return pack_A_rows_avx512(kc, src, rsa, dst, next);
#endif
    const T* rows[MR];
    for (int i = 0; i < MR; ++i) rows[i] = src + i * rsa;
    for (int64_t k = 0; k < kc; ++k) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) dst[k * MR + i] = rows[i][k];
    }
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      for (int i = 0; i < m; ++i) dst[k * MR + i] = src[i * rsa + k * csa];
      for (int i = m; i < MR; ++i) dst[k * MR + i] = T(0);
    }
  }
}

// Where the A block for the macro-kernel comes from when it is packed on the fly or read in place.
template <class T>
struct ASource {
  const T* A;  // element (0,0) of the block
  int64_t rsa, csa;
  AMode mode;  // kPacked: pack it; kRows / kCols: read it in place
};

// A block (mc x kc) -> consecutive MR-row slivers.
template <class T>
void pack_A(int64_t mc, int64_t kc, const ASource<T>& a, T* __restrict dst) {
  constexpr int MR = Cfg<T>::MR;
  for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += MR * kc)
    pack_A_sliver(int(std::min<int64_t>(MR, mc - i0)), kc, a.A + i0 * a.rsa, a.rsa, a.csa, dst,
                  mc - i0 >= 2 * MR ? a.A + (i0 + MR) * a.rsa : nullptr);
}

// Columns [j0, j1) of a B panel (kc x nc, element (p,j) at B[p*rsb + j*csb]) -> NR-column slivers, each kc x NR
// (k-major), zero padded; j0 is a multiple of NR, so slivers can be packed by different threads.
template <class T>
void pack_B(int64_t kc, int64_t j0, int64_t j1, const T* B, int64_t rsb, int64_t csb, T* __restrict dst) {
  constexpr int NR = Cfg<T>::NR, W = Cfg<T>::S::W;
  dst += j0 * kc;
  for (int64_t jj = j0; jj < j1; jj += NR, dst += NR * kc) {
    const int n = int(std::min<int64_t>(NR, j1 - jj));
    const T* src = B + jj * csb;
    if (csb == 1) {  // row-major B: each k row of the sliver is n contiguous values
      // The kernel reads whole vectors: the columns past n up to the next multiple of W are zeroed, the rest of
      // the sliver is never read.
      const int nw = std::min(NR, (n + W - 1) / W * W);
      if (n == NR) {
        for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * NR, src + k * rsb, sizeof(T) * NR);
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          for (int j = 0; j < n; ++j) dst[k * NR + j] = src[k * rsb + j];
          for (int j = n; j < nw; ++j) dst[k * NR + j] = T(0);
        }
      }
    } else if (rsb == 1) {  // B is a transposed view (e.g. x @ W^T): column j is contiguous in k
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        pack_B_cols_avx512(kc, n, src, csb, dst);
        continue;
      }
#endif
      if (n < NR)
        for (int64_t k = 0; k < kc; ++k)
          for (int j = n; j < NR; ++j) dst[k * NR + j] = T(0);
      constexpr int KB = 64;  // transpose in k-chunks so the written lines stay in L1
      for (int64_t k0 = 0; k0 < kc; k0 += KB) {
        const int64_t k1 = std::min<int64_t>(kc, k0 + KB);
        for (int j = 0; j < n; ++j) {
          const T* s = src + j * csb;
          for (int64_t k = k0; k < k1; ++k) dst[k * NR + j] = s[k];
        }
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        for (int j = 0; j < n; ++j) dst[k * NR + j] = src[k * rsb + j * csb];
        for (int j = n; j < NR; ++j) dst[k * NR + j] = T(0);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------------------
// Macro-kernel: packed A block (mc x kc) times B slivers [s0, s1) of the packed panel (nc columns) into C.
// When `src` is given, the A block is packed here, one sliver just before its first use: the packing of
// sliver i+1 (and its prefetches) then overlaps the arithmetic of sliver i instead of forming a separate,
// memory-bound phase. That matters when A is used by only a few B slivers (N small), e.g. attention.
// ------------------------------------------------------------------------------------------------------------
// B: the packed panel (ldb = 0), or the panel's first element in a row-major B read in place (ldb = its row
// stride).
template <class T>
void macro_kernel(int64_t mc, int64_t nc, int64_t kc, const ASource<T>* src, T* pa, const T* pb, int64_t ldb, T* C,
                  int64_t ldc, bool add, const Epilogue<T>& e, int64_t s0, int64_t s1) {
  constexpr int MR = Cfg<T>::MR, NR = Cfg<T>::NR, W = Cfg<T>::S::W;
  const int64_t kernel_ldb = ldb ? ldb : NR;
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t j = s * NR;
    const int n = int(std::min<int64_t>(NR, nc - j));
    const T* b = ldb ? pb + j : pb + j * kc;
    if (src && src->mode != kPacked) {
      const bool rows = src->mode == kRows;
      const auto& row = rows ? kKernels<T, kRows>[(n + W - 1) / W - 1] : kKernels<T, kCols>[(n + W - 1) / W - 1];
      // Slivers of MR rows, except that a last sliver of fewer than MR / 2 rows shares the rows of the one before
      // it (16 rows: 8 + 8, not 14 + 2): a sliver of a few rows is a few dependent chains of FMAs, which wait on
      // their latency instead of filling the FMA ports (attention per head: 16 x 32 @ 32 x 16 products). Which
      // kernel computes a row does not change its arithmetic.
      const int64_t rest = mc % MR, split = mc > MR && rest > 0 && rest < MR / 2 ? mc - MR - rest : mc;
      for (int64_t i = 0; i < mc;) {
        const int64_t m = i < split ? std::min<int64_t>(MR, mc - i) : i == split ? (MR + rest) / 2 : mc - i;
        row[m - 1](kc, src->A + i * src->rsa, rows ? src->rsa : src->csa, b, kernel_ldb, C + i * ldc + j, ldc, n,
                   add, e.at(i, j));
        i += m;
      }
      continue;
    }
    const auto& row = kKernels<T, kPacked>[(n + W - 1) / W - 1];
    for (int64_t i = 0; i < mc; i += MR) {
      const int m = int(std::min<int64_t>(MR, mc - i));
      if (src && s == s0)
        pack_A_sliver(m, kc, src->A + i * src->rsa, src->rsa, src->csa, pa + i * kc,
                      mc - i >= 2 * MR ? src->A + (i + MR) * src->rsa : nullptr);
      row[m - 1](kc, pa + i * kc, 0, b, kernel_ldb, C + i * ldc + j, ldc, n, add, e.at(i, j));
    }
  }
}

// ------------------------------------------------------------------------------------------------------------
// Workspace: one 64-byte aligned buffer per calling thread, grown on demand and reused across calls.
// ------------------------------------------------------------------------------------------------------------
struct Workspace {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  ~Workspace() { release(); }
  void release() {
    if (ptr) ::operator delete(ptr, std::align_val_t(64));
    ptr = nullptr;
    bytes = 0;
  }
  void* get(std::size_t n) {
    if (n > bytes) {
      release();
      ptr = ::operator new(n, std::align_val_t(64));
      bytes = n;
    }
    return ptr;
  }
};

template <class T>
T* workspace(std::size_t elems) {
  static thread_local Workspace ws;
  return static_cast<T*>(ws.get(elems * sizeof(T)));
}

constexpr int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Buffer sizes (elements, rounded to whole cache lines) for one product.
template <class T>
struct Sizes {
  int64_t a, b;
  Sizes(int64_t M, int64_t N, int64_t K) {
    using C = Cfg<T>;
    const int64_t kc = std::min<int64_t>(K, C::KC);
    a = round_up(std::min<int64_t>(round_up(M, C::MR), C::MC) * kc, 64);
    b = round_up(std::min<int64_t>(round_up(N, C::NR), C::NC) * kc, 64);
  }
};

template <class T>
void zero_or_keep(int64_t M, int64_t N, T* C, int64_t ldc, bool accumulate) {
  if (accumulate) return;
  for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, T(0));
}

// Read A in place instead of packing it? Packing costs about as much as a few B slivers' worth of arithmetic, so
// skip it when A has one unit stride and each A element is used by few B slivers (N <= 16 NR) -- except when the
// other stride is a multiple of 4 KiB: then the lines read side by side all fall into the same cache sets and
// evict each other, and the packed copy is faster.
template <class T>
AMode a_mode(int64_t N, int64_t rsa, int64_t csa) {
  if (N > 16 * Cfg<T>::NR) return kPacked;
  if (csa == 1 && (rsa * int64_t(sizeof(T))) % 4096 != 0) return kRows;
  if (rsa == 1 && (csa * int64_t(sizeof(T))) % 4096 != 0) return kCols;
  return kPacked;
}

// Read B in place instead of packing it? When B is row-major (csb == 1), each k row of a sliver is already NR
// consecutive values, and when A has few rows (M <= 256, e.g. a weight gradient x^T-side product with K = all
// the tokens, or attention per head) each B sliver serves only a few A slivers: the packed copy (one more pass
// over B, written and read back) costs more than it saves. Only whole vectors (N a multiple of W: the kernel
// reads NVe*W values of every row, and must not read past B's end), and not with a row stride that is a multiple
// of 4 KiB (the rows would all fall into the same cache sets).
template <class T>
bool read_b_in_place(int64_t M, int64_t N, int64_t rsb, int64_t csb) {
  return csb == 1 && M <= 256 && N % Cfg<T>::S::W == 0 && (rsb * int64_t(sizeof(T))) % 4096 != 0;
}

// One row of A (M = 1): C[j] (+)= sum_p A[p] B(p,j), without packing. The blocked path packs B first, which for
// a single row costs as much as the product itself (a 1 x 128 @ 128 x 384 product took 7.8 us, 13 GFLOP/s), and a
// decoding step with the KV cache is made of such products (batch 1, one new token per step).
template <class T>
void gemm_one_row(int64_t N, int64_t K, const T* A, int64_t csa, const T* B, int64_t rsb, int64_t csb, T* C,
                  bool accumulate) {
  constexpr int L = 64 / int(sizeof(T));  // lanes of one 512-bit register: the compiler vectorises the k loops
  if (rsb == 1) {
    // B(p,j) = B[j*csb + p]: each column is contiguous (B = W^T of a Linear weight W), so C[j] = dot(A, column j).
    // Four columns at a time, each summed in L partial sums (lane k takes p = k, k + L, ...), then added up in a
    // fixed order: deterministic, and independent of how the columns are grouped.
    T a_buf[512];
    std::vector<T> a_heap;
    const T* a = A;
    if (csa != 1) {  // a strided row: copy it once
      T* dst = K <= 512 ? a_buf : (a_heap.resize(size_t(K)), a_heap.data());
      for (int64_t p = 0; p < K; ++p) dst[p] = A[p * csa];
      a = dst;
    }
    const int64_t K0 = K / L * L;
    auto finish = [&](T* acc, const T* b, int64_t j) {
      for (int64_t p = K0; p < K; ++p) acc[p - K0] += a[p] * b[p];  // the tail, lane by lane
      T sum;
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) sum = _mm512_reduce_add_ps(_mm512_loadu_ps(acc));  // a fixed tree
      else if constexpr (std::is_same_v<T, double>) sum = _mm512_reduce_add_pd(_mm512_loadu_pd(acc));
      else
#endif
      {
        for (int w = L / 2; w >= 1; w /= 2)
          for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
        sum = acc[0];
      }
      C[j] = accumulate ? C[j] + sum : sum;
    };
    int64_t j = 0;
    for (; j + 4 <= N; j += 4) {
      const T *b0 = B + j * csb, *b1 = b0 + csb, *b2 = b1 + csb, *b3 = b2 + csb;
      T s0[L] = {}, s1[L] = {}, s2[L] = {}, s3[L] = {};
      for (int64_t p = 0; p < K0; p += L)
        for (int k = 0; k < L; ++k) {
          s0[k] += a[p + k] * b0[p + k];
          s1[k] += a[p + k] * b1[p + k];
          s2[k] += a[p + k] * b2[p + k];
          s3[k] += a[p + k] * b3[p + k];
        }
      finish(s0, b0, j);
      finish(s1, b1, j + 1);
      finish(s2, b2, j + 2);
      finish(s3, b3, j + 3);
    }
    for (; j < N; ++j) {
      const T* b0 = B + j * csb;
      T s0[L] = {};
      for (int64_t p = 0; p < K0; p += L)
        for (int k = 0; k < L; ++k) s0[k] += a[p + k] * b0[p + k];
      finish(s0, b0, j);
    }
    return;
  }
  // Otherwise walk B by rows: C += A[p] * row p of B, for p in order (contiguous and vectorised when csb == 1).
  if (!accumulate) std::fill(C, C + N, T(0));
  for (int64_t p = 0; p < K; ++p) {
    const T ap = A[p * csa];
    const T* b = B + p * rsb;
    if (csb == 1)
      for (int64_t j = 0; j < N; ++j) C[j] += ap * b[j];
    else
      for (int64_t j = 0; j < N; ++j) C[j] += ap * b[j * csb];
  }
}

// One product on the calling thread, with caller-provided pack buffers.
template <class T>
void gemm_serial(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B, int64_t rsb,
                 int64_t csb, T* C, int64_t ldc, bool accumulate, Epilogue<T> e, T* pa, T* pb) {
  using Cf = Cfg<T>;
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || M == 1) {  // the paths without a kernel: C starts as the bias, the product added, then scaled
    if (e.bias)
      for (int64_t i = 0; i < M; ++i) std::copy(e.bias, e.bias + N, C + i * ldc);
    if (K <= 0) zero_or_keep(M, N, C, ldc, accumulate || e.bias);
    else gemm_one_row(N, K, A, csa, B, rsb, csb, C, accumulate || e.bias);
    if (e.scale)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C[i * ldc + j] *= e.scale[i * e.lds + j];
    return;
  }
  const AMode amode = a_mode<T>(N, rsa, csa);
  const bool b_in_place = read_b_in_place<T>(M, N, rsb, csb);
  for (int64_t jc = 0; jc < N; jc += Cf::NC) {
    const int64_t nc = std::min<int64_t>(Cf::NC, N - jc);
    const int64_t ns = (nc + Cf::NR - 1) / Cf::NR;
    for (int64_t pc = 0; pc < K; pc += Cf::KC) {
      const int64_t kc = std::min<int64_t>(Cf::KC, K - pc);
      const bool add = accumulate || pc > 0;
      const Epilogue<T> ep = e.pass(pc == 0, pc + kc >= K);
      if (!b_in_place) pack_B(kc, 0, nc, B + pc * rsb + jc * csb, rsb, csb, pb);
      const T* panel = b_in_place ? B + pc * rsb + jc : pb;
      for (int64_t ic = 0; ic < M; ic += Cf::MC) {
        const int64_t mc = std::min<int64_t>(Cf::MC, M - ic);
        const ASource<T> src{A + ic * rsa + pc * csa, rsa, csa, amode};
        macro_kernel(mc, nc, kc, &src, pa, panel, b_in_place ? rsb : 0, C + ic * ldc + jc, ldc, add, ep.at(ic, jc),
                     0, ns);
      }
    }
  }
}

// Work handed out in pieces, first come first served: each thread takes the next piece until none is left. On a
// busy machine the OS often runs one of the threads late; with a fixed split the others would wait at the join for
// its share, here they simply take more pieces (and a thread that starts after the last piece is gone does nothing).
class Pieces {
 public:
  explicit Pieces(int64_t n) : n_(n) {}
  bool next(int64_t& i) {
    i = next_.fetch_add(1, std::memory_order_relaxed);
    return i < n_;
  }

 private:
  std::atomic<int64_t> next_{0};
  const int64_t n_;
};

// How many pieces to cut `units` (MR-slivers, NR-slivers or matrices) into for nt threads: a few per thread, so
// that a late thread costs little, but not so many that repacking the shared operand per piece adds up.
int64_t piece_count(int64_t units, int nt, int64_t min_units_per_piece) {
  return std::max<int64_t>(1, std::min<int64_t>(4 * int64_t(nt), units / min_units_per_piece));
}

// Threads to use for one product of this size: forking and joining costs a few microseconds.
int threads_for(int64_t M, int64_t N, int64_t K) {
  int nt = num_threads();
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
#else
  return 1;
#endif
  const double work = double(M) * double(N) * double(K);
  if (work < 48.0 * 48.0 * 48.0) return 1;
  return nt;
}

// One product on nt threads. C is cut into independent blocks -- whole MR-slivers of rows, or NR-slivers of
// columns when C has few rows -- handed out as Pieces; each thread multiplies the blocks it takes on its own, with
// its own pack buffers. The threads never wait for each other inside the product (one fork, one join): packing the
// shared operand once per piece costs a little (about K*N element copies per piece for a row split), but a thread
// that the OS schedules late -- common on a busy laptop -- delays nobody, the others take its pieces.
template <class T>
void gemm_parallel(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B, int64_t rsb,
                   int64_t csb, T* C, int64_t ldc, bool accumulate, const Epilogue<T>& e, int nt) {
  const Sizes<T> sz(M, N, K);
  if (nt <= 1) {
    T* ws = workspace<T>(sz.a + sz.b);
    return gemm_serial(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, e, ws, ws + sz.a);
  }
#ifdef _OPENMP
  using Cf = Cfg<T>;
  const int64_t m_slivers = (M + Cf::MR - 1) / Cf::MR, n_slivers = (N + Cf::NR - 1) / Cf::NR;
  bool split_m = m_slivers >= 4 * nt || m_slivers >= n_slivers;
  int64_t n_pieces = piece_count(split_m ? m_slivers : n_slivers, nt, split_m ? 4 : 2);
  if (n_pieces <= nt) {
    // Too few slivers for more than a piece a thread (a weight gradient of `tiny`, 64 x 2048 @ 2048 x 64, made
    // one piece and ran on one thread): one piece a thread, cut along the dim whose busiest thread computes the
    // least of C (128 x 4096 @ 4096 x 128 splits its 4 column slivers 2 + 2 rather than its 10 row slivers 5 + 5,
    // 70 rows against 58).
    const int64_t busiest_m = std::min(M, (m_slivers + nt - 1) / nt * Cf::MR) * N;
    const int64_t busiest_n = std::min(N, (n_slivers + nt - 1) / nt * Cf::NR) * M;
    split_m = busiest_m <= busiest_n;
    n_pieces = std::min<int64_t>(nt, split_m ? m_slivers : n_slivers);
  } else {
    n_pieces -= n_pieces % nt;  // as many pieces for every thread (7 pieces made 4 + 3 on two threads)
  }
  const int64_t units = split_m ? m_slivers : n_slivers;
  Pieces pieces(n_pieces);
  const int64_t per = sz.a + sz.b;
  T* ws = workspace<T>(per * nt);
#pragma omp parallel num_threads(nt)
  {
    T* pa = ws + per * omp_get_thread_num();
    for (int64_t piece; pieces.next(piece);) {
      const int64_t s0 = units * piece / n_pieces, s1 = units * (piece + 1) / n_pieces;
      if (split_m) {
        const int64_t i0 = s0 * Cf::MR, i1 = std::min(M, s1 * Cf::MR);
        gemm_serial(i1 - i0, N, K, A + i0 * rsa, rsa, csa, B, rsb, csb, C + i0 * ldc, ldc, accumulate, e.at(i0, 0),
                    pa, pa + sz.a);
      } else {
        const int64_t j0 = s0 * Cf::NR, j1 = std::min(N, s1 * Cf::NR);
        gemm_serial(M, j1 - j0, K, A, rsa, csa, B + j0 * csb, rsb, csb, C + j0, ldc, accumulate, e.at(0, j0), pa,
                    pa + sz.a);
      }
    }
  }
#endif
}

template <class T>
void gemm_impl(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B, int64_t rsb,
               int64_t csb, T* C, int64_t ldc, bool accumulate, const Epilogue<T>& e) {
  check(!(e.bias && accumulate), "gemm: a bias is what C starts from; it cannot be combined with accumulate");
  if (M <= 0 || N <= 0) return;
  gemm_parallel(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, e, threads_for(M, N, K));
}

template <class T>
void gemm_batched_impl(int64_t batch, const int64_t* a_off, const int64_t* b_off, const int64_t* c_off, int64_t M,
                       int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B, int64_t rsb,
                       int64_t csb, T* C, int64_t ldc, bool accumulate) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t b = 0; b < batch; ++b) zero_or_keep(M, N, C + c_off[b], ldc, accumulate);
    return;
  }
  const int nt = threads_for(M * batch, N, K);
  const Sizes<T> sz(M, N, K);
  const Epilogue<T> none;  // batched products have no bias or scale
  // Whole matrices per thread when there are enough of them, or when each is too small to split well.
  const bool small = double(M) * double(N) * double(K) < 256.0 * 256.0 * 256.0;
  const bool over_batch = nt > 1 && batch >= nt && (small || batch % nt == 0 || batch >= 4 * nt);
  if (nt <= 1 || !over_batch) {
    const int nt1 = nt <= 1 ? 1 : threads_for(M, N, K);
    for (int64_t b = 0; b < batch; ++b)
      gemm_parallel(M, N, K, A + a_off[b], rsa, csa, B + b_off[b], rsb, csb, C + c_off[b], ldc, accumulate, none,
                    nt1);
    return;
  }
#ifdef _OPENMP
  const int64_t per = sz.a + sz.b;
  T* ws = workspace<T>(per * nt);
  const int64_t n_pieces = std::min<int64_t>(batch, 8 * int64_t(nt));
  Pieces pieces(n_pieces);
#pragma omp parallel num_threads(nt)
  {
    T* pa = ws + per * omp_get_thread_num();
    for (int64_t piece; pieces.next(piece);)  // contiguous runs keep broadcast operands warm in cache
      for (int64_t b = batch * piece / n_pieces; b < batch * (piece + 1) / n_pieces; ++b)
        gemm_serial(M, N, K, A + a_off[b], rsa, csa, B + b_off[b], rsb, csb, C + c_off[b], ldc, accumulate, none,
                    pa, pa + sz.a);
  }
#endif
}

}  // namespace

const char* gemm_kernel_name() {
#if defined(__AVX512F__)
  return "avx512 14x32";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2 6x16";
#elif defined(__aarch64__) && defined(__ARM_NEON)
  return "neon 8x12";
#else
  return "generic 6x16";
#endif
}

void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t rsa, int64_t csa, const float* B, int64_t rsb,
          int64_t csb, float* C, int64_t ldc, bool accumulate, const float* bias, const float* scale,
          int64_t lds) {
  gemm_impl(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, Epilogue<float>{bias, scale, lds});
}
void gemm(int64_t M, int64_t N, int64_t K, const double* A, int64_t rsa, int64_t csa, const double* B, int64_t rsb,
          int64_t csb, double* C, int64_t ldc, bool accumulate, const double* bias, const double* scale,
          int64_t lds) {
  gemm_impl(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, Epilogue<double>{bias, scale, lds});
}
void gemm_batched(int64_t batch, const int64_t* a_off, const int64_t* b_off, const int64_t* c_off, int64_t M,
                  int64_t N, int64_t K, const float* A, int64_t rsa, int64_t csa, const float* B, int64_t rsb,
                  int64_t csb, float* C, int64_t ldc, bool accumulate) {
  gemm_batched_impl(batch, a_off, b_off, c_off, M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate);
}
void gemm_batched(int64_t batch, const int64_t* a_off, const int64_t* b_off, const int64_t* c_off, int64_t M,
                  int64_t N, int64_t K, const double* A, int64_t rsa, int64_t csa, const double* B, int64_t rsb,
                  int64_t csb, double* C, int64_t ldc, bool accumulate) {
  gemm_batched_impl(batch, a_off, b_off, c_off, M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate);
}

}  // namespace qkvlab
