#include "models/run_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/safetensors.h"

namespace qkvlab {

namespace {
namespace fs = std::filesystem;

const char* const kModel = "model.safetensors";
const char* const kOptimizer = "optimizer.safetensors";
const char* const kLink = "checkpoint";
const char* const kLockFile = ".lock";

std::string join(const std::string& dir, const std::string& f) { return dir + (dir.back() == '/' ? "" : "/") + f; }
std::string errno_str() { return std::strerror(errno); }

bool lexists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}
bool is_file(const std::string& p) {  // follows symlinks
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
std::string read_link(const std::string& p) {
  char buf[4096];
  ssize_t n = ::readlink(p.c_str(), buf, sizeof buf - 1);
  return n < 0 ? std::string() : std::string(buf, size_t(n));
}
void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);  // some file systems refuse fsync on directories; then only the crash of the machine can tell
    ::close(fd);
  }
}
bool is_step_entry(const std::string& name) { return name.rfind("step-", 0) == 0; }
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    ::closedir(d);
  }
  return out;
}

// __metadata__["step"] of a safetensors file, reading only its header; -1 when absent or unreadable.
int64_t metadata_step(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  unsigned char len[8];
  if (!f.read(reinterpret_cast<char*>(len), 8)) return -1;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n == 0 || n > 100ull * 1024 * 1024) return -1;
  std::string header(size_t(n), '\0');
  if (!f.read(header.data(), std::streamsize(n))) return -1;
  try {
    auto j = nlohmann::json::parse(header);
    auto s = j.at("__metadata__").at("step").get<std::string>();
    return std::stoll(s);
  } catch (...) {
    return -1;
  }
}

int64_t last_metrics_step(const std::string& path, bool& nonempty) {
  std::ifstream in(path);
  int64_t last = -1;
  nonempty = false;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    nonempty = true;
    try {
      auto j = nlohmann::json::parse(line);
      if (j.contains("step")) last = std::max(last, j["step"].get<int64_t>());
    } catch (...) {
      // a torn last line
    }
  }
  return last;
}

// ---- the lock ----
std::mutex g_locks_mutex;
std::map<std::string, std::weak_ptr<RunLock>>& lock_registry() {
  static std::map<std::string, std::weak_ptr<RunLock>> m;
  return m;
}
std::string canonical(const std::string& dir) {
  std::error_code ec;
  fs::path p = fs::canonical(dir, ec);
  return ec ? dir : p.string();
}
}  // namespace

class RunLock {
 public:
  RunLock(int fd, std::string key) : fd_(fd), key_(std::move(key)) {}
  ~RunLock() {
    if (fd_ >= 0) ::close(fd_);  // closing the last descriptor of the open file drops the flock
  }
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_;
  std::string key_;
};

std::shared_ptr<RunLock> lock_run_dir(const std::string& dir) {
  std::lock_guard<std::mutex> g(g_locks_mutex);
  const std::string key = canonical(dir);
  auto& reg = lock_registry();
  if (auto it = reg.find(key); it != reg.end())
    if (auto held = it->second.lock()) return held;
  const std::string path = join(dir, kLockFile);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot lock the run directory ", dir, ": cannot open ", path, ": ", errno_str());
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string pid;
    for (int attempt = 0; attempt < 20 && pid.empty(); ++attempt) {  // the holder writes its pid right after locking
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      char buf[32] = {};
      ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
      if (n > 0) pid.assign(buf, size_t(n));
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    }
    ::close(fd);
    if (err == EWOULDBLOCK)
      fail("run directory ", dir, " is in use by ", pid.empty() ? std::string("another process") : "process " + pid,
           " (it holds ", path, "); wait for it to finish or stop it");
    fail("cannot lock the run directory ", dir, ": ", std::strerror(err));
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) != ssize_t(me.size())) {
    // Locked all the same; only the pid in the message of a second writer is missing.
  }
  auto lock = std::make_shared<RunLock>(fd, key);
  reg[key] = lock;
  return lock;
}

