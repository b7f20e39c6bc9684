#pragma once

// Test helper: the structured-content validator compiled from the schema built into the binary,
// loaded once per test process and shared read-only (a Validator is safe to use from any thread).

#include <cstdio>
#include <cstdlib>

#include "connector/richcontent/validator.h"

namespace parley::connector::testing {

inline const richcontent::Validator& embeddedValidator() {
  static const richcontent::Validator v = [] {
    auto loaded = richcontent::Validator::loadEmbedded();
    if (!loaded) {
      std::fprintf(stderr, "the built-in structured-content schema does not compile: %s\n",
                   loaded.error().message.c_str());
      std::abort();
    }
    return std::move(*loaded);
  }();
  return v;
}

}  // namespace parley::connector::testing
