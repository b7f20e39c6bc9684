#pragma once

// `parley function invoke <name> --local`: runs a function in-process, in the same V8 sandbox
// the server uses (FunctionRuntime::invokeCode), with a LocalHost that serves the secrets and
// the whitelist of functions/settings.json and an in-memory context service.

#include <boost/json.hpp>
#include <map>
#include <string>
#include <vector>

#include "cli/project.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "functions/host.h"
#include "functions/memory_context.h"

namespace parley::cli {

// A FunctionHost for local runs. Secrets and the allowlist come from settings.json; secret
// updates and the context service live in memory for the run (settings.json is not rewritten);
// secret accesses are not audited; conversations are not available. Thread-safe.
class LocalHost final : public functions::FunctionHost {
 public:
  explicit LocalHost(const ProjectSettings& settings);

  // FunctionHost
  Result<std::string> readSecret(const AccountId& account, const std::string& key) override;
  Status updateSecret(const AccountId& account, const std::string& key,
                      const std::string& value) override;
  Status recordSecretAccess(const functions::SecretAccess& access) override;
  Result<std::vector<std::string>> allowlist(const AccountId& account) override;
  Result<std::string> contextCall(const AccountId& account, const std::string& op,
                                  const std::string& args_json) override;
  Result<std::string> getConversation(const AccountId& account,
                                      const std::string& conversation_id) override;
  // Unavailable: LpClient calls the server's API, which a local run does not have.
  Result<std::string> platformCall(const functions::PlatformCall& call) override;

 private:
  Mutex mu_;
  std::map<std::string, std::string> secrets_ PARLEY_GUARDED_BY(mu_);
  const std::vector<std::string> allowlist_;
  functions::MemoryContext context_;
};

struct LocalResult {
  bool ok = false;
  boost::json::value result;
  std::vector<boost::json::value> logs;  // {level, message, extras, timestamp}
  std::string error_code;
  std::string error_message;
};

// Runs `code` with the input of `config` (headers, payload, environment variables) and waits
// for the result. Unavailable when the runtime cannot start.
Result<LocalResult> invokeLocally(const std::string& code, const FunctionConfig& config,
                                  const ProjectSettings& settings, const std::string& account);

}  // namespace parley::cli
