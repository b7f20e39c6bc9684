#pragma once

// Replay (REST `POST bots/{id}/replay`): runs a bot's recorded turns — its turn records, or an
// uploaded transcript — against another version of its function and answers, turn by turn, what
// changed (replay.h: texts, structured content, quick replies, private texts, the action,
// intents, errors). Each recorded function input is sent again as it was recorded, one turn at a
// time in recorded order, through the same code path as the conversation tester (a fresh context
// per invocation, as a test invoke); nothing is published, no conversation or turn record is
// touched. Private to the connector.
//
// Threading: thread-safe and stateless between calls; a run answers through `done`, once, on
// the connector's pool.

#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>

#include "common/api.h"
#include "common/clock.h"
#include "connector/account_caches.h"
#include "connector/bot_service.h"
#include "connector/richcontent/validator.h"
#include "connector/work_tracker.h"
#include "store/store.h"

namespace parley::connector {

class ReplayRunner {
 public:
  // Turns one replay runs at most (the turn records kept per bot are 200 too).
  static constexpr int kMaxTurns = 200;
  // Wall time of one replay; turns not reached by then are reported NOT_RUN and the replay is
  // incomplete.
  static constexpr std::chrono::seconds kBudget{120};

  struct Deps {
    store::Store& store;
    const richcontent::Validator& validator;
    const Clock& clock;
    const ConnectorOptions& opts;
    boost::asio::thread_pool& pool;
    ImageAllowlists& allowlists;
    WorkTracker& work;
  };
  explicit ReplayRunner(Deps deps) : d_(deps) {}

  // POST bots/{bot}/replay {functionVersion, from?, conversationId?, limit?} → 200 the report
  // (src/connector/README.md, "Replay").
  void run(const api::Request& req, const BotId& bot, std::function<void(api::Response)> done);

 private:
  struct Run;
  // Runs the next turn of `run`, or answers when there is none left or the budget is spent.
  void next(const std::shared_ptr<Run>& run);
  void finish(const std::shared_ptr<Run>& run);

  Deps d_;
};

}  // namespace parley::connector
