#include "functions/service/function_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <optional>

#include "common/json.h"
#include "common/policy.h"
#include "common/random.h"
#include "functions/service/domains.h"
#include "functions/templates.h"
#include "functions/validation.h"

namespace parley::functions::service {

namespace bj = boost::json;

namespace {

using store::DeploymentState;
using store::FunctionState;
constexpr std::string_view kBuildErrorCode = "com.liveperson.faas.fm.build-error";

// ---- responses -------------------------------------------------------------------------------

api::Response errorResponse(const Error& e) {
  bj::object err;
  err["code"] = errorCodeName(e.code);
  err["message"] = e.message;
  return api::Response{httpStatus(e.code), json::dump(bj::object{{"error", std::move(err)}})};
}

api::Response errorResponse(ErrorCode code, std::string message) {
  return errorResponse(Error{code, std::move(message)});
}

api::Response ok(const bj::value& v, int status = 200) {
  return api::Response{status, json::dump(v)};
}

// ---- permissions -----------------------------------------------------------------------------

// The policy's answer for `action` (docs/authorization.md), as a 403 response when refused.
std::optional<api::Response> authorize(const api::Caller& c, policy::Action action) {
  if (auto st = policy::authorize(c.subject(), action); !st) return errorResponse(st.error());
  return std::nullopt;
}

// ---- JSON ------------------------------------------------------------------------------------

bj::array envJson(const std::vector<store::EnvVar>& env) {
  bj::array out;
  for (const auto& e : env) out.push_back(bj::object{{"key", e.key}, {"value", e.value}});
  return out;
}

Result<std::vector<store::EnvVar>> parseEnv(const bj::value& v) {
  if (!v.is_array())
    return invalid("field 'environmentVariables' must be an array of {key, value} objects");
  std::vector<store::EnvVar> out;
  for (const auto& item : v.as_array()) {
    if (!item.is_object())
      return invalid("field 'environmentVariables' must be an array of {key, value} objects");
    auto key = json::requireString(item.as_object(), "key");
    if (!key) return invalid("environmentVariables[].key is required and must be a string");
    auto value = json::optString(item.as_object(), "value");
    if (!value) return invalid("environmentVariables[].value must be a string");
    out.push_back({*key, value->value_or("")});
  }
  if (auto s = validateEnvVars(out); !s) return std::unexpected(s.error());
  return out;
}

bj::value parseOrString(const std::string& text) {
  if (text.empty()) return nullptr;
  auto v = json::parse(text);
  if (v) return std::move(*v);
  return bj::string(text);
}

bj::object deploymentJson(const store::Deployment& d, bool with_code) {
  bj::object o;
  o["uuid"] = d.uuid;
  o["lambdaUUID"] = d.function.str();
  o["lambdaVersion"] = d.function_version;
  o["deploymentState"] = store::deploymentStateName(d.state);
  o["deploymentError"] = d.error_json.empty() ? bj::value(nullptr) : parseOrString(d.error_json);
  o["createdAt"] = d.created_at;
  o["createdBy"] = d.created_by;
  o["deployedAt"] = d.deployed_at == 0 ? bj::value(nullptr) : bj::value(d.deployed_at);
  o["environmentVariables"] = envJson(d.env);
  if (with_code) o["code"] = d.code;
  return o;
}

bj::object logJson(const store::InvocationLog& l) {
  bj::object o;
  o["lambdaUUID"] = l.function.str();
  o["requestId"] = l.request_id;
  o["timestamp"] = l.ts;
  o["level"] = l.level;
  o["message"] = l.message;
  o["extras"] = parseOrString(l.extras_json);
  return o;
}

bj::object logEntryJson(const LogEntry& l) {
  bj::object o;
  o["level"] = l.level;
  o["message"] = l.message;
  o["extras"] = parseOrString(l.extras_json);
  o["timestamp"] = l.ts;
  return o;
}

std::optional<std::int64_t> parseInt64(const std::string& s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string canonicalLevel(std::string_view level) {
  std::string l(level);
  std::transform(l.begin(), l.end(), l.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (l == "debug") return "Debug";
  if (l == "info") return "Info";
  if (l == "warn" || l == "warning") return "Warn";
  if (l == "error") return "Error";
  return "";
}

FunctionState stateAfterSave(const store::FunctionRecord& f, bool live) {
  (void)f;
  return live ? FunctionState::kModified : FunctionState::kDraft;
}

}  // namespace

// ---- the recording Runner --------------------------------------------------------------------

class FunctionService::RecordingRunner final : public Runner {
 public:
  explicit RecordingRunner(FunctionService& service) : service_(service) {}

  // Runner
  void invoke(InvokeRequest request, std::function<void(InvokeResult)> done) override {
    if (request.request_id.empty()) request.request_id = randomUuid();
    // Production invocations (bot turns) run code a FAAS_ADMIN deployed: like LivePerson's
    // deployed functions they may update secrets. Every access is recorded.
    if (request.invoker.kind == InvokerKind::kPlatform)
      request.invoker.secret_writes = SecretWrites::kAllowed;
    AccountId account = request.account;
    FunctionId function = request.function;
    std::string request_id = request.request_id;
    service_.beginAsync();
    service_.runtime_.invoke(
        std::move(request),
        [this, account = std::move(account), function = std::move(function),
         request_id = std::move(request_id), done = std::move(done)](InvokeResult result) mutable {
          record(account, function, request_id, result);
          done(std::move(result));
          service_.endAsync();
        });
  }

 private:
  void record(const AccountId& account, const FunctionId& function, const std::string& request_id,
              const InvokeResult& result) {
    // An invocation of a function that is not deployed (or an unknown one) is not the
    // function's fault and would let anyone grow the metrics map: count it only when the
    // function is deployed.
    bool not_deployed = !result.ok && result.error_code == kErrNotDeployed;
    if (!not_deployed)
      service_.metrics_.record(account, function, result.duration_ms,
                               result.ok ? std::string() : result.error_code);
    if (not_deployed) return;
    std::vector<store::InvocationLog> logs;
    for (const auto& l : result.logs) {
      if (l.level == "Debug") continue;  // never stored (§4.5)
      logs.push_back({function, account, request_id, l.ts != 0 ? l.ts : service_.clock_.nowMs(),
                      l.level, l.message, l.extras_json.empty() ? "[]" : l.extras_json});
    }
    if (!result.ok) {
      logs.push_back(
          {function, account, request_id, service_.clock_.nowMs(), "Error",
           fmt::format("invocation failed: {}: {}", result.error_code, result.error_message),
           "[]"});
    }
    if (logs.empty()) return;
    service_.beginAsync();
    service_.executor_->post([this, logs = std::move(logs)] {
      if (auto s = service_.functions_.appendLogs(logs); !s)
        spdlog::warn("functions: storing {} invocation logs failed: {}", logs.size(),
                     s.error().message);
      service_.endAsync();
    });
  }

  FunctionService& service_;
};

// ---- lifecycle -------------------------------------------------------------------------------

FunctionService::FunctionService(store::Store& store, crypto::SecretBox secret_box,
                                 FunctionRuntime& runtime, const Clock& clock,
                                 FunctionServiceOptions options)
    : store_(store),
      functions_(store.functions()),
      box_(std::move(secret_box)),
      runtime_(runtime),
      clock_(clock),
      options_(options),
      runner_(std::make_unique<RecordingRunner>(*this)),
      executor_(std::make_unique<Executor>(options.threads)) {}

FunctionService::~FunctionService() {
  stopping_ = true;
  executor_->waitIdle();
  {
    MutexLock lock(async_mu_);
    while (async_pending_ != 0) lock.wait(async_cv_);
  }
  executor_.reset();
}

void FunctionService::beginAsync() {
  MutexLock lock(async_mu_);
  ++async_pending_;
}

void FunctionService::endAsync() {
  MutexLock lock(async_mu_);
  if (--async_pending_ == 0) async_cv_.notify_all();
}

void FunctionService::waitIdleForTest() {
  executor_->waitIdle();
  MutexLock lock(async_mu_);
  while (async_pending_ != 0) lock.wait(async_cv_);
}

Runner& FunctionService::runner() { return *runner_; }

Mutex& FunctionService::lockFor(const FunctionId& id) {
  return function_locks_[std::hash<std::string>{}(id.str()) % function_locks_.size()];
}

std::vector<std::string> FunctionService::resources() const {
  return {"functions", "secrets", "allowlist"};
}

void FunctionService::handle(api::Request request, std::function<void(api::Response)> done) {
  if (stopping_) {
    done(errorResponse(ErrorCode::kUnavailable, "the server is shutting down; retry later"));
    return;
  }
  executor_->post([this, request = std::move(request), done = std::move(done)]() mutable {
    try {
      route(request, done);
    } catch (const std::exception& e) {
      spdlog::error("functions: {} {} failed: {}", request.method,
                    request.path.empty() ? "" : request.path[0], e.what());
      done(errorResponse(ErrorCode::kInternal, "internal error; see the server log"));
    }
  });
}

void FunctionService::route(const api::Request& req, std::function<void(api::Response)> done) {
  const auto& p = req.path;
  const auto& m = req.method;
  auto methodNotAllowed = [&] {
    return errorResponse(ErrorCode::kInvalid,
                         fmt::format("{} is not supported on this path; see API.md", m));
  };
  if (p.empty()) {
    done(errorResponse(ErrorCode::kNotFound, "no such resource"));
    return;
  }
  if (p[0] == "secrets") {
    done(handleSecrets(req));
    return;
  }
  if (p[0] == "allowlist") {
    done(handleAllowlist(req));
    return;
  }
  if (p[0] != "functions") {
    done(errorResponse(ErrorCode::kNotFound, fmt::format("no such resource '{}'", p[0])));
    return;
  }
  if (p.size() == 1) {
    if (m == "GET") return done(listFunctions(req));
    if (m == "POST") return done(createFunction(req));
    return done(methodNotAllowed());
  }
  if (p[1] == "templates") {
    if (p.size() == 2 && m == "GET") return done(getTemplates(req));
    return done(methodNotAllowed());
  }
  FunctionId id(p[1]);
  if (p.size() == 2) {
    if (m == "GET") return done(getFunction(req, id));
    if (m == "PUT" || m == "PATCH") return done(updateFunction(req, id));
    if (m == "DELETE") return done(deleteFunction(req, id));
    return done(methodNotAllowed());
  }
  const std::string& action = p[2];
  if (p.size() == 3) {
    if (action == "deploy" && m == "POST") return done(deployFunction(req, id));
    if (action == "undeploy" && m == "POST") return done(undeployFunction(req, id));
    if (action == "invoke" && m == "POST") return invokeFunction(req, id, std::move(done));
    if (action == "logs" && m == "GET") return done(listLogs(req, id));
    if (action == "deployments" && m == "GET") return done(listDeployments(req, id));
  }
  if (p.size() == 5 && action == "deployments" && p[4] == "restore" && m == "POST")
    return done(restoreDeployment(req, id, p[3]));
  done(errorResponse(ErrorCode::kNotFound,
                     fmt::format("no such functions endpoint: {} /functions/{}/{}", m, p[1],
                                 fmt::join(p.begin() + 2, p.end(), "/"))));
}

// ---- functions -------------------------------------------------------------------------------

std::string FunctionService::functionJson(const store::FunctionRecord& f, bool with_details) {
  bj::object o;
  o["uuid"] = f.uuid.str();
  o["version"] = f.version;
  o["name"] = f.name;
  o["description"] = f.description;
  o["event"] = f.event_id;
  o["eventId"] = f.event_id;
  o["state"] = store::functionStateName(f.state);
  o["deployed"] = runtime_.isDeployed(f.account, f.uuid);
  o["createdAt"] = f.created_at;
  o["createdBy"] = f.created_by;
  o["updatedAt"] = f.updated_at;
  o["updatedBy"] = f.updated_by;
  o["environmentVariables"] = envJson(f.env);
  auto deployments = functions_.listDeployments(f.account, f.uuid, 1);
  o["lastDeployment"] = deployments && !deployments->empty()
                            ? bj::value(deploymentJson(deployments->front(), false))
                            : bj::value(nullptr);
  if (with_details) {
    o["code"] = f.code;
    o["implementation"] = bj::object{
        {"code", f.code}, {"environmentVariables", envJson(f.env)}, {"dependencies", bj::array{}}};
    o["samplePayload"] = parseOrString(
        templateFor(isKnownEvent(f.event_id) ? f.event_id : std::string(kNoEvent)).sample_payload);
    MetricsSnapshot s = metrics_.snapshot(f.account, f.uuid);
    bj::object by_code;
    for (const auto& [code, n] : s.errors_by_code) by_code[code] = n;
    o["metrics"] = bj::object{
        {"invocations", s.invocations},
        {"errors", s.errors},
        {"errorsByCode", std::move(by_code)},
        {"durationMs", bj::object{{"p50", s.p50_ms}, {"p95", s.p95_ms}, {"p99", s.p99_ms}}}};
  }
  return json::dump(o);
}

api::Response FunctionService::listFunctions(const api::Request& req) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsList)) return *r;
  auto list = functions_.listFunctions(req.caller.account);
  if (!list) return errorResponse(list.error());
  std::string out = "[";
  for (std::size_t i = 0; i < list->size(); ++i) {
    if (i) out += ',';
    out += functionJson((*list)[i], false);
  }
  out += ']';
  return api::Response{200, out};
}

