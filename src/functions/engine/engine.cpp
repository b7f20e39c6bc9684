#include "functions/engine/engine.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "common/json.h"
#include "common/log.h"
#include "common/random.h"
#include "common/thread_name.h"
#include "functions/engine/js_libs.h"
#include "functions/engine/watchdog.h"
#include "functions/engine/worker_host.h"

namespace parley::functions::engine {

namespace bj = boost::json;

// The server's handle of one worker (process or in-process thread). Shared by the Engine's
// table, its I/O thread, pending host-call replies and frames waiting to be sent
// (SendsAfterUnlock).
struct WorkerHandle : std::enable_shared_from_this<WorkerHandle> {
  // wake_fd is closed only here, not when the worker exits: a thread that queued output may
  // still write to it after the exit set `broken` (Engine::send and SendsAfterUnlock wake the
  // reader after releasing out_mu), and it holds this handle while it does. Closed at the exit,
  // the number could be reused by then and the write land in another descriptor.
  ~WorkerHandle() {
    if (wake_fd >= 0 && !wake_sd) ::close(wake_fd);
  }
  WorkerHandle() = default;
  WorkerHandle(const WorkerHandle&) = delete;
  WorkerHandle& operator=(const WorkerHandle&) = delete;

  int id = 0;
  Scheduler::WorkerKind kind = Scheduler::WorkerKind::kShared;
  pid_t pid = 0;                   // process mode
  int fd = -1;                     // the server's end of the socket (non-blocking)
  int wake_fd = -1;                // eventfd: wakes the I/O thread when output is queued
  WorkerShared* shared = nullptr;  // mapped (process) or owned (in-process)
  std::unique_ptr<WorkerShared> owned_shared;
  std::unique_ptr<InProcessWorker> thread;  // in-process mode
  SteadyTime started;

  Mutex out_mu;
  std::string out PARLEY_GUARDED_BY(out_mu);  // bytes not yet written
  bool broken PARLEY_GUARDED_BY(out_mu) = false;
  // !out.empty() || broken, stored under out_mu whenever either changes (noteOutLocked). The I/O
  // thread reads it before each poll and only then tries out_mu, so it does not wait for a
  // thread that holds out_mu while its send wakes the worker (and may be preempted by it).
  std::atomic<bool> out_attention{false};

  // The channel's reader: its own I/O thread, or a context of Engine::readChannelsOn. Only the
  // current reader touches these (a reader moves by handing them over: its old waits see
  // reader_gen changed and do nothing).
  wire::FrameSplitter splitter;
  std::vector<char> rbuf;
  boost::asio::io_context* cur_ctx = nullptr;  // where it is read now (null: its I/O thread)
  std::unique_ptr<boost::asio::posix::stream_descriptor> sd, wake_sd;
  bool read_armed = false, wake_armed = false, write_armed = false;
  std::atomic<std::uint64_t> reader_gen{0};
  // Where the reader should be (null: an I/O thread of its own); stored under Engine::mu_, read
  // by the reader without it.
  std::atomic<boost::asio::io_context*> want_ctx{nullptr};

  // GUARDED_BY(Engine::mu_)
  // The reader is on a context or posted to one (counted in Engine::on_contexts_).
  bool reader_on_ctx = false;
  // The reader reads on a context now (readChannelsOn waits for it).
  bool reader_at_ctx = false;
  // Jobs started in a row from one io thread that does not read this worker (followSenderLocked).
  boost::asio::io_context* follow_ctx = nullptr;
  int follow_streak = 0;
  // Counted in Engine::starting_shared_ / starting_quarantine_: from spawn until it says it is
  // ready or exits, whichever comes first (never again after that, whatever `ready` becomes).
  bool starting = true;
  bool ready = false;
  bool gone = false;
  bool retired = false;  // stopped by the supervisor (idle), not crashed
  std::string fatal;     // what the worker said before a fatal error (kFatal)
  std::string killed;    // why the supervisor killed it (JS past its deadline)
  std::unordered_map<std::string, std::uint64_t> known;  // key -> current deployment it holds
  std::unordered_set<std::uint64_t> jobs;                // invocations running here
  struct Pending {
    std::shared_ptr<const Deployment> deployment;
    std::promise<Status> promise;
    SteadyTime deadline;
  };
  std::unordered_map<std::uint64_t, Pending> prepares;
  std::deque<std::promise<std::string>> probes;  // answered in order
  SteadyTime idle_since;
  // Its priority was lowered for a long task and could not be restored: it gets no jobs, and
  // the supervisor stops it once `jobs` and `prepares` are empty (a fresh one replaces it).
  bool draining = false;

  // The JS thread(s) demoted (SCHED_IDLE or nice 19) for the current long task, with the nice
  // value each had.
  // Demoted by the I/O thread (kBusy); restored by it (kFree) or, when the task is being
  // terminated or its deadline comes, by the supervisor. Lock order: Engine::mu_, then prio_mu.
  Mutex prio_mu;
  std::vector<std::pair<pid_t, int>> demoted PARLEY_GUARDED_BY(prio_mu);
  // A restore was refused (unprivileged server): the worker is replaced when the task ends.
  bool restore_refused PARLEY_GUARDED_BY(prio_mu) = false;
  // The demoted threads were lifted out of SCHED_IDLE (at RuntimeOptions::terminate_nice) for
  // their termination; they are still in `demoted`, restored when the task ends.
  bool lifted PARLEY_GUARDED_BY(prio_mu) = false;
  SteadyTime lifted_at PARLEY_GUARDED_BY(prio_mu){};
  // Its JS runs a long task: from kBusy to kFree (set and cleared by the I/O thread).
  bool in_long_task PARLEY_GUARDED_BY(prio_mu) = false;
  // The duty cycle of that long task (RuntimeOptions::duty_cycle_long_tasks): the process is
  // stopped (SIGSTOP) by the supervisor, and continued by it at `duty_next`, by kFree, or by the
  // engine's destructor. `duty_next`: when the current phase (stopped or running) ends.
  bool stopped PARLEY_GUARDED_BY(prio_mu) = false;
  SteadyTime duty_next PARLEY_GUARDED_BY(prio_mu){};
};

namespace {

constexpr std::size_t kMaxCodeChars = 100'000;
// Channels read on io threads: a worker's reader moves to the io thread that started this many
// of its jobs in a row while another io thread read it (one connection's requests then find
// their result read on their own io thread; requests spread over the io threads move nothing).
constexpr int kFollowSenderAfter = 16;
// Output queued for a worker that does not read; beyond it the worker is killed.
constexpr std::size_t kMaxQueuedOutput = 256u << 20;
// A demoted long task gets its priority back this long before its deadline, so that the
// Watchdog's TerminateExecution finds the thread running at normal priority.
constexpr auto kRestoreBeforeDeadline = std::chrono::milliseconds(5);
// How often the supervisor looks whether a demoted task is being terminated (WorkerShared::
// terminating) while one is demoted.
constexpr auto kTerminatingPoll = std::chrono::milliseconds(10);
// JS still running this long after its deadline is stuck where V8 cannot terminate it (a
// built-in written in C++ that does not return to JS): its worker process is killed.
constexpr auto kHardKillGrace = std::chrono::seconds(1);
// A worker that has not answered for an invocation this long after its deadline is killed.
constexpr auto kUnansweredGrace = std::chrono::seconds(5);

std::string keyOf(const AccountId& a, const FunctionId& f) { return a.str() + "/" + f.str(); }

void noteOutLocked(WorkerHandle& w) PARLEY_REQUIRES(w.out_mu) {
  w.out_attention.store(!w.out.empty() || w.broken, std::memory_order_release);
}

// Writes what is queued for `w` until the socket is full. True when the worker's I/O thread must
// be woken: output is left for it (it waits for the socket to take more), or the socket failed.
bool writeQueuedLocked(WorkerHandle& w) PARLEY_REQUIRES(w.out_mu) {
  bool wake = false;
  while (!w.out.empty()) {
    ssize_t n = ::send(w.fd, w.out.data(), w.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      w.out.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      wake = true;
      break;
    }
    w.broken = true;  // the I/O thread sees the error too
    wake = true;
    break;
  }
  noteOutLocked(w);
  return wake;
}

void wakeIoThread(const WorkerHandle& w) {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(w.wake_fd, &one, sizeof one);
}

// While one of these lives on a thread, Engine::send only queues the frame; the frames are
// written when the outermost one ends. Declared before the engine's MutexLock, it ends after
// the lock is released: the system call that wakes the worker is never made while the engine's
// mutex is held. (Made under the mutex, a worker woken on the sender's core could preempt the
// sender there, and the I/O thread that then reads the worker's result would wait for the
// mutex until the sender runs again: measured 8 us at the median of a warm invocation.) Frames
// to one worker keep their order: they are appended to its queue under its out_mu, and the
// queue is written from its front, by whichever thread gets there first.
class SendsAfterUnlock {
 public:
  SendsAfterUnlock() { ++depth_; }
  ~SendsAfterUnlock() {
    if (--depth_ == 0) flush();
  }
  SendsAfterUnlock(const SendsAfterUnlock&) = delete;
  SendsAfterUnlock& operator=(const SendsAfterUnlock&) = delete;

  static bool active() { return depth_ > 0; }
  // `w` has frames queued that this thread will write.
  static void add(std::shared_ptr<WorkerHandle> w) { pending_.push_back(std::move(w)); }

