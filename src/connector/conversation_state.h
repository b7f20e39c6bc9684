#pragma once

// The state the connector keeps for a conversation a bot holds (ConvState) and for a turn
// (Turn), and StrandTasks: how work gets onto a conversation's strand. Private to the connector.

#include <boost/asio/defer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "connector/bot_registry.h"
#include "connector/input.h"
#include "connector/response.h"
#include "connector/sdes.h"
#include "connector/work_tracker.h"
#include "conversation/conversation_service.h"
#include "conversation/engine_pool.h"
#include "store/store.h"

namespace parley::connector {

using SteadyClock = std::chrono::steady_clock;

// The prefix of the connector's error codes (turn errors, action codes).
inline constexpr const char* kCodePrefix = "com.liveperson.bot-connectors-worker.error.";

inline double msSince(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}

// The user id of the conversation's ACTIVE ASSIGNED_AGENT while it is open.
inline std::optional<std::string> assignedAgent(const store::Conversation& c) {
  if (c.state != store::ConversationState::kOpen) return std::nullopt;
  for (const auto& p : c.participants)
    if (p.role == store::ParticipantRole::kAssignedAgent &&
        p.state == store::ParticipantState::kActive)
      return p.id;
  return std::nullopt;
}

// The bot as the engine sees it: an agent (its bot user).
inline conversation::Actor botActor(const BotRuntime& b) {
  return conversation::Actor::ofAgent(b.account, b.user.id, b.user.pid);
}

// How a turn ended (README "Outcomes"); recorded by name on the turn record and in
// parley_bot_turns_total.
enum class TurnOutcome {
  kOk,
  kPartial,
  kEscalated,
  kEscalationFailed,
  kDiscarded,
  kInterrupted,
  kError,
  kClosedInactive,
  kStoreUnavailable
};
// "OK", "PARTIAL", "ESCALATED", "ESCALATION_FAILED", "DISCARDED", "INTERRUPTED", "ERROR",
// "CLOSED_INACTIVE", "STORE_UNAVAILABLE".
inline const char* turnOutcomeName(TurnOutcome o) {
  switch (o) {
    case TurnOutcome::kOk:
      return "OK";
    case TurnOutcome::kPartial:
      return "PARTIAL";
    case TurnOutcome::kEscalated:
      return "ESCALATED";
    case TurnOutcome::kEscalationFailed:
      return "ESCALATION_FAILED";
    case TurnOutcome::kDiscarded:
      return "DISCARDED";
    case TurnOutcome::kInterrupted:
      return "INTERRUPTED";
    case TurnOutcome::kError:
      return "ERROR";
    case TurnOutcome::kClosedInactive:
      return "CLOSED_INACTIVE";
    case TurnOutcome::kStoreUnavailable:
      return "STORE_UNAVAILABLE";
  }
  return "UNKNOWN";
}

// One turn of a bot in a conversation: made on the conversation's strand, touched only there.
struct Turn {
  std::string id;
  TurnInput input;
  std::uint64_t epoch = 0;
  std::shared_ptr<BotRuntime> bot;
  std::shared_ptr<const BotConfig> config;  // snapshot at turn start
  std::string input_json;
  std::string response_json;
  int attempts = 0;
  boost::json::array actions;
  std::string error;
  std::optional<TurnOutcome> outcome;  // set when it ends
  // How the turn's failure counts for the bot's health (set where it failed).
  TurnHealth failure_kind = TurnHealth::kFunctionFailure;
  std::string platform_error;  // the platform's error code when failure_kind is kPlatformFailure
  // The escalation has started (its messages may be out): the fence does not escalate again.
  bool escalating = false;
  // Durable turns (those answering consumer messages or a WELCOME; not the synthetic ones)
  // carry a store::TurnMark on every message they publish: consumer messages up to `through`
  // are answered once the turn is done. `effects` numbers the stored effects; the first `skip`
  // were stored before a crash interrupted this turn and are not published again.
  bool durable = false;
  std::int64_t through = -1;
  int effects = 0;
  int skip = 0;
  // The turn's done mark has committed (with its last message, or through markTurn).
  bool done_marked = false;
  // The turn moved the conversation away (transfer, close): nothing is left to mark.
  bool handed_off = false;
  // The highest sequence of a message this turn stored (-1: none yet): a write retried after
  // an outage looks for itself after it.
  std::int64_t last_stored_seq = -1;
  // Index in the plan's steps of the message that carries the done mark (the last message when
  // the action, if any, stores nothing of its own: INVOCATION).
  std::optional<std::size_t> done_step;
  SteadyClock::time_point t_start = SteadyClock::now();
  SteadyClock::time_point t_invoke;
  double invoke_ms = 0;
  double hook_ms = 0;
  double queued_ms = 0;
  TimeMs ts = 0;
  std::vector<Problem> refused;
};

// A conversation the connector tracks. `strand` is fixed at creation; everything else is
// touched only on it.
struct ConvState {
  explicit ConvState(conversation::ConversationStrand s) : strand(std::move(s)) {}
  conversation::ConversationStrand strand;
  AccountId account;
  ConversationId id;
  store::Conversation snapshot;
  std::shared_ptr<BotRuntime> bot;
  bool owned = false;
  // joined_at of the bot's ACTIVE ASSIGNED_AGENT entry: the turn marks of this assignment.
  TimeMs assigned_at = 0;
  std::uint64_t epoch = 0;
  bool catching_up = false;
  std::vector<std::pair<ConsumerMessage, InputKind>> buffered;  // consumer content, classified
  std::int64_t last_seq = -1;
  std::deque<std::pair<TurnInput, SteadyClock::time_point>> queue;
  bool turn_running = false;
  // The turn that set `turn_running` (the fence ends it when an exception escapes).
  std::shared_ptr<Turn> current;
  bool combine_armed = false;
  bool combine_ready = false;
  std::shared_ptr<boost::asio::steady_timer> timer;
  // Engagement attributes, built when the bot first runs a turn here and rebuilt when the
  // consumer's profile or the conversation's context differ from what they were built from
  // (README "context.lpSdes").
  std::optional<SdesResult> sdes;
  std::optional<std::string> sdes_profile;  // the profile `sdes` was built from
  std::string sdes_context;                 // the context_json `sdes` was built from
  std::string sdes_reported;  // the reported SDE events `sdes` was built from, serialized
  // The bot took this conversation beyond its open-conversation limit: escalate it at once.
  bool limit_escalation = false;
  // Chat inactivity (warning, then close); `idle_gen` invalidates a timer that already fired.
  std::shared_ptr<boost::asio::steady_timer> idle_timer;
  std::uint64_t idle_gen = 0;
  // Store outages: the wait before a turn's write is tried again, and before the catch-up reads
  // the store again (README "Store outages").
  std::shared_ptr<boost::asio::steady_timer> retry_timer;
  std::shared_ptr<boost::asio::steady_timer> catch_up_timer;
  // A turn was left owed (its writes failed past the retry limit): what is queued is dropped
  // and the catch-up derives what is owed from the store once it can read it again.
  bool owed = false;
};

// Runs work on conversations' strands inside the fence. Thread-safe; `work` must outlive it.
class StrandTasks {
 public:
  // Called on the strand with the exception's text when a task throws (the fence's handler:
  // it ends the interrupted turn visibly).
  using ExceptionHandler =
      std::function<void(const std::shared_ptr<ConvState>&, const std::string&)>;

