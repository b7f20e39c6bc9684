#pragma once

// The profiles consumers set with `userprofile.SetUserProfile` (JSON text holding their
// engagement attributes), kept in memory and bounded in size. The protocol hub writes them (and
// drops a consumer's profile with its last socket); the bot connector reads them when a bot takes
// a conversation (its SDEs). Owned by main, shared by both, so neither reaches into the other.
// Thread-safe: one mutex, held only for a map operation; never calls out.

#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/ids.h"
#include "common/result.h"
#include "common/thread_annotations.h"

namespace parley::conversation {

// What readers of profiles need (the connector). Implementations must not block.
class ConsumerProfileReader {
 public:
  virtual ~ConsumerProfileReader() = default;
  // The consumer's profile (JSON text), or nullopt when none is held.
  virtual std::optional<std::string> get(const AccountId& acc, const ConsumerId& c) const = 0;
};

class ConsumerProfiles final : public ConsumerProfileReader {
 public:
  struct Limits {
    // Largest profile kept (as JSON text). Default: 16 KiB.
    std::size_t max_profile_bytes = 16 << 10;
    // All profiles together. Default: 64 MiB.
    std::size_t max_total_bytes = 64 << 20;
  };

  ConsumerProfiles() = default;
  explicit ConsumerProfiles(Limits limits) : limits_(limits) {}

  // Keeps (or replaces) the consumer's profile. TooLarge above max_profile_bytes, LimitExceeded
  // when all profiles together would exceed max_total_bytes (the replaced one counts no more);
  // on error nothing changes.
  Status set(const AccountId& acc, const ConsumerId& c, std::string profile_json);
  void erase(const AccountId& acc, const ConsumerId& c);
  std::optional<std::string> get(const AccountId& acc, const ConsumerId& c) const override;

  std::size_t count() const;
  std::size_t bytes() const;
  const Limits& limits() const { return limits_; }

 private:
  static std::string key(const AccountId& acc, const ConsumerId& c) {
    return acc.str() + "/" + c.str();
  }

  const Limits limits_;
  mutable Mutex mu_;
  // "acc/consumer" → profile
  std::unordered_map<std::string, std::string> profiles_ PARLEY_GUARDED_BY(mu_);
  std::size_t bytes_ PARLEY_GUARDED_BY(mu_) = 0;
};

}  // namespace parley::conversation
