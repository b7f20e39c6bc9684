#pragma once

// The SQLite ConversationStore: conversations, participants, messages. Private to store/sqlite.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "store/sqlite/db.h"
#include "store/store.h"

namespace parley::store::sqlite {

// What a conversation row holds besides its counters, as two 64-bit hashes: the columns and
// the participants. Equal prints mean the stored row differs at most in `updated_at` and
// `next_sequence`, which reads derive from the messages (kConversationSelect).
struct RowPrint {
  std::size_t fields = 0;
  std::size_t people = 0;
  bool operator==(const RowPrint&) const = default;
};

// Conversations with their participants, and their messages, on the shared Db. Thread-safe
// (see Db); owned by the SqliteStore.
//
// The writer remembers, per open conversation, the print of the row it last stored
// (`row_prints_`): an append whose conversation changed nothing but its counters since then
// writes only the message row. The prints are touched only by the writer's leader (inside
// writes) and are dropped whole when a write rolls back.
class SqliteConversationStore final : public ConversationStore {
 public:
  // REQUIRES: `db` outlives this; constructed before the first write (it registers the
  // writer's rollback hook).
  explicit SqliteConversationStore(Db& db);

  // Forgets every stored row print (the next append of each conversation stores its row
  // again). REQUIRES: called inside a write (on the writer's leader), e.g. before raw SQL that
  // may change any row.
  void forgetStoredRows() { row_prints_.clear(); }
  // Forgets the stored row print of one conversation. REQUIRES: called inside a write.
  void forgetStoredRow(const std::string& id) { row_prints_.erase(id); }

  // ConversationStore
  Status saveConversation(const Conversation& conv) override;
  void saveConversationAsync(Conversation conv, std::function<void(Status)> done) override;
  Status appendMessage(const Conversation& conv, const Message& m) override;
  void appendMessageAsync(std::shared_ptr<const Conversation> conv,
                          std::shared_ptr<const Message> m,
                          std::function<void(Status)> done) override;
  Result<Conversation> getConversation(const AccountId& acc, const ConversationId& id) override;
  Result<std::vector<Conversation>> listConversations(const AccountId& acc,
                                                      const ConversationQuery& q) override;
  Result<std::vector<Conversation>> listOpenConversations() override;
  Result<std::vector<Message>> listMessages(const ConversationId& id, std::int64_t from_seq,
                                            int limit) override;
  Result<std::optional<Message>> findMessageByKey(const ConversationId& id,
                                                  const std::string& originator_id,
                                                  const std::string& key) override;

 private:
  // After `conv` was stored: remember its print while it is open (closed conversations rarely
  // get more messages; forgetting them keeps the map as large as the open conversations).
  void remember(const Conversation& conv);
  // Stores `conv` (inside a write) and remembers its print.
  Status saveTxn(Conn& c, const Conversation& conv);
  // Appends `m`. When the writer stored this conversation's row before and nothing but its
  // counters changed since, that is one INSERT (atomic by itself: no savepoint, no conversation
  // row read or rewritten). Otherwise the conversation is stored first (it also checks the
  // owner) inside a savepoint, so a conflicting message rolls it back with it.
  // Runs as Writer::Wrap::kSelf.
  Status appendTxn(Conn& c, const Conversation& conv, const Message& m);

  Db& db_;
  // Conversation id → print of the row as the writer last stored it (open conversations).
  // Touched only by the writer's leader; dropped whole when a write rolls back.
  std::unordered_map<std::string, RowPrint> row_prints_;
};

}  // namespace parley::store::sqlite
