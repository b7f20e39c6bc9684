#include "store/sqlite/account_store.h"

#include <cstdint>
#include <string>
#include <vector>

#include "store/sqlite/query.h"
#include "store/sqlite/rows.h"
#include "store/store_util.h"

namespace parley::store::sqlite {
namespace {

// Deletes the user's sessions and API keys (inside the caller's write).
Status deleteCredentialsIn(Conn& c, const AccountId& acc, const UserId& user) {
  PARLEY_STORE_TRY(asStatus(
      execute(c, "DELETE FROM sessions WHERE account=? AND user_id=?", acc.str(), user.str())));
  return asStatus(
      execute(c, "DELETE FROM api_keys WHERE account=? AND user_id=?", acc.str(), user.str()));
}

// The id for a new row of `table`: `requested` when given (or "" when it is taken), else the
// account's next counter value that is free. Moves the counter past numeric ids it hands out.
Result<std::string> assignId(Conn& c, const AccountId& acc, const char* kind, std::int64_t first,
                             const std::string& table, const std::string& requested) {
  auto counter = selectOne<std::int64_t>(
      c, "SELECT next_id FROM id_counters WHERE account=? AND kind=?",
      [](Query& q) { return q.i64(0); }, acc.str(), kind);
  if (!counter) return std::unexpected(counter.error());
  std::int64_t next = counter->value_or(first);
  const std::string exists_sql = "SELECT 1 FROM " + table + " WHERE account=? AND id=?";
  std::string id;
  if (requested.empty()) {
    for (;;) {
      auto taken = exists(c, exists_sql, acc.str(), std::to_string(next));
      if (!taken) return std::unexpected(taken.error());
      if (!*taken) break;
      ++next;
    }
    id = std::to_string(next++);
  } else {
    auto taken = exists(c, exists_sql, acc.str(), requested);
    if (!taken) return std::unexpected(taken.error());
    if (*taken) return std::string();
    id = requested;
    if (auto n = internal::numericId(requested); n && *n >= next) next = *n + 1;
  }
  auto saved =
      execute(c, "INSERT OR REPLACE INTO id_counters(account, kind, next_id) VALUES(?,?,?)",
              acc.str(), kind, next);
  if (!saved) return std::unexpected(saved.error());
  return id;
}

std::string userMissing(const AccountId& acc, const UserId& id) {
  return "user " + id.str() + " does not exist in account " + acc.str();
}

}  // namespace

Status SqliteAccountStore::createAccount(const Account& a) {
  if (a.id.empty()) return invalid("account id is required");
  const TimeMs created = a.created_at ? a.created_at : db_.now();
  return db_.write([&](Conn& c) {
    return conflictAs(
        asStatus(execute(c,
                         "INSERT INTO accounts(" + cols(kAccountCols) + ") VALUES(?,?,?,?,?,?,?)",
                         a.id.str(), a.name, a.ttr_urgent_s, a.ttr_prioritized_s, a.ttr_normal_s,
                         created, accountStatusName(a.status))),
        "account " + a.id.str() + " already exists");
  });
}

Result<Account> SqliteAccountStore::getAccount(const AccountId& id) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<Account>(c, "SELECT " + cols(kAccountCols) + " FROM accounts WHERE id=?",
                              accountRow, id.str());
  });
  return found(std::move(r), "account " + id.str() + " does not exist");
}

Result<std::vector<Account>> SqliteAccountStore::listAccounts() {
  return db_.read([&](Conn& c) {
    return selectAll<Account>(c, "SELECT " + cols(kAccountCols) + " FROM accounts ORDER BY id",
                              accountRow);
  });
}

Status SqliteAccountStore::setAccountStatus(const AccountId& id, AccountStatus status) {
  return db_.write([&](Conn& c) {
    return changedOrNotFound(
        execute(c, "UPDATE accounts SET status=? WHERE id=?", accountStatusName(status), id.str()),
        "account " + id.str() + " does not exist");
  });
}

Result<User> SqliteAccountStore::createUser(User u) {
  if (u.account.empty()) return invalid("user account is required");
  if (u.login_name.empty()) return invalid("user loginName is required");
  if (u.created_at == 0) u.created_at = db_.now();
  Status st = db_.write([&](Conn& c) -> Status {
    auto taken = exists(c, "SELECT 1 FROM users WHERE account=? AND login_name=?", u.account.str(),
                        u.login_name);
    if (!taken) return asStatus(taken);
    if (*taken)
      return conflict("login name '" + u.login_name + "' is taken in account " + u.account.str());
    auto id = assignId(c, u.account, "user", kFirstUserId, "users", u.id.str());
    if (!id) return asStatus(id);
    if (id->empty())
      return conflict("user " + u.id.str() + " already exists in account " + u.account.str());
    u.id = UserId(*id);
    return asStatus(
        execute(c, "INSERT INTO users(" + cols(kUserCols) + ") VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                u.account.str(), u.id.str(), u.pid, u.login_name, u.password_hash,
                rolesJson(u.roles), userTypeName(u.type), skillsJson(u.skills),
                u.max_open_conversations, u.created_at, userStatusName(u.status)));
  });
  if (!st) return std::unexpected(st.error());
  return u;
}