RunInfo inspect_run(const std::string& dir) {
  RunInfo r;
  r.exists = is_dir(dir);
  if (!r.exists) return r;
  bool metrics_nonempty = false;
  r.metrics_step = last_metrics_step(join(dir, "metrics.jsonl"), metrics_nonempty);
  bool step_dirs = false;
  for (const std::string& n : entries(dir)) step_dirs = step_dirs || is_step_entry(n);
  const std::string link = join(dir, kLink);
  const std::string model = join(dir, kModel), optimizer = join(dir, kOptimizer);
  if (lexists(link)) {
    // The published checkpoint: read through the link, never through the fixed links (which an interrupted
    // switch from an older layout may have left half done).
    r.model = join(link, kModel);
    r.optimizer = join(link, kOptimizer);
    if (!is_file(r.model) || !is_file(r.optimizer))
      r.broken = link + " -> " + read_link(link) + " lacks " + (is_file(r.model) ? kOptimizer : kModel) +
                 " (removed by hand?)";
    else
      r.checkpoint = true;
  } else if (is_file(model)) {  // an older qkvlab's layout, or weights from elsewhere
    r.model = model;
    if (is_file(optimizer)) {
      r.optimizer = optimizer;
      r.checkpoint = true;
    } else {
      r.model_only = true;
    }
  }
  if (r.checkpoint || r.model_only) r.step = metadata_step(r.model);
  if (r.checkpoint && r.step < 0) r.step = metadata_step(r.optimizer);
  r.holds_run = lexists(link) || lexists(model) || lexists(optimizer) || step_dirs || metrics_nonempty;
  return r;
}

std::string describe_run(const RunInfo& info) {
  if (!info.broken.empty()) return "a run whose checkpoint is damaged (" + info.broken + ")";
  if (info.checkpoint)
    return info.step >= 0 ? "a run with a checkpoint at step " + std::to_string(info.step)
                          : std::string("a run with a checkpoint (step unknown)");
  if (info.model_only)
    return "a model.safetensors without optimizer state" +
           (info.step >= 0 ? " (step " + std::to_string(info.step) + ")" : std::string());
  if (info.metrics_step >= 0)
    return "a run without a checkpoint yet (metrics up to step " + std::to_string(info.metrics_step) + ")";
  return "a run without a checkpoint yet";
}

namespace {
std::string model_only_message(const std::string& cmd, const std::string& dir, const RunInfo& info) {
  return cmd + " --resume: " + dir + " holds " + describe_run(info) +
         " (saved by an older qkvlab, or weights from elsewhere), so it cannot be continued exactly; " +
         (cmd == "train" ? "start a new run from these weights with --init-from " + dir + " --out ANOTHER_DIR"
                         : "replace it with --overwrite, or start a run from these weights with qkvlab train "
                           "--init-from " + dir + " --out ANOTHER_DIR");
}

void check_mode(const std::string& dir, const RunInfo& info, RunMode mode, const std::string& cmd) {
  if (mode == RunMode::New && info.holds_run)
    fail(cmd, ": ", dir, " already holds ", describe_run(info), "; continue it with --resume, or replace it with "
         "--overwrite");
  if (mode == RunMode::Resume) {
    check(info.exists, cmd, " --resume: no run directory ", dir, " to continue; ", cmd, " without --resume first");
    check(info.holds_run, cmd, " --resume: no checkpoint in ", dir, " (no run there to continue); ", cmd,
          " without --resume first");
    check(info.broken.empty(), cmd, " --resume: the checkpoint in ", dir, " is damaged: ", info.broken,
          "; start again with --overwrite");
    check(!info.model_only, model_only_message(cmd, dir, info));
  }
}
}  // namespace

RunInfo check_run_dir(const std::string& dir, RunMode mode, const std::string& cmd) {
  RunInfo info = inspect_run(dir);
  check_mode(dir, info, mode, cmd);
  return info;
}

std::shared_ptr<RunLock> claim_run_dir(const std::string& dir, RunMode mode, const std::string& cmd) {
  auto lock = lock_run_dir(dir);
  // Checked again under the lock: another process may have finished a run here since check_run_dir.
  check_mode(dir, inspect_run(dir), mode, cmd);
  if (mode == RunMode::Overwrite) remove_run(dir);
  return lock;
}

void remove_run(const std::string& dir) {
  std::error_code ec;
  // The published pointer first: from then on the directory holds no checkpoint, never half of one.
  for (const char* f : {kLink, kModel, kOptimizer}) {
    fs::remove(join(dir, f), ec);
    check(!ec, "cannot remove ", join(dir, f), ": ", ec.message());
  }
  for (const std::string& n : entries(dir)) {
    const bool ours = is_step_entry(n) || n == "metrics.jsonl" || n == "checkpoint.tmp" ||
                      n == std::string(kModel) + ".tmp" || n == std::string(kOptimizer) + ".tmp" ||
                      n.rfind(std::string(kModel) + ".tmp.", 0) == 0 ||
                      n.rfind(std::string(kOptimizer) + ".tmp.", 0) == 0;
    if (!ours) continue;
    fs::remove_all(join(dir, n), ec);
    check(!ec, "cannot remove ", join(dir, n), ": ", ec.message());
  }
  fsync_dir(dir);
}

