#pragma once

// The factory of the conversation engine (the only implementation of ConversationService).

#include <boost/json/object.hpp>
#include <functional>
#include <memory>

#include "common/clock.h"
#include "conversation/conversation_service.h"
#include "store/store.h"

namespace parley::conversation {

// The event of a publish that is about to be stored, as a content check sees it.
struct ContentToCheck {
  const AccountId& account;
  // The conversation's channel (quick replies are for messaging only).
  store::Channel channel;
  ActorKind publisher;
  // The event object as published: {"type":"ContentEvent"|"RichContentEvent", ...}.
  const boost::json::object& event;
};

// Checks the content of an event before it is stored; an error refuses the publish with it.
using ContentCheck = std::function<Status(const ContentToCheck&)>;

struct Options {
  // Engine threads (store calls and listener callbacks run on them). Default: 2. REQUIRES: >= 1.
  int threads = 2;
  // How long a ring waits for accept or reject. Default: 60 s. REQUIRES: > 0.
  TimeMs ring_expiry_ms = 60'000;
  // How many agents hold a WAITING ring for one conversation at the same time (the first to
  // accept wins). Default: 1. REQUIRES: >= 1.
  int ring_fanout = 1;
  // How long a transfer to a named agent (SUGGEST) waits for that agent before falling back to
  // the skill queue. Default: 120 s. REQUIRES: > 0.
  TimeMs suggest_timeout_ms = 120'000;
  // Period of the internal timer that calls tick(). 0 disables it (tests call tick()).
  // Default: 1000 ms (real time; deadlines are compared with the Clock).
  TimeMs tick_interval_ms = 1000;
  // Checks every ContentEvent and RichContentEvent, from any publisher, after the publisher's
  // rights and before anything is stored; an error refuses the publish with that error (no
  // sequence is used, nothing is stored or announced). The engine itself knows no content rules:
  // `parley serve` plugs in the structured-content validator here. Runs on the conversation's
  // strand: must be thread-safe, must not block, and should be fast for plain text. Default:
  // empty, nothing is checked.
  ContentCheck content_check = {};
};

// Creates the engine. `store` and `clock` must outlive it. Call recover() before serving.
// Destroying the engine stops its timer and runs the work already queued, then joins its
// threads; completions queued by then are still called.
std::unique_ptr<ConversationService> makeConversationService(store::Store& store,
                                                             const Clock& clock,
                                                             Options options = {});

}  // namespace parley::conversation
