#include "server/http_app.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>

#include "common/json.h"
#include "common/policy.h"

namespace parley::server {
namespace {

namespace bj = boost::json;

HttpResponse jsonResponse(int status, const bj::value& v, std::string route) {
  HttpResponse r;
  r.status = status;
  r.body = bj::serialize(v);
  r.route = std::move(route);
  return r;
}

HttpResponse restError(const Error& e, std::string route) {
  api::Response a = errorResponse(e);
  HttpResponse r;
  r.status = a.status;
  r.body = std::move(a.body);
  r.route = std::move(route);
  return r;
}

HttpResponse restError(ErrorCode code, std::string message, std::string route) {
  return restError(Error{code, std::move(message)}, std::move(route));
}

// LivePerson's login service answers errors as {"error":"<text>"} (the SDK shows the string).
HttpResponse loginError(int status, const std::string& message, std::string route) {
  return jsonResponse(status, bj::object{{"error", message}}, std::move(route));
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool validAccountId(const std::string& acc) {
  if (acc.empty() || acc.size() > 64) return false;
  for (char c : acc)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  return true;
}

constexpr const char* kCookie = "session_id";

}  // namespace

std::string cookieValue(const std::string& header, const std::string& name) {
  std::size_t i = 0;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ';')) ++i;
    auto eq = header.find('=', i);
    auto end = header.find(';', i);
    if (end == std::string::npos) end = header.size();
    if (eq != std::string::npos && eq < end && header.substr(i, eq - i) == name)
      return header.substr(eq + 1, end - eq - 1);
    i = end + 1;
  }
  return {};
}

std::string authToken(const std::string& authorization, const std::string& scheme) {
  auto sp = authorization.find(' ');
  if (sp == std::string::npos) return {};
  if (lower(authorization.substr(0, sp)) != lower(scheme)) return {};
  std::string t = authorization.substr(sp + 1);
  while (!t.empty() && t.front() == ' ') t.erase(t.begin());
  while (!t.empty() && t.back() == ' ') t.pop_back();
  return t;
}

App::App(AppDeps deps) : deps_(std::move(deps)) {}

Status App::addHandler(std::shared_ptr<api::Handler> handler) {
  for (const auto& r : handler->resources()) {
    if (isCoreResource(r)) return conflict(fmt::format("resource '{}' is owned by the server", r));
    for (const auto& h : handlers_)
      for (const auto& o : h->resources())
        if (o == r) return conflict(fmt::format("resource '{}' already has a handler", r));
  }
  handlers_.push_back(std::move(handler));
  return {};
}

void App::setPublicHost(std::string host_port) {
  MutexLock lock(mu_);
  public_host_ = std::move(host_port);
}

std::string App::publicHost(const HttpRequest& req) const {
  MutexLock lock(mu_);
  return public_host_.empty() ? req.local_host : public_host_;
}

