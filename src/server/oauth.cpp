#include "server/oauth.h"

#include <fmt/format.h>
#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <boost/url/encoding_opts.hpp>
#include <boost/url/params_view.hpp>
#include <boost/url/parse_query.hpp>
#include <boost/url/pct_string_view.hpp>

#include "common/crypto.h"
#include "common/json.h"
#include "common/names.h"
#include "common/policy.h"
#include "common/random.h"

namespace parley::server {
namespace {

namespace bj = boost::json;
namespace urls = boost::urls;

constexpr const char* kBadClient =
    "client authentication failed: unknown client_id or wrong client_secret for this account";

OAuthError oauthError(int status, std::string error, std::string description) {
  OAuthError e;
  e.status = status;
  e.error = std::move(error);
  e.description = std::move(description);
  return e;
}

OAuthError invalidRequest(std::string description) {
  return oauthError(400, "invalid_request", std::move(description));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

// The parameters the token endpoint reads; others are ignored (RFC 6749 §3.2).
bool isTokenParam(std::string_view k) {
  return k == "grant_type" || k == "client_id" || k == "client_secret" || k == "scope";
}

// application/x-www-form-urlencoded; a parameter given twice is invalid_request (§3.2).
std::expected<std::map<std::string, std::string>, OAuthError> formParams(std::string_view body) {
  std::map<std::string, std::string> out;
  if (body.empty()) return out;
  auto parsed = urls::parse_query(body);
  if (!parsed)
    return std::unexpected(invalidRequest(
        "the body is not application/x-www-form-urlencoded: percent-encode the values"));
  urls::encoding_opts opt;
  opt.space_as_plus = true;
  // Valid (parse_query said so), so this constructor does not throw.
  for (auto p : urls::params_view(body, opt)) {
    if (!isTokenParam(p.key)) continue;
    if (!out.emplace(p.key, p.value).second)
      return std::unexpected(invalidRequest(fmt::format("{} is given more than once", p.key)));
  }
  return out;
}

std::expected<std::map<std::string, std::string>, OAuthError> jsonParams(std::string_view body) {
  std::map<std::string, std::string> out;
  auto o = json::parseObject(body);
  if (!o) return std::unexpected(invalidRequest("the body is not a JSON object"));
  for (const auto& kv : *o) {
    if (!isTokenParam(kv.key())) continue;
    if (!kv.value().is_string())
      return std::unexpected(invalidRequest(fmt::format("{} must be a string", kv.key())));
    out.emplace(std::string(kv.key()), std::string(kv.value().as_string()));
  }
  return out;
}

// One form-urlencoded part of the Basic credentials (RFC 6749 §2.3.1).
std::optional<std::string> formDecode(std::string_view s) {
  auto pct = urls::make_pct_string_view(s);
  if (!pct) return std::nullopt;
  urls::encoding_opts opt;
  opt.space_as_plus = true;
  return pct->decode(opt);
}

// "Basic <base64(id:secret)>" → (id, secret).
std::expected<std::pair<std::string, std::string>, OAuthError> basicCredentials(
    std::string_view encoded) {
  auto bad = [] {
    OAuthError e = oauthError(401, "invalid_client",
                              "the Authorization: Basic credentials are malformed: send "
                              "base64(urlencode(client_id) \":\" urlencode(client_secret))");
    e.basic_challenge = true;
    return std::unexpected(std::move(e));
  };
  if (encoded.empty() || encoded.size() > 4 * (kMaxClientIdChars + kMaxClientSecretChars))
    return bad();
  std::string bin(encoded.size(), '\0');
  std::size_t len = 0;
  if (sodium_init() < 0) return bad();
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(bin.data()), bin.size(), encoded.data(),
                        encoded.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0)
    return bad();
  bin.resize(len);
  auto colon = bin.find(':');
  if (colon == std::string::npos) return bad();
  auto id = formDecode(std::string_view(bin).substr(0, colon));
  auto secret = formDecode(std::string_view(bin).substr(colon + 1));
  if (!id || !secret) return bad();
  return std::make_pair(std::move(*id), std::move(*secret));
}

std::vector<std::string> splitScopes(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    auto j = s.find(' ', i);
    if (j == std::string_view::npos) j = s.size();
    if (j > i) {
      std::string scope(s.substr(i, j - i));
      if (std::ranges::find(out, scope) == out.end()) out.push_back(std::move(scope));
    }
    i = j + 1;
  }
  return out;
}

std::string joinScopes(const std::vector<std::string>& scopes) {
  std::string out;
  for (const auto& s : scopes) {
    if (!out.empty()) out += ' ';
    out += s;
  }
  return out;
}

std::string knownScopes() {
  std::string out;
  for (const auto& s : policy::oauthScopes()) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} ({})", s.name, policy::roleName(s.role));
  }
  return out;
}

