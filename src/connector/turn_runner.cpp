#include "connector/turn_runner.h"

#include <fmt/format.h>

#include "common/log.h"
#include "common/random.h"
#include "store/engagement_attributes.h"

namespace parley::connector {

namespace bj = boost::json;
namespace conv = parley::conversation;
namespace {

// Messages read when a retried write looks for itself in the store (those after the turn's
// consumer messages and stored effects).
constexpr int kRetryReadLimit = 100'000;

bool ownershipError(const Error& e) {
  return e.code == ErrorCode::kForbidden || e.code == ErrorCode::kConflict;
}

// {"type":"ChatStateEvent","chatState":state}: the typing indicator around a delay.
std::shared_ptr<const bj::object> chatStateEvent(std::string_view state) {
  return std::make_shared<const bj::object>(
      bj::object{{"type", "ChatStateEvent"}, {"chatState", state}});
}
}  // namespace

std::shared_ptr<Turn> TurnRunner::syntheticTurn(const std::shared_ptr<ConvState>& st) {
  auto turn = std::make_shared<Turn>();
  turn->id = randomUuid();
  turn->epoch = st->epoch;
  turn->bot = st->bot;
  turn->config = st->bot->config();
  turn->ts = d_.clock.nowMs();
  turn->input_json = "{}";
  turn->failure_kind = TurnHealth::kNotCounted;  // not the function's nor the platform's fault
  return turn;
}

void TurnRunner::beginTurn(const std::shared_ptr<ConvState>& st,
                           const std::shared_ptr<Turn>& turn) {
  st->turn_running = true;
  st->current = turn;
  d_.work.turnStarted();
}

void TurnRunner::endTurn(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn) {
  if (!st->turn_running || st->current != turn) return;
  st->turn_running = false;
  st->current.reset();
  d_.work.turnEnded();
}

// True (and the turn ended as INTERRUPTED, left pending) once the shutdown interrupts turns.
bool TurnRunner::interrupted(const std::shared_ptr<ConvState>& st,
                             const std::shared_ptr<Turn>& turn) {
  if (!d_.work.interrupting()) return false;
  turn->error =
      "interrupted by the shutdown; the turn is still pending and runs again at the next start";
  complete(st, turn, TurnOutcome::kInterrupted);
  return true;
}

void TurnRunner::startTurn(const std::shared_ptr<ConvState>& st, TurnInput input,
                           SteadyClock::time_point queued_at) {
  auto turn = std::make_shared<Turn>();
  turn->id = input.resume_id.empty() ? randomUuid() : input.resume_id;
  turn->durable = true;
  turn->through = input.through;
  turn->skip = input.effects_done;
  turn->input = std::move(input);
  turn->epoch = st->epoch;
  turn->bot = st->bot;
  turn->config = st->bot->config();
  turn->ts = d_.clock.nowMs();
  turn->queued_ms =
      std::chrono::duration<double, std::milli>(SteadyClock::now() - queued_at).count();
  beginTurn(st, turn);
  // The chat line carries the skill name; messaging inputs do not need it.
  std::string name = st->snapshot.channel == store::Channel::kChat
                         ? d_.skills.name(st->account, st->snapshot.skill)
                         : std::string();
  bj::object lp_sdes;
  if (turn->config->engagement_attributes) {
    // The profile is read at every turn (an in-memory lookup), and so are the SDEs functions
    // reported for the conversation (one store read; any node's function may have added
    // some); lpSdes is rebuilt only when one of them or the stored conversationContext changed
    // since it was built, so SDEs set later in the conversation reach the next turn.
    std::optional<std::string> profile;
    if (d_.opts.consumer_profiles)
      profile = d_.opts.consumer_profiles->get(st->account, st->snapshot.consumer);
    bj::array reported_events;
    std::string reported = st->sdes_reported;  // a failed read keeps what was last read
    auto r = store::reportedSdeEvents(d_.function_store, st->account, st->snapshot.id);
    if (r) {
      reported_events = std::move(*r);
      reported = bj::serialize(reported_events);
    } else {
      turn->actions.push_back(bj::object{
          {"kind", "SDES"},
          {"status", "FAILED"},
          {"message", fmt::format("the engagement attributes functions reported could not be "
                                  "read: {}; lpSdes keeps those read before",
                                  r.error().message)}});
      if (!st->sdes_reported.empty()) reported_events = bj::parse(st->sdes_reported).as_array();
    }
    if (!st->sdes || st->sdes_profile != profile || st->sdes_context != st->snapshot.context_json ||
        st->sdes_reported != reported) {
      st->sdes = buildLpSdes(st->snapshot, profile, d_.clock.nowMs(), reported_events);
      st->sdes_profile = std::move(profile);
      st->sdes_context = st->snapshot.context_json;
      st->sdes_reported = std::move(reported);
      // SDE-service errors are recorded on the turn that built lpSdes (conversation errors);
      // the turn goes on.
      for (const auto& [code, message] : st->sdes->problems)
        turn->actions.push_back(bj::object{{"kind", "SDES"},
                                           {"status", "FAILED"},
                                           {"code", std::string(kCodePrefix) + code},
                                           {"message", message}});
    }
    lp_sdes = st->sdes->lp_sdes;
  }
  bj::object input_obj =
      buildFunctionInput(turn->input, st->snapshot, name, d_.clock.nowMs(), lp_sdes);
  turn->input_json = bj::serialize(input_obj);
  // No pending-turn row: the consumer messages are stored, and this turn's done mark goes
  // with its last effect (TurnMark); after a restart catchUp derives what is still owed.
  store::BotStatus status = turn->bot->status();
  std::string last_error = turn->bot->lastPlatformError();
  if (status == store::BotStatus::kServiceInterruption) {
    // The platform cannot run the function: do not call it; follow the escalation policy.
    turn->failure_kind = TurnHealth::kNotCounted;
    return escalate(st, turn, codes::kFailedFaasRequest,
                    fmt::format("the bot is in SERVICE_INTERRUPTION: the platform cannot run "
                                "function {} ({}); the function was not called",
                                turn->config->function.str(), last_error));
  }
  if (turn->config->hooks.pre) {
    auto fns = d_.hooks.functions(st->account, HookCache::kPreHookEvent);
    if (!fns.empty()) return runPreHooks(st, turn, fns, 0);
  }
  invoke(st, turn);
}

void TurnRunner::invoke(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn) {
  if (interrupted(st, turn)) return;
  ++turn->attempts;
  auto req = functions::InvokeRequest::of(st->account, turn->config->function)
                 .withInput(turn->input_json)
                 .within(std::chrono::milliseconds(turn->config->escalation.turn_timeout_ms))
                 .withRequestId(turn->id + "-" + std::to_string(turn->attempts));
  turn->t_invoke = SteadyClock::now();
  d_.work.add();
  d_.runner.invoke(std::move(req), [this, st = st, turn = turn](functions::InvokeResult r) mutable {
    auto s = std::move(st);  // see released()
    d_.strands.onStrand(
        s, [this, s, turn = std::move(turn), r = std::move(r)] { onInvoked(s, turn, r); });
    d_.strands.released(std::move(s));
  });
}

bool TurnRunner::stale(const std::shared_ptr<ConvState>& st,
                       const std::shared_ptr<Turn>& turn) const {
  return !st->owned || st->epoch != turn->epoch;
}

void TurnRunner::onInvoked(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                           const functions::InvokeResult& r) {
  turn->invoke_ms += msSince(turn->t_invoke);
  if (interrupted(st, turn)) return;
  d_.metrics.invoked(turn->bot->id.str(), msSince(turn->t_invoke));
  turn->response_json = r.ok ? r.result_json : std::string();
  if (stale(st, turn)) {
    discard(st, turn,
            "the conversation changed owner (an agent took over, it was transferred "
            "or closed) while the function was running; the response is not sent");
    return;
  }
  if (!r.ok) {
    if (platformFailure(r.error_code)) {
      turn->failure_kind = TurnHealth::kPlatformFailure;
      turn->platform_error = r.error_code;
      fail(st, turn, codes::kFailedFaasRequest,
           fmt::format("the platform could not run the function: {}: {}", r.error_code,
                       r.error_message),
           Retry::kAllowed);
      return;
    }
    turn->failure_kind = TurnHealth::kFunctionFailure;
    fail(st, turn, codes::kInvokeLambda,
         fmt::format("the function failed: {}: {}", r.error_code, r.error_message),
         Retry::kAllowed);
    return;
  }
  turn->failure_kind = TurnHealth::kFunctionFailure;  // from here on, failures are the bot's
  if (turn->config->hooks.post) {
    auto fns = d_.hooks.functions(st->account, HookCache::kPostHookEvent);
    if (!fns.empty()) return runPostHooks(st, turn, fns, 0, r.result_json);
  }
  planAndApply(st, turn, r.result_json);
}

void TurnRunner::planAndApply(const std::shared_ptr<ConvState>& st,
                              const std::shared_ptr<Turn>& turn, const std::string& response_json) {
  PlanOptions po;
  po.channel = st->snapshot.channel;
  po.image_allowlist = d_.allowlists.forAccount(st->account);
  po.max_delay_s = d_.opts.max_delay_s;
  po.conversation_id = st->id.str();
  ResponsePlan plan = planResponse(response_json, d_.validator, po);
  for (auto& p : plan.refused) turn->refused.push_back(p);
  if (plan.fatal) {
    fail(st, turn, plan.fatal->code,
         plan.fatal->message + (plan.fatal->path.empty() ? "" : " (at " + plan.fatal->path + ")"),
         Retry::kAllowed);
    return;
  }
  for (const auto& p : plan.refused)
    turn->actions.push_back(bj::object{{"kind", "REFUSED"},
                                       {"status", "REFUSED"},
                                       {"code", std::string(kCodePrefix) + p.code},
                                       {"path", p.path},
                                       {"message", p.message}});
  // The done mark rides on the last message unless an action that stores something of its
  // own follows (a transfer or close moves the conversation away; a TTR change is marked
  // with markTurn after it).
  if (!plan.action || plan.action->kind == ActionKind::kInvocation)
    for (std::size_t i = plan.steps.size(); i-- > 0;)
      if (plan.steps[i].kind != StepKind::kDelay) {
        turn->done_step = i;
        break;
      }
  auto shared_plan = std::make_shared<ResponsePlan>(std::move(plan));
  applyStep(st, turn, shared_plan, 0);
}

void TurnRunner::publish(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                         std::shared_ptr<const bj::object> event, std::string metadata_json,
                         conv::Audience audience, std::function<void(Result<conv::Published>)> then,
                         Effect effect) {
  conv::PublishRequest req;
  req.actor = botActor(*turn->bot);
  req.conversation = st->id;
  req.event = std::move(event);
  req.metadata_json = std::move(metadata_json);
  req.audience = audience;
  if (turn->durable && effect != Effect::kChatState) {
    int n = turn->effects++;
    if (n < turn->skip) {
      turn->actions.push_back(bj::object{{"kind", "ALREADY_SENT"}, {"effect", n}});
      return then(conv::Published{});
    }
    req.turn =
        store::TurnMark{turn->id, st->assigned_at, turn->through, n, effect == Effect::kDone};
    if (effect == Effect::kDone)
      then = [turn, then = std::move(then)](Result<conv::Published> r) {
        if (r) turn->done_marked = true;
        then(std::move(r));
      };
    return storeEffect(st, turn, std::make_shared<const conv::PublishRequest>(std::move(req)),
                       std::move(then), StoreRetry{});
  }
  d_.work.add();
  d_.convs.publish(
      std::move(req), [this, st = st, then = std::move(then)](Result<conv::Published> r) mutable {
        auto s = std::move(st);  // see released()
        d_.strands.onStrand(s, [then = std::move(then), r = std::move(r)] { then(r); });
        d_.strands.released(std::move(s));
      });
}

void TurnRunner::storeEffect(const std::shared_ptr<ConvState>& st,
                             const std::shared_ptr<Turn>& turn,
                             std::shared_ptr<const conv::PublishRequest> req, Then then,
                             StoreRetry retry) {
  d_.work.add();
  d_.convs.publish(*req, [this, st = st, turn = turn, req, then = std::move(then),
                          retry](Result<conv::Published> r) mutable {
    auto s = std::move(st);  // see released()
    d_.strands.onStrand(s, [this, s, turn = std::move(turn), req = std::move(req),
                            then = std::move(then), retry, r = std::move(r)]() mutable {
      std::string what = fmt::format("effect {}", req->turn.effect);
      if (r) {
        if (r->sequence) turn->last_stored_seq = std::max(turn->last_stored_seq, *r->sequence);
        if (retry.failures > 0) noteRetries(turn, retry, what, "STORED");
        return then(std::move(r));
      }
      if (r.error().code != ErrorCode::kUnavailable) return then(std::move(r));
      storeFailed(s, turn, retry, r.error(), what,
                  [this, s, turn, req, then = std::move(then)](StoreRetry next) mutable {
                    findOrStore(s, turn, std::move(req), std::move(then), next);
                  });
    });
    d_.strands.released(std::move(s));
  });
}

void TurnRunner::findOrStore(const std::shared_ptr<ConvState>& st,
                             const std::shared_ptr<Turn>& turn,
                             std::shared_ptr<const conv::PublishRequest> req, Then then,
                             StoreRetry retry) {
  // The effect, if stored, follows the turn's consumer messages and its stored effects.
  std::int64_t from = std::max<std::int64_t>(0, std::max(turn->through, turn->last_stored_seq) + 1);
  d_.work.add();
  d_.convs.listMessages(
      st->account, st->id, from, kRetryReadLimit,
      [this, st = st, turn = turn, req, then = std::move(then),
       retry](Result<std::vector<store::Message>> r) mutable {
        auto s = std::move(st);  // see released()
        d_.strands.onStrand(s, [this, s, turn = std::move(turn), req = std::move(req),
                                then = std::move(then), retry, r = std::move(r)]() mutable {
          std::string what = fmt::format("effect {}", req->turn.effect);
          if (!r && r.error().code == ErrorCode::kUnavailable)
            return storeFailed(
                s, turn, retry, r.error(), what,
                [this, s, turn, req, then = std::move(then)](StoreRetry next) mutable {
                  findOrStore(s, turn, std::move(req), std::move(then), next);
                });
          if (!r) {
            noteRetries(turn, retry, what, "FAILED");
            return then(std::unexpected(r.error()));
          }
          for (const auto& m : *r)
            if (m.turn == req->turn) {
              // Committed although the store answered an error: not sent again.
              turn->last_stored_seq = std::max(turn->last_stored_seq, m.sequence);
              noteRetries(turn, retry, what, "FOUND_STORED");
              return then(conv::Published{m.sequence, m.server_ts});
            }
          storeEffect(s, turn, std::move(req), std::move(then), retry);
        });
        d_.strands.released(std::move(s));
      });
}

void TurnRunner::storeFailed(const std::shared_ptr<ConvState>& st,
                             const std::shared_ptr<Turn>& turn, StoreRetry retry, const Error& e,
                             const std::string& what, std::function<void(StoreRetry)> again) {
  const auto now = SteadyClock::now();
  if (retry.failures++ == 0) {
    retry.first_failure = now;
    retry.delay = std::chrono::milliseconds(std::max(1, d_.opts.store_retry_first_ms));
  }
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(now - retry.first_failure);
  if (waited.count() >= d_.opts.store_retry_for_ms) {
    noteRetries(turn, retry, what, "GAVE_UP");
    turn->error = fmt::format(
        "{} could not be stored: the store was unavailable for {} ms ({} attempts; last error: "
        "{}); the turn is still owed and runs again once the store can be read",
        what, waited.count(), retry.failures, e.message);
    spdlog::warn("connector: conversation {}: turn {}: {}", st->id.str(), turn->id, turn->error);
    st->owed = true;
    return complete(st, turn, TurnOutcome::kStoreUnavailable);
  }
  d_.metrics.storeRetry(turn->bot->id.str());
  const auto delay = retry.delay;
  retry.delay =
      std::min(retry.delay * 2, std::chrono::milliseconds(std::max(1, d_.opts.store_retry_max_ms)));
  d_.strands.afterDelay(st, &ConvState::retry_timer, delay,
                        [this, st, turn, retry, again = std::move(again)] {
                          if (interrupted(st, turn)) return;
                          if (stale(st, turn))
                            return discard(st, turn,
                                           "the conversation changed owner while a write of the "
                                           "turn waited for the store; the rest is not sent");
                          again(retry);
                        });
}

void TurnRunner::noteRetries(const std::shared_ptr<Turn>& turn, const StoreRetry& retry,
                             const std::string& what, const char* status) {
  turn->actions.push_back(bj::object{
      {"kind", "STORE_RETRY"},
      {"write", what},
      {"status", status},
      {"failures", retry.failures},
      {"waitedMs", std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() -
                                                                         retry.first_failure)
                       .count()}});
}

