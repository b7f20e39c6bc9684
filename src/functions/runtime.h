#pragma once

// The function runtime: runs JavaScript `function lambda(input, callback)` code in V8 isolates.
// The platform service (service/) deploys code into it; the connector invokes it through Runner.
// V8 types never appear here (see engine/).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/result.h"
#include "functions/engine/outbound.h"
#include "functions/host.h"
#include "functions/runner.h"
#include "store/store.h"

namespace parley::functions {

namespace engine {
class Engine;
}

struct RuntimeOptions {
  // Worker threads; each owns one active V8 isolate. Default: 2. REQUIRES: >= 1.
  int threads = 2;
  // Heap cap per isolate (shared by the functions whose contexts live in it). Default: 128.
  std::size_t heap_limit_mb = 128;
  // Deadline used when a request carries none (<= 0). Default: 30 s (the platform limit).
  std::chrono::milliseconds default_deadline{30'000};
  // Deadline for running a function's top-level code at deploy/check time. Default: 5 s.
  std::chrono::milliseconds deploy_deadline{5'000};
  // Directory holding lodash/lodash.js and luxon/build/cjs-browser/luxon.js (a node_modules
  // folder). Default: "" = the copies compiled into the binary (functions/engine/js_libs.h).
  std::string js_lib_dir;
  // Outbound Toolbelt HTTP requests per second per function; more get HTTP 429. Default: 20.
  int http_rate_per_s = 20;
  // Threads for outbound HTTP (Beast). Default: 2.
  int http_threads = 2;
  // Threads for FunctionHost calls (secrets, context service, conversations). Default: 2.
  int host_threads = 2;
  // Internal address ranges outbound HTTP may reach (`parley serve --outbound-allow`): named
  // ranges "loopback", "private", "link-local", "cgnat", "metadata", or CIDR blocks such as
  // "10.1.0.0/16". Default: none (public addresses only). See engine/outbound.h AddressPolicy.
  std::vector<std::string> outbound_allow;
  // Largest outbound HTTP request and response body. Default: 10 MiB.
  std::size_t http_max_body_bytes = 10 * 1024 * 1024;
  // Invocations queued but not started, over all functions; more are rejected at once with
  // com.liveperson.faas.es.unavailable. Default: 10,000.
  std::size_t max_queued = 10'000;
  // Invocations queued for one function; more are rejected. Default: 1,000.
  std::size_t max_queued_per_function = 1'000;
  // Invocations in flight (started, waiting on timers/HTTP) per worker. Default: 1,000.
  std::size_t max_in_flight_per_worker = 1'000;
  // Timers pending per invocation; setTimeout beyond it throws. Default: 1,000.
  std::size_t max_timers_per_invocation = 1'000;
  // Contexts (deployed functions) per isolate; a worker opens another isolate beyond it so one
  // heap cap never has to hold every deployed function. Default: 400.
  std::size_t max_contexts_per_isolate = 400;
};

// Code and configuration of one deployment.
struct DeployedCode {
  std::string code;
  // Becomes process.env (plus the reserved BRAND_ID and LAMBDA_UUID).
  std::vector<store::EnvVar> env;
  std::int64_t version = 0;
};

// Whether Debug log entries are kept: only for test/debug invocations (§4.5).
enum class InvokeMode { kProduction, kTest };

struct RuntimeStats {
  std::size_t deployed = 0;
  std::uint64_t invocations = 0;  // finished invocations (ok or not)
  std::uint64_t errors = 0;       // finished with an error code (incl. timeouts)
  std::uint64_t timeouts = 0;     // executiontime-exceeded
  std::uint64_t isolate_restarts = 0;
  std::size_t queue_depth = 0;  // queued, not started
  std::size_t in_flight = 0;    // started, not finished
};

// Runs deployed functions on worker threads owning V8 isolates, with a fair queue across
// functions, a deadline per invocation (one watchdog thread), a heap cap per isolate and a
// Toolbelt whose I/O runs on small thread pools. Thread-safe. Owned by main; `host` and `clock`
// must outlive it. Destruction fails queued invocations with es.unavailable and joins threads.
class FunctionRuntime final : public Runner {
 public:
  // Starts the V8 platform (once per process; later runtimes share it), workers and pools.
  static Result<std::unique_ptr<FunctionRuntime>> create(RuntimeOptions options, FunctionHost& host,
                                                         const Clock& clock);
  ~FunctionRuntime() override;
  FunctionRuntime(const FunctionRuntime&) = delete;
  FunctionRuntime& operator=(const FunctionRuntime&) = delete;

  // Checks that `code` is a valid function: at most 100,000 characters, compiles, its top-level
  // code runs within the deploy deadline and it defines a top-level `lambda` function. Runs the
  // top level in a throw-away context. Invalid/ScriptError with line numbers otherwise.
  // Blocks until a worker has checked it; do not call from a functions worker thread.
  Status checkCode(std::string_view code);

  // Compiles and runs `code` into a warm context and makes it the deployment of (account, id),
  // replacing an existing one atomically: invocations already queued or running finish on the
  // old one, later ones use the new one. Other workers compile it lazily on first use.
  // Same errors as checkCode. Blocks; do not call from a functions worker thread.
  Status deploy(const AccountId& account, const FunctionId& id, DeployedCode code);
  // Removes the deployment; queued/running invocations finish. No-op when not deployed.
  void undeploy(const AccountId& account, const FunctionId& id);
  bool isDeployed(const AccountId& account, const FunctionId& id) const;

  // Runner. Production mode (Debug logs dropped). Fails with com.liveperson.faas.es.notdeployed
  // (inline) when the function is not deployed.
  void invoke(InvokeRequest request, std::function<void(InvokeResult)> done) override;
  // Like invoke, choosing whether Debug logs are kept (test invocations of deployed code).
  void invoke(InvokeRequest request, InvokeMode mode, std::function<void(InvokeResult)> done);
  // Test-invokes code that is not deployed, in a fresh context that is discarded afterwards
  // (console test invoke, `parley function invoke --local`). Debug logs are kept.
  // `request.function` may be empty (then it is a random id; LAMBDA_UUID shows it).
  // Syntax and top-level errors come back as the InvokeResult error.
  void invokeCode(const AccountId& account, std::string code, std::vector<store::EnvVar> env,
                  InvokeRequest request, std::function<void(InvokeResult)> done);

  RuntimeStats stats() const;
  // The address ranges outbound HTTP may reach (RuntimeOptions::outbound_allow, parsed); the
  // functions service refuses allowlist entries outside it.
  const engine::AddressPolicy& addressPolicy() const;

 private:
  explicit FunctionRuntime(std::unique_ptr<engine::Engine> engine);
  std::unique_ptr<engine::Engine> engine_;
};

// LivePerson error codes produced by the runtime.
inline constexpr std::string_view kErrNotDeployed = "com.liveperson.faas.es.notdeployed";
inline constexpr std::string_view kErrUnavailable = "com.liveperson.faas.es.unavailable";
inline constexpr std::string_view kErrBadInput = "com.liveperson.faas.es.badinput";
inline constexpr std::string_view kErrCustomFailure = "com.liveperson.faas.handler.custom-failure";
inline constexpr std::string_view kErrRuntimeException =
    "com.liveperson.faas.handler.runtime-exception";
inline constexpr std::string_view kErrTimeExceeded =
    "com.liveperson.faas.handler.executiontime-exceeded";
inline constexpr std::string_view kErrLogLimit = "com.liveperson.faas.handler.log-limit-reached";

}  // namespace parley::functions
