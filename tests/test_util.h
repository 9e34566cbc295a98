// Helpers shared by the test files.
#pragma once
#include <catch2/catch.hpp>
#include <dirent.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "autograd/ops.h"
#include "tensor/parallel.h"
#include "tensor/random.h"

namespace qkvlab::testing {

// Sets the kernels' thread count for the scope of a test and restores it after (results are promised equal only
// for the same thread count).
struct ThreadCount {
  int saved = num_threads();
  explicit ThreadCount(int n) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved); }
};

// Sets keep_for_backward_bytes (autograd/ops.h) for the scope of a test and restores it after.
struct KeepForBackwardBytes {
  int64_t saved = keep_for_backward_bytes();
  explicit KeepForBackwardBytes(int64_t bytes) { set_keep_for_backward_bytes(bytes); }
  ~KeepForBackwardBytes() { set_keep_for_backward_bytes(saved); }
};

// A fresh directory under /tmp (named after `tag`), removed with everything in it at the end of the test.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag = "test") {
    std::string tmpl = "/tmp/qkvlab_" + tag + "_XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::string sub(const std::string& name) const {  // a subfolder, created
    std::filesystem::create_directories(file(name));
    return file(name);
  }
  std::vector<std::string> files() const {  // the names of the entries in the folder
    std::vector<std::string> out;
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) out.push_back(e->d_name);
      ::closedir(d);
    }
    return out;
  }
};

// A few KB of English-like text from a fixed seed, so the LM tests need no file of the system.
inline std::string english_like_text(size_t bytes, uint64_t seed) {
  static const char* words[] = {"the",  "a",     "of",    "and",  "to",     "in",    "is",    "was",   "that",
                                "it",   "for",   "on",    "with", "as",     "his",   "her",   "they",  "at",
                                "by",   "this",  "from",  "but",  "not",    "river", "light", "house", "old",
                                "small", "king", "sea",   "night", "long",  "road",  "said",  "came",  "went",
                                "who",  "would", "there", "their", "stone", "garden", "winter", "bird", "song"};
  const size_t n_words = sizeof words / sizeof *words;
  qkvlab::Generator g(seed);
  std::string out;
  bool cap = true;
  while (out.size() < bytes) {
    std::string w = words[g.randint(0, int64_t(n_words))];
    if (cap) w[0] = char(w[0] - 'a' + 'A');
    cap = false;
    out += w;
    double u = g.uniform();
    if (u < 0.08) out += ".\n", cap = true;
    else if (u < 0.15) out += ", ";
    else out += " ";
  }
  return out;
}

}  // namespace qkvlab::testing
