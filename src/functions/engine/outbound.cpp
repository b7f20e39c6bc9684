#include "functions/engine/outbound.h"

#include <algorithm>
#include <cctype>

namespace parley::functions::engine {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

bool hostAllowed(std::string_view host_in, const std::vector<std::string>& allowlist) {
  std::string host = lower(host_in);
  if (!host.empty() && host.back() == '.') host.pop_back();
  if (host.empty()) return false;
  for (const auto& entry_in : allowlist) {
    std::string entry = lower(entry_in);
    if (entry == host) return true;
    if (entry.size() > 2 && entry.starts_with("*.")) {
      std::string_view suffix = std::string_view(entry).substr(1);  // ".example.com"
      if (host.size() > suffix.size() && host.ends_with(suffix)) {
        std::string_view label = std::string_view(host).substr(0, host.size() - suffix.size());
        if (label.find('.') == std::string_view::npos) return true;
      }
    }
  }
  return false;
}

bool RateLimiter::tryAcquire(const std::string& key) {
  TimeMs second = clock_.nowMs() / 1000;
  std::lock_guard lock(mu_);
  if (windows_.size() > 10'000) {
    std::erase_if(windows_, [&](const auto& kv) { return kv.second.second != second; });
  }
  auto& w = windows_[key];
  if (w.second != second) {
    w.second = second;
    w.count = 0;
  }
  if (w.count >= per_second_) return false;
  ++w.count;
  return true;
}

}  // namespace parley::functions::engine
