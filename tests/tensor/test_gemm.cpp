// Tests for tensor/gemm: every result is compared with gemm_reference (tensor/gemm.h), the plain triple loop that
// sums in double and rounds once. Tolerance: the worst-case rounding bound of a length-K dot product,
// (K+2) * unit roundoff * sum_k |a_ik||b_kj| (plus |C_ij| when accumulating), per element, plus one unit roundoff
// of the same scale for the reference's own final rounding to float: (K+3) u sum |a||b|. A wrong index, a lost
// block or a missed edge shows up as an error of the order of sum |a||b| itself, far above it.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tensor/gemm.h"
#include "tensor/parallel.h"

using qkvlab::gemm;
using qkvlab::gemm_batched;

namespace {

// How an operand of logical shape R x Cc is laid out in memory: element (r,c) at base[r*rs + c*cs].
enum class Layout { RowMajor, ColMajor, Strided, StridedT };

const char* name(Layout l) {
  switch (l) {
    case Layout::RowMajor: return "row-major";
    case Layout::ColMajor: return "transposed";
    case Layout::Strided: return "strided";
    case Layout::StridedT: return "strided-transposed";
  }
  return "?";
}

// Strides for a R x Cc operand; "strided" ones leave gaps, as a slice of a bigger tensor does.
void strides(Layout l, int64_t R, int64_t Cc, int64_t& rs, int64_t& cs) {
  rs = Cc;
  cs = 1;
  switch (l) {
    case Layout::RowMajor: rs = Cc; cs = 1; break;
    case Layout::ColMajor: rs = 1; cs = R; break;
    case Layout::Strided: rs = 2 * Cc + 3; cs = 2; break;
    case Layout::StridedT: rs = 3; cs = 3 * R + 1; break;
  }
}

// Exactly as many elements as the view spans, so a sanitizer build catches any read past it.
int64_t extent(int64_t R, int64_t Cc, int64_t rs, int64_t cs) {
  if (R == 0 || Cc == 0) return 1;
  return (R - 1) * rs + (Cc - 1) * cs + 1;
}

template <class T>
constexpr double unit_roundoff() {
  return std::numeric_limits<T>::epsilon() / 2;
}

template <class T>
struct Operand {
  int64_t R, Cc, rs = 0, cs = 0;
  std::vector<T> data;
  Operand(int64_t r, int64_t c, Layout l, std::mt19937& rng) : R(r), Cc(c) {
    strides(l, r, c, rs, cs);
    data.resize(size_t(extent(r, c, rs, cs)));
    std::uniform_real_distribution<double> U(-1.0, 1.0);
    for (auto& x : data) x = T(U(rng));
  }
  T at(int64_t i, int64_t j) const { return data[size_t(i * rs + j * cs)]; }
};

// C (M x N, leading dimension ldc) against gemm_reference. C0 is C before the call.
template <class T>
void check_product(int64_t M, int64_t N, int64_t K, const Operand<T>& A, const Operand<T>& B, const T* A_base,
                   const T* B_base, const std::vector<T>& C0, const std::vector<T>& C, int64_t ldc, bool accumulate,
                   const std::string& what) {
  std::vector<T> R = C0;
  qkvlab::gemm_reference(M, N, K, A_base, A.rs, A.cs, B_base, B.rs, B.cs, R.data(), ldc, accumulate);
  const double u = unit_roundoff<T>();
  int64_t bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double mag = accumulate ? std::fabs(double(C0[size_t(i * ldc + j)])) : 0.0;  // the scale of the error bound
      for (int64_t p = 0; p < K; ++p)
        mag += std::fabs(double(A_base[i * A.rs + p * A.cs]) * double(B_base[p * B.rs + j * B.cs]));
      const double ref = R[size_t(i * ldc + j)];
      const double got = C[size_t(i * ldc + j)];
      const double err = std::fabs(got - ref);
      const double tol = double(K + 3) * u * mag + std::numeric_limits<double>::min();
      if (!(err <= tol)) ++bad;  // also catches NaN
      worst = std::max(worst, mag > 0 ? err / mag : err);
    }
    // the padding between rows (ldc > N) must be untouched
    for (int64_t j = N; j < ldc && i + 1 < M; ++j)
      if (!(C[size_t(i * ldc + j)] == C0[size_t(i * ldc + j)])) ++bad;
  }
  INFO(what << ": " << bad << " wrong elements, worst relative error " << worst);
  CHECK(bad == 0);
}

