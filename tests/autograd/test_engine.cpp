// The backward engine: accumulation, modes, freeing, deep graphs, shape checks, hooks, retain_grad.
#include <catch2/catch.hpp>

#include <pthread.h>

#include <cmath>
#include <thread>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/random.h"

using namespace qkvlab;

namespace {

Tensor leaf(const Shape& s, double v = 1.0) { return Tensor(Array::full(s, v), true); }

std::vector<double> grad_of(const Tensor& t) {
  REQUIRE(t.grad().defined());
  return t.grad().to_vector();
}

bool all_equal(const std::vector<double>& v, double x) {
  for (double e : v)
    if (e != x) return false;
  return !v.empty();
}

// A node that returns a gradient of the wrong shape for its input.
struct BadShapeBackward : Node {
  const char* name() const override { return "BadShapeBackward"; }
  std::vector<Array> backward(const Array& g) override { return {Array::ones({5}, g.dtype())}; }
};
Tensor bad_shape_op(const Tensor& a) {
  return record<BadShapeBackward>(a.data().clone(), {&a}, Loc::current(), [](BadShapeBackward&) {});
}

// A node that returns two gradients for one input.
struct TooManyBackward : Node {
  const char* name() const override { return "TooManyBackward"; }
  std::vector<Array> backward(const Array& g) override { return {g, g}; }
};

// Runs fn on a thread with a small (1 MiB) stack: a recursive walk over a 100,000-node graph needs several MiB,
// so this fails (crashes) if backward or graph destruction ever recurses per node again.
void on_small_stack(void (*fn)(void*), void* arg) {
  struct Job {
    void (*fn)(void*);
    void* arg;
    std::exception_ptr error;
  } job{fn, arg, nullptr};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 1 << 20);
  pthread_t th;
  auto run = [](void* p) -> void* {
    auto* j = static_cast<Job*>(p);
    try {
      j->fn(j->arg);
    } catch (...) {
      j->error = std::current_exception();
    }
    return nullptr;
  };
  REQUIRE(pthread_create(&th, &attr, run, &job) == 0);
  pthread_join(th, nullptr);
  pthread_attr_destroy(&attr);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace

TEST_CASE("b = a + a; c = b + b gives gradient 4 everywhere", "[autograd][engine]") {
  Tensor a = leaf({2, 3}, 0.5);
  Tensor b = a + a;
  Tensor c = b + b;
  sum(c).backward();
  CHECK(all_equal(grad_of(a), 4.0));
}

TEST_CASE("a tensor used in two branches accumulates both gradients", "[autograd][engine]") {
  Tensor a(Array::from_vector(std::vector<float>{1, 2, 3}, {3}), true);
  Tensor y = sum(a * 3.0) + sum(a * a);  // dy/da = 3 + 2a
  y.backward();
  CHECK(grad_of(a) == std::vector<double>{5, 7, 9});

  // Diamond: the shared intermediate gets the sum of both consumers before it runs (once).
  Tensor x = leaf({2}, 2.0);
  Tensor m = x * x;               // dm/dx = 2x = 4
  Tensor out = sum(exp(m * 0.0) + m * 5.0);
  int calls = 0;
  m.register_hook([&](const Array& g) {
    ++calls;
    CHECK(all_equal(g.to_vector(), 5.0));  // 0 from the first branch + 5 from the second
    return Array();
  });
  out.backward();
  CHECK(calls == 1);
  CHECK(all_equal(grad_of(x), 20.0));
}

TEST_CASE("a gradient one node hands to two inputs is not changed when one of them adds up more",
          "[autograd][engine]") {
  // u + v returns the same gradient array for u and for v (contiguous here: the product with c makes it). Both u
  // and v feed one more op each, so both sums still wait for a second term while they share that array. The
  // engine adds into a running sum in place only when nothing else holds its memory; done in place here, the
  // first second term would also land in the other's sum and x's gradient would be wrong (checked by hand).
  Tensor x = leaf({4}, 1.0);
  Tensor c(Array::full({4}, 2.0), false);
  Tensor u = x * 2.0, v = x * 3.0;
  Tensor s = (u + v) * c, w = u * 5.0, t = v * 7.0;
  (sum(w) + sum(t) + sum(s)).backward();  // the engine takes s's branch first: the shared array arrives first
  CHECK(all_equal(grad_of(x), 41.0));  // 2 * (2 + 5) + 3 * (2 + 7)
  // A sum the engine holds alone is added into in place: a tensor with three consumers.
  Tensor y = leaf({4}, 1.0);
  Tensor m = y * 1.0;
  (sum(m * 2.0) + sum(m * 3.0) + sum(m * 4.0)).backward();
  CHECK(all_equal(grad_of(y), 9.0));
}

TEST_CASE("leaf gradients accumulate across backward calls until zero_grad", "[autograd][engine]") {
  Tensor a = leaf({4}, 1.0);
  sum(a * 2.0).backward();
  CHECK(all_equal(grad_of(a), 2.0));
  sum(a * 2.0).backward();
  CHECK(all_equal(grad_of(a), 4.0));
  a.zero_grad();
  CHECK_FALSE(a.grad().defined());
  sum(a * 3.0).backward();
  CHECK(all_equal(grad_of(a), 3.0));
}

TEST_CASE("the gradient written into a leaf is its own copy", "[autograd][engine]") {
  // AddBackward passes g through unchanged: without a copy, a.grad and b.grad would share one buffer and the
  // next accumulation into one would change the other.
  Tensor a = leaf({3}), b = leaf({3});
  Array g = Array::full({3}, 2.0);
  (a + b).backward(g);
  CHECK_FALSE(a.grad().shares_storage(b.grad()));
  CHECK_FALSE(a.grad().shares_storage(g));
  sum(a).backward();
  CHECK(all_equal(grad_of(a), 3.0));
  CHECK(all_equal(grad_of(b), 2.0));
  CHECK(all_equal(g.to_vector(), 2.0));
}

TEST_CASE("NoGradGuard records nothing, restores the mode, and is thread-local", "[autograd][engine]") {
  Tensor a = leaf({2});
  {
    NoGradGuard guard;
    CHECK_FALSE(grad_enabled());
    Tensor b = a * 2.0 + a;
    CHECK(b.grad_fn() == nullptr);
    CHECK_FALSE(b.requires_grad());
    {
      NoGradGuard nested;
    }
    CHECK_FALSE(grad_enabled());  // the nested guard restores "off", not "on"

    // Another thread is not affected by this thread's guard.
    bool other_records = false;
    std::thread t([&] {
      Tensor c = a * 2.0;
      other_records = grad_enabled() && c.grad_fn() != nullptr;
    });
    t.join();
    CHECK(other_records);
  }
  CHECK(grad_enabled());
  CHECK((a * 2.0).grad_fn() != nullptr);

  // And a guard on another thread does not switch this one off.
  std::thread t([] { NoGradGuard g; });
  t.join();
  CHECK(grad_enabled());
}

TEST_CASE("detach cuts the graph", "[autograd][engine]") {
  Tensor a = leaf({3}, 2.0);
  Tensor d = (a * 3.0).detach();
  CHECK(d.grad_fn() == nullptr);
  CHECK_FALSE(d.requires_grad());
  sum(a * d).backward();
  CHECK(all_equal(grad_of(a), 6.0));  // d is a constant: no 2a term
}

TEST_CASE("backward twice without retain_graph fails with a clear message; with retain_graph grads double",
          "[autograd][engine]") {
  Tensor a = leaf({2, 2}, 3.0), b = leaf({2, 2}, 2.0);
  Tensor c = sum(a * b);
  c.backward();
  CHECK_THROWS_WITH(c.backward(), Catch::Contains("already freed") && Catch::Contains("retain_graph=true"));

  Tensor a2 = leaf({2, 2}, 3.0), b2 = leaf({2, 2}, 2.0);
  Tensor c2 = sum(a2 * b2);
  c2.backward(Array(), /*retain_graph=*/true);
  c2.backward();
  CHECK(all_equal(grad_of(a2), 4.0));
  CHECK(all_equal(grad_of(b2), 6.0));
}

TEST_CASE("backward checks its seed gradient and its root", "[autograd][engine]") {
  Tensor a = leaf({2, 3});
  Tensor y = a * 2.0;
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("one-element output") && Catch::Contains("(2,3)"));
  CHECK_THROWS_WITH(y.backward(Array::ones({3})), Catch::Contains("(3,)") && Catch::Contains("(2,3)"));
  Tensor k(Array::ones({2}));
  CHECK_THROWS_WITH(sum(k).backward(), Catch::Contains("does not require grad"));
  CHECK_THROWS_WITH(y.requires_grad_(false), Catch::Contains("only a leaf"));
}