api::Response FunctionService::getFunction(const api::Request& req, const FunctionId& id) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsGet)) return *r;
  auto f = functions_.getFunction(req.caller.account, id);
  if (!f) return errorResponse(f.error());
  return api::Response{200, functionJson(*f, true)};
}

api::Response FunctionService::createFunction(const api::Request& req) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsCreate)) return *r;
  auto body = json::parseObject(req.body);
  if (!body) return errorResponse(body.error());
  auto name = json::requireString(*body, "name");
  if (!name) return errorResponse(name.error());
  if (auto s = validateFunctionName(*name); !s) return errorResponse(s.error());
  auto description = json::optString(*body, "description");
  if (!description) return errorResponse(description.error());
  if (description->value_or("").size() > kMaxDescriptionLength)
    return errorResponse(
        ErrorCode::kInvalid,
        fmt::format("description is longer than {} characters", kMaxDescriptionLength));
  auto event = json::requireString(*body, "event");
  if (!event) {
    // LivePerson's own clients send eventId.
    event = json::requireString(*body, "eventId");
    if (!event)
      return errorResponse(ErrorCode::kInvalid,
                           "field 'event' is required: use an event id such as "
                           "bot_connectors_custom_integration or no_event");
  }
  if (!isKnownEvent(*event))
    return errorResponse(ErrorCode::kInvalid,
                         fmt::format("unknown event '{}': GET functions/templates lists the "
                                     "events with templates; use no_event for a plain function",
                                     *event));
  auto code = json::optString(*body, "code");
  if (!code) return errorResponse(code.error());
  std::string source = code->has_value() ? **code : templateFor(*event).code;
  if (source.empty()) return errorResponse(ErrorCode::kInvalid, "field 'code' must not be empty");
  if (source.size() > kMaxCodeLength)
    return errorResponse(ErrorCode::kTooLarge,
                         fmt::format("code is {} characters long; the maximum is {}", source.size(),
                                     kMaxCodeLength));
  std::vector<store::EnvVar> env;
  if (const bj::value* ev = body->if_contains("environmentVariables"); ev && !ev->is_null()) {
    auto parsed = parseEnv(*ev);
    if (!parsed) return errorResponse(parsed.error());
    env = std::move(*parsed);
  }
  store::FunctionRecord f;
  f.uuid = FunctionId(randomUuid());
  f.account = req.caller.account;
  f.name = *name;
  f.description = description->value_or("");
  f.event_id = *event;
  f.code = std::move(source);
  f.env = std::move(env);
  f.state = FunctionState::kDraft;
  f.version = 1;
  f.created_by = req.caller.login_name;
  f.updated_by = req.caller.login_name;
  f.created_at = clock_.nowMs();
  f.updated_at = f.created_at;
  if (auto s = functions_.createFunction(f); !s) {
    if (s.error().code == ErrorCode::kConflict)
      return errorResponse(ErrorCode::kConflict,
                           fmt::format("a function named '{}' already exists in this account; "
                                       "choose another name or update that function",
                                       f.name));
    return errorResponse(s.error());
  }
  return api::Response{201, functionJson(f, true)};
}

