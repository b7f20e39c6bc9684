#include "common/names.h"

#include <fmt/format.h>

#include <cstdint>
#include <optional>

namespace parley {
namespace {

// Decodes the UTF-8 sequence at s[i]; advances i. nullopt when malformed (overlong, surrogate,
// out of range, truncated).
std::optional<std::uint32_t> nextCodePoint(std::string_view s, std::size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int len = 0;
  std::uint32_t cp = 0;
  std::uint32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    cp = b0 & 0x1F;
    min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    cp = b0 & 0x0F;
    min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    cp = b0 & 0x07;
    min = 0x10000;
  } else {
    return std::nullopt;
  }
  if (i + static_cast<std::size_t>(len) > s.size()) return std::nullopt;
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
    if ((b & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
  i += static_cast<std::size_t>(len);
  return cp;
}

}  // namespace

Status validateName(std::string_view what, std::string_view value, std::size_t max_chars) {
  if (value.empty()) return invalid(fmt::format("{} must not be empty", what));
  std::size_t chars = 0;
  std::size_t i = 0;
  while (i < value.size()) {
    const std::size_t at = i;
    auto cp = nextCodePoint(value, i);
    if (!cp)
      return invalid(
          fmt::format("{} is not valid UTF-8 (at byte {}); send it as UTF-8 text", what, at));
    if (*cp < 0x20 || (*cp >= 0x7F && *cp <= 0x9F))
      return invalid(fmt::format(
          "{} contains the control character U+{:04X} at character {}; names may contain "
          "letters, digits, punctuation and spaces, but no control characters (NUL, tab, "
          "newline, ...)",
          what, *cp, chars + 1));
    ++chars;
  }
  if (chars > max_chars)
    return invalid(fmt::format("{} is {} characters long; use at most {}", what, chars, max_chars));
  if (value.front() == ' ' || value.back() == ' ')
    return invalid(fmt::format("{} must not begin or end with a space", what));
  return {};
}

}  // namespace parley