void TurnRunner::applyStep(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                           const std::shared_ptr<ResponsePlan>& plan, std::size_t i) {
  if (interrupted(st, turn)) return;
  if (stale(st, turn)) {
    discard(st, turn,
            "the conversation changed owner while the response was being sent; the "
            "rest is not sent");
    return;
  }
  if (i == plan->steps.size()) {
    applyAction(st, turn, plan);
    return;
  }
  const Step& step = plan->steps[i];
  if (step.kind == StepKind::kDelay) {
    auto after_delay = [this, st, turn, plan, i] {
      if (stale(st, turn)) return applyStep(st, turn, plan, i);
      turn->actions.push_back(bj::object{{"kind", "DELAY"},
                                         {"status", "DONE"},
                                         {"seconds", plan->steps[i].delay_s},
                                         {"source", plan->steps[i].source}});
      if (!plan->steps[i].typing) return applyStep(st, turn, plan, i + 1);
      publish(
          st, turn, chatStateEvent("ACTIVE"), "[]", conv::Audience::kAll,
          [this, st, turn, plan, i](Result<conv::Published>) { applyStep(st, turn, plan, i + 1); },
          Effect::kChatState);
    };
    auto wait = [this, st, turn, plan, i, after_delay] {
      d_.strands.armTimer(
          st, std::chrono::milliseconds(plan->steps[i].delay_s * d_.opts.ms_per_delay_second),
          after_delay);
    };
    if (step.typing)
      publish(
          st, turn, chatStateEvent("COMPOSING"), "[]", conv::Audience::kAll,
          [wait](Result<conv::Published>) { wait(); }, Effect::kChatState);
    else
      wait();
    return;
  }
  conv::Audience audience = step.kind == StepKind::kPrivateText ? conv::Audience::kAgentsAndManagers
                                                                : conv::Audience::kAll;
  Effect effect = turn->done_step == i ? Effect::kDone : Effect::kMessage;
  publish(
      st, turn, step.event, bj::serialize(step.metadata), audience,
      [this, st, turn, plan, i](Result<conv::Published> r) {
        const Step& s = plan->steps[i];
        bj::object a{{"kind", stepKindName(s.kind)}, {"source", s.source}};
        if (r) {
          a["status"] = "DONE";
          if (r->sequence) a["sequence"] = *r->sequence;
          turn->actions.push_back(std::move(a));
        } else {
          a["status"] = "FAILED";
          a["message"] = r.error().message;
          turn->actions.push_back(std::move(a));
          if (ownershipError(r.error())) {
            discard(st, turn,
                    "publishing failed because the bot no longer owns the "
                    "conversation: " +
                        r.error().message);
            return;
          }
        }
        applyStep(st, turn, plan, i + 1);
      },
      effect);
}

