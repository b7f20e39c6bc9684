#pragma once

// The engine behind FunctionRuntime: the deployment table, the fair invocation queue, the
// workers (each owning V8 isolates), the watchdog and the I/O pools. No V8 types here.

#include <atomic>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/result.h"
#include "functions/engine/fair_queue.h"
#include "functions/engine/http_client.h"
#include "functions/engine/limits.h"
#include "functions/engine/outbound.h"
#include "functions/host.h"
#include "functions/runtime.h"

namespace parley::functions::engine {

class Worker;

// One deployment (or one test-invoke of code that is not deployed). Immutable; shared by the
// table, queued jobs and the worker contexts compiled from it.
struct Deployment {
  AccountId account;
  FunctionId function;
  std::string key;  // "<account>/<function>": the fair-queue and rate-limit key
  std::string code;
  std::vector<store::EnvVar> env;
  std::int64_t version = 0;
  // Test invoke: context discarded after the invocation, never cached.
  bool ephemeral = false;
};

// An invocation waiting in the queue.
struct Job {
  InvokeRequest request;
  InvokeMode mode = InvokeMode::kProduction;
  std::shared_ptr<const Deployment> deployment;
  std::function<void(InvokeResult)> done;
  SteadyTime start;
  SteadyTime deadline;
};

// The lodash/luxon sources, read once at start. Empty when not installed.
struct JsLibs {
  std::string dir;
  std::unordered_map<std::string, std::string> sources;  // "lodash" -> text
};

// Thread-safe. Owned by FunctionRuntime.
class Engine {
 public:
  // `limits`: the Limits to use; null = a Watchdog (production).
  static Result<std::unique_ptr<Engine>> create(RuntimeOptions options, FunctionHost& host,
                                                const Clock& clock,
                                                std::unique_ptr<Limits> limits = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Status check(std::string_view code);
  Status deploy(const AccountId& account, const FunctionId& id, DeployedCode code);
  void undeploy(const AccountId& account, const FunctionId& id);
  bool isDeployed(const AccountId& account, const FunctionId& id) const;
  void invoke(InvokeRequest request, InvokeMode mode, std::function<void(InvokeResult)> done);
  void invokeCode(const AccountId& account, std::string code, std::vector<store::EnvVar> env,
                  InvokeRequest request, std::function<void(InvokeResult)> done);
  RuntimeStats stats() const;

  // ---- For workers (any thread unless noted) ----
  const RuntimeOptions& options() const { return options_; }
  const Clock& clock() const { return clock_; }
  Limits& limits() { return *limits_; }
  const JsLibs& libs() const { return libs_; }
  // The next job in fair order, if any.
  std::optional<Job> popJob();
  // True while `d` is the deployment in the table for its key.
  bool isCurrent(const Deployment& d) const;
  // Runs a Toolbelt host operation of `job`'s invocation on the host/HTTP threads; `reply` gets
  // the JSON text {"ok":true,"value":..} or {"ok":false,"code":"NOT_FOUND","message":..} on
  // some other thread. Secret writes need job.request.invoker.secret_writes == kAllowed; every
  // secret read and write is recorded through FunctionHost::recordSecretAccess.
  void hostCall(const Job& job, std::string op, std::string args_json,
                std::function<void(std::string)> reply);
  // The parsed RuntimeOptions::outbound_allow.
  const AddressPolicy& addressPolicy() const { return address_policy_; }
  void countFinished(const InvokeResult& r);
  void countRestart() { isolate_restarts_.fetch_add(1, std::memory_order_relaxed); }
  void countInFlight(int delta) { in_flight_.fetch_add(delta, std::memory_order_relaxed); }

 private:
  Engine(RuntimeOptions options, FunctionHost& host, const Clock& clock);
  void wakeWorkers();
  Status prepareOnWorker(std::shared_ptr<const Deployment> d, bool keep);
  void enqueue(Job job);
  void sweepWorkers(const std::string& key, const Deployment* current);
  void doHttp(const Deployment& d, const std::string& args_json, SteadyTime deadline,
              std::function<void(std::string)> reply);

  RuntimeOptions options_;
  FunctionHost& host_;
  const Clock& clock_;
  std::unique_ptr<Limits> limits_;
  JsLibs libs_;
  RateLimiter rate_;
  AddressPolicy address_policy_;

  mutable std::mutex table_mu_;
  std::unordered_map<std::string, std::shared_ptr<const Deployment>> table_;  // GUARDED_BY

  std::mutex queue_mu_;
  FairQueue<Job> queue_;   // GUARDED_BY(queue_mu_)
  bool stopping_ = false;  // GUARDED_BY(queue_mu_)

  std::atomic<std::uint64_t> invocations_{0}, errors_{0}, timeouts_{0}, isolate_restarts_{0};
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::size_t> queued_{0};
  std::atomic<unsigned> next_worker_{0};
  std::atomic<std::size_t> next_wake_{0};

  std::unique_ptr<boost::asio::thread_pool> host_pool_;
  std::unique_ptr<HttpClient> http_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

// "com.liveperson..." result helpers.
InvokeResult errorResult(std::string_view code, std::string message);

}  // namespace parley::functions::engine
