#pragma once

// The server side of the function runtime: the deployment table, the invocations (their
// requests and callbacks never leave this process), the fair scheduler, the workers (worker
// processes, or threads in in-process mode) and their supervision, and the host calls
// (secrets, context service, conversations, outbound HTTP) that workers ask for. No V8 here.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "functions/engine/http_client.h"
#include "functions/engine/limits.h"
#include "functions/engine/outbound.h"
#include "functions/engine/protocol.h"
#include "functions/engine/scheduler.h"
#include "functions/host.h"
#include "functions/runtime.h"

namespace parley::functions::engine {

struct WorkerHandle;

// An invocation as the server keeps it, keyed by its id: the request and the callback stay
// here; the worker gets a Task.
struct Job {
  std::uint64_t id = 0;
  InvokeRequest request;
  InvokeMode mode = InvokeMode::kProduction;
  std::shared_ptr<const Deployment> deployment;
  std::function<void(InvokeResult)> done;
  SteadyTime start;
  SteadyTime deadline;
  int worker = -1;  // the worker running it; -1 while queued
  // Dispatched and its first JS task not known to have ended (it holds its worker).
  bool fresh = false;
  // Its worker's JS thread was demoted when it was dispatched (a heavy account's job).
  bool demoted_start = false;
};

// The lodash/luxon sources, read once at start and sent to every worker. Empty when not
// installed.
struct JsLibs {
  std::string dir;
  std::unordered_map<std::string, std::string> sources;  // "lodash" -> text
};

// Thread-safe. Owned by FunctionRuntime.
class Engine {
 public:
  // `limits`: in-process mode only, the Limits every worker thread uses (tests fake them);
  // null = a Watchdog per worker.
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
  std::string prometheusText() const;

  // The parsed RuntimeOptions::outbound_allow.
  const AddressPolicy& addressPolicy() const { return address_policy_; }

  // Where the worker channels are read. By default each worker has an I/O thread of its own.
  // readChannelsOn(contexts): from now on every worker's channel is read on one of `contexts`
  // (dealt out by worker id), so a result is read, and `done` called, by a thread that is
  // already running (a server io thread) instead of a wake-up of the worker's I/O thread;
  // returns once every live worker's channel is read there. Each context must be run by one thread,
  // and must keep running until readChannelsOnOwnThreads() has returned.
  // readChannelsOnOwnThreads(): back to an I/O thread per worker; returns once no channel is read
  // on a context any more. Workers keep running across both (nothing is lost or read twice). Not on
  // one of the contexts' threads.
  void readChannelsOn(std::vector<boost::asio::io_context*> contexts);
  void readChannelsOnOwnThreads();

  // ---- Test hooks ----
  // Process ids of the live, ready worker processes of `kind` (empty in in-process mode).
  std::vector<int> workerPidsForTest(
      Scheduler::WorkerKind kind = Scheduler::WorkerKind::kShared) const;
  // The pid of the worker running invocation `request_id`, or 0.
  int workerPidOfRequestForTest(const std::string& request_id) const;
  // Asks a live shared worker to try `what` inside its sandbox (RuntimeOptions::probes must be
  // on): "open", "openat", "socket", "connect", "execve", "fork", "ptrace", "rlimits", "fds",
  // "nnp", "seccomp", "abort". Returns the worker's answer; Unavailable when it died doing it.
  Result<std::string> probeWorkerForTest(const std::string& what);
  // In-process mode: sets WorkerShared::terminating of every worker, as a worker does when it
  // asks V8 to stop its JS (the JS itself goes on).
  void markTerminatingForTest();
  // Whether long tasks are demoted to SCHED_IDLE (else nice 19).
  bool demotesToIdleClassForTest() const { return demote_to_idle_class_.load(); }
  // Makes restoring a demoted worker's priority fail as it does for an unprivileged server, and
  // demotes to nice 19 as such a server does (false: back to what the engine found at start).
  // How long a lifted long task runs at RuntimeOptions::terminate_nice before it gets its
  // normal priority back (100 ms).
  void setLiftedGraceForTest(std::chrono::milliseconds grace) {
    lifted_grace_ms_.store(grace.count());
  }
  void refuseRestoreForTest(bool refuse) {
    refuse_restore_for_test_.store(refuse);
    demote_to_idle_class_.store(!refuse && idle_class_allowed_);
  }
  // Waits until `n` shared workers are ready (or the timeout passes).
  bool waitForWorkersForTest(std::size_t n, std::chrono::milliseconds timeout);
  // Worker processes of `kind` the engine holds: starting, ready, or told to stop and not yet
  // exited.
  std::size_t workerCountForTest(Scheduler::WorkerKind kind = Scheduler::WorkerKind::kShared) const;
  // How many times the supervisor thread went through its loop (woken or timed out).
  std::uint64_t supervisorPassesForTest() const { return supervisor_passes_.load(); }