Status SqliteAccountStore::updateUser(const User& u) {
  return db_.write([&](Conn& c) -> Status {
    auto other = selectOne<std::string>(c, "SELECT id FROM users WHERE account=? AND login_name=?",
                                        textColumn, u.account.str(), u.login_name);
    if (!other) return asStatus(other);
    if (*other && **other != u.id.str())
      return conflict("login name '" + u.login_name + "' is taken in account " + u.account.str());
    auto n = execute(c,
                     "UPDATE users SET pid=?, login_name=?, password_hash=?, roles_json=?, "
                     "type=?, skills_json=?, max_open_conversations=?, created_at=?, status=? "
                     "WHERE account=? AND id=?",
                     u.pid, u.login_name, u.password_hash, rolesJson(u.roles), userTypeName(u.type),
                     skillsJson(u.skills), u.max_open_conversations, u.created_at,
                     userStatusName(u.status), u.account.str(), u.id.str());
    return changedOrNotFound(n, userMissing(u.account, u.id));
  });
}

Status SqliteAccountStore::deleteUser(const AccountId& acc, const UserId& id) {
  return db_.write([&](Conn& c) -> Status {
    PARLEY_STORE_TRY(changedOrNotFound(
        execute(c, "DELETE FROM users WHERE account=? AND id=?", acc.str(), id.str()),
        userMissing(acc, id)));
    return deleteCredentialsIn(c, acc, id);
  });
}

Result<User> SqliteAccountStore::getUser(const AccountId& acc, const UserId& id) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<User>(c, "SELECT " + cols(kUserCols) + " FROM users WHERE account=? AND id=?",
                           userRow, acc.str(), id.str());
  });
  return found(std::move(r), userMissing(acc, id));
}

Result<User> SqliteAccountStore::getUserByLogin(const AccountId& acc,
                                                const std::string& login_name) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<User>(
        c, "SELECT " + cols(kUserCols) + " FROM users WHERE account=? AND login_name=?", userRow,
        acc.str(), login_name);
  });
  return found(std::move(r),
               "no user with login name '" + login_name + "' in account " + acc.str());
}

Result<std::vector<User>> SqliteAccountStore::listUsers(const AccountId& acc) {
  return db_.read([&](Conn& c) {
    return selectAll<User>(c,
                           "SELECT " + cols(kUserCols) +
                               " FROM users WHERE account=? ORDER BY length(CAST(id AS BLOB)), id",
                           userRow, acc.str());
  });
}

Status SqliteAccountStore::putSession(const Session& s) {
  if (s.bearer_hash.empty()) return invalid("session bearer hash is required");
  return db_.write([&](Conn& c) {
    return asStatus(execute(
        c, "INSERT OR REPLACE INTO sessions(" + cols(kSessionCols) + ") VALUES(?,?,?,?,?,?)",
        s.bearer_hash, s.csrf, s.account.str(), s.user.str(), s.created_at, s.expires_at));
  });
}

Result<Session> SqliteAccountStore::getSession(const std::string& bearer_hash) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<Session>(c,
                              "SELECT " + cols(kSessionCols) + " FROM sessions WHERE bearer_hash=?",
                              sessionRow, bearer_hash);
  });
  return found(std::move(r), "session does not exist");
}

Status SqliteAccountStore::deleteSession(const std::string& bearer_hash) {
  return db_.write([&](Conn& c) {
    return asStatus(execute(c, "DELETE FROM sessions WHERE bearer_hash=?", bearer_hash));
  });
}

Status SqliteAccountStore::deleteExpiredSessions(TimeMs now) {
  return db_.write([&](Conn& c) {
    return asStatus(execute(c, "DELETE FROM sessions WHERE expires_at<=?", now));
  });
}