namespace {
constexpr int kChain = 100000;

void long_chain_add(void*) {
  const int64_t baseline = Tensor::live_count();
  {
    Tensor x = leaf({2}, 1.0);
    Tensor y = x;
    for (int i = 0; i < kChain; ++i) y = y + 1e-6;
    sum(y).backward();
    CHECK(all_equal(grad_of(x), 1.0));
    CHECK(y.data().to_vector()[0] == Approx(1.1).epsilon(1e-2));
  }
  CHECK(Tensor::live_count() == baseline);
}

void long_chain_mul_no_backward(void*) {
  const int64_t baseline = Tensor::live_count();
  {
    Tensor x = leaf({3}, 1.0);
    Tensor y = x;
    for (int i = 0; i < kChain; ++i) y = y * 1.0;
    // Never run backward: the whole 100,000-node graph is freed by dropping y.
  }
  CHECK(Tensor::live_count() == baseline);
}

void long_chain_retained(void*) {
  // Intermediate tensors kept alive (as a training step's activations are), graph retained.
  const int64_t baseline = Tensor::live_count();
  {
    Tensor x = leaf({1}, 1.0);
    std::vector<Tensor> keep;
    keep.reserve(kChain);
    Tensor y = x;
    for (int i = 0; i < kChain; ++i) {
      y = y * 1.0;
      keep.push_back(y);
    }
    y.backward(Array(), true);
    y.backward();
    CHECK(grad_of(x)[0] == 2.0);
  }
  CHECK(Tensor::live_count() == baseline);
}
}  // namespace

