#include "store/sqlite/bot_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "store/sqlite/query.h"
#include "store/sqlite/rows.h"

namespace parley::store::sqlite {
namespace {

// Inserts `t`, replacing the bot's record with the same turn id. A record of a conversation
// whose content was erased (in an earlier transaction) is stored without texts, as the erasure
// leaves the records it finds.
Status insertTurn(Conn& c, const TurnRecord& t) {
  static const std::string kDelete = "DELETE FROM turns WHERE account=? AND bot=? AND turn_id=?";
  static const std::string kInsert =
      "INSERT INTO turns(" + cols(kTurnCols) + ") VALUES(?,?,?,?,?,?,?,?,?,?,?)";
  PARLEY_STORE_TRY(execute(c, kDelete, t.account.str(), t.bot.str(), t.turn_id));
  auto erased = selectOne<std::string>(
      c, "SELECT id FROM conversations WHERE id=? AND account=? AND erased<>0", textColumn,
      t.conversation.str(), t.account.str());
  if (!erased) return asStatus(erased);
  if (*erased)
    return asStatus(execute(c, kInsert, t.account.str(), t.bot.str(), t.conversation.str(),
                            t.turn_id, t.ts, t.outcome, "{}", "{}", "[]", t.timings_json, ""));
  return asStatus(execute(c, kInsert, t.account.str(), t.bot.str(), t.conversation.str(), t.turn_id,
                          t.ts, t.outcome, t.input_json, t.response_json, t.actions_json,
                          t.timings_json, t.error));
}

// Keeps the bot of `t`'s newest `keep` turns.
Status pruneTurns(Conn& c, const TurnRecord& t, int keep) {
  static const std::string kPrune =
      "DELETE FROM turns WHERE seq IN "
      "(SELECT seq FROM turns WHERE account=?1 AND bot=?2 "
      "ORDER BY ts DESC, seq DESC LIMIT -1 OFFSET ?3)";
  return asStatus(execute(c, kPrune, t.account.str(), t.bot.str(), std::max(keep, 0)));
}

// Replaces a record with the same turn id, inserts, and prunes the bot's turns to the newest
// `keep`: the index walk skips `keep` entries and deletes what is left (rows past the newest
// `keep`), instead of testing every row against a `keep`-row subquery.
Status appendTurnTxn(Conn& c, const TurnRecord& t, int keep) {
  PARLEY_STORE_TRY(insertTurn(c, t));
  return pruneTurns(c, t, keep);
}

std::string botMissing(const AccountId& acc, const BotId& id) {
  return "bot " + id.str() + " does not exist in account " + acc.str();
}

// Conflict when the bot's user already has another bot.
Status checkBotUser(Conn& c, const BotRecord& b) {
  if (b.user.empty()) return {};
  auto other =
      selectOne<std::string>(c, "SELECT id FROM bots WHERE account=? AND user_id=? AND id<>?",
                             textColumn, b.account.str(), b.user.str(), b.id.str());
  if (!other) return asStatus(other);
  if (*other) return conflict("user " + b.user.str() + " already has bot " + **other);
  return {};
}

}  // namespace

SqliteBotStore::SqliteBotStore(Db& db, int turn_flush_ms) : db_(db), turn_flush_ms_(turn_flush_ms) {
  db_.writer().setDeferredFlush([this] { queueBufferedTurns(); });
}

void SqliteBotStore::close() {
  MutexLock lock(turns_mu_);
  submitTurnsLocked();
  turns_closed_ = true;
}

Status SqliteBotStore::createBot(const BotRecord& b) {
  if (b.id.empty()) return invalid("bot id is required");
  if (b.account.empty()) return invalid("bot account is required");
  BotRecord stored = b;
  if (stored.created_at == 0) stored.created_at = db_.now();
  if (stored.updated_at == 0) stored.updated_at = stored.created_at;
  return db_.write([&](Conn& c) -> Status {
    auto dup =
        exists(c, "SELECT 1 FROM bots WHERE account=? AND id=?", b.account.str(), b.id.str());
    if (!dup) return asStatus(dup);
    if (*dup)
      return conflict("bot " + b.id.str() + " already exists in account " + b.account.str());
    PARLEY_STORE_TRY(checkBotUser(c, b));
    return asStatus(execute(c, "INSERT INTO bots(" + cols(kBotCols) + ") VALUES(?,?,?,?,?,?,?,?)",
                            stored.account.str(), stored.id.str(), stored.name, stored.user.str(),
                            stored.config_json, botStatusName(stored.status), stored.created_at,
                            stored.updated_at));
  });
}

Status SqliteBotStore::updateBot(const BotRecord& b) {
  return db_.write([&](Conn& c) -> Status {
    auto there =
        exists(c, "SELECT 1 FROM bots WHERE account=? AND id=?", b.account.str(), b.id.str());
    if (!there) return asStatus(there);
    if (!*there) return notFound(botMissing(b.account, b.id));
    PARLEY_STORE_TRY(checkBotUser(c, b));
    return asStatus(execute(c,
                            "UPDATE bots SET name=?, user_id=?, config_json=?, status=?, "
                            "created_at=?, updated_at=? WHERE account=? AND id=?",
                            b.name, b.user.str(), b.config_json, botStatusName(b.status),
                            b.created_at, b.updated_at, b.account.str(), b.id.str()));
  });
}

Status SqliteBotStore::deleteBot(const AccountId& acc, const BotId& id) {
  queueBufferedTurns();  // committed before the delete, in order
  return db_.write([&](Conn& c) -> Status {
    PARLEY_STORE_TRY(changedOrNotFound(
        execute(c, "DELETE FROM bots WHERE account=? AND id=?", acc.str(), id.str()),
        botMissing(acc, id)));
    return asStatus(execute(c, "DELETE FROM turns WHERE account=? AND bot=?", acc.str(), id.str()));
  });
}

Result<BotRecord> SqliteBotStore::getBot(const AccountId& acc, const BotId& id) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<BotRecord>(c,
                                "SELECT " + cols(kBotCols) + " FROM bots WHERE account=? AND id=?",
                                botRow, acc.str(), id.str());
  });
  return found(std::move(r), botMissing(acc, id));
}

