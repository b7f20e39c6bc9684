#include "connector/conversation_driver.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "common/log.h"

namespace parley::connector {

namespace asio = boost::asio;
namespace bj = boost::json;
namespace conv = parley::conversation;

void ConversationDriver::conversationChanged(const store::Conversation& c) {
  auto assigned = assignedAgent(c);
  std::shared_ptr<BotRuntime> bot = assigned ? d_.registry.forUser(c.account, *assigned) : nullptr;
  auto state = convFor(c.id, bot != nullptr ? Track::kCreate : Track::kExisting);
  if (!state) return;
  d_.strands.onStrand(state, [this, state, c, bot] { handleChange(state, c, bot); });
}

// Only a consumer's content starts a turn or counts as activity: every other message (the
// bot's own, an agent's, a receipt) is dropped here. `e` is the engine's shared event, on the
// conversation's strand: the turn input holds its message and its parsed event, not copies.
void ConversationDriver::messageAdded(const std::shared_ptr<const conv::MessageAdded>& e) {
  const store::Message& m = e->message;
  if (m.originator_role != store::ParticipantRole::kConsumer) return;
  ConsumerMessage cm = e->event
                           ? ConsumerMessage{std::shared_ptr<const store::Message>(e, &m), e->event}
                           : ConsumerMessage::fromStored(m);
  auto kind = classifyConsumerMessage(m, *cm.event);
  if (!kind) return;
  auto state = convFor(m.conversation, Track::kExisting);
  if (!state) return;
  d_.strands.onStrand(
      state, [this, state, cm = std::move(cm), kind = *kind] { handleMessage(state, cm, kind); });
}

void ConversationDriver::conversationLost(const store::Conversation& c) {
  auto state = convFor(c.id, Track::kExisting);
  if (!state) return;
  d_.strands.onStrand(state, [this, state, c] {
    handleChange(state, c, nullptr);
    forget(c.id);
  });
}

void ConversationDriver::ringOffered(const conv::Ring& ring) {
  auto bot = d_.registry.forUser(ring.account, ring.user.str());
  if (!bot) return;
  d_.work.add();
  asio::post(d_.pool, [this, bot, ring] {
    store::BotStatus status = bot->status();
    auto c = d_.conversations.getConversation(ring.account, ring.conversation);
    bool serve =
        (status == store::BotStatus::kOnline || status == store::BotStatus::kVendorInterruption) &&
        c && bot->config()->servesChannel(c->channel) && !d_.work.stopped();
    d_.work.add();
    if (serve) {
      d_.convs.acceptRing(botActor(*bot), ring.ring_id,
                          [this, ring](Result<store::Conversation> r) {
                            if (!r)
                              spdlog::info("connector: bot could not accept ring {}: {}",
                                           ring.ring_id, r.error().message);
                            d_.work.done();
                          });
    } else {
      d_.convs.rejectRing(botActor(*bot), ring.ring_id, [this](Status) { d_.work.done(); });
    }
    d_.work.done();
  });
}

std::shared_ptr<ConvState> ConversationDriver::convFor(const ConversationId& id, Track track) {
  MutexLock lock(mu_);
  auto it = conversations_.find(id.str());
  if (it != conversations_.end()) return it->second;
  if (track == Track::kExisting) return nullptr;
  // The engine's own strand of the conversation: the engine emits the conversation's events
  // and calls the completions of its publishes and changes on it, so the connector handles
  // them inline, and one queue orders everything done for the conversation.
  auto strand = conv::conversationStrand(d_.convs, id);
  auto c = std::make_shared<ConvState>(strand ? std::move(*strand) : asio::make_strand(d_.pool));
  c->id = id;
  conversations_[id.str()] = c;
  return c;
}

void ConversationDriver::handleChange(const std::shared_ptr<ConvState>& st,
                                      const store::Conversation& c,
                                      const std::shared_ptr<BotRuntime>& bot) {
  st->account = c.account;
  st->snapshot = c;
  bool now_owned = bot != nullptr;
  if (now_owned && (!st->owned || st->bot != bot)) {
    if (st->owned) release(st);
    st->owned = true;
    st->bot = bot;
    st->assigned_at = 0;
    for (const auto& p : c.participants)
      if (p.id == bot->user.id.str() && p.role == store::ParticipantRole::kAssignedAgent &&
          p.state == store::ParticipantState::kActive)
        st->assigned_at = p.joined_at;
    ++st->epoch;
    st->queue.clear();
    cancelInactivity(st);
    std::size_t held = bot->hold(st->id.str());
    if (held > static_cast<std::size_t>(std::max(1, d_.max_open_conversations))) {
      // Spec §3.3: beyond the limit a new conversation is error-escalated at once.
      st->limit_escalation = true;
      pump(st);
    } else {
      catchUp(st);
    }
  } else if (!now_owned && st->owned) {
    release(st);
    st->owned = false;
    ++st->epoch;  // a turn in flight is now stale: its response is discarded
    st->queue.clear();
    st->catching_up = false;
    st->buffered.clear();
    st->limit_escalation = false;
    if (st->timer) st->timer->cancel();
    cancelInactivity(st);
  }
  if (!st->owned && !st->turn_running && c.state == store::ConversationState::kClose) {
    forget(c.id);
  }
}

void ConversationDriver::release(const std::shared_ptr<ConvState>& st) {
  if (!st->bot) return;
  st->bot->release(st->id.str());
}

void ConversationDriver::catchUp(const std::shared_ptr<ConvState>& st) {
  st->catching_up = true;
  std::uint64_t epoch = st->epoch;
  d_.work.add();
  d_.convs.listMessages(
      st->account, st->id, 0, 100000,
      [this, st = st, epoch](Result<std::vector<store::Message>> r) mutable {
        auto s = std::move(st);  // see released()
        d_.strands.onStrand(s, [this, s, epoch, r = std::move(r)] { finishCatchUp(s, epoch, r); });
        d_.strands.released(std::move(s));
      });
}

// What the bot owes a conversation it takes (or resumes after a restart), derived from the
// stored messages alone:
// - When effects of this assignment are stored (messages carrying this bot's turn marks with
//   this assignment's `assigned_at`, or the conversation's own mark), every consumer message
//   after the `through` of the last done turn is pending; a turn whose effects are out but
//   whose done mark is not (a crash or shutdown in the middle) runs again first, with the
//   same id and the same messages (up to its `through`), publishing only the effects not yet
//   stored. The pending messages after it are queued one by one and combined by the bot's
//   usual rule.
// - Otherwise (the bot has not finished anything here yet) the catch-up rule: every consumer
//   message after the last agent/bot message, a WELCOME first for chat when the bot never
//   spoke, or `welcomeAfterTransfer`.
void ConversationDriver::finishCatchUp(const std::shared_ptr<ConvState>& st, std::uint64_t epoch,
                                       const Result<std::vector<store::Message>>& r) {
  if (epoch != st->epoch || !st->owned) return;
  if (!r && r.error().code == ErrorCode::kUnavailable && !d_.work.stopped()) {
    // Deriving what is owed from nothing would answer later messages and let their turn's done
    // mark cover the unanswered ones: read again later; consumer messages stay buffered.
    spdlog::warn(
        "connector: cannot read conversation {} to derive what the bot owes ({}); reading it "
        "again in {} ms",
        st->id.str(), r.error().message, d_.catch_up_retry_ms);
    d_.strands.afterDelay(st, &ConvState::catch_up_timer,
                          std::chrono::milliseconds(std::max(1, d_.catch_up_retry_ms)),
                          [this, st, epoch] {
                            if (epoch != st->epoch || !st->owned || d_.work.stopped()) return;
                            catchUp(st);
                          });
    return;
  }
  st->catching_up = false;
  std::vector<store::Message> msgs = r ? *r : std::vector<store::Message>{};
  if (!r)
    spdlog::error("connector: cannot read conversation {} to resume it: {}", st->id.str(),
                  r.error().message);
  std::size_t answered_upto = 0;  // index after the last non-consumer content message
  bool bot_spoke = false, others_spoke = false;
  std::string bot_old_id = st->account.str() + "." + st->bot->user.id.str();
  std::optional<std::string> last_consumer_text;
  struct Partial {
    std::string id;
    std::int64_t through = -1;
    int effects = 0;
  };
  std::optional<std::int64_t> answered;  // `through` of the last done turn
  std::optional<Partial> partial;
  const store::TurnMark& row = st->snapshot.turn_mark;
  if (!row.empty() && row.done && row.assigned_at == st->assigned_at) answered = row.through;
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    const auto& m = msgs[i];
    st->last_seq = std::max(st->last_seq, m.sequence);
    if (m.originator_id == bot_old_id && !m.turn.empty() && m.turn.assigned_at == st->assigned_at) {
      if (m.turn.done) {
        answered = std::max(answered.value_or(-1), m.turn.through);
        if (partial && partial->id == m.turn.turn_id) partial.reset();
      } else if (partial && partial->id == m.turn.turn_id) {
        partial->effects = std::max(partial->effects, m.turn.effect + 1);
      } else {
        partial = Partial{m.turn.turn_id, m.turn.through, m.turn.effect + 1};
      }
      continue;
    }
    if (m.originator_role == store::ParticipantRole::kConsumer) {
      auto cm = ConsumerMessage::fromStored(m);
      if (auto k = classifyConsumerMessage(m, *cm.event); k == InputKind::kText)
        if (const auto* t = cm.event->if_contains("message"); t && t->is_string())
          last_consumer_text = std::string(t->get_string());
      continue;
    }
    bool content = m.event_json.find("\"ContentEvent\"") != std::string::npos ||
                   m.event_json.find("\"RichContentEvent\"") != std::string::npos;
    if (!content || m.audience != store::Audience::kAll) continue;
    answered_upto = i + 1;
    if (m.originator_id == bot_old_id)
      bot_spoke = true;
    else
      others_spoke = true;
  }
  if (partial && answered && partial->through <= *answered) partial.reset();
  auto now = SteadyClock::now();
  bool chat = st->snapshot.channel == store::Channel::kChat;
  const std::int64_t boundary = answered_upto > 0 ? msgs[answered_upto - 1].sequence : -1;
  auto queueFrom = [&](std::int64_t after) {
    for (const auto& m : msgs)
      if (m.sequence > after)
        if (auto k = classifyConsumerMessage(m))
          st->queue.emplace_back(
              TurnInput{*k, {ConsumerMessage::fromStored(m)}, std::nullopt, m.sequence, {}, 0},
              now);
  };
  if (answered || partial) {
    std::int64_t lower = answered.value_or(boundary);
    if (partial) {
      TurnInput in;
      in.resume_id = partial->id;
      in.effects_done = partial->effects;
      in.through = partial->through;
      for (const auto& m : msgs)
        if (m.sequence > lower && m.sequence <= partial->through)
          if (auto k = classifyConsumerMessage(m)) {
            if (in.messages.empty()) in.kind = *k;
            in.messages.push_back(ConsumerMessage::fromStored(m));
          }
      if (in.messages.empty()) {
        in.kind = InputKind::kWelcome;
        if (!chat) in.last_consumer_message = last_consumer_text;
      }
      spdlog::info(
          "connector: conversation {}: turn {} was interrupted after {} of its effects; it "
          "runs again and publishes only the rest",
          st->id.str(), partial->id, partial->effects);
      st->queue.emplace_back(std::move(in), now);
      lower = std::max(lower, partial->through);
    }
    queueFrom(lower);
  } else {
    if (chat && !bot_spoke) {
      st->queue.emplace_back(TurnInput{InputKind::kWelcome, {}, std::nullopt, boundary, {}, 0},
                             now);
    } else if (!chat && st->bot->config()->welcome_after_transfer && others_spoke && !bot_spoke) {
      std::int64_t all = msgs.empty() ? -1 : msgs.back().sequence;
      st->queue.emplace_back(TurnInput{InputKind::kWelcome, {}, last_consumer_text, all, {}, 0},
                             now);
      answered_upto = msgs.size();
    }
    queueFrom(answered_upto > 0 ? msgs[answered_upto - 1].sequence : -1);
  }
  for (auto& [m, kind] : st->buffered) enqueueMessage(st, m, kind);
  st->buffered.clear();
  pump(st);
  armInactivityIfWaiting(st);
}

