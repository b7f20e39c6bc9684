#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

// Small helpers over Boost.JSON for reading untrusted input with clear errors.
namespace parley::json {

namespace bj = boost::json;

// Parses text; Invalid with the parser's reason and offset when it is not JSON.
Result<bj::value> parse(std::string_view text);
// Parses text that must be an object.
Result<bj::object> parseObject(std::string_view text);

// Required fields: Invalid "field 'x' is required" / "field 'x' must be a string".
Result<std::string> requireString(const bj::object& o, std::string_view key);
Result<std::int64_t> requireInt(const bj::object& o, std::string_view key);
Result<bool> requireBool(const bj::object& o, std::string_view key);
Result<const bj::object*> requireObject(const bj::object& o, std::string_view key);
Result<const bj::array*> requireArray(const bj::object& o, std::string_view key);

// Optional fields: nullopt when absent or null; Invalid when present with the wrong type.
Result<std::optional<std::string>> optString(const bj::object& o, std::string_view key);
Result<std::optional<std::int64_t>> optInt(const bj::object& o, std::string_view key);
Result<std::optional<bool>> optBool(const bj::object& o, std::string_view key);

// Lenient readers for trusted data (our own store): default when absent or mistyped.
std::string getString(const bj::object& o, std::string_view key, std::string_view def = "");
std::int64_t getInt(const bj::object& o, std::string_view key, std::int64_t def = 0);

// Compact serialisation.
std::string dump(const bj::value& v);

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF): the
// only text that may go into JSON. Text from a parsed JSON document always is; percent-decoded
// URL parts and other raw bytes need checking before they are echoed into a JSON response.
bool isValidUtf8(std::string_view s);

// A JSON number read as a double, converted to an int64 without undefined behaviour: a double
// outside int64's range (1e300, -1e19, infinities, NaN) has no int64 and converting it with a
// cast is undefined. exactInt64: the value when `d` is a whole number within range.
// truncatedInt64: `d` rounded toward zero, when that is within range.
std::optional<std::int64_t> exactInt64(double d);
std::optional<std::int64_t> truncatedInt64(double d);

}  // namespace parley::json
