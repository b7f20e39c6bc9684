#pragma once

// The conversation engine's strands, for a component that does its own work for a conversation
// in the conversation's order (the bot connector's turns). Asio stays out of the engine's other
// headers; only .cpp files include this one.

#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <optional>

#include "conversation/conversation_service.h"

namespace parley::conversation {

// The serial queue of one conversation (see "Threading" in the README).
using ConversationStrand = boost::asio::strand<boost::asio::thread_pool::executor_type>;

// The strand of an open conversation of `engine`, or nullopt when the conversation is not open
// here (closed, unknown) or `engine` was not made by makeConversationService. Every event of
// that conversation (ConversationChanged, MessageAdded, rings, overdue) is emitted on this
// strand, and the completions of publish, updateConversation and markTurn on it are called on
// it while the conversation is open: a component that runs its own work for the conversation on
// the same strand (the bot connector) handles them inline, with no hand-off, and everything done
// for one conversation is ordered by one queue. Work posted to it must not block for long; a
// copy stays valid after the conversation closes (it is then a strand of no engine operation),
// and must be destroyed before the engine is.
std::optional<ConversationStrand> conversationStrand(ConversationService& engine,
                                                     const ConversationId& id);

}  // namespace parley::conversation
