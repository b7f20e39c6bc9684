#include "functions/service/platform_host.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "common/json.h"
#include "functions/lp_services.h"
#include "functions/validation.h"
#include "store/engagement_attributes.h"

namespace parley::functions::service {

namespace bj = boost::json;

namespace {

// Store namespaces that hold the context service's own bookkeeping. User namespaces may not
// start with "__parley".
constexpr std::string_view kNamespaceRegistry = "__parley.namespaces";
constexpr std::string_view kSessionRegistry = "__parley.sessions";

Status validateNamespaceName(const std::string& ns) {
  if (ns.empty()) return invalid("context service: field 'namespace' is required");
  if (ns.size() > 100)
    return invalid("context service: a namespace name has at most 100 characters");
  if (ns.starts_with("__parley"))
    return invalid(
        fmt::format("context service: namespace '{}' is built in and cannot be used", ns));
  return {};
}

}  // namespace

PlatformHost::PlatformHost(store::FunctionStore& store, crypto::SecretBox box, const Clock& clock,
                           ConversationReader read_conversation, int secret_audit_keep)
    : store_(store),
      box_(std::move(box)),
      clock_(clock),
      read_conversation_(std::move(read_conversation)),
      secret_audit_keep_(secret_audit_keep) {}

Result<std::string> PlatformHost::readSecret(const AccountId& account, const std::string& key) {
  auto s = store_.getSecret(account, key);
  if (!s) {
    if (s.error().code == ErrorCode::kNotFound)
      return notFound(fmt::format("secret '{}' does not exist", key));
    return std::unexpected(s.error());
  }
  auto plain = box_.open(s->ciphertext);
  if (!plain)
    return internalError(
        fmt::format("secret '{}' cannot be decrypted (was the secret key file replaced?)", key));
  return std::move(*plain);
}

Status PlatformHost::updateSecret(const AccountId& account, const std::string& key,
                                  const std::string& value) {
  if (auto v = validateSecretValue(value); !v) return invalid(v.error().message);
  auto existing = store_.getSecret(account, key);
  if (!existing) {
    if (existing.error().code == ErrorCode::kNotFound)
      return notFound(fmt::format(
          "secret '{}' does not exist; functions can only update existing secrets", key));
    return std::unexpected(existing.error());
  }
  auto sealed = box_.seal(value);
  if (!sealed) return std::unexpected(sealed.error());
  store::Secret s{account, key, std::move(*sealed), clock_.nowMs()};
  return store_.putSecret(s);
}

Status PlatformHost::recordSecretAccess(const SecretAccess& access) {
  store::SecretAuditEntry e;
  e.account = access.account;
  e.ts = access.ts ? access.ts : clock_.nowMs();
  e.function = access.function;
  e.request_id = access.request_id;
  e.invoker = access.invoker.kind == InvokerKind::kUser ? store::AuditInvoker::kUser
                                                        : store::AuditInvoker::kPlatform;
  e.user = access.invoker.user;
  e.login_name = access.invoker.login_name;
  e.key = access.key;
  e.op = access.op == SecretOp::kWrite ? store::AuditOp::kWrite : store::AuditOp::kRead;
  e.outcome = access.outcome == SecretOutcome::kRefused ? store::AuditOutcome::kRefused
                                                        : store::AuditOutcome::kAllowed;
  e.detail = access.detail;
  return store_.appendSecretAudit(e, secret_audit_keep_);
}

Result<std::vector<std::string>> PlatformHost::allowlist(const AccountId& account) {
  return store_.getAllowlist(account);
}

Result<std::string> PlatformHost::getConversation(const AccountId& account,
                                                  const std::string& conversation_id) {
  if (!read_conversation_)
    return makeError(ErrorCode::kUnavailable,
                     "conversation reads are not available on this server");
  return read_conversation_(account, conversation_id);
}

Result<std::string> PlatformHost::contextCall(const AccountId& account, const std::string& op,
                                              const std::string& args_json) {
  auto args = json::parseObject(args_json.empty() ? "{}" : args_json);
  if (!args) return std::unexpected(args.error());
  const TimeMs now = clock_.nowMs();
  const std::string registry(kNamespaceRegistry);
  const std::string sessions_ns(kSessionRegistry);

  if (op == "getListOfNamespaces") {
    auto list = store_.listContextProperties(account, registry, "");
    if (!list) return std::unexpected(list.error());
    bj::array out;
    for (const auto& p : *list) {
      auto v = json::parse(p.value_json);
      if (v) out.push_back(std::move(*v));
    }
    return json::dump(out);
  }

  std::string ns = json::getString(*args, "namespace");
  if (auto v = validateNamespaceName(ns); !v) return std::unexpected(v.error());

  // The namespace's registry entry, if any.
  auto registered = store_.listContextProperties(account, registry, "");
  if (!registered) return std::unexpected(registered.error());
  std::optional<bj::object> ns_info;
  for (const auto& p : *registered)
    if (p.name == ns)
      if (auto v = json::parseObject(p.value_json)) ns_info = std::move(*v);

  if (op == "createNamespace") {
    auto ttl = json::optInt(*args, "ttl");
    if (!ttl) return std::unexpected(ttl.error());
    if (*ttl && **ttl <= 0)
      return invalid("context service: ttl must be a positive number of seconds");
    bj::object info;
    info["name"] = ns;
    info["createdAt"] = ns_info ? json::getInt(*ns_info, "createdAt", now) : now;
    if (*ttl) info["ttlSecond"] = **ttl;
    store::ContextProperty p{account, registry, "", ns, json::dump(info), 0};
    if (auto s = store_.putContextProperty(p); !s) return std::unexpected(s.error());
    return json::dump(info);
  }
  if (!ns_info)
    return notFound(fmt::format(
        "context service: namespace '{}' does not exist; create it with createNamespace", ns));
  const std::int64_t ttl_s = json::getInt(*ns_info, "ttlSecond", 0);
  const TimeMs expires_at = ttl_s > 0 ? now + ttl_s * 1000 : 0;
  std::string session = json::getString(*args, "sessionId", kDefaultContextSession);
  if (session.empty()) session = std::string(kDefaultContextSession);

  auto listSessions = [&]() -> Result<std::vector<std::string>> {
    auto list = store_.listContextProperties(account, sessions_ns, ns);
    if (!list) return std::unexpected(list.error());
    std::vector<std::string> out;
    for (const auto& p : *list) out.push_back(p.name);
    return out;
  };
  auto clearSession = [&](const std::string& sid) -> Status {
    auto props = store_.listContextProperties(account, ns, sid);
    if (!props) return std::unexpected(props.error());
    for (const auto& p : *props)
      if (auto s = store_.deleteContextProperties(account, ns, sid, p.name); !s) return s;
    return {};
  };
  auto readSession = [&]() -> Result<bj::object> {
    auto props = store_.listContextProperties(account, ns, session);
    if (!props) return std::unexpected(props.error());
    bj::object out;
    for (const auto& p : *props) {
      auto v = json::parse(p.value_json);
      out[p.name] = v ? std::move(*v) : bj::value(nullptr);
    }
    return out;
  };

  if (op == "deleteNamespace") {
    auto sids = listSessions();
    if (!sids) return std::unexpected(sids.error());
    for (const auto& sid : *sids) {
      if (auto s = clearSession(sid); !s) return std::unexpected(s.error());
      if (auto s = store_.deleteContextProperties(account, sessions_ns, ns, sid); !s)
        return std::unexpected(s.error());
    }
    if (auto s = store_.deleteContextProperties(account, registry, "", ns); !s)
      return std::unexpected(s.error());
    return std::string("null");
  }
  if (op == "set" || op == "update") {
    auto props = json::requireObject(*args, "properties");
    if (!props) return std::unexpected(props.error());
    if (op == "set")
      if (auto s = clearSession(session); !s) return std::unexpected(s.error());
    for (const auto& [k, v] : **props) {
      store::ContextProperty p{account, ns, session, std::string(k), json::dump(v), expires_at};
      if (auto s = store_.putContextProperty(p); !s) return std::unexpected(s.error());
    }
    store::ContextProperty marker{account, sessions_ns, ns, session, "true", expires_at};
    if (auto s = store_.putContextProperty(marker); !s) return std::unexpected(s.error());
    return std::string("null");
  }
  if (op == "getAll") {
    auto all = readSession();
    if (!all) return std::unexpected(all.error());
    return json::dump(*all);
  }
  if (op == "getSelected") {
    auto all = readSession();
    if (!all) return std::unexpected(all.error());
    auto names = json::requireArray(*args, "names");
    if (!names) return std::unexpected(names.error());
    bj::object out;
    for (const auto& n : **names)
      if (n.is_string())
        if (auto* v = all->if_contains(n.as_string())) out[n.as_string()] = *v;
    return json::dump(out);
  }
  if (op == "get") {
    auto name = json::requireString(*args, "name");
    if (!name) return std::unexpected(name.error());
    auto all = readSession();
    if (!all) return std::unexpected(all.error());
    auto* v = all->if_contains(*name);
    return v ? json::dump(*v) : std::string("null");
  }
  if (op == "deleteProperty") {
    auto name = json::requireString(*args, "name");
    if (!name) return std::unexpected(name.error());
    if (auto s = store_.deleteContextProperties(account, ns, session, *name); !s)
      return std::unexpected(s.error());
    return std::string("null");
  }
  if (op == "deleteSession") {
    if (auto s = clearSession(session); !s) return std::unexpected(s.error());
    if (auto s = store_.deleteContextProperties(account, sessions_ns, ns, session); !s)
      return std::unexpected(s.error());
    return std::string("null");
  }
  if (op == "getListOfSessions") {
    auto sids = listSessions();
    if (!sids) return std::unexpected(sids.error());
    bj::array out;
    for (const auto& sid : *sids) out.push_back(bj::string(sid));
    return json::dump(out);
  }
  return invalid(fmt::format("context service: unknown operation '{}'", op));
}

void PlatformHost::setLocalApi(LocalApi api) {
  MutexLock lock(local_api_mu_);
  local_api_ = std::make_shared<const LocalApi>(std::move(api));
}

void PlatformHost::setConversationFacts(ConversationFactsReader read) {
  MutexLock lock(local_api_mu_);
  facts_ = std::make_shared<const ConversationFactsReader>(std::move(read));
}

std::shared_ptr<const LocalApi> PlatformHost::localApi() {
  MutexLock lock(local_api_mu_);
  return local_api_;
}

std::shared_ptr<const ConversationFactsReader> PlatformHost::factsReader() {
  MutexLock lock(local_api_mu_);
  return facts_;
}

Result<std::string> PlatformHost::platformCall(const PlatformCall& call) {
  if (call.op == "lp") return lpCall(call);
  if (call.op == "sdes.add") return addSdesCall(call);
  if (call.op == "gdpr.replaceFiles") return replaceFilesCall(call);
  return invalid(fmt::format("unknown platform operation '{}'", call.op));
}

namespace {

// The visitor ids a conversationContext carries: `visitorId` / `sharkVisitorId`, top level or
// under `visitor`.
std::vector<std::string> contextVisitorIds(const std::string& context_json) {
  std::vector<std::string> out;
  auto ctx = json::parseObject(context_json);
  if (!ctx) return out;
  auto collect = [&out](const bj::object& o) {
    for (const char* k : {"visitorId", "sharkVisitorId"}) {
      std::string v = json::getString(o, k);
      if (!v.empty()) out.push_back(std::move(v));
    }
  };
  collect(*ctx);
  if (auto v = ctx->find("visitor"); v != ctx->end() && v->value().is_object())
    collect(v->value().as_object());
  return out;
}

}  // namespace

Result<std::string> PlatformHost::addSdesCall(const PlatformCall& call) {
  auto args = json::parseObject(call.args_json);
  if (!args) return std::unexpected(args.error());
  const std::string visitor = json::getString(*args, "visitorId");
  const std::string session = json::getString(*args, "sessionId");
  if (visitor.empty() || session.empty())
    return invalid("addSDEs needs visitorId (the consumer id) and sessionId (the conversation id)");
  const bj::value* sdes = args->if_contains("sdes");
  if (!sdes) return invalid("addSDEs needs sdes, an array of engagement attributes");
  if (auto st = store::checkSdes(*sdes); !st)
    return makeError(st.error().code, "addSDEs: " + st.error().message);
  auto read = factsReader();
  if (!read || !*read)
    return makeError(ErrorCode::kUnavailable, "addSDEs: conversations are not available here");
  auto facts = (*read)(call.account, session);
  if (!facts) {
    if (facts.error().code == ErrorCode::kNotFound)
      return notFound(fmt::format(
          "addSDEs: sessionId '{}' is not a conversation of this account (in Parley the session "
          "is the conversation: pass the conversation id, e.g. the bot input's convId)",
          session));
    return std::unexpected(facts.error());
  }
  auto visitors = contextVisitorIds(facts->context_json);
  if (visitor != facts->consumer_id &&
      std::find(visitors.begin(), visitors.end(), visitor) == visitors.end())
    return invalid(fmt::format(
        "addSDEs: visitorId '{}' is not the visitor of conversation {} (pass its consumer id{})",
        visitor, session,
        visitors.empty() ? std::string()
                         : " or the visitor id of its conversationContext, '" + visitors[0] + "'"));
  if (auto st = store::appendReportedSdes(store_, call.account, ConversationId(session),
                                          sdes->as_array(), clock_.nowMs());
      !st)
    return makeError(st.error().code, "addSDEs: " + st.error().message);
  return std::string("null");
}

Result<std::string> PlatformHost::replaceFilesCall(const PlatformCall& call) {
  constexpr std::string_view kWho = "GDPRUtil.replaceConversationFiles";
  auto args = json::parseObject(call.args_json);
  if (!args) return std::unexpected(args.error());
  const std::string conv = json::getString(*args, "conversationId");
  const std::string username = json::getString(*args, "username");
  const std::string password = json::getString(*args, "password");
  if (conv.empty()) return invalid(fmt::format("{}: the conversation has no id", kWho));
  if (username.empty() || password.empty())
    return invalid(fmt::format("{} needs credentials {{username, password}}", kWho));
  std::vector<std::string> paths;
  if (auto* p = args->if_contains("paths"); p && p->is_array()) {
    for (const auto& v : p->as_array()) {
      if (!v.is_string()) return invalid(fmt::format("{}: file paths must be strings", kWho));
      paths.emplace_back(v.as_string());
    }
  }
  auto read = factsReader();
  auto api = localApi();
  if (!read || !*read || !api || !*api)
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("{}: conversations and logins are not available here", kWho));
  auto facts = (*read)(call.account, conv);
  if (!facts) {
    if (facts.error().code == ErrorCode::kNotFound)
      return notFound(fmt::format("{}: no conversation '{}' in this account", kWho, conv));
    return std::unexpected(facts.error());
  }

