#pragma once

// Which conversations this node's protocol sessions watch, told to whoever needs to know (the
// cluster relay, app/conversation_relay.h, which takes other nodes' events only for them). The
// hub calls watch() when a session registers and unwatch() when it goes, once each per session,
// outside its own lock, on the session's thread (watch() may block briefly: the caller's
// session reads the store only after it returns, so nothing published after that is missed).
//
// A consumer session watches that consumer's conversations; an agent session watches every
// conversation of its account (its user's conversations and its ExConversations subscriptions
// can be any of them).

#include <optional>

#include "common/ids.h"

namespace parley::server {

class SessionInterest {
 public:
  virtual ~SessionInterest() = default;
  // `consumer`: that consumer's conversations; nullopt: every conversation of `account`.
  virtual void watch(const AccountId& account, const std::optional<ConsumerId>& consumer) = 0;
  virtual void unwatch(const AccountId& account, const std::optional<ConsumerId>& consumer) = 0;
};

}  // namespace parley::server