void TurnRunner::update(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                        std::vector<conv::FieldChange> changes,
                        std::function<void(Result<store::Conversation>)> then) {
  d_.work.add();
  d_.convs.updateConversation(
      botActor(*turn->bot), st->id, std::move(changes),
      [this, st = st, then = std::move(then)](Result<store::Conversation> r) mutable {
        auto s = std::move(st);  // see released()
        d_.strands.onStrand(s, [then = std::move(then), r = std::move(r)] { then(r); });
        d_.strands.released(std::move(s));
      });
}

void TurnRunner::applyAction(const std::shared_ptr<ConvState>& st,
                             const std::shared_ptr<Turn>& turn,
                             const std::shared_ptr<ResponsePlan>& plan) {
  if (!plan->action)
    return complete(st, turn, turn->refused.empty() ? TurnOutcome::kOk : TurnOutcome::kPartial);
  const Action& a = *plan->action;
  bj::object rec = a.toJson();
  rec["kind"] = "ACTION";
  switch (a.kind) {
    case ActionKind::kTransfer: {
      // The transfer's metadata (spec §2.4/§2.5): ActionReason and the intents. The engine's
      // update API carries no metadata, so it is recorded on the turn's action; agents see the
      // intents as BotResponse metadata on the bot's messages.
      bj::array md{bj::object{{"type", "ActionReason"}, {"reason", "escalated_by_bot"}}};
      if (plan->bot_response) md.push_back(*plan->bot_response);
      rec["metadata"] = std::move(md);
      auto skill = d_.skills.byName(st->account, a.skill);
      if (!skill) {
        rec["status"] = "REFUSED";
        rec["code"] = std::string(kCodePrefix) + codes::kTransferSkillNotExisting;
        turn->actions.push_back(rec);
        return escalate(st, turn, codes::kTransferSkillNotExisting,
                        fmt::format("TRANSFER to skill \"{}\": no such skill (names are "
                                    "case-sensitive)",
                                    a.skill));
      }
      std::vector<conv::FieldChange> changes;
      if (a.agent_id) {
        std::string agent = *a.agent_id;
        if (auto dot = agent.find('.'); dot != std::string::npos) agent = agent.substr(dot + 1);
        changes = conv::transferToAgent(UserId(agent), *skill);
      } else {
        changes = conv::transferToSkill(*skill);
      }
      update(st, turn, std::move(changes),
             [this, st, turn, rec](Result<store::Conversation> r) mutable {
               if (!r) {
                 rec["status"] = "FAILED";
                 rec["message"] = r.error().message;
                 turn->actions.push_back(rec);
                 if (ownershipError(r.error()))
                   return discard(st, turn, "the transfer failed: " + r.error().message);
                 return escalate(st, turn, codes::kTransferToSkill,
                                 "the transfer failed: " + r.error().message);
               }
               rec["status"] = "DONE";
               turn->actions.push_back(rec);
               turn->handed_off = true;
               complete(st, turn, turn->refused.empty() ? TurnOutcome::kOk : TurnOutcome::kPartial);
             });
      return;
    }
    case ActionKind::kClose:
      update(st, turn, {conv::CloseField{store::CloseReason::kBot}},
             [this, st, turn, rec](Result<store::Conversation> r) mutable {
               if (r) turn->handed_off = true;
               rec["status"] = r ? "DONE" : "FAILED";
               if (!r) {
                 rec["code"] = std::string(kCodePrefix) + codes::kEndConversation;
                 rec["message"] = r.error().message;
               }
               turn->actions.push_back(rec);
               complete(st, turn,
                        r && turn->refused.empty() ? TurnOutcome::kOk : TurnOutcome::kPartial);
             });
      return;
    case ActionKind::kChangeTtr:
      update(st, turn, {conv::TtrField{a.ttr_type, a.ttr_value_s}},
             [this, st, turn, rec](Result<store::Conversation> r) mutable {
               rec["status"] = r ? "DONE" : "FAILED";
               if (!r) {
                 rec["code"] = std::string(kCodePrefix) + codes::kChangeTtr;
                 rec["message"] = r.error().message;
               }
               turn->actions.push_back(rec);
               complete(st, turn,
                        r && turn->refused.empty() ? TurnOutcome::kOk : TurnOutcome::kPartial);
             });
      return;
    case ActionKind::kInvocation: {
      auto req = functions::InvokeRequest::of(st->account, FunctionId(a.lambda_uuid))
                     .withPayload(d_.clock.nowMs(), bj::serialize(a.payload))
                     .within(std::chrono::milliseconds(turn->config->escalation.turn_timeout_ms))
                     .withRequestId(turn->id + "-invocation");
      bool fail_on_error = a.fail_on_error;
      d_.work.add();
      d_.runner.invoke(std::move(req), [this, st = st, turn = turn, rec,
                                        fail_on_error](functions::InvokeResult r) mutable {
        auto s = std::move(st);  // see released()
        d_.strands.onStrand(s, [this, st = s, turn = std::move(turn), rec, fail_on_error,
                                r = std::move(r)]() mutable {
          if (r.ok) {
            rec["status"] = "DONE";
            turn->actions.push_back(rec);
            return complete(st, turn,
                            turn->refused.empty() ? TurnOutcome::kOk : TurnOutcome::kPartial);
          }
          rec["status"] = fail_on_error ? "FAILED" : "FAILED_IGNORED";
          rec["code"] = std::string(kCodePrefix) + codes::kFailedBotAction;
          rec["message"] = r.error_code + ": " + r.error_message;
          turn->actions.push_back(rec);
          if (fail_on_error)
            return escalate(st, turn, codes::kFailedBotAction,
                            "INVOCATION of " + std::string(rec["lambdaUuid"].as_string()) +
                                " failed: " + r.error_code + ": " + r.error_message);
          complete(st, turn, TurnOutcome::kPartial);
        });
        d_.strands.released(std::move(s));
      });
      return;
    }
  }
}

