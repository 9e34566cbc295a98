// General matrix multiply (GEMM) kernels: the hot loop under matmul, Linear and attention.
//
// Every operand is described by a base pointer and two strides, so transposed or sliced views are multiplied
// without copying them first (the kernel packs whatever layout it gets into its own contiguous buffers).
// float is the working precision; the double overloads exist for gradcheck (same algorithm, same code).
// Threads: qkvlab::num_threads() (tensor/parallel.h). Implementation notes: tensor/gemm.cpp.
#pragma once
#include <cstdint>

namespace qkvlab {

// C = A @ B  (or C += A @ B when accumulate) for one M x K times K x N product.
// A's element (i,p) is A[i*rsa + p*csa]; B's element (p,j) is B[p*rsb + j*csb] (any strides, so transposed
// operands are views: e.g. A^T is just swapped rsa/csa). C is row-major with leading dimension ldc (C[i*ldc + j]).
// M, N or K may be 0; K = 0 gives C = 0 (or leaves C unchanged when accumulate). C must not overlap A or B.
void gemm(int64_t M, int64_t N, int64_t K,
          const float* A, int64_t rsa, int64_t csa,
          const float* B, int64_t rsb, int64_t csb,
          float* C, int64_t ldc, bool accumulate);
void gemm(int64_t M, int64_t N, int64_t K,
          const double* A, int64_t rsa, int64_t csa,
          const double* B, int64_t rsb, int64_t csb,
          double* C, int64_t ldc, bool accumulate);

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

}  // namespace qkvlab
