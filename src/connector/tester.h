#pragma once

// The conversation tester (REST `bots/{id}/tester…`): chat with a bot without a real consumer.
// A session is a conversation of the tester's own, in memory only: it runs the bot's turns with
// a chosen version of its function (the draft included) through the same input builder and
// planner real turns use, keeps the conversation's state between calls (its id, sequence
// numbers, turn count, whether the bot still owns it), and answers for every turn the function's
// input, its raw response, the review (verdict, problems with JSON paths, warnings, the action,
// what the consumer and the agents would see) and the escalation the connector would start. It
// never touches a real conversation, the routing or the turn records. Private to the connector.
//
// Threading: thread-safe; sessions are guarded by one mutex. Calls answer through `done`, once,
// on the connector's pool (never inline on a functions thread). One turn at a time per session
// (a second message while one runs is a Conflict).

#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/api.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "connector/account_caches.h"
#include "connector/bot_service.h"
#include "connector/richcontent/validator.h"
#include "connector/work_tracker.h"
#include "store/store.h"

namespace parley::connector {

// Limits of the tester (README of src/connector, "Conversation tester").
struct TesterLimits {
  // Sessions per account; creating one more ends the account's least recently used session.
  static constexpr std::size_t kSessionsPerAccount = 20;
  // A session unused this long is ended.
  static constexpr TimeMs kIdleMs = 30 * 60 * 1000;
  // Turns per session.
  static constexpr int kTurns = 100;
  // Bytes of a session's recorded turns (inputs, responses, reviews, logs) together.
  static constexpr std::size_t kBytes = 4 * 1024 * 1024;
  // Characters of a consumer text; bytes of a consumer event (serialised).
  static constexpr std::size_t kTextChars = 10'000;
  static constexpr std::size_t kEventBytes = 16 * 1024;
};

class ConversationTester {
 public:
  // What it uses; all must outlive it.
  struct Deps {
    store::Store& store;
    const richcontent::Validator& validator;
    const Clock& clock;
    const ConnectorOptions& opts;
    boost::asio::thread_pool& pool;
    SkillCache& skills;
    ImageAllowlists& allowlists;
    // Every invocation is work in flight until its answer has been given.
    WorkTracker& work;
  };
  explicit ConversationTester(Deps deps) : d_(deps) {}

  // POST bots/{bot}/tester {functionVersion?, channel?: "MESSAGING"|"CHAT"} → 201, the session
  // (for CHAT with its WELCOME turn run).
  void create(const api::Request& req, const BotId& bot, std::function<void(api::Response)> done);
  // POST bots/{bot}/tester/{session}/messages {text} | {event} → 200 {turn, session}.
  void message(const api::Request& req, const BotId& bot, const std::string& session,
               std::function<void(api::Response)> done);
  // GET bots/{bot}/tester/{session} → the session with every turn.
  api::Response get(const api::Request& req, const BotId& bot, const std::string& session);
  // DELETE bots/{bot}/tester/{session} → {deleted: true}.
  api::Response remove(const api::Request& req, const BotId& bot, const std::string& session);

  // Sessions held (tests).
  std::size_t sessionsForTest() const;

 private:
  struct Session;
  // The caller's session, NotFound when it does not exist, belongs to another bot or user, or
  // expired.
  Result<std::shared_ptr<Session>> find(const api::Caller& caller, const BotId& bot,
                                        const std::string& id);
  // Runs one turn of `s` (which the caller marked busy) and answers through `done` with
  // `answer(turn)`.
  void runTurn(const std::shared_ptr<Session>& s, const api::Caller& caller,
               boost::json::object consumer_event, std::function<void(api::Response)> done,
               std::function<api::Response(const boost::json::object& turn)> answer);
  // Session fields that change after the session is made (its turns, state, busy flag, ...) are
  // read and written under mu_; the analysis cannot check that (they are another object's).
  boost::json::object sessionJson(const Session& s) const PARLEY_REQUIRES(mu_);

  Deps d_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_ PARLEY_GUARDED_BY(mu_);
};

}  // namespace parley::connector
