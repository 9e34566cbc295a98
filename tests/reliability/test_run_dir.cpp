// Never lose a run (models/run_dir.h, docs/RELIABILITY.md "Run directories"), end to end through the qkvlab program:
//   - a training run killed with SIGKILL at random moments (50+ kills, many inside saves), resumed after each,
//     ends with the bytes of a run that was never killed; after every kill the directory holds one complete pair;
//   - a full disk (the ENOSPC hook, and a real small tmpfs when mount is allowed) keeps the previous checkpoint,
//     which resumes; a read-only run directory is refused in one line and left as it was;
//   - a second writer is refused naming the first one's pid, and a killed writer leaves no stale lock;
//   - a --out holding a run is refused unless --resume or --overwrite; --resume of a bare model offers --init-from;
//   - integer flags beyond what qkvlab can count are refused, not clamped.
#include <catch2/catch.hpp>

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/run_dir.h"
#include "models/safetensors.h"
#include "nn/optim.h"
#include "tests/cli_child.h"
#include "tests/test_util.h"

using namespace qkvlab;
using namespace qkvlab::testing;
using Catch::Matchers::Contains;
using V = std::vector<std::string>;
namespace fs = std::filesystem;

namespace {
V operator+(V a, const V& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
V tiny(int64_t steps, int64_t save_every) {
  return V{"train", "--task", "reverse", "--seq-len", "8", "--train-size", "100", "--test-size", "16", "--d-model",
           "16", "--heads", "2", "--layers", "1", "--batch", "8", "--seed", "7", "--steps", std::to_string(steps),
           "--save-every", std::to_string(save_every)};
}


// The published pair loads, and both files and the optimizer's own counter name the same step; returns it.
int64_t check_pair(const std::string& dir) {
  RunInfo info = inspect_run(dir);
  REQUIRE(info.broken.empty());
  REQUIRE(info.checkpoint);
  auto model = load_model(dir);  // through DIR/model.safetensors, as eval and generate read it
  AdamW opt(make_param_groups(*model, 0.0), 1e-3);
  const int64_t step = load_training_state(dir + "/optimizer.safetensors", opt).step;
  CHECK(load_safetensors(dir + "/model.safetensors").metadata.at("step") == std::to_string(step));
  CHECK(load_safetensors(dir + "/optimizer.safetensors").metadata.at("step") == std::to_string(step));
  CHECK(info.step == step);
  return step;
}

// Everything in a directory tree: relative path -> bytes (links as "-> target").
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    const std::string rel = fs::relative(it->path(), dir).string();
    if (it->is_symlink()) out[rel] = "-> " + fs::read_symlink(it->path()).string();
    else if (it->is_regular_file()) out[rel] = slurp_file(it->path().string());
    else out[rel] = "(dir)";
  }
  return out;
}

// A save was under way when the process died: a step folder nothing points at, or a temporary.
bool interrupted_save(const std::string& dir) {
  if (!fs::exists(dir)) return false;  // killed before it made its folder: no save was under way
  const std::string current = fs::exists(dir + "/checkpoint") ? fs::read_symlink(dir + "/checkpoint").string() : "";
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (name.find(".tmp") != std::string::npos && name.rfind("metrics", 0) != 0) return true;
    if (it.depth() == 0 && name.rfind("step-", 0) == 0 && name != current) return true;
  }
  return false;
}

// Exit 2 and one error line, the last thing on stderr; `alone`: nothing else on stderr either (a run that trained a
// while prints its progress lines before it).
void expect_one_line_error(const CliResult& r, const std::string& needle, bool alone = true) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.status == 2);
  const size_t at = r.err.find("qkvlab: error:");
  REQUIRE(at != std::string::npos);
  const std::string tail = r.err.substr(at);
  CHECK(std::count(tail.begin(), tail.end(), '\n') == 1);
  CHECK(tail.back() == '\n');
  if (alone) CHECK(r.err_lines() == 1);
  CHECK_THAT(tail, Contains(needle));
}

