#pragma once

// Private helpers shared by the store implementations (memory/ and sqlite/). Not part of the
// store contract; other subsystems must not include this header.

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
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

// appendMessage(c, m): `c` must be the conversation as this message leaves it — its
// next_sequence the message's sequence + 1 and its updated_at the message's server_ts (what
// the conversation engine passes). The SQLite store relies on it: an append writes only the
// message, and reads take the counters from the conversation's last message.
inline Status checkAppendCounters(const Conversation& c, const Message& m) {
  if (c.next_sequence != m.sequence + 1)
    return invalid("appending message " + std::to_string(m.sequence) + " to conversation " +
                   c.id.str() + ": the conversation's next_sequence must be " +
                   std::to_string(m.sequence + 1) + ", not " + std::to_string(c.next_sequence));
  if (c.updated_at != m.server_ts)
    return invalid("appending message " + std::to_string(m.sequence) + " to conversation " +
                   c.id.str() +
                   ": the conversation's updated_at must be the message's server_ts (" +
                   std::to_string(m.server_ts) + "), not " + std::to_string(c.updated_at));
  return {};
}

}  // namespace parley::store::internal