 private:
  static void flush() {
    std::vector<std::shared_ptr<WorkerHandle>> workers;
    workers.swap(pending_);
    for (auto& w : workers) {
      bool wake;
      {
        MutexLock lock(w->out_mu);
        wake = !w->broken && writeQueuedLocked(*w);
      }
      if (wake) wakeIoThread(*w);
    }
  }
  static thread_local int depth_;
  static thread_local std::vector<std::shared_ptr<WorkerHandle>> pending_;
};
thread_local int SendsAfterUnlock::depth_ = 0;
thread_local std::vector<std::shared_ptr<WorkerHandle>> SendsAfterUnlock::pending_;

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string okReply(bj::value v) {
  return json::dump(bj::object{{"ok", true}, {"value", std::move(v)}});
}

std::string errReply(const Error& e) {
  return json::dump(bj::object{
      {"ok", false}, {"code", std::string(errorCodeName(e.code))}, {"message", e.message}});
}

Status checkSize(std::string_view code) {
  if (code.size() > kMaxCodeChars) {
    return invalid("the code is " + std::to_string(code.size()) +
                   " characters long; the limit is 100,000");
  }
  return {};
}

// The threads of worker `w` to demote for a long task: its JS thread, when the id it wrote in
// the shared page names a thread of its own process (the worker could write any number);
// otherwise every thread of its process (none in in-process mode: those are the server's).
std::vector<pid_t> jsThreadsOf(const WorkerHandle& w) {
  pid_t proc = w.pid > 0 ? w.pid : ::getpid();
  std::string tasks = "/proc/" + std::to_string(proc) + "/task/";
  std::int32_t tid = w.shared->js_tid.load(std::memory_order_relaxed);
  std::error_code ec;
  if (tid > 0 && std::filesystem::exists(tasks + std::to_string(tid), ec)) return {tid};
  std::vector<pid_t> all;
  if (w.pid <= 0) return all;
  for (const auto& entry : std::filesystem::directory_iterator(tasks, ec)) {
    pid_t t = static_cast<pid_t>(std::atoi(entry.path().filename().c_str()));
    if (t > 0) all.push_back(t);
  }
  return all;
}

// Whether this process may give a thread in SCHED_IDLE its normal class back (CAP_SYS_NICE, or
// an RLIMIT_NICE that allows the thread's nice value): tried once on a thread of its own.
bool canLeaveIdleClass() {
  bool ok = false;
  std::thread([&] {
    sched_param p{};
    pid_t tid = ::gettid();
    ok = ::sched_setscheduler(tid, SCHED_IDLE, &p) == 0 &&
         ::sched_setscheduler(tid, SCHED_OTHER, &p) == 0;
  }).join();
  return ok;
}

// Lowers a long task's thread: SCHED_IDLE when `idle_class` (a normal thread that wakes on its
// core preempts it at once; it runs only on CPU nobody else wants), else nice 19 (CFS weight 15
// against 1024: it keeps a minimum share, but a waking thread may wait for the end of its
// slice). Returns the nice value the thread had, or nullopt when it could not be lowered.
std::optional<int> demoteThread(pid_t tid, bool idle_class) {
  errno = 0;
  int was = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  if (errno != 0 || ::sched_getscheduler(tid) != SCHED_OTHER) return std::nullopt;
  sched_param p{};
  if (idle_class && ::sched_setscheduler(tid, SCHED_IDLE, &p) == 0) return was;
  if (was >= 19 || ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 19) != 0)
    return std::nullopt;
  return was;
}

// Back to SCHED_OTHER at nice `was`. False when the OS refuses (EPERM/EACCES for an
// unprivileged server: it may lower a thread's priority but not raise it again). A thread that
// is gone is fine.
bool restoreThread(pid_t tid, int was) {
  sched_param p{};
  if (::sched_getscheduler(tid) == SCHED_IDLE && ::sched_setscheduler(tid, SCHED_OTHER, &p) != 0)
    return errno == ESRCH;
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), was) != 0) return errno == ESRCH;
  return true;
}

// Takes a demoted thread out of SCHED_IDLE at nice `nice` (never above the nice it had, `was`):
// in SCHED_OTHER it gets a share of a busy core, enough for TerminateExecution to take effect,
// while at nice 19 (CFS weight 15 against 1024) a normal thread that wakes on its core still
// preempts it. The nice value is set while the thread is still in SCHED_IDLE, so it never runs
// in SCHED_OTHER above `nice`. A thread at nice 19 in SCHED_OTHER (an unprivileged server's
// demotion) is left as it is. False when the OS refuses; a thread that is gone is fine.
bool liftThread(pid_t tid, int was, int nice) {
  if (::sched_getscheduler(tid) != SCHED_IDLE) return true;
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), std::max(was, nice)) != 0)
    return errno == ESRCH;
  sched_param p{};
  if (::sched_setscheduler(tid, SCHED_OTHER, &p) != 0) return errno == ESRCH;
  return true;
}

// Gives the threads demoted for w's long task their priority back; a refusal (`refuse`: as the
// OS does for an unprivileged server) is remembered in w.restore_refused.
void restorePriorityLocked(WorkerHandle& w, bool refuse) PARLEY_REQUIRES(w.prio_mu) {
  for (auto [tid, was] : w.demoted) {
    if (refuse || !restoreThread(tid, was)) w.restore_refused = true;
  }
  w.demoted.clear();
  w.lifted = false;
}

// For a demoted long task that is being terminated or nears its deadline: its threads leave
// SCHED_IDLE for SCHED_OTHER at `nice` (see liftThread), or get their priority back when `nice`
// is 0. They stay in w.demoted: the task's end restores them.
void liftPriorityLocked(WorkerHandle& w, int nice, bool refuse) PARLEY_REQUIRES(w.prio_mu) {
  if (nice <= 0) {
    restorePriorityLocked(w, refuse);
    return;
  }
  for (auto [tid, was] : w.demoted) {
    if (refuse || !liftThread(tid, was, nice)) w.restore_refused = true;
  }
  w.lifted = true;
  w.lifted_at = std::chrono::steady_clock::now();
}

// As restorePriorityLocked; false when this task's priority was refused now or at an earlier
// restore (which is then forgotten).
bool restorePriority(WorkerHandle& w, bool refuse) PARLEY_EXCLUDES(w.prio_mu) {
  MutexLock prio(w.prio_mu);
  restorePriorityLocked(w, refuse);
  return !std::exchange(w.restore_refused, false);
}

// The reader leaves its context: the waits still queued there must do nothing (they see
// reader_gen changed), and the descriptors stay open (the handle owns them, not Asio).
void dropContextWaits(WorkerHandle& w) {
  w.reader_gen.fetch_add(1, std::memory_order_relaxed);
  w.read_armed = w.wake_armed = w.write_armed = false;
  if (w.sd) (void)w.sd->release();
  if (w.wake_sd) (void)w.wake_sd->release();
  w.sd.reset();
  w.wake_sd.reset();
  w.cur_ctx = nullptr;
}

// Continues a worker process the duty cycle stopped.
void continueWorkerLocked(WorkerHandle& w) PARLEY_REQUIRES(w.prio_mu) {
  if (!w.stopped) return;
  ::kill(w.pid, SIGCONT);
  w.stopped = false;
}

std::string describeExit(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) +
           (name ? std::string(" (SIG") + name + ")" : "");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == kExitOutOfMemory)
    return "ran out of memory (exit status " + std::to_string(kExitOutOfMemory) + ")";
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended";
}

}  // namespace

Engine::Engine(RuntimeOptions options, FunctionHost& host, const Clock& clock)
    : options_(std::move(options)),
      host_(host),
      clock_(clock),
      rate_(clock, options_.http_rate_per_s, options_.limit_peers),
      scheduler_([&] {
        SchedulerOptions so;
        so.max_queued = options_.max_queued;
        so.max_queued_per_function = options_.max_queued_per_function;
        so.max_in_flight_per_worker = options_.max_in_flight_per_worker;
        so.max_in_flight_per_account = options_.max_in_flight_per_account;
        so.max_busy_workers_per_account = options_.max_busy_workers_per_account;
        so.max_workers = static_cast<std::size_t>(options_.max_workers);
        so.max_quarantine_workers = static_cast<std::size_t>(options_.max_quarantine_workers);
        so.min_free_workers = 1;
        so.long_task = options_.long_task;
        so.heavy_after = options_.heavy_after;
        so.heavy_half_life = options_.heavy_half_life;
        so.rehome_after = options_.rehome_after;
        return so;
      }()) {}

Result<std::unique_ptr<Engine>> Engine::create(RuntimeOptions options, FunctionHost& host,
                                               const Clock& clock, std::unique_ptr<Limits> limits) {
  if (options.threads < 1) return invalid("RuntimeOptions.threads must be at least 1");
  if (options.max_workers < options.threads) options.max_workers = options.threads;
  if (options.heap_limit_mb < 16)
    return invalid("RuntimeOptions.heap_limit_mb must be at least 16");
  if (options.terminate_nice < 0 || options.terminate_nice > 19)
    return invalid("RuntimeOptions.terminate_nice must be from 0 to 19");
  if (options.max_busy_workers_per_account < 1)
    return invalid("RuntimeOptions.max_busy_workers_per_account must be at least 1");
  if (options.duty_period < std::chrono::milliseconds(10) ||
      options.duty_period > std::chrono::seconds(10))
    return invalid("RuntimeOptions.duty_period must be from 10 ms to 10 s (it is " +
                   std::to_string(options.duty_period.count()) + " ms)");
  if (options.duty_run < std::chrono::milliseconds(1) || options.duty_run > options.duty_period)
    return invalid("RuntimeOptions.duty_run must be from 1 ms to duty_period (" +
                   std::to_string(options.duty_period.count()) + " ms); it is " +
                   std::to_string(options.duty_run.count()) + " ms");
  auto policy = AddressPolicy::parse(options.outbound_allow);
  if (!policy) return std::unexpected(policy.error());
  std::unique_ptr<Engine> e(new Engine(std::move(options), host, clock));
  e->address_policy_ = std::move(*policy);
  // SCHED_IDLE only where the thread can be given its class back at its deadline or termination;
  // a thread left in it on busy cores would get no CPU even to be terminated.
  e->idle_class_allowed_ = e->options_.demote_long_tasks && canLeaveIdleClass();
  e->demote_to_idle_class_.store(e->idle_class_allowed_);
  e->limits_ = std::move(limits);
  // Sent to every worker in its first frame: the worker process reads no file.
  JsLibs libs;
  libs.dir = e->options_.js_lib_dir;
  if (libs.dir.empty()) {
    for (const EmbeddedFile& lib : embeddedJsLibs()) libs.sources.emplace(lib.name, lib.text);
  } else {
    std::string lodash = readFile(libs.dir + "/lodash/lodash.js");
    if (!lodash.empty()) libs.sources["lodash"] = std::move(lodash);
    std::string luxon = readFile(libs.dir + "/luxon/build/cjs-browser/luxon.js");
    if (!luxon.empty()) libs.sources["luxon"] = std::move(luxon);
  }
  WorkerConfig& c = e->worker_config_;
  c.heap_limit_mb = e->options_.heap_limit_mb;
  c.max_contexts_per_isolate = e->options_.max_contexts_per_isolate;
  c.max_timers_per_invocation = e->options_.max_timers_per_invocation;
  c.deploy_deadline = e->options_.deploy_deadline;
  c.cpu_limit = e->options_.cpu_limit;
  c.long_task = e->options_.long_task;
  c.guest_context_idle = e->options_.guest_context_idle;
  c.probes = e->options_.probes_for_test;
  c.libs = std::move(libs.sources);
  e->init_frame_ = proto::init(c);
  e->host_pool_ = std::make_unique<boost::asio::thread_pool>(std::max(1, e->options_.host_threads));
  nameThreads([&](auto task) { boost::asio::post(*e->host_pool_, std::move(task)); },
              static_cast<std::size_t>(std::max(1, e->options_.host_threads)), "fn-host");
  e->http_ = std::make_unique<HttpClient>(e->options_.http_threads, e->options_.http_max_body_bytes,
                                          e->address_policy_);
  // The supervisor starts the base workers (and every later one: a worker's parent-death
  // signal follows the thread that started it, which lives as long as the engine).
  e->supervisor_ = std::thread([raw = e.get()] {
    nameThisThread("fn-supervisor");
    raw->supervise();
  });
  return e;
}

