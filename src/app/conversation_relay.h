#pragma once

// Conversation events between the nodes of a cluster, to the nodes that watch them. The node
// that holds a conversation (its engine made or recovered it) broadcasts every committed message
// and every conversation change on the core NATS subject
// `parley-conv.<account>.<consumer>.<conversation>` (not in the stream: nothing is stored). A
// node takes a subject's events only while one of its protocol sessions watches them
// (server/session_interest.h, told by the hub): a consumer session subscribes the node to
// `parley-conv.<account>.<consumer>.*`, an agent session to `parley-conv.<account>.>`; the last
// session of a consumer or of an account's agents leaving unsubscribes it. What it receives goes
// to its own protocol sessions (the server's hub), so a socket on another node sees the change
// as if the conversation were held there. Only sessions get these events: the bot connector and
// routing of the other nodes never do (a bot turn runs on the conversation's node only).
//
// Exactly once, in order, for messages: core NATS delivers at most once, in publish order per
// publisher. A session watches before it reads the store (the hub calls watch() first, and the
// subscription is confirmed by the server before watch() returns), so a subscription that starts
// late misses nothing the session does not read itself. A message whose sequence jumps over the
// last one delivered for its conversation (lost while the connection to NATS was down) is
// preceded by the missing ones, read from the store on the relay's own thread (the
// conversation's later events wait behind them). Every event carries its publisher's origin and
// a number that grows per publisher: an event seen twice (a conversation watched both as a
// consumer's and as an account's) is dropped, as is a message whose sequence was delivered. A
// conversation change carries the whole conversation, so the next change repairs a lost one;
// lost changes are not filled. Each watched subscription has a start: what the relay remembers
// of a conversation from before it (the node stopped watching it meanwhile) is not used for gaps.
// It remembers the `max_conversations` most recently started conversations (about 150 bytes
// each).
//
// On the in-process bus nothing is published or subscribed (a node alone).
//
// Threading: the publishing side is a ConversationListener (engine threads; publish() does not
// block). watch() blocks for a round trip to NATS when it subscribes. Received events are handed
// to `sessions` on the bus's shared delivery threads (bus::Delivery::kShared: watching any number
// of consumers adds no thread; so nothing on that path may block) or the relay's fill thread,
// one at a time, in order per conversation.

#include <atomic>
#include <boost/json/object.hpp>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <variant>

#include "bus/bus.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "conversation/conversation_service.h"
#include "server/session_interest.h"
#include "store/store.h"

