#include "cli/local_invoke.h"

#include <fmt/format.h>

#include <future>

#include "common/clock.h"
#include "common/json.h"
#include "functions/runtime.h"
#include "functions/validation.h"

namespace parley::cli {

namespace bj = boost::json;

LocalHost::LocalHost(const ProjectSettings& settings) : allowlist_(settings.whitelist) {
  for (const auto& s : settings.secrets) secrets_[s.key] = s.value;
}

Result<std::string> LocalHost::readSecret(const AccountId&, const std::string& key) {
  MutexLock lock(mu_);
  auto it = secrets_.find(key);
  if (it == secrets_.end())
    return notFound(fmt::format("secret '{}' is not in functions/settings.json", key));
  return it->second;
}

Status LocalHost::updateSecret(const AccountId&, const std::string& key, const std::string& value) {
  if (auto v = functions::validateSecretValue(value); !v) return invalid(v.error().message);
  MutexLock lock(mu_);
  auto it = secrets_.find(key);
  if (it == secrets_.end())
    return notFound(fmt::format("secret '{}' is not in functions/settings.json", key));
  it->second = value;
  return {};
}

Status LocalHost::recordSecretAccess(const functions::SecretAccess&) { return {}; }

Result<std::vector<std::string>> LocalHost::allowlist(const AccountId&) { return allowlist_; }

Result<std::string> LocalHost::contextCall(const AccountId&, const std::string& op,
                                           const std::string& args_json) {
  return context_.call(op, args_json);
}

Result<std::string> LocalHost::getConversation(const AccountId&, const std::string& id) {
  return makeError(ErrorCode::kUnavailable,
                   fmt::format("conversation {} cannot be read in a local run; invoke the "
                               "function on the server",
                               id));
}

Result<std::string> LocalHost::platformCall(const functions::PlatformCall& call) {
  std::string client = call.op;
  if (call.op == "lp") client = "LpClient";
  if (call.op == "sdes.add") client = "SDEUtil.addSDEs";
  if (call.op == "gdpr.replaceFiles") client = "GDPRUtil.replaceConversationFiles";
  return makeError(ErrorCode::kUnavailable,
                   fmt::format("Toolbelt '{}' calls cannot run in a local run (they use the "
                               "server's API); invoke the function on the server",
                               client));
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
  // lpf's local limit is 60 s. A local run changes only the in-memory copy of settings.json's
  // secrets, so it may write them.
  auto req = functions::InvokeRequest::of(AccountId(account), FunctionId())
                 .withInput(json::dump(input))
                 .within(std::chrono::milliseconds(60'000))
                 .by(functions::Invoker{.kind = functions::InvokerKind::kPlatform,
                                        .user = UserId(),
                                        .login_name = "",
                                        .secret_writes = functions::SecretWrites::kAllowed});

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
