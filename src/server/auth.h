#pragma once

// Authentication and identity: LivePerson-style login sessions (bearer + csrf + cookie), API
// keys, revocation, and unauthenticated consumer JWTs.
//
// Credentials are stored hashed (SHA-256 of the bearer or key; the plaintext is shown once).
// Logins are throttled (login_throttle.h) and their password checks run on the PasswordHasher,
// never on the caller's thread. A user's sessions and API keys end at once when its password,
// roles or status change or it is deleted (revokeUser), and the revocation listener closes its
// open sockets. Disabled users and users of disabled accounts cannot authenticate.
//
// Every method except login(), the verified-token cache's and the listener setters may block on the
// store: call it from the blocking executor, never from an io thread. Thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/api.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "server/http_types.h"
#include "server/login_throttle.h"
#include "server/password_hasher.h"
#include "store/store.h"

namespace parley::server {

struct AuthOptions {
  // How long a login session lives after login or the last refresh. Default: 12 h.
  TimeMs session_ttl_ms = 12LL * 3600 * 1000;
  // Lifetime of consumer JWTs from signup. Default: 24 h.
  TimeMs consumer_jwt_ttl_ms = 24LL * 3600 * 1000;
  // `iss` of consumer JWTs.
  std::string issuer = "parley";
  // Login throttling per user and per client address.
  LoginThrottleOptions throttle;
  // How long the set of disabled accounts is trusted before it is read again. Default: 1 s.
  std::chrono::milliseconds account_status_ttl{1000};
  // Verified-token cache (the functions gateway's fast path, see Auth::cachedPrincipal): how
  // long a verified token's principal is kept without reading the store again, and how many
  // are kept. Changes made on this node (and, through the bus, on other nodes) drop them at
  // once; the TTL bounds what nothing announces (a credential changed in the store by another
  // process). 0 turns the cache off. Default: 2 s, 10,000 tokens.
  std::chrono::milliseconds verified_token_ttl{2000};
  std::size_t verified_token_capacity = 10'000;
};

// How a principal authenticated. kOAuthToken: an OAuth 2.0 access token (oauth.h), which only
// the functions gateway accepts.
enum class Credential { kSession, kApiKey, kOAuthToken };

// An authenticated brand user (agent, bot, admin).
struct Principal {
  // The user as stored, except `roles`: the roles this credential acts with (an API key's
  // scopes narrow them).
  store::User user;
  // The token it authenticated with: the session bearer or the API key.
  std::string bearer;
  TimeMs expires_at = 0;  // 0 = never (API key without expiry)
  Credential credential = Credential::kSession;
  std::string api_key_id{};       // with kApiKey
  std::string oauth_client_id{};  // with kOAuthToken (the principal has no user id then)

  api::Caller caller() const;
  // "{acc}.{userId}", the old-style agent id of the protocol.
  std::string oldStyleId() const { return user.account.str() + "." + user.id.str(); }
};

struct LoginResult {
  store::Session session;
  std::string bearer;  // the session's bearer, to give to the client (only its hash is stored)
  store::User user;
};

// The outcome of login(): the result, and when refused for load or throttling (LimitExceeded,
// Unavailable), how long the client should wait.
struct LoginOutcome {
  Result<LoginResult> result;
  std::optional<std::chrono::seconds> retry_after;
};

// A new API key as asked for. REQUIRES: name validated.
struct ApiKeyRequest {
  std::string name;
  std::vector<store::Role> scopes;  // empty = all of the user's roles
  TimeMs expires_at = 0;            // 0 = never
};

struct NewApiKey {
  store::ApiKey record;
  std::string key;  // shown once
};

class Auth {
 public:
  // `accounts`, `clock` and `hasher` must outlive this object. `jwt_key` is the HS256 key.
  Auth(store::AccountStore& accounts, const Clock& clock, PasswordHasher& hasher,
       std::string jwt_key, AuthOptions opts);

  // Logs `username` in to `acc` from `client_address` ("" when unknown): refused at once when
  // throttled (LimitExceeded + retry_after); otherwise the store reads run on `blocking`, the
  // password check on the hasher (Unavailable + retry_after when its queue is full), then the
  // session is created on `blocking`. Unauthorized with one message for an unknown user and a
  // wrong password; Unauthorized naming the reason for a disabled user or account. `done` runs
  // exactly once, on any thread. Non-blocking; `blocking` must outlive the call.
  void login(const AccountId& acc, std::string username, std::string password,
             std::string client_address, BlockingExecutor& blocking,
             std::function<void(LoginOutcome)> done);
  // Extends the session whose bearer is `bearer` (from the cookie or Authorization header) when
  // `csrf` matches. Unauthorized when absent, expired, of another account or csrf mismatch.
  Result<store::Session> refresh(const AccountId& acc, const std::string& bearer,
                                 const std::string& csrf);
  // Deletes the session. Unauthorized when it does not exist.
  Status logout(const AccountId& acc, const std::string& bearer);
  // Resolves a session bearer or an API key. Unauthorized when unknown, expired, revoked, of a
  // disabled user or of a disabled account, and for an OAuth access token (OAuth::authenticate
  // resolves those, for the functions gateway only).
  Result<Principal> authenticate(const std::string& token);
  // True while `token` still authenticates (used to close expired or revoked sockets). Store
  // trouble is not a revocation: true then.
  bool tokenValid(const std::string& token);