TEST_CASE("a 100,000-node chain backpropagates and is destroyed without deep recursion", "[autograd][engine]") {
  on_small_stack(long_chain_add, nullptr);
  on_small_stack(long_chain_mul_no_backward, nullptr);
  on_small_stack(long_chain_retained, nullptr);
}

TEST_CASE("a gradient of the wrong shape is an error naming the node", "[autograd][engine]") {
  Tensor a = leaf({2, 3});
  Tensor y = bad_shape_op(a);
  CHECK_THROWS_WITH(sum(y).backward(),
                    Catch::Contains("BadShapeBackward") && Catch::Contains("(5,)") && Catch::Contains("(2,3)"));

  Tensor z = record<TooManyBackward>(a.data().clone(), {&a}, Loc::current(), [](TooManyBackward&) {});
  CHECK_THROWS_WITH(sum(z).backward(), Catch::Contains("TooManyBackward") && Catch::Contains("2 gradients"));
}

TEST_CASE("hooks can replace the gradient of a leaf and of a non-leaf", "[autograd][engine]") {
  Tensor a = leaf({3}, 1.0);
  a.register_hook([](const Array& g) { return mul(g, 10.0); });
  sum(a * 2.0).backward();
  CHECK(all_equal(grad_of(a), 20.0));

  Tensor x = leaf({3}, 1.0);
  Tensor h = x * 2.0;  // non-leaf
  std::vector<double> seen;
  h.register_hook([&](const Array& g) {
    seen = g.to_vector();
    return Array();  // observe only
  });
  h.register_hook([](const Array& g) { return mul(g, -1.0); });  // hooks run in order, each sees the last
  sum(h * 3.0).backward();
  CHECK(all_equal(seen, 3.0));
  CHECK(all_equal(grad_of(x), -6.0));
  CHECK_FALSE(h.grad().defined());  // a non-leaf keeps no grad unless retain_grad()

  Tensor w = leaf({2});
  w.register_hook([](const Array&) { return Array::ones({7}); });
  CHECK_THROWS_WITH(sum(w * 1.0).backward(), Catch::Contains("hook") && Catch::Contains("(7,)") && Catch::Contains("AccumulateGrad"));

  Tensor k(Array::ones({2}));
  CHECK_THROWS_WITH(k.register_hook([](const Array& g) { return g; }), Catch::Contains("does not require grad"));
}

