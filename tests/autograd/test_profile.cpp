// The per-op profiler (autograd/profile.h): rows per op name and phase with the right call counts, nested ops
// counted once, nothing recorded when off or paused, and the table naming what ran.
#include <catch2/catch.hpp>

#include "autograd/ops.h"
#include "autograd/profile.h"
#include "autograd/recompute.h"

#include <chrono>

using namespace qkvlab;
using Catch::Matchers::Contains;

namespace {

// Turns the profiler on with an empty record for one test, and off again afterwards.
struct ProfileOn {
  ProfileOn() {
    reset_profile();
    set_profile_enabled(true);
  }
  ~ProfileOn() {
    set_profile_enabled(false);
    reset_profile();
  }
};

int64_t calls(const ProfileReport& rep, ProfilePhase phase, const std::string& name) {
  for (const ProfileRow& r : rep.rows)
    if (r.phase == phase && r.name == name) return r.calls;
  return 0;
}

}  // namespace

TEST_CASE("profile: forward ops and backward nodes get one row each with their call counts", "[profile]") {
  ProfileOn on;
  Tensor w(Array::full({3, 4}, 0.5), true);
  Tensor x(Array::full({2, 3}, 1.0));
  Tensor h = gelu(matmul(x, w));           // (2,3) @ (3,4)
  Tensor y = sum(matmul(h, transpose(w, 0, 1)));  // (2,4) @ (4,3): w is used twice
  y.backward();

  ProfileReport rep = profile_report();
  CHECK(calls(rep, ProfilePhase::Forward, "matmul") == 2);
  CHECK(calls(rep, ProfilePhase::Forward, "gelu") == 1);
  CHECK(calls(rep, ProfilePhase::Forward, "sum") == 1);
  CHECK(calls(rep, ProfilePhase::Forward, "transpose") == 1);
  CHECK(calls(rep, ProfilePhase::Forward, "permute") == 0);  // inside transpose: counted as transpose
  CHECK(calls(rep, ProfilePhase::Backward, "MatmulBackward") == 2);
  CHECK(calls(rep, ProfilePhase::Backward, "GeluBackward") == 1);
  CHECK(calls(rep, ProfilePhase::Backward, "SumBackward") == 1);
  CHECK(calls(rep, ProfilePhase::Backward, "AccumulateGrad") == 1);
  CHECK(calls(rep, ProfilePhase::Backward, "(sum of gradients)") == 1);  // w's two gradients added
  for (const ProfileRow& r : rep.rows) CHECK(r.seconds >= 0);
  CHECK(rep.steps == 0);

  std::string table = profile_table();
  CHECK_THAT(table, Contains("MatmulBackward"));
  CHECK_THAT(table, Contains("gelu"));
  CHECK_THAT(table, Contains("share"));
}

TEST_CASE("profile: off or paused records nothing; steps give the shares their total", "[profile]") {
  reset_profile();
  set_profile_enabled(false);
  Tensor a(Array::full({4}, 2.0), true);
  sum(mul(a, a)).backward();
  CHECK(profile_report().rows.empty());
  CHECK(profile_table().empty());

  ProfileOn on;
  {
    ProfilePause pause;
    sum(mul(a, a)).backward();
  }
  CHECK(profile_report().rows.empty());
  CHECK(profile_enabled());  // the pause ended

  sum(mul(a, a)).backward();
  profile_add_step(0.5);
  profile_add_step(0.25);
  ProfileReport rep = profile_report();
  CHECK(calls(rep, ProfilePhase::Forward, "mul") == 1);
  CHECK(calls(rep, ProfilePhase::Backward, "MulBackward") == 1);
  CHECK(rep.steps == 2);
  CHECK(rep.step_seconds == Approx(0.75));
  CHECK(rep.total_seconds() == Approx(0.75));
  CHECK_THAT(profile_table(), Contains("2 training steps"));
  CHECK_THAT(profile_table(1), Contains("more ops)"));  // rows beyond the first folded into one line
}

TEST_CASE("profile: recompute_in_backward shows the recomputed ops, and no time is counted twice",
          "[profile][recompute]") {
  ProfileOn on;
  Generator g(1);
  Tensor w(Array::normal({256, 256}, g), true);
  Tensor x(Array::normal({256, 256}, g), true);
  auto block = [&](const std::vector<Tensor>& in) { return gelu(matmul(matmul(in[0], w), w)); };
  const auto t0 = std::chrono::steady_clock::now();
  Tensor y = sum(recompute_in_backward(block, {x}));
  y.backward();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ProfileReport rep = profile_report();
  CHECK(calls(rep, ProfilePhase::Forward, "matmul") == 2);      // the first forward (no graph recorded)
  CHECK(calls(rep, ProfilePhase::Recompute, "matmul") == 2);    // the same ops again when backward reaches it
  CHECK(calls(rep, ProfilePhase::Recompute, "gelu") == 1);
  CHECK(calls(rep, ProfilePhase::Backward, "MatmulBackward") == 2);
  CHECK(calls(rep, ProfilePhase::Backward, "GeluBackward") == 1);
  CHECK(calls(rep, ProfilePhase::Backward, "RecomputeBackward") == 1);
  // The recomputed ops' time is in their rows, not also in RecomputeBackward's: the rows add up to no more
  // than the time that passed (with everything counted twice they would be about 1.7x).
  CHECK(rep.timed_seconds() <= wall * 1.02);
  CHECK_THAT(profile_table(), Contains("recompute"));
}