Result<std::vector<BotRecord>> SqliteBotStore::listBots(const AccountId& acc) {
  return db_.read([&](Conn& c) {
    return selectAll<BotRecord>(
        c, "SELECT " + cols(kBotCols) + " FROM bots WHERE account=? ORDER BY id", botRow,
        acc.str());
  });
}

Result<std::vector<BotRecord>> SqliteBotStore::listAllBots() {
  return db_.read([&](Conn& c) {
    return selectAll<BotRecord>(c, "SELECT " + cols(kBotCols) + " FROM bots ORDER BY account, id",
                                botRow);
  });
}

Status SqliteBotStore::appendTurn(const TurnRecord& t, int keep) {
  if (t.turn_id.empty()) return invalid("turn id is required");
  queueBufferedTurns();  // earlier asynchronous records first
  return db_.write([&](Conn& c) -> Status { return appendTurnTxn(c, t, keep); });
}

void SqliteBotStore::appendTurnAsync(TurnRecord t, int keep, std::function<void(Status)> done) {
  if (t.turn_id.empty()) return done(invalid("turn id is required"));
  MutexLock lock(turns_mu_);
  turn_buffer_.push_back(BufferedTurn{std::move(t), keep, std::move(done)});
  if (turn_flush_ms_ <= 0 || turn_buffer_.size() >= kTurnBufferMax || turns_closed_) {
    submitTurnsLocked();
  } else if (turn_buffer_.size() == 1) {
    db_.writer().flushAfter(std::chrono::milliseconds(turn_flush_ms_));
  }
}

Result<std::vector<TurnRecord>> SqliteBotStore::listTurns(const AccountId& acc, const BotId& id,
                                                          int limit) {
  if (limit <= 0) return std::vector<TurnRecord>{};
  queueBufferedTurns();
  if (turns_in_flight_.load() > 0) {
    // Wait for the queued records: a write queued after them returns once they committed.
    PARLEY_STORE_TRY(db_.write([](Conn&) -> Status { return {}; }));
  }
  return db_.read([&](Conn& c) {
    return selectAll<TurnRecord>(c,
                                 "SELECT " + cols(kTurnCols) +
                                     " FROM turns WHERE account=? AND bot=? "
                                     "ORDER BY ts DESC, seq DESC LIMIT ?",
                                 turnRow, acc.str(), id.str(), limit);
  });
}

Status SqliteBotStore::putPendingTurn(const PendingTurn& p) {
  if (p.turn_id.empty()) return invalid("turn id is required");
  const TimeMs created = p.created_at ? p.created_at : db_.now();
  return db_.write([&](Conn& c) {
    return asStatus(execute(c,
                            "INSERT INTO pending_turns(turn_id, account, bot, conversation, "
                            "state_json, created_at) VALUES(?,?,?,?,?,?) "
                            "ON CONFLICT(turn_id) DO UPDATE SET account=excluded.account, "
                            "bot=excluded.bot, conversation=excluded.conversation, "
                            "state_json=excluded.state_json, created_at=excluded.created_at",
                            p.turn_id, p.account.str(), p.bot.str(), p.conversation.str(),
                            p.state_json, created));
  });
}