// `kind`: classifyConsumerMessage(m).
void ConversationDriver::enqueueMessage(const std::shared_ptr<ConvState>& st,
                                        const ConsumerMessage& m, InputKind kind) {
  const std::int64_t seq = m.message->sequence;
  if (seq <= st->last_seq) return;
  st->last_seq = seq;
  st->queue.emplace_back(TurnInput{kind, {m}, std::nullopt, seq, {}, 0}, SteadyClock::now());
}

// A consumer's content message (`kind`: classifyConsumerMessage(m)).
void ConversationDriver::handleMessage(const std::shared_ptr<ConvState>& st,
                                       const ConsumerMessage& m, InputKind kind) {
  if (!st->owned) return;
  cancelInactivity(st);  // the consumer is active
  if (st->catching_up) {
    st->buffered.emplace_back(m, kind);
    return;
  }
  enqueueMessage(st, m, kind);
  pump(st);
}

void ConversationDriver::pump(const std::shared_ptr<ConvState>& st) {
  if (st->turn_running || !st->owned || d_.work.stopped() || d_.work.draining()) return;
  if (st->limit_escalation) {
    st->limit_escalation = false;
    return d_.turns.startLimitEscalation(st);
  }
  if (st->queue.empty() || st->catching_up) return;
  const auto cfg_ptr = st->bot->config();
  const BotConfig& cfg = *cfg_ptr;
  // A resumed turn runs with exactly the messages it had: no combine window, nothing added.
  bool resumed = !st->queue.front().first.resume_id.empty();
  bool text_front = st->queue.front().first.kind == InputKind::kText && !resumed;
  if (cfg.combine.enabled && cfg.combine.time_frame_ms > 0 && text_front && !st->combine_ready) {
    if (!st->combine_armed) {
      st->combine_armed = true;
      d_.strands.armTimer(st, std::chrono::milliseconds(cfg.combine.time_frame_ms), [this, st] {
        st->combine_armed = false;
        st->combine_ready = true;
        pump(st);
      });
    }
    return;
  }
  st->combine_ready = false;
  auto [input, queued_at] = std::move(st->queue.front());
  st->queue.pop_front();
  if (cfg.combine.enabled && input.kind == InputKind::kText && input.resume_id.empty()) {
    while (!st->queue.empty() && st->queue.front().first.kind == InputKind::kText &&
           st->queue.front().first.resume_id.empty() &&
           static_cast<int>(input.messages.size()) < cfg.combine.max_messages) {
      input.through = std::max(input.through, st->queue.front().first.through);
      for (auto& m : st->queue.front().first.messages) input.messages.push_back(std::move(m));
      st->queue.pop_front();
    }
  }
  d_.turns.startTurn(st, std::move(input), queued_at);
}