// A small tmpfs mounted for the test (root, and a kernel that lets us); unmounted at the end.
struct Tmpfs {
  std::string path;
  bool mounted = false;
  Tmpfs(const std::string& where, const std::string& size) : path(where) {
    fs::create_directories(path);
    mounted = ::geteuid() == 0 && ::mount("tmpfs", path.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  bool remount(const std::string& opts, bool read_only = false) {
    return ::mount("tmpfs", path.c_str(), "tmpfs", MS_REMOUNT | (read_only ? MS_RDONLY : 0), opts.c_str()) == 0;
  }
  ~Tmpfs() {
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
  }
};
}  // namespace

TEST_CASE("crash loop: 50+ SIGKILLs at random moments, each resumed, end byte-identical to an unkilled run",
          "[reliability][crash][slow]") {
  TempDir tmp("crashloop");
  const int64_t steps = 150;
  const V flags = tiny(steps, 1);  // a checkpoint at every step, so that kills land in saves
  const auto t0 = std::chrono::steady_clock::now();
  CliResult straight = run_cli(flags + V{"--out", "straight"}, tmp.path);
  const double run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(straight.err);
  REQUIRE(straight.status == 0);

  // Kill moments uniform in [0, window): 50 of them cover about the whole run.
  double window = 2.0 * run_seconds / 50.0;
  std::mt19937_64 rng(19);
  std::uniform_real_distribution<double> when(0.0, window);
  int restarts = 0;
  const std::string dir = tmp.file("killed");
  int kills = 0, in_save = 0, attempts = 0;
  std::set<int64_t> steps_seen;
  bool done = false;
  while (!done) {
    REQUIRE(++attempts < 2000);
    const bool resume = inspect_run(dir).holds_run;
    CliChild c = spawn_cli(flags + V{"--out", "killed"} + (resume ? V{"--resume"} : V{}), tmp.path,
                           tmp.file("child"));
    if (kills < 50) {
      std::this_thread::sleep_for(std::chrono::duration<double>(when(rng)));
      int ws = 0;
      if (::waitpid(c.pid, &ws, WNOHANG) == 0) {  // still running: kill it
        REQUIRE(::kill(c.pid, SIGKILL) == 0);
        REQUIRE(::waitpid(c.pid, &ws, 0) == c.pid);
        REQUIRE(WIFSIGNALED(ws));
        ++kills;
        in_save += interrupted_save(dir);
        // After any kill: either a complete pair, or (before the first save) none at all, never a mix.
        RunInfo info = inspect_run(dir);
        INFO("after kill " << kills);
        REQUIRE(info.broken.empty());
        if (info.checkpoint) steps_seen.insert(check_pair(dir));
        continue;
      }
      REQUIRE(WIFEXITED(ws));
      CliResult r{WEXITSTATUS(ws), slurp_file(c.out_path), slurp_file(c.err_path)};
      INFO(r.err);
      // The kill came after the last save: a finished run is refused by --resume as done.
      done = r.status == 0 || (r.status == 2 && r.err.find("already did") != std::string::npos);
      REQUIRE(done);
      if (kills < 50) {  // the lives went further than the straight run foretold (the machine's load fell): again,
        REQUIRE(++restarts < 8);  // from scratch, with kills twice as early, counting on
        std::filesystem::remove_all(dir);
        window /= 2.0;
        when = std::uniform_real_distribution<double>(0.0, window);
        done = false;
      }
    } else {
      CliResult r = finish_cli(c);
      INFO(r.err);
      done = r.status == 0 || (r.status == 2 && r.err.find("already did") != std::string::npos);
      REQUIRE(done);
    }
  }
  std::printf("crash loop: %d kills (%d inside a save, checkpoints at %zu different steps, %d restart(s) from scratch), "
              "straight run %.2f s\n", kills, in_save, steps_seen.size(), restarts, run_seconds);
  CHECK(kills >= 50);
  CHECK(in_save >= 5);             // saves every step: many kills land inside one
  // The kills were spread over the run, not all at its start. How far each life gets depends on the machine's load
  // (21 distinct steps on an idle machine, 8 with two test processes at once), so the bound is loose.
  CHECK(steps_seen.size() >= 4);
  CHECK(check_pair(dir) == steps);
  CHECK(slurp_file(dir + "/model.safetensors") == slurp_file(tmp.file("straight/model.safetensors")));
  CHECK(slurp_file(dir + "/optimizer.safetensors") == slurp_file(tmp.file("straight/optimizer.safetensors")));
  CHECK(logged_losses(dir) == logged_losses(tmp.file("straight")));  // metrics.jsonl tells the same story
  // Nothing left over: one step folder, no temporaries.
  CHECK_FALSE(interrupted_save(dir));
}

TEST_CASE("disk full (ENOSPC hook): the previous checkpoint stays published and resumes to the same bytes",
          "[reliability][crash]") {
  TempDir tmp("enospc");
  const V flags = tiny(40, 10);
  REQUIRE(run_cli(flags + V{"--out", "straight"}, tmp.path).status == 0);
  const int64_t model_bytes = int64_t(fs::file_size(tmp.file("straight/model.safetensors")));
  const int64_t opt_bytes = int64_t(fs::file_size(tmp.file("straight/optimizer.safetensors")));
  // The step-10 pair fits; the disk fills in the middle of the step-20 model, or of the step-20 optimizer state.
  for (int64_t budget : {model_bytes + opt_bytes + model_bytes / 2, 2 * model_bytes + opt_bytes + opt_bytes / 2}) {
    const std::string name = "full" + std::to_string(budget), dir = tmp.file(name);
    CliResult r = run_cli(flags + V{"--out", name}, tmp.path, "QKVLAB_FAULT_INJECT=enospc-after:" + std::to_string(budget));
    expect_one_line_error(r, "No space left on device", false);
    CHECK_THAT(r.err, Contains("the checkpoint of step 20 was not saved") &&
                          Contains("the checkpoint of step 10 is kept (continue with --resume)"));
    CHECK(check_pair(dir) == 10);
    CHECK_FALSE(interrupted_save(dir));  // the half-written step-20 folder is gone (its space is needed back)
    CliResult resumed = run_cli(flags + V{"--out", name, "--resume"}, tmp.path);
    INFO(resumed.err);
    REQUIRE(resumed.status == 0);
    CHECK(slurp_file(dir + "/model.safetensors") == slurp_file(tmp.file("straight/model.safetensors")));
    CHECK(slurp_file(dir + "/optimizer.safetensors") == slurp_file(tmp.file("straight/optimizer.safetensors")));
  }
}

TEST_CASE("disk full (a real small tmpfs) and a read-only run directory: refused in one line, the pair intact",
          "[reliability][crash]") {
  TempDir tmp("tmpfs");
  const V flags = tiny(40, 10);
  REQUIRE(run_cli(flags + V{"--out", "straight"}, tmp.path).status == 0);
  // Room for one checkpoint, metrics.jsonl, .lock and half a model more: the step-20 save cannot fit.
  auto pages = [](uintmax_t b) { return (b + 4095) / 4096 * 4096; };
  const uintmax_t model = pages(fs::file_size(tmp.file("straight/model.safetensors")));
  const uintmax_t size = model + pages(fs::file_size(tmp.file("straight/optimizer.safetensors"))) + 2 * 4096 +
                         pages(model / 2);
  Tmpfs disk(tmp.file("disk"), std::to_string(size));
  if (!disk.mounted) {
    WARN("skipped: mounting a tmpfs needs root and a kernel that allows it here");
    return;
  }
  CliResult r = run_cli(flags + V{"--out", "disk/run"}, tmp.path);
  expect_one_line_error(r, "No space left on device", false);
  CHECK_THAT(r.err, Contains("is kept (continue with --resume)"));
  const std::string dir = disk.path + "/run";
  const int64_t kept = check_pair(dir);
  CHECK(kept == 10);
  CHECK_FALSE(interrupted_save(dir));

  // Read-only: --resume is refused up front, and nothing in the directory changes.
  const auto before = snapshot(dir);
  REQUIRE(disk.remount("size=" + std::to_string(size), true));
  CliResult ro = run_cli(flags + V{"--out", "disk/run", "--resume"}, tmp.path);
  expect_one_line_error(ro, "disk/run");
  CHECK(snapshot(dir) == before);
  CHECK(check_pair(dir) == kept);

  // Space again (the disk grows): --resume finishes with the bytes of the run that never hit a full disk.
  REQUIRE(disk.remount("size=1m"));
  CliResult resumed = run_cli(flags + V{"--out", "disk/run", "--resume"}, tmp.path);
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  CHECK(slurp_file(dir + "/model.safetensors") == slurp_file(tmp.file("straight/model.safetensors")));
  CHECK(slurp_file(dir + "/optimizer.safetensors") == slurp_file(tmp.file("straight/optimizer.safetensors")));
}

TEST_CASE("one writer at a time: a second train is refused naming the first one's pid; a kill leaves no stale lock",
          "[reliability][crash]") {
  TempDir tmp("lock");
  const V flags = tiny(100000, 0);  // runs until it is stopped
  CliChild first = spawn_cli(flags + V{"--out", "run"}, tmp.path, tmp.file("first"));
  // The first writer holds the lock once its pid is in run/.lock.
  const auto t0 = std::chrono::steady_clock::now();
  while (slurp_file(tmp.file("run/.lock")) != std::to_string(first.pid) + "\n" &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(slurp_file(tmp.file("run/.lock")) == std::to_string(first.pid) + "\n");
  for (const V& second : {flags + V{"--out", "run"}, flags + V{"--out", "run", "--overwrite"}}) {
    CliResult r = run_cli(second, tmp.path);
    expect_one_line_error(r, "run directory run is in use by process " + std::to_string(first.pid));
  }
  // In-process too (the library's lock, as a test or a notebook would take it).
  CHECK_THROWS_WITH(lock_run_dir(tmp.file("run")), Contains("in use by process " + std::to_string(first.pid)));
  REQUIRE(::kill(first.pid, SIGKILL) == 0);
  CHECK(finish_cli(first).status == -SIGKILL);
  // The kernel dropped the lock with the process: the next writer goes ahead (here: replacing the run).
  auto lock = lock_run_dir(tmp.file("run"));
  CHECK(slurp_file(tmp.file("run/.lock")) == std::to_string(::getpid()) + "\n");
  CHECK(lock_run_dir(tmp.file("run")) == lock);  // taken twice in one process: shared
  lock.reset();
  CliResult again = run_cli(tiny(3, 0) + V{"--out", "run", "--overwrite"}, tmp.path);
  INFO(again.err);
  CHECK(again.status == 0);
  CHECK(check_pair(tmp.file("run")) == 3);
}

TEST_CASE("a --out holding a run is refused unless --resume or --overwrite; a bare model offers --init-from",
          "[reliability][cli]") {
  TempDir tmp("refuse");
  REQUIRE(run_cli(tiny(40, 0) + V{"--out", "run"}, tmp.path).status == 0);
  const auto before = snapshot(tmp.file("run"));

  // The story of the issue: the same command by mistake with --steps 2.
  CliResult again = run_cli(tiny(2, 0) + V{"--out", "run"}, tmp.path);
  expect_one_line_error(again, "train: run already holds a run with a checkpoint at step 40; continue it with "
                               "--resume, or replace it with --overwrite");
  CHECK(snapshot(tmp.file("run")) == before);  // nothing touched, not even the lock file
  expect_one_line_error(run_cli(tiny(2, 0) + V{"--out", "run", "--resume", "--overwrite"}, tmp.path), "not both");
  CHECK(snapshot(tmp.file("run")) == before);

  // --resume continues (with more steps), --overwrite replaces.
  CliResult more = run_cli(tiny(50, 0) + V{"--out", "run", "--resume"}, tmp.path);
  INFO(more.err);
  REQUIRE(more.status == 0);
  CHECK(check_pair(tmp.file("run")) == 50);
  CliResult replaced = run_cli(tiny(2, 0) + V{"--out", "run", "--overwrite"}, tmp.path);
  INFO(replaced.err);
  REQUIRE(replaced.status == 0);
  CHECK(check_pair(tmp.file("run")) == 2);
  CHECK(logged_losses(tmp.file("run")).rbegin()->first == 2);  // the old run's metrics went with it

  // Weights from elsewhere (or an older build's run without optimizer state): --resume says so and offers the way.
  fs::create_directories(tmp.file("foreign"));
  REQUIRE(run_cli(tiny(40, 0) + V{"--out", "trained"}, tmp.path).status == 0);
  fs::copy_file(tmp.file("trained/model.safetensors"), tmp.file("foreign/model.safetensors"));
  const auto foreign = snapshot(tmp.file("foreign"));
  CliResult bare = run_cli(tiny(20, 0) + V{"--out", "foreign", "--resume"}, tmp.path);
  expect_one_line_error(bare, "train --resume: foreign holds a model.safetensors without optimizer state (step 40)");
  CHECK_THAT(bare.err, Contains("--init-from foreign --out ANOTHER_DIR"));
  CHECK(snapshot(tmp.file("foreign")) == foreign);
  expect_one_line_error(run_cli(tiny(20, 0) + V{"--out", "foreign"}, tmp.path),
                        "foreign already holds a model.safetensors without optimizer state");
  expect_one_line_error(run_cli(tiny(20, 0) + V{"--out", "foreign", "--init-from", "foreign", "--overwrite"},
                                tmp.path),
                        "is the run directory itself");
  CHECK(snapshot(tmp.file("foreign")) == foreign);
  // --init-from: a new run from those weights. One step at lr 1e-12 leaves them as they were (to within 1e-9):
  // the run started from foreign's weights, not from its own initialisation, and at step 0 (it ends at step 1).
  CliResult from = run_cli(tiny(1, 0) + V{"--lr", "1e-12", "--out", "from", "--init-from", "foreign"}, tmp.path);
  INFO(from.err);
  REQUIRE(from.status == 0);
  CHECK_THAT(from.out, Contains("weights from foreign"));
  CHECK(check_pair(tmp.file("from")) == 1);
  REQUIRE(run_cli(tiny(1, 0) + V{"--lr", "1e-12", "--out", "scratch"}, tmp.path).status == 0);
  const Safetensors src = load_safetensors(tmp.file("foreign/model.safetensors"));
  const Safetensors got = load_safetensors(tmp.file("from/model.safetensors"));
  const Safetensors fresh = load_safetensors(tmp.file("scratch/model.safetensors"));
  double from_diff = 0, fresh_diff = 0;
  for (const auto& [name, a] : src.tensors) {
    const auto x = a.to_vector(), y = got.get(name).to_vector(), z = fresh.get(name).to_vector();
    for (size_t i = 0; i < x.size(); ++i) {
      from_diff = std::max(from_diff, std::abs(x[i] - y[i]));
      fresh_diff = std::max(fresh_diff, std::abs(x[i] - z[i]));
    }
  }
  CHECK(from_diff < 1e-9);
  CHECK(fresh_diff > 1e-3);
  expect_one_line_error(run_cli(V{"train", "--task", "reverse", "--seq-len", "8", "--d-model", "32", "--heads", "2",
                                  "--layers", "1", "--steps", "2", "--out", "wide", "--init-from", "foreign"},
                                tmp.path),
                        "does not fit the model asked for");
}

TEST_CASE("study: refuses a --out holding a study; --resume evaluates finished runs again; --overwrite replaces",
          "[reliability][cli]") {
  TempDir tmp("study_dir");
  const V study{"study", "--task", "reverse", "--seq-len", "8", "--train-size", "100", "--test-size", "16",
                "--d-model", "16", "--heads", "2", "--layers", "1", "--batch", "8", "--steps", "6", "--variants",
                "single,qkv", "--no-maps", "--json", "--out", "s"};
  CliResult first = run_cli(study, tmp.path);
  INFO(first.err);
  REQUIRE(first.status == 0);
  const auto before = snapshot(tmp.file("s"));
  CliResult again = run_cli(study, tmp.path);
  expect_one_line_error(again, "study: s already holds a study (2 runs, checkpoints up to step 6, results.json); "
                               "continue it with --resume, or replace it with --overwrite");
  CHECK(snapshot(tmp.file("s")) == before);

  CliResult resumed = run_cli(study + V{"--resume"}, tmp.path);
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  auto a = nlohmann::json::parse(first.out), b = nlohmann::json::parse(resumed.out);
  for (size_t i = 0; i < 2; ++i) CHECK(a["variants"][i]["metric"] == b["variants"][i]["metric"]);
  CHECK(slurp_file(tmp.file("s/qkv/model.safetensors")) == before.at("qkv/step-6/model.safetensors"));

  V shorter = study;
  for (size_t i = 0; i + 1 < shorter.size(); ++i)
    if (shorter[i] == "--steps") shorter[i + 1] = "3";
  CliResult replaced = run_cli(shorter + V{"--overwrite"}, tmp.path);
  INFO(replaced.err);
  REQUIRE(replaced.status == 0);
  CHECK(check_pair(tmp.file("s/qkv")) == 3);
  CHECK(check_pair(tmp.file("s/single")) == 3);
}

TEST_CASE("integer flags beyond what qkvlab can count are refused, not clamped", "[reliability][cli]") {
  TempDir tmp("intflags");
  const V base{"train", "--task", "reverse", "--seq-len", "8", "--d-model", "16", "--heads", "2", "--out", "run"};
  expect_one_line_error(run_cli(base + V{"--steps", "99999999999999999999"}, tmp.path),
                        "--steps: 99999999999999999999 is beyond what qkvlab can count (9223372036854775807 is the "
                        "limit)");
  expect_one_line_error(run_cli(base + V{"--batch", "-99999999999999999999"}, tmp.path), "--batch: ");
  expect_one_line_error(run_cli(base + V{"--steps", "0x10"}, tmp.path), "'0x10' is not a whole number");
  expect_one_line_error(run_cli(base + V{"--seed", "-1"}, tmp.path), "--seed: -1 is negative");
  expect_one_line_error(run_cli(base + V{"--seed", "18446744073709551616"}, tmp.path), "beyond what qkvlab can count");
  expect_one_line_error(run_cli(V{"study", "--seeds", "99999999999999999999", "--out", "s"}, tmp.path), "--seeds: ");
  CHECK_FALSE(fs::exists(tmp.file("run")));
  CHECK_FALSE(fs::exists(tmp.file("s")));
}
