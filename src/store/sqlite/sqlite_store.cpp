#include "store/sqlite/sqlite_store.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/prometheus.h"
#include "store/sqlite/account_store.h"
#include "store/sqlite/batched_wal_vfs.h"
#include "store/sqlite/bot_store.h"
#include "store/sqlite/cluster_store.h"
#include "store/sqlite/conversation_store.h"
#include "store/sqlite/db.h"
#include "store/sqlite/function_store.h"
#include "store/sqlite/oauth_store.h"
#include "store/sqlite/query.h"
#include "store/sqlite/schedule_store.h"
#include "store/sqlite/schema.h"
#include "store/store_util.h"

namespace parley::store {
namespace {

using sqlite::Conn;

// The composition: one Db and the rooms on it, each handed out as its interface. Owned by
// whoever opened it; thread-safe as the rooms are. Destroying it (REQUIRES: no call in
// progress) queues the buffered turn records, then closes the Db (readers first, then the
// writer, which commits what is queued and checkpoints the WAL) while every room is still
// alive, since queued writes and the writer thread's deferred flush refer to them.
class SqliteStore final : public Store {
 public:
  SqliteStore(std::unique_ptr<sqlite::Db> db, const SqliteOptions& options)
      : db_(std::move(db)),
        accounts_(*db_),
        conversations_(*db_),
        functions_(*db_),
        bots_(*db_, options.turn_flush_ms),
        oauth_(*db_),
        schedules_(*db_),
        cluster_(*db_) {}

  ~SqliteStore() override {
    bots_.close();
    db_->close();
  }

  // Store
  AccountStore& accounts() override { return accounts_; }
  ConversationStore& conversations() override { return conversations_; }
  FunctionStore& functions() override { return functions_; }
  BotStore& bots() override { return bots_; }
  OAuthStore& oauth() override { return oauth_; }
  ScheduleStore& schedules() override { return schedules_; }
  int schemaVersion() const override { return db_->schemaVersion(); }
  ClusterStore* cluster() override { return &cluster_; }

  // The erasure spans the conversation, bot and function rooms' tables: one write on the Db.
  Result<ErasureResult> eraseConversationContent(const AccountId& acc,
                                                 const ConversationId& id) override {
    bots_.queueBufferedTurns();  // committed before the write below (FIFO)
    ErasureResult out;
    Status st = db_->write([&](Conn& c) -> Status {
      out = {};
      auto state = sqlite::selectOne<std::string>(
          c, "SELECT state FROM conversations WHERE id=? AND account=?",
          [](sqlite::Query& q) { return q.text(0); }, id.str(), acc.str());
      if (!state) return std::unexpected(state.error());
      if (!*state) return internal::erasureMissing(acc, id);
      if (**state == stateName(ConversationState::kOpen)) return internal::erasureOfOpen(id);
      conversations_.forgetStoredRow(id.str());
      PARLEY_STORE_TRY(sqlite::execute(
          c, "UPDATE conversations SET erased=1 WHERE id=? AND erased=0", id.str()));
      auto ctx = sqlite::execute(
          c, "UPDATE conversations SET context_json='{}' WHERE id=? AND context_json<>'{}'",
          id.str());
      if (!ctx) return std::unexpected(ctx.error());
      out.context = *ctx > 0;
      struct Row {
        std::int64_t sequence;
        std::string event;
        std::string metadata;
      };
      auto rows = sqlite::selectAll<Row>(
          c, "SELECT sequence, event_json, metadata_json FROM messages WHERE conversation=?",
          [](sqlite::Query& q) {
            return Row{q.i64(0), q.text(1), q.text(2)};
          },
          id.str());
      if (!rows) return std::unexpected(rows.error());
      for (const Row& r : *rows) {
        std::string event = erasedEventJson(r.event);
        if (event == r.event && r.metadata == "[]") continue;
        PARLEY_STORE_TRY(sqlite::execute(c,
                                         "UPDATE messages SET event_json=?, metadata_json='[]' "
                                         "WHERE conversation=? AND sequence=?",
                                         event, id.str(), r.sequence));
        ++out.messages;
      }
      auto turns = sqlite::execute(
          c,
          "UPDATE turns SET input_json='{}', response_json='{}', actions_json='[]', error='' "
          "WHERE account=? AND conversation=? AND (input_json<>'{}' OR response_json<>'{}' OR "
          "actions_json<>'[]' OR error<>'')",
          acc.str(), id.str());
      if (!turns) return std::unexpected(turns.error());
      out.turns = *turns;
      auto pending = sqlite::execute(
          c, "DELETE FROM pending_turns WHERE account=? AND conversation=?", acc.str(), id.str());
      if (!pending) return std::unexpected(pending.error());
      out.pending_turns = *pending;
      auto props =
          sqlite::execute(c, "DELETE FROM context_properties WHERE account=? AND session_id=?",
                          acc.str(), id.str());
      if (!props) return std::unexpected(props.error());
      out.properties = *props;
      return {};
    });
    if (!st) return std::unexpected(st.error());
    return out;
  }

