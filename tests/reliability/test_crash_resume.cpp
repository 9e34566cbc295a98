// Crash safety end to end: `qkvlab train` killed while writing a checkpoint (QKVLAB_FAULT_INJECT=kill-mid-write:N,
// models/safetensors.h) keeps the previous checkpoint published (models/run_dir.h), and --resume continues from it
// to the very bytes of a run that never crashed. (Random SIGKILLs, a full disk, the lock: test_run_dir.cpp.) A run whose learning rate blows it up stops with one line and keeps its last
// checkpoint, which loads.
#include <catch2/catch.hpp>

#include "tests/cli_child.h"
#include "tests/test_util.h"

#include <filesystem>
#include <map>
#include <algorithm>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/checkpoint.h"
#include "models/safetensors.h"
#include "nn/optim.h"

using namespace qkvlab;
using namespace qkvlab::testing;
using Catch::Matchers::Contains;
using V = std::vector<std::string>;

namespace {
V operator+(V a, const V& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
const V kRun{"train", "--task", "reverse", "--seq-len", "8", "--train-size", "100", "--test-size", "16",
             "--d-model", "16", "--heads", "2", "--layers", "1", "--batch", "8", "--steps", "40",
             "--save-every", "10", "--seed", "4"};

// (step, loss) of every training line of metrics.jsonl.
int64_t optimizer_step(const std::string& dir) {
  auto model = load_model(dir);
  AdamW opt(make_param_groups(*model, 0.0), 1e-3);
  return load_training_state(dir + "/optimizer.safetensors", opt).step;
}
}  // namespace

// The temporaries (torn files) anywhere in a run directory.
std::vector<std::string> temporaries(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path());
  return out;
}

TEST_CASE("killed mid-checkpoint: the previous checkpoint is intact and --resume finishes bit-identically",
          "[reliability][crash]") {
  TempDir tmp("crash");
  CliResult straight = run_cli(kRun + V{"--out", "straight"}, tmp.path);
  INFO(straight.err);
  REQUIRE(straight.status == 0);

  // Saves 1 and 2 are the step-10 checkpoint (model, optimizer); save 3 (the step-20 model) dies half-written.
  CliResult crashed = run_cli(kRun + V{"--out", "crashed"}, tmp.path, "QKVLAB_FAULT_INJECT=kill-mid-write:3");
  REQUIRE(crashed.status == 77);
  const std::string dir = tmp.file("crashed");
  // The step-10 pair is whole and still the published one: both files parse, and they agree on the step.
  CHECK(std::filesystem::read_symlink(dir + "/checkpoint") == "step-10");
  CHECK(load_safetensors(dir + "/model.safetensors").metadata.at("step") == "10");
  CHECK(optimizer_step(dir) == 10);
  // The torn file is only a temporary in the unpublished step-20 folder, which the loader refuses.
  std::vector<std::string> torn = temporaries(dir);
  REQUIRE(torn.size() == 1);
  CHECK_THAT(torn[0], Contains("step-20/model.safetensors.tmp."));
  CHECK_THROWS_WITH(load_safetensors(torn[0]), Contains("past the end"));

  // --resume continues from step 10 and ends with the bytes of the run that never crashed.
  CliResult resumed = run_cli(kRun + V{"--out", "crashed", "--resume"}, tmp.path);
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  CHECK(slurp_file(dir + "/model.safetensors") == slurp_file(tmp.file("straight/model.safetensors")));
  CHECK(slurp_file(dir + "/optimizer.safetensors") == slurp_file(tmp.file("straight/optimizer.safetensors")));
  // The crashed process's torn temporary went with its step folder.
  CHECK_FALSE(std::filesystem::exists(torn[0]));
  CHECK(temporaries(dir).empty());
  const auto a = logged_losses(tmp.file("straight")), b = logged_losses(dir);
  REQUIRE(a.size() >= 10);
  CHECK(a == b);  // the whole loss trajectory, from before and after the crash
}

TEST_CASE("killed between the two checkpoint files: the step-10 pair stays published and resumes exactly; an older "
          "build's mismatched pair is refused", "[reliability][crash]") {
  TempDir tmp("crash_pair");
  REQUIRE(run_cli(kRun + V{"--out", "straight"}, tmp.path).status == 0);
  // Save 4 is the step-20 optimizer state: the step-20 model is written, but nothing points at it yet.
  CliResult crashed = run_cli(kRun + V{"--out", "run"}, tmp.path, "QKVLAB_FAULT_INJECT=kill-mid-write:4");
  REQUIRE(crashed.status == 77);
  const std::string dir = tmp.file("run");
  CHECK(load_safetensors(dir + "/step-20/model.safetensors").metadata.at("step") == "20");
  CHECK(load_safetensors(dir + "/model.safetensors").metadata.at("step") == "10");
  CHECK(optimizer_step(dir) == 10);

  // Before the run directories of models/run_dir.h, the two files were renamed into place one after the other, so
  // a crash could leave the step-20 model beside the step-10 optimizer state. Such a directory is refused.
  const std::string old = tmp.sub("old");
  std::filesystem::copy_file(dir + "/step-20/model.safetensors", old + "/model.safetensors");
  std::filesystem::copy_file(dir + "/optimizer.safetensors", old + "/optimizer.safetensors");
  CliResult refused = run_cli(kRun + V{"--out", "old", "--resume"}, tmp.path);
  CHECK(refused.status == 2);
  CHECK(refused.err_lines() == 1);
  CHECK_THAT(refused.err, Contains("is from step 20") && Contains("is from step 10"));

  CliResult resumed = run_cli(kRun + V{"--out", "run", "--resume"}, tmp.path);
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  CHECK(slurp_file(dir + "/model.safetensors") == slurp_file(tmp.file("straight/model.safetensors")));
  CHECK(slurp_file(dir + "/optimizer.safetensors") == slurp_file(tmp.file("straight/optimizer.safetensors")));
}

TEST_CASE("--lr 1e3 stops the run with one line naming the step; the last checkpoint is kept and loads",
          "[reliability][crash]") {
  TempDir tmp("blowup");
  CliResult r = run_cli(V{"train", "--task", "reverse", "--seq-len", "8", "--train-size", "64", "--test-size", "16",
                          "--d-model", "16", "--heads", "2", "--layers", "1", "--batch", "8", "--steps", "30",
                          "--save-every", "1", "--lr", "1000", "--out", "run"},
                        tmp.path);
  INFO(r.err);
  CHECK(r.status == 2);
  std::smatch m;
  const std::string last = r.err.substr(r.err.rfind("qkvlab: error:") == std::string::npos ? 0 : r.err.rfind("qkvlab: error:"));
  REQUIRE(std::regex_search(last, m, std::regex("training diverged: the loss is .* at step ([0-9]+) .*the last good "
                                                "checkpoint \\(step ([0-9]+)\\)")));
  const int64_t step = std::stoll(m[1]), kept = std::stoll(m[2]);
  CHECK(kept == step - 1);
  CHECK(std::count(last.begin(), last.end(), '\n') == 1);
  // The kept checkpoint is that step's, loads, and evaluates.
  CHECK(load_safetensors(tmp.file("run/model.safetensors")).metadata.at("step") == std::to_string(kept));
  CHECK(optimizer_step(tmp.file("run")) == kept);
  CliResult e = run_cli(V{"eval", "--ckpt", "run", "--json"}, tmp.path);
  INFO(e.err);
  CHECK(e.status == 0);
}
