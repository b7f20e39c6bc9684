#pragma once

// OAuth 2.0 client credentials (RFC 6749 §4.4) for the functions gateway: app installations
// (REST `apps`, apps_rest.h), the token endpoint (POST /api/account/{acc}/oauth/token, routed by
// http_app.cpp) and the access tokens it issues, which only the gateway accepts.
//
// Secrets: a client secret ("ocs_" + 64 hex digits) and an access token ("oat_" + 64 hex
// digits) are 256 random bits each (libsodium), shown once; the store keeps only their SHA-256.
// A presented secret's hash is compared in constant time. An access token acts with the roles of
// its scopes (policy::oauthScopes: `faas.lambda.invoke` is FAAS_INVOCATION), ends at its expiry
// (OAuthOptions::token_ttl_ms) and when its app is deleted, and is refused when its account is
// disabled. Failed client authentications are throttled like logins (login_throttle.h: per app
// and per client address, a separate LoginThrottle with the same policy numbers).
//
// Every method but the static ones may block on the store: call it from the blocking executor,
// never from an io thread. Thread-safe.

#include <chrono>
#include <cstdint>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "server/auth.h"
#include "server/login_throttle.h"
#include "store/store.h"

namespace parley::server {

struct OAuthOptions {
  // Lifetime of an access token (`expires_in`). Default: 3600 s. REQUIRES: > 0.
  TimeMs token_ttl_ms = 3600LL * 1000;
  // Unexpired access tokens kept per app: issuing one more revokes the app's oldest.
  // Default: 100.
  int max_tokens_per_app = 100;
  // App installations per account; creating one more is refused (429). Default: 100.
  std::size_t max_apps_per_account = 100;
  // Failed client authentications, per app (account + client id) and per client address.
  // Default: the login throttle's numbers.
  LoginThrottleOptions throttle;
};

// What tells an access token from a login bearer or an API key without a store read.
inline constexpr std::string_view kAccessTokenPrefix = "oat_";
inline constexpr std::string_view kClientSecretPrefix = "ocs_";

// Longest client id, client secret and scope the token endpoint reads; longer is refused
// before any store read.
inline constexpr std::size_t kMaxClientIdChars = 100;
inline constexpr std::size_t kMaxClientSecretChars = 200;
inline constexpr std::size_t kMaxScopeChars = 1000;
// Largest token request body (413 above).
inline constexpr std::size_t kMaxTokenRequestBytes = 16 * 1024;

// An error answer of the token endpoint (RFC 6749 §5.2).
struct OAuthError {
  int status = 400;
  // "invalid_request", "invalid_client", "invalid_grant", "invalid_scope",
  // "unsupported_grant_type", "slow_down" (throttled, 429), "temporarily_unavailable" (503).
  std::string error;
  std::string description;
  // With 429 and 503: when to ask again.
  std::optional<std::chrono::seconds> retry_after{};
  // invalid_client after credentials sent with HTTP Basic: answer `WWW-Authenticate: Basic`.
  bool basic_challenge = false;
};

// A token request as sent, from its body (form or JSON) and its Authorization header.
struct TokenRequest {
  std::string grant_type;
  std::string client_id;
  std::string client_secret;
  // Space-separated scopes; nullopt when the request names none (the app's scopes are granted).
  std::optional<std::string> scope;
  // The client authenticated with `Authorization: Basic`.
  bool basic = false;
};

struct IssuedToken {
  std::string access_token;  // shown once; only its hash is stored
  std::int64_t expires_in_s = 0;
  std::string scope;  // the granted scopes, space-separated
};

struct NewApp {
  store::OAuthApp record;
  std::string client_secret;  // shown once; only its hash is stored
};

// Reads a token request: the body as `application/x-www-form-urlencoded` (RFC 6749) or
// `application/json`, by `content_type`; client credentials in the body or in `authorization`
// (`Basic base64(urlencode(id):urlencode(secret))`, RFC 6749 §2.3.1), not both. invalid_request
// for a malformed body, a parameter given twice, credentials in both places or in the URL
// (`query`), an over-long value.
std::expected<TokenRequest, OAuthError> parseTokenRequest(
    std::string_view content_type, std::string_view body, std::string_view authorization,
    const std::map<std::string, std::string>& query);

// {"error","error_description"}.
std::string oauthErrorJson(const OAuthError& e);
// {"access_token","token_type":"Bearer","expires_in","scope"}.
std::string issuedTokenJson(const IssuedToken& t);

class OAuth {
 public:
  // `store`, `auth` (for account statuses) and `clock` must outlive this object.
  OAuth(store::OAuthStore& store, Auth& auth, const Clock& clock, OAuthOptions options);

  // A new app of `acc` made by `creator`. Invalid for a bad name (1–100 characters, no control
  // characters), no scopes or an unknown scope (the message lists them); LimitExceeded past
  // max_apps_per_account.
  Result<NewApp> createApp(const AccountId& acc, const UserId& creator, const std::string& name,
                           const std::vector<std::string>& scopes);
  Result<std::vector<store::OAuthApp>> listApps(const AccountId& acc);
  // Deletes the app and every access token issued to it. NotFound when `acc` has no such app.
  Status deleteApp(const AccountId& acc, const std::string& client_id);

  // The token endpoint for `acc`: authenticates the client (throttled per app and per
  // `client_address`, "" when unknown), checks the grant and the scopes, stores and returns a
  // new access token.
  std::expected<IssuedToken, OAuthError> issueToken(const AccountId& acc, const TokenRequest& req,
                                                    const std::string& client_address);

  // Resolves an access token (for the functions gateway). Unauthorized when unknown, expired,
  // revoked (its app deleted) or of a disabled account. The principal acts with the roles of
  // the token's scopes; it has no user id (`user.login_name` is "app:<client id>").
  Result<Principal> authenticate(const std::string& token);

  // True when `token` has the shape of an access token (its prefix).
  static bool isAccessToken(std::string_view token);

  const OAuthOptions& options() const { return opts_; }

 private:
  store::OAuthStore& store_;
  Auth& auth_;
  const Clock& clock_;
  const OAuthOptions opts_;
  LoginThrottle throttle_;
};

}  // namespace parley::server
