#pragma once

// Conversation events between the nodes of a cluster. The node that holds a conversation (its
// engine made or recovered it) publishes every committed message and every conversation change
// on the bus subject `parley.conv.<account>.<conversation>`; every other node hands what it
// receives to its own protocol sessions (the server's hub), so a consumer, agent or manager
// socket on another node sees the change as if the conversation were held there. Only sessions
// get these events: the bot connector and routing of the other nodes never do (a bot turn runs
// on the conversation's node only).
//
// Exactly once, in order: the bus delivers at least once, in publish order per conversation
// (one publisher, one subject). A receiver drops a message whose sequence it has already
// delivered for that conversation, and any event whose bus sequence is not above the last one
// it delivered for that subject (a redelivery). It remembers the `max_conversations` most
// recently started conversations (about 100 bytes each).
//
// On the in-process bus nothing is published or subscribed (a node alone).
//
// Threading: the publishing side is a ConversationListener (engine threads; publish() does not
// block). Received events are handed to `sessions` on the bus's delivery thread, in order.

#include <boost/json/object.hpp>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "bus/bus.h"
#include "common/result.h"
#include "conversation/conversation_service.h"

namespace parley::app {

// A conversation as JSON (every field, participants included) and back; Invalid naming what is
// missing or unknown. The relay's events and the forwarder's answers carry it.
boost::json::object conversationJson(const store::Conversation& c);
Result<store::Conversation> conversationFrom(const boost::json::object& o);

// The JSON the relay carries (exposed for tests): {"type":"message"|"changed", "origin", ...}.
std::string encodeRelayedMessage(const std::string& origin, const conversation::MessageAdded& e);
std::string encodeRelayedChange(const std::string& origin,
                                const conversation::ConversationChanged& e);

class ConversationRelay final : public conversation::ConversationListener {
 public:
  static constexpr std::size_t kDefaultMaxConversations = 100000;

  // `sessions` gets the other nodes' events; it must outlive the relay (or stop() first).
  ConversationRelay(bus::Bus& bus, conversation::ConversationListener& sessions,
                    std::size_t max_conversations = kDefaultMaxConversations);
  ~ConversationRelay() override;

  // Subscribes to the other nodes' events (a shared bus only).
  Status start();
  // No event is handed to `sessions` once it returns.
  void stop();

  // Events handed on and dropped as repeats (tests, metrics).
  std::uint64_t delivered() const;
  std::uint64_t duplicates() const;

  // ConversationListener: this node's events, published.
  void onConversationChanged(const conversation::ConversationChanged& e) override;
  void onMessageAddedShared(const std::shared_ptr<const conversation::MessageAdded>& e) override;

 private:
  struct Seen {
    std::uint64_t bus_sequence = 0;
    std::int64_t message_sequence = -1;
    std::list<std::string>::iterator age;
  };
  void receive(const bus::BusMessage& m);
  // Whether the event is new (and records it). REQUIRES: mu_ held.
  bool fresh(const std::string& subject, std::uint64_t bus_sequence, std::int64_t message_sequence);

  bus::Bus& bus_;
  conversation::ConversationListener& sessions_;
  const std::size_t max_conversations_;
  const std::string origin_;
  std::unique_ptr<bus::Subscription> sub_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, Seen> seen_;  // by subject; guarded by mu_
  std::list<std::string> ages_;                 // subjects, oldest first; guarded by mu_
  std::uint64_t delivered_ = 0;                 // guarded by mu_
  std::uint64_t duplicates_ = 0;                // guarded by mu_
};

}  // namespace parley::app
