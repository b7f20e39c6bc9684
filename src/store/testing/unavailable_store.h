#pragma once

// Tests: a Store over another whose conversation writes (and, if asked, reads) fail with
// ErrorCode::kUnavailable for a while, as a database that restarts or a lost connection makes
// them fail. Everything else is the inner store's.
//
//   auto s = std::make_unique<store::testing::UnavailableStore>(store::makeMemoryStore(clock));
//   s->writes_down = true;                    // every appendMessage / saveConversation fails
//   s->fail_appends_if = [](const store::Message& m) { return m.originator_role != kConsumer; };
//   s->fail_next_appends = 3;                 // or: the next 3 appends fail
//   s->committed_then_failed = true;          // a failing append is written first (the commit
//                                             // happened, its answer was lost)
//
// Thread-safe (the switches are atomics; set `fail_appends_if` before the store is used).

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "store/store.h"

namespace parley::store::testing {

class UnavailableStore final : public Store, public ConversationStore {
 public:
  explicit UnavailableStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}

  // While set, appendMessage and saveConversation (and their asynchronous forms) fail without
  // writing (appends only those `fail_appends_if` selects, when set).
  std::atomic<bool> writes_down{false};
  // While set, getConversation and listMessages fail too.
  std::atomic<bool> reads_down{false};
  // The next N appends fail (those `fail_appends_if` selects, when set), whatever writes_down
  // says.
  std::atomic<int> fail_next_appends{0};
  // A failing append writes first and then answers Unavailable: an ambiguous outcome.
  std::atomic<bool> committed_then_failed{false};
  // Which appends may fail (all when empty).
  std::function<bool(const Message&)> fail_appends_if;
  // Calls refused so far (writes and reads).
  std::atomic<int> refused{0};

  // Store
  AccountStore& accounts() override { return inner_->accounts(); }
  ConversationStore& conversations() override { return *this; }
  FunctionStore& functions() override { return inner_->functions(); }
  BotStore& bots() override { return inner_->bots(); }
  OAuthStore& oauth() override { return inner_->oauth(); }
  ScheduleStore& schedules() override { return inner_->schedules(); }
  int schemaVersion() const override { return inner_->schemaVersion(); }
  Result<ErasureResult> eraseConversationContent(const AccountId& acc,
                                                 const ConversationId& id) override {
    if (writes_down) return refuse("erasure of conversation " + id.str());
    return inner_->eraseConversationContent(acc, id);
  }

  // ConversationStore
  Status saveConversation(const Conversation& c) override {
    if (writes_down) return refuse("save of conversation " + c.id.str());
    return inner().saveConversation(c);
  }
  Status appendMessage(const Conversation& c, const Message& m) override {
    if (!fail_appends_if || fail_appends_if(m)) {
      bool fail = writes_down.load();
      for (int n = fail_next_appends.load(); !fail && n > 0;)
        if (fail_next_appends.compare_exchange_weak(n, n - 1)) fail = true;
      if (fail) {
        if (committed_then_failed) (void)inner().appendMessage(c, m);
        return refuse("append of message " + std::to_string(m.sequence) + " to " + c.id.str());
      }
    }
    return inner().appendMessage(c, m);
  }
  Result<Conversation> getConversation(const AccountId& acc, const ConversationId& id) override {
    if (reads_down) return refuse("read of conversation " + id.str());
    return inner().getConversation(acc, id);
  }
  Result<std::vector<Conversation>> listConversations(const AccountId& acc,
                                                      const ConversationQuery& q) override {
    if (reads_down) return refuse("list of conversations");
    return inner().listConversations(acc, q);
  }
  Result<std::vector<Conversation>> listOpenConversations() override {
    if (reads_down) return refuse("list of open conversations");
    return inner().listOpenConversations();
  }
  Result<std::vector<Message>> listMessages(const ConversationId& id, std::int64_t from_seq,
                                            int limit) override {
    if (reads_down) return refuse("read of the messages of " + id.str());
    return inner().listMessages(id, from_seq, limit);
  }
  Result<std::optional<Message>> findMessageByKey(const ConversationId& id,
                                                  const std::string& originator_id,
                                                  const std::string& key) override {
    if (reads_down) return refuse("read of a message of " + id.str() + " by its key");
    return inner().findMessageByKey(id, originator_id, key);
  }

 private:
  ConversationStore& inner() { return inner_->conversations(); }
  std::unexpected<Error> refuse(const std::string& what) {
    ++refused;
    return std::unexpected(
        Error{ErrorCode::kUnavailable, "test store: unavailable (" + what + " refused)"});
  }

  std::unique_ptr<Store> inner_;
};

}  // namespace parley::store::testing
