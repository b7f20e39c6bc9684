#include "connector/bot_service.h"

#include <boost/asio/thread_pool.hpp>

#include "common/log.h"
#include "common/thread_name.h"
#include "connector/account_caches.h"
#include "connector/bot_control.h"
#include "connector/bot_health.h"
#include "connector/bot_registry.h"
#include "connector/bots_api.h"
#include "connector/conversation_driver.h"
#include "connector/conversation_state.h"
#include "connector/metrics.h"
#include "connector/turn_runner.h"
#include "connector/work_tracker.h"

namespace parley::connector {

namespace bj = boost::json;
namespace asio = boost::asio;
namespace conv = parley::conversation;

// The connector's parts, wired (README "Bot connector"): each part gets only the parts it
// uses. Declaration order is construction order; everything is destroyed after stop().
struct BotService::Impl {
  Impl(store::Store& s, conv::ConversationService& c, functions::Runner& r,
       richcontent::Validator v, const Clock& clk, ConnectorOptions o)
      : store(s),
        convs(c),
        validator(std::move(v)),
        opts(std::move(o)),
        pool(static_cast<std::size_t>(std::max(1, opts.threads))),
        skills(s.accounts()),
        hooks(s.functions()),
        allowlists(s.accounts(), s.bots(), opts.image_allowlist),
        strands(work),
        health(s.bots(), c, r, pool, registry, work, clk, opts.service_probe_interval_ms),
        turns({s.bots(), s.functions(), c, r, validator, clk, opts, metrics, skills, hooks,
               allowlists, health, work, strands}),
        driver({c, s.conversations(), pool, registry, turns, metrics, work, strands,
                opts.max_open_conversations, opts.store_retry_max_ms}),
        control({s, c, opts.hand_off_through ? *opts.hand_off_through : c, registry, driver, skills,
                 metrics, clk}),
        tester({s, validator, clk, opts, pool, skills, allowlists, work}),
        replay({s, validator, clk, opts, pool, allowlists, work}),
        api({s, r, validator, clk, opts, pool, registry, control, skills, allowlists, tester,
             replay}) {
    nameThreads([this](auto task) { asio::post(pool, std::move(task)); },
                static_cast<std::size_t>(std::max(1, opts.threads)), "connector");
    strands.setExceptionHandler([this](const std::shared_ptr<ConvState>& st,
                                       const std::string& what) { turns.turnException(st, what); });
    turns.setObserver(&driver);
  }