void TurnRunner::complete(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                          TurnOutcome outcome) {
  turn->outcome = outcome;
  // A durable turn whose done mark no message carried (a TTR action, a failed last publish,
  // an escalation that kept the conversation) is marked done on the conversation before it
  // ends, so the conversation's next turn starts after the mark is stored.
  if (turn->durable && !turn->done_marked && !turn->handed_off &&
      outcome != TurnOutcome::kDiscarded && outcome != TurnOutcome::kInterrupted &&
      outcome != TurnOutcome::kStoreUnavailable && !stale(st, turn))
    return markDone(st, turn, StoreRetry{}, [this, st, turn] { finish(st, turn); });
  finish(st, turn);
}

void TurnRunner::finish(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn) {
  const TurnOutcome outcome = turn->outcome.value_or(TurnOutcome::kError);
  if (outcome == TurnOutcome::kOk || outcome == TurnOutcome::kPartial)
    d_.health.record(turn->bot, TurnHealth::kSuccess);
  double total = msSince(turn->t_start);
  store::TurnRecord rec;
  rec.account = st->account;
  rec.bot = turn->bot->id;
  rec.conversation = st->id;
  rec.turn_id = turn->id;
  rec.ts = turn->ts;
  rec.outcome = turnOutcomeName(outcome);
  rec.input_json = turn->input_json;
  rec.response_json = turn->response_json;
  rec.actions_json = bj::serialize(turn->actions);
  rec.timings_json =
      bj::serialize(bj::object{{"queuedMs", turn->queued_ms},
                               {"invokeMs", turn->invoke_ms},
                               {"hookMs", turn->hook_ms},
                               {"applyMs", std::max(0.0, total - turn->invoke_ms - turn->hook_ms)},
                               {"totalMs", total},
                               {"attempts", turn->attempts}});
  rec.error = turn->error;
  // Asynchronous, group-committed by the store; the next turn does not wait for it. `done`
  // runs on a store thread: it only logs, counts and releases the busy mark.
  d_.work.add();
  d_.bots.appendTurnAsync(std::move(rec), d_.opts.turns_kept, [this, turn_id = turn->id](Status s) {
    if (!s) {
      d_.metrics.turnRecordFailure();
      spdlog::error("connector: cannot record turn {}: {}", turn_id, s.error().message);
    }
    d_.work.done();
  });
  d_.metrics.turn(turn->bot->id.str(), turnOutcomeName(outcome));
  endTurn(st, turn);
  // Unless another turn runs already (this one was ended by the fence while its done mark was
  // being stored), the driver starts the next.
  if (!st->turn_running) observer_->turnEnded(st);
}

