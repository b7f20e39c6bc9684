#include "store/sqlite/schema.h"

#include <string>

namespace parley::store::sqlite {
namespace {

// Version 1: accounts, users, sessions, API keys, skills, agent states, conversations,
// participants, messages, and the per-account id counters of users and skills.
constexpr const char* kV1 = R"sql(
CREATE TABLE accounts(
  id TEXT PRIMARY KEY, name TEXT NOT NULL, ttr_urgent_s INTEGER NOT NULL,
  ttr_prioritized_s INTEGER NOT NULL, ttr_normal_s INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE id_counters(
  account TEXT NOT NULL, kind TEXT NOT NULL, next_id INTEGER NOT NULL,
  PRIMARY KEY(account, kind)) WITHOUT ROWID;
CREATE TABLE users(
  account TEXT NOT NULL, id TEXT NOT NULL, pid TEXT NOT NULL, login_name TEXT NOT NULL,
  password_hash TEXT NOT NULL, roles_json TEXT NOT NULL, type TEXT NOT NULL,
  skills_json TEXT NOT NULL, max_open_conversations INTEGER NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY(account, id), UNIQUE(account, login_name));
CREATE TABLE sessions(
  bearer TEXT PRIMARY KEY, csrf TEXT NOT NULL, account TEXT NOT NULL, user_id TEXT NOT NULL,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX sessions_expires ON sessions(expires_at);
CREATE TABLE api_keys(
  key_hash TEXT PRIMARY KEY, account TEXT NOT NULL, user_id TEXT NOT NULL, name TEXT NOT NULL,
  created_at INTEGER NOT NULL);
CREATE TABLE skills(
  account TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY(account, id), UNIQUE(account, name));
CREATE TABLE agent_states(
  account TEXT NOT NULL, user_id TEXT NOT NULL, availability TEXT NOT NULL,
  updated_at INTEGER NOT NULL, PRIMARY KEY(account, user_id)) WITHOUT ROWID;
CREATE TABLE conversations(
  id TEXT PRIMARY KEY, account TEXT NOT NULL, consumer TEXT NOT NULL, channel TEXT NOT NULL,
  state TEXT NOT NULL, skill TEXT NOT NULL, ttr_type TEXT NOT NULL, ttr_value_s INTEGER NOT NULL,
  ttr_due_at INTEGER NOT NULL, start_ts INTEGER NOT NULL, end_ts INTEGER NOT NULL,
  updated_at INTEGER NOT NULL, close_reason TEXT NOT NULL, next_sequence INTEGER NOT NULL,
  context_json TEXT NOT NULL);
CREATE INDEX conversations_account ON conversations(account, state, start_ts);
CREATE INDEX conversations_state ON conversations(state, start_ts);
CREATE TABLE participants(
  conversation TEXT NOT NULL, position INTEGER NOT NULL, id TEXT NOT NULL, role TEXT NOT NULL,
  state TEXT NOT NULL, joined_at INTEGER NOT NULL,
  PRIMARY KEY(conversation, position)) WITHOUT ROWID;
CREATE TABLE messages(
  conversation TEXT NOT NULL, sequence INTEGER NOT NULL, server_ts INTEGER NOT NULL,
  originator_id TEXT NOT NULL, originator_pid TEXT NOT NULL, originator_role TEXT NOT NULL,
  audience TEXT NOT NULL, event_json TEXT NOT NULL, metadata_json TEXT NOT NULL,
  PRIMARY KEY(conversation, sequence)) WITHOUT ROWID;
)sql";

// Version 2: the functions platform (functions, deployments, invocation logs, secrets, domain
// allowlist, context session store).
constexpr const char* kV2 = R"sql(
CREATE TABLE functions(
  uuid TEXT PRIMARY KEY, account TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
  event_id TEXT NOT NULL, code TEXT NOT NULL, env_json TEXT NOT NULL, state TEXT NOT NULL,
  version INTEGER NOT NULL, created_by TEXT NOT NULL, updated_by TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, UNIQUE(account, name));
CREATE TABLE deployments(
  seq INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, function_uuid TEXT NOT NULL,
  account TEXT NOT NULL, function_version INTEGER NOT NULL, code TEXT NOT NULL,
  env_json TEXT NOT NULL, state TEXT NOT NULL, error_json TEXT NOT NULL,
  created_by TEXT NOT NULL, created_at INTEGER NOT NULL, deployed_at INTEGER NOT NULL);
CREATE INDEX deployments_function ON deployments(account, function_uuid, created_at);
CREATE TABLE invocation_logs(
  seq INTEGER PRIMARY KEY, function_uuid TEXT NOT NULL, account TEXT NOT NULL,
  request_id TEXT NOT NULL, ts INTEGER NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL,
  extras_json TEXT NOT NULL);
CREATE INDEX invocation_logs_function ON invocation_logs(account, function_uuid, ts);
CREATE TABLE secrets(
  account TEXT NOT NULL, key_name TEXT NOT NULL, ciphertext BLOB NOT NULL,
  updated_at INTEGER NOT NULL, PRIMARY KEY(account, key_name)) WITHOUT ROWID;
CREATE TABLE allowlist(
  account TEXT NOT NULL, position INTEGER NOT NULL, domain TEXT NOT NULL,
  PRIMARY KEY(account, position)) WITHOUT ROWID;
CREATE TABLE context_properties(
  account TEXT NOT NULL, ns TEXT NOT NULL, session_id TEXT NOT NULL, name TEXT NOT NULL,
  value_json TEXT NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY(account, ns, session_id, name)) WITHOUT ROWID;
)sql";

// Version 3: bots (Custom Integration), their recorded turns and pending turns.
constexpr const char* kV3 = R"sql(
CREATE TABLE bots(
  account TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, user_id TEXT NOT NULL,
  config_json TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL, PRIMARY KEY(account, id));
CREATE TABLE turns(
  seq INTEGER PRIMARY KEY, account TEXT NOT NULL, bot TEXT NOT NULL, conversation TEXT NOT NULL,
  turn_id TEXT NOT NULL, ts INTEGER NOT NULL, outcome TEXT NOT NULL, input_json TEXT NOT NULL,
  response_json TEXT NOT NULL, actions_json TEXT NOT NULL, timings_json TEXT NOT NULL,
  error TEXT NOT NULL);
CREATE INDEX turns_bot ON turns(account, bot, ts);
CREATE UNIQUE INDEX turns_id ON turns(account, bot, turn_id);
CREATE TABLE pending_turns(
  seq INTEGER PRIMARY KEY, turn_id TEXT NOT NULL UNIQUE, account TEXT NOT NULL,
  bot TEXT NOT NULL, conversation TEXT NOT NULL, state_json TEXT NOT NULL,
  created_at INTEGER NOT NULL);
)sql";

// Version 4: the per-account rich-content image allowlist (a row = configured).
constexpr const char* kV4 = R"sql(
CREATE TABLE image_allowlists(
  account TEXT PRIMARY KEY, entries_json TEXT NOT NULL) WITHOUT ROWID;
)sql";

