#pragma once

// The functions platform service: the REST resources `functions` (incl. `functions/templates`),
// `secrets` (incl. `secrets/audit`) and `allowlist` (the root README's API section), the function
// lifecycle (Draft -> Productive -> Modified, Build Error, versions, the last 5 deployments,
// restore), test invocations, stored production logs and invocation metrics. It deploys into the
// FunctionRuntime and offers the connector a recording Runner.
//
// Ownership: main owns it; `store`, `runtime` and `clock` must outlive it. Construction order in
// main: store -> PlatformHost (the FunctionHost) -> FunctionRuntime(host) -> FunctionService.
//
// Threading: thread-safe. handle() never blocks: it queues the request on the service's own
// executor (Options::threads threads), which does the store and deploy work and calls `done`
// (or the runtime calls it from a functions worker thread for invocations). Writes to one
// function are serialised by a striped lock. The destructor stops taking requests (later ones
// get 503), finishes queued work and waits for invocations in flight.

#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/api.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "functions/runner.h"
#include "functions/runtime.h"
#include "functions/service/executor.h"
#include "functions/service/metrics.h"
#include "store/store.h"

namespace parley::functions::service {

struct FunctionServiceOptions {
  // Executor threads for store and deploy work. Default: 2. REQUIRES: >= 1.
  std::size_t threads = 2;
  // Deployments kept (and restorable) per function. Default: 5 (LivePerson keeps 5).
  int keep_deployments = 5;
  // Wall-clock budget of a test invocation (POST /functions/{uuid}/invoke). Default: 30 s.
  std::chrono::milliseconds test_deadline{30'000};
  // Page size of GET /functions/{uuid}/logs when ?limit= is absent, and its maximum.
  int default_log_limit = 100;
  int max_log_limit = 1000;
  // What the bot connector would do with a test invocation's result, for functions whose result
  // answers a bot turn (Custom Integration, post-hook): called with the account, the function's
  // event id, the channel asked for (MESSAGING or CHAT) and the result JSON; returns the review
  // the test invoke shows as `connector` (nullopt: none). Unset: no review (the composition root
  // wires the connector's reviewResponse; the function platform does not depend on it).
  std::function<std::optional<boost::json::object>(const AccountId&, const std::string& event_id,
                                                   store::Channel, std::string_view result_json)>
      review_result;
  // Called after a request changed what runs for a function (a deploy that went live, an
  // undeploy, a delete), on the service's executor, with the function's account and uuid: the
  // composition root tells the other nodes of a cluster (bus/invalidations.h), which call
  // refreshFunction(). Must not block. Unset: nobody is told.
  std::function<void(const AccountId&, const FunctionId&)> on_change;
};

class FunctionService final : public api::Handler {
 public:
  FunctionService(store::Store& store, crypto::SecretBox secret_box, FunctionRuntime& runtime,
                  const Clock& clock, FunctionServiceOptions options = {});
  ~FunctionService() override;
  FunctionService(const FunctionService&) = delete;
  FunctionService& operator=(const FunctionService&) = delete;

  // api::Handler
  // {"functions", "secrets", "allowlist"}; `functions/templates` is served under "functions".
  std::vector<std::string> resources() const override;
  void handle(api::Request request, std::function<void(api::Response)> done) override;

  // Re-deploys into the runtime every function that was live before a restart: Productive and
  // Modified ones from their newest Productive deployment, Build Error ones from the deployment
  // that stayed live when the failed deploy happened. A deployment that no longer builds marks
  // the function "Deploy Error" and is skipped. Blocking; call once at startup before serving.
  // Returns how many functions were deployed.
  Result<int> restoreDeployments();

  // Makes the runtime run what the store says for one function, after another node changed it:
  // its live deployment (as restoreDeployments() chooses it) is deployed, or the function is
  // undeployed when it has none, is a Draft or no longer exists. Queued on the service's
  // executor (returns at once); `done` (may be empty) is called there afterwards.
  void refreshFunction(const AccountId& account, const FunctionId& id,
                       std::function<void(Status)> done = {});

  // The Runner the connector must use for production invocations: it forwards to the runtime,
  // stores the Info/Warn/Error logs of every invocation (plus an Error entry for a failed one)
  // and records metrics. Valid as long as the service lives.
  Runner& runner();

  // Prometheus text of per-function invocation metrics and runtime gauges, for GET /metrics.
  std::string prometheusText() const;
  const FunctionMetrics& metrics() const { return metrics_; }

  // Blocks until queued service work (e.g. storing production logs) is done.
  void waitIdleForTest();

 private:
  class RecordingRunner;

  void route(const api::Request& req, std::function<void(api::Response)> done);
  // Serialises read-modify-write sequences on one function's stored rows (16 stripes; the lock
  // guards store rows, not members).
  Mutex& lockFor(const FunctionId& id);
  // Registers an asynchronous callback that touches the service; the destructor waits for it.
  void beginAsync() PARLEY_EXCLUDES(async_mu_);
  void endAsync() PARLEY_EXCLUDES(async_mu_);

  // Handlers; each returns the response or calls `done` later (invoke).
  api::Response listFunctions(const api::Request& req);
  api::Response createFunction(const api::Request& req);
  api::Response getFunction(const api::Request& req, const FunctionId& id);
  api::Response updateFunction(const api::Request& req, const FunctionId& id);
  api::Response deleteFunction(const api::Request& req, const FunctionId& id);
  api::Response deployFunction(const api::Request& req, const FunctionId& id);
  api::Response undeployFunction(const api::Request& req, const FunctionId& id);
  void invokeFunction(const api::Request& req, const FunctionId& id,
                      std::function<void(api::Response)> done);
  api::Response listLogs(const api::Request& req, const FunctionId& id);
  api::Response listDeployments(const api::Request& req, const FunctionId& id);
  api::Response restoreDeployment(const api::Request& req, const FunctionId& id,
                                  const std::string& deployment_uuid);
  api::Response getTemplates(const api::Request& req);
  api::Response handleSecrets(const api::Request& req);
  api::Response secretAudit(const api::Request& req);
  api::Response handleAllowlist(const api::Request& req);

  // The deployment that should run for `f` (from `ds`, newest first), or nullptr.
  static const store::Deployment* liveDeployment(const store::FunctionRecord& f,
                                                 const std::vector<store::Deployment>& ds);
  Status refreshNow(const AccountId& account, const FunctionId& id);
  void changed(const AccountId& account, const FunctionId& id) const {
    if (options_.on_change) options_.on_change(account, id);
  }

  // The function's JSON as the REST API returns it.
  std::string functionJson(const store::FunctionRecord& f, bool with_details);

  store::Store& store_;
  store::FunctionStore& functions_;
  const crypto::SecretBox box_;
  FunctionRuntime& runtime_;
  const Clock& clock_;
  const FunctionServiceOptions options_;
  FunctionMetrics metrics_;
  std::unique_ptr<RecordingRunner> runner_;

  std::array<Mutex, 16> function_locks_;
  std::atomic<bool> stopping_{false};
  Mutex async_mu_;
  std::condition_variable async_cv_;  // with async_mu_: async_pending_ reached 0
  int async_pending_ PARLEY_GUARDED_BY(async_mu_) = 0;

  // Last member: destroyed (drained and joined) first.
  std::unique_ptr<Executor> executor_;
};

}  // namespace parley::functions::service