  // Ends every session and API key of the user now and tells the revocation listener (which
  // closes the user's sockets). Call after changing its password, roles or status, or deleting
  // it (deleteUser already dropped its credentials; the listener is still told).
  Status revokeUser(const AccountId& acc, const UserId& user);
  // Called with (account, user) by revokeUser, and with (account, nullopt) when an account is
  // seen disabled. Set before serving; runs on the revoking thread and must not block.
  void setRevocationListener(
      std::function<void(const AccountId&, const std::optional<UserId>&)> listener);

  // ---- Verified-token cache (never blocks, no store read; the functions gateway uses it so
  // that a request with a known token is dispatched on its io thread)
  //
  // The principal `token` (a session bearer, API key or OAuth access token) authenticated as,
  // when it was verified less than verified_token_ttl ago, has not expired, no credential of
  // its account changed since, and its account is not disabled (as of the last status read).
  std::optional<Principal> cachedPrincipal(const std::string& token);
  // Read before verifying a token; rememberPrincipal keeps the result only if no credential
  // changed in between (a logout racing the verification is not undone by the cache).
  std::uint64_t credentialsGeneration();
  // Keeps what `token` verified as (Auth::authenticate or OAuth::authenticate) for
  // cachedPrincipal. At capacity, expired entries go first, then an arbitrary one.
  void rememberPrincipal(const std::string& token, const Principal& principal,
                         std::uint64_t generation);
  // A credential of `acc` changed on this node (logout, revokeUser, an API key deleted, an
  // OAuth app deleted or a token evicted): drops the account's cached tokens and tells the
  // credentials listener (cluster mode: the other nodes). Called by Auth and OAuth themselves;
  // REST code that deletes a credential in the store calls it too.
  void credentialsChanged(const AccountId& acc);
  // Drops the account's cached tokens without telling anyone (another node's change).
  void dropCachedCredentials(const AccountId& acc);
  // Called with the account by credentialsChanged. Set before serving; must not block.
  void setCredentialsListener(std::function<void(const AccountId&)> listener);

  // Reads the accounts' statuses again (blocking) and tells the listener about accounts that
  // became disabled since the last read. The server calls it every account_status_ttl.
  void refreshAccountStatus();
  // False when `acc` is disabled (as of the last read, at most account_status_ttl old).
  bool accountActive(const AccountId& acc);

  // A fresh consumer identity for account `acc`: a JWT whose sub is a new UUID. NotFound when
  // the account does not exist, Forbidden when it is disabled.
  Result<std::string> signupConsumer(const AccountId& acc);
  // Verifies a consumer JWT for `acc`; returns the consumer id (sub).
  Result<ConsumerId> verifyConsumer(const AccountId& acc, const std::string& jwt) const;

  // Creates an API key for `user` (created by `creator`); the key is returned once, only its
  // hash is stored. Invalid when a scope is not one of the user's roles or the expiry is past.
  Result<NewApiKey> createApiKey(const store::User& user, const UserId& creator,
                                 const ApiKeyRequest& request);

  // A password hash on the hasher (waits for it; call on a blocking thread).
  Result<std::string> hashPassword(const std::string& password, crypto::PasswordCost cost);

  const AuthOptions& options() const { return opts_; }

 private:
  // The account's status check without the store (cached set of disabled accounts).
  Status checkAccount(const AccountId& acc);
  void notify(const AccountId& acc, const std::optional<UserId>& user);

  store::AccountStore& accounts_;
  const Clock& clock_;
  PasswordHasher& hasher_;
  const std::string jwt_key_;
  const AuthOptions opts_;
  LoginThrottle throttle_;
  std::function<void(const AccountId&, const std::optional<UserId>&)> listener_;  // set first

  std::function<void(const AccountId&)> credentials_listener_;  // set first

  struct CachedToken {
    Principal principal;
    TimeMs valid_until = 0;  // min(verified + verified_token_ttl, the credential's expiry)
  };
  Mutex cache_mu_;
  std::map<std::string, CachedToken, std::less<>> cache_
      PARLEY_GUARDED_BY(cache_mu_);                            // by SHA-256 of the token
  std::uint64_t generation_ PARLEY_GUARDED_BY(cache_mu_) = 0;  // bumped by every drop

  Mutex status_mu_;
  std::set<std::string> disabled_accounts_ PARLEY_GUARDED_BY(status_mu_);
  TimeMs status_read_at_ PARLEY_GUARDED_BY(status_mu_) = 0;  // 0 = never read
};

// The login hash of an unknown user: verifying it costs what a real check costs, so unknown
// users cannot be told apart by timing.
extern const char* const kUnknownUserHash;

}  // namespace parley::server
