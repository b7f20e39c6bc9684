#pragma once

// A bot's turns in a conversation (spec §1–§3): the function input, the pre/post/error hooks
// (turn_hooks.cpp), the invocation and its retries, the response applied step by step, the one
// action, the escalation policy (escalation.cpp) and the turn record. Private to the connector.
//
// Threading: every method taking a ConvState runs on that conversation's strand (StrandTasks);
// the runner's calls to the function runner and the engine come back there. The runner itself
// holds no per-conversation state: the turn lives in its Turn, the conversation's in ConvState.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "connector/account_caches.h"
#include "connector/bot_health.h"
#include "connector/bot_service.h"
#include "connector/conversation_state.h"
#include "connector/metrics.h"
#include "connector/richcontent/validator.h"
#include "connector/work_tracker.h"
#include "conversation/conversation_service.h"
#include "functions/runner.h"
#include "store/store.h"

namespace parley::connector {

// What the runner tells the conversation's driver (ConversationDriver implements it).
class TurnObserver {
 public:
  virtual ~TurnObserver() = default;
  // On the strand, after a turn has ended (recorded, `turn_running` cleared): the driver starts
  // the next queued turn or arms the inactivity timers.
  virtual void turnEnded(const std::shared_ptr<ConvState>& st) = 0;
};

class TurnRunner {
 public:
  // What the runner uses; all must outlive it.
  struct Deps {
    store::BotStore& bots;
    // The SDEs functions reported for a conversation (store/engagement_attributes.h), read at
    // each turn of a bot with engagementAttributes.
    store::FunctionStore& function_store;
    conversation::ConversationService& convs;
    functions::Runner& runner;
    const richcontent::Validator& validator;
    const Clock& clock;
    const ConnectorOptions& opts;
    ConnectorMetrics& metrics;
    SkillCache& skills;
    HookCache& hooks;
    ImageAllowlists& allowlists;
    BotHealth& health;
    WorkTracker& work;
    StrandTasks& strands;
  };
  explicit TurnRunner(Deps deps) : d_(deps) {}
  // REQUIRES: called once, before any turn starts.
  void setObserver(TurnObserver* observer) { observer_ = observer; }

  // Starts a durable turn answering `input` (queued at `queued_at`).
  void startTurn(const std::shared_ptr<ConvState>& st, TurnInput input,
                 SteadyClock::time_point queued_at);
  // Escalates a conversation the bot took beyond its open-conversation limit, without calling
  // the function.
  void startLimitEscalation(const std::shared_ptr<ConvState>& st);
  // A turn that answers no consumer message (inactivity, limit escalation): no marks, its
  // failures do not count for the bot's health.
  std::shared_ptr<Turn> syntheticTurn(const std::shared_ptr<ConvState>& st);
  // Marks `turn` as the conversation's running turn.
  void beginTurn(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn);

  // Publishes one of a turn's events. A durable turn's stored events (not chat states) are its
  // numbered effects, each stored with the turn's mark; `kDone` marks the turn done in the
  // commit that stores it. An effect a resumed turn had already stored before it was
  // interrupted is not published again (`then` gets an empty Published at once). `then` runs on
  // the strand.
  enum class Effect { kChatState, kMessage, kDone };
  void publish(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
               std::shared_ptr<const boost::json::object> event, std::string metadata_json,
               conversation::Audience audience,
               std::function<void(Result<conversation::Published>)> then,
               Effect effect = Effect::kMessage);
  // Changes the conversation as the bot; `then` runs on the strand.
  void update(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
              std::vector<conversation::FieldChange> changes,
              std::function<void(Result<store::Conversation>)> then);
  // Ends the turn with `outcome`: the done mark when no message carried it (the turn ends once
  // it is stored), then health, the turn record (asynchronous) and TurnObserver::turnEnded.
  void complete(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                TurnOutcome outcome);

  // The fence's handler (StrandTasks): ends the turn the exception interrupted visibly —
  // escalated per the bot's policy, or recorded as ERROR when the escalation throws too — so
  // `turn_running` never stays set; counted in parley_bot_turn_exceptions_total.
  void turnException(const std::shared_ptr<ConvState>& st, const std::string& what);

 private:
  // Clears the conversation's running-turn mark when `turn` holds it.
  void endTurn(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn);
  // The health, the record and TurnObserver::turnEnded of a turn whose `outcome` is set.
  void finish(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn);
  // True (and the turn ended as INTERRUPTED, left pending) once the shutdown interrupts turns.
  bool interrupted(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn);
  bool stale(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn) const;

  void invoke(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn);
  void onInvoked(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                 const functions::InvokeResult& r);
  void planAndApply(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                    const std::string& response_json);
  void applyStep(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                 const std::shared_ptr<ResponsePlan>& plan, std::size_t i);
  void applyAction(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                   const std::shared_ptr<ResponsePlan>& plan);
  // Store outages (README "Store outages"). One write's retries: when it first failed, the
  // next wait, how many times it failed.
  struct StoreRetry {
    SteadyClock::time_point first_failure{};
    std::chrono::milliseconds delay{0};
    int failures = 0;
  };
  using Then = std::function<void(Result<conversation::Published>)>;
  // Publishes a durable turn's effect `req`; a refusal as unavailable is retried (storeFailed),
  // each retry first looking for the effect in the store (findOrStore). `then` gets the result
  // once the effect is stored, or another error; not at all when the turn ended meanwhile.
  void storeEffect(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                   std::shared_ptr<const conversation::PublishRequest> req, Then then,
                   StoreRetry retry);
  // The write may have committed although the store answered an error: a stored effect with
  // the same turn id and number counts as published and is not sent again.
  void findOrStore(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                   std::shared_ptr<const conversation::PublishRequest> req, Then then,
                   StoreRetry retry);
  // After a write (or the read before it) of `turn` failed with kUnavailable: `again` runs on
  // the strand after the next wait, unless the limit is reached (the turn is left owed), the
  // shutdown interrupts the turn or the conversation changed owner (discarded).
  void storeFailed(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                   StoreRetry retry, const Error& e, const std::string& what,
                   std::function<void(StoreRetry)> again);
  // Records one write's retries on the turn (once it is stored, or given up).
  void noteRetries(const std::shared_ptr<Turn>& turn, const StoreRetry& retry,
                   const std::string& what, const char* status);
  // Stores the turn's done mark on the conversation (retried like an effect), then `done`.
  void markDone(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                StoreRetry retry, std::function<void()> done);

  // turn_hooks.cpp (spec §3.5)
  void invokeHook(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                  const FunctionId& fn, const std::string& tag, const std::string& payload_json,
                  std::function<void(const functions::InvokeResult&)> then);
  void hookFailed(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                  const char* hook, const FunctionId& fn, const std::string& why);
  void runPreHooks(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                   std::vector<FunctionId> fns, std::size_t i);
  void runPostHooks(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                    std::vector<FunctionId> fns, std::size_t i, std::string response_json);
  void runErrorHooks(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                     const std::string& code, const std::string& message);

  // escalation.cpp (spec §3.3)
  // Whether a failed attempt may be invoked again (up to the bot's escalation.retries).
  enum class Retry { kAllowed, kNever };
  // A failed invocation or an unusable response: retry per policy, then escalate.
  void fail(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
            const std::string& code, const std::string& message, Retry retry);
  void escalate(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                const std::string& code, const std::string& message);
  void sendFailureMessage(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn);
  void discard(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
               const std::string& why);

  Deps d_;
  TurnObserver* observer_ = nullptr;
};

}  // namespace parley::connector