void App::handle(HttpRequest req, HttpDone done) {
  // Path segments and query parameters are percent-decoded bytes that responses may echo (an
  // error naming a missing id); JSON must be UTF-8, so anything else is refused here.
  bool utf8 = true;
  for (const auto& seg : req.segments) utf8 = utf8 && json::isValidUtf8(seg);
  for (const auto& [k, v] : req.query) utf8 = utf8 && json::isValidUtf8(k) && json::isValidUtf8(v);
  if (!utf8)
    return done(restError(ErrorCode::kInvalid,
                          "the request path and query must be UTF-8: percent-encode the UTF-8 "
                          "bytes of each character",
                          "invalid_path"));
  const auto& s = req.segments;
  if (s.size() == 1 && s[0] == "healthz") {
    if (unhealthy_)
      if (auto reason = unhealthy_())
        return done(jsonResponse(503, bj::object{{"status", "unavailable"}, {"reason", *reason}},
                                 "healthz"));
    return done(jsonResponse(200, bj::object{{"status", "ok"}}, "healthz"));
  }
  if (s.size() == 1 && s[0] == "metrics") return metrics(req, std::move(done));
  if (s.size() >= 4 && s[0] == "api" && s[1] == "account") {
    const std::string& acc = s[2];
    if (!validAccountId(acc))
      return done(restError(ErrorCode::kInvalid, "the account id is malformed", "lp"));
    if (s.size() == 5 && s[3] == "service" && s[4] == "baseURI.json" && req.method == "GET")
      return csds(req, acc, std::move(done));
    if (s.size() == 4 && req.method == "POST") {
      if (s[3] == "login") return login(req, acc, std::move(done));
      if (s[3] == "refresh") return refresh(req, acc, std::move(done));
      if (s[3] == "logout") return logout(req, acc, std::move(done));
      if (s[3] == "signup") return signup(req, acc, std::move(done));
    }
    if (s.size() == 5 && s[3] == "anonymous" && s[4] == "authorize" && req.method == "POST")
      return signup(req, acc, std::move(done));
    if (s.size() == 5 && s[3] == "oauth" && s[4] == "token")
      return oauthToken(std::move(req), acc, std::move(done));
    if (s.size() >= 5 && (s[3] == "lambdas" || s[3] == "events"))
      return gateway(std::move(req), std::move(done));
    return done(restError(ErrorCode::kNotFound,
                          fmt::format("no route {} {}", req.method, req.target), "lp"));
  }
  if (s.size() >= 4 && s[0] == "api" && s[1] == "v1" && s[2] == "accounts")
    return restV1(std::move(req), std::move(done));
  if (!s.empty() && s[0] == "ws_api")
    return done(restError(ErrorCode::kInvalid,
                          "this is a WebSocket endpoint: connect with a WebSocket client", "ws"));
  if (!s.empty() && s[0] == "api")
    return done(restError(ErrorCode::kNotFound,
                          fmt::format("no route {} {}; see API.md", req.method, req.target),
                          "api"));
  if (req.method != "GET" && req.method != "HEAD")
    return done(restError(ErrorCode::kNotFound,
                          fmt::format("no route {} {}", req.method, req.target), "static"));
  deps_.rest.blocking.run([this, segs = req.segments, done = std::move(done)] {
    done(deps_.static_files.serve(segs));
  });
}

void App::metrics(const HttpRequest& req, HttpDone done) {
  const MetricsAccess& access = deps_.metrics_access;
  if (access.token.empty())
    return done(restError(ErrorCode::kForbidden,
                          "metrics are off; start parley serve with --metrics-token <token> (or "
                          "PARLEY_METRICS_TOKEN) and send Authorization: Bearer <token>",
                          "metrics"));
  std::string token = authToken(req.header("authorization"), "Bearer");
  // Constant time in the token's bytes: the comparison does not tell how much of it matched.
  if (token.size() != access.token.size() ||
      sodium_memcmp(token.data(), access.token.data(), token.size()) != 0)
    return done(restError(ErrorCode::kUnauthorized,
                          "GET /metrics needs Authorization: Bearer <the server's metrics token>",
                          "metrics"));
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = deps_.metrics.text();
  if (access.tenant_labels == TenantLabels::kSummed) r.body = sumTenantLabels(r.body);
  r.route = "metrics";
  r.headers.emplace_back("Cache-Control", "no-store");
  done(std::move(r));
}

// ------------------------------------------------------------------------ LivePerson endpoints

void App::csds(const HttpRequest& req, const std::string& acc, HttpDone done) {
  std::string host = publicHost(req);
  deps_.rest.blocking.run([this, acc, host, done = std::move(done)] {
    auto a = deps_.rest.store.accounts().getAccount(AccountId(acc));
    if (!a) {
      // The SDK crashes on a body without baseURIs: always include the array.
      bj::object body{
          {"baseURIs", bj::array{}},
          {"error", bj::object{{"code", errorCodeName(a.error().code)},
                               {"message", fmt::format("account {} does not exist", acc)}}}};
      return done(jsonResponse(a.error().code == ErrorCode::kNotFound ? 404 : 503, body, "csds"));
    }
    bj::array uris;
    for (const char* svc : {"agentVep", "asyncMessagingEnt", "asyncMessaging", "idp", "faasUI",
                            "faasGW", "sentinel", "leAuthentication", "accountConfigReadOnly"}) {
      uris.emplace_back(bj::object{{"service", svc}, {"account", acc}, {"baseURI", host}});
    }
    done(jsonResponse(200, bj::object{{"baseURIs", std::move(uris)}}, "csds"));
  });
}