void ConversationDriver::cancelInactivity(const std::shared_ptr<ConvState>& st) {
  ++st->idle_gen;
  if (st->idle_timer) {
    st->idle_timer->cancel();
    st->idle_timer.reset();
  }
}

// Arms the chat inactivity timers when the bot is waiting for the consumer: a CHAT
// conversation it owns, no turn running or queued.
void ConversationDriver::armInactivityIfWaiting(const std::shared_ptr<ConvState>& st) {
  if (!st->owned || st->turn_running || !st->queue.empty() || st->catching_up ||
      st->limit_escalation || d_.work.stopped())
    return;
  if (st->snapshot.channel != store::Channel::kChat ||
      st->snapshot.state != store::ConversationState::kOpen)
    return;
  const ChatInactivity cfg = st->bot->config()->chat_inactivity;
  cancelInactivity(st);
  if (!cfg.enabled) return;
  if (cfg.warning_after_ms > 0)
    scheduleIdle(st, cfg.warning_after_ms, Idle::kWarning);
  else
    scheduleIdle(st, cfg.close_after_ms, Idle::kClose);
}

// Inactivity timers are not "busy" (waitIdleForTest does not wait minutes for them); stop()
// cancels them, and no new one is armed once stopped.
void ConversationDriver::scheduleIdle(const std::shared_ptr<ConvState>& st, std::int64_t ms,
                                      Idle step) {
  auto timer = std::make_shared<asio::steady_timer>(st->strand, std::chrono::milliseconds(ms));
  st->idle_timer = timer;
  std::uint64_t gen = st->idle_gen;
  std::weak_ptr<int> alive = d_.work.life();
  timer->async_wait([this, alive, st, timer, gen, step](boost::system::error_code ec) {
    auto held = alive.lock();
    if (!held) return;  // the service is gone
    d_.work.add();      // before checking `stopped` (see BotHealth::armProbe)
    if (!ec && !d_.work.stopped() && gen == st->idle_gen && st->owned && !st->turn_running &&
        d_.registry.isActive(st->bot)) {
      auto idle = [&] { onIdle(st, step); };
      d_.strands.fenced(st, idle);
    }
    d_.work.done();
  });
}

