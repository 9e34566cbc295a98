// General matrix multiply (GEMM) kernels: the hot loop under matmul, Linear and attention.
//
// Every operand is described by a base pointer and two strides, so transposed or sliced views are multiplied
// without copying them first (the kernel packs whatever layout it gets into its own contiguous buffers).
// float is the working precision; the double overloads exist for gradcheck (same algorithm, same code).
// Threads: qkvlab::num_threads() (tensor/parallel.h). Implementation notes: tensor/gemm.cpp.
#pragma once
#include <cstdint>

namespace qkvlab {

// Read this first: the plain triple loop that gemm() below is the fast version of. Same arguments, same result up
// to rounding: it sums each dot product in double, in the order p = 0..K-1, and rounds once to T, where gemm()
// sums in T over blocks of K. Slow (no blocking, no packing, no threads); tests/tensor/test_gemm.cpp holds gemm()
// and gemm_batched() to it over awkward shapes, strides and transposes.
template <class T>
void gemm_reference(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsa, int64_t csa, const T* B, int64_t rsb,
                    int64_t csb, T* C, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double sum = accumulate ? double(C[i * ldc + j]) : 0.0;
      for (int64_t p = 0; p < K; ++p) sum += double(A[i * rsa + p * csa]) * double(B[p * rsb + j * csb]);
      C[i * ldc + j] = T(sum);
    }
}

// C = A @ B  (or C += A @ B when accumulate) for one M x K times K x N product.
// A's element (i,p) is A[i*rsa + p*csa]; B's element (p,j) is B[p*rsb + j*csb] (any strides, so transposed
// operands are views: e.g. A^T is just swapped rsa/csa). C is row-major with leading dimension ldc (C[i*ldc + j]).
// M, N or K may be 0; K = 0 gives C = 0 (or leaves C unchanged when accumulate). C must not overlap A or B.
// bias (N values, or null; not with accumulate): C = bias + A @ B, each row starting from the bias, which the
// kernel adds as it first stores a tile (a Linear layer's output in one pass). The same bits as copying the bias
// into every row of C and accumulating.
// scale (an M x N array, element (i,j) at scale[i*lds + j], or null): C = (what C would be without it) * scale,
// multiplied where the kernel last stores a tile; the same bits as multiplying C afterwards.
void gemm(int64_t M, int64_t N, int64_t K,
          const float* A, int64_t rsa, int64_t csa,
          const float* B, int64_t rsb, int64_t csb,
          float* C, int64_t ldc, bool accumulate, const float* bias = nullptr,
          const float* scale = nullptr, int64_t lds = 0);
void gemm(int64_t M, int64_t N, int64_t K,
          const double* A, int64_t rsa, int64_t csa,
          const double* B, int64_t rsb, int64_t csb,
          double* C, int64_t ldc, bool accumulate, const double* bias = nullptr,
          const double* scale = nullptr, int64_t lds = 0);

// A float product is summed over K in blocks of this many, each block's sum added to C in order (so a product cut
// along K at multiples of it, accumulating into C, gives the same bits as the whole product).
constexpr int64_t kGemmKBlock = 256;
// Batched: for b in [0,batch): C + c_off[b] = A + a_off[b] @ B + b_off[b], same M,N,K and strides for all.
// Offsets are in elements. Offsets may repeat for A or B (batch broadcasting), never for C.
void gemm_batched(int64_t batch, const int64_t* a_off, const int64_t* b_off, const int64_t* c_off,
                  int64_t M, int64_t N, int64_t K,
                  const float* A, int64_t rsa, int64_t csa,
                  const float* B, int64_t rsb, int64_t csb,
                  float* C, int64_t ldc, bool accumulate);
void gemm_batched(int64_t batch, const int64_t* a_off, const int64_t* b_off, const int64_t* c_off,
                  int64_t M, int64_t N, int64_t K,
                  const double* A, int64_t rsa, int64_t csa,
                  const double* B, int64_t rsb, int64_t csb,
                  double* C, int64_t ldc, bool accumulate);

// Which micro-kernel this build compiled in, chosen by the target's instruction set (-march): "avx512 14x32",
// "avx2 6x16", "neon 8x12" (every ARM64 build) or "generic 6x16" (GCC/Clang vector extensions). `qkvlab bench`
// prints it among the machine facts.
const char* gemm_kernel_name();

}  // namespace qkvlab
