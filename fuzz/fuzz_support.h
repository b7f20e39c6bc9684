#pragma once

// Shared by the libFuzzer targets: where the structured-content schema is read from, and the
// Validator loaded once per process.

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "connector/richcontent/validator.h"

namespace parley::fuzz {

// The corpus `schema` folder: $PARLEY_CORPUS_DIR/schema, else the build's PARLEY_CORPUS_DIR.
inline std::filesystem::path schemaDir() {
  if (const char* env = std::getenv("PARLEY_CORPUS_DIR"); env && *env)
    return std::filesystem::path(env) / "schema";
  return std::filesystem::path(PARLEY_CORPUS_DIR) / "schema";
}

// The compiled JSON Pollock schema; aborts the fuzzer (not a finding) when it cannot be loaded.
inline const connector::richcontent::Validator& validator() {
  static const connector::richcontent::Validator* v = [] {
    auto loaded = connector::richcontent::Validator::load(schemaDir());
    if (!loaded) {
      std::fprintf(stderr, "fuzz: cannot load the schema from %s: %s\n", schemaDir().c_str(),
                   loaded.error().message.c_str());
      std::abort();
    }
    return new connector::richcontent::Validator(std::move(*loaded));
  }();
  return *v;
}

// A property the code promises does not hold: report it as a crash with a message.
#define PARLEY_FUZZ_CHECK(cond, what)                                    \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::fprintf(stderr, "fuzz check failed: %s (%s)\n", what, #cond); \
      std::abort();                                                      \
    }                                                                    \
  } while (0)

}  // namespace parley::fuzz
