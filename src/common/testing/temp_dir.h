#pragma once

// A fresh directory under $TMPDIR, removed with its contents on destruction. For tests that need
// real files. Not thread-safe (create and destroy it on one thread).

#include <stdlib.h>

#include <filesystem>
#include <string>

#include "common/check.h"

namespace parley::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "parley-test-XXXXXX").string();
    PARLEY_CHECK(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // `name` inside the directory.
  std::string file(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }

 private:
  std::string path_;
};

}  // namespace parley::testing
