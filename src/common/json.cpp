#include "common/json.h"

#include <fmt/format.h>

#include <cmath>

namespace parley::json {

Result<bj::value> parse(std::string_view text) {
  boost::system::error_code ec;
  bj::parse_options opts;
  opts.max_depth = 64;
  bj::value v = bj::parse(text, ec, {}, opts);
  if (ec) return invalid(fmt::format("body is not valid JSON: {}", ec.message()));
  return v;
}

Result<bj::object> parseObject(std::string_view text) {
  auto v = parse(text);
  if (!v) return std::unexpected(v.error());
  if (!v->is_object()) return invalid("body must be a JSON object");
  return std::move(v->as_object());
}

namespace {
const bj::value* find(const bj::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return nullptr;
  return &it->value();
}
std::unexpected<Error> missing(std::string_view key) {
  return invalid(fmt::format("field '{}' is required", key));
}
std::unexpected<Error> mistyped(std::string_view key, std::string_view type) {
  return invalid(fmt::format("field '{}' must be {}", key, type));
}
}  // namespace

Result<std::string> requireString(const bj::object& o, std::string_view key) {
  const bj::value* v = find(o, key);
  if (!v) return missing(key);
  if (!v->is_string()) return mistyped(key, "a string");
  return std::string(v->as_string());
}

Result<std::int64_t> requireInt(const bj::object& o, std::string_view key) {
  const bj::value* v = find(o, key);
  if (!v) return missing(key);
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64() && v->as_uint64() <= INT64_MAX)
    return static_cast<std::int64_t>(v->as_uint64());
  if (v->is_double()) {
    if (auto i = exactInt64(v->as_double())) return *i;
  }
  return mistyped(key, "an integer");
}

Result<bool> requireBool(const bj::object& o, std::string_view key) {
  const bj::value* v = find(o, key);
  if (!v) return missing(key);
  if (!v->is_bool()) return mistyped(key, "true or false");
  return v->as_bool();
}

Result<const bj::object*> requireObject(const bj::object& o, std::string_view key) {
  const bj::value* v = find(o, key);
  if (!v) return missing(key);
  if (!v->is_object()) return mistyped(key, "an object");
  return &v->as_object();
}

Result<const bj::array*> requireArray(const bj::object& o, std::string_view key) {
  const bj::value* v = find(o, key);
  if (!v) return missing(key);
  if (!v->is_array()) return mistyped(key, "an array");
  return &v->as_array();
}

Result<std::optional<std::string>> optString(const bj::object& o, std::string_view key) {
  if (!find(o, key)) return std::optional<std::string>();
  auto r = requireString(o, key);
  if (!r) return std::unexpected(r.error());
  return std::optional<std::string>(std::move(*r));
}

Result<std::optional<std::int64_t>> optInt(const bj::object& o, std::string_view key) {
  if (!find(o, key)) return std::optional<std::int64_t>();
  auto r = requireInt(o, key);
  if (!r) return std::unexpected(r.error());
  return std::optional<std::int64_t>(*r);
}

Result<std::optional<bool>> optBool(const bj::object& o, std::string_view key) {
  if (!find(o, key)) return std::optional<bool>();
  auto r = requireBool(o, key);
  if (!r) return std::unexpected(r.error());
  return std::optional<bool>(*r);
}

std::string getString(const bj::object& o, std::string_view key, std::string_view def) {
  const bj::value* v = find(o, key);
  if (v && v->is_string()) return std::string(v->as_string());
  return std::string(def);
}

std::int64_t getInt(const bj::object& o, std::string_view key, std::int64_t def) {
  const bj::value* v = find(o, key);
  if (!v) return def;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->as_uint64());
  if (v->is_double()) return truncatedInt64(v->as_double()).value_or(def);
  return def;
}

bool isValidUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = 0;
    unsigned char lo = 0x80;  // the range of the second byte (RFC 3629 table)
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // beyond U+10FFFF
    } else {
      return false;  // a continuation byte, C0/C1 (overlong) or F5..FF
    }
    if (s.size() - i <= n) return false;
    auto c1 = static_cast<unsigned char>(s[i + 1]);
    if (c1 < lo || c1 > hi) return false;
    for (std::size_t k = 2; k <= n; ++k) {
      auto ck = static_cast<unsigned char>(s[i + k]);
      if (ck < 0x80 || ck > 0xBF) return false;
    }
    i += n + 1;
  }
  return true;
}

std::optional<std::int64_t> truncatedInt64(double d) {
  // [-2^63, 2^63): both bounds are exact doubles; NaN fails both comparisons.
  constexpr double kTwo63 = 9223372036854775808.0;
  double t = std::trunc(d);
  if (!(t >= -kTwo63 && t < kTwo63)) return std::nullopt;
  return static_cast<std::int64_t>(t);
}

std::optional<std::int64_t> exactInt64(double d) {
  if (std::trunc(d) != d) return std::nullopt;  // fractional, or NaN
  return truncatedInt64(d);
}

std::string dump(const bj::value& v) { return bj::serialize(v); }

}  // namespace parley::json