// Constant time in the bytes of two hex SHA-256 digests.
bool sameDigest(const std::string& a, const std::string& b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::chrono::seconds ceilSeconds(std::chrono::milliseconds ms) {
  return std::chrono::seconds(std::max<std::int64_t>(1, (ms.count() + 999) / 1000));
}

}  // namespace

std::expected<TokenRequest, OAuthError> parseTokenRequest(
    std::string_view content_type, std::string_view body, std::string_view authorization,
    const std::map<std::string, std::string>& query) {
  if (query.contains("client_secret"))
    return std::unexpected(invalidRequest(
        "client_secret must not be sent in the URL; send it in the body or with HTTP Basic"));
  if (body.size() > kMaxTokenRequestBytes)
    return std::unexpected(
        oauthError(413, "invalid_request",
                   fmt::format("the request body is over {} bytes", kMaxTokenRequestBytes)));
  std::string type = lower(trim(content_type.substr(0, content_type.find(';'))));
  std::expected<std::map<std::string, std::string>, OAuthError> params;
  if (type == "application/json") {
    params = jsonParams(body);
  } else if (type == "application/x-www-form-urlencoded" || body.empty()) {
    params = formParams(body);
  } else {
    return std::unexpected(
        invalidRequest("send the parameters as application/x-www-form-urlencoded (or "
                       "application/json): grant_type, client_id, client_secret, scope"));
  }
  if (!params) return std::unexpected(params.error());
  TokenRequest r;
  auto take = [&](const char* key) -> std::optional<std::string> {
    auto it = params->find(key);
    if (it == params->end()) return std::nullopt;
    return it->second;
  };
  r.grant_type = take("grant_type").value_or("");
  r.scope = take("scope");
  auto body_id = take("client_id");
  auto body_secret = take("client_secret");
  std::string auth = trim(authorization);
  auto sp = std::min(auth.find(' '), auth.size());
  if (lower(auth.substr(0, sp)) == "basic") {
    auto creds = basicCredentials(trim(std::string_view(auth).substr(sp)));
    if (!creds) return std::unexpected(creds.error());
    if (body_secret)
      return std::unexpected(
          invalidRequest("send the client credentials once: in Authorization: Basic or in the "
                         "body, not both"));
    if (body_id && *body_id != creds->first)
      return std::unexpected(
          invalidRequest("client_id in the body differs from the one in Authorization: Basic"));
    r.client_id = std::move(creds->first);
    r.client_secret = std::move(creds->second);
    r.basic = true;
  } else {
    r.client_id = body_id.value_or("");
    r.client_secret = body_secret.value_or("");
  }
  if (r.grant_type.size() > 100 || (r.scope && r.scope->size() > kMaxScopeChars))
    return std::unexpected(invalidRequest(fmt::format(
        "grant_type (at most 100) or scope (at most {} characters) is too long", kMaxScopeChars)));
  return r;
}

std::string oauthErrorJson(const OAuthError& e) {
  return bj::serialize(bj::object{{"error", e.error}, {"error_description", e.description}});
}

std::string issuedTokenJson(const IssuedToken& t) {
  return bj::serialize(bj::object{{"access_token", t.access_token},
                                  {"token_type", "Bearer"},
                                  {"expires_in", t.expires_in_s},
                                  {"scope", t.scope}});
}

OAuth::OAuth(store::OAuthStore& store, Auth& auth, const Clock& clock, OAuthOptions options)
    : store_(store),
      auth_(auth),
      clock_(clock),
      opts_(std::move(options)),
      throttle_(clock, opts_.throttle) {}