Status SqliteAccountStore::putApiKey(const ApiKey& k) {
  if (k.key_hash.empty()) return invalid("api key hash is required");
  if (k.id.empty()) return invalid("api key id is required");
  const TimeMs created = k.created_at ? k.created_at : db_.now();
  return db_.write([&](Conn& c) {
    // Not OR REPLACE: that would delete another key that has the same id.
    return conflictAs(
        asStatus(execute(c,
                         "INSERT INTO api_keys(" + cols(kApiKeyCols) +
                             ") VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(key_hash) DO UPDATE SET "
                             "account=excluded.account, user_id=excluded.user_id, "
                             "name=excluded.name, created_at=excluded.created_at, "
                             "id=excluded.id, scopes_json=excluded.scopes_json, "
                             "expires_at=excluded.expires_at, created_by=excluded.created_by",
                         k.key_hash, k.account.str(), k.user.str(), k.name, created, k.id,
                         rolesJson(k.scopes), k.expires_at, k.created_by.str())),
        "api key " + k.id + " already exists in account " + k.account.str());
  });
}

Result<ApiKey> SqliteAccountStore::getApiKey(const std::string& key_hash) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<ApiKey>(c, "SELECT " + cols(kApiKeyCols) + " FROM api_keys WHERE key_hash=?",
                             apiKeyRow, key_hash);
  });
  return found(std::move(r), "api key does not exist");
}

Result<std::vector<ApiKey>> SqliteAccountStore::listApiKeys(const AccountId& acc) {
  return db_.read([&](Conn& c) {
    return selectAll<ApiKey>(
        c, "SELECT " + cols(kApiKeyCols) + " FROM api_keys WHERE account=? ORDER BY created_at, id",
        apiKeyRow, acc.str());
  });
}

Status SqliteAccountStore::deleteApiKey(const AccountId& acc, const std::string& id) {
  return db_.write([&](Conn& c) {
    return changedOrNotFound(
        execute(c, "DELETE FROM api_keys WHERE account=? AND id=?", acc.str(), id),
        "api key " + id + " does not exist in account " + acc.str());
  });
}

Status SqliteAccountStore::deleteCredentials(const AccountId& acc, const UserId& user) {
  return db_.write([&](Conn& c) { return deleteCredentialsIn(c, acc, user); });
}

Result<Skill> SqliteAccountStore::createSkill(Skill s) {
  if (s.account.empty()) return invalid("skill account is required");
  if (s.name.empty()) return invalid("skill name is required");
  if (s.created_at == 0) s.created_at = db_.now();
  Status st = db_.write([&](Conn& c) -> Status {
    auto taken =
        exists(c, "SELECT 1 FROM skills WHERE account=? AND name=?", s.account.str(), s.name);
    if (!taken) return asStatus(taken);
    if (*taken)
      return conflict("skill '" + s.name + "' already exists in account " + s.account.str());
    auto id = assignId(c, s.account, "skill", kFirstSkillId, "skills", s.id.str());
    if (!id) return asStatus(id);
    if (id->empty())
      return conflict("skill " + s.id.str() + " already exists in account " + s.account.str());
    s.id = SkillId(*id);
    return asStatus(execute(c, "INSERT INTO skills(" + cols(kSkillCols) + ") VALUES(?,?,?,?)",
                            s.account.str(), s.id.str(), s.name, s.created_at));
  });
  if (!st) return std::unexpected(st.error());
  return s;
}

Status SqliteAccountStore::deleteSkill(const AccountId& acc, const SkillId& id) {
  return db_.write([&](Conn& c) {
    return changedOrNotFound(
        execute(c, "DELETE FROM skills WHERE account=? AND id=?", acc.str(), id.str()),
        "skill " + id.str() + " does not exist in account " + acc.str());
  });
}

Result<std::vector<Skill>> SqliteAccountStore::listSkills(const AccountId& acc) {
  return db_.read([&](Conn& c) {
    return selectAll<Skill>(c,
                            "SELECT " + cols(kSkillCols) +
                                " FROM skills WHERE account=? "
                                "ORDER BY length(CAST(id AS BLOB)), id",
                            skillRow, acc.str());
  });
}

Status SqliteAccountStore::putAgentState(const AgentState& s) {
  const TimeMs updated = s.updated_at ? s.updated_at : db_.now();
  return db_.write([&](Conn& c) {
    return asStatus(execute(c,
                            "INSERT OR REPLACE INTO agent_states(account, user_id, "
                            "availability, updated_at) VALUES(?,?,?,?)",
                            s.account.str(), s.user.str(), availabilityName(s.availability),
                            updated));
  });
}

Result<std::vector<AgentState>> SqliteAccountStore::listAgentStates(const AccountId& acc) {
  return db_.read([&](Conn& c) {
    return selectAll<AgentState>(c,
                                 "SELECT " + cols(kAgentStateCols) +
                                     " FROM agent_states WHERE account=? "
                                     "ORDER BY length(CAST(user_id AS BLOB)), user_id",
                                 agentStateRow, acc.str());
  });
}

}  // namespace parley::store::sqlite
