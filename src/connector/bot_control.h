#pragma once

// Starting and stopping a bot's runtime: activate() registers a stored bot, puts its user
// ONLINE and resumes its open conversations; deactivate() takes it out of routing; handOff()
// moves the open conversations a stopped bot still holds on. Private to the connector.
//
// Threading: every method blocks (store calls, engine calls waited for): call it on the
// connector's pool (REST) or from start(), never on an engine thread.

#include "common/clock.h"
#include "common/result.h"
#include "connector/account_caches.h"
#include "connector/bot_registry.h"
#include "connector/conversation_driver.h"
#include "connector/metrics.h"
#include "conversation/conversation_service.h"
#include "store/store.h"

namespace parley::connector {

class BotControl {
 public:
  // What it uses; all must outlive it.
  struct Deps {
    store::Store& store;
    conversation::ConversationService& convs;
    // Changes a stopped bot's conversations (handOff): `convs`, or in a cluster the forwarder
    // to each conversation's owner (ConnectorOptions::hand_off_through).
    conversation::ConversationService& hand_off;
    BotRegistry& registry;
    ConversationDriver& driver;
    SkillCache& skills;
    ConnectorMetrics& metrics;
    const Clock& clock;
  };
  explicit BotControl(Deps deps) : d_(deps) {}

  // Makes a stored bot live: registers it, sets its user ONLINE, and resumes its open
  // conversations. A stored SERVICE_INTERRUPTION becomes ONLINE (a restart retries the
  // platform).
  Status activate(const store::BotRecord& rec);
  // Takes a running bot out of the registry and its user OFFLINE; nothing when not running.
  void deactivate(const AccountId& acc, const BotId& id);
  // Hands every open conversation still assigned to a stopped (or deleted) bot's user on: to the
  // bot's escalation skill when it has one that exists, else back to the queue of the skill the
  // conversation is in, through `hand_off` (in a cluster: by each conversation's owner). The bot is
  // no longer routed to (OFFLINE), so a restart does not give them back.
  void handOff(const AccountId& acc, const BotId& id, const UserId& user, const BotConfig& cfg);
  // Refreshes the bot user in the engine (its skills) and sets its availability.
  Status setAvailability(const BotRuntime& b, store::Availability av);

 private:
  Deps d_;
};

}  // namespace parley::connector