// Version 5: messages kept in the order they were written (a rowid table), found through a
// unique (conversation, sequence) index. Version 1 clustered them by conversation (WITHOUT
// ROWID), so every append landed in the middle of the b-tree: the conversation's leaf, and a
// rebalance of three siblings and their parent every few appends — about 1.9 pages written to
// the WAL (and copied again by the checkpoint) per message. Appends now go to the table's
// right edge, which all appends of a transaction share, plus one leaf of the small index
// (~50-byte entries, splitting ~5x less often). Reads by conversation go through the index.
// The copy keeps the old table's order (a plain scan, no sort of the whole table in memory), so
// the messages written before the upgrade stay grouped by conversation.
constexpr const char* kV5 = R"sql(
CREATE TABLE messages_v5(
  id INTEGER PRIMARY KEY,
  conversation TEXT NOT NULL, sequence INTEGER NOT NULL, server_ts INTEGER NOT NULL,
  originator_id TEXT NOT NULL, originator_pid TEXT NOT NULL, originator_role TEXT NOT NULL,
  audience TEXT NOT NULL, event_json TEXT NOT NULL, metadata_json TEXT NOT NULL);
INSERT INTO messages_v5(conversation, sequence, server_ts, originator_id, originator_pid,
                        originator_role, audience, event_json, metadata_json)
  SELECT conversation, sequence, server_ts, originator_id, originator_pid, originator_role,
         audience, event_json, metadata_json
  FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v5 RENAME TO messages;