Status SqliteBotStore::deletePendingTurn(const std::string& turn_id) {
  return db_.write([&](Conn& c) {
    return asStatus(execute(c, "DELETE FROM pending_turns WHERE turn_id=?", turn_id));
  });
}

Status SqliteBotStore::putImageAllowlist(const AccountId& acc,
                                         const std::vector<std::string>& entries) {
  if (acc.empty()) return invalid("account is required");
  std::string text = stringsJson(entries);
  return db_.write([&](Conn& c) {
    return asStatus(execute(c,
                            "INSERT INTO image_allowlists(account, entries_json) VALUES(?,?) "
                            "ON CONFLICT(account) DO UPDATE SET entries_json=excluded.entries_json",
                            acc.str(), text));
  });
}

Result<std::vector<std::string>> SqliteBotStore::getImageAllowlist(const AccountId& acc) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<std::vector<std::string>>(
        c, "SELECT entries_json FROM image_allowlists WHERE account=?",
        [](Query& q) { return parseStringsJson(q.text(0)); }, acc.str());
  });
  return found(std::move(r), "account " + acc.str() + " has no image allowlist");
}

Status SqliteBotStore::deleteImageAllowlist(const AccountId& acc) {
  return db_.write([&](Conn& c) -> Status {
    PARLEY_STORE_TRY(
        changedOrNotFound(execute(c, "DELETE FROM image_allowlists WHERE account=?", acc.str()),
                          "account " + acc.str() + " has no image allowlist"));
    return {};
  });
}

Result<std::vector<PendingTurn>> SqliteBotStore::listPendingTurns() {
  return db_.read([&](Conn& c) {
    return selectAll<PendingTurn>(
        c, "SELECT " + cols(kPendingTurnCols) + " FROM pending_turns ORDER BY created_at, seq",
        pendingRow);
  });
}

void SqliteBotStore::queueBufferedTurns() {
  MutexLock lock(turns_mu_);
  submitTurnsLocked();
}

void SqliteBotStore::submitTurnsLocked() {
  if (turn_buffer_.empty()) return;
  auto batch = std::make_shared<std::vector<BufferedTurn>>(std::move(turn_buffer_));
  turn_buffer_.clear();
  turns_in_flight_.fetch_add(1);
  db_.writeAsync([batch](Conn& c) -> Status { return writeTurns(c, *batch); },
                 [this, batch](Status st) {
                   for (auto& b : *batch) {
                     if (!b.done) continue;
                     try {
                       b.done(st);
                     } catch (const std::exception& e) {
                       spdlog::error("turn record callback threw: {}", e.what());
                     }
                   }
                   turns_in_flight_.fetch_sub(1);
                 });
}

Status SqliteBotStore::writeTurns(Conn& c, const std::vector<BufferedTurn>& buf) {
  std::map<std::pair<std::string_view, std::string_view>, std::vector<std::size_t>> bots;
  for (std::size_t i = 0; i < buf.size(); ++i)
    bots[{buf[i].t.account.str(), buf[i].t.bot.str()}].push_back(i);
  for (auto& [key, idx] : bots) {
    const int keep = std::max(buf[idx.back()].keep, 0);
    std::unordered_map<std::string_view, std::size_t> last;
    for (std::size_t i : idx) last[buf[i].t.turn_id] = i;
    std::vector<std::size_t> live;
    for (std::size_t i : idx)
      if (last[buf[i].t.turn_id] == i) live.push_back(i);
    if (live.size() > static_cast<std::size_t>(keep)) {
      std::vector<std::size_t> ranked = live;
      std::sort(ranked.begin(), ranked.end(), [&](std::size_t a, std::size_t b) {
        if (buf[a].t.ts != buf[b].t.ts) return buf[a].t.ts > buf[b].t.ts;
        return a > b;
      });
      ranked.resize(static_cast<std::size_t>(keep));
      std::sort(ranked.begin(), ranked.end());
      live = std::move(ranked);
    }
    for (std::size_t i : live) PARLEY_STORE_TRY(insertTurn(c, buf[i].t));
    PARLEY_STORE_TRY(pruneTurns(c, buf[idx.back()].t, keep));
  }
  return {};
}

}  // namespace parley::store::sqlite