api::Response FunctionService::updateFunction(const api::Request& req, const FunctionId& id) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsUpdate)) return *r;
  auto body = json::parseObject(req.body);
  if (!body) return errorResponse(body.error());
  auto code = json::optString(*body, "code");
  if (!code) return errorResponse(code.error());
  auto description = json::optString(*body, "description");
  if (!description) return errorResponse(description.error());
  if (*code && (*code)->empty())
    return errorResponse(ErrorCode::kInvalid, "field 'code' must not be empty");
  if (*code && (*code)->size() > kMaxCodeLength)
    return errorResponse(ErrorCode::kTooLarge,
                         fmt::format("code is {} characters long; the maximum is {}",
                                     (*code)->size(), kMaxCodeLength));
  if (*description && (*description)->size() > kMaxDescriptionLength)
    return errorResponse(
        ErrorCode::kInvalid,
        fmt::format("description is longer than {} characters", kMaxDescriptionLength));
  std::optional<std::vector<store::EnvVar>> env;
  if (const bj::value* ev = body->if_contains("environmentVariables"); ev && !ev->is_null()) {
    auto parsed = parseEnv(*ev);
    if (!parsed) return errorResponse(parsed.error());
    env = std::move(*parsed);
  }
  MutexLock lock(lockFor(id));
  auto f = functions_.getFunction(req.caller.account, id);
  if (!f) return errorResponse(f.error());
  bool changed = false;
  if (*code && **code != f->code) {
    f->code = **code;
    changed = true;
  }
  if (*description && **description != f->description) {
    f->description = **description;
    changed = true;
  }
  if (env) {
    bool same =
        env->size() == f->env.size() &&
        std::equal(env->begin(), env->end(), f->env.begin(), [](const auto& a, const auto& b) {
          return a.key == b.key && a.value == b.value;
        });
    if (!same) {
      f->env = std::move(*env);
      changed = true;
    }
  }
  if (!changed) return api::Response{200, functionJson(*f, true)};
  f->version += 1;
  f->updated_by = req.caller.login_name;
  f->updated_at = clock_.nowMs();
  f->state = stateAfterSave(*f, runtime_.isDeployed(f->account, f->uuid));
  if (auto s = functions_.updateFunction(*f); !s) return errorResponse(s.error());
  return api::Response{200, functionJson(*f, true)};
}