Engine::~Engine() {
  readChannelsOnOwnThreads();
  std::vector<Job> dropped;
  std::vector<std::shared_ptr<WorkerHandle>> workers;
  {
    MutexLock lock(mu_);
    stopping_ = true;
    for (auto& item : scheduler_.takeAll()) {
      auto it = jobs_.find(item.id);
      if (it == jobs_.end()) continue;
      dropped.push_back(std::move(it->second));
      jobs_.erase(it);
    }
    for (auto& [id, w] : workers_) {
      workers.push_back(w);
      // The supervisor stops no worker from here on (it checks stopping_ under mu_): continue
      // the ones it stopped, so they see their channel close and exit.
      MutexLock prio(w->prio_mu);
      continueWorkerLocked(*w);
    }
  }
  for (auto& j : dropped)
    finish(j, errorResult(kErrUnavailable, "the function runtime is shutting down"));
  // Closing our write side makes each worker fail what it runs (es.unavailable results come
  // back through the I/O threads) and exit; the I/O threads end at its EOF. The supervisor
  // (the workers' parent thread) stays until then.
  for (auto& w : workers) ::shutdown(w->fd, SHUT_WR);
  {
    MutexLock lock(mu_);
    while (io_threads_ != 0) lock.wait(io_cv_);
  }
  cv_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
  // Host tasks may still start HTTP requests: finish them before the HTTP client goes.
  host_pool_->join();
  http_.reset();
  host_pool_.reset();
}

// ---------------------------------------------------------------------------------------------
// Workers: start, I/O, exit

Result<std::shared_ptr<WorkerHandle>> Engine::spawn(Scheduler::WorkerKind kind) {
  auto w = std::make_shared<WorkerHandle>();
  w->kind = kind;
  w->started = std::chrono::steady_clock::now();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return internalError(std::string("socketpair: ") + std::strerror(errno));
  // Room for a burst of jobs or results without a round trip.
  int buf = 1 << 20;
  for (int fd : sv) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  }
  w->fd = sv[0];
  if (options_.isolation == WorkerIsolation::kProcess) {
    int memfd = ::memfd_create("parley-worker", MFD_CLOEXEC);
    if (memfd < 0 || ::ftruncate(memfd, 4096) != 0) {
      ::close(sv[0]);
      ::close(sv[1]);
      if (memfd >= 0) ::close(memfd);
      return internalError(std::string("memfd_create: ") + std::strerror(errno));
    }
    void* mem = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, memfd, 0);
    if (mem == MAP_FAILED) {
      ::close(sv[0]);
      ::close(sv[1]);
      ::close(memfd);
      return internalError(std::string("mmap: ") + std::strerror(errno));
    }
    w->shared = static_cast<WorkerShared*>(mem);
    auto spawned = spawnWorkerProcess(options_, sv[1], memfd);
    ::close(sv[1]);
    ::close(memfd);
    if (!spawned) {
      ::close(sv[0]);
      ::munmap(mem, 4096);
      return std::unexpected(spawned.error());
    }
    w->pid = *spawned;
  } else {
    w->owned_shared = std::make_unique<WorkerShared>();
    w->shared = w->owned_shared.get();
    w->thread = std::make_unique<InProcessWorker>(sv[1], limits_.get(), clock_, *w->shared);
  }
  ::fcntl(w->fd, F_SETFL, ::fcntl(w->fd, F_GETFL) | O_NONBLOCK);
  w->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  w->rbuf.resize(256 * 1024);
  boost::asio::io_context* ctx = nullptr;
  {
    MutexLock lock(mu_);
    if (stopping_) {
      // The engine is going away: this worker never joins (it sees EOF and ends).
      ::close(w->fd);
      if (w->pid > 0) {
        ::kill(w->pid, SIGKILL);
        ::waitpid(w->pid, nullptr, 0);
        ::munmap(w->shared, 4096);
      }
      w->fd = -1;
      return makeError(ErrorCode::kUnavailable, "the function runtime is shutting down");
    }
    w->id = next_worker_id_++;
    w->idle_since = w->started;
    workers_[w->id] = w;
    send(*w, init_frame_);
    ++io_threads_;
    if (!io_contexts_.empty()) {
      ctx = io_contexts_[static_cast<std::size_t>(w->id) % io_contexts_.size()];
      w->want_ctx.store(ctx, std::memory_order_release);
      w->reader_on_ctx = true;
      ++on_contexts_;
    }
  }
  if (ctx)
    boost::asio::post(*ctx, [this, w, ctx] { startOnContext(w, ctx); });
  else
    startReaderThread(w);
  return w;
}

void Engine::followSenderLocked(WorkerHandle& w) {
  boost::asio::io_context* here = nullptr;
  for (auto* c : io_contexts_)
    if (c->get_executor().running_in_this_thread()) here = c;
  if (!here) return;  // not an io thread (a host thread, the supervisor): the reader stays
  if (here == w.want_ctx.load(std::memory_order_relaxed)) {
    w.follow_streak = 0;
    return;
  }
  if (here != w.follow_ctx) {
    w.follow_ctx = here;
    w.follow_streak = 0;
  }
  if (++w.follow_streak < kFollowSenderAfter) return;
  // Its reader moves at its next step (the result of this job, at the latest).
  w.follow_streak = 0;
  w.want_ctx.store(here, std::memory_order_release);
}

void Engine::startReaderThread(const std::shared_ptr<WorkerHandle>& w) {
  // Detached: it ends after onWorkerExit (or when the reader moves to a context), and the
  // destructor waits for io_threads_ == 0.
  std::thread([this, w] {
    nameThisThread("fn-io-" + std::to_string(w->id));
    ioLoop(w);
  }).detach();
}

void Engine::readChannelsOn(std::vector<boost::asio::io_context*> contexts) {
  std::erase(contexts, nullptr);
  if (contexts.empty()) return readChannelsOnOwnThreads();
  std::vector<std::shared_ptr<WorkerHandle>> moving;
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    io_contexts_ = std::move(contexts);
    for (auto& [id, w] : workers_) {
      w->want_ctx.store(io_contexts_[static_cast<std::size_t>(id) % io_contexts_.size()],
                        std::memory_order_release);
      moving.push_back(w);
    }
  }
  for (auto& w : moving) wakeIoThread(*w);  // its reader looks where it should be
  MutexLock lock(mu_);
  for (auto& w : moving)
    while (!w->reader_at_ctx && !w->gone && !stopping_ && !io_contexts_.empty()) lock.wait(io_cv_);
}

void Engine::readChannelsOnOwnThreads() {
  std::vector<std::shared_ptr<WorkerHandle>> moving;
  {
    MutexLock lock(mu_);
    io_contexts_.clear();
    for (auto& [id, w] : workers_) {
      if (w->want_ctx.load(std::memory_order_relaxed) == nullptr && !w->reader_on_ctx) continue;
      w->want_ctx.store(nullptr, std::memory_order_release);
      moving.push_back(w);
    }
  }
  for (auto& w : moving) wakeIoThread(*w);
  MutexLock lock(mu_);
  while (on_contexts_ != 0) lock.wait(io_cv_);
}

bool Engine::moveReaderIfAsked(const std::shared_ptr<WorkerHandle>& w,
                               boost::asio::io_context* here) {
  if (w->want_ctx.load(std::memory_order_acquire) == here) return false;
  boost::asio::io_context* want = nullptr;
  {
    MutexLock lock(mu_);
    want = w->want_ctx.load(std::memory_order_relaxed);
    if (want == here) return false;
    if (want && !here) {
      w->reader_on_ctx = true;
      ++on_contexts_;
    }
  }
  if (here) dropContextWaits(*w);
  if (want) {
    boost::asio::post(*want, [this, w, want] { startOnContext(w, want); });
  } else {
    startReaderThread(w);
    leftContext(w);
  }
  return true;
}

void Engine::leftContext(const std::shared_ptr<WorkerHandle>& w) {
  {
    MutexLock lock(mu_);
    w->reader_at_ctx = false;
    if (!w->reader_on_ctx) return;
    w->reader_on_ctx = false;
    --on_contexts_;
  }
  io_cv_.notify_all();
}

void Engine::startOnContext(const std::shared_ptr<WorkerHandle>& w, boost::asio::io_context* ctx) {
  w->cur_ctx = ctx;
  if (moveReaderIfAsked(w, ctx)) return;
  w->sd = std::make_unique<boost::asio::posix::stream_descriptor>(*ctx, w->fd);
  w->wake_sd = std::make_unique<boost::asio::posix::stream_descriptor>(*ctx, w->wake_fd);
  {
    MutexLock lock(mu_);
    w->reader_at_ctx = true;
  }
  io_cv_.notify_all();
  stepOnContext(w);
}

// The handler of one of a reader's waits on its context: unless the reader has moved since
// (reader_gen), it clears the wait's flag and takes the next step. A lambda, not a
// std::function: it goes to Asio as it is, with no allocation of its own.
auto Engine::stepWhenReady(const std::shared_ptr<WorkerHandle>& w, bool WorkerHandle::*armed) {
  return [this, w, armed,
          gen = w->reader_gen.load(std::memory_order_relaxed)](const boost::system::error_code&) {
    if (gen != w->reader_gen.load(std::memory_order_relaxed)) return;
    (*w).*armed = false;
    stepOnContext(w);
  };
}

void Engine::stepOnContext(const std::shared_ptr<WorkerHandle>& w) {
  std::uint64_t v;
  [[maybe_unused]] auto n = ::read(w->wake_fd, &v, sizeof v);
  if (moveReaderIfAsked(w, w->cur_ctx)) return;
  bool open = true;
  bool want_out = false;
  if (w->out_attention.load(std::memory_order_acquire) && w->out_mu.try_lock()) {
    if (w->broken) {
      open = false;
    } else if (!w->out.empty()) {
      writeQueuedLocked(*w);
      want_out = !w->out.empty();
    }
    w->out_mu.unlock();
  }
  if (open) open = readFrames(w);
  if (!open) {
    // The worker is gone: its exit (reaping, failing its invocations) may block, so it runs on
    // a thread of its own, not on this io thread.
    dropContextWaits(*w);
    leftContext(w);
    std::thread([this, w] {
      nameThisThread("fn-exit-" + std::to_string(w->id));
      onWorkerExit(w);
    }).detach();
    return;
  }
  armOnContext(w);
  if (want_out && !w->write_armed) {
    w->write_armed = true;
    w->sd->async_wait(boost::asio::posix::stream_descriptor::wait_write,
                      stepWhenReady(w, &WorkerHandle::write_armed));
  }
}

