#include "server/protocol/directory.h"

#include <spdlog/spdlog.h>

namespace parley::server::protocol {

Directory::Directory(store::AccountStore& accounts, BlockingExecutor& blocking)
    : accounts_(accounts), blocking_(blocking) {}

Status Directory::preloadAll() {
  auto accs = accounts_.listAccounts();
  if (!accs) return std::unexpected(accs.error());
  for (const auto& a : *accs) reloadNow(a.id);
  return {};
}

std::optional<std::string> Directory::pidOf(const AccountId& acc,
                                            const std::string& user_id) const {
  MutexLock lock(mu_);
  auto it = by_uid_.find(key(acc, user_id));
  if (it == by_uid_.end() || it->second.pid.empty()) return std::nullopt;
  return it->second.pid;
}

std::optional<std::string> Directory::uidOfPid(const AccountId& acc, const std::string& pid) const {
  MutexLock lock(mu_);
  auto it = by_pid_.find(key(acc, pid));
  if (it == by_pid_.end()) return std::nullopt;
  return it->second;
}

std::optional<store::UserType> Directory::typeOf(const AccountId& acc,
                                                 const std::string& user_id) const {
  MutexLock lock(mu_);
  auto it = by_uid_.find(key(acc, user_id));
  if (it == by_uid_.end()) return std::nullopt;
  return it->second.type;
}

void Directory::put(const store::User& u) {
  MutexLock lock(mu_);
  by_uid_[key(u.account, u.id.str())] = Entry{u.pid, u.type};
  if (!u.pid.empty()) by_pid_[key(u.account, u.pid)] = u.id.str();
}

void Directory::remove(const AccountId& acc, const UserId& user) {
  MutexLock lock(mu_);
  auto it = by_uid_.find(key(acc, user.str()));
  if (it == by_uid_.end()) return;
  by_pid_.erase(key(acc, it->second.pid));
  by_uid_.erase(it);
}

void Directory::reloadNow(const AccountId& acc) {
  auto users = accounts_.listUsers(acc);
  if (!users) {
    spdlog::warn("directory: cannot list users of account {}: {}", acc.str(),
                 users.error().message);
    return;
  }
  for (const auto& u : *users) put(u);
}

void Directory::reload(const AccountId& acc, std::function<void()> done) {
  blocking_.run([this, acc, done = std::move(done)] {
    reloadNow(acc);
    done();
  });
}

}  // namespace parley::server::protocol
