#include "common/result.h"

namespace parley {

std::string_view errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound:
      return "NOT_FOUND";
    case ErrorCode::kInvalid:
      return "INVALID";
    case ErrorCode::kConflict:
      return "CONFLICT";
    case ErrorCode::kUnauthorized:
      return "UNAUTHORIZED";
    case ErrorCode::kForbidden:
      return "FORBIDDEN";
    case ErrorCode::kUnavailable:
      return "UNAVAILABLE";
    case ErrorCode::kTimeout:
      return "TIMEOUT";
    case ErrorCode::kLimitExceeded:
      return "LIMIT_EXCEEDED";
    case ErrorCode::kTooLarge:
      return "TOO_LARGE";
    case ErrorCode::kScriptError:
      return "SCRIPT_ERROR";
    case ErrorCode::kInternal:
      return "INTERNAL";
  }
  return "INTERNAL";
}

int httpStatus(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kInvalid:
      return 400;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kUnauthorized:
      return 401;
    case ErrorCode::kForbidden:
      return 403;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kTimeout:
      return 504;
    case ErrorCode::kLimitExceeded:
      return 429;
    case ErrorCode::kTooLarge:
      return 413;
    case ErrorCode::kScriptError:
      return 422;
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

}  // namespace parley