bool OAuth::isAccessToken(std::string_view token) { return token.starts_with(kAccessTokenPrefix); }

// ---------------------------------------------------------------------------------------- apps

Result<NewApp> OAuth::createApp(const AccountId& acc, const UserId& creator,
                                const std::string& name, const std::vector<std::string>& scopes) {
  if (auto st = validateName("app name", name, 100); !st) return std::unexpected(st.error());
  if (scopes.empty())
    return invalid(fmt::format("scopes must name at least one scope: {}", knownScopes()));
  std::vector<std::string> unique;
  for (const auto& s : scopes) {
    if (!policy::oauthScopeRole(s))
      return invalid(fmt::format("unknown scope '{}'; use {}", s, knownScopes()));
    if (std::ranges::find(unique, s) == unique.end()) unique.push_back(s);
  }
  auto existing = store_.listApps(acc);
  if (!existing) return std::unexpected(existing.error());
  if (existing->size() >= opts_.max_apps_per_account)
    return makeError(ErrorCode::kLimitExceeded,
                     fmt::format("account {} has {} apps, the most it may have; delete one first",
                                 acc.str(), existing->size()));
  NewApp out;
  out.client_secret = std::string(kClientSecretPrefix) + randomHex(32);
  store::OAuthApp& a = out.record;
  a.account = acc;
  a.client_id = randomUuid();
  a.name = name;
  a.secret_hash = crypto::sha256Hex(out.client_secret);
  a.scopes = std::move(unique);
  a.created_at = clock_.nowMs();
  a.created_by = creator;
  if (auto st = store_.createApp(a); !st) return std::unexpected(st.error());
  spdlog::info("oauth: app {} ('{}') created in account {} by user {}", a.client_id, a.name,
               acc.str(), creator.str());
  return out;
}

Result<std::vector<store::OAuthApp>> OAuth::listApps(const AccountId& acc) {
  return store_.listApps(acc);
}

Status OAuth::deleteApp(const AccountId& acc, const std::string& client_id) {
  auto st = store_.deleteApp(acc, client_id);
  auth_.credentialsChanged(acc);  // its tokens stop at once, also where they are cached
  if (st) spdlog::info("oauth: app {} of account {} deleted with its tokens", client_id, acc.str());
  return st;
}

// ------------------------------------------------------------------------------ token endpoint