  store::Store& store;
  conv::ConversationService& convs;
  richcontent::Validator validator;
  ConnectorOptions opts;
  // REST calls, store calls, probes; and the strands of conversations the engine does not hold
  // open (closed before the connector saw them) or when `convs` is not the engine.
  asio::thread_pool pool;
  conv::Subscription subscription;
  WorkTracker work;
  ConnectorMetrics metrics;
  BotRegistry registry;
  SkillCache skills;
  HookCache hooks;
  ImageAllowlists allowlists;
  StrandTasks strands;
  BotHealth health;
  TurnRunner turns;
  ConversationDriver driver;
  BotControl control;
  ConversationTester tester;
  ReplayRunner replay;
  BotsApi api;
};

BotService::BotService(store::Store& store, conv::ConversationService& conversations,
                       functions::Runner& runner, richcontent::Validator validator,
                       const Clock& clock, ConnectorOptions options)
    : impl_(std::make_unique<Impl>(store, conversations, runner, std::move(validator), clock,
                                   std::move(options))) {}

BotService::~BotService() { stop(); }

Status BotService::start() {
  if (auto s = impl_->allowlists.load(); !s) return s;
  impl_->subscription = impl_->convs.subscribe(*this);
  auto all = impl_->store.bots().listAllBots();
  if (!all) return std::unexpected(all.error());
  auto pending = impl_->store.bots().listPendingTurns();
  if (pending)
    for (const auto& p : *pending) {
      spdlog::info(
          "connector: turn {} of conversation {} was interrupted by a restart; unanswered "
          "consumer messages are answered again",
          p.turn_id, p.conversation.str());
      (void)impl_->store.bots().deletePendingTurn(p.turn_id);
    }
  for (const auto& b : *all) {
    if (b.status == store::BotStatus::kOffline) {
      // A stop that a crash interrupted: hand on what the stopped bot still holds.
      impl_->control.handOff(b.account, b.id, b.user, botConfigFromStored(b.config_json));
      continue;
    }
    if (auto s = impl_->control.activate(b); !s)
      spdlog::error("connector: cannot resume bot {}: {}", b.id.str(), s.error().message);
  }
  return {};
}

int BotService::drain(std::chrono::milliseconds deadline) {
  impl_->work.setDraining();
  int left = impl_->work.waitTurnsDone(deadline);
  impl_->work.setInterrupting();
  if (left > 0)
    spdlog::warn(
        "connector: {} turns still running after the drain deadline ({} ms); they stop at their "
        "next step and run again at the next start",
        left, deadline.count());
  return left;
}

void BotService::stop() {
  impl_->work.setInterrupting();
  if (impl_->work.setStopped()) return;
  impl_->subscription.reset();
  impl_->driver.cancelTimers();
  impl_->registry.cancelProbes();
  // Invocations and engine calls in flight call back into this object: wait for them (bounded
  // by the 30 s function deadline) before the threads go away. No new turn starts once stopped.
  if (!waitIdleForTest(35'000))
    spdlog::error("connector: work still in flight after 35 s at shutdown");
  impl_->pool.join();
  // The strands and timers of the conversations may live on a lent pool (turn_pool) that is
  // destroyed after this service: nothing of them may outlive stop().
  impl_->driver.dropAll();
  // A cancelled inactivity timer's handler may still be queued on an engine strand: from here on
  // it returns at once; one already running finishes before this returns.
  impl_->work.releaseLife();
}

bool BotService::waitIdleForTest(int timeout_ms) {
  return impl_->work.waitIdle(std::chrono::milliseconds(timeout_ms));
}

std::uint64_t BotService::skillListReadsForTest() const { return impl_->skills.loads(); }

std::uint64_t BotService::strandHandOffsForTest() const { return impl_->work.handOffs(); }

bool BotService::onEngineStrandForTest(const ConversationId& id) const {
  return impl_->driver.onEngineStrand(id);
}

std::optional<std::vector<std::string>> BotService::imageAllowlist(const AccountId& acc) const {
  return impl_->allowlists.forAccount(acc);
}

Result<bj::object> BotService::getImageAllowlist(const AccountId& acc) {
  return impl_->allowlists.json(acc);
}

Result<bj::object> BotService::putImageAllowlist(const AccountId& acc, const bj::object& body) {
  return impl_->allowlists.put(acc, body);
}

Status BotService::deleteImageAllowlist(const AccountId& acc) {
  return impl_->allowlists.remove(acc);
}

void BotService::applyRemoteChange(const AccountId& acc, std::string_view kind,
                                   const std::string& id, std::function<void(Status)> done) {
  asio::post(impl_->pool, [this, acc, kind = std::string(kind), id, done = std::move(done)] {
    Status s{};
    if (kind == "bot") {
      s = impl_->api.refreshBot(acc, BotId(id));
    } else if (kind == "image-allowlist") {
      s = impl_->allowlists.reload(acc);
    } else if (kind == "skills") {
      impl_->skills.forget(acc);
    } else if (kind == "function") {
      impl_->hooks.forget(acc);
    }
    if (!s)
      spdlog::error("connector: applying another node's change of {} {} failed: {}", kind, id,
                    s.error().message);
    if (done) done(s);
  });
}

void BotService::onConversationChanged(const conv::ConversationChanged& e) {
  impl_->driver.conversationChanged(e.conversation);
}
void BotService::onMessageAdded(const conv::MessageAdded& e) {
  impl_->driver.messageAdded(std::make_shared<const conv::MessageAdded>(e));
}
void BotService::onMessageAddedShared(const std::shared_ptr<const conv::MessageAdded>& e) {
  impl_->driver.messageAdded(e);
}
void BotService::onRingOffered(const conv::RingOffered& e) { impl_->driver.ringOffered(e.ring); }
void BotService::onOwnershipChanged(const conv::OwnershipChanged& e) {
  if (e.owned) {
    impl_->driver.conversationChanged(e.conversation);
  } else {
    impl_->driver.conversationLost(e.conversation);
  }
}

Result<bj::object> BotService::createBot(const AccountId& acc, const bj::object& body) {
  return impl_->api.createBot(acc, body);
}
Result<bj::object> BotService::updateBot(const AccountId& acc, const BotId& id,
                                         const bj::object& body) {
  return impl_->api.updateBot(acc, id, body);
}
Status BotService::deleteBot(const AccountId& acc, const BotId& id) {
  return impl_->api.deleteBot(acc, id);
}
Result<bj::object> BotService::getBot(const AccountId& acc, const BotId& id) {
  return impl_->api.getBot(acc, id);
}
Result<bj::array> BotService::listBots(const AccountId& acc) { return impl_->api.listBots(acc); }
Result<bj::object> BotService::startBot(const AccountId& acc, const BotId& id) {
  return impl_->api.startBot(acc, id);
}
Result<bj::object> BotService::stopBot(const AccountId& acc, const BotId& id) {
  return impl_->api.stopBot(acc, id);
}
Result<bj::object> BotService::testConnection(const AccountId& acc, const BotId& id) {
  return impl_->api.testConnection(acc, id);
}

Result<bj::object> BotService::testConnectionUnsaved(const AccountId& acc, const bj::object& body) {
  return impl_->api.testConnectionUnsaved(acc, body);
}
Result<bj::array> BotService::listTurns(const AccountId& acc, const BotId& id, int limit) {
  return impl_->api.listTurns(acc, id, limit);
}

std::string BotService::prometheusText() const {
  return impl_->metrics.prometheusText(impl_->registry.statuses(), impl_->driver.size());
}

void BotService::handle(api::Request request, std::function<void(api::Response)> done) {
  impl_->api.handle(std::move(request), std::move(done));
}

}  // namespace parley::connector
