#pragma once

// HS256 JSON Web Tokens for unauthenticated consumer identities (the `signup` endpoint) and the
// consumer socket. Plain functions over OpenSSL HMAC; thread-safe.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"

namespace parley::server {

struct JwtClaims {
  std::string sub;  // consumer id (UUID)
  std::string aud;  // "acc:<account>"
  std::string iss;
  std::int64_t iat = 0;  // seconds since the epoch
  std::int64_t exp = 0;
};

// Signs `claims` with `key` (raw bytes) as a compact HS256 JWT.
std::string signJwt(const JwtClaims& claims, std::string_view key);

// Verifies signature, algorithm and expiry (against `now_ms`). Unauthorized with a reason when
// the token is malformed, badly signed or expired.
Result<JwtClaims> verifyJwt(std::string_view token, std::string_view key, TimeMs now_ms);

// base64url without padding (exposed for tests).
std::string base64UrlEncode(std::string_view data);
Result<std::string> base64UrlDecode(std::string_view text);

// Loads DIR/keys/jwt.key (32 random bytes, hex) or creates it with mode 0600. Blocking.
Result<std::string> loadOrCreateJwtKey(const std::string& data_dir);

}  // namespace parley::server