  // The credentials: the server's own login (password check, throttle), then logged out.
  LocalApiRequest login;
  login.method = "POST";
  login.target = fmt::format("/api/account/{}/login?v=1.3", call.account.str());
  login.headers.emplace_back("content-type", "application/json");
  login.body = json::dump(bj::object{{"username", username}, {"password", password}});
  login.remote_address = "function:" + call.account.str();
  auto res = (*api)(std::move(login));
  if (!res) return std::unexpected(res.error());
  auto body = json::parseObject(res->body);
  std::string why = body ? json::getString(*body, "error") : std::string();
  if (res->status == 401 || res->status == 403)
    return makeError(ErrorCode::kUnauthorized,
                     fmt::format("{}: the credentials were refused ({})", kWho, why));
  if (res->status == 429)
    return makeError(
        ErrorCode::kLimitExceeded,
        fmt::format("{}: too many failed logins for these credentials; retry later ({})", kWho,
                    why));
  if (res->status != 200 || !body)
    return makeError(
        ErrorCode::kUnavailable,
        fmt::format("{}: the login failed with status {} ({})", kWho, res->status, why));
  const std::string bearer = json::getString(*body, "bearer");
  std::vector<std::string> roles;
  if (auto* c = body->if_contains("config"); c && c->is_object())
    if (auto* r = c->as_object().if_contains("roles"); r && r->is_array())
      for (const auto& x : r->as_array())
        if (x.is_string()) roles.emplace_back(x.as_string());
  LocalApiRequest logout;
  logout.method = "POST";
  logout.target = fmt::format("/api/account/{}/logout", call.account.str());
  logout.headers.emplace_back("authorization", "Bearer " + bearer);
  logout.remote_address = "function:" + call.account.str();
  (void)(*api)(std::move(logout));
  if (std::find(roles.begin(), roles.end(), "ADMIN") == roles.end()) {
    std::string list;
    for (const auto& r : roles) list += (list.empty() ? "" : ", ") + r;
    return makeError(ErrorCode::kForbidden,
                     fmt::format("{}: user '{}' has roles [{}]; replacing a conversation's files "
                                 "needs ADMIN",
                                 kWho, username, list));
  }

