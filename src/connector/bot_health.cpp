#include "connector/bot_health.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include "common/log.h"
#include "common/random.h"
#include "connector/input.h"

namespace parley::connector {

namespace asio = boost::asio;
namespace bj = boost::json;

void BotHealth::record(const std::shared_ptr<BotRuntime>& bot, TurnHealth h,
                       const std::string& platform_error) {
  auto change = bot->recordHealth(h, platform_error);
  if (change) transitioned(bot, change->from, change->to);
}

void BotHealth::transitioned(const std::shared_ptr<BotRuntime>& bot, store::BotStatus old_status,
                             store::BotStatus new_status) {
  spdlog::warn("connector: bot {} is now {} (was {})", bot->id.str(),
               store::botStatusName(new_status), store::botStatusName(old_status));
  auto rec = bots_.getBot(bot->account, bot->id);
  if (rec) {
    rec->status = new_status;
    rec->updated_at = clock_.nowMs();
    (void)bots_.updateBot(*rec);
  }
  if (new_status == store::BotStatus::kServiceInterruption) {
    setAvailabilityAsync(*bot, store::Availability::kAway);
    armProbe(bot);
  } else if (old_status == store::BotStatus::kServiceInterruption) {
    setAvailabilityAsync(*bot, store::Availability::kOnline);
  }
}

void BotHealth::setAvailabilityAsync(const BotRuntime& b, store::Availability av) {
  work_.add();
  convs_.setAgentState(b.account, b.user.id, av,
                       [this, id = b.id.str()](Result<store::AgentState> r) {
                         if (!r)
                           spdlog::error("connector: cannot change the availability of bot {}: {}",
                                         id, r.error().message);
                         work_.done();
                       });
}

void BotHealth::armProbe(const std::shared_ptr<BotRuntime>& bot) {
  auto timer = std::make_shared<asio::steady_timer>(
      pool_, std::chrono::milliseconds(std::max(1, probe_interval_ms_)));
  // Never once stopped (stop() cancels the armed ones, and the pool's join would wait for a
  // pending timer): setProbeTimer checks under the bot's mutex, which the cancel takes too.
  if (!bot->setProbeTimer(timer, work_)) return;
  timer->async_wait([this, bot, timer](boost::system::error_code ec) {
    work_.add();  // before checking `stopped`: stop() sets it, then waits for no work
    if (!ec && !work_.stopped() && registry_.isActive(bot)) probe(bot);
    work_.done();
  });
}

void BotHealth::probe(const std::shared_ptr<BotRuntime>& bot) {
  const auto cfg_ptr = bot->config();
  const BotConfig& cfg = *cfg_ptr;
  auto req = functions::InvokeRequest::of(bot->account, cfg.function)
                 .withInput(bj::serialize(sampleFunctionInput(clock_.nowMs())))
                 .within(std::chrono::milliseconds(cfg.escalation.turn_timeout_ms))
                 .withRequestId("probe-" + randomHex(8));
  work_.add();
  runner_.invoke(std::move(req), [this, bot = bot](functions::InvokeResult r) mutable {
    // Moved: the runner may destroy this callback after stop() (see StrandTasks::released).
    asio::post(pool_, [this, bot = std::move(bot), r = std::move(r)] {
      bool still = bot->status() == store::BotStatus::kServiceInterruption;
      if (still && registry_.isActive(bot)) {
        if (r.ok || !platformFailure(r.error_code)) {
          spdlog::info("connector: bot {}: the platform runs function {} again", bot->id.str(),
                       bot->config()->function.str());
          record(bot, TurnHealth::kSuccess);
        } else {
          bot->setLastPlatformError(r.error_code);
          if (!work_.stopped()) armProbe(bot);
        }
      }
      work_.done();
    });
  });
}

}  // namespace parley::connector
