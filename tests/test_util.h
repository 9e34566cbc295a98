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

namespace qkvlab::testing {

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

}  // namespace qkvlab::testing