  for (const auto& p : paths)
    if (std::find(facts->files.begin(), facts->files.end(), p) == facts->files.end())
      return invalid(fmt::format("{}: '{}' is not a file of conversation {}", kWho, p, conv));
  if (!paths.empty())
    return makeError(
        ErrorCode::kUnavailable,
        fmt::format("{} cannot replace files in Parley: Parley keeps no file storage, so the {} "
                    "hosted file(s) conversation {} refers to ({}{}) were never stored here and "
                    "cannot be replaced; remove them where the consumer's client uploaded them",
                    kWho, paths.size(), conv, paths[0], paths.size() > 1 ? ", ..." : ""));
  return std::string("[]");
}

Result<std::string> PlatformHost::lpCall(const PlatformCall& call) {
  auto args = json::parseObject(call.args_json);
  if (!args) return std::unexpected(args.error());
  const std::string service = json::getString(*args, "service");
  const std::string method = json::getString(*args, "method", "GET");
  const std::string path = json::getString(*args, "path");
  const std::string body = json::getString(*args, "body");
  std::string secret_name = json::getString(*args, "appKeySecretName");
  if (secret_name.empty()) secret_name = std::string(kDefaultLpAppKeySecret);
  auto target = checkLpRequest(call.account, service, method, path, body.size());
  if (!target) return std::unexpected(target.error());

  // The credentials: read and recorded like a SecretClient read by this invocation.
  SecretAccess access;
  access.account = call.account;
  access.function = call.function;
  access.request_id = call.request_id;
  access.invoker = call.invoker;
  access.key = secret_name;
  access.op = SecretOp::kRead;
  access.ts = clock_.nowMs();
  auto value = readSecret(call.account, secret_name);
  if (!value) access.detail = "LpClient: " + value.error().message;
  if (auto s = recordSecretAccess(access); !s)
    return makeError(ErrorCode::kUnavailable,
                     "LpClient: the read of its secret could not be recorded, so the request "
                     "was not made; retry later (" +
                         s.error().message + ")");
  if (!value) {
    if (value.error().code == ErrorCode::kNotFound)
      return notFound(fmt::format(
          "LpClient needs secret '{}' holding an API key of this account (create one with POST "
          "apikeys, then PUT secrets/{}); it does not exist",
          secret_name, secret_name));
    return std::unexpected(value.error());
  }
  auto key = lpApiKeyFromSecret(secret_name, *value);
  if (!key) return std::unexpected(key.error());

  std::shared_ptr<const LocalApi> api;
  {
    MutexLock lock(local_api_mu_);
    api = local_api_;
  }
  if (!api || !*api)
    return makeError(ErrorCode::kUnavailable, "LpClient: the server's API is not available here");
  LocalApiRequest req;
  req.method = method;
  req.target = std::move(*target);
  req.headers.emplace_back("authorization", "Bearer " + *key);
  req.headers.emplace_back("user-agent", "LP-Lambda-" + call.function.str());
  if (!body.empty()) req.headers.emplace_back("content-type", "application/json");
  req.body = body;
  auto res = (*api)(std::move(req));
  if (!res) return std::unexpected(res.error());
  bj::object out{{"statusCode", res->status},
                 {"headers", bj::object{{"content-type", res->content_type}}},
                 {"body", res->body}};
  return json::dump(out);
}

}  // namespace parley::functions::service