 private:
  Engine(RuntimeOptions options, FunctionHost& host, const Clock& clock);

  // Worker life (supervisor thread).
  void supervise();
  Result<std::shared_ptr<WorkerHandle>> spawn(Scheduler::WorkerKind kind);
  void ioLoop(std::shared_ptr<WorkerHandle> w);
  // Reading `w`'s channel on an io_context (readChannelsOn).
  void startOnContext(const std::shared_ptr<WorkerHandle>& w, boost::asio::io_context* ctx);
  void armOnContext(const std::shared_ptr<WorkerHandle>& w);
  auto stepWhenReady(const std::shared_ptr<WorkerHandle>& w, bool WorkerHandle::*armed);
  void stepOnContext(const std::shared_ptr<WorkerHandle>& w);
  // Where `w`'s reader should be, with the reader's own view of where it is: moves it (to a
  // context, or to a new I/O thread) when they differ. True when it moved.
  bool moveReaderIfAsked(const std::shared_ptr<WorkerHandle>& w, boost::asio::io_context* here);
  void startReaderThread(const std::shared_ptr<WorkerHandle>& w);
  // startOn on an io thread of readChannelsOn's contexts: after kFollowSenderAfter jobs in a row
  // from one that does not read `w`, `w`'s reader moves there.
  void followSenderLocked(WorkerHandle& w) PARLEY_REQUIRES(mu_);
  void leftContext(const std::shared_ptr<WorkerHandle>& w);
  // Reads what the socket holds and hands every whole frame to onFrame. False when the channel
  // is closed (EOF, error, a malformed frame).
  bool readFrames(const std::shared_ptr<WorkerHandle>& w);
  void onFrame(const std::shared_ptr<WorkerHandle>& w, wire::Frame& f);
  void onWorkerExit(const std::shared_ptr<WorkerHandle>& w);
  // The deadline of the JS running on `w` now (SteadyTime::max() when none or unknown).
  SteadyTime runningDeadline(const WorkerHandle& w) PARLEY_REQUIRES(mu_);
  // The account of the invocation whose JS runs on `w` now (empty when none or unknown).
  std::string runningAccount(const WorkerHandle& w) PARLEY_REQUIRES(mu_);
  // Whether an account other than `account` had an invocation started since `since`.
  bool othersStartedSince(const std::string& account, SteadyTime since) PARLEY_REQUIRES(mu_);
  // One pass of the duty cycle of long tasks (supervisor thread): stops and continues the
  // workers running one; lowers `wake` to the next moment it has something to do.
  void dutyCycleLocked(SteadyTime now, SteadyTime& wake) PARLEY_REQUIRES(mu_);

  // Dispatch.
  void scheduleLocked() PARLEY_REQUIRES(mu_);
  // `home`: the worker is the function's home (Scheduler::Dispatch::home).
  void startOn(WorkerHandle& w, Job& job, bool demote, bool home) PARLEY_REQUIRES(mu_);
  // `job`'s first JS task on `w` ended (result, waiting, handed back): it no longer holds `w`,
  // and a thread demoted for its start gets its priority back.
  void settleLocked(WorkerHandle& w, Job& job) PARLEY_REQUIRES(mu_);
  // A worker whose priority could not be restored after a long task: it gets no more jobs and
  // is replaced.
  void retireDemotedLocked(WorkerHandle& w) PARLEY_REQUIRES(mu_);
  void sendDeployment(WorkerHandle& w, const Deployment& d) PARLEY_REQUIRES(mu_);
  // Queues `frame` to `w` under w.out_mu; callable with or without mu_ held.
  void send(WorkerHandle& w, std::string frame);

  // Runs `d`'s top level on a free worker (kept warm there when `keep`); `prepared_on` gets
  // the worker's id.
  Status prepare(std::shared_ptr<const Deployment> d, bool keep, int* prepared_on);
  void enqueue(Job job);
  void finish(Job& job, InvokeResult result);
  void recordCrash(const std::string& function_key, SteadyTime now) PARLEY_REQUIRES(mu_);
  std::shared_ptr<Deployment> newDeployment();

