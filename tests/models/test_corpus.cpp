// The LM corpus (docs/DESIGN.md section 7): a file or a folder read in a fixed order, the default folder (Debian's
// fortunes, or $QKVLAB_CORPUS_DIR) when no --data is given, its one-line error when missing, and the config key
// "data" that lets a checkpoint be scored on the corpus it learned.
#include <catch2/catch.hpp>

#include "tests/test_util.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "models/checkpoint.h"
#include "models/data.h"
#include "models/task.h"
#include "tensor/error.h"

using namespace qkvlab;

namespace {
void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// Sets an environment variable for one scope, restoring what was there.
struct EnvVar {
  std::string name, old;
  bool had;
  EnvVar(const std::string& n, const std::string& v) : name(n) {
    const char* o = std::getenv(n.c_str());
    had = o != nullptr;
    if (had) old = o;
    ::setenv(n.c_str(), v.c_str(), 1);
  }
  ~EnvVar() {
    if (had) ::setenv(name.c_str(), old.c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

// A fortunes-like folder: two text files written in reverse order, an index file, a link, a sub-folder.
void make_corpus_dir(const testing::TempDir& tmp, const std::string& dir) {
  tmp.sub(dir);
  write(tmp.file(dir + "/zebra"), "zz\n%\n");
  write(tmp.file(dir + "/apple"), "aa");  // no final newline: one is added between files
  write(tmp.file(dir + "/apple.dat"), std::string("\x01\x02\xff", 3));
  std::filesystem::create_symlink("apple", tmp.file(dir + "/apple.u8"));
  tmp.sub(dir + "/off");
  write(tmp.file(dir + "/off/rude"), "rude");
}
}  // namespace

TEST_CASE("read_corpus: a folder's regular files in sorted order, without .dat files, links or sub-folders",
          "[data][corpus]") {
  testing::TempDir tmp("corpus");
  make_corpus_dir(tmp, "c");
  int files = 0;
  CHECK(read_corpus(tmp.file("c"), &files) == "aa\nzz\n%\n");
  CHECK(files == 2);
  write(tmp.file("one.txt"), "hello");
  CHECK(read_corpus(tmp.file("one.txt"), &files) == "hello");  // a file: its bytes, unchanged
  CHECK(files == 1);
  CHECK_THROWS_WITH(read_corpus(tmp.file("missing")), Catch::Contains("cannot read") && Catch::Contains("missing"));
  tmp.sub("empty");
  CHECK_THROWS_WITH(read_corpus(tmp.file("empty")), Catch::Contains("holds no text files"));
}

TEST_CASE("LM without --data: the default corpus folder, named in the task, recorded in the config",
          "[data][corpus]") {
  testing::TempDir tmp("corpus");
  make_corpus_dir(tmp, "c");
  // Enough bytes for a context of 4.
  write(tmp.file("c/middle"), "the quick brown fox jumps over the lazy dog, the quick brown fox jumps again\n");
  EnvVar env("QKVLAB_CORPUS_DIR", tmp.file("c"));
  CHECK(default_corpus_dir() == tmp.file("c"));
  TaskOptions o;
  o.task = "lm";
  o.context = 4;
  auto task = make_task(o);
  CHECK(task->name().find(tmp.file("c")) != std::string::npos);
  CHECK(task->name().find("default corpus") != std::string::npos);
  CHECK(task->name().find("3 files") != std::string::npos);
  ModelConfig cfg;
  cfg.task = "lm";
  task->configure(cfg);
  CHECK(cfg.data == tmp.file("c"));
  // The key survives the checkpoint's JSON, and a checkpoint's task reads the recorded corpus without --data.
  cfg.d_model = 8, cfg.n_heads = 2, cfg.n_layers = 1;
  cfg.resolve();
  const ModelConfig back = ModelConfig::from_json(cfg.to_json());
  CHECK(back.data == tmp.file("c"));
  TaskOptions none;
  auto again = make_task_for(back, none);
  CHECK(again->name().find(tmp.file("c")) != std::string::npos);
}

TEST_CASE("LM without --data and no default corpus: one line naming the package and --data", "[data][corpus]") {
  testing::TempDir tmp("corpus");
  EnvVar env("QKVLAB_CORPUS_DIR", tmp.file("nowhere"));
  TaskOptions o;
  o.task = "lm";
  try {
    make_task(o);
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find("apt-get install fortunes") != std::string::npos);
    CHECK(m.find("--data FILE") != std::string::npos);
    CHECK(m.find(tmp.file("nowhere")) != std::string::npos);
    CHECK(m.find('\n') == std::string::npos);
  }
}

TEST_CASE("The installed fortunes corpus reads the same bytes every time", "[data][corpus]") {
  const std::string dir = "/usr/share/games/fortunes";
  if (::access(dir.c_str(), R_OK) != 0) {
    WARN("skipped: " << dir << " is missing (apt-get install fortunes)");
    return;
  }
  int files = 0;
  const std::string a = read_corpus(dir, &files), b = read_corpus(dir);
  CHECK(a == b);
  CHECK(files > 10);
  CHECK(a.size() > 1000000);  // about 2.6 MB of English
  CHECK(a.find("\n%\n") != std::string::npos);  // fortune's separator: text files, not the binary .dat indexes
}
