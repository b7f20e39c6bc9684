#include "conversation/consumer_profiles.h"

#include <fmt/format.h>

#include <algorithm>

namespace parley::conversation {

Status ConsumerProfiles::set(const AccountId& acc, const ConsumerId& c, std::string profile_json) {
  if (profile_json.size() > limits_.max_profile_bytes)
    return makeError(ErrorCode::kTooLarge,
                     fmt::format("the user profile is {} bytes; at most {} bytes are kept (send "
                                 "fewer or shorter engagement attributes)",
                                 profile_json.size(), limits_.max_profile_bytes));
  const std::string k = key(acc, c);
  MutexLock lock(mu_);
  auto p = profiles_.find(k);
  const std::size_t old_size = p == profiles_.end() ? 0 : p->second.size();
  const std::size_t total = bytes_ - std::min(bytes_, old_size) + profile_json.size();
  if (total > limits_.max_total_bytes)
    return makeError(ErrorCode::kLimitExceeded,
                     "the server holds as many consumer profiles as it may; try again later");
  bytes_ = total;
  if (p == profiles_.end())
    profiles_.emplace(k, std::move(profile_json));
  else
    p->second = std::move(profile_json);
  return {};
}

void ConsumerProfiles::erase(const AccountId& acc, const ConsumerId& c) {
  MutexLock lock(mu_);
  auto p = profiles_.find(key(acc, c));
  if (p == profiles_.end()) return;
  bytes_ -= std::min(bytes_, p->second.size());
  profiles_.erase(p);
}

std::optional<std::string> ConsumerProfiles::get(const AccountId& acc, const ConsumerId& c) const {
  MutexLock lock(mu_);
  auto it = profiles_.find(key(acc, c));
  if (it == profiles_.end()) return std::nullopt;
  return it->second;
}

std::size_t ConsumerProfiles::count() const {
  MutexLock lock(mu_);
  return profiles_.size();
}

std::size_t ConsumerProfiles::bytes() const {
  MutexLock lock(mu_);
  return bytes_;
}

}  // namespace parley::conversation