TEST_CASE("retain_grad keeps the gradient of a non-leaf", "[autograd][engine]") {
  Tensor a(Array::from_vector(std::vector<float>{1, -2}, {2}), true);
  Tensor b = a * 3.0;  // (3, -6)
  b.retain_grad();
  Tensor c = b * 0.5;
  c.retain_grad();
  sum(b * b).backward(Array(), /*retain_graph=*/true);  // d/db = 2b; b's own node is reused below
  CHECK(grad_of(b) == std::vector<double>{6, -12});
  CHECK(grad_of(a) == std::vector<double>{18, -36});
  CHECK_FALSE(c.grad().defined());  // c is not on the path to the output
  sum(b).backward();                // accumulates, as leaves do
  CHECK(grad_of(b) == std::vector<double>{7, -11});
}

TEST_CASE("only the inputs that need a gradient get one", "[autograd][engine]") {
  Tensor w = leaf({3, 2}, 1.0);
  Tensor x(Array::ones({4, 3}));  // data, no grad
  Tensor y = sum(matmul(x, w));
  const Node& mm = *y.grad_fn()->next[0];  // SumBackward -> MatmulBackward
  CHECK(std::string(mm.name()) == "MatmulBackward");
  CHECK_FALSE(mm.needs_grad(0));  // x needs none
  CHECK(mm.needs_grad(1));
  y.backward();
  CHECK(all_equal(grad_of(w), 4.0));
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("broadcasting gradients sum back to each operand's shape", "[autograd][engine][broadcast]") {
  Tensor a(Array::from_vector(std::vector<float>{1, 2, 3}, {3, 1}), true);
  Tensor b(Array::from_vector(std::vector<float>{10, 20, 30, 40}, {1, 4}), true);
  Tensor s = a + b;  // (3,4)
  REQUIRE(s.shape() == Shape{3, 4});
  sum(s).backward();
  CHECK(a.grad().shape() == Shape{3, 1});
  CHECK(b.grad().shape() == Shape{1, 4});
  CHECK(all_equal(grad_of(a), 4.0));
  CHECK(all_equal(grad_of(b), 3.0));

  a.zero_grad();
  b.zero_grad();
  sum(a * b).backward();  // d/da_i = sum_j b_j = 100; d/db_j = sum_i a_i = 6
  CHECK(all_equal(grad_of(a), 100.0));
  CHECK(all_equal(grad_of(b), 6.0));

  a.zero_grad();
  b.zero_grad();
  sum(b - a).backward();
  CHECK(all_equal(grad_of(a), -4.0));
  CHECK(all_equal(grad_of(b), 3.0));

  a.zero_grad();
  b.zero_grad();
  sum(b / a).backward();  // d/db_j = sum_i 1/a_i; d/da_i = -sum_j b_j / a_i^2
  CHECK(grad_of(b)[0] == Approx(1.0 + 0.5 + 1.0 / 3.0));
  std::vector<double> ga = grad_of(a);
  CHECK(ga[0] == Approx(-100.0));
  CHECK(ga[1] == Approx(-25.0));
  CHECK(ga[2] == Approx(-100.0 / 9.0));

  // Leading dims, and a 0-d operand.
  Tensor m = leaf({2, 3, 4}, 1.0), v = leaf({4}, 1.0), s0 = leaf({}, 2.0);
  sum((m + v) * s0).backward();
  CHECK(v.grad().shape() == Shape{4});
  CHECK(all_equal(grad_of(v), 12.0));
  CHECK(s0.grad().shape() == Shape{});
  CHECK(grad_of(s0)[0] == 48.0);
  CHECK(all_equal(grad_of(m), 2.0));

  // Mismatched shapes name the op and both shapes.
  CHECK_THROWS_WITH(leaf({3, 4}) + leaf({5}), Catch::Contains("add") && Catch::Contains("(3,4)") &&
                                                  Catch::Contains("(5,)"));
}

TEST_CASE("linear: backward through empty dims gives gradients of the right shapes", "[engine]") {
  // No input features: y = b for every row, so dL/db sums the rows and the weight's gradient is (out, 0).
  Tensor x(Array::zeros({2, 3, 0}), true), w(Array::zeros({4, 0}), true), b(Array::ones({4}), true);
  Tensor y = linear(x, w, b);
  REQUIRE(y.shape() == Shape{2, 3, 4});
  sum(y).backward();
  CHECK(x.grad().shape() == Shape{2, 3, 0});
  CHECK(w.grad().shape() == Shape{4, 0});
  REQUIRE(b.grad().shape() == Shape{4});
  for (double v : b.grad().to_vector()) CHECK(v == 6.0);
  // No rows: every gradient is zero.
  Tensor x0(Array::zeros({0, 5}), true), w0(Array::ones({2, 5}), true), b0(Array::ones({2}), true);
  sum(linear(x0, w0, b0)).backward();
  CHECK(x0.grad().shape() == Shape{0, 5});
  for (double v : w0.grad().to_vector()) CHECK(v == 0.0);
  for (double v : b0.grad().to_vector()) CHECK(v == 0.0);
}

// add writes the sum over an operand passed as a temporary that nothing else holds (autograd/ops.h): never over a
// tensor someone still holds, a view of one, or values a node kept for backward; gradients as ever.
TEST_CASE("add writes over a temporary operand only when nothing else holds its values", "[autograd][engine]") {
  Generator gen(3);
  Tensor x(Array::normal({4, 6}, gen), true);
  const std::vector<double> xv = x.data().to_vector();
  SECTION("a temporary: its buffer becomes the sum's; the values and gradients are those of a + b") {
    const float* buffer = nullptr;
    auto twice = [&] {
      Tensor t = x * 2.0;
      buffer = t.data().data<float>();
      return t;
    };
    Tensor y = add(x, twice());
    CHECK(y.data().data<float>() == buffer);
    const std::vector<double> yv = y.data().to_vector();
    for (size_t i = 0; i < xv.size(); ++i) CHECK(yv[i] == static_cast<double>(float(xv[i]) + float(xv[i]) * 2.0f));
    sum(y).backward();
    CHECK(all_equal(grad_of(x), 3.0));
  }
  SECTION("a tensor still held, or a view of one, keeps its values") {
    Tensor t = x * 2.0;
    const std::vector<double> tv = t.data().to_vector();
    Tensor y = add(x, t);
    CHECK(t.data().to_vector() == tv);
    CHECK(y.data().data<float>() != t.data().data<float>());
    Tensor z = add(x, reshape(t, {4, 6}));  // a temporary view of t's storage
    CHECK(t.data().to_vector() == tv);
    CHECK(z.data().to_vector() == y.data().to_vector());
  }
  SECTION("values a node kept for backward stay intact, so its gradient is right") {
    Tensor y = add(x, exp(x));  // exp keeps its output for backward
    sum(y).backward();
    const std::vector<double> g = grad_of(x);
    for (size_t i = 0; i < xv.size(); ++i) CHECK(g[i] == Approx(1.0 + std::exp(xv[i])).epsilon(1e-6));
  }
  SECTION("a temporary that is not dense, or smaller than the sum, is not written over; the sum is dense") {
    auto transposed = [&] {  // a (6, 4) view whose base is gone: the only Array on its storage
      Tensor t = transpose(x, 0, 1) * 1.0;
      return transpose(t, 0, 1);
    };
    Tensor y = add(x, transposed());
    CHECK(y.data().is_contiguous());
    const std::vector<double> yv = y.data().to_vector();
    for (size_t i = 0; i < xv.size(); ++i) CHECK(yv[i] == static_cast<double>(float(xv[i]) + float(xv[i])));
    Tensor row(Array::normal({6}, gen));
    Tensor z = add(x, row * 1.0);  // the temporary (6) cannot hold the (4, 6) sum
    CHECK(z.shape() == Shape{4, 6});
  }
  SECTION("a temporary with the sum's shape takes a broadcast operand, whose gradient sums back to its shape") {
    Tensor pos(Array::normal({6}, gen), true);
    Tensor y = add(x * 1.0, pos);
    sum(y).backward();
    CHECK(grad_of(pos) == std::vector<double>(6, 4.0));
    CHECK(all_equal(grad_of(x), 1.0));
  }
}