void App::login(const HttpRequest& req, const std::string& acc, HttpDone done) {
  auto body = json::parseObject(req.body);
  if (!body)
    return done(
        loginError(400, "the login body must be JSON {\"username\",\"password\"}", "login"));
  std::string username = json::getString(*body, "username");
  std::string password = json::getString(*body, "password");
  if (username.empty() || password.empty())
    return done(loginError(400,
                           "username and password are required (SAML and OAuth1 logins are not "
                           "supported)",
                           "login"));
  if (username.size() > 200 || password.size() > 1000)
    return done(
        loginError(400, "username (at most 200) or password (at most 1000) is too long", "login"));
  bool tls = req.tls;
  deps_.rest.auth.login(
      AccountId(acc), std::move(username), std::move(password), req.remote_address,
      deps_.rest.blocking, [this, acc, tls, done = std::move(done)](LoginOutcome outcome) {
        if (!outcome.result) {
          const Error& e = outcome.result.error();
          int status = e.code == ErrorCode::kUnauthorized ? 401 : httpStatus(e.code);
          HttpResponse res = loginError(status, e.message, "login");
          if (outcome.retry_after)
            res.headers.emplace_back("Retry-After", std::to_string(outcome.retry_after->count()));
          return done(std::move(res));
        }
        LoginResult& r = *outcome.result;
        deps_.rest.directory.put(r.user);
        bj::array roles;
        for (auto role : r.user.roles) roles.emplace_back(store::roleName(role));
        bj::object config{{"userId", r.user.id.str()},
                          {"userPid", r.user.pid},
                          {"loginName", r.user.login_name},
                          {"accountId", acc},
                          {"userTypeId", r.user.type == store::UserType::kBot ? 2 : 1},
                          {"userType", store::userTypeName(r.user.type)},
                          {"roles", std::move(roles)},
                          {"serverCurrentTime", deps_.rest.clock.nowMs()}};
        bj::object out{
            {"bearer", r.bearer},
            {"csrf", r.session.csrf},
            {"sessionTTl", std::to_string(deps_.rest.auth.options().session_ttl_ms / 1000)},
            {"config", std::move(config)},
            {"accountData", bj::object{}}};
        HttpResponse res = jsonResponse(200, out, "login");
        res.headers.emplace_back("Set-Cookie",
                                 fmt::format("{}={}; Path=/; HttpOnly; SameSite=Strict{}", kCookie,
                                             r.bearer, tls ? "; Secure" : ""));
        res.headers.emplace_back("Cache-Control", "no-store");
        done(std::move(res));
      });
}

void App::refresh(const HttpRequest& req, const std::string& acc, HttpDone done) {
  auto body = json::parseObject(req.body.empty() ? "{}" : req.body);
  std::string csrf = body ? json::getString(*body, "csrf") : "";
  std::string bearer = cookieValue(req.header("cookie"), kCookie);
  if (bearer.empty()) bearer = authToken(req.header("authorization"), "Bearer");
  deps_.rest.blocking.run([this, acc, csrf, bearer, done = std::move(done)] {
    auto r = deps_.rest.auth.refresh(AccountId(acc), bearer, csrf);
    if (!r) {
      int status = r.error().code == ErrorCode::kUnauthorized ? 401 : httpStatus(r.error().code);
      return done(loginError(status, r.error().message, "refresh"));
    }
    done(jsonResponse(
        200,
        bj::object{{"sessionTTl", std::to_string(deps_.rest.auth.options().session_ttl_ms / 1000)}},
        "refresh"));
  });
}

void App::logout(const HttpRequest& req, const std::string& acc, HttpDone done) {
  std::string bearer = authToken(req.header("authorization"), "Bearer");
  if (bearer.empty()) bearer = cookieValue(req.header("cookie"), kCookie);
  deps_.rest.blocking.run([this, acc, bearer, done = std::move(done)] {
    auto r = deps_.rest.auth.logout(AccountId(acc), bearer);
    if (!r) {
      int status = r.error().code == ErrorCode::kUnauthorized ? 401 : httpStatus(r.error().code);
      return done(loginError(status, r.error().message, "logout"));
    }
    deps_.session.hub.revokeBearer(bearer);
    HttpResponse res = jsonResponse(200, bj::object{}, "logout");
    res.headers.emplace_back("Set-Cookie", fmt::format("{}=; Path=/; Max-Age=0", kCookie));
    done(std::move(res));
  });
}