template <class T>
void run_case(int64_t M, int64_t N, int64_t K, Layout la, Layout lb, bool accumulate, int64_t ldc_pad,
              std::mt19937& rng) {
  Operand<T> A(M, K, la, rng), B(K, N, lb, rng);
  const int64_t ldc = N + ldc_pad;
  std::vector<T> C(size_t(std::max<int64_t>(1, M * ldc)));
  std::uniform_real_distribution<double> U(-1.0, 1.0);
  for (auto& x : C) x = T(U(rng));
  if (!accumulate)  // old contents must be ignored, even NaN
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[size_t(i * ldc + j)] = std::numeric_limits<T>::quiet_NaN();
  const std::vector<T> C0 = C;
  gemm(M, N, K, A.data.data(), A.rs, A.cs, B.data.data(), B.rs, B.cs, C.data(), ldc, accumulate);
  const std::string what = std::to_string(M) + "x" + std::to_string(K) + " @ " + std::to_string(K) + "x" +
                           std::to_string(N) + ", A " + name(la) + ", B " + name(lb) + ", ldc " +
                           std::to_string(ldc) + (accumulate ? ", accumulate" : "") + ", " + (sizeof(T) == 4 ? "float" : "double") +
                           ", threads " + std::to_string(qkvlab::num_threads());
  check_product(M, N, K, A, B, A.data.data(), B.data.data(), C0, C, ldc, accumulate, what);
}

// Runs body with 1 and then 2 threads, restoring the setting afterwards.
template <class F>
void with_threads(F&& body) {
  const int saved = qkvlab::num_threads();
  for (int t : {1, 2}) {
    qkvlab::set_num_threads(t);
    body();
  }
  qkvlab::set_num_threads(saved);
}

const Layout kLayouts[] = {Layout::RowMajor, Layout::ColMajor, Layout::Strided, Layout::StridedT};

struct Dims {
  int64_t M, N, K;
};

// Sizes 1, primes around the register tile, and ones crossing the cache blocks (K > KC, M > MC, N > NR multiples).
const Dims kSmallShapes[] = {{1, 1, 1},   {1, 13, 7},   {7, 1, 13},   {13, 7, 1},  {7, 13, 31},  {31, 7, 13},
                             {13, 31, 7}, {127, 31, 13}, {31, 127, 7}, {14, 32, 5}, {15, 33, 17}, {29, 65, 3},
                             {2, 3, 300}, {45, 47, 19}, {8, 12, 9}, {17, 25, 257}, {24, 36, 5},
                             {16, 16, 32}, {16, 32, 16},  // attention per head (T 16, D 32)
                             {17, 48, 300}};  // a row-major B read in place (N whole vectors, few rows), K > KC

}  // namespace

TEMPLATE_TEST_CASE("gemm matches gemm_reference for small and odd shapes in every layout", "[gemm]", float,
                   double) {
  std::mt19937 rng(1234);
  with_threads([&] {
    for (const auto& d : kSmallShapes)
      for (Layout la : kLayouts)
        for (Layout lb : kLayouts)
          for (bool acc : {false, true}) run_case<TestType>(d.M, d.N, d.K, la, lb, acc, acc ? 3 : 0, rng);
  });
}

TEMPLATE_TEST_CASE("gemm with one row of A (the unpacked decoding path) matches gemm_reference", "[gemm]", float,
                   double) {
  // N around the 4-column groups, K around the 16- and 8-lane chunks and past the 512-element copy of a strided A.
  std::mt19937 rng(77);
  const Dims shapes[] = {{1, 4, 1}, {1, 5, 15}, {1, 9, 16}, {1, 17, 33}, {1, 3, 8}, {1, 384, 128}, {1, 7, 600}};
  with_threads([&] {
    for (const auto& d : shapes)
      for (Layout la : kLayouts)
        for (Layout lb : kLayouts)
          for (bool acc : {false, true}) run_case<TestType>(d.M, d.N, d.K, la, lb, acc, 0, rng);
  });
}