void Engine::armOnContext(const std::shared_ptr<WorkerHandle>& w) {
  // Edge-triggered underneath: a wait armed after the socket was read short (or the eventfd
  // drained) sees what comes next, as the epoll round that reports it runs after this handler.
  if (!w->read_armed) {
    w->read_armed = true;
    w->sd->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      stepWhenReady(w, &WorkerHandle::read_armed));
  }
  if (!w->wake_armed) {
    w->wake_armed = true;
    w->wake_sd->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                           stepWhenReady(w, &WorkerHandle::wake_armed));
  }
}

bool Engine::readFrames(const std::shared_ptr<WorkerHandle>& w) {
  for (;;) {
    ssize_t n = ::recv(w->fd, w->rbuf.data(), w->rbuf.size(), MSG_DONTWAIT);
    if (n > 0) {
      w->splitter.append(w->rbuf.data(), static_cast<std::size_t>(n));
      wire::Frame f;
      while (w->splitter.next(f)) onFrame(w, f);
      if (w->splitter.bad()) {
        spdlog::error("functions: worker {} sent a malformed frame; stopping it", w->id);
        return false;
      }
      // A short read emptied the socket: back to poll (which returns at once if more came)
      // rather than a recv that fails with EAGAIN.
      if (static_cast<std::size_t>(n) < w->rbuf.size()) return true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;  // EOF or error: the worker is gone
  }
}

void Engine::send(WorkerHandle& w, std::string frame) {
  bool wake = false;
  {
    MutexLock lock(w.out_mu);
    if (w.broken) return;
    if (SendsAfterUnlock::active() && w.out.size() + frame.size() <= kMaxQueuedOutput) {
      // Written when the SendsAfterUnlock scope ends. Output already queued is someone's to
      // write (another such scope's, or the I/O thread's, woken for it), and ours goes with it.
      const bool first = w.out.empty();
      w.out.append(frame);
      noteOutLocked(w);
      if (first) SendsAfterUnlock::add(w.shared_from_this());
      return;
    }
    std::size_t off = 0;
    if (w.out.empty()) {
      while (off < frame.size()) {
        ssize_t n = ::send(w.fd, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
        if (n > 0) {
          off += static_cast<std::size_t>(n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        w.broken = true;  // the I/O thread sees the error too
        noteOutLocked(w);
        return;
      }
      if (off == frame.size()) return;
    }
    if (w.out.size() + frame.size() - off > kMaxQueuedOutput) {
      // The worker does not read: end it (its invocations fail, a new one starts).
      w.broken = true;
      wake = true;
    } else {
      w.out.append(frame, off, std::string::npos);
      wake = true;
    }
    noteOutLocked(w);
  }
  if (wake) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(w.wake_fd, &one, sizeof one);
  }
}

void Engine::ioLoop(std::shared_ptr<WorkerHandle> w) {
  bool open = true;
  while (open) {
    if (moveReaderIfAsked(w, nullptr)) return;  // readChannelsOn: a context reads it now
    // Output to write or a broken channel; out_mu is only tried: a thread holding it is writing
    // (a send that may be preempted by the worker it wakes), and it wakes this thread through
    // wake_fd when it leaves output or breaks the channel.
    bool want_out = false;
    if (w->out_attention.load(std::memory_order_acquire) && w->out_mu.try_lock()) {
      const bool broken = w->broken;
      want_out = !w->out.empty();
      w->out_mu.unlock();
      if (broken) break;
    }
    pollfd p[2] = {{w->fd, static_cast<short>(POLLIN | (want_out ? POLLOUT : 0)), 0},
                   {w->wake_fd, POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents & POLLIN) {
      std::uint64_t v;
      [[maybe_unused]] auto n = ::read(w->wake_fd, &v, sizeof v);
    }
    if (p[0].revents & POLLOUT) {
      MutexLock lock(w->out_mu);
      writeQueuedLocked(*w);
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) open = readFrames(w);
  }
  onWorkerExit(w);
}

void Engine::onFrame(const std::shared_ptr<WorkerHandle>& w, wire::Frame& f) {
  using wire::Msg;
  switch (f.type) {
    case Msg::kReady: {
      SendsAfterUnlock sends;
      MutexLock lock(mu_);
      w->ready = true;
      if (w->starting) {
        w->starting = false;
        --(w->kind == Scheduler::WorkerKind::kShared ? starting_shared_ : starting_quarantine_);
      }
      scheduler_.addWorker(w->id, w->kind);
      scheduleLocked();
      cv_.notify_all();
      return;
    }
    case Msg::kResult: {
      std::uint64_t id = 0;
      InvokeResult r;
      if (!proto::parseResult(f.payload, &id, &r)) return;
      Job job;
      {
        SendsAfterUnlock sends;  // jobs started in place of this one
        MutexLock lock(mu_);
        auto it = jobs_.find(id);
        if (it == jobs_.end() || it->second.worker != w->id) return;
        settleLocked(*w, it->second);
        job = std::move(it->second);
        jobs_.erase(it);
        w->jobs.erase(id);
        if (w->jobs.empty()) w->idle_since = std::chrono::steady_clock::now();
        scheduler_.finished(w->id, job.request.account.str());
        scheduleLocked();
        if (w->draining && w->jobs.empty()) cv_.notify_all();  // the supervisor stops it
      }
      finish(job, std::move(r));
      return;
    }
    case Msg::kHostCall: {
      wire::Reader rd(f.payload);
      std::uint64_t inv = rd.u64(), call = rd.u64();
      std::string op = rd.str(), args = rd.str();
      if (!rd.ok()) return;
      // What the call acts for, copied from the server's own record of the invocation (never
      // from what the worker says): its deployment, deadline, request id and invoker.
      Job acting;
      {
        MutexLock lock(mu_);
        auto it = jobs_.find(inv);
        // Only an invocation running on this worker may ask: a worker cannot act for another.
        if (it == jobs_.end() || it->second.worker != w->id) return;
        const Job& job = it->second;
        acting.id = job.id;
        acting.deployment = job.deployment;
        acting.deadline = job.deadline;
        acting.request.account = job.request.account;
        acting.request.function = job.request.function;
        acting.request.request_id = job.request.request_id;
        acting.request.invoker = job.request.invoker;
      }
      std::weak_ptr<WorkerHandle> weak = w;
      hostCall(acting, std::move(op), std::move(args), [this, weak, inv, call](std::string reply) {
        if (auto wp = weak.lock()) send(*wp, proto::hostReply(inv, call, reply));
      });
      return;
    }
    case Msg::kPrepared: {
      std::uint64_t req = 0;
      Status s = proto::parsePrepared(f.payload, &req);
      MutexLock lock(mu_);
      auto it = w->prepares.find(req);
      if (it == w->prepares.end()) return;
      it->second.promise.set_value(std::move(s));
      w->prepares.erase(it);
      if (w->draining && w->prepares.empty()) cv_.notify_all();
      return;
    }
    case Msg::kBusy: {
      // Lower the JS thread's priority first: the long task keeps running meanwhile.
      {
        MutexLock prio(w->prio_mu);
        w->in_long_task = true;
        w->duty_next = SteadyTime{};  // the duty cycle may stop it at once
      }
      if (options_.demote_long_tasks) {
        MutexLock prio(w->prio_mu);
        if (w->demoted.empty()) {
          for (pid_t tid : jsThreadsOf(*w)) {
            if (auto was = demoteThread(tid, demote_to_idle_class_.load()))
              w->demoted.emplace_back(tid, *was);
          }
          if (!w->demoted.empty()) demotions_.fetch_add(1, std::memory_order_relaxed);
        }
      }
      MutexLock lock(mu_);
      // The account is the one of the invocation the shared page names, if it runs on this
      // worker; what the worker says is not trusted (it could name another account to use up
      // that account's busy share).
      std::string account = "~unknown";
      std::uint64_t running = w->shared->running.load(std::memory_order_relaxed);
      if (running & WorkerShared::kPrepareBit) {
        auto p = w->prepares.find(running & ~WorkerShared::kPrepareBit);
        if (p != w->prepares.end()) account = p->second.deployment->account.str();
      } else if (auto j = jobs_.find(running); j != jobs_.end() && j->second.worker == w->id) {
        account = j->second.request.account.str();
      }
      scheduler_.setBusy(w->id, account, std::chrono::steady_clock::now());
      cv_.notify_all();  // the supervisor may start another worker
      return;
    }
    case Msg::kFree: {
      // The task ended: the worker runs (it sent this frame, but the duty cycle may have stopped
      // it since) before it may get another job.
      {
        MutexLock prio(w->prio_mu);
        w->in_long_task = false;
        continueWorkerLocked(*w);
      }
      // Restore the priority before the worker gets another job: a demoted worker never starts
      // a short invocation.
      bool restored = restorePriority(*w, refuse_restore_for_test_.load());
      SendsAfterUnlock sends;
      MutexLock lock(mu_);
      if (!restored && !w->gone && !w->draining) {
        retireDemotedLocked(*w);
        return;
      }
      scheduler_.setFree(w->id, std::chrono::steady_clock::now());
      scheduleLocked();
      cv_.notify_all();  // a free worker: a deploy may wait for one, an idle extra may stop
      return;
    }
    case Msg::kWaiting: {
      auto ids = proto::parseIds(f.payload);
      SendsAfterUnlock sends;
      MutexLock lock(mu_);
      for (auto id : ids) {
        auto it = jobs_.find(id);
        if (it == jobs_.end() || it->second.worker != w->id) continue;
        settleLocked(*w, it->second);
      }
      scheduleLocked();
      return;
    }
    case Msg::kReturned: {
      auto ids = proto::parseIds(f.payload);
      SendsAfterUnlock sends;
      MutexLock lock(mu_);
      for (auto id : ids) {
        auto it = jobs_.find(id);
        if (it == jobs_.end() || it->second.worker != w->id) continue;
        Job& job = it->second;
        settleLocked(*w, job);
        job.worker = -1;
        w->jobs.erase(id);
        scheduler_.finished(w->id, job.request.account.str());
        scheduler_.pushFront(Scheduler::Item{id, job.request.account.str(), job.deployment->key});
        jobs_returned_.fetch_add(1, std::memory_order_relaxed);
      }
      scheduleLocked();
      cv_.notify_all();
      return;
    }
    case Msg::kFatal: {
      wire::Reader rd(f.payload);
      std::string why = rd.str();
      MutexLock lock(mu_);
      w->fatal = why;
      return;
    }
    case Msg::kRestarted:
      isolate_restarts_.fetch_add(1, std::memory_order_relaxed);
      return;
    case Msg::kProbed: {
      wire::Reader rd(f.payload);
      std::string answer = rd.str();
      MutexLock lock(mu_);
      if (!w->probes.empty()) {
        w->probes.front().set_value(std::move(answer));
        w->probes.pop_front();
      }
      return;
    }
    default:
      spdlog::warn("functions: worker {} sent an unknown frame type {}", w->id,
                   static_cast<int>(f.type));
      return;
  }
}

void Engine::onWorkerExit(const std::shared_ptr<WorkerHandle>& w) {
  std::string how = "ended";
  if (w->pid > 0) {
    int status = 0;
    // The socket is closed: the worker has exited or is about to. Make sure, then reap it.
    pid_t r = ::waitpid(w->pid, &status, WNOHANG);
    for (int i = 0; r == 0 && i < 200; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      r = ::waitpid(w->pid, &status, WNOHANG);
    }
    if (r == 0) {
      ::kill(w->pid, SIGKILL);
      r = ::waitpid(w->pid, &status, 0);
    }
    if (r == w->pid) how = describeExit(status);
  } else if (w->thread) {
    ::shutdown(w->fd, SHUT_RDWR);
    w->thread->join();
  }
  std::vector<Job> failed;
  bool crashed;
  std::uint64_t culprit_job = 0;
  std::string fatal, killed;
  {
    MutexLock lock(mu_);
    crashed = !stopping_ && !w->retired;
    w->gone = true;
    io_cv_.notify_all();  // readChannelsOn does not wait for it
    scheduler_.removeWorker(w->id);
    workers_.erase(w->id);
    // It exited before it was ready. (Not `!ready`: an idle worker the supervisor stopped has
    // ready == false too, and it was counted out when it became ready.)
    if (w->starting) {
      w->starting = false;
      --(w->kind == Scheduler::WorkerKind::kShared ? starting_shared_ : starting_quarantine_);
    }
    // Which function's JS was running when it died.
    std::uint64_t running = w->shared ? w->shared->running.load() : 0;
    std::string culprit;
    if (running & WorkerShared::kPrepareBit) {
      auto p = w->prepares.find(running & ~WorkerShared::kPrepareBit);
      if (p != w->prepares.end()) culprit = p->second.deployment->key;
    } else if (running != 0) {
      // Only an invocation that ran on this worker (the page is the worker's to write).
      auto j = jobs_.find(running);
      if (j != jobs_.end() && j->second.worker == w->id) culprit = j->second.deployment->key;
    }
    culprit_job = running & WorkerShared::kPrepareBit ? 0 : running;
    fatal = w->fatal;
    killed = w->killed;
    for (auto id : w->jobs) {
      auto it = jobs_.find(id);
      if (it == jobs_.end()) continue;
      failed.push_back(std::move(it->second));
      jobs_.erase(it);
    }
    w->jobs.clear();
    for (auto& job : failed) scheduler_.finished(w->id, job.request.account.str());
    for (auto& [req, p] : w->prepares) {
      p.promise.set_value(makeError(
          ErrorCode::kUnavailable,
          !w->killed.empty()
              ? w->killed
              : "the function worker " + how + " while running the top-level code; try again"));
    }
    w->prepares.clear();
    for (auto& p : w->probes) p.set_value("worker " + how);
    w->probes.clear();
    if (crashed) {
      worker_crashes_.fetch_add(1, std::memory_order_relaxed);
      if (w->kind == Scheduler::WorkerKind::kShared) ++crashed_unreplaced_;
      spdlog::warn("functions: worker {} (pid {}) {} with {} invocation(s) running{}", w->id,
                   w->pid, how, failed.size(),
                   culprit.empty() ? std::string() : "; it was running " + culprit);
      if (!culprit.empty()) recordCrash(culprit, std::chrono::steady_clock::now());
    }
    scheduleLocked();
  }
  cv_.notify_all();  // the supervisor starts a replacement
  for (auto& job : failed) {
    if (!crashed) {
      finish(job, errorResult(kErrUnavailable, "the function runtime is shutting down"));
      continue;
    }
    if (job.id == culprit_job && !killed.empty()) {
      finish(job, errorResult(kErrWorkerCrashed, killed));
      continue;
    }
    if (job.id == culprit_job && !fatal.empty()) {
      finish(job, errorResult(kErrWorkerCrashed, "the function ran out of memory (" + fatal +
                                                     ") and its worker process was restarted"));
      continue;
    }
    if (job.id == culprit_job) {
      finish(job, errorResult(kErrWorkerCrashed,
                              "the function worker process " + how +
                                  " while this invocation's JavaScript was running; retry"));
      continue;
    }
    finish(job, errorResult(kErrWorkerCrashed,
                            "the function worker process " + how +
                                " while this invocation was waiting on it (another invocation "
                                "on it caused it); retry"));
  }
  {
    MutexLock lock(w->out_mu);
    w->broken = true;  // late host-call replies are dropped
    noteOutLocked(*w);
  }
  ::close(w->fd);  // wake_fd stays open until the handle goes (~WorkerHandle)
  if (w->pid > 0 && w->shared) ::munmap(w->shared, 4096);
  MutexLock lock(mu_);
  if (--io_threads_ == 0) io_cv_.notify_all();
}

void Engine::recordCrash(const std::string& function_key, SteadyTime now) {
  auto& times = crashes_[function_key];
  times.push_back(now);
  while (!times.empty() && now - times.front() > options_.quarantine_window) times.pop_front();
  if (static_cast<int>(times.size()) >= options_.quarantine_after_crashes &&
      !scheduler_.quarantined(function_key)) {
    scheduler_.quarantine(function_key);
    quarantines_.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn(
        "functions: {} killed its worker {} times within {} s; it runs in a quarantine worker "
        "until it is redeployed",
        function_key, times.size(),
        std::chrono::duration_cast<std::chrono::seconds>(options_.quarantine_window).count());
  }
}

void Engine::supervise() {
  MutexLock lock(mu_);
  while (!stopping_) {
    supervisor_passes_.fetch_add(1, std::memory_order_relaxed);
    std::size_t shared = 0;
    for (auto& [id, w] : workers_)
      shared += w->kind == Scheduler::WorkerKind::kShared && !w->draining;
    Scheduler::WorkerKind kind = Scheduler::WorkerKind::kShared;
    bool start = false, restart = false;
    if (shared < static_cast<std::size_t>(options_.threads)) {
      start = restart = true;  // a base worker died
    } else if (scheduler_.wantsSharedWorker(starting_shared_)) {
      start = true;
    } else if (scheduler_.wantsQuarantineWorker(starting_quarantine_)) {
      start = true;
      kind = Scheduler::WorkerKind::kQuarantine;
    }
    if (start) {
      (kind == Scheduler::WorkerKind::kShared ? starting_shared_ : starting_quarantine_)++;
      lock.unlock();
      auto w = spawn(kind);
      lock.lock();
      if (!w) {
        (kind == Scheduler::WorkerKind::kShared ? starting_shared_ : starting_quarantine_)--;
        spdlog::error("functions: cannot start a worker: {}", w.error().message);
        lock.waitFor(cv_, std::chrono::seconds(1));
        continue;
      }
      if (restart && crashed_unreplaced_ > 0) {
        --crashed_unreplaced_;
        worker_restarts_.fetch_add(1, std::memory_order_relaxed);
      } else if (!restart && kind == Scheduler::WorkerKind::kShared) {
        extra_workers_started_.fetch_add(1, std::memory_order_relaxed);
      }
      continue;
    }
    auto now = std::chrono::steady_clock::now();
    // Kill a worker whose JS is stuck past its deadline (the worker's own watchdog could not
    // stop it).
    bool any_busy = false;
    for (auto& [id, w] : workers_) {
      if (w->pid <= 0 || w->gone || !w->killed.empty()) continue;
      if (w->shared->running.load(std::memory_order_relaxed) == 0) continue;
      any_busy = true;
      SteadyTime deadline = runningDeadline(*w);
      if (deadline != SteadyTime::max() && now > deadline + kHardKillGrace) {
        w->killed =
            "the function was still running " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(now - deadline).count()) +
            " ms after its deadline, inside a built-in that cannot be interrupted (e.g. a huge "
            "Array.prototype.fill); its worker process was killed";
        spdlog::warn("functions: killing worker {} (pid {}): {}", id, w->pid, w->killed);
        ::kill(w->pid, SIGKILL);
      }
    }
    // A worker holding an invocation long past its deadline does not answer (its own watchdog
    // expires deadlines): kill it, so every invocation's callback is still called.
    for (auto& [jid, job] : jobs_) {
      if (job.worker < 0 || now < job.deadline + kUnansweredGrace) continue;
      auto it = workers_.find(job.worker);
      if (it == workers_.end()) continue;
      WorkerHandle& w = *it->second;
      if (w.pid <= 0 || w.gone || !w.killed.empty()) continue;
      w.killed =
          "the function worker did not answer " +
          std::to_string(
              std::chrono::duration_cast<std::chrono::milliseconds>(kUnansweredGrace).count()) +
          " ms after an invocation's deadline; it was killed";
      spdlog::warn("functions: killing worker {} (pid {}): {}", w.id, w.pid, w.killed);
      ::kill(w.pid, SIGKILL);
    }
    // Stop a draining worker (demoted, priority not restored) once nothing runs on it.
    for (auto& [id, w] : workers_) {
      if (!w->draining || w->gone || !w->jobs.empty() || !w->prepares.empty()) continue;
      w->gone = true;
      w->retired = true;
      ::shutdown(w->fd, SHUT_WR);  // it exits; its I/O thread cleans up
    }
    // Stop extra shared workers idle for a while, and quarantine workers nobody needs.
    for (auto& [id, w] : workers_) {
      if (!w->ready || w->gone || w->draining || !w->jobs.empty() || scheduler_.busy(id)) continue;
      bool extra = w->kind == Scheduler::WorkerKind::kShared &&
                   shared > static_cast<std::size_t>(options_.threads);
      bool idle_quarantine =
          w->kind == Scheduler::WorkerKind::kQuarantine && scheduler_.quarantinedCount() == 0;
      // Not the last free shared worker while the others are busy: the supervisor would only
      // start another in its place.
      if (extra && !scheduler_.spareFreeWorker(starting_shared_)) continue;
      if ((extra || idle_quarantine) && now - w->idle_since > options_.extra_worker_idle) {
        scheduler_.removeWorker(id);
        w->ready = false;
        w->gone = true;
        w->retired = true;
        ::shutdown(w->fd, SHUT_WR);  // it exits; its I/O thread cleans up
        if (extra) --shared;
      }
    }
    // A demoted long task is lifted out of SCHED_IDLE when its JS is being terminated or its
    // deadline is near: TerminateExecution takes effect only when the thread runs.
    SteadyTime wake = now + (any_busy ? std::chrono::milliseconds(200) : std::chrono::seconds(1));
    dutyCycleLocked(now, wake);
    for (auto& [id, w] : workers_) {
      if (w->gone) continue;
      MutexLock prio(w->prio_mu);
      if (w->demoted.empty()) continue;
      if (w->lifted) {
        // Lifted and still running: on cores saturated at normal priority nice 19 may not be
        // enough for the termination to take effect before the hard kill.
        // (lifted_grace_ms_: 100 ms, well inside kHardKillGrace.)
        const auto grace = std::chrono::milliseconds(lifted_grace_ms_.load());
        if (now >= w->lifted_at + grace) {
          restorePriorityLocked(*w, refuse_restore_for_test_.load());
          demotions_restored_after_lift_.fetch_add(1, std::memory_order_relaxed);
        } else {
          wake = std::min(wake, w->lifted_at + grace);
        }
        continue;
      }
      SteadyTime deadline = runningDeadline(*w);
      if (w->shared->terminating.load(std::memory_order_relaxed) != 0 ||
          (deadline != SteadyTime::max() && now + kRestoreBeforeDeadline >= deadline)) {
        liftPriorityLocked(*w, options_.terminate_nice, refuse_restore_for_test_.load());
        demotions_restored_early_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      wake = std::min(wake, now + kTerminatingPoll);
      if (deadline != SteadyTime::max()) wake = std::min(wake, deadline - kRestoreBeforeDeadline);
    }
    lock.waitUntil(cv_, wake);
  }
}

std::string Engine::runningAccount(const WorkerHandle& w) {
  std::uint64_t running = w.shared->running.load(std::memory_order_relaxed);
  if (running == 0) return {};
  if (running & WorkerShared::kPrepareBit) {
    auto p = w.prepares.find(running & ~WorkerShared::kPrepareBit);
    return p != w.prepares.end() ? p->second.deployment->account.str() : std::string();
  }
  auto j = jobs_.find(running);
  return j != jobs_.end() && j->second.worker == w.id ? j->second.request.account.str()
                                                      : std::string();
}

bool Engine::othersStartedSince(const std::string& account, SteadyTime since) {
  for (const auto& [a, at] : last_start_) {
    if (a != account && at >= since) return true;
  }
  return false;
}

void Engine::dutyCycleLocked(SteadyTime now, SteadyTime& wake) {
  const auto period = options_.duty_period;
  for (auto it = last_start_.begin(); it != last_start_.end();) {
    if (now - it->second > period) {
      it = last_start_.erase(it);
    } else {
      ++it;
    }
  }
  const bool on = options_.duty_cycle_long_tasks && options_.duty_run < period &&
                  options_.isolation == WorkerIsolation::kProcess;
  if (!on) return;
  for (auto& [id, w] : workers_) {
    if (w->pid <= 0 || w->gone) continue;
    MutexLock prio(w->prio_mu);
    if (!w->in_long_task) continue;
    // Whether it may be (or stay) stopped: not while it is being killed or terminated (its JS
    // must run for that), nor from 5 ms before its deadline (the Watchdog ends it there), nor
    // when no other account started an invocation within the last period. An account that
    // cannot be told (the page names no invocation of this worker) counts as another one.
    const SteadyTime deadline = runningDeadline(*w);
    const SteadyTime run_from =
        deadline == SteadyTime::max() ? SteadyTime::max() : deadline - kRestoreBeforeDeadline;
    const bool may_stop = w->killed.empty() && !w->lifted &&
                          w->shared->terminating.load(std::memory_order_relaxed) == 0 &&
                          now < run_from && othersStartedSince(runningAccount(*w), now - period);
    // Looked at again soon while the task runs: another account's work may start.
    wake = std::min(wake, now + kTerminatingPoll);
    if (w->stopped) {
      if (may_stop && now < w->duty_next) {
        wake = std::min(wake, w->duty_next);
        continue;
      }
      continueWorkerLocked(*w);
      w->duty_next = now + options_.duty_run;
      wake = std::min(wake, w->duty_next);
      continue;
    }
    if (!may_stop) continue;
    if (now < w->duty_next) {
      wake = std::min(wake, w->duty_next);
      continue;
    }
    if (::kill(w->pid, SIGSTOP) != 0) continue;  // it is gone: its I/O thread cleans up
    w->stopped = true;
    long_task_stops_.fetch_add(1, std::memory_order_relaxed);
    w->duty_next = std::min(now + (period - options_.duty_run), run_from);
    wake = std::min(wake, w->duty_next);
  }
}

SteadyTime Engine::runningDeadline(const WorkerHandle& w) {
  std::uint64_t running = w.shared->running.load(std::memory_order_relaxed);
  if (running == 0) return SteadyTime::max();
  if (running & WorkerShared::kPrepareBit) {
    auto p = w.prepares.find(running & ~WorkerShared::kPrepareBit);
    return p != w.prepares.end() ? p->second.deadline : SteadyTime::max();
  }
  // Only an invocation that runs on this worker (the page is the worker's to write).
  auto j = jobs_.find(running);
  return j != jobs_.end() && j->second.worker == w.id ? j->second.deadline : SteadyTime::max();
}

// ---------------------------------------------------------------------------------------------
// Dispatch

void Engine::sendDeployment(WorkerHandle& w, const Deployment& d) {
  auto cur = table_.find(d.key);
  bool current = !d.ephemeral && cur != table_.end() && cur->second.get() == &d;
  if (current) {
    auto k = w.known.find(d.key);
    if (k != w.known.end() && k->second == d.id) return;
    w.known[d.key] = d.id;
  }
  send(w, proto::deployment(d, current));
}

void Engine::startOn(WorkerHandle& w, Job& job, bool demote, bool home) {
  last_start_.insert_or_assign(job.request.account.str(), std::chrono::steady_clock::now());
  job.worker = w.id;
  job.fresh = true;
  w.jobs.insert(job.id);
  if (!io_contexts_.empty()) followSenderLocked(w);
  if (demote && options_.demote_long_tasks) {
    // A heavy account's job: its JS starts at the priority a long task runs at, on a worker the
    // scheduler holds for it; the priority comes back when its first task ends (settleLocked),
    // or through kFree if that task runs long.
    MutexLock prio(w.prio_mu);
    if (w.demoted.empty()) {
      for (pid_t tid : jsThreadsOf(w)) {
        if (auto was = demoteThread(tid, demote_to_idle_class_.load()))
          w.demoted.emplace_back(tid, *was);
      }
    }
    job.demoted_start = !w.demoted.empty();
    if (job.demoted_start) demoted_starts_.fetch_add(1, std::memory_order_relaxed);
  }
  sendDeployment(w, *job.deployment);
  Task t;
  t.id = job.id;
  t.deployment = job.deployment;
  t.input_json = job.request.input_json;
  t.mode = job.mode;
  t.start = job.start;
  t.deadline = job.deadline;
  t.budget_ms = job.request.deadline.count();
  t.home = home;
  if (!home) guest_dispatches_.fetch_add(1, std::memory_order_relaxed);
  send(w, proto::job(t));
}

void Engine::scheduleLocked() {
  if (scheduler_.queued() == 0) return;
  bool reserved = false;
  for (auto& d : scheduler_.schedule(std::chrono::steady_clock::now())) {
    auto j = jobs_.find(d.item.id);
    auto w = workers_.find(d.worker);
    if (j == jobs_.end() || w == workers_.end()) {
      scheduler_.settled(d.worker, d.item.id);
      scheduler_.finished(d.worker, d.item.account);
      continue;
    }
    if (auto old = workers_.find(d.moved_from); old != workers_.end() && !old->second->gone)
      send(*old->second, proto::unhome(d.item.function_key));
    startOn(*w->second, j->second, d.demote, d.home);
    reserved |= d.demote;
  }
  // A worker now reserved for a heavy account, or queued work no free worker takes, may call
  // for another worker: wake the supervisor then, and only then. Queued work alone does not
  // (e.g. a heavy account's second runaway loop waiting for its first): waking it on every
  // invocation that ends would cost a thread wake-up per invocation, and its pass holds mu_.
  if (reserved ||
      (scheduler_.queued() > 0 && (scheduler_.wantsSharedWorker(starting_shared_) ||
                                   scheduler_.wantsQuarantineWorker(starting_quarantine_))))
    cv_.notify_all();
}

void Engine::settleLocked(WorkerHandle& w, Job& job) {
  if (!job.fresh) return;
  job.fresh = false;
  const bool was_reserved = scheduler_.reserved(w.id);
  scheduler_.settled(w.id, job.id);
  if (was_reserved && !scheduler_.reserved(w.id)) cv_.notify_all();  // a deploy may wait for it
  if (!std::exchange(job.demoted_start, false)) return;
  // A long task's kFree restores it instead (after the task, not now).
  if (scheduler_.busy(w.id)) return;
  if (!restorePriority(w, refuse_restore_for_test_.load()) && !w.gone && !w.draining)
    retireDemotedLocked(w);
}

void Engine::retireDemotedLocked(WorkerHandle& w) {
  spdlog::info(
      "functions: worker {} (pid {}) cannot get its priority back after a long task; it is "
      "replaced",
      w.id, w.pid);
  w.draining = true;
  scheduler_.removeWorker(w.id);
  demoted_retired_.fetch_add(1, std::memory_order_relaxed);
  scheduleLocked();
  cv_.notify_all();  // the supervisor starts a fresh worker and stops this one
}

void Engine::finish(Job& job, InvokeResult result) {
  result.duration_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - job.start)
          .count();
  countFinished(result);
  if (job.done) job.done(std::move(result));
}

std::shared_ptr<Deployment> Engine::newDeployment() {
  auto d = std::make_shared<Deployment>();
  d->id = next_deployment_id_.fetch_add(1, std::memory_order_relaxed);
  return d;
}

Status Engine::prepare(std::shared_ptr<const Deployment> d, bool keep, int* prepared_on) {
  std::future<Status> fut;
  {
    MutexLock lock(mu_);
    // A free shared worker: the function's home if it has one (a redeploy), else its
    // account's home, else the least loaded one (invocations in flight, then functions homed
    // there). The deploy makes it the function's home (Scheduler::noteAffinity).
    auto pick = [&]() PARLEY_REQUIRES(mu_) -> WorkerHandle* {
      auto free = [&](const WorkerHandle& w) PARLEY_REQUIRES(mu_) {
        // Not one running a long task, nor one reserved for a heavy account's job (demoted).
        return w.ready && !w.gone && !w.draining && w.kind == Scheduler::WorkerKind::kShared &&
               !scheduler_.busy(w.id) && !scheduler_.reserved(w.id);
      };
      for (int home : {scheduler_.homeOf(d->key), scheduler_.accountHomeOf(d->account.str())}) {
        if (auto h = workers_.find(home); !d->ephemeral && h != workers_.end() && free(*h->second))
          return h->second.get();
      }
      WorkerHandle* best = nullptr;
      std::pair<std::size_t, std::size_t> best_load;
      for (auto& [id, w] : workers_) {
        if (!free(*w)) continue;
        std::pair<std::size_t, std::size_t> load{scheduler_.inFlight(id), scheduler_.homedOn(id)};
        if (!best || load < best_load) best = w.get(), best_load = load;
      }
      return best;
    };
    WorkerHandle* w = nullptr;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!stopping_ && !(w = pick())) {
      if (lock.waitUntil(cv_, until) == std::cv_status::timeout) break;
    }
    if (stopping_)
      return makeError(ErrorCode::kUnavailable, "the function runtime is shutting down");
    if (!w) {
      return makeError(ErrorCode::kUnavailable,
                       "no function worker is free to check the code; try again");
    }
    std::uint64_t req = next_request_++;
    if (prepared_on) *prepared_on = w->id;
    auto& p = w->prepares[req];
    p.deployment = d;
    p.deadline = std::chrono::steady_clock::now() + options_.deploy_deadline;
    fut = p.promise.get_future();
    send(*w, proto::deployment(*d, false));
    send(*w, proto::prepare(req, d->id, keep));
    if (keep) w->known[d->key + "#prepared"] = d->id;
  }
  return fut.get();
}

Status Engine::check(std::string_view code) {
  if (auto s = checkSize(code); !s) return s;
  auto d = newDeployment();
  d->account = AccountId("check");
  d->function = FunctionId("check");
  d->key = "~check";
  d->code = std::string(code);
  d->ephemeral = true;
  return prepare(std::move(d), false, nullptr);
}

Status Engine::deploy(const AccountId& account, const FunctionId& id, DeployedCode code) {
  if (auto s = checkSize(code.code); !s) return s;
  auto d = newDeployment();
  d->account = account;
  d->function = id;
  d->key = keyOf(account, id);
  d->code = std::move(code.code);
  d->env = std::move(code.env);
  d->version = code.version;
  int prepared_on = -1;
  Status s = prepare(d, true, &prepared_on);
  MutexLock lock(mu_);
  if (!s) {
    for (auto& [wid, w] : workers_) {
      auto k = w->known.find(d->key + "#prepared");
      if (k != w->known.end() && k->second == d->id) {
        w->known.erase(k);
        send(*w, proto::forget(d->id));
      }
    }
    return s;
  }
  table_[d->key] = d;
  scheduler_.noteAffinity(d->key, prepared_on, d->account.str());
  // A redeploy ends a quarantine: the new code gets a fresh start on the shared workers.
  scheduler_.release(d->key);
  crashes_.erase(d->key);
  for (auto& [wid, w] : workers_) {
    auto k = w->known.find(d->key);
    auto p = w->known.find(d->key + "#prepared");
    bool prepared_here = p != w->known.end() && p->second == d->id;
    if (prepared_here) w->known.erase(p);
    if (prepared_here) {
      w->known[d->key] = d->id;
      send(*w, proto::drop(d->key, d->id));
    } else if (k != w->known.end()) {
      w->known.erase(k);
      send(*w, proto::drop(d->key, d->id));
    }
  }
  return {};
}

void Engine::undeploy(const AccountId& account, const FunctionId& id) {
  std::string key = keyOf(account, id);
  MutexLock lock(mu_);
  if (table_.erase(key) == 0) return;
  for (auto& [wid, w] : workers_) {
    if (w->known.erase(key)) send(*w, proto::drop(key, 0));
  }
}

bool Engine::isDeployed(const AccountId& account, const FunctionId& id) const {
  MutexLock lock(mu_);
  return table_.count(keyOf(account, id)) > 0;
}

void Engine::enqueue(Job job) {
  InvokeResult refused;
  {
    SendsAfterUnlock sends;  // the job frame, if it starts at once
    MutexLock lock(mu_);
    if (stopping_) {
      refused = errorResult(kErrUnavailable, "the function runtime is shutting down");
    } else {
      job.id = next_job_id_++;
      auto pushed =
          scheduler_.push(Scheduler::Item{job.id, job.request.account.str(), job.deployment->key});
      if (pushed == Scheduler::Push::kQueued) {
        std::uint64_t id = job.id;
        jobs_.emplace(id, std::move(job));
        scheduleLocked();
        return;
      }
      refused = errorResult(kErrUnavailable,
                            pushed == Scheduler::Push::kFunctionQueueFull
                                ? "too many invocations of this function are queued; retry later"
                                : "too many invocations are queued; retry later");
    }
  }
  countFinished(refused);
  if (job.done) job.done(std::move(refused));
}

void Engine::invoke(InvokeRequest request, InvokeMode mode,
                    std::function<void(InvokeResult)> done) {
  std::shared_ptr<const Deployment> d;
  {
    MutexLock lock(mu_);
    auto it = table_.find(keyOf(request.account, request.function));
    if (it != table_.end()) d = it->second;
  }
  if (!d) {
    auto r = errorResult(kErrNotDeployed, "function " + request.function.str() +
                                              " is not deployed; deploy it before invoking it");
    countFinished(r);
    done(std::move(r));
    return;
  }
  if (request.request_id.empty()) request.request_id = randomUuid();
  Job job;
  job.start = std::chrono::steady_clock::now();
  auto budget = request.deadline.count() > 0 ? request.deadline : options_.default_deadline;
  request.deadline = budget;
  job.deadline = job.start + budget;
  job.request = std::move(request);
  job.mode = mode;
  job.deployment = std::move(d);
  job.done = std::move(done);
  enqueue(std::move(job));
}

void Engine::invokeCode(const AccountId& account, std::string code, std::vector<store::EnvVar> env,
                        InvokeRequest request, std::function<void(InvokeResult)> done) {
  if (auto s = checkSize(code); !s) {
    auto r = errorResult(kErrBadInput, s.error().message);
    countFinished(r);
    done(std::move(r));
    return;
  }
  auto d = newDeployment();
  d->account = account;
  d->function = request.function.empty() ? FunctionId(randomUuid()) : request.function;
  // The function's own key: a test invoke that kills its worker counts toward the function's
  // quarantine like a production one.
  d->key = keyOf(account, d->function);
  d->code = std::move(code);
  d->env = std::move(env);
  d->ephemeral = true;
  if (request.request_id.empty()) request.request_id = randomUuid();
  request.account = account;
  Job job;
  job.start = std::chrono::steady_clock::now();
  auto budget = request.deadline.count() > 0 ? request.deadline : options_.default_deadline;
  request.deadline = budget;
  job.deadline = job.start + budget;
  job.request = std::move(request);
  job.mode = InvokeMode::kTest;
  job.deployment = std::move(d);
  job.done = std::move(done);
  enqueue(std::move(job));
}

void Engine::countFinished(const InvokeResult& r) {
  invocations_.fetch_add(1, std::memory_order_relaxed);
  if (!r.ok) errors_.fetch_add(1, std::memory_order_relaxed);
  if (r.error_code == kErrTimeExceeded) timeouts_.fetch_add(1, std::memory_order_relaxed);
  cpu_us_total_.fetch_add(static_cast<std::uint64_t>(r.cpu_ms * 1000.0), std::memory_order_relaxed);
}

RuntimeStats Engine::stats() const {
  RuntimeStats s;
  {
    MutexLock lock(mu_);
    s.deployed = table_.size();
    s.queue_depth = scheduler_.queued();
    for (auto& [id, j] : jobs_) s.in_flight += j.worker >= 0;
    for (auto& [id, w] : workers_) {
      if (w->gone) continue;
      ++s.workers;
      s.busy_workers += scheduler_.busy(id);
      if (w->shared) s.warm_contexts += w->shared->contexts.load(std::memory_order_relaxed);
    }
    s.quarantined = scheduler_.quarantinedCount();
  }
  s.invocations = invocations_.load();
  s.errors = errors_.load();
  s.timeouts = timeouts_.load();
  s.isolate_restarts = isolate_restarts_.load();
  s.worker_restarts = worker_restarts_.load();
  s.worker_crashes = worker_crashes_.load();
  s.extra_workers = extra_workers_started_.load();
  s.quarantines = quarantines_.load();
  s.jobs_returned = jobs_returned_.load();
  s.demotions = demotions_.load();
  s.demoted_retired = demoted_retired_.load();
  s.demotions_restored_early = demotions_restored_early_.load();
  s.demotions_restored_after_lift = demotions_restored_after_lift_.load();
  s.demoted_starts = demoted_starts_.load();
  s.long_task_stops = long_task_stops_.load();
  s.guest_dispatches = guest_dispatches_.load();
  s.cpu_ms = static_cast<double>(cpu_us_total_.load()) / 1000.0;
  return s;
}

std::string Engine::prometheusText() const {
  RuntimeStats s = stats();
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + std::to_string(value) + "\n";
  };
  metric("parley_functions_workers", "gauge", "Function workers running (shared + quarantine).",
         s.workers);
  metric("parley_functions_workers_busy", "gauge", "Function workers running a long JS task.",
         s.busy_workers);
  metric("parley_functions_worker_crashes_total", "counter",
         "Function workers that died (signal, abort, fatal V8 error).", s.worker_crashes);
  metric("parley_functions_worker_restarts_total", "counter",
         "Function workers started to replace one that died.", s.worker_restarts);
  metric("parley_functions_extra_workers_total", "counter",
         "Function workers started while the others were busy.", s.extra_workers);
  metric("parley_functions_quarantines_total", "counter",
         "Functions put in a quarantine worker after killing their worker.", s.quarantines);
  metric("parley_functions_quarantined", "gauge", "Functions in quarantine now.", s.quarantined);
  metric("parley_functions_jobs_returned_total", "counter",
         "Invocations a busy worker handed back to run elsewhere.", s.jobs_returned);
  metric("parley_functions_demotions_total", "counter",
         "Long JS tasks whose worker thread was put in SCHED_IDLE (or at nice 19).", s.demotions);
  metric("parley_functions_demotions_restored_early_total", "counter",
         "Demoted long tasks lifted out of SCHED_IDLE at their deadline or termination.",
         s.demotions_restored_early);
  metric("parley_functions_demotions_restored_after_lift_total", "counter",
         "Lifted long tasks still running 100 ms later, given their normal priority back.",
         s.demotions_restored_after_lift);
  metric("parley_functions_demoted_starts_total", "counter",
         "Invocations of accounts heavy with long tasks started with their worker demoted.",
         s.demoted_starts);
  metric("parley_functions_demoted_workers_replaced_total", "counter",
         "Demoted workers replaced because their priority could not be restored.",
         s.demoted_retired);
  metric("parley_functions_long_task_stops_total", "counter",
         "Times a worker running a long task was stopped (SIGSTOP) beside another account's "
         "work.",
         s.long_task_stops);
  metric("parley_functions_cpu_seconds_total", "counter",
         "CPU time used by the JavaScript of finished invocations.", s.cpu_ms / 1000.0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Test hooks

std::vector<int> Engine::workerPidsForTest(Scheduler::WorkerKind kind) const {
  MutexLock lock(mu_);
  std::vector<std::pair<int, int>> v;
  for (auto& [id, w] : workers_) {
    if (w->gone || !w->ready || w->draining || w->pid <= 0 || w->kind != kind) continue;
    v.emplace_back(id, w->pid);
  }
  std::sort(v.begin(), v.end());
  std::vector<int> out;
  for (auto& [k, pid] : v) out.push_back(pid);
  return out;
}

void Engine::markTerminatingForTest() {
  MutexLock lock(mu_);
  for (auto& [id, w] : workers_) {
    if (w->owned_shared) w->owned_shared->terminating.store(1);
  }
}

int Engine::workerPidOfRequestForTest(const std::string& request_id) const {
  MutexLock lock(mu_);
  for (auto& [id, j] : jobs_) {
    if (j.request.request_id != request_id || j.worker < 0) continue;
    auto w = workers_.find(j.worker);
    return w == workers_.end() ? 0 : w->second->pid;
  }
  return 0;
}

Result<std::string> Engine::probeWorkerForTest(const std::string& what) {
  std::future<std::string> fut;
  {
    MutexLock lock(mu_);
    WorkerHandle* target = nullptr;
    for (auto& [id, w] : workers_) {
      if (w->ready && !w->gone && !w->draining && w->kind == Scheduler::WorkerKind::kShared) {
        target = w.get();
        break;
      }
    }
    if (!target) return makeError(ErrorCode::kUnavailable, "no worker is ready");
    target->probes.emplace_back();
    fut = target->probes.back().get_future();
    send(*target, wire::Writer(wire::Msg::kProbe).str(what).take());
  }
  if (fut.wait_for(std::chrono::seconds(30)) != std::future_status::ready)
    return makeError(ErrorCode::kTimeout, "the worker did not answer the probe");
  return fut.get();
}

bool Engine::waitForWorkersForTest(std::size_t n, std::chrono::milliseconds timeout) {
  MutexLock lock(mu_);
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::size_t ready = 0;
    for (auto& [id, w] : workers_)
      ready += w->ready && !w->gone && !w->draining && w->kind == Scheduler::WorkerKind::kShared;
    if (ready >= n) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    lock.waitUntil(cv_, until);
  }
}

std::size_t Engine::workerCountForTest(Scheduler::WorkerKind kind) const {
  MutexLock lock(mu_);
  std::size_t n = 0;
  for (auto& [id, w] : workers_) n += w->kind == kind;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Host calls

void Engine::hostCall(const Job& job, std::string op, std::string args_json,
                      std::function<void(std::string)> reply) {
  const Deployment& d = *job.deployment;
  if (op == "http") {
    doHttp(d, args_json, job.deadline, std::move(reply));
    return;
  }
  SecretAccess access;
  access.account = d.account;
  access.function = d.function;
  access.request_id = job.request.request_id;
  access.invoker = job.request.invoker;
  boost::asio::post(*host_pool_, [this, access = std::move(access), op = std::move(op),
                                  args_json = std::move(args_json),
                                  reply = std::move(reply)]() mutable {
    const AccountId& account = access.account;
    auto args = json::parseObject(args_json);
    if (!args) return reply(errReply(args.error()));
    if (op == "secret.read" || op == "secret.update") {
      // Every attempt is recorded before the function sees its result; a read whose record
      // cannot be stored does not hand out the value.
      access.key = json::getString(*args, "key");
      access.op = op == "secret.read" ? SecretOp::kRead : SecretOp::kWrite;
      access.ts = clock_.nowMs();
      Result<std::string> outcome;
      if (access.op == SecretOp::kRead) {
        outcome = host_.readSecret(account, access.key);
      } else if (access.invoker.secret_writes != SecretWrites::kAllowed) {
        access.outcome = SecretOutcome::kRefused;
        outcome = forbidden(
            access.invoker.kind == InvokerKind::kUser
                ? "changing a secret from a test invocation needs the FAAS_ADMIN or ADMIN role; "
                  "ask an account admin, or change it with PUT secrets/{key}"
                : "this invocation may not change secrets");
      } else if (auto s = host_.updateSecret(account, access.key, json::getString(*args, "value"));
                 !s) {
        outcome = std::unexpected(s.error());
      } else {
        outcome = std::string();
      }
      if (!outcome) access.detail = outcome.error().message;
      if (auto s = host_.recordSecretAccess(access); !s) {
        return reply(errReply(Error{ErrorCode::kUnavailable,
                                    "the secret access could not be recorded, so it was not "
                                    "completed; retry later (" +
                                        s.error().message + ")"}));
      }
      if (!outcome) return reply(errReply(outcome.error()));
      return reply(access.op == SecretOp::kRead ? okReply(bj::string(*outcome)) : okReply(nullptr));
    }
    if (op == "context") {
      bj::value inner = bj::object{};
      if (auto* a = args->if_contains("args"); a && a->is_object()) inner = *a;
      auto r = host_.contextCall(account, json::getString(*args, "op"), json::dump(inner));
      if (!r) return reply(errReply(r.error()));
      auto v = json::parse(*r);
      return reply(v ? okReply(std::move(*v)) : errReply(v.error()));
    }
    if (op == "platform") {
      bj::value inner = bj::object{};
      if (auto* a = args->if_contains("args"); a && a->is_object()) inner = *a;
      PlatformCall call{account,
                        access.function,
                        access.request_id,
                        access.invoker,
                        json::getString(*args, "op"),
                        json::dump(inner)};
      auto r = host_.platformCall(call);
      if (!r) return reply(errReply(r.error()));
      auto v = json::parse(*r);
      return reply(v ? okReply(std::move(*v)) : errReply(v.error()));
    }
    if (op == "conversation") {
      auto r = host_.getConversation(account, json::getString(*args, "conversationId"));
      if (!r) return reply(errReply(r.error()));
      auto v = json::parse(*r);
      return reply(v ? okReply(std::move(*v)) : errReply(v.error()));
    }
    reply(errReply(Error{ErrorCode::kInvalid, "unknown host operation '" + op + "'"}));
  });
}

void Engine::doHttp(const Deployment& d, const std::string& args_json, SteadyTime deadline,
                    std::function<void(std::string)> reply) {
  auto args = json::parseObject(args_json);
  if (!args) return reply(errReply(args.error()));
  HttpRequest req;
  req.method = json::getString(*args, "method", "GET");
  req.url = json::getString(*args, "url");
  req.body = json::getString(*args, "body");
  if (auto* h = args->if_contains("headers"); h && h->is_array()) {
    for (auto& pair : h->as_array()) {
      if (!pair.is_array() || pair.as_array().size() != 2 || !pair.as_array()[0].is_string() ||
          !pair.as_array()[1].is_string())
        return reply(errReply(Error{ErrorCode::kInvalid, "headers must be name/value strings"}));
      auto& a = pair.as_array();
      req.headers.emplace_back(std::string(a[0].as_string()), std::string(a[1].as_string()));
    }
  }
  // What the function asked for is checked before anything else (and again by the client):
  // no CR/LF/NUL, no platform headers, bounded sizes.
  if (auto s = checkOutboundRequest(req.method, req.url, req.headers, req.body.size(),
                                    options_.http_max_body_bytes);
      !s)
    return reply(errReply(s.error()));
  bool has_ua = false;
  for (auto& [k, _] : req.headers) {
    std::string lk = k;
    for (auto& c : lk) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lk == "user-agent") has_ua = true;
  }
  if (!has_ua) req.headers.emplace_back("User-Agent", "LP-Lambda-" + d.function.str());
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  req.timeout = std::max(remaining, std::chrono::milliseconds(1));
  if (auto t = json::getInt(*args, "timeout", 0); t > 0)
    req.timeout = std::min(req.timeout, std::chrono::milliseconds(t));
  auto host = HttpClient::hostOf(req.url);
  if (!host) return reply(errReply(host.error()));
  auto statusReply = [](int status, std::string_view body) {
    return okReply(bj::object{{"statusCode", status}, {"headers", bj::object{}}, {"body", body}});
  };
  if (!rate_.tryAcquire(d.key)) {
    return reply(statusReply(429, "Too Many Requests: more than " +
                                      std::to_string(options_.http_rate_per_s) +
                                      " requests per second from this function\n"));
  }
  boost::asio::post(*host_pool_, [this, account = d.account, host = *host, req = std::move(req),
                                  reply = std::move(reply), statusReply]() mutable {
    auto list = host_.allowlist(account);
    if (!list) return reply(errReply(list.error()));
    if (!hostAllowed(host, *list)) return reply(statusReply(403, kForbiddenBody));
    // The client resolves the host once, checks every address against the address policy
    // and connects only to those addresses.
    http_->fetch(std::move(req), [reply = std::move(reply)](Result<HttpResponse> r) {
      if (!r) return reply(errReply(r.error()));
      bj::object headers;
      for (auto& [k, v] : r->headers) {
        std::string lk = k;
        for (auto& c : lk) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        headers[lk] = v;
      }
      reply(okReply(bj::object{{"statusCode", r->status},
                               {"headers", std::move(headers)},
                               {"body", std::move(r->body)}}));
    });
  });
}

}  // namespace parley::functions::engine