void App::signup(const HttpRequest&, const std::string& acc, HttpDone done) {
  deps_.rest.blocking.run([this, acc, done = std::move(done)] {
    auto jwt = deps_.rest.auth.signupConsumer(AccountId(acc));
    if (!jwt) return done(restError(jwt.error(), "signup"));
    done(jsonResponse(200, bj::object{{"jwt", *jwt}}, "signup"));
  });
}

// ------------------------------------------------------------------------ OAuth token endpoint

namespace {

// An answer of the token endpoint: never cached (RFC 6749 §5.1).
HttpResponse oauthResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.route = "oauth_token";
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Pragma", "no-cache");
  return r;
}

HttpResponse oauthErrorResponse(const OAuthError& e) {
  HttpResponse r = oauthResponse(e.status, oauthErrorJson(e));
  if (e.retry_after) r.headers.emplace_back("Retry-After", std::to_string(e.retry_after->count()));
  if (e.basic_challenge) r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"parley\"");
  return r;
}

}  // namespace

void App::oauthToken(HttpRequest req, const std::string& acc, HttpDone done) {
  if (req.method != "POST") {
    OAuthError e{405, "invalid_request", "the token endpoint takes POST"};
    HttpResponse r = oauthErrorResponse(e);
    r.headers.emplace_back("Allow", "POST");
    return done(std::move(r));
  }
  auto parsed = parseTokenRequest(req.header("content-type"), req.body, req.header("authorization"),
                                  req.query);
  if (!parsed) return done(oauthErrorResponse(parsed.error()));
  deps_.rest.blocking.run([this, acc, address = req.remote_address, request = std::move(*parsed),
                           done = std::move(done)] {
    auto issued = deps_.rest.oauth.issueToken(AccountId(acc), request, address);
    if (!issued) return done(oauthErrorResponse(issued.error()));
    done(oauthResponse(200, issuedTokenJson(*issued)));
  });
}

// ------------------------------------------------------------------------- functions gateway

namespace {

// LivePerson's gateway error body, {"errorCode","errorMsg"}.
HttpResponse gatewayError(int status, std::string_view code, const std::string& message) {
  return jsonResponse(status, bj::object{{"errorCode", code}, {"errorMsg", message}}, "gateway");
}

}  // namespace

void App::setGateway(std::shared_ptr<api::Handler> gateway) { gateway_ = std::move(gateway); }

void App::setHealthCheck(std::function<std::optional<std::string>()> unhealthy) {
  unhealthy_ = std::move(unhealthy);
}

void App::gateway(HttpRequest req, HttpDone done) {
  if (!gateway_)
    return done(gatewayError(404, "com.liveperson.faas.es.general",
                             "this server runs no functions gateway"));
  std::string token = authToken(req.header("authorization"), "Bearer");
  if (token.empty())
    return done(gatewayError(401, "com.liveperson.faas.es.unauthorized",
                             "send Authorization: Bearer <token>: an OAuth access token (scope "
                             "faas.lambda.invoke), or the bearer or API key of a user with the "
                             "FAAS_INVOCATION role"));
  // A token verified a moment ago is dispatched here, on the io thread: no blocking-pool hop and
  // no store read (Auth's verified-token cache; revocations drop it at once).
  if (auto cached = deps_.rest.auth.cachedPrincipal(token))
    return dispatchGateway(*cached, std::move(req), std::move(done));
  deps_.rest.blocking.run(
      [this, token = std::move(token), req = std::move(req), done = std::move(done)]() mutable {
        const std::uint64_t generation = deps_.rest.auth.credentialsGeneration();
        // Access tokens are accepted here and nowhere else; Auth refuses them.
        auto principal = OAuth::isAccessToken(token) ? deps_.rest.oauth.authenticate(token)
                                                     : deps_.rest.auth.authenticate(token);
        if (!principal) {
          bool unauthorized = principal.error().code == ErrorCode::kUnauthorized;
          return done(gatewayError(unauthorized ? 401 : httpStatus(principal.error().code),
                                   unauthorized ? "com.liveperson.faas.es.unauthorized"
                                                : "com.liveperson.faas.es.general",
                                   principal.error().message));
        }
        deps_.rest.auth.rememberPrincipal(token, *principal, generation);
        dispatchGateway(*principal, std::move(req), std::move(done));
      });
}

