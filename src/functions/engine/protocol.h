#pragma once

// What the server and a function worker say to each other (see wire.h for the framing): the
// deployment and invocation types both sides share and the encoding of each message. Plain C++.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/ids.h"
#include "common/result.h"
#include "functions/engine/limits.h"
#include "functions/engine/wire.h"
#include "functions/runner.h"
#include "functions/runtime.h"

namespace parley::functions::engine {

// One deployment (or one test-invoke of code that is not deployed). Immutable; shared by the
// table, queued jobs and the worker contexts compiled from it.
struct Deployment {
  // Unique per server run; how the two sides name it.
  std::uint64_t id = 0;
  AccountId account;
  FunctionId function;
  std::string key;  // "<account>/<function>": the rate-limit, affinity and quarantine key
  std::string code;
  std::vector<store::EnvVar> env;
  std::int64_t version = 0;
  // Test invoke or check: context discarded after use, never cached.
  bool ephemeral = false;
};

// An invocation as the worker sees it: no InvokeRequest, no callback (those stay in the server).
struct Task {
  std::uint64_t id = 0;  // the server's invocation id
  std::shared_ptr<const Deployment> deployment;
  std::string input_json;
  InvokeMode mode = InvokeMode::kProduction;
  SteadyTime start;
  SteadyTime deadline;
  std::int64_t budget_ms = 0;  // the deadline as the function's limit, for messages
  // The worker is the function's home; false: a detour, run in a guest context (dropped when
  // idle for WorkerConfig::guest_context_idle).
  bool home = true;
};

// What a worker is told once, at start.
struct WorkerConfig {
  std::size_t heap_limit_mb = 128;
  std::size_t max_contexts_per_isolate = 400;
  std::size_t max_timers_per_invocation = 1'000;
  std::chrono::milliseconds deploy_deadline{5'000};
  // CPU time one invocation may use (0 = none).
  std::chrono::milliseconds cpu_limit{5'000};
  // A JS task running this long makes the worker report itself busy.
  std::chrono::milliseconds long_task{20};
  // A guest context (a function's context on a worker that is not its home) no invocation has
  // started in for this long is dropped.
  std::chrono::milliseconds guest_context_idle{5'000};
  // Test-only: whether the worker answers kProbe.
  bool probes = false;
  // "lodash" -> source text.
  std::unordered_map<std::string, std::string> libs;
};

// What the server reads about a worker without asking it: the invocation whose JS runs now (0
// when none), the thread that runs it and whether that JS is being terminated. In a worker
// process it lives in memory shared with the server, which reads it when the worker dies to
// learn which function killed it, and while the JS thread is demoted for a long task.
struct WorkerShared {
  // The running invocation id, or kPrepareBit | prepare request id while top-level code runs.
  std::atomic<std::uint64_t> running{0};
  static constexpr std::uint64_t kPrepareBit = 1ull << 63;
  // The kernel thread id of the thread running the JS (written once when the loop starts). The
  // server lowers that thread's CPU priority during long tasks; it checks that the id names a
  // thread of the worker's own process before it uses it.
  std::atomic<std::int32_t> js_tid{0};
  // 1 once the worker asked V8 to stop the running JS (deadline, CPU limit, near the heap
  // limit); back to 0 when the JS has returned. The server then gives a demoted JS thread its
  // priority back at once: TerminateExecution takes effect only when the thread runs.
  std::atomic<std::uint32_t> terminating{0};
  // Warm contexts the worker holds now (over all its isolates), written after each round of its
  // loop: what RuntimeStats::warm_contexts adds up.
  std::atomic<std::uint32_t> contexts{0};
};

// The exit status of a worker process that ended on a fatal V8 out-of-memory error.
inline constexpr int kExitOutOfMemory = 70;

// A failed InvokeResult with a "com.liveperson..." code.
InvokeResult errorResult(std::string_view code, std::string message);

namespace proto {

std::string init(const WorkerConfig& c);
Result<WorkerConfig> parseInit(std::string_view payload);

// kDeployment. `current`: it is its key's current deployment.
std::string deployment(const Deployment& d, bool current);
Result<std::shared_ptr<Deployment>> parseDeployment(std::string_view payload, bool* current);

// kUnhome: the function `key` has a new home; this worker's context of it is a guest now.
std::string unhome(const std::string& key);

// kDrop: `current` (0 = none) is now the key's deployment.
std::string drop(const std::string& key, std::uint64_t current);
std::string forget(std::uint64_t deployment);
std::string prepare(std::uint64_t request, std::uint64_t deployment, bool keep);

std::string job(const Task& t);  // t.deployment must be set (only its id is sent)
// The job's fields; `deployment_id` names the deployment (Task::deployment left empty).
bool parseJob(std::string_view payload, Task* t, std::uint64_t* deployment_id);

std::string hostCall(std::uint64_t invocation, std::uint64_t call, std::string_view op,
                     std::string_view args_json);
std::string hostReply(std::uint64_t invocation, std::uint64_t call, std::string_view json);

std::string prepared(std::uint64_t request, const Status& s);
Status parsePrepared(std::string_view payload, std::uint64_t* request);

std::string result(std::uint64_t invocation, const InvokeResult& r);
bool parseResult(std::string_view payload, std::uint64_t* invocation, InvokeResult* r);

std::string busy(std::string_view account);
std::string ids(wire::Msg type, const std::vector<std::uint64_t>& ids);
std::vector<std::uint64_t> parseIds(std::string_view payload);

}  // namespace proto
}  // namespace parley::functions::engine
