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

}  // namespace parley::json
