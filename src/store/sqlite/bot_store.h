#pragma once

// The SQLite BotStore: bots, turn records, pending turns, image allowlists. Private to
// store/sqlite.

#include <atomic>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "store/sqlite/db.h"
#include "store/store.h"

namespace parley::store::sqlite {

// Bots, their turn records and pending turns, and the accounts' image allowlists, on the shared
// Db. Thread-safe (see Db); owned by the SqliteStore.
//
// Turn records from appendTurnAsync are buffered for `turn_flush_ms` (at most kTurnBufferMax)
// and written as one write in which only the records that survive the bot's pruning are
// inserted; listTurns, appendTurn and deleteBot queue the buffer first, and close() queues it
// for the writer to commit before it stops.
class SqliteBotStore final : public BotStore {
 public:
  // `turn_flush_ms`: SqliteOptions::turn_flush_ms. REQUIRES: `db` outlives this; constructed
  // before the first write (it registers the writer's deferred flush).
  SqliteBotStore(Db& db, int turn_flush_ms);

  // Queues the buffered turn records; records buffered afterwards are queued at once. The
  // owner calls it before it closes the Db (whose writer commits what is queued). Idempotent.
  void close();

  // Queues the buffered records as one asynchronous write (before anything queued later): a
  // write submitted afterwards sees them (the conversation erasure).
  void queueBufferedTurns() PARLEY_EXCLUDES(turns_mu_);

  // BotStore
  Status createBot(const BotRecord& b) override;
  Status updateBot(const BotRecord& b) override;
  Status deleteBot(const AccountId& acc, const BotId& id) override;
  Result<BotRecord> getBot(const AccountId& acc, const BotId& id) override;
  Result<std::vector<BotRecord>> listBots(const AccountId& acc) override;
  Result<std::vector<BotRecord>> listAllBots() override;
  Status appendTurn(const TurnRecord& t, int keep) override;
  // Turn records are observability data written at every bot turn, and a bot keeps only its
  // newest `keep`: they are buffered for up to turn_flush_ms and written together, and of a
  // bot's buffered records only those that would survive the pruning are written at all (the
  // result is the same as appending them one by one). `done` runs after that commit.
  void appendTurnAsync(TurnRecord t, int keep, std::function<void(Status)> done) override;
  Result<std::vector<TurnRecord>> listTurns(const AccountId& acc, const BotId& id,
                                            int limit) override;
  Status putPendingTurn(const PendingTurn& p) override;
  Status deletePendingTurn(const std::string& turn_id) override;
  Status putImageAllowlist(const AccountId& acc, const std::vector<std::string>& entries) override;
  Result<std::vector<std::string>> getImageAllowlist(const AccountId& acc) override;
  Status deleteImageAllowlist(const AccountId& acc) override;
  Result<std::vector<PendingTurn>> listPendingTurns() override;

 private:
  struct BufferedTurn {
    TurnRecord t;
    int keep = 0;
    std::function<void(Status)> done;
  };
  // A full buffer is written at once.
  static constexpr std::size_t kTurnBufferMax = 4096;

  // Called with turns_mu_ held, so writes of the buffer are queued in the order it was filled.
  void submitTurnsLocked() PARLEY_REQUIRES(turns_mu_);
  // Writes buffered records as appending them one by one would leave the table: per bot, a
  // record replaces an earlier one with its turn id; of the rest only the newest `keep` (by
  // ts, then arrival: the pruning order) can survive, so only those are inserted, in arrival
  // order, before one prune to the bot's newest `keep` (the last record's `keep`).
  static Status writeTurns(Conn& c, const std::vector<BufferedTurn>& buf);

  Db& db_;
  // Buffered turn records (appendTurnAsync), in arrival order.
  const int turn_flush_ms_;
  Mutex turns_mu_;
  std::vector<BufferedTurn> turn_buffer_ PARLEY_GUARDED_BY(turns_mu_);
  bool turns_closed_ PARLEY_GUARDED_BY(turns_mu_) = false;  // the store is closing
  std::atomic<int> turns_in_flight_{0};  // queued buffer writes not yet completed
};

}  // namespace parley::store::sqlite