  SqliteWriteStats writeStats() const { return db_->writeStats(); }

  // Runs `statements` in order as one write; stops at the first failure.
  Status execForTest(const std::vector<std::string>& statements) {
    return db_->write([&](Conn& c) -> Status {
      conversations_.forgetStoredRows();  // raw SQL may change any row
      for (const auto& sql : statements) PARLEY_STORE_TRY(c.exec(sql));
      return {};
    });
  }

 private:
  std::unique_ptr<sqlite::Db> db_;
  sqlite::SqliteAccountStore accounts_;
  sqlite::SqliteConversationStore conversations_;
  sqlite::SqliteFunctionStore functions_;
  sqlite::SqliteBotStore bots_;
  sqlite::SqliteOAuthStore oauth_;
  sqlite::SqliteScheduleStore schedules_;
  sqlite::SqliteClusterStore cluster_;
};

}  // namespace

int sqliteLatestSchemaVersion() { return sqlite::latestSchemaVersion(); }

Status sqliteExecForTest(Store& store, const std::vector<std::string>& statements) {
  auto* s = dynamic_cast<SqliteStore*>(&store);
  if (!s) return invalid("not a SQLite store");
  return s->execForTest(statements);
}

Result<SqliteWriteStats> sqliteWriteStats(Store& store) {
  auto* s = dynamic_cast<SqliteStore*>(&store);
  if (!s) return invalid("not a SQLite store");
  return s->writeStats();
}

std::string sqlitePrometheusText(Store& store) {
  auto st = sqliteWriteStats(store);
  if (!st) return {};
  std::string out;
  prometheus::appendSample(
      out, "parley_store_transactions_total", "counter",
      "SQLite write transactions committed or failed (each holds a batch of writes).",
      st->transactions);
  prometheus::appendSample(out, "parley_store_writes_total", "counter",
                           "Writes run in those transactions.", st->writes);
  prometheus::appendSample(out, "parley_store_largest_batch", "gauge",
                           "Most writes committed in one transaction.", st->largest_batch);
  prometheus::appendSample(out, "parley_store_checkpoints_total", "counter",
                           "WAL checkpoints run by the background checkpoint thread.",
                           st->background_checkpoints);
  prometheus::appendSample(out, "parley_store_inline_checkpoints_total", "counter",
                           "WAL checkpoints the writer ran itself (WAL past its hard limit).",
                           st->inline_checkpoints);
  const auto wal = sqlite::batchedWalStats();
  prometheus::appendSample(out, "parley_store_wal_writes_total", "counter",
                           "WAL writes SQLite made through the batched-WAL VFS.", wal.writes);
  prometheus::appendSample(out, "parley_store_wal_pwrites_total", "counter",
                           "pwrite calls the batched-WAL VFS made for them.", wal.flushes);
  prometheus::appendSample(out, "parley_store_wal_syncs_total", "counter",
                           "WAL fsyncs made (new WAL headers, checkpoints).", wal.syncs_made);
  return out;
}

Result<std::unique_ptr<Store>> openSqliteStore(const std::string& path, const Clock& clock) {
  return openSqliteStore(path, clock, SqliteOptions{});
}

Result<std::unique_ptr<Store>> openSqliteStore(const std::string& path, const Clock& clock,
                                               const SqliteOptions& options) {
  auto db = sqlite::Db::open(path, clock, options);
  if (!db) return std::unexpected(db.error());
  return std::unique_ptr<Store>(new SqliteStore(std::move(*db), options));
}

}  // namespace parley::store