namespace {
// Points DIR/name at target through a temporary link renamed over it (atomic for readers).
void replace_link(const std::string& dir, const std::string& name, const std::string& target) {
  const std::string path = join(dir, name), tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0) fail("cannot create the link ", tmp, ": ", errno_str());
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_str();
    ::unlink(tmp.c_str());
    fail("cannot rename ", tmp, " to ", path, ": ", why);
  }
}
}  // namespace

void save_checkpoint(const std::string& dir, const TransformerModel& model, const Optimizer& opt,
                     const TrainingState& st) {
  const std::string link = join(dir, kLink);
  const std::string current = read_link(link);
  const int64_t kept = current.empty() ? -1 : metadata_step(join(link, kModel));
  // A second save of the published step (a run resumed and stopped again at once) goes to another folder: the
  // published one is never written into.
  std::string name = "step-" + std::to_string(st.step);
  if (name == current) name += ".1";
  const std::string step_dir = join(dir, name);
  try {
    std::error_code ec;
    fs::remove_all(step_dir, ec);  // left by a save that was interrupted; nothing points at it
    if (::mkdir(step_dir.c_str(), 0755) != 0) fail("cannot create folder ", step_dir, ": ", errno_str());
    save_model(join(step_dir, kModel), model, st.step);
    save_training_state(join(step_dir, kOptimizer), opt, st);
    // The fixed links of a new run (or of an older build's directory, below) before the publish: they dangle
    // until the first checkpoint exists.
    for (const char* f : {kModel, kOptimizer})
      if (!lexists(join(dir, f))) replace_link(dir, f, std::string(kLink) + "/" + f);
    // The publish: one rename makes step N the checkpoint, model and optimizer state together.
    replace_link(dir, kLink, name);
    fsync_dir(dir);
  } catch (const Error& e) {
    std::error_code ec;
    if (read_link(link) != name) fs::remove_all(step_dir, ec);  // frees the space a full disk needs back
    fail("the checkpoint of step ", st.step, " was not saved in ", dir, ": ", e.what(), "; ",
         kept >= 0 ? "the checkpoint of step " + std::to_string(kept) + " is kept (continue with --resume)"
                   : std::string("there is no earlier checkpoint"));
  }
  // Published. An older build's plain files become the links now (the new pair is already safe), then the
  // step folders nothing points at any more go.
  try {
    for (const char* f : {kModel, kOptimizer})
      if (read_link(join(dir, f)) != std::string(kLink) + "/" + f) replace_link(dir, f, std::string(kLink) + "/" + f);
    for (const std::string& n : entries(dir)) {
      if ((is_step_entry(n) && n != name) || n == "checkpoint.tmp" || n == std::string(kModel) + ".tmp" ||
          n == std::string(kOptimizer) + ".tmp") {
        std::error_code ec;
        fs::remove_all(join(dir, n), ec);
      }
    }
  } catch (const Error& e) {
    fail("the checkpoint of step ", st.step, " is saved in ", dir, ", but tidying up after it failed: ", e.what());
  }
}

TrainingState load_checkpoint(const std::string& dir, TransformerModel& model, Optimizer& opt) {
  RunInfo info = inspect_run(dir);
  check(info.broken.empty(), "train --resume: the checkpoint in ", dir, " is damaged: ", info.broken);
  check(!info.model_only, model_only_message("train", dir, info));
  check(info.checkpoint, "train --resume: no checkpoint in ", dir, " (it has no ", kModel,
        "); train without --resume first");
  auto saved = load_model(info.model);
  // The recipe is a record (a resumed run may raise --steps); the corpus is compared only when both name one (a
  // checkpoint from before the "data" key has none).
  const bool both_data = !saved->config().data.empty() && !model.config().data.empty();
  auto arch = [both_data](ModelConfig c) {
    c.recipe.clear();
    if (!both_data) c.data.clear();
    return c.to_json();
  };
  check(arch(saved->config()) == arch(model.config()), "train --resume: the checkpoint in ", dir,
        " is a different model (", saved->config().variant.id(), ", d ", saved->config().d_model, ", ",
        saved->config().n_layers, " layers) from the one asked for");
  model.load_state_dict(saved->state_dict());
  TrainingState ts = load_training_state(info.optimizer, opt);
  // Both files name their step. In this layout they are published together; an older build's directory could pair
  // weights and optimizer state of different steps (a crash between its two renames): never resumed as a pair.
  for (const std::string& f : {info.model, info.optimizer}) {
    const int64_t s = metadata_step(f);
    check(s < 0 || s == ts.step, "train --resume: ", f, " is from step ", s, " but ", info.optimizer,
          " is from step ", ts.step, " (the run was stopped between the two writes); it cannot be continued exactly");
  }
  return ts;
}

}  // namespace qkvlab
