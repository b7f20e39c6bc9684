#pragma once

// What the forwarder (conversation_forwarder.cpp) and the cluster routing (cluster_routing.cpp)
// both put on the bus: a node's subject, and error codes by name.

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace parley::app {

// Lowercase hex of `s`'s bytes: any node name as one NATS subject token.
inline std::string hexToken(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// The subject `prefix` + "." + the node name as a token, e.g. "parley-fwd.6e6f646531".
inline std::string nodeSubject(std::string_view prefix, std::string_view node) {
  return std::string(prefix) + "." + hexToken(node);
}

// The ErrorCode whose errorCodeName is `s`; none for any other text.
inline std::optional<ErrorCode> parseErrorCode(std::string_view s) {
  for (auto c : {ErrorCode::kNotFound, ErrorCode::kInvalid, ErrorCode::kConflict,
                 ErrorCode::kUnauthorized, ErrorCode::kForbidden, ErrorCode::kUnavailable,
                 ErrorCode::kTimeout, ErrorCode::kLimitExceeded, ErrorCode::kTooLarge,
                 ErrorCode::kScriptError, ErrorCode::kInternal})
    if (errorCodeName(c) == s) return c;
  return std::nullopt;
}

}  // namespace parley::app
