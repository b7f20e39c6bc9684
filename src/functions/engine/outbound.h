#pragma once

// Outbound-request policy for the Toolbelt HTTPClient: the domain allowlist (§4.9) and the
// per-function rate limit (§4.3). Plain C++.

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"

namespace parley::functions::engine {

// The body LivePerson's emulator returns when a host is not allowlisted.
inline constexpr std::string_view kForbiddenBody =
    "You do not have access to the page or resource you are trying to reach\n";

// True when `host` is allowed by `allowlist`: an entry equal to the host (case-insensitive), or
// a one-level wildcard entry "*.example.com" that matches exactly one more label
// ("a.example.com", not "example.com" and not "a.b.example.com").
bool hostAllowed(std::string_view host, const std::vector<std::string>& allowlist);

// Fixed one-second windows per key. Thread-safe.
class RateLimiter {
 public:
  RateLimiter(const Clock& clock, int per_second) : clock_(clock), per_second_(per_second) {}
  // Counts one request for `key`; false when the key already made `per_second` in this second.
  bool tryAcquire(const std::string& key);

 private:
  struct Window {
    TimeMs second = 0;
    int count = 0;
  };
  const Clock& clock_;
  const int per_second_;
  std::mutex mu_;
  std::unordered_map<std::string, Window> windows_;  // GUARDED_BY(mu_)
};

}  // namespace parley::functions::engine
