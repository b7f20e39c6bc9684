#include "store/postgres/schema.h"

#include <iterator>
#include <string>

namespace parley::store::pg {
namespace {

struct Migration {
  int version;
  const char* sql;
};

// Version 1: every table of the SQLite schema at its version 8, in PostgreSQL types. Text
// columns sort by bytes (COLLATE "C") whatever the database's locale, as SQLite's do. A
// conversation's participants are a JSON column of its row (SQLite: a table), so a conversation
// is written by one statement. Insertion order (ties of timestamps, audit order) is a
// bigserial `seq`.
constexpr const char* kV1 = R"sql(
CREATE TABLE accounts(
  id TEXT COLLATE "C" PRIMARY KEY, name TEXT NOT NULL, ttr_urgent_s BIGINT NOT NULL,
  ttr_prioritized_s BIGINT NOT NULL, ttr_normal_s BIGINT NOT NULL, created_at BIGINT NOT NULL,
  status TEXT NOT NULL);
CREATE TABLE id_counters(
  account TEXT COLLATE "C" NOT NULL, kind TEXT NOT NULL, next_id BIGINT NOT NULL,
  PRIMARY KEY(account, kind));
CREATE TABLE users(
  account TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, pid TEXT NOT NULL,
  login_name TEXT COLLATE "C" NOT NULL, password_hash TEXT NOT NULL, roles_json TEXT NOT NULL,
  type TEXT NOT NULL, skills_json TEXT NOT NULL, max_open_conversations BIGINT NOT NULL,
  created_at BIGINT NOT NULL, status TEXT NOT NULL,
  PRIMARY KEY(account, id), UNIQUE(account, login_name));
CREATE TABLE sessions(
  bearer_hash TEXT COLLATE "C" PRIMARY KEY, csrf TEXT NOT NULL, account TEXT COLLATE "C" NOT NULL,
  user_id TEXT COLLATE "C" NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX sessions_expires ON sessions(expires_at);
CREATE INDEX sessions_user ON sessions(account, user_id);
CREATE TABLE api_keys(
  key_hash TEXT COLLATE "C" PRIMARY KEY, account TEXT COLLATE "C" NOT NULL,
  user_id TEXT COLLATE "C" NOT NULL, name TEXT NOT NULL, created_at BIGINT NOT NULL,
  id TEXT COLLATE "C" NOT NULL, scopes_json TEXT NOT NULL, expires_at BIGINT NOT NULL,
  created_by TEXT NOT NULL, UNIQUE(account, id));
CREATE INDEX api_keys_user ON api_keys(account, user_id);
CREATE TABLE skills(
  account TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL,
  created_at BIGINT NOT NULL, PRIMARY KEY(account, id), UNIQUE(account, name));
CREATE TABLE agent_states(
  account TEXT COLLATE "C" NOT NULL, user_id TEXT COLLATE "C" NOT NULL,
  availability TEXT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY(account, user_id));
CREATE TABLE conversations(
  id TEXT COLLATE "C" PRIMARY KEY, account TEXT COLLATE "C" NOT NULL,
  consumer TEXT COLLATE "C" NOT NULL, channel TEXT NOT NULL, state TEXT COLLATE "C" NOT NULL,
  skill TEXT COLLATE "C" NOT NULL, ttr_type TEXT NOT NULL, ttr_value_s BIGINT NOT NULL,
  ttr_due_at BIGINT NOT NULL, start_ts BIGINT NOT NULL, end_ts BIGINT NOT NULL,
  updated_at BIGINT NOT NULL, close_reason TEXT NOT NULL, next_sequence BIGINT NOT NULL,
  context_json TEXT NOT NULL, turn TEXT NOT NULL, participants_json TEXT NOT NULL);
CREATE INDEX conversations_account ON conversations(account, state, start_ts, id);
CREATE INDEX conversations_state ON conversations(state, start_ts, id);
CREATE TABLE messages(
  conversation TEXT COLLATE "C" NOT NULL, sequence BIGINT NOT NULL, server_ts BIGINT NOT NULL,
  originator_id TEXT NOT NULL, originator_pid TEXT NOT NULL, originator_role TEXT NOT NULL,
  audience TEXT NOT NULL, event_json TEXT NOT NULL, metadata_json TEXT NOT NULL,
  turn TEXT NOT NULL, PRIMARY KEY(conversation, sequence));
CREATE TABLE functions(
  uuid TEXT COLLATE "C" PRIMARY KEY, account TEXT COLLATE "C" NOT NULL,
  name TEXT COLLATE "C" NOT NULL, description TEXT NOT NULL, event_id TEXT NOT NULL,
  code TEXT NOT NULL, env_json TEXT NOT NULL, state TEXT NOT NULL, version BIGINT NOT NULL,
  created_by TEXT NOT NULL, updated_by TEXT NOT NULL, created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL, UNIQUE(account, name));
CREATE TABLE deployments(
  seq BIGSERIAL PRIMARY KEY, uuid TEXT COLLATE "C" NOT NULL UNIQUE,
  function_uuid TEXT COLLATE "C" NOT NULL, account TEXT COLLATE "C" NOT NULL,
  function_version BIGINT NOT NULL, code TEXT NOT NULL, env_json TEXT NOT NULL,
  state TEXT NOT NULL, error_json TEXT NOT NULL, created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL, deployed_at BIGINT NOT NULL);
CREATE INDEX deployments_function ON deployments(account, function_uuid, created_at);
CREATE TABLE invocation_logs(
  seq BIGSERIAL PRIMARY KEY, function_uuid TEXT COLLATE "C" NOT NULL,
  account TEXT COLLATE "C" NOT NULL, request_id TEXT NOT NULL, ts BIGINT NOT NULL,
  level TEXT NOT NULL, message TEXT NOT NULL, extras_json TEXT NOT NULL);
CREATE INDEX invocation_logs_function ON invocation_logs(account, function_uuid, ts);
CREATE TABLE secrets(
  account TEXT COLLATE "C" NOT NULL, key_name TEXT COLLATE "C" NOT NULL, ciphertext BYTEA NOT NULL,
  updated_at BIGINT NOT NULL, PRIMARY KEY(account, key_name));
CREATE TABLE allowlist(
  account TEXT COLLATE "C" NOT NULL, position BIGINT NOT NULL, domain TEXT NOT NULL,
  PRIMARY KEY(account, position));
CREATE TABLE context_properties(
  account TEXT COLLATE "C" NOT NULL, ns TEXT COLLATE "C" NOT NULL,
  session_id TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, value_json TEXT NOT NULL,
  expires_at BIGINT NOT NULL, PRIMARY KEY(account, ns, session_id, name));
CREATE TABLE bots(
  account TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, name TEXT NOT NULL,
  user_id TEXT COLLATE "C" NOT NULL, config_json TEXT NOT NULL, status TEXT NOT NULL,
  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY(account, id));
CREATE TABLE turns(
  seq BIGSERIAL PRIMARY KEY, account TEXT COLLATE "C" NOT NULL, bot TEXT COLLATE "C" NOT NULL,
  conversation TEXT NOT NULL, turn_id TEXT COLLATE "C" NOT NULL, ts BIGINT NOT NULL,
  outcome TEXT NOT NULL, input_json TEXT NOT NULL, response_json TEXT NOT NULL,
  actions_json TEXT NOT NULL, timings_json TEXT NOT NULL, error TEXT NOT NULL);
CREATE INDEX turns_bot ON turns(account, bot, ts);
CREATE UNIQUE INDEX turns_id ON turns(account, bot, turn_id);
CREATE TABLE pending_turns(
  seq BIGSERIAL PRIMARY KEY, turn_id TEXT COLLATE "C" NOT NULL UNIQUE,
  account TEXT COLLATE "C" NOT NULL, bot TEXT NOT NULL, conversation TEXT NOT NULL,
  state_json TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE image_allowlists(
  account TEXT COLLATE "C" PRIMARY KEY, entries_json TEXT NOT NULL);
CREATE TABLE secret_audit(
  seq BIGSERIAL PRIMARY KEY, account TEXT COLLATE "C" NOT NULL, ts BIGINT NOT NULL,
  function_uuid TEXT NOT NULL, request_id TEXT NOT NULL, invoker TEXT NOT NULL,
  user_id TEXT NOT NULL, login_name TEXT NOT NULL, key_name TEXT NOT NULL, op TEXT NOT NULL,
  outcome TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX secret_audit_by_account ON secret_audit(account, seq);
)sql";

// Version 2: OAuth 2.0 app installations of the functions gateway and the access tokens issued
// to them (SQLite version 9), both stored by the SHA-256 of their secret; `seq` is insertion
// order (ties of created_at).
constexpr const char* kV2 = R"sql(
CREATE TABLE oauth_apps(
  seq BIGSERIAL, account TEXT COLLATE "C" NOT NULL, client_id TEXT COLLATE "C" NOT NULL,
  name TEXT NOT NULL, secret_hash TEXT NOT NULL, scopes_json TEXT NOT NULL,
  created_at BIGINT NOT NULL, created_by TEXT NOT NULL, PRIMARY KEY(account, client_id));
CREATE TABLE oauth_tokens(
  seq BIGSERIAL UNIQUE, token_hash TEXT COLLATE "C" PRIMARY KEY,
  account TEXT COLLATE "C" NOT NULL, client_id TEXT COLLATE "C" NOT NULL,
  scopes_json TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX oauth_tokens_app ON oauth_tokens(account, client_id);
CREATE INDEX oauth_tokens_expires ON oauth_tokens(expires_at);
)sql";

// Version 3: cluster mode's shared material (store::ClusterStore) and conversation leases
// (SQLite version 10).
constexpr const char* kV3 = R"sql(
CREATE TABLE cluster_material(
  key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE conversation_leases(
  conversation TEXT COLLATE "C" PRIMARY KEY, node TEXT COLLATE "C" NOT NULL,
  epoch BIGINT NOT NULL, expires_at BIGINT NOT NULL);
)sql";

// Version 4: function schedules (store::ScheduleStore) with the bookkeeping of their runs
// (SQLite version 11); due schedules are found by next_run_at.
constexpr const char* kV4 = R"sql(
CREATE TABLE schedules(
  seq BIGSERIAL UNIQUE, account TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
  function_uuid TEXT COLLATE "C" NOT NULL, cron TEXT NOT NULL, state TEXT NOT NULL,
  payload_json TEXT NOT NULL, next_run_at BIGINT NOT NULL, running_id TEXT NOT NULL,
  running_until BIGINT NOT NULL, last_due_at BIGINT NOT NULL, last_started_at BIGINT NOT NULL,
  last_finished_at BIGINT NOT NULL, last_outcome TEXT NOT NULL, last_error TEXT NOT NULL,
  last_duration_ms BIGINT NOT NULL, created_by TEXT NOT NULL, created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL, PRIMARY KEY(account, id));
CREATE INDEX schedules_due ON schedules(next_run_at);
CREATE INDEX schedules_function ON schedules(account, function_uuid);
)sql";

// Version 5: claims find free leases by expiry (an index) instead of scanning the open
// conversations. For that every open conversation has a lease row from its first save: a
// placeholder (node '', epoch 0, expired) added by a trigger in the save's own transaction when
// no row is there (a cluster node acquires the lease before the save, so only conversations
// saved without one get it), and by this step for the open conversations already stored.
constexpr const char* kV5 = R"sql(
CREATE INDEX conversation_leases_expiry ON conversation_leases(expires_at);
INSERT INTO conversation_leases(conversation, node, epoch, expires_at)
  SELECT id, '', 0, 0 FROM conversations WHERE state = 'OPEN' ON CONFLICT DO NOTHING;
CREATE FUNCTION parley_lease_placeholder() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO conversation_leases(conversation, node, epoch, expires_at)
    VALUES (NEW.id, '', 0, 0) ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
CREATE TRIGGER conversations_lease_placeholder AFTER INSERT ON conversations
  FOR EACH ROW WHEN (NEW.state = 'OPEN') EXECUTE FUNCTION parley_lease_placeholder();
)sql";

// Version 6: one bot per bot user, held by the database. createBot/updateBot check it first for
// a clear message, but two nodes creating a bot for one user at once (the demo bot, when nodes
// start together) both passed the check; the second insert now fails as a Conflict. A database
// that already holds two bots of one user refuses this migration, naming the user.
constexpr const char* kV6 = R"sql(
CREATE UNIQUE INDEX bots_user ON bots(account, user_id) WHERE user_id <> '';
)sql";

// Version 7: a consumer has at most one open conversation per account, held by the database
// across nodes (each node's conversation engine checked it only among its own conversations,
// so the same consumer connected to two nodes could open two). A consumer that already has
// several open conversations keeps its newest (latest start_ts, then greatest id); the others
// are closed (close reason SYSTEM, ended now), since the index cannot be built over them. The
// table is locked first so that no node adds a duplicate between the two statements.
constexpr const char* kV7 = R"sql(
LOCK TABLE conversations IN SHARE ROW EXCLUSIVE MODE;
UPDATE conversations c SET state = 'CLOSE', close_reason = 'SYSTEM',
  end_ts = (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
  updated_at = GREATEST(c.updated_at, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
FROM (SELECT id, row_number() OVER (PARTITION BY account, consumer
                                    ORDER BY start_ts DESC, id DESC) AS newest
      FROM conversations WHERE state = 'OPEN') d
WHERE c.id = d.id AND d.newest > 1;
CREATE UNIQUE INDEX conversations_open_consumer ON conversations(account, consumer)
  WHERE state = 'OPEN';
)sql";

// Version 8: commit markers. Every transaction of the writer inserts a random token here, so
// that when the answer to its COMMIT is lost the writer can learn whether it committed (the
// marker is there) in a way a server crash cannot fool (a transaction id can be handed out
// again after crash recovery). Markers are deleted an hour after they were written.
constexpr const char* kV8 = R"sql(
CREATE TABLE commit_markers(
  token UUID PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
CREATE INDEX commit_markers_created ON commit_markers(created_at);
)sql";

// Version 9: whether a conversation's content was erased (Store::eraseConversationContent), so
// that a turn record written afterwards is stored without texts.
constexpr const char* kV9 = R"sql(
ALTER TABLE conversations ADD COLUMN erased BOOLEAN NOT NULL DEFAULT false;
)sql";

// Version 10: a publisher's idempotency key on its messages (SQLite version 14; '' for none). A
// conversation holds at most one message per (originator, key), held by a unique index that
// leaves out the messages without a key; appends insert ON CONFLICT DO NOTHING, so a repeated
// key fails that write alone, not the group commit it shares. Adding a column with a constant
// default rewrites no rows; the index is built over the existing messages, all without a key.
constexpr const char* kV10 = R"sql(
ALTER TABLE messages ADD COLUMN idem_key TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX messages_idem_key ON messages(conversation, originator_id, idem_key)
  WHERE idem_key <> '';
)sql";

