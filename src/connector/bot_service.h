#pragma once

// The bot connector: bot configurations (REST resource `bots`), and the runtime that makes each
// running bot an agent in the conversation engine and turns every consumer message into a
// function invocation and the function's response into messages and one action (spec §1–§3).
//
// Ownership: main owns the BotService; `store`, `conversations`, `runner` and `clock` must
// outlive it, and stop() (or the destructor) must run before `conversations` is destroyed.
//
// Threading: all methods are thread-safe. Everything the connector does for one conversation —
// deciding a turn, building the function input, applying the response, hooks, escalation,
// timers, the turn record — runs on that conversation's own strand in the engine
// (conversation::conversationStrand): the engine emits the conversation's events and calls the
// completions of its publishes and changes on that strand, and the connector handles them there
// inline. A turn of a function that answers with one message crosses threads once each way: the
// input goes to the function runner, and its result is queued back onto the strand. So one
// queue orders everything done for a conversation (one turn at a time, consumer messages queued
// in order), and a response that arrives after the conversation changed owner (agent took over,
// transfer, close) is discarded and recorded, never sent. Delays are timers on the strand. REST
// calls, ring answers and probes run on the connector's own pool. Strand work never blocks for
// long (the store's reads on it are the cached skill list's misses and a hook list's refresh).

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/api.h"
#include "common/clock.h"
#include "common/result.h"
#include "connector/bot_config.h"
#include "connector/richcontent/richcontent_handler.h"
#include "connector/richcontent/validator.h"
#include "conversation/consumer_profiles.h"
#include "conversation/conversation_service.h"
#include "functions/runner.h"
#include "store/store.h"

namespace boost::asio {
class thread_pool;
}

namespace parley::connector {

struct ConnectorOptions {
  // Threads of the connector's own pool: REST calls, store calls, probes. Turns do not run
  // here: they run on the conversations' strands, on the engine's threads. Default: 2.
  // REQUIRES: >= 1.
  int threads = 2;
  // Turns kept per bot (BotStore::appendTurn). Default: 200.
  int turns_kept = 200;
  // Milliseconds per second of a `delay` entry. Default: 1000. Tests shrink it.
  int ms_per_delay_second = 1000;
  // Longest `delay` honoured, in seconds. Default: 60.
  int max_delay_s = 60;
  // Open conversations a bot may hold (spec §3.3): set on the bot user it creates (routing cap)
  // and enforced by the connector — a conversation the bot gets beyond it (e.g. through a bot
  // user with a higher cap, or a transfer) is error-escalated at once with
  // pipes.conversation-limit-checker.max-conv-limit-reached. Default: 999. REQUIRES: >= 1.
  int max_open_conversations = 999;
  // While a bot is in SERVICE_INTERRUPTION, how often the connector checks whether the platform
  // can run its function again. Default: 60,000 (spec §3.2: once a minute). REQUIRES: >= 1.
  int service_probe_interval_ms = 60'000;
  // Store outages (README "Store outages"): a durable turn's write — a message it publishes,
  // its done mark — that the store refuses as unavailable (ErrorCode::kUnavailable: the
  // database restarting, a lost connection) is tried again after store_retry_first_ms,
  // doubling up to store_retry_max_ms, for up to store_retry_for_ms after its first failure;
  // the conversation's later turns wait behind it. Past that the turn ends as
  // STORE_UNAVAILABLE, still owed, and the conversation's catch-up (which reads the store)
  // runs again every store_retry_max_ms until it can read the store, then answers what is
  // owed. Defaults: 100, 2,000 and 30,000. REQUIRES: each >= 1.
  int store_retry_first_ms = 100;
  int store_retry_max_ms = 2'000;
  int store_retry_for_ms = 30'000;
  // The image allowlist for accounts with none stored (`bots/image-allowlist`). Default: none.
  richcontent::AllowlistProvider image_allowlist;
  // The consumers' profiles as set with `userprofile.SetUserProfile` (JSON text holding
  // `authenticatedData.lp_sdes`), written by the protocol hub; read at every turn of a bot with
  // `engagementAttributes` (authenticatedSdes; lpSdes is rebuilt when it changed). Default:
  // none (authenticatedSdes is `{}`).
  std::shared_ptr<const conversation::ConsumerProfileReader> consumer_profiles;
  // Runs `code` with `env` as a function of the account in a fresh context (not the deployed
  // one), as a test invoke does: the conversation tester and replay run any version of a bot's
  // function through it. `done` is called once, on any thread. Default: none (the tester and
  // replay answer 503 UNAVAILABLE).
  std::function<void(const AccountId&, std::string code, std::vector<store::EnvVar> env,
                     functions::InvokeRequest, std::function<void(functions::InvokeResult)> done)>
      invoke_code;
  // Called after a request changed what other nodes of a cluster keep in memory: kind "bot"
  // (id: the bot; update, delete, start, stop) or "image-allowlist" (id ""; PUT, DELETE), on
  // the connector's pool. The composition root publishes it (bus/invalidations.h) and the other
  // nodes call applyRemoteChange(). Must not block. Default: none.
  std::function<void(const AccountId&, std::string_view kind, const std::string& id)> on_change;
  // Where a stopped (or deleted) bot's open conversations are handed on (transferred to its
  // escalation skill or back to their queue). In a cluster the composition root gives the
  // forwarder (src/app/conversation_forwarder.h): each conversation, held by whichever node, is
  // changed by its owner, so `POST bots/{id}/stop` on one node hands on the bot's conversations
  // on every node. Must outlive the service. Default: none (the engine given to the
  // constructor, which changes only the conversations this node holds).
  conversation::ConversationService* hand_off_through = nullptr;
};

class BotService final : public api::Handler, public conversation::ConversationListener {
 public:
  BotService(store::Store& store, conversation::ConversationService& conversations,
             functions::Runner& runner, richcontent::Validator validator, const Clock& clock,
             ConnectorOptions options = {});
  // Stops (see stop()).
  ~BotService() override;