TEMPLATE_TEST_CASE("gemm matches gemm_reference for large shapes", "[gemm]", float, double) {
  std::mt19937 rng(99);
  with_threads([&] {
    run_case<TestType>(1031, 1029, 17, Layout::RowMajor, Layout::RowMajor, false, 0, rng);   // many row blocks
    run_case<TestType>(17, 29, 1031, Layout::RowMajor, Layout::ColMajor, true, 5, rng);      // several K passes
    run_case<TestType>(3, 4200, 300, Layout::RowMajor, Layout::RowMajor, false, 1, rng);     // N beyond NC
    run_case<TestType>(20, 600, 100, Layout::Strided, Layout::ColMajor, false, 0, rng);      // few rows, many columns
    run_case<TestType>(200, 130, 520, Layout::ColMajor, Layout::RowMajor, true, 0, rng);     // A^T @ B
    run_case<TestType>(250, 127, 261, Layout::StridedT, Layout::Strided, false, 2, rng);
  });
}

TEMPLATE_TEST_CASE("gemm with an empty dimension", "[gemm]", float, double) {
  using T = TestType;
  with_threads([&] {
    // M = 0 or N = 0: nothing is written (C may even be null)
    gemm(0, 5, 3, static_cast<const T*>(nullptr), 3, 1, static_cast<const T*>(nullptr), 5, 1,
         static_cast<T*>(nullptr), 5, false);
    gemm(4, 0, 3, static_cast<const T*>(nullptr), 3, 1, static_cast<const T*>(nullptr), 0, 1,
         static_cast<T*>(nullptr), 0, false);
    // K = 0: C = 0, or unchanged when accumulating; the padding column stays untouched
    std::vector<T> C(4 * 6, T(7));
    gemm(4, 5, 0, static_cast<const T*>(nullptr), 0, 1, static_cast<const T*>(nullptr), 5, 1, C.data(), 6, true);
    for (T x : C) CHECK(x == T(7));
    gemm(4, 5, 0, static_cast<const T*>(nullptr), 0, 1, static_cast<const T*>(nullptr), 5, 1, C.data(), 6, false);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 6; ++j) CHECK(C[size_t(i * 6 + j)] == (j < 5 ? T(0) : T(7)));
  });
}

TEST_CASE("gemm holds the micro-kernel of the instruction set it was compiled for", "[gemm]") {
  // The other cases here test whichever kernel this build holds; this one says which, so that a build for ARM64
  // that fell back to the portable kernel (or an x86 one without AVX) does not pass unnoticed.
  const std::string name = qkvlab::gemm_kernel_name();
  INFO("kernel: " << name);
#if defined(__aarch64__)
  CHECK(name == "neon 8x12");
#elif defined(__AVX512F__)
  CHECK(name == "avx512 14x32");
#elif defined(__AVX2__) && defined(__FMA__)
  CHECK(name == "avx2 6x16");
#else
  CHECK(name == "generic 6x16");
#endif
}

TEST_CASE("gemm computes a known small product exactly", "[gemm]") {
  // [[1,2,3],[4,5,6]] @ [[7,8],[9,10],[11,12]] = [[58,64],[139,154]]
  const float A[] = {1, 2, 3, 4, 5, 6}, B[] = {7, 8, 9, 10, 11, 12};
  float C[4] = {};
  gemm(2, 2, 3, A, 3, 1, B, 2, 1, C, 2, false);
  CHECK(C[0] == 58);
  CHECK(C[1] == 64);
  CHECK(C[2] == 139);
  CHECK(C[3] == 154);
  // A^T as a view: A stored as 3x2 [[1,4],[2,5],[3,6]] read with rsa = 1, csa = 2
  const float At[] = {1, 4, 2, 5, 3, 6};
  gemm(2, 2, 3, At, 1, 2, B, 2, 1, C, 2, true);
  CHECK(C[0] == 116);
  CHECK(C[3] == 308);
  // and so does the reference the other tests hold gemm to
  float R[4] = {};
  qkvlab::gemm_reference(2, 2, 3, A, 3, 1, B, 2, 1, R, 2, false);
  CHECK((R[0] == 58 && R[1] == 64 && R[2] == 139 && R[3] == 154));
  qkvlab::gemm_reference(2, 2, 3, At, 1, 2, B, 2, 1, R, 2, true);
  CHECK((R[0] == 116 && R[1] == 128 && R[2] == 278 && R[3] == 308));
}

