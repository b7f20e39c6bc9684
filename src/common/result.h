#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace parley {

// The kinds of expected failure. Each maps to one HTTP status (see httpStatus()).
enum class ErrorCode {
  kNotFound,
  kInvalid,
  kConflict,
  kUnauthorized,
  kForbidden,
  kUnavailable,
  kTimeout,
  kLimitExceeded,
  kTooLarge,
  kScriptError,
  kInternal,
};

// An expected failure: a code and a message that says what was wrong and what to do.
struct [[nodiscard]] Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;

  bool operator==(const Error&) const = default;
};

template <class T>
using Result = std::expected<T, Error>;

// Result<void> with a readable name.
using Status = std::expected<void, Error>;

inline std::unexpected<Error> makeError(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}
inline std::unexpected<Error> notFound(std::string m) {
  return makeError(ErrorCode::kNotFound, std::move(m));
}
inline std::unexpected<Error> invalid(std::string m) {
  return makeError(ErrorCode::kInvalid, std::move(m));
}
inline std::unexpected<Error> conflict(std::string m) {
  return makeError(ErrorCode::kConflict, std::move(m));
}
inline std::unexpected<Error> unauthorized(std::string m) {
  return makeError(ErrorCode::kUnauthorized, std::move(m));
}
inline std::unexpected<Error> forbidden(std::string m) {
  return makeError(ErrorCode::kForbidden, std::move(m));
}
inline std::unexpected<Error> internalError(std::string m) {
  return makeError(ErrorCode::kInternal, std::move(m));
}

// "NOT_FOUND", "INVALID", ... as used in the REST error body {"error":{"code","message"}}.
std::string_view errorCodeName(ErrorCode code);
// 404, 400, ... the HTTP status that fits the code.
int httpStatus(ErrorCode code);

}  // namespace parley