CREATE UNIQUE INDEX messages_by_conversation ON messages(conversation, sequence);
)sql";

// Version 6: the audit trail of secret reads and writes by functions, newest kept per account.
constexpr const char* kV6 = R"sql(
CREATE TABLE secret_audit(
  seq INTEGER PRIMARY KEY, account TEXT NOT NULL, ts INTEGER NOT NULL,
  function_uuid TEXT NOT NULL, request_id TEXT NOT NULL, invoker TEXT NOT NULL,
  user_id TEXT NOT NULL, login_name TEXT NOT NULL, key_name TEXT NOT NULL, op TEXT NOT NULL,
  outcome TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX secret_audit_by_account ON secret_audit(account, seq);
)sql";

// Version 7: identity. Sessions are keyed by the SHA-256 of their bearer (the bearer itself is
// never stored); the sessions of earlier versions held plaintext bearers and are dropped, so
// everyone logs in again once. API keys get a public id (the first 16 hex digits of the hash
// for existing keys), scopes, an expiry and their creator; users and accounts a status. Sessions
// and keys are indexed by user, for revocation.
constexpr const char* kV7 = R"sql(
DROP TABLE sessions;
CREATE TABLE sessions(
  bearer_hash TEXT PRIMARY KEY, csrf TEXT NOT NULL, account TEXT NOT NULL, user_id TEXT NOT NULL,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX sessions_expires ON sessions(expires_at);
CREATE INDEX sessions_user ON sessions(account, user_id);
ALTER TABLE api_keys ADD COLUMN id TEXT NOT NULL DEFAULT '';
UPDATE api_keys SET id = substr(key_hash, 1, 16);
ALTER TABLE api_keys ADD COLUMN scopes_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX api_keys_id ON api_keys(account, id);
CREATE INDEX api_keys_user ON api_keys(account, user_id);
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'ENABLED';
ALTER TABLE accounts ADD COLUMN status TEXT NOT NULL DEFAULT 'ACTIVE';
)sql";

// Version 8: the mark of a bot turn (store::TurnMark, encoded by encodeTurnMark) on the messages
// it publishes, and on the conversation for a turn that ended without a message.
constexpr const char* kV8 = R"sql(
ALTER TABLE messages ADD COLUMN turn TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN turn TEXT NOT NULL DEFAULT '';
)sql";

// Version 9: OAuth 2.0 app installations of the functions gateway and the access tokens issued
// to them, both stored by the SHA-256 of their secret; tokens indexed by app (revocation) and by
// expiry.
constexpr const char* kV9 = R"sql(
CREATE TABLE oauth_apps(
  account TEXT NOT NULL, client_id TEXT NOT NULL, name TEXT NOT NULL, secret_hash TEXT NOT NULL,
  scopes_json TEXT NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL,
  PRIMARY KEY(account, client_id));
CREATE TABLE oauth_tokens(
  token_hash TEXT PRIMARY KEY, account TEXT NOT NULL, client_id TEXT NOT NULL,
  scopes_json TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX oauth_tokens_app ON oauth_tokens(account, client_id);
CREATE INDEX oauth_tokens_expires ON oauth_tokens(expires_at);
)sql";

// Version 10: cluster mode's shared material (store::ClusterStore) and conversation leases.
constexpr const char* kV10 = R"sql(
CREATE TABLE cluster_material(
  key TEXT PRIMARY KEY, value TEXT NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE conversation_leases(
  conversation TEXT PRIMARY KEY, node TEXT NOT NULL, epoch INTEGER NOT NULL,
  expires_at INTEGER NOT NULL) WITHOUT ROWID;
)sql";

// Version 11: function schedules (store::ScheduleStore) with the bookkeeping of their runs;
// due schedules are found by next_run_at.
constexpr const char* kV11 = R"sql(
CREATE TABLE schedules(
  account TEXT NOT NULL, id TEXT NOT NULL, function_uuid TEXT NOT NULL, cron TEXT NOT NULL,
  state TEXT NOT NULL, payload_json TEXT NOT NULL, next_run_at INTEGER NOT NULL,
  running_id TEXT NOT NULL, running_until INTEGER NOT NULL, last_due_at INTEGER NOT NULL,
  last_started_at INTEGER NOT NULL, last_finished_at INTEGER NOT NULL,
  last_outcome TEXT NOT NULL, last_error TEXT NOT NULL, last_duration_ms INTEGER NOT NULL,
  created_by TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY(account, id));
