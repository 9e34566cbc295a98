#include "autograd/profile.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

namespace qkvlab {

namespace {
bool env_on() {
  const char* v = std::getenv("QKVLAB_PROFILE");
  return v && *v && std::strcmp(v, "0") != 0;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Store {
  std::mutex mu;
  std::map<std::pair<int, std::string>, ProfileRow> rows;  // by (phase, name)
  int64_t steps = 0;
  double step_seconds = 0;
};
Store& store() {
  static Store s;
  return s;
}

thread_local int t_depth = 0;  // open scopes on this thread: only the outermost one records
thread_local int64_t t_inner_ns = 0;  // total time of scopes recorded at depth 0 (see ProfileSplit)
thread_local bool t_recompute = false;  // inside a ProfileSplit(true): forward scopes count as "recompute"
}  // namespace

std::atomic<bool> g_profile_on{env_on()};

const char* phase_name(ProfilePhase p) {
  switch (p) {
    case ProfilePhase::Forward: return "forward";
    case ProfilePhase::Backward: return "backward";
    case ProfilePhase::Optimizer: return "optimizer";
    case ProfilePhase::Data: return "data";
    case ProfilePhase::Recompute: return "recompute";
  }
  return "?";
}

void set_profile_enabled(bool on) { g_profile_on.store(on); }

void reset_profile() {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  s.rows.clear();
  s.steps = 0;
  s.step_seconds = 0;
}

void ProfileScope::start(const char* name, ProfilePhase phase) {
  name_ = name;
  phase_ = phase == ProfilePhase::Forward && t_recompute ? ProfilePhase::Recompute : phase;
  outermost_ = t_depth++ == 0;
  if (outermost_) {
    t0_ns_ = now_ns();
    inner0_ns_ = t_inner_ns;
  }
}

ProfileSplit::ProfileSplit(bool recompute) : depth_(t_depth), recompute_(t_recompute) {
  t_depth = 0;
  t_recompute = recompute;
}
ProfileSplit::~ProfileSplit() {
  t_depth = depth_;
  t_recompute = recompute_;
}

void ProfileScope::stop() {
  --t_depth;
  if (!outermost_) return;
  const int64_t total = now_ns() - t0_ns_;
  const double seconds = double(total - (t_inner_ns - inner0_ns_)) * 1e-9;  // less what split scopes recorded
  t_inner_ns = inner0_ns_ + total;
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  ProfileRow& r = s.rows[{int(phase_), name_}];
  if (r.calls == 0) {
    r.phase = phase_;
    r.name = name_;
  }
  r.calls++;
  r.seconds += seconds;
}

void profile_add_step(double seconds) {
  if (!profile_enabled()) return;
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  s.steps++;
  s.step_seconds += seconds;
}

double ProfileReport::timed_seconds() const {
  double t = 0;
  for (const ProfileRow& r : rows) t += r.seconds;
  return t;
}

ProfileReport profile_report() {
  Store& s = store();
  std::lock_guard<std::mutex> lock(s.mu);
  ProfileReport rep;
  for (auto& [key, row] : s.rows) rep.rows.push_back(row);
  std::stable_sort(rep.rows.begin(), rep.rows.end(),
                   [](const ProfileRow& a, const ProfileRow& b) { return a.seconds > b.seconds; });
  rep.steps = s.steps;
  rep.step_seconds = s.step_seconds;
  return rep;
}

std::string profile_table(int max_rows) {
  ProfileReport rep = profile_report();
  if (rep.rows.empty()) return "";
  const double total = rep.total_seconds();
  const double per = rep.steps > 0 ? double(rep.steps) : 1.0;  // "ms/step" column: per step, or the whole run
  std::string out;
  char line[256];
  if (rep.steps > 0)
    std::snprintf(line, sizeof line, "profile: %lld training steps, %.1f ms a step (shares are of the step)\n",
                  (long long)rep.steps, 1e3 * rep.step_seconds / per);
  else
    std::snprintf(line, sizeof line, "profile: %.1f ms timed (shares are of that)\n", 1e3 * total);
  out += line;
  std::snprintf(line, sizeof line, "%-9s  %-24s %9s %10s %10s %7s\n", "phase", "op", "calls",
                rep.steps > 0 ? "calls/step" : "", rep.steps > 0 ? "ms/step" : "ms", "share");
  out += line;
  auto add_row = [&](const char* phase, const std::string& name, int64_t calls, double seconds) {
    char cps[32] = "";
    if (rep.steps > 0) std::snprintf(cps, sizeof cps, "%.1f", double(calls) / per);
    std::snprintf(line, sizeof line, "%-9s  %-24s %9lld %10s %10.3f %6.1f%%\n", phase, name.c_str(),
                  (long long)calls, cps, 1e3 * seconds / per, total > 0 ? 100.0 * seconds / total : 0.0);
    out += line;
  };
  int64_t rest_calls = 0;
  double rest_seconds = 0;
  for (size_t i = 0; i < rep.rows.size(); ++i) {
    const ProfileRow& r = rep.rows[i];
    if (max_rows > 0 && int(i) >= max_rows) {
      rest_calls += r.calls;
      rest_seconds += r.seconds;
    } else {
      add_row(phase_name(r.phase), r.name, r.calls, r.seconds);
    }
  }
  if (rest_calls > 0) {
    char more[48];
    std::snprintf(more, sizeof more, "(%zu more ops)", rep.rows.size() - size_t(max_rows));
    add_row("", more, rest_calls, rest_seconds);
  }
  if (rep.steps > 0) {
    // Bookkeeping between the ops: the engine's graph walk, freeing the graph, the trainer's logging.
    std::snprintf(line, sizeof line, "%-9s  %-24s %9s %10s %10.3f %6.1f%%\n", "", "(not in any op)", "", "",
                  1e3 * std::max(0.0, total - rep.timed_seconds()) / per,
                  total > 0 ? 100.0 * std::max(0.0, total - rep.timed_seconds()) / total : 0.0);
    out += line;
  }
  return out;
}

}  // namespace qkvlab
