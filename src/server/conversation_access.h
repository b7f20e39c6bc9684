#pragma once

// Which conversations a brand user may read: the policy's conversations.read.visible /
// conversations.read.any rules (docs/authorization.md) applied to one conversation. Used by the
// REST conversation reads and the protocol session's history reads and subscriptions.
// Thread-safe; never blocks (the engine's ring lookup is an in-memory read).

#include "common/policy.h"
#include "common/result.h"
#include "conversation/conversation_service.h"
#include "store/store.h"

namespace parley::server {

// True when `c` is visible to `user` without AGENT_MANAGER or ADMIN: `user` is one of its
// participants (any role, any state), holds a WAITING ring for it, or `c` is open, has no ACTIVE
// ASSIGNED_AGENT and waits in the queue of one of `user`'s skills.
bool visibleTo(const store::Conversation& c, const store::User& user,
               const conversation::ConversationService& service);

// Ok when `who` (the roles of `user`) may read `c`; Forbidden naming the roles otherwise.
Status authorizeRead(const policy::Subject& who, const store::User& user,
                     const store::Conversation& c,
                     const conversation::ConversationService& service);

}  // namespace parley::server