api::Response FunctionService::deleteFunction(const api::Request& req, const FunctionId& id) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsDelete)) return *r;
  MutexLock lock(lockFor(id));
  auto f = functions_.getFunction(req.caller.account, id);
  if (!f) return errorResponse(f.error());
  runtime_.undeploy(f->account, f->uuid);
  if (auto s = functions_.deleteFunction(f->account, f->uuid); !s) return errorResponse(s.error());
  metrics_.erase(f->account, f->uuid);
  changed(f->account, f->uuid);
  return api::Response{200, "{}"};
}

api::Response FunctionService::deployFunction(const api::Request& req, const FunctionId& id) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsDeploy)) return *r;
  MutexLock lock(lockFor(id));
  auto f = functions_.getFunction(req.caller.account, id);
  if (!f) return errorResponse(f.error());
  const bool was_live = runtime_.isDeployed(f->account, f->uuid);
  std::string live_deployment;
  if (was_live) {
    auto ds = functions_.listDeployments(f->account, f->uuid, options_.keep_deployments);
    if (ds)
      for (const auto& d : *ds)
        if (d.state == DeploymentState::kProductive) {
          live_deployment = d.uuid;
          break;
        }
  }
  store::Deployment d;
  d.uuid = randomUuid();
  d.function = f->uuid;
  d.account = f->account;
  d.function_version = f->version;
  d.code = f->code;
  d.env = f->env;
  d.created_by = req.caller.login_name;
  d.created_at = clock_.nowMs();

  Status built = runtime_.checkCode(f->code);
  if (built)
    built = runtime_.deploy(f->account, f->uuid, DeployedCode{f->code, f->env, f->version});
  if (!built) {
    d.state = DeploymentState::kBuildError;
    bj::object err;
    err["errorCode"] = kBuildErrorCode;
    err["errorMsg"] = built.error().message;
    err["errorLogs"] = bj::array{bj::object{{"level", "Error"},
                                            {"message", built.error().message},
                                            {"timestamp", d.created_at},
                                            {"extras", bj::array{}}}};
    // Which deployment keeps running (restoreDeployments needs it after a restart).
    err["liveDeploymentUuid"] = live_deployment;
    d.error_json = json::dump(err);
    f->state = FunctionState::kBuildError;
    f->updated_at = clock_.nowMs();
    if (auto s = functions_.addDeployment(d); !s) return errorResponse(s.error());
    (void)functions_.pruneDeployments(f->account, f->uuid, options_.keep_deployments);
    if (auto s = functions_.updateFunction(*f); !s) return errorResponse(s.error());
    std::string msg = fmt::format("deployment of '{}' failed: {}. Fix the code and deploy again{}",
                                  f->name, built.error().message,
                                  was_live ? "; the previous deployment keeps running" : "");
    ErrorCode code = built.error().code == ErrorCode::kScriptError ? ErrorCode::kScriptError
                                                                   : ErrorCode::kInvalid;
    if (built.error().code == ErrorCode::kUnavailable || built.error().code == ErrorCode::kInternal)
      code = built.error().code;
    return errorResponse(code, std::move(msg));
  }
  d.state = DeploymentState::kProductive;
  d.deployed_at = clock_.nowMs();
  if (auto s = functions_.addDeployment(d); !s) return errorResponse(s.error());
  (void)functions_.pruneDeployments(f->account, f->uuid, options_.keep_deployments);
  f->state = FunctionState::kProductive;
  f->updated_at = clock_.nowMs();
  if (auto s = functions_.updateFunction(*f); !s) return errorResponse(s.error());
  changed(f->account, f->uuid);
  return api::Response{200, functionJson(*f, true)};
}

