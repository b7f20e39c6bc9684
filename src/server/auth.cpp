#include "server/auth.h"

#include <fmt/format.h>

#include "common/crypto.h"
#include "common/random.h"
#include "server/jwt.h"

namespace parley::server {

api::Caller Principal::caller() const {
  api::Caller c;
  c.account = user.account;
  c.user = user.id;
  c.login_name = user.login_name;
  c.roles = policy::RoleSet(std::span<const store::Role>(user.roles));
  c.type = user.type;
  return c;
}

Auth::Auth(store::AccountStore& accounts, const Clock& clock, std::string jwt_key, AuthOptions opts)
    : accounts_(accounts), clock_(clock), jwt_key_(std::move(jwt_key)), opts_(std::move(opts)) {}

Result<LoginResult> Auth::login(const AccountId& acc, const std::string& username,
                                const std::string& password) {
  static constexpr const char* kBad = "login failed: wrong username or password for this account";
  if (username.empty() || password.empty())
    return unauthorized("login failed: username and password are required");
  auto user = accounts_.getUserByLogin(acc, username);
  if (!user) {
    if (user.error().code == ErrorCode::kNotFound) {
      // Spend comparable time so unknown users are not distinguishable by timing.
      (void)crypto::verifyPassword(
          "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
          password);
      return unauthorized(kBad);
    }
    return std::unexpected(user.error());
  }
  if (!crypto::verifyPassword(user->password_hash, password)) return unauthorized(kBad);
  store::Session s;
  s.bearer = randomHex(32);
  s.csrf = randomHex(16);
  s.account = acc;
  s.user = user->id;
  s.created_at = clock_.nowMs();
  s.expires_at = s.created_at + opts_.session_ttl_ms;
  if (auto st = accounts_.putSession(s); !st) return std::unexpected(st.error());
  return LoginResult{std::move(s), std::move(*user)};
}

Result<store::Session> Auth::refresh(const AccountId& acc, const std::string& bearer,
                                     const std::string& csrf) {
  if (bearer.empty()) return unauthorized("refresh needs the session cookie from login");
  auto s = accounts_.getSession(bearer);
  if (!s) {
    if (s.error().code == ErrorCode::kNotFound)
      return unauthorized("the session does not exist or was logged out; log in again");
    return std::unexpected(s.error());
  }
  if (s->account != acc) return unauthorized("the session belongs to another account");
  if (s->expires_at <= clock_.nowMs()) return unauthorized("the session has expired; log in again");
  if (csrf != s->csrf) return unauthorized("csrf does not match the session; log in again");
  s->expires_at = clock_.nowMs() + opts_.session_ttl_ms;
  if (auto st = accounts_.putSession(*s); !st) return std::unexpected(st.error());
  return s;
}

Status Auth::logout(const AccountId& acc, const std::string& bearer) {
  if (bearer.empty())
    return unauthorized("logout needs the bearer (Authorization header or cookie)");
  auto s = accounts_.getSession(bearer);
  if (!s) {
    if (s.error().code == ErrorCode::kNotFound)
      return unauthorized("the session does not exist or was already logged out");
    return std::unexpected(s.error());
  }
  if (s->account != acc) return unauthorized("the session belongs to another account");
  return accounts_.deleteSession(bearer);
}

Result<Principal> Auth::authenticate(const std::string& token) {
  if (token.empty())
    return unauthorized("authentication required: send Authorization: Bearer <token>");
  if (token.size() > 512) return unauthorized("the token is not valid");
  auto s = accounts_.getSession(token);
  if (s) {
    if (s->expires_at <= clock_.nowMs())
      return unauthorized("the session has expired; log in again");
    auto u = accounts_.getUser(s->account, s->user);
    if (!u) return unauthorized("the session's user no longer exists");
    return Principal{std::move(*u), token, s->expires_at};
  }
  if (s.error().code != ErrorCode::kNotFound) return std::unexpected(s.error());
  auto k = accounts_.getApiKey(crypto::sha256Hex(token));
  if (!k) {
    if (k.error().code == ErrorCode::kNotFound)
      return unauthorized("the token is not valid (unknown, logged out or expired); log in again");
    return std::unexpected(k.error());
  }
  auto u = accounts_.getUser(k->account, k->user);
  if (!u) return unauthorized("the API key's user no longer exists");
  return Principal{std::move(*u), std::string(), 0};
}

bool Auth::sessionValid(const std::string& bearer) {
  auto s = accounts_.getSession(bearer);
  if (!s) return s.error().code != ErrorCode::kNotFound;  // store trouble is not a revocation
  return s->expires_at > clock_.nowMs();
}

Result<std::string> Auth::signupConsumer(const AccountId& acc) {
  auto a = accounts_.getAccount(acc);
  if (!a) return std::unexpected(a.error());
  JwtClaims c;
  c.sub = randomUuid();
  c.aud = "acc:" + acc.str();
  c.iss = opts_.issuer;
  c.iat = clock_.nowMs() / 1000;
  c.exp = (clock_.nowMs() + opts_.consumer_jwt_ttl_ms) / 1000;
  return signJwt(c, jwt_key_);
}

Result<ConsumerId> Auth::verifyConsumer(const AccountId& acc, const std::string& jwt) const {
  auto c = verifyJwt(jwt, jwt_key_, clock_.nowMs());
  if (!c) return std::unexpected(c.error());
  if (c->aud != "acc:" + acc.str())
    return forbidden(
        fmt::format("the jwt was issued for '{}', not for account {}", c->aud, acc.str()));
  return ConsumerId(c->sub);
}

Result<std::string> Auth::createApiKey(const store::User& user, const std::string& name) {
  std::string key = "pk_" + randomHex(24);
  store::ApiKey k;
  k.key_hash = crypto::sha256Hex(key);
  k.account = user.account;
  k.user = user.id;
  k.name = name;
  k.created_at = clock_.nowMs();
  if (auto st = accounts_.putApiKey(k); !st) return std::unexpected(st.error());
  return key;
}

}  // namespace parley::server
