#pragma once

// A cache of the users of each account (UserId ↔ PId, type), so protocol notifications can be
// built on a connection strand without blocking on the store. Filled at start (preload), kept
// current by the REST user handlers (put/remove) and refreshed on a miss (reload, on the
// blocking executor). Thread-safe: one mutex guards the maps.

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/ids.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "server/http_types.h"
#include "store/store.h"

namespace parley::server::protocol {

class Directory {
 public:
  // `accounts` and `blocking` must outlive the directory.
  Directory(store::AccountStore& accounts, BlockingExecutor& blocking);

  // Loads every user of every account. Blocking; call before serving.
  Status preloadAll();

  std::optional<std::string> pidOf(const AccountId& acc, const std::string& user_id) const;
  std::optional<std::string> uidOfPid(const AccountId& acc, const std::string& pid) const;
  std::optional<store::UserType> typeOf(const AccountId& acc, const std::string& user_id) const;

  void put(const store::User& u);
  void remove(const AccountId& acc, const UserId& user);

  // Re-reads the account's users on the blocking executor, then calls `done` there.
  void reload(const AccountId& acc, std::function<void()> done);
  // Blocking variant of reload (call on the blocking executor only).
  void reloadNow(const AccountId& acc);

 private:
  struct Entry {
    std::string pid;
    store::UserType type = store::UserType::kHuman;
  };
  static std::string key(const AccountId& acc, const std::string& id) {
    return acc.str() + "/" + id;
  }

  store::AccountStore& accounts_;
  BlockingExecutor& blocking_;
  mutable Mutex mu_;
  std::unordered_map<std::string, Entry> by_uid_ PARLEY_GUARDED_BY(mu_);        // acc/uid → entry
  std::unordered_map<std::string, std::string> by_pid_ PARLEY_GUARDED_BY(mu_);  // acc/pid → uid
};

}  // namespace parley::server::protocol
