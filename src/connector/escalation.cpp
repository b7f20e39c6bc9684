#include <fmt/format.h>

#include "common/log.h"
#include "common/random.h"
#include "connector/turn_runner.h"

namespace parley::connector {

namespace bj = boost::json;
namespace conv = parley::conversation;

void TurnRunner::startLimitEscalation(const std::shared_ptr<ConvState>& st) {
  auto turn = syntheticTurn(st);
  beginTurn(st, turn);
  std::size_t held = st->bot->held();
  d_.metrics.limitReached(st->bot->id.str());
  escalate(st, turn, codes::kMaxConvLimitReached,
           fmt::format("the bot already holds {} open conversations (the limit is {}); this one "
                       "is escalated without calling the function",
                       held - 1, d_.opts.max_open_conversations));
}

void TurnRunner::turnException(const std::shared_ptr<ConvState>& st, const std::string& what) {
  std::string bot = st->bot ? st->bot->id.str() : std::string("-");
  spdlog::error("connector: exception in conversation {} (bot {}): {}", st->id.str(), bot, what);
  d_.metrics.turnException(bot);
  if (!st->turn_running || !st->current) return;  // no turn was running: logged and counted
  std::shared_ptr<Turn> turn = st->current;
  turn->failure_kind = TurnHealth::kNotCounted;  // the connector's fault, not the function's
  turn->actions.push_back(bj::object{{"kind", "EXCEPTION"},
                                     {"status", "FAILED"},
                                     {"code", std::string(kCodePrefix) + codes::kInternal},
                                     {"message", what}});
  try {
    if (!turn->escalating)
      return escalate(st, turn, codes::kInternal,
                      "the connector failed while handling this turn: " + what);
  } catch (const std::exception& e) {
    spdlog::error("connector: the escalation after an exception threw too: {}", e.what());
  } catch (...) {
  }
  try {
    turn->error = std::string(kCodePrefix) + codes::kInternal + ": " + what;
    if (st->turn_running && st->current == turn) complete(st, turn, TurnOutcome::kError);
  } catch (...) {
  }
  endTurn(st, turn);
}

// A failed invocation or an unusable response: retry per policy, then escalate.
void TurnRunner::fail(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                      const std::string& code, const std::string& message, Retry retry) {
  store::BotStatus status = turn->bot->status();
  turn->actions.push_back(bj::object{{"kind", "ATTEMPT"},
                                     {"attempt", turn->attempts},
                                     {"status", "FAILED"},
                                     {"code", std::string(kCodePrefix) + code},
                                     {"message", message}});
  if (retry == Retry::kAllowed && status == store::BotStatus::kOnline &&
      turn->attempts <= turn->config->escalation.retries) {
    d_.metrics.retry(turn->bot->id.str());
    invoke(st, turn);
    return;
  }
  escalate(st, turn, code, message);
}

// Escalation (spec §3.3): message to the consumer, private note with the reason to the agent
// side, transfer to the escalation skill; the failure message when that transfer fails.
void TurnRunner::escalate(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                          const std::string& code, const std::string& message) {
  if (interrupted(st, turn)) return;
  turn->escalating = true;
  turn->error = std::string(kCodePrefix) + code + ": " + message;
  d_.metrics.escalation(turn->bot->id.str());
  runErrorHooks(st, turn, code, message);
  d_.health.record(turn->bot, turn->failure_kind, turn->platform_error);
  if (stale(st, turn))
    return discard(st, turn, "the conversation changed owner before the escalation");
  const EscalationPolicy& pol = turn->config->escalation;
  auto after_note = [this, st, turn, pol] {
    auto skill = pol.skill.empty() ? std::nullopt : d_.skills.byName(st->account, pol.skill);
    if (!skill) {
      turn->actions.push_back(
          bj::object{{"kind", "ESCALATION_TRANSFER"},
                     {"status", "FAILED"},
                     {"message", pol.skill.empty()
                                     ? "no escalation skill configured"
                                     : "escalation skill \"" + pol.skill + "\" does not exist"}});
      return sendFailureMessage(st, turn);
    }
    update(st, turn, conv::transferToSkill(*skill),
           [this, st, turn, skill](Result<store::Conversation> r) {
             turn->actions.push_back(bj::object{{"kind", "ESCALATION_TRANSFER"},
                                                {"skillId", skill->str()},
                                                {"status", r ? "DONE" : "FAILED"},
                                                {"message", r ? "" : r.error().message}});
             if (!r) return sendFailureMessage(st, turn);
             turn->handed_off = true;
             complete(st, turn, TurnOutcome::kEscalated);
           });
  };
  auto send_note = [this, st, turn, pol, code, message, after_note] {
    std::string note =
        fmt::format("{} Reason: {}{}: {}", pol.agent_message, kCodePrefix, code, message);
    bj::array md{bj::object{{"type", "ActionReason"},
                            {"reason", "escalated_by_error"},
                            {"reasonId", code.substr(0, 64)}}};
    publish(st, turn, textEvent(note), bj::serialize(md), conv::Audience::kAgentsAndManagers,
            [turn, after_note](Result<conv::Published> r) {
              turn->actions.push_back(
                  bj::object{{"kind", "ESCALATION_NOTE"}, {"status", r ? "DONE" : "FAILED"}});
              after_note();
            });
  };
  if (pol.message.empty()) return send_note();
  publish(st, turn, textEvent(pol.message), "[]", conv::Audience::kAll,
          [turn, send_note](Result<conv::Published> r) {
            turn->actions.push_back(
                bj::object{{"kind", "ESCALATION_MESSAGE"}, {"status", r ? "DONE" : "FAILED"}});
            send_note();
          });
}

void TurnRunner::sendFailureMessage(const std::shared_ptr<ConvState>& st,
                                    const std::shared_ptr<Turn>& turn) {
  const std::string& text = turn->config->escalation.failure_message;
  if (text.empty()) return complete(st, turn, TurnOutcome::kEscalationFailed);
  publish(st, turn, textEvent(text), "[]", conv::Audience::kAll,
          [this, st, turn](Result<conv::Published> r) {
            turn->actions.push_back(bj::object{{"kind", "ESCALATION_FAILURE_MESSAGE"},
                                               {"status", r ? "DONE" : "FAILED"}});
            complete(st, turn, TurnOutcome::kEscalationFailed);
          });
}

void TurnRunner::discard(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                         const std::string& why) {
  turn->error = why;
  d_.metrics.discarded(turn->bot->id.str());
  complete(st, turn, TurnOutcome::kDiscarded);
}

}  // namespace parley::connector
