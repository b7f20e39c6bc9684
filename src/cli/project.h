#pragma once

// A local functions project in the LivePerson Functions CLI (lpf) layout, so projects made for
// lpf work unchanged:
//   functions/<name>/index.js      the code
//   functions/<name>/config.json   {name, event, description, input:{headers:[], payload:{...}},
//                                   environmentVariables:[{key,value}]}
//   functions/settings.json        {secrets:[{key,value}], whitelist:["*.example.com"]}
// Plain file I/O; not thread-safe (one CLI command at a time).

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "common/result.h"
#include "store/store.h"

namespace parley::cli {

struct FunctionConfig {
  std::string name;
  std::string event = "no_event";
  std::string description;
  std::string input_headers_json = "[]";  // JSON array of {key,value}
  std::string input_payload_json = "{}";  // any JSON
  std::vector<store::EnvVar> env;
};

struct ProjectSettings {
  std::vector<store::EnvVar> secrets;
  std::vector<std::string> whitelist;
};

class Project {
 public:
  // `root` is the directory holding functions/ (usually the current directory).
  explicit Project(std::string root);

  const std::string& root() const { return root_; }
  std::string functionDir(const std::string& name) const;
  bool hasFunction(const std::string& name) const;

  // Creates functions/<name>/ with index.js and config.json, and functions/settings.json when
  // missing. Conflict when functions/<name> exists; Invalid for a bad name.
  Status initFunction(const FunctionConfig& config, const std::string& code);

  // NotFound with "run 'parley function init <name>' or 'pull <name>'" when missing; Invalid
  // when config.json is malformed.
  Result<std::string> readCode(const std::string& name) const;
  Result<FunctionConfig> readConfig(const std::string& name) const;
  // Create the function directory when missing.
  Status writeCode(const std::string& name, const std::string& code) const;
  Status writeConfig(const FunctionConfig& config) const;

  // Empty settings when functions/settings.json does not exist.
  Result<ProjectSettings> readSettings() const;
  Status writeSettings(const ProjectSettings& settings) const;

 private:
  std::string root_;
};

// JSON with two-space indentation and a final newline (files people edit, CLI output).
std::string prettyJson(const boost::json::value& v);

// Serialises/parses config.json (exposed for tests).
std::string configToJson(const FunctionConfig& config);
Result<FunctionConfig> configFromJson(const std::string& text);

}  // namespace parley::cli