namespace parley::app {

// A conversation as JSON (every field, participants included) and back; Invalid naming what is
// missing or unknown. The relay's events and the forwarder's answers carry it.
boost::json::object conversationJson(const store::Conversation& c);
Result<store::Conversation> conversationFrom(const boost::json::object& o);

// The JSON the relay carries (exposed for tests): {"type":"message"|"changed", "origin",
// "number", ...}.
// `number` grows per origin (duplicates are dropped by it).
std::string encodeRelayedMessage(const std::string& origin, const conversation::MessageAdded& e,
                                 std::uint64_t number = 0);
std::string encodeRelayedChange(const std::string& origin,
                                const conversation::ConversationChanged& e,
                                std::uint64_t number = 0);

class ConversationRelay final : public conversation::ConversationListener,
                                public server::SessionInterest {
 public:
  static constexpr std::size_t kDefaultMaxConversations = 100000;

  // `sessions` gets the other nodes' events; it must outlive the relay (or stop() first).
  // `store` is read for the messages a gap skipped.
  ConversationRelay(bus::Bus& bus, conversation::ConversationListener& sessions,
                    store::ConversationStore& store,
                    std::size_t max_conversations = kDefaultMaxConversations);
  ~ConversationRelay() override;

  // Starts the fill thread (a shared bus only); subscribes to nothing until watch().
  Status start();
  // No event is handed to `sessions` once it returns; watch() subscribes to nothing after it.
  void stop();

  // SessionInterest: subscribes on the first watcher of a consumer or of an account, unsubscribes
  // when its last watcher goes. Nothing on the in-process bus.
  void watch(const AccountId& account, const std::optional<ConsumerId>& consumer) override;
  void unwatch(const AccountId& account, const std::optional<ConsumerId>& consumer) override;

  // Events handed on, dropped as repeats, messages read from the store to fill a gap, and the
  // subscriptions held now (tests, metrics).
  std::uint64_t delivered() const;
  std::uint64_t duplicates() const;
  std::uint64_t filled() const;
  std::size_t subscriptions() const;
  // Waits until no gap is being filled (tests).
  void waitFilled();

  // ConversationListener: this node's events, published.
  void onConversationChanged(const conversation::ConversationChanged& e) override;
  void onMessageAddedShared(const std::shared_ptr<const conversation::MessageAdded>& e) override;

  // The subject of a conversation's events, and the filter of what a watcher takes (exposed for
  // tests).
  static std::string subjectOf(const store::Conversation& c);
  static std::string filterOf(const AccountId& account, const std::optional<ConsumerId>& consumer);

 private:
  using Event = std::variant<std::shared_ptr<const conversation::MessageAdded>,
                             conversation::ConversationChanged>;
  struct Received {
    std::string subject;
    std::string origin;
    std::uint64_t number = 0;  // grows per origin
    std::uint64_t since = 0;   // the start of the subscription it came by
    Event event;
  };
  struct Seen {
    std::string origin;
    std::uint64_t number = 0;
    std::int64_t message_sequence = -1;
    std::uint64_t recorded = 0;  // generation_ when last updated
    bool filling = false;        // a gap is being read from the store; `waiting` wait for it
    std::deque<Received> waiting;
    std::list<std::string>::iterator age;
  };
  struct Watched {
    std::size_t watchers = 0;
    std::unique_ptr<bus::Subscription> sub;
  };
  struct Fill {
    std::string subject;
    store::Conversation conversation;
    std::int64_t from = 0;  // the first sequence missing
    std::int64_t to = 0;    // the sequence that arrived
  };

  void receive(const bus::BusMessage& m, std::uint64_t since);
  // Hands `r` on unless it is a repeat; a gap first queues a Fill.
  void accept(Received r) PARLEY_REQUIRES(mu_);
  void deliver(const Event& e) PARLEY_REQUIRES(mu_);
  Seen* seenOf(const std::string& subject) PARLEY_REQUIRES(mu_);
  void fillLoop() PARLEY_EXCLUDES(mu_);

  bus::Bus& bus_;
  conversation::ConversationListener& sessions_;
  store::ConversationStore& store_;
  const std::size_t max_conversations_;
  const std::string origin_;
  const std::string origin_field_;  // `"origin":"<origin_>"`, to skip this node's own events
  std::atomic<std::uint64_t> next_number_{1};

  mutable Mutex watch_mu_;  // held while subscribing and unsubscribing; taken before mu_
  std::unordered_map<std::string, Watched> watched_ PARLEY_GUARDED_BY(watch_mu_);  // by filter
  bool stopped_ PARLEY_GUARDED_BY(watch_mu_) = false;

  mutable Mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, Seen> seen_ PARLEY_GUARDED_BY(mu_);  // by subject
  std::list<std::string> ages_ PARLEY_GUARDED_BY(mu_);                 // subjects, oldest first
  std::deque<Fill> fills_ PARLEY_GUARDED_BY(mu_);
  bool filling_ PARLEY_GUARDED_BY(mu_) = false;  // the fill thread reads the store
  bool stopping_ PARLEY_GUARDED_BY(mu_) = false;
  std::uint64_t generation_ PARLEY_GUARDED_BY(mu_) = 0;  // grows with each subscription
  std::uint64_t delivered_ PARLEY_GUARDED_BY(mu_) = 0;
  std::uint64_t duplicates_ PARLEY_GUARDED_BY(mu_) = 0;
  std::uint64_t filled_ PARLEY_GUARDED_BY(mu_) = 0;
  std::thread filler_;
};

}  // namespace parley::app
