#pragma once

// Per-account data the turns read often, kept in memory so a turn does not go to the store:
// the skill list, the hook functions, the image allowlist. Each class is thread-safe and private
// to the connector; its store must outlive it.

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "connector/richcontent/richcontent_handler.h"
#include "store/store.h"

namespace parley::connector {

// The account skill list (spec §2.4: names resolve through the account's list). Turns read
// skills (the chat line's skillName, TRANSFER and escalation targets) from here, not from the
// store. An entry is reloaded when older than kTtl, and on a miss (a skill created since) at
// most once per kMissReload; bot create/update refresh it (put()).
class SkillCache {
 public:
  static constexpr auto kTtl = std::chrono::seconds(30);
  static constexpr auto kMissReload = std::chrono::seconds(1);

  explicit SkillCache(store::AccountStore& accounts) : accounts_(accounts) {}

  void put(const AccountId& acc, std::vector<store::Skill> skills);
  // Drops the account's list: the next read loads it (another node changed a skill).
  void forget(const AccountId& acc);
  // The skill's name, or "" when the account has no such skill. May read the store.
  std::string name(const AccountId& acc, const SkillId& id);
  // The id of the skill named `name` (case-sensitive). May read the store.
  std::optional<SkillId> byName(const AccountId& acc, const std::string& name);
  // How many times a skill list was read from the store (tests: turns use the cache).
  std::uint64_t loads() const { return loads_.load(); }

 private:
  template <class Pred>
  std::optional<store::Skill> find(const AccountId& acc, Pred pred);

  struct Entry {
    std::vector<store::Skill> skills;
    std::chrono::steady_clock::time_point loaded_at;
  };
  store::AccountStore& accounts_;
  Mutex mu_;
  std::map<std::string, Entry> by_account_ PARLEY_GUARDED_BY(mu_);
  std::atomic<std::uint64_t> loads_{0};
};

// The hook functions (spec §3.5): the account's functions on a hook event whose state is
// deployed (Productive or Modified), in name order. Cached per account for kTtl (a function
// deployed or undeployed on a hook event takes effect within that time); read only for bots
// that enable a hook.
class HookCache {
 public:
  static constexpr const char* kPreHookEvent = "bot_connectors_pre_hook";
  static constexpr const char* kPostHookEvent = "bot_connectors_post_hook";
  static constexpr const char* kErrorHookEvent = "bot_connectors_error_hook";
  static constexpr auto kTtl = std::chrono::seconds(10);

  explicit HookCache(store::FunctionStore& functions) : functions_(functions) {}

  // The functions on `event` (one of the k*HookEvent), in name order. May read the store; a
  // failed read is logged and gives none.
  std::vector<FunctionId> functions(const AccountId& acc, const std::string& event);
  // Drops the account's entry: the next read loads it (a function changed on another node).
  void forget(const AccountId& acc);

 private:
  struct Entry {
    std::map<std::string, std::vector<FunctionId>> by_event;
    std::chrono::steady_clock::time_point loaded_at;
  };
  store::FunctionStore& functions_;
  Mutex mu_;
  std::map<std::string, Entry> by_account_ PARLEY_GUARDED_BY(mu_);
};

// The account image allowlists (spec §2.6 `messaging.rich.content.valid.urls`): the stored ones
// (BotStore), loaded at start (load()) and kept current by put()/remove(), so reading them never
// touches the store; accounts with none stored fall back to `fallback`.
class ImageAllowlists {
 public:
  // At most this many entries of at most 2048 characters, no duplicates.
  static constexpr std::size_t kMaxEntries = 200;

  ImageAllowlists(store::AccountStore& accounts, store::BotStore& bots,
                  richcontent::AllowlistProvider fallback)
      : accounts_(accounts), bots_(bots), fallback_(std::move(fallback)) {}

  // Reads every account's stored list. Blocking.
  Status load();
  // The stored list, else the fallback's, else nullopt (HTTPS only). In memory.
  std::optional<std::vector<std::string>> forAccount(const AccountId& acc) const;
  // REST forms: {configured, entries}; PUT {entries:[...]} (validated, stored, used at once);
  // DELETE (NotFound when none is stored). put() and remove() are blocking.
  boost::json::object json(const AccountId& acc) const;
  Result<boost::json::object> put(const AccountId& acc, const boost::json::object& body);
  Status remove(const AccountId& acc);
  // Reads the account's stored list again (another node changed it). Blocking.
  Status reload(const AccountId& acc);

 private:
  store::AccountStore& accounts_;
  store::BotStore& bots_;
  richcontent::AllowlistProvider fallback_;
  mutable Mutex mu_;
  std::map<std::string, std::vector<std::string>> stored_ PARLEY_GUARDED_BY(mu_);
  // Serialises put/remove (store write, then cache update) so the cache follows the store's
  // order; readers only take `mu_`, never wait for a store write. Guards no member of its own.
  Mutex write_mu_;
};

// Validates the body of PUT bots/image-allowlist: `entries`, each an exact image host (letters,
// digits, '-', '.'; labels <= 63, <= 253 characters; no port or path) or an https:// URL prefix
// (<= 2048 characters); no wildcards, no duplicates, at most ImageAllowlists::kMaxEntries.
Result<std::vector<std::string>> parseImageAllowlist(const boost::json::object& body);

}  // namespace parley::connector
