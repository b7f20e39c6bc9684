#include "cli/local_invoke.h"

#include <fmt/format.h>

#include <future>

#include "common/clock.h"
#include "common/json.h"
#include "functions/runtime.h"

namespace parley::cli {

namespace bj = boost::json;

LocalHost::LocalHost(const ProjectSettings& settings) {
  for (const auto& s : settings.secrets) memory_.setSecret(s.key, s.value);
  memory_.setAllowlist(settings.whitelist);
}

Result<std::string> LocalHost::readSecret(const AccountId& account, const std::string& key) {
  auto r = memory_.readSecret(account, key);
  if (!r && r.error().code == ErrorCode::kNotFound)
    return notFound(fmt::format("secret '{}' is not in functions/settings.json", key));
  return r;
}

Status LocalHost::updateSecret(const AccountId& account, const std::string& key,
                               const std::string& value) {
  return memory_.updateSecret(account, key, value);
}

Status LocalHost::recordSecretAccess(const functions::SecretAccess& access) {
  return memory_.recordSecretAccess(access);
}

Result<std::vector<std::string>> LocalHost::allowlist(const AccountId& account) {
  return memory_.allowlist(account);
}

Result<std::string> LocalHost::contextCall(const AccountId& account, const std::string& op,
                                           const std::string& args_json) {
  return memory_.contextCall(account, op, args_json);
}

Result<std::string> LocalHost::getConversation(const AccountId&, const std::string& id) {
  return makeError(ErrorCode::kUnavailable,
                   fmt::format("conversation {} cannot be read in a local run; invoke the "
                               "function on the server",
                               id));
}

Result<LocalResult> invokeLocally(const std::string& code, const FunctionConfig& config,
                                  const ProjectSettings& settings, const std::string& account) {
  LocalHost host(settings);
  SystemClock clock;
  functions::RuntimeOptions options;
  options.threads = 1;
  options.http_threads = 1;
  options.host_threads = 1;
  auto runtime = functions::FunctionRuntime::create(options, host, clock);
  if (!runtime) return std::unexpected(runtime.error());

  auto headers = json::parse(config.input_headers_json);
  auto payload = json::parse(config.input_payload_json);
  if (!headers || !payload) return invalid("config.json: input is not valid JSON");
  bj::object input;
  input["timestamp"] = clock.nowMs();
  input["headers"] = *headers;
  input["payload"] = *payload;
  functions::InvokeRequest req;
  req.account = AccountId(account);
  req.input_json = json::dump(input);
  req.deadline = std::chrono::milliseconds(60'000);  // lpf's local limit
  // A local run changes only the in-memory copy of settings.json's secrets.
  req.invoker.secret_writes = functions::SecretWrites::kAllowed;

  std::promise<functions::InvokeResult> promise;
  auto future = promise.get_future();
  (*runtime)->invokeCode(
      AccountId(account), code, config.env, std::move(req),
      [&promise](functions::InvokeResult r) { promise.set_value(std::move(r)); });
  functions::InvokeResult r = future.get();

  LocalResult out;
  out.ok = r.ok;
  if (r.ok) {
    auto v = json::parse(r.result_json);
    out.result = v ? *v : bj::value(bj::string(r.result_json));
  }
  for (const auto& l : r.logs) {
    bj::object o;
    o["level"] = l.level;
    o["message"] = l.message;
    auto extras = json::parse(l.extras_json.empty() ? "[]" : l.extras_json);
    o["extras"] = extras ? *extras : bj::value(bj::array{});
    o["timestamp"] = l.ts;
    out.logs.push_back(std::move(o));
  }
  out.error_code = r.error_code;
  out.error_message = r.error_message;
  return out;
}

}  // namespace parley::cli