api::Response FunctionService::undeployFunction(const api::Request& req, const FunctionId& id) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsUndeploy)) return *r;
  MutexLock lock(lockFor(id));
  auto f = functions_.getFunction(req.caller.account, id);
  if (!f) return errorResponse(f.error());
  runtime_.undeploy(f->account, f->uuid);
  f->state = FunctionState::kDraft;
  f->updated_at = clock_.nowMs();
  if (auto s = functions_.updateFunction(*f); !s) return errorResponse(s.error());
  changed(f->account, f->uuid);
  return api::Response{200, functionJson(*f, true)};
}

void FunctionService::invokeFunction(const api::Request& req, const FunctionId& id,
                                     std::function<void(api::Response)> done) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsInvoke)) return done(*r);
  auto body = json::parseObject(req.body.empty() ? "{}" : req.body);
  if (!body) return done(errorResponse(body.error()));
  bj::value payload = bj::object{};
  if (const bj::value* pv = body->if_contains("payload"); pv && !pv->is_null()) payload = *pv;
  std::string payload_text = json::dump(payload);
  if (payload_text.size() > kMaxPayloadLength)
    return done(errorResponse(ErrorCode::kTooLarge,
                              fmt::format("payload is {} characters long; the maximum for a test "
                                          "invocation is {}",
                                          payload_text.size(), kMaxPayloadLength)));
  bj::array headers;
  if (const bj::value* hv = body->if_contains("headers"); hv && !hv->is_null()) {
    if (hv->is_array()) {
      for (const auto& h : hv->as_array()) {
        if (!h.is_object() || !h.as_object().contains("key"))
          return done(errorResponse(ErrorCode::kInvalid,
                                    "field 'headers' must be an array of {key, value} objects"));
        headers.push_back(h);
      }
    } else if (hv->is_object()) {
      for (const auto& [k, v] : hv->as_object())
        headers.push_back(bj::object{{"key", k}, {"value", v}});
    } else {
      return done(errorResponse(ErrorCode::kInvalid,
                                "field 'headers' must be an array of {key, value} objects"));
    }
  }
  // The channel the connector's review of the result assumes (quick replies are MESSAGING only).
  store::Channel channel = store::Channel::kMessaging;
  if (const bj::value* cv = body->if_contains("channel"); cv && !cv->is_null()) {
    std::string c = cv->is_string() ? std::string(cv->as_string()) : std::string();
    for (auto& ch : c) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (c == "CHAT") {
      channel = store::Channel::kChat;
    } else if (c != "MESSAGING") {
      return done(
          errorResponse(ErrorCode::kInvalid, "field 'channel' must be \"MESSAGING\" or \"CHAT\""));
    }
  }
  auto f = functions_.getFunction(req.caller.account, id);
  if (!f) return done(errorResponse(f.error()));

  bj::object input;
  input["timestamp"] = clock_.nowMs();
  input["headers"] = std::move(headers);
  input["payload"] = std::move(payload);
  // The invoker's identity travels with the invocation: the runtime records it with every
  // secret access, and only FAAS_ADMIN or ADMIN may change secrets from a test invoke.
  auto ir = InvokeRequest::of(f->account, f->uuid)
                .withInput(json::dump(input))
                .within(options_.test_deadline)
                .withRequestId(randomUuid())
                .by(Invoker{
                    .kind = InvokerKind::kUser,
                    .user = req.caller.user,
                    .login_name = req.caller.login_name,
                    .secret_writes = req.caller.hasRole("ADMIN") || req.caller.hasRole("FAAS_ADMIN")
                                         ? SecretWrites::kAllowed
                                         : SecretWrites::kRefused});
  // Test invocations run the saved code (deployed or not) in a throw-away context, so developers
  // can try edits before deploying. Their logs (incl. Debug) are returned, never stored.
  beginAsync();
  runtime_.invokeCode(
      f->account, f->code, f->env, std::move(ir),
      [this, done = std::move(done), account = f->account, event = f->event_id,
       channel](InvokeResult r) {
        bj::object out;
        out["result"] = r.ok ? parseOrString(r.result_json) : bj::value(nullptr);
        // What the bot connector would send for this result, with its refusals and warnings:
        // a test that "succeeds" can still be a turn the connector refuses.
        if (r.ok && options_.review_result)
          if (auto review = options_.review_result(account, event, channel, r.result_json))
            out["connector"] = std::move(*review);
        bj::array logs;
        for (const auto& l : r.logs) logs.push_back(logEntryJson(l));
        out["logs"] = std::move(logs);
        out["durationMs"] = r.duration_ms;
        if (!r.ok) out["error"] = bj::object{{"code", r.error_code}, {"message", r.error_message}};
        done(api::Response{200, json::dump(out)});
        endAsync();
      });
}