constexpr Migration kMigrations[] = {{1, kV1}, {2, kV2}, {3, kV3}, {4, kV4}, {5, kV5},
                                     {6, kV6}, {7, kV7}, {8, kV8}, {9, kV9}, {10, kV10}};

Result<int> appliedVersion(Conn& conn) {
  auto r = conn.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {});
  if (!r) return std::unexpected(r.error());
  return static_cast<int>(r->i64(0, 0));
}

Result<int> migrateLocked(Conn& conn) {
  const int latest = latestSchemaVersion();
  if (auto st = conn.exec("CREATE TABLE IF NOT EXISTS schema_migrations(version INTEGER PRIMARY "
                          "KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
      !st)
    return std::unexpected(st.error());
  auto current = appliedVersion(conn);
  if (!current) return current;
  if (*current > latest)
    return makeError(ErrorCode::kUnavailable, "postgres store: database schema version " +
                                                  std::to_string(*current) +
                                                  " is newer than this binary supports (" +
                                                  std::to_string(latest) + "); run a newer parley");
  for (const Migration& m : kMigrations) {
    if (m.version <= *current) continue;
    Status st = conn.exec("BEGIN");
    if (st) st = conn.exec(m.sql);
    if (st)
      st = conn.exec("INSERT INTO schema_migrations(version) VALUES(" + std::to_string(m.version) +
                     ")");
    if (st) st = conn.exec("COMMIT");
    if (!st) {
      (void)conn.exec("ROLLBACK");
      return makeError(st.error().code, "postgres store: schema migration to version " +
                                            std::to_string(m.version) +
                                            " failed: " + st.error().message);
    }
    *current = m.version;
  }
  return *current;
}

}  // namespace

int latestSchemaVersion() { return kMigrations[std::size(kMigrations) - 1].version; }

Result<int> migrate(Conn& conn) {
  const std::string key = std::to_string(kMigrationLock);
  if (auto st = conn.exec("SELECT pg_advisory_lock(" + key + ")"); !st)
    return std::unexpected(st.error());
  auto version = migrateLocked(conn);
  // Released by the server anyway if this connection ends.
  (void)conn.exec("SELECT pg_advisory_unlock(" + key + ")");
  return version;
}

}  // namespace parley::store::pg
