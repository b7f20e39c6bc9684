#include "server/auth.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

#include "common/crypto.h"
#include "common/random.h"
#include "server/jwt.h"
#include "server/oauth.h"

namespace parley::server {

const char* const kUnknownUserHash =
    "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

namespace {

constexpr const char* kBadLogin = "login failed: wrong username or password for this account";

std::chrono::seconds ceilSeconds(std::chrono::milliseconds ms) {
  return std::chrono::seconds(std::max<std::int64_t>(1, (ms.count() + 999) / 1000));
}

bool hasRole(const store::User& u, store::Role r) {
  return std::find(u.roles.begin(), u.roles.end(), r) != u.roles.end();
}

}  // namespace

api::Caller Principal::caller() const {
  api::Caller c;
  c.account = user.account;
  c.user = user.id;
  c.login_name = user.login_name;
  c.roles = policy::RoleSet(std::span<const store::Role>(user.roles));
  c.type = user.type;
  return c;
}

Auth::Auth(store::AccountStore& accounts, const Clock& clock, PasswordHasher& hasher,
           std::string jwt_key, AuthOptions opts)
    : accounts_(accounts),
      clock_(clock),
      hasher_(hasher),
      jwt_key_(std::move(jwt_key)),
      opts_(std::move(opts)),
      throttle_(clock, opts_.throttle) {}

void Auth::setRevocationListener(
    std::function<void(const AccountId&, const std::optional<UserId>&)> listener) {
  listener_ = std::move(listener);
}

void Auth::notify(const AccountId& acc, const std::optional<UserId>& user) {
  if (listener_) listener_(acc, user);
}

// ------------------------------------------------------------------------ verified-token cache

void Auth::setCredentialsListener(std::function<void(const AccountId&)> listener) {
  credentials_listener_ = std::move(listener);
}

std::optional<Principal> Auth::cachedPrincipal(const std::string& token) {
  if (opts_.verified_token_ttl.count() <= 0 || token.empty() || token.size() > 512)
    return std::nullopt;
  const std::string key = crypto::sha256Hex(token);
  const TimeMs now = clock_.nowMs();
  std::optional<Principal> found;
  {
    MutexLock lock(cache_mu_);
    auto it = cache_.find(key);
    if (it == cache_.end()) return std::nullopt;
    if (it->second.valid_until <= now) {
      cache_.erase(it);
      return std::nullopt;
    }
    found = it->second.principal;
  }
  // A disabled account's tokens stop at once (the set the account watch keeps; no store read).
  MutexLock lock(status_mu_);
  if (status_read_at_ == 0 || disabled_accounts_.contains(found->user.account.str()))
    return std::nullopt;
  return found;
}

std::uint64_t Auth::credentialsGeneration() {
  MutexLock lock(cache_mu_);
  return generation_;
}

void Auth::rememberPrincipal(const std::string& token, const Principal& principal,
                             std::uint64_t generation) {
  if (opts_.verified_token_ttl.count() <= 0 || opts_.verified_token_capacity == 0) return;
  const TimeMs now = clock_.nowMs();
  TimeMs until = now + opts_.verified_token_ttl.count();
  if (principal.expires_at != 0) until = std::min(until, principal.expires_at);
  if (until <= now) return;
  const std::string key = crypto::sha256Hex(token);
  MutexLock lock(cache_mu_);
  if (generation != generation_) return;  // a credential changed while it was verified
  if (!cache_.contains(key) && cache_.size() >= opts_.verified_token_capacity) {
    std::erase_if(cache_, [now](const auto& kv) { return kv.second.valid_until <= now; });
    if (cache_.size() >= opts_.verified_token_capacity) cache_.erase(cache_.begin());
  }
  cache_[key] = CachedToken{principal, until};
}

void Auth::dropCachedCredentials(const AccountId& acc) {
  MutexLock lock(cache_mu_);
  ++generation_;
  std::erase_if(cache_, [&](const auto& kv) { return kv.second.principal.user.account == acc; });
}

void Auth::credentialsChanged(const AccountId& acc) {
  dropCachedCredentials(acc);
  if (credentials_listener_) credentials_listener_(acc);
}

// ------------------------------------------------------------------------------ account status

void Auth::refreshAccountStatus() {
  auto list = accounts_.listAccounts();
  if (!list) {
    spdlog::warn("reading the account statuses failed: {}", list.error().message);
    return;
  }
  std::set<std::string> disabled;
  for (const auto& a : *list)
    if (a.status == store::AccountStatus::kDisabled) disabled.insert(a.id.str());
  std::vector<std::string> newly;
  {
    MutexLock lock(status_mu_);
    for (const auto& id : disabled)
      if (!disabled_accounts_.contains(id)) newly.push_back(id);
    disabled_accounts_ = std::move(disabled);
    status_read_at_ = clock_.nowMs();
  }
  for (const auto& id : newly) {
    spdlog::info("account {} is disabled: closing its sockets", id);
    dropCachedCredentials(AccountId(id));
    notify(AccountId(id), std::nullopt);
  }
}

bool Auth::accountActive(const AccountId& acc) {
  bool stale = false;
  {
    MutexLock lock(status_mu_);
    stale = status_read_at_ == 0 ||
            clock_.nowMs() - status_read_at_ >= opts_.account_status_ttl.count();
  }
  if (stale) refreshAccountStatus();
  MutexLock lock(status_mu_);
  return !disabled_accounts_.contains(acc.str());
}

Status Auth::checkAccount(const AccountId& acc) {
  if (!accountActive(acc))
    return unauthorized(fmt::format(
        "account {} is disabled; ask the operator of this server to enable it", acc.str()));
  return {};
}

// --------------------------------------------------------------------------------------- login

void Auth::login(const AccountId& acc, std::string username, std::string password,
                 std::string client_address, BlockingExecutor& blocking,
                 std::function<void(LoginOutcome)> done) {
  if (username.empty() || password.empty())
    return done(LoginOutcome{unauthorized("login failed: username and password are required"),
                             std::nullopt});
  auto admitted = throttle_.admit(acc.str(), username, client_address);
  if (auto* denial = std::get_if<LoginThrottle::Denial>(&admitted))
    return done(LoginOutcome{makeError(ErrorCode::kLimitExceeded, denial->message),
                             ceilSeconds(denial->retry_after)});
  auto admission = std::make_shared<LoginThrottle::Admission>(
      std::get<LoginThrottle::Admission>(std::move(admitted)));
  auto shared_done = std::make_shared<std::function<void(LoginOutcome)>>(std::move(done));
  blocking.run([this, acc, username = std::move(username), password = std::move(password),
                admission, shared_done, &blocking]() mutable {
    auto fail = [&](Error e) {
      throttle_.cancelled(*admission);
      (*shared_done)(LoginOutcome{std::unexpected(std::move(e)), std::nullopt});
    };
    if (auto st = checkAccount(acc); !st) return fail(st.error());
    auto user = accounts_.getUserByLogin(acc, username);
    if (!user && user.error().code != ErrorCode::kNotFound) return fail(user.error());
    std::optional<store::User> found;
    if (user) found = std::move(*user);
    std::string hash = found ? found->password_hash : std::string(kUnknownUserHash);
    hasher_.verify(
        std::move(hash), std::move(password),
        [this, acc, found = std::move(found), admission, shared_done,
         &blocking](Result<bool> matched) mutable {
          if (!matched) {
            throttle_.cancelled(*admission);
            return (*shared_done)(
                LoginOutcome{std::unexpected(matched.error()), std::chrono::seconds(1)});
          }
          if (!*matched || !found) {
            throttle_.failed(*admission);
            return (*shared_done)(LoginOutcome{unauthorized(kBadLogin), std::nullopt});
          }
          throttle_.succeeded(*admission);
          blocking.run([this, acc, user = std::move(*found), shared_done]() mutable {
            if (user.status == store::UserStatus::kDisabled)
              return (*shared_done)(LoginOutcome{
                  unauthorized(fmt::format("user '{}' is disabled; ask an admin of account {}",
                                           user.login_name, acc.str())),
                  std::nullopt});
            LoginResult r;
            r.bearer = randomHex(32);
            r.session.bearer_hash = crypto::sha256Hex(r.bearer);
            r.session.csrf = randomHex(16);
            r.session.account = acc;
            r.session.user = user.id;
            r.session.created_at = clock_.nowMs();
            r.session.expires_at = r.session.created_at + opts_.session_ttl_ms;
            if (auto st = accounts_.putSession(r.session); !st)
              return (*shared_done)(LoginOutcome{std::unexpected(st.error()), std::nullopt});
            r.user = std::move(user);
            (*shared_done)(LoginOutcome{std::move(r), std::nullopt});
          });
        });
  });
}

Result<store::Session> Auth::refresh(const AccountId& acc, const std::string& bearer,
                                     const std::string& csrf) {
  if (bearer.empty()) return unauthorized("refresh needs the session cookie from login");
  auto s = accounts_.getSession(crypto::sha256Hex(bearer));
  if (!s) {
    if (s.error().code == ErrorCode::kNotFound)
      return unauthorized("the session does not exist or was logged out; log in again");
    return std::unexpected(s.error());
  }
  if (s->account != acc) return unauthorized("the session belongs to another account");
  if (s->expires_at <= clock_.nowMs()) return unauthorized("the session has expired; log in again");
  if (csrf != s->csrf) return unauthorized("csrf does not match the session; log in again");
  if (auto st = checkAccount(acc); !st) return std::unexpected(st.error());
  s->expires_at = clock_.nowMs() + opts_.session_ttl_ms;
  if (auto st = accounts_.putSession(*s); !st) return std::unexpected(st.error());
  return s;
}

Status Auth::logout(const AccountId& acc, const std::string& bearer) {
  if (bearer.empty())
    return unauthorized("logout needs the bearer (Authorization header or cookie)");
  const std::string hash = crypto::sha256Hex(bearer);
  auto s = accounts_.getSession(hash);
  if (!s) {
    if (s.error().code == ErrorCode::kNotFound)
      return unauthorized("the session does not exist or was already logged out");
    return std::unexpected(s.error());
  }
  if (s->account != acc) return unauthorized("the session belongs to another account");
  auto st = accounts_.deleteSession(hash);
  credentialsChanged(acc);
  return st;
}

// ------------------------------------------------------------------------------ authenticate

Result<Principal> Auth::authenticate(const std::string& token) {
  if (token.empty())
    return unauthorized("authentication required: send Authorization: Bearer <token>");
  if (token.size() > 512) return unauthorized("the token is not valid");
  if (OAuth::isAccessToken(token))
    return unauthorized(
        "an OAuth access token is accepted only by the functions gateway "
        "(/api/account/{account}/lambdas|events/…); use a login bearer or an API key here");
  const std::string hash = crypto::sha256Hex(token);
  const TimeMs now = clock_.nowMs();
  Principal p;
  p.bearer = token;
  AccountId acc;
  UserId uid;
  std::vector<store::Role> scopes;
  auto s = accounts_.getSession(hash);
  if (s) {
    if (s->expires_at <= now) return unauthorized("the session has expired; log in again");
    acc = s->account;
    uid = s->user;
    p.expires_at = s->expires_at;
    p.credential = Credential::kSession;
  } else {
    if (s.error().code != ErrorCode::kNotFound) return std::unexpected(s.error());
    auto k = accounts_.getApiKey(hash);
    if (!k) {
      if (k.error().code == ErrorCode::kNotFound)
        return unauthorized(
            "the token is not valid (unknown, logged out, revoked or expired); log in again");
      return std::unexpected(k.error());
    }
    if (k->expires_at != 0 && k->expires_at <= now)
      return unauthorized(
          fmt::format("the API key '{}' ({}) has expired; ask for a new one", k->name, k->id));
    acc = k->account;
    uid = k->user;
    scopes = k->scopes;
    p.expires_at = k->expires_at;
    p.credential = Credential::kApiKey;
    p.api_key_id = k->id;
  }
  if (auto st = checkAccount(acc); !st) return std::unexpected(st.error());
  auto u = accounts_.getUser(acc, uid);
  if (!u) {
    if (u.error().code == ErrorCode::kNotFound)
      return unauthorized("the token's user no longer exists");
    return std::unexpected(u.error());
  }
  if (u->status == store::UserStatus::kDisabled)
    return unauthorized(
        fmt::format("user '{}' is disabled; ask an admin of account {}", u->login_name, acc.str()));
  if (!scopes.empty()) {
    std::vector<store::Role> effective;
    for (auto r : u->roles)
      if (std::find(scopes.begin(), scopes.end(), r) != scopes.end()) effective.push_back(r);
    u->roles = std::move(effective);
  }
  p.user = std::move(*u);
  return p;
}

bool Auth::tokenValid(const std::string& token) {
  auto p = authenticate(token);
  if (p) return true;
  return p.error().code != ErrorCode::kUnauthorized;  // store trouble is not a revocation
}

Status Auth::revokeUser(const AccountId& acc, const UserId& user) {
  auto st = accounts_.deleteCredentials(acc, user);
  // Close the sockets (and forget the verified tokens) even when the store failed: they must
  // not outlive the change.
  credentialsChanged(acc);
  notify(acc, user);
  return st;
}

// ------------------------------------------------------------------------------- consumers

Result<std::string> Auth::signupConsumer(const AccountId& acc) {
  auto a = accounts_.getAccount(acc);
  if (!a) return std::unexpected(a.error());
  if (a->status == store::AccountStatus::kDisabled)
    return forbidden(fmt::format("account {} is disabled; it accepts no consumers", acc.str()));
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

// -------------------------------------------------------------------------------- API keys

Result<NewApiKey> Auth::createApiKey(const store::User& user, const UserId& creator,
                                     const ApiKeyRequest& request) {
  for (auto r : request.scopes)
    if (!hasRole(user, r))
      return invalid(fmt::format(
          "scope {} is not one of the roles of user '{}'; a key can only narrow its user's roles",
          store::roleName(r), user.login_name));
  if (request.expires_at != 0 && request.expires_at <= clock_.nowMs())
    return invalid("expiresAt is in the past; give a future time in ms since the epoch");
  NewApiKey out;
  out.key = "pk_" + randomHex(24);
  store::ApiKey& k = out.record;
  k.key_hash = crypto::sha256Hex(out.key);
  k.id = randomHex(8);
  k.account = user.account;
  k.user = user.id;
  k.name = request.name;
  k.scopes = request.scopes;
  k.expires_at = request.expires_at;
  k.created_by = creator;
  k.created_at = clock_.nowMs();
  if (auto st = accounts_.putApiKey(k); !st) return std::unexpected(st.error());
  return out;
}

Result<std::string> Auth::hashPassword(const std::string& password, crypto::PasswordCost cost) {
  return hasher_.hashAndWait(password, cost);
}

}  // namespace parley::server