// markTurn writes the same mark again when retried, so a retry after an ambiguous failure is
// harmless.
void TurnRunner::markDone(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                          StoreRetry retry, std::function<void()> done) {
  store::TurnMark mark{turn->id, st->assigned_at, turn->through, turn->effects, true};
  d_.work.add();
  d_.convs.markTurn(
      botActor(*turn->bot), st->id, mark,
      [this, st = st, turn = turn, mark, retry, done = std::move(done)](Result<void> r) mutable {
        auto s = std::move(st);  // see released()
        d_.strands.onStrand(s, [this, s, turn = std::move(turn), mark, retry,
                                done = std::move(done), r = std::move(r)]() mutable {
          if (r) {
            if (retry.failures > 0) noteRetries(turn, retry, "the done mark", "STORED");
            turn->done_marked = true;
            s->snapshot.turn_mark = mark;  // what a later catch-up reads (README "Durable turns")
            return done();
          }
          if (r.error().code == ErrorCode::kUnavailable)
            return storeFailed(s, turn, retry, r.error(), "the done mark",
                               [this, s, turn, done = std::move(done)](StoreRetry next) mutable {
                                 markDone(s, turn, next, std::move(done));
                               });
          spdlog::warn(
              "connector: turn {} of conversation {} could not be marked done ({}); a restart may "
              "run it again",
              turn->id, s->id.str(), r.error().message);
          done();
        });
        d_.strands.released(std::move(s));
      });
}

}  // namespace parley::connector
