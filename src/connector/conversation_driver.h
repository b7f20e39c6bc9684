#pragma once

// The connector's side of each conversation a running bot holds: it takes the engine's events
// (ownership changes, consumer messages, rings), derives what the bot owes a conversation it
// takes or resumes (catch-up from the stored turn marks), queues and combines consumer
// messages, starts one turn at a time (TurnRunner), and runs the chat inactivity timers and the
// open-conversation limit. Private to the connector.
//
// Threading: the engine's callbacks may come on any engine thread; all per-conversation work
// runs on the conversation's strand (ConvState::strand, the engine's own strand of it). Ring
// answers run on the connector's pool. The map of tracked conversations is guarded by a mutex.

#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/thread_annotations.h"
#include "connector/bot_registry.h"
#include "connector/conversation_state.h"
#include "connector/metrics.h"
#include "connector/turn_runner.h"
#include "connector/work_tracker.h"
#include "conversation/conversation_service.h"
#include "store/store.h"

namespace parley::connector {

class ConversationDriver final : public TurnObserver {
 public:
  // What the driver uses; all must outlive it. `pool` gives strands to conversations the engine
  // does not hold open and runs the ring answers.
  struct Deps {
    conversation::ConversationService& convs;
    store::ConversationStore& conversations;
    boost::asio::thread_pool& pool;
    BotRegistry& registry;
    TurnRunner& turns;
    ConnectorMetrics& metrics;
    WorkTracker& work;
    StrandTasks& strands;
    int max_open_conversations;
    // How long a catch-up that could not read the store waits before it reads again
    // (ConnectorOptions::store_retry_max_ms).
    int catch_up_retry_ms;
  };
  explicit ConversationDriver(Deps deps) : d_(deps) {}

  // Engine events (engine threads).
  void conversationChanged(const store::Conversation& c);
  // Only a consumer's content starts a turn or counts as activity: every other message (the
  // bot's own, an agent's, a receipt) is dropped here. `e` is the engine's shared event: the
  // turn input holds its message and its parsed event, not copies.
  void messageAdded(const std::shared_ptr<const conversation::MessageAdded>& e);
  void ringOffered(const conversation::Ring& ring);
  // Cluster mode: this node lost the conversation's lease. Its state is released as when the
  // bot loses the conversation (a turn in flight is discarded) and forgotten.
  void conversationLost(const store::Conversation& c);

  // TurnObserver
  void turnEnded(const std::shared_ptr<ConvState>& st) override;

  // stop(): cancels every conversation's timers (on its strand).
  void cancelTimers();
  // stop(), after the pool was joined: drops every conversation's state, so none outlives the
  // engine.
  void dropAll();
  // Conversations tracked (the parley_bot_conversations gauge).
  std::size_t size() const;
  // Whether the work for `id` runs on the engine's strand of that conversation.
  bool onEngineStrand(const ConversationId& id) const;

 private:
  // Whether convFor makes the state of a conversation it does not track yet.
  enum class Track { kExisting, kCreate };
  std::shared_ptr<ConvState> convFor(const ConversationId& id, Track track);
  void forget(const ConversationId& id);
  void handleChange(const std::shared_ptr<ConvState>& st, const store::Conversation& c,
                    const std::shared_ptr<BotRuntime>& bot);
  void release(const std::shared_ptr<ConvState>& st);
  void catchUp(const std::shared_ptr<ConvState>& st);
  // A turn was left owed (its writes failed past the retry limit): drops what is queued and
  // derives what the bot owes from the store again (catchUp, retried until it can read).
  void resync(const std::shared_ptr<ConvState>& st);
  void finishCatchUp(const std::shared_ptr<ConvState>& st, std::uint64_t epoch,
                     const Result<std::vector<store::Message>>& r);
  void enqueueMessage(const std::shared_ptr<ConvState>& st, const ConsumerMessage& m,
                      InputKind kind);
  void handleMessage(const std::shared_ptr<ConvState>& st, const ConsumerMessage& m,
                     InputKind kind);
  void pump(const std::shared_ptr<ConvState>& st);
  // Chat inactivity (strand).
  void cancelInactivity(const std::shared_ptr<ConvState>& st);
  void armInactivityIfWaiting(const std::shared_ptr<ConvState>& st);
  // The two chat inactivity steps.
  enum class Idle { kWarning, kClose };
  void scheduleIdle(const std::shared_ptr<ConvState>& st, std::int64_t ms, Idle step);
  void onIdle(const std::shared_ptr<ConvState>& st, Idle step);

  Deps d_;
  mutable Mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<ConvState>> conversations_ PARLEY_GUARDED_BY(mu_);
};

}  // namespace parley::connector
