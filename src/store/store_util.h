#pragma once

// Private helpers shared by the store implementations (memory/ and sqlite/). Not part of the
// store contract; other subsystems must not include this header.

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "store/store.h"

namespace parley::store::internal {

// The value of a purely numeric id ("1000" -> 1000); nullopt for anything else.
inline std::optional<std::int64_t> numericId(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// True when a context property has expired at `now` (0 = never expires).
inline bool expired(const ContextProperty& p, TimeMs now) {
  return p.expires_at != 0 && p.expires_at <= now;
}

}  // namespace parley::store::internal
