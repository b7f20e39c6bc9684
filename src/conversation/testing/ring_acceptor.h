#pragma once

// A ConversationListener that plays the human agents' clients: it accepts every ring offered to
// an agent it was told about, and records the chat states it hears. For tests only.
// Thread-safe (events arrive on the engine's threads).

#include <boost/json.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "conversation/conversation_service.h"

namespace parley::conversation::testing {

class RingAcceptor final : public ConversationListener {
 public:
  // `engine` is read when a ring arrives, so it may be set after this is built.
  explicit RingAcceptor(ConversationService*& engine) : engine_(engine) {}

  // Rings offered to `agent` from now on are accepted as `agent`.
  void acceptFor(Actor agent) {
    std::lock_guard l(mu_);
    agents_.push_back(std::move(agent));
  }
  // The `chatState` of every chat-state event so far, in arrival order.
  std::vector<std::string> chatStates() {
    std::lock_guard l(mu_);
    return chat_states_;
  }

  void onRingOffered(const RingOffered& e) override {
    std::optional<Actor> who;
    {
      std::lock_guard l(mu_);
      for (const auto& a : agents_)
        if (a.user == e.ring.user) who = a;
    }
    if (who) engine_->acceptRing(*who, e.ring.ring_id, [](Result<store::Conversation>) {});
  }
  void onChatState(const ChatStateChanged& e) override {
    std::lock_guard l(mu_);
    chat_states_.push_back(
        std::string(boost::json::parse(e.event_json).at("chatState").as_string()));
  }

 private:
  ConversationService*& engine_;
  std::mutex mu_;
  std::vector<Actor> agents_;
  std::vector<std::string> chat_states_;
};

}  // namespace parley::conversation::testing