  explicit StrandTasks(WorkTracker& work) : work_(work) {}
  // REQUIRES: called once, before any task runs.
  void setExceptionHandler(ExceptionHandler h) { on_exception_ = std::move(h); }

  // Runs `f` on the conversation's strand: at once when the caller is already on it (an engine
  // event or completion of this conversation), else queued after what is there (a hand-off).
  template <class F>
  void onStrand(const std::shared_ptr<ConvState>& c, F&& f) {
    if (c->strand.running_in_this_thread()) {
      work_.add();
      fenced(c, f);
      work_.done();
      return;
    }
    work_.countHandOff();
    work_.add();  // the handler's
    work_.add();  // this call's: the strand copy `defer` makes lives on the calling thread
                  // (maybe a function worker) until it returns, and the strand's pool may be lent
    // Deferred: from a thread of the engine's pool the work runs on that thread after the
    // current handler instead of waking another.
    boost::asio::defer(c->strand, [this, c, f = std::forward<F>(f)]() mutable {
      fenced(c, f);
      work_.done();
    });
    work_.done();
  }

  // The fence of every task on a conversation's strand: nothing thrown in turn logic escapes
  // into Asio; the exception goes to the handler (which ends the turn it interrupted).
  template <class F>
  void fenced(const std::shared_ptr<ConvState>& c, F& f) {
    try {
      f();
    } catch (const std::exception& e) {
      on_exception_(c, e.what());
    } catch (...) {
      on_exception_(c, "an exception that is not a std::exception");
    }
  }

  // Ends the busy mark of a callback that another service (the engine, the function runner)
  // called, after dropping the callback's conversation state `st`. The other service destroys
  // its copy of the callback after the call returns, maybe after stop() has seen no work in
  // flight and the threads the conversations' strands belong to are gone; so the callback moves
  // its state out (into the strand task or here) and holds nothing of the connector by then.
  // The strand task itself is destroyed on those threads, before they can be joined. (Such a
  // callback captures `st = st`: a plain capture of a const reference is a const copy, which
  // std::move would copy again instead of emptying.)
  void released(std::shared_ptr<ConvState> st) {
    st.reset();
    work_.done();
  }

  // A one-shot timer on the strand kept in `slot`: `f` runs fenced when it fires, also when it
  // was cancelled (stop() cancels it; `f` sees the connector stopping). Counted as work in
  // flight, so stop() waits for it.
  template <class F>
  void afterDelay(const std::shared_ptr<ConvState>& st,
                  std::shared_ptr<boost::asio::steady_timer> ConvState::*slot,
                  std::chrono::milliseconds d, F&& f) {
    auto timer = std::make_shared<boost::asio::steady_timer>(st->strand, d);
    (*st).*slot = timer;
    work_.add();
    timer->async_wait([this, st, timer, f = std::forward<F>(f)](boost::system::error_code) mutable {
      fenced(st, f);
      work_.done();
    });
  }

  // A one-shot timer on the strand (the conversation's `timer`): `f` runs fenced unless the
  // timer was cancelled or the connector stopped. Counted as work in flight.
  template <class F>
  void armTimer(const std::shared_ptr<ConvState>& st, std::chrono::milliseconds d, F&& f) {
    auto timer = std::make_shared<boost::asio::steady_timer>(st->strand, d);
    st->timer = timer;
    work_.add();
    timer->async_wait(
        [this, st, timer, f = std::forward<F>(f)](boost::system::error_code ec) mutable {
          if (!ec && !work_.stopped()) fenced(st, f);
          work_.done();
        });
  }

 private:
  WorkTracker& work_;
  ExceptionHandler on_exception_;
};

}  // namespace parley::connector