void App::dispatchGateway(const Principal& principal, HttpRequest req, HttpDone done) {
  const std::string& acc = req.segments[2];
  if (principal.user.account.str() != acc)
    return done(gatewayError(403, "com.liveperson.faas.es.forbidden",
                             fmt::format("your token belongs to account {}, not {}",
                                         principal.user.account.str(), acc)));
  api::Request ar;
  ar.method = std::move(req.method);
  ar.path.assign(std::make_move_iterator(req.segments.begin() + 3),
                 std::make_move_iterator(req.segments.end()));
  ar.query = std::move(req.query);
  ar.body = std::move(req.body);
  ar.caller = principal.caller();
  auto finish = [done](api::Response r) {
    HttpResponse h;
    h.status = r.status;
    h.body = std::move(r.body);
    h.headers = std::move(r.headers);
    h.route = "gateway";
    done(std::move(h));
  };
  try {
    gateway_->handle(std::move(ar), std::move(finish));
  } catch (const std::exception& ex) {
    spdlog::error("functions gateway threw: {}", ex.what());
    done(gatewayError(500, "com.liveperson.faas.es.general", "internal error"));
  }
}

// ---------------------------------------------------------------------------------- REST v1

void App::restV1(HttpRequest req, HttpDone done) {
  const std::string acc = req.segments[3];
  std::string token = authToken(req.header("authorization"), "Bearer");
  if (req.segments.size() < 5)
    return done(restError(ErrorCode::kNotFound,
                          "name a resource: /api/v1/accounts/{acc}/<skills|users|conversations|"
                          "functions|secrets|allowlist|bots|richcontent>",
                          "rest_v1"));
  deps_.rest.blocking.run([this, acc, token, req = std::move(req),
                           done = std::move(done)]() mutable {
    auto principal = deps_.rest.auth.authenticate(token);
    if (!principal) return done(restError(principal.error(), "rest_v1"));
    if (principal->user.account.str() != acc)
      return done(restError(ErrorCode::kForbidden,
                            fmt::format("your login belongs to account {}, not {}",
                                        principal->user.account.str(), acc),
                            "rest_v1"));
    api::Request ar;
    ar.method = req.method;
    ar.path.assign(req.segments.begin() + 4, req.segments.end());
    ar.query = req.query;
    ar.body = std::move(req.body);
    ar.caller = principal->caller();
    const std::string first = ar.path[0];
    std::string route = "rest_" + first;
    // The route's rule decides before any handler runs (docs/authorization.md).
    auto match = policy::matchRoute(ar.method, ar.path);
    if (!match.action) {
      std::string path = fmt::format("{}", fmt::join(ar.path, "/"));
      if (!match.methods.empty())
        return done(restError(
            ErrorCode::kInvalid,
            fmt::format("{} is not supported on {}; use {}", ar.method, path, match.methods),
            route));
      if (!isCoreResource(first) && !hasHandler(first))
        return done(restError(
            ErrorCode::kNotFound,
            fmt::format("unknown resource '{}'; this server provides: {}", first, knownResources()),
            "rest_v1"));
      return done(
          restError(ErrorCode::kNotFound,
                    fmt::format("no route {} {}; the routes are listed in docs/authorization.md",
                                ar.method, path),
                    route));
    }
    if (auto st = policy::authorize(ar.caller.subject(), *match.action); !st)
      return done(restError(st.error(), route));
    auto finish = [done, route](api::Response r) {
      HttpResponse h;
      h.status = r.status;
      h.body = std::move(r.body);
      h.route = route;
      if (h.body.empty() && h.status != 204) h.body = "{}";
      done(std::move(h));
    };
    if (isCoreResource(first))
      return handleCoreRest(deps_.rest, *principal, std::move(ar), std::move(finish));
    for (const auto& h : handlers_) {
      for (const auto& r : h->resources()) {
        if (r != first) continue;
        try {
          h->handle(std::move(ar), std::move(finish));
        } catch (const std::exception& ex) {
          spdlog::error("REST handler for '{}' threw: {}", first, ex.what());
          done(restError(ErrorCode::kInternal, "internal error", route));
        }
        return;
      }
    }
    done(restError(
        ErrorCode::kNotFound,
        fmt::format("unknown resource '{}'; this server provides: {}", first, knownResources()),
        "rest_v1"));
  });
}