api::Response FunctionService::listLogs(const api::Request& req, const FunctionId& id) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsLogs)) return *r;
  auto f = functions_.getFunction(req.caller.account, id);
  if (!f) return errorResponse(f.error());
  TimeMs since = 0;
  if (auto it = req.query.find("since"); it != req.query.end() && !it->second.empty()) {
    auto v = parseInt64(it->second);
    if (!v || *v < 0)
      return errorResponse(ErrorCode::kInvalid,
                           "query 'since' must be a timestamp in milliseconds since the epoch");
    since = *v;
  }
  int limit = options_.default_log_limit;
  if (auto it = req.query.find("limit"); it != req.query.end() && !it->second.empty()) {
    auto v = parseInt64(it->second);
    if (!v || *v < 1 || *v > options_.max_log_limit)
      return errorResponse(
          ErrorCode::kInvalid,
          fmt::format("query 'limit' must be between 1 and {}", options_.max_log_limit));
    limit = static_cast<int>(*v);
  }
  std::vector<std::string> levels;
  if (auto it = req.query.find("level"); it != req.query.end() && !it->second.empty()) {
    std::string_view rest = it->second;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      std::string level = canonicalLevel(rest.substr(0, comma));
      if (level.empty())
        return errorResponse(ErrorCode::kInvalid,
                             "query 'level' must be Info, Warn or Error (comma-separated)");
      levels.push_back(level);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  auto logs = functions_.listLogs(f->account, f->uuid, since,
                                  levels.empty() ? limit : options_.max_log_limit * 10);
  if (!logs) return errorResponse(logs.error());
  bj::array out;
  for (const auto& l : *logs) {
    if (!levels.empty() && std::find(levels.begin(), levels.end(), l.level) == levels.end())
      continue;
    out.push_back(logJson(l));
    if (static_cast<int>(out.size()) >= limit) break;
  }
  return ok(out);
}

api::Response FunctionService::listDeployments(const api::Request& req, const FunctionId& id) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsDeployments)) return *r;
  auto f = functions_.getFunction(req.caller.account, id);
  if (!f) return errorResponse(f.error());
  auto ds = functions_.listDeployments(f->account, f->uuid, options_.keep_deployments);
  if (!ds) return errorResponse(ds.error());
  bj::array out;
  for (const auto& d : *ds) out.push_back(deploymentJson(d, true));
  return ok(out);
}

api::Response FunctionService::restoreDeployment(const api::Request& req, const FunctionId& id,
                                                 const std::string& deployment_uuid) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsRestore)) return *r;
  MutexLock lock(lockFor(id));
  auto f = functions_.getFunction(req.caller.account, id);
  if (!f) return errorResponse(f.error());
  auto ds = functions_.listDeployments(f->account, f->uuid, options_.keep_deployments);
  if (!ds) return errorResponse(ds.error());
  auto it = std::find_if(ds->begin(), ds->end(),
                         [&](const store::Deployment& d) { return d.uuid == deployment_uuid; });
  if (it == ds->end())
    return errorResponse(ErrorCode::kNotFound,
                         fmt::format("deployment {} of function {} does not exist; only the last "
                                     "{} deployments can be restored",
                                     deployment_uuid, id.str(), options_.keep_deployments));
  // Restoring changes the saved code and variables only; it never deploys (§4.2).
  f->code = it->code;
  f->env = it->env;
  f->version += 1;
  f->updated_by = req.caller.login_name;
  f->updated_at = clock_.nowMs();
  f->state = stateAfterSave(*f, runtime_.isDeployed(f->account, f->uuid));
  if (auto s = functions_.updateFunction(*f); !s) return errorResponse(s.error());
  return api::Response{200, functionJson(*f, true)};
}

api::Response FunctionService::getTemplates(const api::Request& req) {
  if (auto r = authorize(req.caller, policy::Action::kFunctionsTemplates)) return *r;
  auto toJson = [](const Template& t) {
    bj::object o;
    o["event"] = t.event;
    o["name"] = t.name;
    o["code"] = t.code;
    o["samplePayload"] = parseOrString(t.sample_payload);
    return o;
  };
  if (auto it = req.query.find("event"); it != req.query.end() && !it->second.empty()) {
    if (!isKnownEvent(it->second))
      return errorResponse(ErrorCode::kNotFound,
                           fmt::format("unknown event '{}'; GET functions/templates lists the "
                                       "templates",
                                       it->second));
    return ok(toJson(templateFor(it->second)));
  }
  bj::array out;
  for (const auto& t : allTemplates()) out.push_back(toJson(t));
  return ok(out);
}

// ---- secrets and allowlist -------------------------------------------------------------------

