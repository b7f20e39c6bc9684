#pragma once

// The REST resource `bots` (API.md): bot configurations (create, edit, delete, get, list),
// start/stop, test-connection, the turn records, the conversation tester and replay (answered by
// ConversationTester and ReplayRunner) and the account image allowlist, each call
// checked against the authorization policy. Private to the connector; BotService forwards its
// api::Handler and its synchronous REST forms here.
//
// Threading: handle() answers on the connector's pool; the synchronous forms block (store
// calls, engine calls) and may run on any thread but an engine or io thread.

#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>
#include <functional>
#include <optional>

#include "common/api.h"
#include "common/clock.h"
#include "common/result.h"
#include "connector/account_caches.h"
#include "connector/bot_control.h"
#include "connector/bot_registry.h"
#include "connector/bot_service.h"
#include "connector/replay_runner.h"
#include "connector/richcontent/validator.h"
#include "connector/tester.h"
#include "functions/runner.h"
#include "store/store.h"

namespace parley::connector {

class BotsApi {
 public:
  // What it uses; all must outlive it.
  struct Deps {
    store::Store& store;
    functions::Runner& runner;
    const richcontent::Validator& validator;
    const Clock& clock;
    const ConnectorOptions& opts;
    boost::asio::thread_pool& pool;
    BotRegistry& registry;
    BotControl& control;
    SkillCache& skills;
    ImageAllowlists& allowlists;
    ConversationTester& tester;
    ReplayRunner& replay;
  };
  explicit BotsApi(Deps deps) : d_(deps) {}

  // Routes a `bots` request; `done` is called once, on the pool.
  void handle(api::Request request, std::function<void(api::Response)> done);

  // The synchronous forms (see BotService).
  Result<boost::json::object> createBot(const AccountId& acc, const boost::json::object& body);
  Result<boost::json::object> updateBot(const AccountId& acc, const BotId& id,
                                        const boost::json::object& body);
  Status deleteBot(const AccountId& acc, const BotId& id);
  Result<boost::json::object> getBot(const AccountId& acc, const BotId& id);
  Result<boost::json::array> listBots(const AccountId& acc);
  Result<boost::json::object> startBot(const AccountId& acc, const BotId& id);
  Result<boost::json::object> stopBot(const AccountId& acc, const BotId& id);
  Result<boost::json::object> testConnection(const AccountId& acc, const BotId& id);
  Result<boost::json::object> testConnectionUnsaved(const AccountId& acc,
                                                    const boost::json::object& body);
  Result<boost::json::array> listTurns(const AccountId& acc, const BotId& id, int limit);
  // Applies the bot's stored record after another node changed it (BotService::applyRemoteChange).
  Status refreshBot(const AccountId& acc, const BotId& id);

 private:
  void changed(const AccountId& acc, std::string_view kind, const std::string& id) const {
    if (d_.opts.on_change) d_.opts.on_change(acc, kind, id);
  }
  boost::json::object botJson(const store::BotRecord& b);
  // A create body checked as createBot checks it (the same errors), nothing stored: the config
  // with its skills resolved and the function found, and the BOT user named by `userId`, if any.
  struct NewBot {
    BotConfig cfg;
    std::optional<UserId> user;
  };
  Result<NewBot> checkNewBot(const AccountId& acc, const boost::json::object& body);
  // The test-connection check of both paths: invokes the config's function with a sample input
  // (within its turn timeout) and plans the response for its first conversation type →
  // {ok, latencyMs, errors:[{code, path, message}], response}.
  boost::json::object runTestConnection(const AccountId& acc, const BotConfig& cfg);
  // Resolves the config's skill names (or ids) to ids and checks the escalation skill; refreshes
  // the skill cache.
  Status resolveSkills(const AccountId& acc, BotConfig& c);
  // Gives the bot user the bot's skills.
  Status syncUser(const AccountId& acc, const UserId& user, const BotConfig& c);

  Deps d_;
};

}  // namespace parley::connector
