#pragma once

// The conversation engine's thread pool, lent to a component that runs its own non-blocking
// strands beside the engine's (the bot connector's turns): a hand-off between the engine and
// that component then stays on the same threads, instead of waking a second pool's. Asio stays
// out of the engine's other headers; only .cpp files include this one.

#include <boost/asio/thread_pool.hpp>

#include "conversation/conversation_service.h"

namespace parley::conversation {

// The pool of `engine`, which must have been made by makeConversationService (aborts
// otherwise). It lives as long as the engine. Work posted to it must not block for long (the
// engine's own strands share it), and before the engine is destroyed that work must have ended
// and every strand and timer made on the pool must have been destroyed.
boost::asio::thread_pool& enginePool(ConversationService& engine);

}  // namespace parley::conversation
