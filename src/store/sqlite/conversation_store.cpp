#include "store/sqlite/conversation_store.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/sqlite/cluster_store.h"
#include "store/sqlite/query.h"
#include "store/sqlite/reader_pool.h"
#include "store/sqlite/rows.h"
#include "store/store_util.h"

namespace parley::store::sqlite {
namespace {

// Invalid unless the keys of a conversation to store are set.
Status checkConversation(const Conversation& c) {
  if (c.id.empty()) return invalid("conversation id is required");
  if (c.account.empty()) return invalid("conversation account is required");
  return {};
}

// Invalid unless `m` may be appended to `conv` (see store.h, appendMessage).
Status checkAppend(const Conversation& conv, const Message& m) {
  if (auto st = checkConversation(conv); !st) return st;
  if (m.conversation != conv.id)
    return invalid("message conversation " + m.conversation.str() + " differs from conversation " +
                   conv.id.str());
  if (auto st = internal::checkAppendCounters(conv, m); !st) return st;
  return {};
}

// The print of `c` as it would be stored (see RowPrint).
RowPrint printOf(const Conversation& c) {
  std::string f;
  f.reserve(128 + c.context_json.size());
  auto add = [&f](std::string_view v) {
    f.append(v);
    f.push_back('\x1f');
  };
  add(c.account.str());
  add(c.consumer.str());
  add(channelName(c.channel));
  add(stateName(c.state));
  add(c.skill.str());
  add(ttrTypeName(c.ttr_type));
  add(std::to_string(c.ttr_value_s));
  add(std::to_string(c.ttr_due_at));
  add(std::to_string(c.start_ts));
  add(std::to_string(c.end_ts));
  add(closeReasonText(c.close_reason));
  add(c.context_json);
  add(encodeTurnMark(c.turn_mark));
  std::string p;
  for (const auto& x : c.participants) {
    p.append(x.id).push_back('\x1f');
    p.append(participantRoleName(x.role)).push_back('\x1f');
    p.append(participantStateName(x.state)).push_back('\x1f');
    p.append(std::to_string(x.joined_at)).push_back('\x1e');
  }
  return RowPrint{std::hash<std::string_view>{}(f), std::hash<std::string_view>{}(p)};
}

// The message of conversation `id` with this originator and idempotency key (messages_idem_key).
Result<std::optional<Message>> messageByKey(Conn& c, const ConversationId& id,
                                            const std::string& originator_id,
                                            const std::string& key) {
  static const std::string kSelect = "SELECT " + cols(kMessageCols) +
                                     " FROM messages WHERE conversation=? AND originator_id=? AND "
                                     "idem_key=? AND idem_key<>''";
  auto found = selectOne<Message>(c, kSelect, messageRow, id.str(), originator_id, key);
  if (found && *found) (*found)->idempotency_key = key;
  return found;
}

// Inserts the message row; Conflict when its sequence exists in the conversation, or when its
// idempotency key does for its originator (looked up first, in the same transaction: the
// writer is the only one, so nothing comes between; the unique index holds it regardless).
Status insertMessage(Conn& c, const Conversation& conv, const Message& m) {
  if (!m.idempotency_key.empty()) {
    auto dup = messageByKey(c, conv.id, m.originator_id, m.idempotency_key);
    if (!dup) return asStatus(dup);
    if (*dup) return internal::duplicateKey(conv, m);
  }
  static const std::string kInsert =
      "INSERT INTO messages(" + cols(kMessageCols) + ", idem_key) VALUES(?,?,?,?,?,?,?,?,?,?,?)";
  auto inserted =
      execute(c, kInsert, m.conversation.str(), m.sequence, m.server_ts, m.originator_id,
              m.originator_pid, participantRoleName(m.originator_role), audienceName(m.audience),
              m.event_json, m.metadata_json, encodeTurnMark(m.turn), m.idempotency_key);
  if (!inserted && inserted.error().code == ErrorCode::kConflict)
    return conflict("message " + std::to_string(m.sequence) + " already exists in conversation " +
                    conv.id.str());
  return asStatus(inserted);
}

// Reads the participants of `conv` (by position) into it.
Status loadParticipants(Conn& c, Conversation& conv) {
  static const std::string kSql = "SELECT " + cols(kParticipantCols) +
                                  " FROM participants WHERE conversation=? ORDER BY position";
  auto ps = selectAll<Participant>(c, kSql, participantRow, conv.id.str());
  if (!ps) return asStatus(ps);
  conv.participants = std::move(*ps);
  return {};
}

// Reads the participants of every conversation of `rows` (inside the caller's read
// transaction, so they come from the same snapshot as the rows).
Result<std::vector<Conversation>> withParticipants(Conn& c,
                                                   Result<std::vector<Conversation>> rows) {
  if (!rows) return rows;
  for (auto& conv : *rows) PARLEY_STORE_TRY(loadParticipants(c, conv));
  return rows;
}

// A conversation row refused by the unique index conversations_open_consumer: the Conflict
// naming the consumer's open conversation (`refused` when there is none to name).
Status openConversationConflict(Conn& c, const Conversation& conv, const Error& refused) {
  static const std::string kSql =
      "SELECT id FROM conversations WHERE account=? AND consumer=? AND state=? AND id<>?";
  auto open = selectOne<std::string>(
      c, kSql, [](Query& q) { return q.text(0); }, conv.account.str(), conv.consumer.str(),
      stateName(ConversationState::kOpen), conv.id.str());
  if (!open) return std::unexpected(open.error());
  if (!*open) return std::unexpected(refused);
  return internal::openConversationTaken(conv, **open);
}

// How a conversation to save differs from its stored row.
enum class RowChange { kNew, kNone, kCounters, kAll };

// Compares `conv` with its stored row. Conflict when the id belongs to another account.
Result<RowChange> rowChange(Conn& c, const Conversation& conv) {
  static const std::string kSelect =
      "SELECT account, consumer, channel, state, skill, ttr_type, ttr_value_s, ttr_due_at, "
      "start_ts, end_ts, close_reason, context_json, updated_at, next_sequence, turn "
      "FROM conversations WHERE id=?";
  auto q = prepare(c, kSelect, conv.id.str());
  if (!q) return std::unexpected(q.error());
  auto has = q->next();
  if (!has) return std::unexpected(has.error());
  if (!*has) return RowChange::kNew;
  if (q->text(0) != conv.account.str())
    return conflict("conversation " + conv.id.str() + " belongs to another account");
  const bool same_fixed =
      q->text(1) == conv.consumer.str() && q->text(2) == channelName(conv.channel) &&
      q->text(3) == stateName(conv.state) && q->text(4) == conv.skill.str() &&
      q->text(5) == ttrTypeName(conv.ttr_type) && q->i64(6) == conv.ttr_value_s &&
      q->i64(7) == conv.ttr_due_at && q->i64(8) == conv.start_ts && q->i64(9) == conv.end_ts &&
      q->text(10) == closeReasonText(conv.close_reason) && q->text(11) == conv.context_json &&
      q->text(14) == encodeTurnMark(conv.turn_mark);
  if (!same_fixed) return RowChange::kAll;
  if (q->i64(12) == conv.updated_at && q->i64(13) == conv.next_sequence) return RowChange::kNone;
  return RowChange::kCounters;
}

// Upserts the conversation row and its participants, writing only what changed: an appended
// message usually changes only updated_at and next_sequence, which no index covers, so the
// commit dirties one table page instead of the row's index pages as well. Conflict when the id
// belongs to another account (nothing is written then).
Status storeConversation(Conn& c, const Conversation& conv) {
  auto change = rowChange(c, conv);
  if (!change) return asStatus(change);
  switch (*change) {
    case RowChange::kNone:
      break;
    case RowChange::kCounters: {
      static const std::string kSql =
          "UPDATE conversations SET updated_at=?, next_sequence=? WHERE id=?";
      PARLEY_STORE_TRY(execute(c, kSql, conv.updated_at, conv.next_sequence, conv.id.str()));
      break;
    }
    case RowChange::kNew:
    case RowChange::kAll: {
      // An upsert by id, not INSERT OR REPLACE: REPLACE would also delete the row that the
      // one-open-conversation index (conversations_open_consumer) finds in conflict.
      static const std::string kSql =
          "INSERT INTO conversations(" + cols(kConversationCols) +
          ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
          "consumer=excluded.consumer, channel=excluded.channel, state=excluded.state, "
          "skill=excluded.skill, ttr_type=excluded.ttr_type, ttr_value_s=excluded.ttr_value_s, "
          "ttr_due_at=excluded.ttr_due_at, start_ts=excluded.start_ts, end_ts=excluded.end_ts, "
          "updated_at=excluded.updated_at, close_reason=excluded.close_reason, "
          "next_sequence=excluded.next_sequence, context_json=excluded.context_json, "
          "turn=excluded.turn";
      auto stored =
          execute(c, kSql, conv.id.str(), conv.account.str(), conv.consumer.str(),
                  channelName(conv.channel), stateName(conv.state), conv.skill.str(),
                  ttrTypeName(conv.ttr_type), conv.ttr_value_s, conv.ttr_due_at, conv.start_ts,
                  conv.end_ts, conv.updated_at, closeReasonText(conv.close_reason),
                  conv.next_sequence, conv.context_json, encodeTurnMark(conv.turn_mark));
      if (!stored && stored.error().code == ErrorCode::kConflict)
        return openConversationConflict(c, conv, stored.error());
      PARLEY_STORE_TRY(asStatus(stored));
      break;
    }
  }
  if (*change != RowChange::kNew) {
    // Most saves (every appended message) leave the participants as they were: compare
    // first, since reading two rows is cheaper than deleting and inserting them.
    Conversation stored;
    stored.id = conv.id;
    PARLEY_STORE_TRY(loadParticipants(c, stored));
    auto same = [](const Participant& a, const Participant& b) {
      return a.id == b.id && a.role == b.role && a.state == b.state && a.joined_at == b.joined_at;
    };
    if (std::ranges::equal(stored.participants, conv.participants, same)) return {};
    static const std::string kDelete = "DELETE FROM participants WHERE conversation=?";
    PARLEY_STORE_TRY(execute(c, kDelete, conv.id.str()));
  }
  static const std::string kInsert = "INSERT INTO participants(conversation, position, " +
                                     cols(kParticipantCols) + ") VALUES(?,?,?,?,?,?)";
  std::int64_t pos = 0;
  for (const auto& p : conv.participants)
    PARLEY_STORE_TRY(execute(c, kInsert, conv.id.str(), pos++, p.id, participantRoleName(p.role),
                             participantStateName(p.state), p.joined_at));
  return {};
}

}  // namespace

SqliteConversationStore::SqliteConversationStore(Db& db) : db_(db) {
  // A rolled-back write may have undone a stored row: its print would lie.
  db_.writer().setRollbackHook([this] { row_prints_.clear(); });
}

Status SqliteConversationStore::saveConversation(const Conversation& conv) {
  if (auto st = checkConversation(conv); !st) return st;
  return db_.write([&](Conn& c) -> Status { return saveTxn(c, conv); });
}

void SqliteConversationStore::saveConversationAsync(Conversation conv,
                                                    std::function<void(Status)> done) {
  if (auto st = checkConversation(conv); !st) return done(st);
  db_.writeAsync([this, conv = std::move(conv)](Conn& c) -> Status { return saveTxn(c, conv); },
                 std::move(done));
}

Status SqliteConversationStore::appendMessage(const Conversation& conv, const Message& m) {
  if (auto st = checkAppend(conv, m); !st) return st;
  return db_.write([&](Conn& c) -> Status { return appendTxn(c, conv, m); });
}

void SqliteConversationStore::appendMessageAsync(std::shared_ptr<const Conversation> conv,
                                                 std::shared_ptr<const Message> m,
                                                 std::function<void(Status)> done) {
  if (auto st = checkAppend(*conv, *m); !st) return done(st);
  db_.writeAsync([this, conv = std::move(conv),
                  m = std::move(m)](Conn& c) -> Status { return appendTxn(c, *conv, *m); },
                 std::move(done), Writer::Wrap::kSelf);
}

Result<Conversation> SqliteConversationStore::getConversation(const AccountId& acc,
                                                              const ConversationId& id) {
  auto r = db_.read([&](Conn& c) -> Result<std::optional<Conversation>> {
    ReadTxn txn(c);
    PARLEY_STORE_TRY(txn.status());
    auto conv = selectOne<Conversation>(
        c, "SELECT " + cols(kConversationSelect) + " FROM conversations c WHERE id=? AND account=?",
        conversationRow, id.str(), acc.str());
    if (!conv || !*conv) return conv;
    PARLEY_STORE_TRY(loadParticipants(c, **conv));
    return conv;
  });
  return found(std::move(r),
               "conversation " + id.str() + " does not exist in account " + acc.str());
}

Result<std::vector<Conversation>> SqliteConversationStore::listConversations(
    const AccountId& acc, const ConversationQuery& q) {
  if (q.limit <= 0) return std::vector<Conversation>{};
  std::string sql = "SELECT " + cols(kConversationSelect) + " FROM conversations c WHERE account=?";
  if (q.state) sql += " AND state=?";
  if (q.skill) sql += " AND skill=?";
  if (q.consumer) sql += " AND consumer=?";
  sql += " ORDER BY start_ts, id LIMIT ?";
  return db_.read([&](Conn& c) -> Result<std::vector<Conversation>> {
    ReadTxn txn(c);
    PARLEY_STORE_TRY(txn.status());
    auto query = c.query(sql);
    if (!query) return std::unexpected(query.error());
    query->arg(acc.str());
    if (q.state) query->arg(stateName(*q.state));
    if (q.skill) query->arg(q.skill->str());
    if (q.consumer) query->arg(q.consumer->str());
    query->arg(q.limit);
    return withParticipants(c, collect<Conversation>(*query, conversationRow));
  });
}

Result<std::vector<Conversation>> SqliteConversationStore::listOpenConversations() {
  return db_.read([&](Conn& c) -> Result<std::vector<Conversation>> {
    ReadTxn txn(c);
    PARLEY_STORE_TRY(txn.status());
    return withParticipants(
        c, selectAll<Conversation>(c,
                                   "SELECT " + cols(kConversationSelect) +
                                       " FROM conversations c WHERE state=? ORDER BY start_ts, id",
                                   conversationRow, stateName(ConversationState::kOpen)));
  });
}

Result<std::vector<Message>> SqliteConversationStore::listMessages(const ConversationId& id,
                                                                   std::int64_t from_seq,
                                                                   int limit) {
  if (limit <= 0) return std::vector<Message>{};
  return db_.read([&](Conn& c) {
    return selectAll<Message>(c,
                              "SELECT " + cols(kMessageCols) +
                                  " FROM messages WHERE conversation=? AND sequence>=? ORDER BY "
                                  "sequence LIMIT ?",
                              messageRow, id.str(), from_seq, limit);
  });
}

Result<std::optional<Message>> SqliteConversationStore::findMessageByKey(
    const ConversationId& id, const std::string& originator_id, const std::string& key) {
  if (key.empty()) return std::optional<Message>();
  return db_.read([&](Conn& c) -> Result<std::optional<Message>> {
    return messageByKey(c, id, originator_id, key);
  });
}

void SqliteConversationStore::remember(const Conversation& conv) {
  if (conv.state == ConversationState::kClose) {
    row_prints_.erase(conv.id.str());
    return;
  }
  row_prints_.insert_or_assign(conv.id.str(), printOf(conv));
}

Status SqliteConversationStore::saveTxn(Conn& c, const Conversation& conv) {
  PARLEY_STORE_TRY(checkFence(c, conv));
  row_prints_.erase(conv.id.str());
  PARLEY_STORE_TRY(storeConversation(c, conv));
  remember(conv);
  return {};
}

Status SqliteConversationStore::appendTxn(Conn& c, const Conversation& conv, const Message& m) {
  PARLEY_STORE_TRY(checkFence(c, conv));
  auto it = row_prints_.find(conv.id.str());
  if (it != row_prints_.end() && it->second == printOf(conv)) return insertMessage(c, conv, m);
  row_prints_.erase(conv.id.str());
  PARLEY_STORE_TRY(c.run("SAVEPOINT a"));
  Status st = storeConversation(c, conv);
  if (st) st = insertMessage(c, conv, m);
  if (!st) {
    (void)c.run("ROLLBACK TO a");
    (void)c.run("RELEASE a");
    return st;
  }
  PARLEY_STORE_TRY(c.run("RELEASE a"));
  remember(conv);
  return {};
}

}  // namespace parley::store::sqlite