CREATE INDEX schedules_due ON schedules(next_run_at);
CREATE INDEX schedules_function ON schedules(account, function_uuid);
)sql";

// Version 12: a consumer has at most one open conversation per account, held by a unique index
// (the conversation engine checked it only in memory). A consumer with several open
// conversations keeps its newest (latest start_ts, then greatest id); the others are closed
// (close reason SYSTEM, ended now), since the index cannot be built over them. Writes wait for
// the migration (BEGIN IMMEDIATE), so nothing adds a duplicate in between.
constexpr const char* kV12 = R"sql(
UPDATE conversations SET state = 'CLOSE', close_reason = 'SYSTEM',
  end_ts = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
  updated_at = MAX(updated_at, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
WHERE state = 'OPEN' AND EXISTS (
  SELECT 1 FROM conversations n WHERE n.account = conversations.account
    AND n.consumer = conversations.consumer AND n.state = 'OPEN'
    AND (n.start_ts > conversations.start_ts
         OR (n.start_ts = conversations.start_ts AND n.id > conversations.id)));
CREATE UNIQUE INDEX conversations_open_consumer ON conversations(account, consumer)
  WHERE state = 'OPEN';
)sql";

// Version 13: whether a conversation's content was erased (Store::eraseConversationContent), so
// that a turn record written afterwards is stored without texts.
constexpr const char* kV13 = R"sql(
ALTER TABLE conversations ADD COLUMN erased INTEGER NOT NULL DEFAULT 0;
)sql";

// Version 14: a publisher's idempotency key on its messages ('' for none; store::Message). A
// conversation holds at most one message per (originator, key), held by a unique index that
// leaves out the messages without a key.
constexpr const char* kV14 = R"sql(
ALTER TABLE messages ADD COLUMN idem_key TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX messages_idem_key ON messages(conversation, originator_id, idem_key)
  WHERE idem_key <> '';
)sql";

constexpr Migration kMigrations[] = {{1, kV1},   {2, kV2},   {3, kV3},   {4, kV4},  {5, kV5},
                                     {6, kV6},   {7, kV7},   {8, kV8},   {9, kV9},  {10, kV10},
                                     {11, kV11}, {12, kV12}, {13, kV13}, {14, kV14}};

Result<int> userVersion(Conn& conn) {
  auto q = conn.query("PRAGMA user_version");
  if (!q) return std::unexpected(q.error());
  auto row = q->next();
  if (!row) return std::unexpected(row.error());
  return static_cast<int>(*row ? q->i64(0) : 0);
}

}  // namespace

std::span<const Migration> migrations() { return kMigrations; }

int latestSchemaVersion() { return kMigrations[std::size(kMigrations) - 1].version; }

Result<int> migrate(Conn& conn, int target) {
  const int latest = latestSchemaVersion();
  if (target <= 0 || target > latest) target = latest;
  auto current = userVersion(conn);
  if (!current) return current;
  if (*current > latest)
    return makeError(ErrorCode::kUnavailable, "database schema version " +
                                                  std::to_string(*current) +
                                                  " is newer than this binary supports (" +
                                                  std::to_string(latest) + "); run a newer parley");
  for (const Migration& m : kMigrations) {
    if (m.version <= *current || m.version > target) continue;
    if (auto st = conn.exec("BEGIN IMMEDIATE"); !st) return std::unexpected(st.error());
    Status st = conn.exec(m.sql);
    if (st) st = conn.exec("PRAGMA user_version = " + std::to_string(m.version));
    if (st) st = conn.exec("COMMIT");
    if (!st) {
      (void)conn.exec("ROLLBACK");
      return makeError(st.error().code, "schema migration to version " + std::to_string(m.version) +
                                            " failed: " + st.error().message);
    }
    *current = m.version;
  }
  return *current;
}

}  // namespace parley::store::sqlite