void ConversationDriver::onIdle(const std::shared_ptr<ConvState>& st, Idle step) {
  const ChatInactivity cfg = st->bot->config()->chat_inactivity;
  d_.metrics.inactivity(st->bot->id.str(), step == Idle::kClose ? "close" : "warning");
  const auto& text = textEvent;
  if (step == Idle::kWarning) {
    std::uint64_t gen = st->idle_gen;
    auto then = [this, st, gen, cfg](Result<conv::Published> r) {
      if (!r)
        spdlog::info("connector: inactivity warning in {} not sent: {}", st->id.str(),
                     r.error().message);
      if (gen == st->idle_gen && st->owned)
        scheduleIdle(st, cfg.close_after_ms - cfg.warning_after_ms, Idle::kClose);
    };
    if (cfg.warning_message.empty()) return then(Result<conv::Published>(conv::Published{}));
    auto turn = d_.turns.syntheticTurn(st);
    return d_.turns.publish(st, turn, text(cfg.warning_message), "[]", conv::Audience::kAll, then);
  }
  // Close: recorded as a turn (outcome CLOSED_INACTIVE) so the dashboard shows it.
  auto turn = d_.turns.syntheticTurn(st);
  d_.turns.beginTurn(st, turn);
  auto do_close = [this, st, turn] {
    d_.turns.update(st, turn, {conv::CloseField{store::CloseReason::kBot}},
                    [this, st, turn](Result<store::Conversation> r) {
                      bj::object a{{"kind", "INACTIVITY_CLOSE"}, {"status", r ? "DONE" : "FAILED"}};
                      if (!r) a["message"] = r.error().message;
                      turn->actions.push_back(std::move(a));
                      d_.turns.complete(st, turn, TurnOutcome::kClosedInactive);
                    });
  };
  if (cfg.close_message.empty()) return do_close();
  d_.turns.publish(st, turn, text(cfg.close_message), "[]", conv::Audience::kAll,
                   [turn, do_close](Result<conv::Published> r) {
                     turn->actions.push_back(bj::object{{"kind", "INACTIVITY_CLOSE_MESSAGE"},
                                                        {"status", r ? "DONE" : "FAILED"}});
                     do_close();
                   });
}

