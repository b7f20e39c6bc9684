#include "connector/bot_control.h"

#include <fmt/format.h>

#include <future>

#include "common/log.h"
#include "conversation/engine_pool.h"

namespace parley::connector {

namespace conv = parley::conversation;

namespace {

// Waits for an engine call's completion (at most 30 s).
template <class T>
Result<T> wait(std::function<void(conv::Callback<T>)> f) {
  auto p = std::make_shared<std::promise<Result<T>>>();
  auto fut = p->get_future();
  f([p](Result<T> r) { p->set_value(std::move(r)); });
  if (fut.wait_for(std::chrono::seconds(30)) != std::future_status::ready)
    return makeError(ErrorCode::kTimeout, "the conversation engine did not answer in 30 s");
  return fut.get();
}

}  // namespace

Status BotControl::setAvailability(const BotRuntime& b, store::Availability av) {
  auto r =
      wait<void>([&](conv::Callback<void> cb) { d_.convs.refreshAgent(b.account, b.user.id, cb); });
  (void)r;
  auto s = wait<store::AgentState>([&](conv::Callback<store::AgentState> cb) {
    d_.convs.setAgentState(b.account, b.user.id, av, cb);
  });
  if (!s) return std::unexpected(s.error());
  return {};
}

Status BotControl::activate(const store::BotRecord& rec) {
  auto user = d_.store.accounts().getUser(rec.account, rec.user);
  if (!user) return std::unexpected(user.error());
  store::BotStatus status =
      rec.status == store::BotStatus::kOffline ? store::BotStatus::kOnline : rec.status;
  if (status == store::BotStatus::kServiceInterruption) {
    // A restart retries the platform: the next turn finds out whether it runs the function.
    status = store::BotStatus::kOnline;
    store::BotRecord online = rec;
    online.status = store::BotStatus::kOnline;
    online.updated_at = d_.clock.nowMs();
    (void)d_.store.bots().updateBot(online);
  }
  auto rt = std::make_shared<BotRuntime>(
      rec.account, rec.id, *user,
      std::make_shared<const BotConfig>(botConfigFromStored(rec.config_json)), status);
  d_.registry.add(rt);
  if (auto s = setAvailability(*rt, store::Availability::kOnline); !s) return s;
  store::ConversationQuery q;
  q.state = store::ConversationState::kOpen;
  q.limit = 100000;
  auto open = d_.store.conversations().listConversations(rec.account, q);
  // Only the conversations the engine holds (in cluster mode, those this node has the lease
  // of; the others are driven by their owner).
  if (open)
    for (const auto& c : *open)
      if (assignedAgent(c) == rec.user.str() && conv::conversationStrand(d_.convs, c.id))
        d_.driver.conversationChanged(c);
  return {};
}

void BotControl::deactivate(const AccountId& acc, const BotId& id) {
  std::shared_ptr<BotRuntime> rt = d_.registry.remove(acc, id);
  if (!rt) return;
  (void)setAvailability(*rt, store::Availability::kOffline);
}

void BotControl::handOff(const AccountId& acc, const BotId& id, const UserId& user,
                         const BotConfig& cfg) {
  store::ConversationQuery q;
  q.state = store::ConversationState::kOpen;
  q.limit = 100000;
  auto open = d_.store.conversations().listConversations(acc, q);
  if (!open) {
    spdlog::error("connector: bot {} stopped, but its conversations cannot be listed: {}", id.str(),
                  open.error().message);
    return;
  }
  std::optional<SkillId> target;
  if (!cfg.escalation.skill.empty()) target = d_.skills.byName(acc, cfg.escalation.skill);
  std::uint64_t moved = 0;
  for (const auto& c : *open) {
    if (assignedAgent(c) != user.str()) continue;
    auto r = wait<store::Conversation>([&](conv::Callback<store::Conversation> cb) {
      d_.hand_off.updateConversation(conv::Actor::ofSystem(acc), c.id,
                                     conv::transferToSkill(target.value_or(c.skill)), cb);
    });
    if (!r) {
      spdlog::error("connector: conversation {} of stopped bot {} could not be handed on: {}",
                    c.id.str(), id.str(), r.error().message);
      continue;
    }
    ++moved;
  }
  if (moved == 0) return;
  spdlog::info("connector: bot {} stopped: {} open conversations handed to skill {}", id.str(),
               moved, target ? target->str() : std::string("(their own queue)"));
  d_.metrics.handedOff(id.str(), moved);
}

}  // namespace parley::connector