  // Subscribes to the engine and resumes every stored bot whose status is not OFFLINE: its user
  // goes ONLINE, and open conversations assigned to it resume (unanswered consumer messages are
  // answered; pending turns are cleared). Blocking. Call once, after
  // ConversationService::recover() and before serving.
  Status start();
  // The drain of a graceful shutdown: no new turn starts from now on; waits until the running
  // turns have finished or `deadline` has passed, then interrupts those still running (each
  // stops at its next step without publishing more and stays pending: it runs again at the next
  // start, publishing only the effects it had not stored). Consumer messages that arrive
  // meanwhile stay pending too. Returns how many turns were still running at the deadline.
  // Blocking; call before stop(), while the engine and the sockets are still up.
  int drain(std::chrono::milliseconds deadline);
  // Unsubscribes, cancels timers, and waits for work in flight (a turn still running is
  // interrupted as in drain()). Idempotent.
  void stop();

  // api::Handler: resource "bots".
  std::vector<std::string> resources() const override { return {"bots"}; }
  void handle(api::Request request, std::function<void(api::Response)> done) override;

  // Synchronous forms of the REST calls (blocking; used by handle() on the service's threads,
  // and by tests). Bodies and results are the REST JSON.
  Result<boost::json::object> createBot(const AccountId& acc, const boost::json::object& body);
  Result<boost::json::object> updateBot(const AccountId& acc, const BotId& id,
                                        const boost::json::object& body);
  Status deleteBot(const AccountId& acc, const BotId& id);
  Result<boost::json::object> getBot(const AccountId& acc, const BotId& id);
  Result<boost::json::array> listBots(const AccountId& acc);
  Result<boost::json::object> startBot(const AccountId& acc, const BotId& id);
  Result<boost::json::object> stopBot(const AccountId& acc, const BotId& id);
  // Invokes the function with a sample payload and lists every problem of its response.
  Result<boost::json::object> testConnection(const AccountId& acc, const BotId& id);
  // The same check for a bot that is not saved: `body` is a create body (POST bots), checked as
  // createBot checks it (Invalid naming the field); nothing is stored.
  Result<boost::json::object> testConnectionUnsaved(const AccountId& acc,
                                                    const boost::json::object& body);
  Result<boost::json::array> listTurns(const AccountId& acc, const BotId& id, int limit);
  // The account's rich-content image allowlist (REST `bots/image-allowlist`; spec §2.6):
  // GET → {configured, entries}; PUT {entries:[host | https:// URL prefix]} [Admin] replaces it
  // (stored, used at once); DELETE [Admin] → none configured (NotFound if none).
  Result<boost::json::object> getImageAllowlist(const AccountId& acc);
  Result<boost::json::object> putImageAllowlist(const AccountId& acc,
                                                const boost::json::object& body);
  Status deleteImageAllowlist(const AccountId& acc);
  // The allowlist turns validate against: the stored one, else ConnectorOptions::image_allowlist,
  // else nullopt (HTTPS only). In memory (no store call): safe on io threads, e.g. as the
  // richcontent/validate handler's provider.
  std::optional<std::vector<std::string>> imageAllowlist(const AccountId& acc) const;

  // Applies a change another node of a cluster made (ConnectorOptions::on_change there), on the
  // connector's pool (returns at once): "bot" — the bot's stored record is applied (started,
  // stopped, its config and its user's skills re-read; a deleted or stopped bot leaves routing
  // here without a hand-off, which its node did); "image-allowlist" — the account's list is
  // read again; "skills" — the account's cached skill list is dropped; "function" — the
  // account's cached hook functions are dropped. Other kinds are ignored. `done` (may be empty)
  // is called on the pool afterwards.
  void applyRemoteChange(const AccountId& acc, std::string_view kind, const std::string& id,
                         std::function<void(Status)> done = {});

  // Prometheus text for /metrics (parley_bot_* families).
  std::string prometheusText() const;

  // Blocks until no turn is running or queued, no timer is pending and every turn record handed
  // to BotStore::appendTurnAsync has been committed (or has failed), so `bots/{id}/turns` shows
  // every finished turn afterwards (tests). False after `timeout_ms`.
  bool waitIdleForTest(int timeout_ms = 5000);
  // How many times the connector read an account's skill list from the store (tests: turns use
  // the cache).
  std::uint64_t skillListReadsForTest() const;
  // Tasks queued onto a conversation's strand from another thread (a function's result, a
  // completion that came from a pool thread), since the start (tests: a turn's hand-offs).
  std::uint64_t strandHandOffsForTest() const;
  // Whether the connector's work for `id` runs on the engine's strand of that conversation
  // (conversation::conversationStrand); false when the connector does not track it.
  bool onEngineStrandForTest(const ConversationId& id) const;

  // conversation::ConversationListener
  void onConversationChanged(const conversation::ConversationChanged& e) override;
  void onMessageAdded(const conversation::MessageAdded& e) override;
  void onMessageAddedShared(const std::shared_ptr<const conversation::MessageAdded>& e) override;
  void onRingOffered(const conversation::RingOffered& e) override;
  // Cluster mode: a conversation taken from a dead node resumes where the store says (the
  // catch-up of a conversation the bot holds); one whose lease was lost stops (no more turns).
  void onOwnershipChanged(const conversation::OwnershipChanged& e) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace parley::connector