api::Response FunctionService::handleSecrets(const api::Request& req) {
  const auto& p = req.path;
  const AccountId& acc = req.caller.account;
  if (p.size() == 1 && req.method == "GET") {
    if (auto r = authorize(req.caller, policy::Action::kSecretsList)) return *r;
    auto keys = functions_.listSecretKeys(acc);
    if (!keys) return errorResponse(keys.error());
    bj::array out;
    for (const auto& k : *keys) out.push_back(bj::string(k));
    return ok(bj::object{{"keys", std::move(out)}});
  }
  if (p.size() != 2)
    return errorResponse(ErrorCode::kNotFound,
                         "use GET secrets, GET secrets/audit, PUT secrets/{key} or "
                         "DELETE secrets/{key}");
  const std::string& key = p[1];
  if (key == "audit" && req.method == "GET") return secretAudit(req);
  if (req.method == "PUT") {
    if (auto r = authorize(req.caller, policy::Action::kSecretsPut)) return *r;
    if (auto s = validateSecretKey(key); !s) return errorResponse(s.error());
    auto body = json::parseObject(req.body);
    if (!body) return errorResponse(body.error());
    auto value = json::requireString(*body, "value");
    if (!value) return errorResponse(value.error());
    if (auto s = validateSecretValue(*value); !s) return errorResponse(s.error());
    auto sealed = box_.seal(*value);
    if (!sealed) return errorResponse(sealed.error());
    if (auto s = functions_.putSecret(store::Secret{acc, key, std::move(*sealed), clock_.nowMs()});
        !s)
      return errorResponse(s.error());
    return ok(bj::object{{"key", key}});
  }
  if (req.method == "DELETE") {
    if (auto r = authorize(req.caller, policy::Action::kSecretsDelete)) return *r;
    auto existing = functions_.getSecret(acc, key);
    if (!existing)
      return errorResponse(ErrorCode::kNotFound, fmt::format("secret '{}' does not exist", key));
    if (auto s = functions_.deleteSecret(acc, key); !s) return errorResponse(s.error());
    return api::Response{200, "{}"};
  }
  if (req.method == "GET")
    return errorResponse(ErrorCode::kForbidden,
                         "secret values are never returned; GET secrets lists the keys");
  return errorResponse(ErrorCode::kInvalid,
                       fmt::format("{} is not supported on secrets/{{key}}", req.method));
}

api::Response FunctionService::secretAudit(const api::Request& req) {
  if (auto r = authorize(req.caller, policy::Action::kSecretsAudit)) return *r;
  int limit = options_.default_log_limit;
  if (auto it = req.query.find("limit"); it != req.query.end() && !it->second.empty()) {
    auto v = parseInt64(it->second);
    if (!v || *v < 1 || *v > options_.max_log_limit)
      return errorResponse(
          ErrorCode::kInvalid,
          fmt::format("query 'limit' must be between 1 and {}", options_.max_log_limit));
    limit = static_cast<int>(*v);
  }
  auto entries = functions_.listSecretAudit(req.caller.account, limit);
  if (!entries) return errorResponse(entries.error());
  std::map<std::string, std::string> names;  // function uuid -> name
  if (auto list = functions_.listFunctions(req.caller.account))
    for (const auto& f : *list) names[f.uuid.str()] = f.name;
  bj::array out;
  for (const auto& e : *entries) {
    bj::object o;
    o["timestamp"] = e.ts;
    o["functionUuid"] = e.function.str();
    auto n = names.find(e.function.str());
    o["functionName"] = n == names.end() ? bj::value(nullptr) : bj::value(n->second);
    o["requestId"] = e.request_id;
    bj::object invoker{{"type", store::auditInvokerName(e.invoker)}};
    if (e.invoker == store::AuditInvoker::kUser) {
      invoker["userId"] = e.user.str();
      invoker["loginName"] = e.login_name;
    }
    o["invoker"] = std::move(invoker);
    o["key"] = e.key;
    o["operation"] = store::auditOpName(e.op);
    o["outcome"] = store::auditOutcomeName(e.outcome);
    o["detail"] = e.detail;
    out.push_back(std::move(o));
  }
  return ok(bj::object{{"entries", std::move(out)}});
}

api::Response FunctionService::handleAllowlist(const api::Request& req) {
  if (req.path.size() != 1)
    return errorResponse(ErrorCode::kNotFound, "use GET allowlist or PUT allowlist {domains}");
  const AccountId& acc = req.caller.account;
  if (req.method == "GET") {
    if (auto r = authorize(req.caller, policy::Action::kAllowlistGet)) return *r;
    auto list = functions_.getAllowlist(acc);
    if (!list) return errorResponse(list.error());
    bj::array out;
    for (const auto& d : *list) out.push_back(bj::string(d));
    return ok(bj::object{{"domains", std::move(out)}});
  }
  if (req.method == "PUT") {
    if (auto r = authorize(req.caller, policy::Action::kAllowlistPut)) return *r;
    auto body = json::parseObject(req.body);
    if (!body) return errorResponse(body.error());
    auto arr = json::requireArray(*body, "domains");
    if (!arr) return errorResponse(arr.error());
    std::vector<std::string> domains;
    for (const auto& d : **arr) {
      if (!d.is_string())
        return errorResponse(ErrorCode::kInvalid, "field 'domains' must be an array of strings");
      domains.emplace_back(d.as_string());
    }
    auto valid = validateAllowlist(domains, runtime_.addressPolicy());
    if (!valid) return errorResponse(valid.error());
    if (auto s = functions_.putAllowlist(acc, *valid); !s) return errorResponse(s.error());
    bj::array out;
    for (const auto& d : *valid) out.push_back(bj::string(d));
    return ok(bj::object{{"domains", std::move(out)}});
  }
  return errorResponse(ErrorCode::kInvalid,
                       fmt::format("{} is not supported on allowlist", req.method));
}

