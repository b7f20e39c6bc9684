#pragma once

// Bot health (README "Bot health"): applies what turns tell about a bot to its status, stores
// the status, moves the bot user in or out of routing, and probes the platform while a bot is in
// SERVICE_INTERRUPTION. Thread-safe; private to the connector. Everything it is given must
// outlive it; the probes run on `pool`.

#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <string>

#include "common/clock.h"
#include "connector/bot_registry.h"
#include "connector/work_tracker.h"
#include "conversation/conversation_service.h"
#include "functions/runner.h"
#include "store/store.h"

namespace parley::connector {

class BotHealth {
 public:
  BotHealth(store::BotStore& bots, conversation::ConversationService& convs,
            functions::Runner& runner, boost::asio::thread_pool& pool, BotRegistry& registry,
            WorkTracker& work, const Clock& clock, int probe_interval_ms)
      : bots_(bots),
        convs_(convs),
        runner_(runner),
        pool_(pool),
        registry_(registry),
        work_(work),
        clock_(clock),
        probe_interval_ms_(probe_interval_ms) {}

  // - `interruptionThreshold` consecutive turns failed by the function or its response →
  //   VENDOR_INTERRUPTION; the next successful turn → ONLINE.
  // - the platform could not run the function (platformFailure): at once when the function is
  //   gone (not deployed / deleted), else after `interruptionThreshold` consecutive such
  //   invocations → SERVICE_INTERRUPTION: the bot user goes AWAY (no new conversations), turns
  //   of its conversations escalate without calling the function, and every probe interval a
  //   probe invocation checks the platform; when the platform runs the function again (even if
  //   the function itself fails) → ONLINE.
  // A change is logged and stored (blocking store call).
  void record(const std::shared_ptr<BotRuntime>& bot, TurnHealth h,
              const std::string& platform_error = {});

 private:
  void transitioned(const std::shared_ptr<BotRuntime>& bot, store::BotStatus old_status,
                    store::BotStatus new_status);
  void setAvailabilityAsync(const BotRuntime& b, store::Availability av);
  // A timer (not counted as work in flight), then a probe invocation with the Test Connection
  // input.
  void armProbe(const std::shared_ptr<BotRuntime>& bot);
  void probe(const std::shared_ptr<BotRuntime>& bot);

  store::BotStore& bots_;
  conversation::ConversationService& convs_;
  functions::Runner& runner_;
  boost::asio::thread_pool& pool_;
  BotRegistry& registry_;
  WorkTracker& work_;
  const Clock& clock_;
  int probe_interval_ms_;
};

}  // namespace parley::connector