namespace {

template <class T>
void run_batched(int64_t batch, int64_t M, int64_t N, int64_t K, Layout la, Layout lb, bool accumulate,
                 bool broadcast_a, bool broadcast_b, std::mt19937& rng) {
  // Each batch entry lives at its own offset inside one buffer; broadcast operands reuse one matrix.
  Operand<T> A1(M, K, la, rng), B1(K, N, lb, rng);
  const int64_t a_sz = int64_t(A1.data.size()), b_sz = int64_t(B1.data.size()), ldc = N + 1, c_sz = M * ldc + 2;
  std::vector<T> A(size_t(a_sz * batch)), B(size_t(b_sz * batch)), C(size_t(c_sz * batch));
  std::uniform_real_distribution<double> U(-1.0, 1.0);
  for (auto& x : A) x = T(U(rng));
  for (auto& x : B) x = T(U(rng));
  for (auto& x : C) x = T(U(rng));
  std::vector<int64_t> a_off, b_off, c_off;
  for (int64_t b = 0; b < batch; ++b) {
    a_off.push_back(broadcast_a ? a_sz * (batch / 2) : a_sz * b);
    const int64_t perm = batch % 3 != 0 ? (b * 3) % batch : b;  // B entries visited out of order
    b_off.push_back(broadcast_b ? 0 : b_sz * perm);
    c_off.push_back(c_sz * (batch - 1 - b));  // C entries in reverse order
  }
  const std::vector<T> C0 = C;
  gemm_batched(batch, a_off.data(), b_off.data(), c_off.data(), M, N, K, A.data(), A1.rs, A1.cs, B.data(), B1.rs,
               B1.cs, C.data(), ldc, accumulate);
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<T> c0(C0.begin() + c_off[size_t(b)], C0.begin() + c_off[size_t(b)] + c_sz);
    const std::vector<T> c(C.begin() + c_off[size_t(b)], C.begin() + c_off[size_t(b)] + c_sz);
    const std::string what = "batched " + std::to_string(batch) + " x " + std::to_string(M) + "x" +
                             std::to_string(K) + "x" + std::to_string(N) + ", entry " + std::to_string(b) +
                             (broadcast_a ? ", A broadcast" : "") + (broadcast_b ? ", B broadcast" : "") +
                             ", threads " + std::to_string(qkvlab::num_threads());
    check_product(M, N, K, A1, B1, A.data() + a_off[size_t(b)], B.data() + b_off[size_t(b)], c0, c, ldc, accumulate,
                  what);
    // the two guard elements after each C entry are untouched
    CHECK(C[size_t(c_off[size_t(b)] + M * ldc)] == C0[size_t(c_off[size_t(b)] + M * ldc)]);
    CHECK(C[size_t(c_off[size_t(b)] + M * ldc + 1)] == C0[size_t(c_off[size_t(b)] + M * ldc + 1)]);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("gemm_batched matches gemm_reference, with broadcast operands", "[gemm]", float, double) {
  std::mt19937 rng(77);
  with_threads([&] {
    for (bool acc : {false, true}) {
      run_batched<TestType>(7, 13, 31, 7, Layout::RowMajor, Layout::ColMajor, acc, false, false, rng);
      run_batched<TestType>(6, 45, 33, 40, Layout::RowMajor, Layout::RowMajor, acc, true, false, rng);
      run_batched<TestType>(5, 20, 17, 64, Layout::ColMajor, Layout::Strided, acc, false, true, rng);
      run_batched<TestType>(1, 31, 29, 37, Layout::StridedT, Layout::RowMajor, acc, false, false, rng);
    }
    // few large entries: each product is split over the threads instead
    run_batched<TestType>(3, 260, 270, 258, Layout::RowMajor, Layout::ColMajor, false, false, true, rng);
    // K = 0 and empty batch
    run_batched<TestType>(4, 5, 6, 0, Layout::RowMajor, Layout::RowMajor, false, false, false, rng);
    run_batched<TestType>(4, 5, 6, 0, Layout::RowMajor, Layout::RowMajor, true, true, true, rng);
    run_batched<TestType>(0, 5, 6, 7, Layout::RowMajor, Layout::RowMajor, false, false, false, rng);
  });
}

TEMPLATE_TEST_CASE("gemm with a bias gives the bits of copying the bias into C and accumulating", "[gemm]", float,
                   double) {
  // The bias is added where each tile is first stored: one row (M = 1), K = 0 (C = the bias), K past KC (the
  // later passes accumulate), N past NR (several slivers, and column blocks on 2 threads), masked right edges.
  std::mt19937 rng(21);
  const Dims shapes[] = {{1, 37, 20}, {5, 7, 0}, {33, 70, 300}, {16, 16, 32}, {20, 600, 100}, {300, 45, 64}};
  with_threads([&] {
    for (const Dims& d : shapes)
      for (Layout lb : {Layout::RowMajor, Layout::ColMajor}) {
        Operand<TestType> A(d.M, d.K, Layout::RowMajor, rng), B(d.K, d.N, lb, rng);
        Operand<TestType> bias(1, d.N, Layout::RowMajor, rng);
        std::vector<TestType> want(size_t(d.M * d.N));
        std::vector<TestType> got(want.size(), std::numeric_limits<TestType>::quiet_NaN());
        for (int64_t i = 0; i < d.M; ++i) std::copy(bias.data.begin(), bias.data.end(), want.begin() + i * d.N);
        gemm(d.M, d.N, d.K, A.data.data(), A.rs, A.cs, B.data.data(), B.rs, B.cs, want.data(), d.N, true);
        gemm(d.M, d.N, d.K, A.data.data(), A.rs, A.cs, B.data.data(), B.rs, B.cs, got.data(), d.N, false,
             bias.data.data());
        INFO(d.M << "x" << d.K << " @ " << d.K << "x" << d.N << ", B " << name(lb) << ", threads "
                  << qkvlab::num_threads());
        CHECK(std::memcmp(want.data(), got.data(), want.size() * sizeof(TestType)) == 0);
      }
  });
  std::vector<TestType> a(4, 1), c(4), b(2, 1);
  CHECK_THROWS_WITH(gemm(2, 2, 1, a.data(), 1, 1, a.data(), 2, 1, c.data(), 2, true, b.data()),
                    Catch::Contains("cannot be combined with accumulate"));
}

TEST_CASE("gemm gives the same result with 1 and 2 threads", "[gemm]") {
  // Each element's sum is computed by one thread in the same order, so the results are bitwise equal.
  std::mt19937 rng(5);
  const int64_t M = 300, N = 200, K = 600;
  Operand<float> A(M, K, Layout::RowMajor, rng), B(K, N, Layout::ColMajor, rng);
  std::vector<float> C1(size_t(M * N)), C2(size_t(M * N));
  const int saved = qkvlab::num_threads();
  qkvlab::set_num_threads(1);
  gemm(M, N, K, A.data.data(), A.rs, A.cs, B.data.data(), B.rs, B.cs, C1.data(), N, false);
  qkvlab::set_num_threads(2);
  gemm(M, N, K, A.data.data(), A.rs, A.cs, B.data.data(), B.rs, B.cs, C2.data(), N, false);
  qkvlab::set_num_threads(saved);
  CHECK(C1 == C2);
}

TEST_CASE("gemm hands out its blocks to any number of threads: same bits with 1, 2, 3 and 5 threads", "[gemm]") {
  // More threads than cores, as on a busy machine: the blocks (row blocks, column blocks, runs of batch entries)
  // are taken first come first served, so a lost or doubly done block would show (C accumulates, so a block done
  // twice is added twice).
  std::mt19937 rng(11);
  struct Case {
    int64_t M, N, K;
    Layout la, lb;
  };
  const Case cases[] = {{300, 200, 600, Layout::RowMajor, Layout::ColMajor},   // row blocks
                        {20, 600, 100, Layout::ColMajor, Layout::RowMajor},    // few rows: column blocks
                        {71, 45, 33, Layout::Strided, Layout::StridedT},       // a few odd-sized blocks
                        // too few slivers for the usual pieces, one piece a thread: along N (a weight gradient
                        // of `tiny`), along N for balance (10 row slivers against 4 column ones), and along M
                        // with 7 pieces evened out to 6
                        {64, 64, 2048, Layout::ColMajor, Layout::RowMajor},
                        {128, 128, 300, Layout::ColMajor, Layout::RowMajor},
                        {384, 128, 100, Layout::ColMajor, Layout::RowMajor}};
  const int saved = qkvlab::num_threads();
  for (const Case& c : cases) {
    Operand<float> A(c.M, c.K, c.la, rng), B(c.K, c.N, c.lb, rng);
    std::vector<float> C0(size_t(c.M * c.N));
    std::uniform_real_distribution<float> U(-1.f, 1.f);
    for (auto& x : C0) x = U(rng);
    std::vector<float> ref;
    for (int nt : {1, 2, 3, 5}) {
      qkvlab::set_num_threads(nt);
      std::vector<float> C = C0;
      gemm(c.M, c.N, c.K, A.data.data(), A.rs, A.cs, B.data.data(), B.rs, B.cs, C.data(), c.N, true);
      if (nt == 1) {
        check_product(c.M, c.N, c.K, A, B, A.data.data(), B.data.data(), C0, C, c.N, true, "1 thread");
        ref = C;
      } else {
        INFO(c.M << "x" << c.K << "x" << c.N << " with " << nt << " threads");
        CHECK(C == ref);
      }
    }
  }
  // Batched: 37 small products (not a multiple of the runs handed out), C accumulating.
  const int64_t batch = 37, M = 9, N = 20, K = 13;
  std::vector<float> A(size_t(batch * M * K)), B(size_t(batch * K * N)), C0(size_t(batch * M * N));
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  for (auto* v : {&A, &B, &C0})
    for (auto& x : *v) x = U(rng);
  std::vector<int64_t> a_off, b_off, c_off;
  for (int64_t b = 0; b < batch; ++b) a_off.push_back(b * M * K), b_off.push_back(b * K * N), c_off.push_back(b * M * N);
  std::vector<float> ref;
  for (int nt : {1, 2, 3, 5}) {
    qkvlab::set_num_threads(nt);
    std::vector<float> C = C0;
    gemm_batched(batch, a_off.data(), b_off.data(), c_off.data(), M, N, K, A.data(), K, 1, B.data(), N, 1, C.data(),
                 N, true);
    if (nt == 1) {
      // spot check the last entry against gemm_reference
      std::vector<float> R(C0.begin() + c_off[36], C0.begin() + c_off[36] + M * N);
      qkvlab::gemm_reference(M, N, K, A.data() + a_off[36], K, 1, B.data() + b_off[36], N, 1, R.data(), N, true);
      int64_t bad = 0;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {  // within the bound check_product uses
          double mag = std::fabs(double(C0[size_t(c_off[36] + i * N + j)]));
          for (int64_t p = 0; p < K; ++p)
            mag += std::fabs(double(A[size_t(a_off[36] + i * K + p)]) * double(B[size_t(b_off[36] + p * N + j)]));
          const double err = std::fabs(double(C[size_t(c_off[36] + i * N + j)]) - double(R[size_t(i * N + j)]));
          if (!(err <= double(K + 3) * unit_roundoff<float>() * mag)) ++bad;
        }
      CHECK(bad == 0);
      ref = C;
    } else {
      INFO("batched with " << nt << " threads");
      CHECK(C == ref);
    }
  }
  qkvlab::set_num_threads(saved);
}