  // Runs a Toolbelt host operation a worker asked for on behalf of `job`'s invocation (the
  // server's record of it) on the host/HTTP threads; `reply` gets the JSON text
  // {"ok":true,"value":..} or {"ok":false,"code":"NOT_FOUND","message":..} on some other
  // thread. Secret writes need job.request.invoker.secret_writes == kAllowed; every secret read
  // and write is recorded through FunctionHost::recordSecretAccess.
  void hostCall(const Job& job, std::string op, std::string args_json,
                std::function<void(std::string)> reply);
  void doHttp(const Deployment& d, const std::string& args_json, SteadyTime deadline,
              std::function<void(std::string)> reply);
  void countFinished(const InvokeResult& r);

  RuntimeOptions options_;
  FunctionHost& host_;
  const Clock& clock_;
  std::unique_ptr<Limits> limits_;  // in-process mode, optional
  WorkerConfig worker_config_;
  std::string init_frame_;
  RateLimiter rate_;
  AddressPolicy address_policy_;

  // mu_ also guards the WorkerHandle fields marked so in engine.cpp (the analysis cannot name
  // another object's mutex there, so those are marked in comments only).
  mutable Mutex mu_;
  std::condition_variable cv_;  // supervisor wake-ups and readiness (with mu_)
  std::unordered_map<std::string, std::shared_ptr<const Deployment>> table_ PARLEY_GUARDED_BY(mu_);
  std::unordered_map<std::uint64_t, Job> jobs_ PARLEY_GUARDED_BY(mu_);
  Scheduler scheduler_ PARLEY_GUARDED_BY(mu_);
  std::unordered_map<int, std::shared_ptr<WorkerHandle>> workers_ PARLEY_GUARDED_BY(mu_);
  std::unordered_map<std::string, std::deque<SteadyTime>> crashes_ PARLEY_GUARDED_BY(mu_);
  std::size_t starting_shared_ PARLEY_GUARDED_BY(mu_) = 0;
  std::size_t starting_quarantine_ PARLEY_GUARDED_BY(mu_) = 0;
  // Shared workers that died and were not replaced yet.
  std::size_t crashed_unreplaced_ PARLEY_GUARDED_BY(mu_) = 0;
  // When each account last had an invocation started (dispatched to a worker): the duty cycle of
  // long tasks (RuntimeOptions::duty_cycle_long_tasks) stops a worker only while another
  // account started one within the last duty period. Entries older than that are dropped by the
  // supervisor.
  std::unordered_map<std::string, SteadyTime> last_start_ PARLEY_GUARDED_BY(mu_);
  bool stopping_ PARLEY_GUARDED_BY(mu_) = false;
  int next_worker_id_ PARLEY_GUARDED_BY(mu_) = 1;
  std::uint64_t next_job_id_ PARLEY_GUARDED_BY(mu_) = 1;
  std::uint64_t next_request_ PARLEY_GUARDED_BY(mu_) = 1;
  std::atomic<std::uint64_t> next_deployment_id_{1};

  std::atomic<std::uint64_t> invocations_{0}, errors_{0}, timeouts_{0}, isolate_restarts_{0},
      worker_restarts_{0}, worker_crashes_{0}, quarantines_{0}, extra_workers_started_{0},
      jobs_returned_{0}, demotions_{0}, demoted_retired_{0}, demotions_restored_early_{0},
      demotions_restored_after_lift_{0}, demoted_starts_{0}, guest_dispatches_{0},
      long_task_stops_{0};
  std::atomic<std::uint64_t> cpu_us_total_{0};
  std::atomic<std::uint64_t> supervisor_passes_{0};
  std::atomic<bool> refuse_restore_for_test_{false};
  std::atomic<std::int64_t> lifted_grace_ms_{100};
  // Long tasks go to SCHED_IDLE (this process may take a thread out of it again), else nice 19.
  bool idle_class_allowed_ = false;
  std::atomic<bool> demote_to_idle_class_{false};

  // Live channel readers (an I/O thread, or a reader on a context), each ending after
  // onWorkerExit.
  std::size_t io_threads_ PARLEY_GUARDED_BY(mu_) = 0;
  std::condition_variable io_cv_;
  // readChannelsOn's contexts (empty: an I/O thread per worker).
  std::vector<boost::asio::io_context*> io_contexts_ PARLEY_GUARDED_BY(mu_);
  // Readers on a context or on their way to one (posted there); readChannelsOnOwnThreads waits
  // for 0.
  std::size_t on_contexts_ PARLEY_GUARDED_BY(mu_) = 0;

  std::unique_ptr<boost::asio::thread_pool> host_pool_;
  std::unique_ptr<HttpClient> http_;
  std::thread supervisor_;
};

}  // namespace parley::functions::engine