// ---- startup and metrics ---------------------------------------------------------------------

Result<int> FunctionService::restoreDeployments() {
  auto accounts = store_.accounts().listAccounts();
  if (!accounts) return std::unexpected(accounts.error());
  int restored = 0;
  for (const auto& a : *accounts) {
    auto list = functions_.listFunctions(a.id);
    if (!list) return std::unexpected(list.error());
    for (auto& f : *list) {
      if (f.state == FunctionState::kDraft || f.state == FunctionState::kDeployError) continue;
      auto ds = functions_.listDeployments(f.account, f.uuid, options_.keep_deployments);
      if (!ds) return std::unexpected(ds.error());
      const store::Deployment* live = liveDeployment(f, *ds);
      if (!live) {
        if (f.state != FunctionState::kBuildError)
          spdlog::warn("functions: {} ({}) is {} but has no deployment to restore", f.name,
                       f.uuid.str(), store::functionStateName(f.state));
        continue;
      }
      Status s = runtime_.deploy(f.account, f.uuid,
                                 DeployedCode{live->code, live->env, live->function_version});
      if (!s) {
        spdlog::error("functions: restoring {} ({}) failed: {}", f.name, f.uuid.str(),
                      s.error().message);
        f.state = FunctionState::kDeployError;
        f.updated_at = clock_.nowMs();
        (void)functions_.updateFunction(f);
        continue;
      }
      ++restored;
    }
  }
  return restored;
}

const store::Deployment* FunctionService::liveDeployment(const store::FunctionRecord& f,
                                                         const std::vector<store::Deployment>& ds) {
  if (f.state == FunctionState::kDraft || f.state == FunctionState::kDeployError) return nullptr;
  if (f.state == FunctionState::kBuildError) {
    // The failed deployment names the one that kept running, if any.
    std::string live_uuid;
    for (const auto& d : ds)
      if (d.state == DeploymentState::kBuildError) {
        if (auto err = json::parseObject(d.error_json))
          live_uuid = json::getString(*err, "liveDeploymentUuid");
        break;
      }
    for (const auto& d : ds)
      if (!live_uuid.empty() && d.uuid == live_uuid) return &d;
    return nullptr;
  }
  for (const auto& d : ds)
    if (d.state == DeploymentState::kProductive) return &d;
  return nullptr;
}

void FunctionService::refreshFunction(const AccountId& account, const FunctionId& id,
                                      std::function<void(Status)> done) {
  if (stopping_) {
    if (done) done(makeError(ErrorCode::kUnavailable, "the function service is stopping"));
    return;
  }
  beginAsync();
  executor_->post([this, account, id, done = std::move(done)] {
    Status s = refreshNow(account, id);
    if (!s)
      spdlog::error("functions: refreshing {} of account {} failed: {}", id.str(), account.str(),
                    s.error().message);
    if (done) done(s);
    endAsync();
  });
}

Status FunctionService::refreshNow(const AccountId& account, const FunctionId& id) {
  MutexLock lock(lockFor(id));
  auto f = functions_.getFunction(account, id);
  if (!f && f.error().code == ErrorCode::kNotFound) {
    runtime_.undeploy(account, id);
    metrics_.erase(account, id);
    return {};
  }
  if (!f) return std::unexpected(f.error());
  auto ds = functions_.listDeployments(f->account, f->uuid, options_.keep_deployments);
  if (!ds) return std::unexpected(ds.error());
  const store::Deployment* live = liveDeployment(*f, *ds);
  if (!live) {
    runtime_.undeploy(account, id);
    return {};
  }
  return runtime_.deploy(account, id, DeployedCode{live->code, live->env, live->function_version});
}

std::string FunctionService::prometheusText() const {
  std::string out = metrics_.prometheusText();
  RuntimeStats s = runtime_.stats();
  out += fmt::format(
      "# HELP parley_functions_deployed Functions deployed in the runtime.\n"
      "# TYPE parley_functions_deployed gauge\n"
      "parley_functions_deployed {}\n"
      "# HELP parley_functions_runtime_invocations_total Finished invocations (all kinds).\n"
      "# TYPE parley_functions_runtime_invocations_total counter\n"
      "parley_functions_runtime_invocations_total {}\n"
      "# HELP parley_functions_runtime_errors_total Invocations that finished with an error.\n"
      "# TYPE parley_functions_runtime_errors_total counter\n"
      "parley_functions_runtime_errors_total {}\n"
      "# HELP parley_functions_runtime_timeouts_total Invocations stopped at their deadline.\n"
      "# TYPE parley_functions_runtime_timeouts_total counter\n"
      "parley_functions_runtime_timeouts_total {}\n"
      "# HELP parley_functions_isolate_restarts_total V8 isolates discarded and recreated.\n"
      "# TYPE parley_functions_isolate_restarts_total counter\n"
      "parley_functions_isolate_restarts_total {}\n"
      "# HELP parley_functions_queue_depth Invocations queued, not started.\n"
      "# TYPE parley_functions_queue_depth gauge\n"
      "parley_functions_queue_depth {}\n"
      "# HELP parley_functions_in_flight Invocations started, not finished.\n"
      "# TYPE parley_functions_in_flight gauge\n"
      "parley_functions_in_flight {}\n",
      s.deployed, s.invocations, s.errors, s.timeouts, s.isolate_restarts, s.queue_depth,
      s.in_flight);
  return out;
}

}  // namespace parley::functions::service
