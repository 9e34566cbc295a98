// The per-op profiler: where does a training step spend its time?
//
//   QKVLAB_PROFILE=1 build/qkvlab train ...      (or `qkvlab train --profile`)
//
// Every differentiable op (autograd/ops_*.cpp) opens a ProfileScope named after itself ("matmul", "gelu"), the
// backward engine one per node it runs ("MatmulBackward"), the trainer one around the optimizer and data. Each
// scope adds its wall time and one call to its row; at the end of the run profile_table() prints the rows, the
// slowest first, with their share of the training step.
//
// Off (the default), a scope costs one test of a global flag. Only the outermost scope on a thread counts, so
// an op built from other ops (transpose calls permute) is one row, with the time of the whole op.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace qkvlab {

enum class ProfilePhase { Forward, Backward, Optimizer, Data, Recompute };
const char* phase_name(ProfilePhase p);  // "forward", "backward", "optimizer", "data", "recompute"

extern std::atomic<bool> g_profile_on;  // starts as QKVLAB_PROFILE (set and not "0")
inline bool profile_enabled() { return g_profile_on.load(std::memory_order_relaxed); }
void set_profile_enabled(bool on);
void reset_profile();  // forget every row and step

class ProfileScope {
 public:
  explicit ProfileScope(const char* name, ProfilePhase phase = ProfilePhase::Forward) {
    if (profile_enabled()) start(name, phase);
  }
  ~ProfileScope() {
    if (name_) stop();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  void start(const char* name, ProfilePhase phase);
  void stop();
  const char* name_ = nullptr;  // null: the profiler was off when the scope opened
  ProfilePhase phase_ = ProfilePhase::Forward;
  bool outermost_ = false;
  int64_t t0_ns_ = 0;
  int64_t inner0_ns_ = 0;  // time of scopes recorded under a ProfileSplit, when this one opened
};

// Scopes opened while a ProfileSplit lives record in their own rows even inside an open scope, and their time is
// taken out of that scope's row. recompute_in_backward uses it: its node's backward runs a whole forward and
// backward of a block, which then show as their ops ("matmul" in phase "recompute", "MatmulBackward"), not as one
// "RecomputeBackward" row. With `recompute` set, forward ops inside it are counted in phase "recompute".
class ProfileSplit {
 public:
  explicit ProfileSplit(bool recompute);
  ~ProfileSplit();
  ProfileSplit(const ProfileSplit&) = delete;
  ProfileSplit& operator=(const ProfileSplit&) = delete;

 private:
  int depth_;
  bool recompute_;
};

// Scopes opened while a ProfilePause lives record nothing (the trainer pauses during evaluation).
struct ProfilePause {
  ProfilePause() : was_(profile_enabled()) { set_profile_enabled(false); }
  ~ProfilePause() { set_profile_enabled(was_); }
  ProfilePause(const ProfilePause&) = delete;
  ProfilePause& operator=(const ProfilePause&) = delete;

 private:
  bool was_;
};

// The trainer reports each whole step (data, forward, backward, optimizer), so rows get a share of the step.
void profile_add_step(double seconds);

struct ProfileRow {
  ProfilePhase phase;
  std::string name;
  int64_t calls = 0;
  double seconds = 0;
};
struct ProfileReport {
  std::vector<ProfileRow> rows;  // the slowest first
  int64_t steps = 0;             // training steps reported (0: not a training run)
  double step_seconds = 0;       // their total time
  double timed_seconds() const;  // the sum of the rows
  // What the shares are of: the steps' time, or (no steps) the sum of the rows.
  double total_seconds() const { return steps > 0 ? step_seconds : timed_seconds(); }
};
ProfileReport profile_report();

// The report as a text table; empty when nothing was recorded. `max_rows` > 0 folds the rest into one line.
std::string profile_table(int max_rows = 0);

}  // namespace qkvlab