bool App::hasHandler(const std::string& first) const {
  for (const auto& h : handlers_)
    for (const auto& r : h->resources())
      if (r == first) return true;
  return false;
}

std::string App::knownResources() const {
  std::string known = "skills, users, conversations, apikeys, apps, me";
  for (const auto& h : handlers_)
    for (const auto& r : h->resources()) known += ", " + r;
  return known;
}

// ------------------------------------------------------------------------------- WebSockets

void App::upgrade(HttpRequest req, std::function<void(UpgradeDecision)> done) {
  const auto& s = req.segments;
  auto reject = [&done](HttpResponse r) {
    UpgradeDecision d;
    d.reject = std::move(r);
    done(std::move(d));
  };
  if (s.size() < 5 || s[0] != "ws_api" || s[1] != "account" || s[3] != "messaging")
    return reject(restError(ErrorCode::kNotFound,
                            "no WebSocket endpoint here; use /ws_api/account/{acc}/messaging/"
                            "brand/{bearer} or /ws_api/account/{acc}/messaging/consumer",
                            "ws"));
  const std::string acc = s[2];
  auto sdeps = deps_.session;
  if (s.size() == 6 && s[4] == "brand") {
    std::string bearer = s[5];
    deps_.rest.blocking.run([this, sdeps, acc, bearer, done = std::move(done)] {
      auto p = deps_.rest.auth.authenticate(bearer);
      UpgradeDecision d;
      if (!p) {
        d.reject = restError(ErrorCode::kUnauthorized, p.error().message, "ws");
        return done(std::move(d));
      }
      if (p->user.account.str() != acc) {
        d.reject =
            restError(ErrorCode::kUnauthorized,
                      fmt::format("the bearer belongs to another account than {}", acc), "ws");
        return done(std::move(d));
      }
      if (auto st = policy::authorize(p->caller().subject(), policy::Action::kAgentSocket); !st) {
        d.reject = restError(st.error(), "ws");
        return done(std::move(d));
      }
      deps_.rest.directory.put(p->user);
      d.make = [sdeps, principal = std::move(*p)](std::shared_ptr<WsTransport> t) {
        return std::shared_ptr<WsHandler>(
            protocol::ProtocolSession::agent(sdeps, std::move(t), principal));
      };
      done(std::move(d));
    });
    return;
  }
  if (s.size() == 5 && s[4] == "consumer") {
    std::string jwt = authToken(req.header("authorization"), "jwt");
    if (jwt.empty()) jwt = authToken(req.header("authorization"), "Bearer");
    deps_.rest.blocking.run([this, sdeps, acc, jwt, done = std::move(done)] {
      UpgradeDecision d;
      auto a = deps_.rest.store.accounts().getAccount(AccountId(acc));
      if (!a) {
        d.reject = restError(a.error(), "ws");
        return done(std::move(d));
      }
      if (a->status == store::AccountStatus::kDisabled) {
        d.reject =
            restError(ErrorCode::kForbidden,
                      fmt::format("account {} is disabled; it accepts no consumers", acc), "ws");
        return done(std::move(d));
      }
      std::optional<ConsumerId> consumer;
      if (!jwt.empty()) {
        auto c = deps_.rest.auth.verifyConsumer(AccountId(acc), jwt);
        if (!c) {
          d.reject = restError(ErrorCode::kUnauthorized, c.error().message, "ws");
          return done(std::move(d));
        }
        consumer = *c;
      }
      d.make = [sdeps, acc, consumer](std::shared_ptr<WsTransport> t) {
        return std::shared_ptr<WsHandler>(
            protocol::ProtocolSession::consumer(sdeps, std::move(t), AccountId(acc), consumer));
      };
      done(std::move(d));
    });
    return;
  }
  reject(restError(ErrorCode::kNotFound, "unknown messaging endpoint", "ws"));
}

}  // namespace parley::server