std::expected<IssuedToken, OAuthError> OAuth::issueToken(const AccountId& acc,
                                                         const TokenRequest& req,
                                                         const std::string& client_address) {
  if (req.grant_type.empty())
    return std::unexpected(invalidRequest("grant_type is required: client_credentials"));
  if (req.grant_type != "client_credentials")
    return std::unexpected(oauthError(
        400, "unsupported_grant_type",
        fmt::format("grant_type '{}' is not supported; this server issues tokens only for "
                    "client_credentials",
                    req.grant_type)));
  auto clientError = [&](std::string description) {
    OAuthError e = oauthError(401, "invalid_client", std::move(description));
    e.basic_challenge = req.basic;
    return std::unexpected(std::move(e));
  };
  if (req.client_id.empty() || req.client_secret.empty())
    return clientError(
        "client authentication required: send client_id and client_secret in the body or with "
        "Authorization: Basic");
  if (req.client_id.size() > kMaxClientIdChars || req.client_secret.size() > kMaxClientSecretChars)
    return clientError(kBadClient);
  auto admitted = throttle_.admit(acc.str(), req.client_id, client_address);
  if (auto* denial = std::get_if<LoginThrottle::Denial>(&admitted)) {
    OAuthError e =
        oauthError(429, "slow_down",
                   fmt::format("too many failed client authentications: {}", denial->message));
    e.retry_after = ceilSeconds(denial->retry_after);
    return std::unexpected(std::move(e));
  }
  const auto admission = std::get<LoginThrottle::Admission>(std::move(admitted));
  auto unavailable = [&](const Error& err) {
    throttle_.cancelled(admission);
    spdlog::warn("oauth: token request for account {} failed: {}", acc.str(), err.message);
    OAuthError e = oauthError(503, "temporarily_unavailable",
                              "the token service cannot read its store; try again");
    e.retry_after = std::chrono::seconds(1);
    return std::unexpected(std::move(e));
  };
  const std::string presented = crypto::sha256Hex(req.client_secret);
  auto app = store_.getApp(acc, req.client_id);
  if (!app && app.error().code != ErrorCode::kNotFound) return unavailable(app.error());
  // An unknown client costs the same comparison as a known one.
  const std::string stored = app ? app->secret_hash : std::string(64, '0');
  if (!sameDigest(presented, stored) || !app) {
    throttle_.failed(admission);
    return clientError(kBadClient);
  }
  throttle_.succeeded(admission);

  std::vector<std::string> granted = app->scopes;
  if (req.scope) {
    granted = splitScopes(*req.scope);
    if (granted.empty())
      return std::unexpected(oauthError(
          400, "invalid_scope",
          fmt::format("scope is empty; leave it out for the app's scopes ({}) or name them",
                      joinScopes(app->scopes))));
    for (const auto& s : granted)
      if (std::ranges::find(app->scopes, s) == app->scopes.end())
        return std::unexpected(
            oauthError(400, "invalid_scope",
                       fmt::format("scope '{}' is not granted to this app; it may ask for: {}", s,
                                   joinScopes(app->scopes))));
  }
  if (!auth_.accountActive(acc))
    return std::unexpected(oauthError(
        400, "invalid_grant",
        fmt::format("account {} is disabled; ask the operator of this server to enable it",
                    acc.str())));

  IssuedToken out;
  out.access_token = std::string(kAccessTokenPrefix) + randomHex(32);
  out.expires_in_s = opts_.token_ttl_ms / 1000;
  out.scope = joinScopes(granted);
  store::AccessToken t;
  t.token_hash = crypto::sha256Hex(out.access_token);
  t.account = acc;
  t.client_id = app->client_id;
  t.scopes = std::move(granted);
  t.created_at = clock_.nowMs();
  t.expires_at = t.created_at + opts_.token_ttl_ms;
  if (auto st = store_.addAccessToken(t, opts_.max_tokens_per_app); !st) {
    if (st.error().code == ErrorCode::kNotFound) return clientError(kBadClient);  // just deleted
    OAuthError e = oauthError(503, "temporarily_unavailable",
                              "the token service cannot write its store; try again");
    e.retry_after = std::chrono::seconds(1);
    spdlog::warn("oauth: storing a token for account {} failed: {}", acc.str(), st.error().message);
    return std::unexpected(std::move(e));
  }
  // The app's oldest token beyond max_tokens_per_app was just deleted: forget cached ones.
  auth_.credentialsChanged(acc);
  return out;
}

// ------------------------------------------------------------------------------ authenticate

Result<Principal> OAuth::authenticate(const std::string& token) {
  if (!isAccessToken(token) || token.size() > 512)
    return unauthorized("the access token is not valid");
  auto t = store_.getAccessToken(crypto::sha256Hex(token));
  if (!t) {
    if (t.error().code == ErrorCode::kNotFound)
      return unauthorized(
          "the access token is not valid (unknown, or its app was deleted); request a new one "
          "with POST /api/account/{account}/oauth/token");
    return std::unexpected(t.error());
  }
  if (t->expires_at <= clock_.nowMs())
    return unauthorized(
        "the access token has expired; request a new one with POST "
        "/api/account/{account}/oauth/token");
  if (!auth_.accountActive(t->account))
    return unauthorized(fmt::format(
        "account {} is disabled; ask the operator of this server to enable it", t->account.str()));
  Principal p;
  p.user.account = t->account;
  p.user.login_name = "app:" + t->client_id;
  for (const auto& s : t->scopes)
    if (auto role = policy::oauthScopeRole(s);
        role && std::ranges::find(p.user.roles, *role) == p.user.roles.end())
      p.user.roles.push_back(*role);
  p.bearer = token;
  p.expires_at = t->expires_at;
  p.credential = Credential::kOAuthToken;
  p.oauth_client_id = t->client_id;
  return p;
}

}  // namespace parley::server
