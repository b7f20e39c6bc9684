#pragma once

// The function runtime: runs JavaScript `function lambda(input, callback)` code in V8 isolates.
// The platform service (service/) deploys code into it; the connector invokes it through Runner.
// V8 types never appear here (see engine/).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/limit_peers.h"
#include "common/result.h"
#include "functions/engine/outbound.h"
#include "functions/host.h"
#include "functions/runner.h"
#include "store/store.h"

namespace boost::asio {
class io_context;
}

namespace parley::functions {

namespace engine {
class Engine;
}

// Where the isolates run.
enum class WorkerIsolation {
  // Worker threads inside the calling process: no seccomp filter, no resource limits, and a
  // fatal V8 error (or any crash) ends the whole process. For unit tests and
  // `parley function invoke --local`.
  kInProcess,
  // Worker processes started from `worker_executable` (the hidden subcommand
  // kWorkerSubcommand): seccomp filter, address-space and core limits, no inherited
  // descriptors; a worker that dies fails only its own invocations and is restarted.
  kProcess,
};

struct RuntimeOptions {
  // Where the isolates run. Default: in-process (the server sets kProcess).
  WorkerIsolation isolation = WorkerIsolation::kInProcess;
  // The executable started for kProcess workers with kWorkerSubcommand as its first argument;
  // it must call runFunctionWorkerIfAsked() first thing in main. Default: this executable.
  std::string worker_executable = "/proc/self/exe";
  // Workers kept running (each one thread with its own isolates, one or more per account).
  // Default: 2. REQUIRES: >= 1.
  int threads = 2;
  // Shared workers at most, counting those started while others are busy with long JS tasks
  // (a runaway loop gets its own worker; the OS shares the cores). Default: 6.
  // REQUIRES: >= threads.
  int max_workers = 6;
  // Workers for quarantined functions (a function whose invocations killed their worker
  // `quarantine_after_crashes` times within `quarantine_window` runs only there until it is
  // redeployed). Default: 2.
  int max_quarantine_workers = 2;
  int quarantine_after_crashes = 2;
  std::chrono::milliseconds quarantine_window{60'000};
  // Invocations of one account started and not finished, over all workers; more wait in the
  // queue. Default: 200.
  std::size_t max_in_flight_per_account = 200;
  // Workers one account may hold busy with long JS tasks at once; its further invocations wait
  // until one is free. Default: 1.
  std::size_t max_busy_workers_per_account = 1;
  // CPU time one invocation's JavaScript may use (thread CPU clock, over all its turns); it is
  // terminated beyond (executiontime-exceeded). 0 = no CPU limit. Default: 5 s.
  std::chrono::milliseconds cpu_limit{5'000};
  // A JS task running this long marks its worker busy: the worker hands back the jobs it has
  // not started and gets no more until the task ends. Default: 20 ms.
  std::chrono::milliseconds long_task{20};
  // While a worker runs a long task, its JS thread is demoted: to SCHED_IDLE where this process
  // may take a thread out of that class again (CAP_SYS_NICE or a large enough RLIMIT_NICE), so
  // any normal thread that wakes on its core preempts it at once; else to nice 19 (CFS weight
  // 15 against 1024: it keeps a minimum share). Its priority comes back when the task ends,
  // and it leaves SCHED_IDLE (see `terminate_nice`) when its JS is being terminated (CPU limit,
  // near the heap limit, the Watchdog) and 5 ms before its deadline, so termination is prompt.
  // Where the OS refuses to raise it again (an unprivileged process may lower its threads' priority
  // but not raise it), the worker takes no new jobs once the task ends, is stopped when its
  // invocations in flight end, and a fresh one replaces it. Default: true.
  bool demote_long_tasks = true;
  // A demoted long task that is being terminated, or is 5 ms from its deadline, leaves
  // SCHED_IDLE for SCHED_OTHER at this nice value (never above the nice it had) until it ends:
  // enough CPU for the termination to take effect on busy cores, while any normal thread that
  // wakes on its core still preempts it. 0 gives it its normal priority back at once. Default:
  // 19.
  int terminate_nice = 19;
  // Duty cycle of a long task beside other accounts' work (worker processes only): while an
  // invocation of another account was started within the last `duty_period`, a worker whose JS
  // runs a long task (past `long_task`) is stopped (SIGSTOP, the whole process) for all but
  // `duty_run` of each `duty_period` and continued (SIGCONT) for `duty_run`. A stopped loop
  // preempts no server thread; its CPU limit counts its own thread's CPU time, so stopped time is
  // not charged, but its wall deadline stays (it runs again 5 ms before it, and once its JS is
  // being terminated). It is continued when its task ends, when no other account has started an
  // invocation for `duty_period`, and when the runtime stops. `duty_period` from 10 ms to 10 s,
  // `duty_run` from 1 ms to `duty_period` (equal: never stopped). Default: on, 100 ms, 10 ms.
  bool duty_cycle_long_tasks = true;
  std::chrono::milliseconds duty_period{100};
  std::chrono::milliseconds duty_run{10};
  // An account whose long tasks ran at least `heavy_after` of wall time, decayed with a half-life
  // of `heavy_half_life`, or that runs a long task now, is heavy: each of its invocations starts
  // on a worker held for it alone (no other account's job is sent there until its first JS task
  // ends), with that worker's JS thread already demoted when `demote_long_tasks` is on. Default:
  // 100 ms, 2 s.
  std::chrono::milliseconds heavy_after{100};
  std::chrono::milliseconds heavy_half_life{2'000};
  // Worker affinity: each function has a home worker that keeps its warm context (see
  // engine/scheduler.h). A home busy with one long task for `rehome_after` loses its functions
  // to the workers their next invocations go to. An invocation that fairness sends to another
  // worker runs there in a guest context, which that worker drops once no invocation has
  // started in it for `guest_context_idle` (so a function does not stay compiled on every
  // worker). Default: 1 s, 5 s.
  std::chrono::milliseconds rehome_after{1'000};
  std::chrono::milliseconds guest_context_idle{5'000};
  // An extra shared worker (beyond `threads`) idle this long is stopped, unless it is the one
  // free worker kept while the others are busy. Default: 10 s.
  std::chrono::milliseconds extra_worker_idle{10'000};
  // Address-space limit (RLIMIT_AS) of a worker process, in MiB; 0 = none. Default: 16 GiB
  // (V8 reserves large virtual ranges per isolate; resident memory is bounded by the heap
  // caps). Not applied in sanitizer builds.
  std::size_t worker_address_space_mb = 16 * 1024;
  // Test-only: workers answer Engine::probeWorkerForTest. Default: false.
  bool probes_for_test = false;
  // Heap cap per isolate (shared by the functions whose contexts live in it). Default: 128.
  std::size_t heap_limit_mb = 128;
  // Deadline used when a request carries none (<= 0). Default: 30 s (the platform limit).
  std::chrono::milliseconds default_deadline{30'000};
  // Deadline for running a function's top-level code at deploy/check time. Default: 5 s.
  std::chrono::milliseconds deploy_deadline{5'000};
  // Directory holding lodash/lodash.js and luxon/build/cjs-browser/luxon.js (a node_modules
  // folder); functions then have only those two libraries (not oauth-1.0a or jsonwebtoken).
  // Default: "" = every library compiled into the binary (functions/engine/js_libs.h).
  std::string js_lib_dir;
  // Outbound Toolbelt HTTP requests per second per function; more get HTTP 429. Default: 20.
  int http_rate_per_s = 20;
  // The other nodes of a cluster: the HTTP rate limit above holds per function across them
  // (common/limit_peers.h, limit name "function-http"). Default: none (one node).
  std::shared_ptr<LimitPeers> limit_peers;
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
  std::size_t queue_depth = 0;        // queued, not started
  std::size_t in_flight = 0;          // started, not finished
  std::size_t workers = 0;            // live workers (shared + quarantine)
  std::size_t busy_workers = 0;       // running a long JS task
  std::uint64_t worker_restarts = 0;  // workers started after one died
  std::uint64_t worker_crashes = 0;   // workers that died (signal, abort, fatal OOM)
  std::uint64_t extra_workers = 0;    // workers started while others were busy
  std::uint64_t quarantines = 0;      // functions put in quarantine
  std::size_t quarantined = 0;        // functions in quarantine now
  std::uint64_t jobs_returned = 0;    // jobs a busy worker handed back
  std::uint64_t demotions = 0;        // long tasks whose JS thread went to SCHED_IDLE / nice 19
  // demoted long tasks lifted out of SCHED_IDLE (RuntimeOptions::terminate_nice) at their
  // deadline or when being terminated
  std::uint64_t demotions_restored_early = 0;
  // lifted ones still running 100 ms later, given their normal priority back
  std::uint64_t demotions_restored_after_lift = 0;
  std::uint64_t demoted_retired = 0;  // demoted workers stopped (priority could not be restored)
  std::uint64_t demoted_starts = 0;   // invocations of heavy accounts started demoted
  // times a worker running a long task was stopped (SIGSTOP) beside another account's work
  std::uint64_t long_task_stops = 0;
  std::size_t warm_contexts = 0;       // contexts held by the live workers (one per function each)
  std::uint64_t guest_dispatches = 0;  // invocations sent to a worker other than their home
  double cpu_ms = 0;                   // CPU time used by finished invocations
};

// Runs deployed functions in workers (sandboxed processes, or threads in-process) owning V8
// isolates, with a fair scheduler across accounts, a wall deadline and a CPU limit per
// invocation, a heap cap per isolate and a Toolbelt whose I/O runs in this process on small
// thread pools. Thread-safe. Owned by main; `host` and `clock` must outlive it. Destruction
// fails queued invocations with es.unavailable, stops the workers and joins threads.
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
  // Prometheus text of the sandbox's own figures (workers, restarts, quarantines, CPU).
  std::string prometheusText() const;

  // Reads the worker channels on `contexts` (the server's io threads: a result is read and its
  // `done` called there, with no wake-up of an I/O thread of the runtime's), until
  // readChannelsOnOwnThreads(), which must be called before the contexts stop running (it
  // returns once none is used). Each context must be run by exactly one thread. See
  // engine::Engine::readChannelsOn.
  void readChannelsOn(std::vector<boost::asio::io_context*> contexts);
  void readChannelsOnOwnThreads();

  // The engine, for tests of its internals (worker pids, probes).
  engine::Engine& engineForTest() { return *engine_; }

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
// The worker process running the invocation died (a signal, a fatal V8 error): a platform
// failure, like es.unavailable; the invocation may be retried.
inline constexpr std::string_view kErrWorkerCrashed = "com.liveperson.faas.es.worker-crashed";

// The hidden subcommand that runs a function worker process: `<exe> __function-worker ...`.
inline constexpr std::string_view kWorkerSubcommand = "__function-worker";
// Runs a function worker process when argv[1] is kWorkerSubcommand and returns its exit code;
// otherwise returns nullopt at once. Every executable that uses WorkerIsolation::kProcess with
// itself as worker_executable calls it first thing in main.
std::optional<int> runFunctionWorkerIfAsked(int argc, char** argv);

}  // namespace parley::functions
