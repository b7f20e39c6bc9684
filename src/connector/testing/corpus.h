#pragma once

// Test helpers: the structured-content corpus at ../shared/corpus, read at test time (never
// copied). The path comes from the PARLEY_CORPUS_DIR compile definition, overridable with the
// environment variable of the same name.

#include <boost/json.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace parley::connector::testing {

inline std::filesystem::path corpusDir() {
  if (const char* env = std::getenv("PARLEY_CORPUS_DIR"); env && *env) return env;
#ifdef PARLEY_CORPUS_DIR
  return PARLEY_CORPUS_DIR;
#else
  return "../shared/corpus";
#endif
}

inline std::filesystem::path schemaDir() { return corpusDir() / "schema"; }

inline std::string readFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline boost::json::value readJson(const std::filesystem::path& p) {
  return boost::json::parse(readFile(p));
}

}  // namespace parley::connector::testing
