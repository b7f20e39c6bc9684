#pragma once

// Authentication and identity: LivePerson-style login sessions (bearer + csrf + cookie), API
// keys, and unauthenticated consumer JWTs. Every method may block on the store: call it from the
// blocking executor, never from an io thread. Thread-safe (the store is; the key is immutable).

#include <cstdint>
#include <string>

#include "common/api.h"
#include "common/clock.h"
#include "common/result.h"
#include "store/store.h"

namespace parley::server {

struct AuthOptions {
  // How long a login session lives after login or the last refresh. Default: 12 h.
  TimeMs session_ttl_ms = 12LL * 3600 * 1000;
  // Lifetime of consumer JWTs from signup. Default: 24 h.
  TimeMs consumer_jwt_ttl_ms = 24LL * 3600 * 1000;
  // `iss` of consumer JWTs.
  std::string issuer = "parley";
};

// An authenticated brand user (agent, bot, admin).
struct Principal {
  store::User user;
  std::string bearer;  // the session bearer; empty for API keys
  TimeMs expires_at = 0;

  api::Caller caller() const;
  // "{acc}.{userId}", the old-style agent id of the protocol.
  std::string oldStyleId() const { return user.account.str() + "." + user.id.str(); }
};

struct LoginResult {
  store::Session session;
  store::User user;
};

class Auth {
 public:
  // `accounts` and `clock` must outlive this object. `jwt_key` is the HS256 key.
  Auth(store::AccountStore& accounts, const Clock& clock, std::string jwt_key, AuthOptions opts);

  // Checks the password; creates a session. Unauthorized with a readable message otherwise
  // (the same message for an unknown user and a wrong password).
  Result<LoginResult> login(const AccountId& acc, const std::string& username,
                            const std::string& password);
  // Extends the session whose bearer is `bearer` (from the cookie or Authorization header) when
  // `csrf` matches. Unauthorized when absent, expired, of another account or csrf mismatch.
  Result<store::Session> refresh(const AccountId& acc, const std::string& bearer,
                                 const std::string& csrf);
  // Deletes the session. Unauthorized when it does not exist.
  Status logout(const AccountId& acc, const std::string& bearer);
  // Resolves a session bearer or an API key. Unauthorized when unknown or expired.
  Result<Principal> authenticate(const std::string& token);
  // True while the session still exists and has not expired (used to close revoked sockets).
  bool sessionValid(const std::string& bearer);

  // A fresh consumer identity for account `acc`: a JWT whose sub is a new UUID. NotFound when
  // the account does not exist.
  Result<std::string> signupConsumer(const AccountId& acc);
  // Verifies a consumer JWT for `acc`; returns the consumer id (sub).
  Result<ConsumerId> verifyConsumer(const AccountId& acc, const std::string& jwt) const;

  // Creates an API key for `user`; returns the key (only its hash is stored).
  Result<std::string> createApiKey(const store::User& user, const std::string& name);

  const AuthOptions& options() const { return opts_; }

 private:
  store::AccountStore& accounts_;
  const Clock& clock_;
  const std::string jwt_key_;
  const AuthOptions opts_;
};

}  // namespace parley::server
