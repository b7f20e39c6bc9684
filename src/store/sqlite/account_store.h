#pragma once

// The SQLite AccountStore: accounts, users, sessions, API keys, skills, agent states. Private to
// store/sqlite.

#include "store/sqlite/db.h"
#include "store/store.h"

namespace parley::store::sqlite {

// Accounts, users, credentials, skills and agent states on the shared Db. Thread-safe (see
// Db); owned by the SqliteStore.
class SqliteAccountStore final : public AccountStore {
 public:
  // REQUIRES: `db` outlives this.
  explicit SqliteAccountStore(Db& db) : db_(db) {}

  // AccountStore
  Status createAccount(const Account& a) override;
  Result<Account> getAccount(const AccountId& id) override;
  Result<std::vector<Account>> listAccounts() override;
  Status setAccountStatus(const AccountId& id, AccountStatus status) override;
  Result<User> createUser(User u) override;
  Status updateUser(const User& u) override;
  Status deleteUser(const AccountId& acc, const UserId& id) override;
  Result<User> getUser(const AccountId& acc, const UserId& id) override;
  Result<User> getUserByLogin(const AccountId& acc, const std::string& login_name) override;
  Result<std::vector<User>> listUsers(const AccountId& acc) override;
  Status putSession(const Session& s) override;
  Result<Session> getSession(const std::string& bearer_hash) override;
  Status deleteSession(const std::string& bearer_hash) override;
  Status deleteExpiredSessions(TimeMs now) override;
  Status putApiKey(const ApiKey& k) override;
  Result<ApiKey> getApiKey(const std::string& key_hash) override;
  Result<std::vector<ApiKey>> listApiKeys(const AccountId& acc) override;
  Status deleteApiKey(const AccountId& acc, const std::string& id) override;
  Status deleteCredentials(const AccountId& acc, const UserId& user) override;
  Result<Skill> createSkill(Skill s) override;
  Status deleteSkill(const AccountId& acc, const SkillId& id) override;
  Result<std::vector<Skill>> listSkills(const AccountId& acc) override;
  Status putAgentState(const AgentState& s) override;
  Result<std::vector<AgentState>> listAgentStates(const AccountId& acc) override;

 private:
  Db& db_;
};

}  // namespace parley::store::sqlite