void ConversationDriver::forget(const ConversationId& id) {
  MutexLock lock(mu_);
  conversations_.erase(id.str());
}

void ConversationDriver::resync(const std::shared_ptr<ConvState>& st) {
  st->owed = false;
  st->queue.clear();  // derived again from the store, with the owed turn first
  cancelInactivity(st);
  catchUp(st);
}

void ConversationDriver::turnEnded(const std::shared_ptr<ConvState>& st) {
  if (!st->owned && st->snapshot.state == store::ConversationState::kClose) forget(st->id);
  if (st->owed) {
    st->owed = false;
    if (st->owned && !d_.work.stopped()) return resync(st);
  }
  pump(st);
  armInactivityIfWaiting(st);
}

void ConversationDriver::cancelTimers() {
  MutexLock lock(mu_);
  for (auto& [k, c] : conversations_)
    d_.strands.onStrand(c, [c] {
      if (c->timer) c->timer->cancel();
      if (c->idle_timer) c->idle_timer->cancel();
      if (c->retry_timer) c->retry_timer->cancel();
      if (c->catch_up_timer) c->catch_up_timer->cancel();
    });
}

void ConversationDriver::dropAll() {
  std::unordered_map<std::string, std::shared_ptr<ConvState>> all;
  {
    MutexLock lock(mu_);
    all.swap(conversations_);
  }
  all.clear();
}

std::size_t ConversationDriver::size() const {
  MutexLock lock(mu_);
  return conversations_.size();
}

bool ConversationDriver::onEngineStrand(const ConversationId& id) const {
  std::shared_ptr<ConvState> c;
  {
    MutexLock lock(mu_);
    auto it = conversations_.find(id.str());
    if (it == conversations_.end()) return false;
    c = it->second;
  }
  auto engine_strand = conv::conversationStrand(d_.convs, id);
  return engine_strand && *engine_strand == c->strand;
}

}  // namespace parley::connector
