#include "functions/engine/worker.h"

#include <poll.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "common/thread_name.h"
#include "functions/engine/sandbox.h"
#include "functions/engine/watchdog.h"

namespace parley::functions::engine {

namespace {

// Consumes a V8 Maybe/MaybeLocal whose emptiness is handled by the surrounding TryCatch.
template <class T>
void use(T&&) {}

constexpr std::size_t kMaxLogEntries = 10;
constexpr std::size_t kMaxLogChars = 6000;
constexpr int kJobsPerRound = 16;
// Largest Toolbelt request (operation + arguments) a function may send to the server.
constexpr std::size_t kMaxHostCallBytes = 16u << 20;
// Isolates one worker keeps; beyond, the least recently used idle one is disposed.
constexpr std::size_t kMaxIsolatesPerWorker = 32;

std::string toStd(v8::Isolate* iso, v8::Local<v8::Value> v) {
  v8::String::Utf8Value s(iso, v);
  return *s ? std::string(*s, s.length()) : std::string();
}

v8::Local<v8::String> v8Str(v8::Isolate* iso, std::string_view s) {
  return v8::String::NewFromUtf8(iso, s.data(), v8::NewStringType::kNormal,
                                 static_cast<int>(s.size()))
      .ToLocalChecked();
}

// "SyntaxError: Unexpected token '}' (line 3, column 5)".
std::string describeException(v8::Isolate* iso, v8::Local<v8::Context> ctx, v8::TryCatch& tc) {
  std::string text = tc.HasCaught() ? toStd(iso, tc.Exception()) : std::string("unknown error");
  v8::Local<v8::Message> msg = tc.Message();
  if (!msg.IsEmpty()) {
    int line = msg->GetLineNumber(ctx).FromMaybe(0);
    int col = msg->GetStartColumn(ctx).FromMaybe(0);
    if (line > 0)
      text += " (line " + std::to_string(line) + ", column " + std::to_string(col + 1) + ")";
  }
  return text;
}

// Near the heap cap: terminate the JS and give V8 room to finish what it is doing: builtins
// written in C++ (Array.prototype.fill, sort, JSON.parse, ...) check for termination only when
// they return to JS, and may need one more large allocation first. The first call grants half
// the limit (at least kMinOomHeadroom); a second means the JS keeps allocating without returning to
// JS, and V8 ends the process with a fatal OOM (in a worker process the server then fails its
// invocations and starts another). Filling `new Array(2 ** 26)` is such a case: the fill loop grows
// a dictionary and then a 512 MiB element store without returning to JS; with 1 GiB of headroom it
// was still growing past 2 GiB after two minutes, so a larger grant only delays the end.
constexpr std::size_t kMinOomHeadroom = 64u << 20;

std::size_t nearHeapLimit(void* data, std::size_t current, std::size_t /*initial*/) {
  auto* slot = static_cast<IsolateSlot*>(data);
  slot->oom = true;
  ++slot->near_limit_calls;
  slot->worker->noteTerminating();
  slot->isolate->TerminateExecution();
  if (slot->near_limit_calls > 1) return current;
  return current + std::max(current / 2, kMinOomHeadroom);
}

int g_fatal_fd = -1;

// V8 calls it instead of aborting on a fatal out-of-memory error; it must not return. No
// allocation: the heap (or the address space) is exhausted.
void onFatalOom(const char* location, bool is_heap_oom) {
  char frame[512];
  char text[400];
  int n = std::snprintf(
      text, sizeof text, "%s (%s)",
      is_heap_oom ? "the JavaScript heap is exhausted" : "the process is out of memory",
      location ? location : "");
  if (n < 0) n = 0;
  std::uint32_t len = static_cast<std::uint32_t>(std::min<int>(n, sizeof text - 1));
  std::uint32_t total = 1 + 4 + len;
  std::memcpy(frame, &total, 4);
  frame[4] = static_cast<char>(wire::Msg::kFatal);
  std::memcpy(frame + 5, &len, 4);
  std::memcpy(frame + 9, text, len);
  if (g_fatal_fd >= 0) {
    [[maybe_unused]] auto w = ::send(g_fatal_fd, frame, 9 + len, MSG_NOSIGNAL);
  }
  ::_exit(kExitOutOfMemory);
}

}  // namespace

void reportFatalErrorsTo(int fd) { g_fatal_fd = fd; }

v8::Platform& v8Platform() {
  // V8 permits exactly one platform per process, initialised once and never torn down.
  static v8::Platform* platform = [] {
    // Math.random seeds and address-space layout randomisation; V8 would otherwise read
    // /dev/urandom (not reachable in a sandboxed worker) or fall back to the time.
    v8::V8::SetEntropySource([](unsigned char* buffer, std::size_t length) {
      std::size_t off = 0;
      while (off < length) {
        ssize_t n = getrandom(buffer + off, length - off, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        off += static_cast<std::size_t>(n);
      }
      return true;
    });
    auto p = v8::platform::NewDefaultPlatform(2);
    v8::V8::InitializePlatform(p.get());
    v8::V8::Initialize();
    return p.release();
  }();
  return *platform;
}

// ---------------------------------------------------------------------------------------------
// CappedAllocator

CappedAllocator::CappedAllocator(std::size_t cap)
    : base_(v8::ArrayBuffer::Allocator::NewDefaultAllocator()), cap_(cap) {}

bool CappedAllocator::reserve(std::size_t n) {
  std::size_t used = used_.load();
  do {
    if (used + n > cap_) return false;
  } while (!used_.compare_exchange_weak(used, used + n));
  return true;
}

void* CappedAllocator::Allocate(std::size_t length) {
  if (!reserve(length)) return nullptr;
  void* p = base_->Allocate(length);
  if (!p) used_ -= length;
  return p;
}

void* CappedAllocator::AllocateUninitialized(std::size_t length) {
  if (!reserve(length)) return nullptr;
  void* p = base_->AllocateUninitialized(length);
  if (!p) used_ -= length;
  return p;
}

void CappedAllocator::Free(void* data, std::size_t length) {
  base_->Free(data, length);
  used_ -= length;
}

ContextEntry::~ContextEntry() {
  if (slot) --slot->live_entries;
}

// ---------------------------------------------------------------------------------------------
// Thread and loop

Worker::Worker(int fd, WorkerConfig config, Limits& limits, const Clock& clock,
               WorkerShared& shared)
    : fd_(fd), config_(std::move(config)), limits_(limits), clock_(clock), shared_(shared) {}

Worker::~Worker() = default;

void IsolateSlot::longTask() { worker->onLongTask(); }

void IsolateSlot::terminate() {
  worker->noteTerminating();
  isolate->TerminateExecution();
}

void Worker::send(std::string frame) {
  MutexLock lock(out_mu_);
  std::size_t off = 0;
  while (off < frame.size()) {
    ssize_t n = ::send(fd_, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the server is gone; run() sees EOF next
    off += static_cast<std::size_t>(n);
  }
}

bool Worker::readAvailable(std::vector<wire::Frame>& out) {
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      splitter_.append(buf, static_cast<std::size_t>(n));
      if (static_cast<std::size_t>(n) < sizeof buf) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    eof_ = true;
    break;
  }
  wire::Frame f;
  while (splitter_.next(f)) out.push_back(std::move(f));
  if (splitter_.bad()) eof_ = true;
  return !eof_;
}

bool Worker::waitReadable(SteadyTime until) {
  auto now = std::chrono::steady_clock::now();
  int timeout_ms = 0;
  if (until > now) {
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
    timeout_ms = static_cast<int>(std::min<std::int64_t>(ms, 100));
  }
  pollfd p{fd_, POLLIN, 0};
  int r = ::poll(&p, 1, timeout_ms);
  return r > 0;
}

void Worker::onLongTask() {
  std::vector<std::uint64_t> returned;
  {
    MutexLock lock(in_mu_);
    std::vector<wire::Frame> frames;
    readAvailable(frames);
    // Jobs received but not started go back to the server, which runs them on another worker;
    // everything else waits for the worker thread.
    while (auto t = tasks_.pop()) returned.push_back(t->id);
    for (auto& f : frames) {
      if (f.type == wire::Msg::kJob) {
        wire::Reader r(f.payload);
        returned.push_back(r.u64());
      } else {
        stash_.push_back(std::move(f));
      }
    }
  }
  if (!busy_sent_.exchange(true)) send(proto::busy(long_account_));
  if (!returned.empty()) send(proto::ids(wire::Msg::kReturned, returned));
}

void Worker::endLongTask() {
  if (busy_sent_.load(std::memory_order_relaxed) && busy_sent_.exchange(false))
    send(wire::Writer(wire::Msg::kFree).take());
}

void Worker::countRestart() { send(wire::Writer(wire::Msg::kRestarted).take()); }

void Worker::run() {
  v8Platform();
  pthread_getcpuclockid(pthread_self(), &cpu_clock_);
  shared_.js_tid.store(static_cast<std::int32_t>(::gettid()), std::memory_order_relaxed);
  send(wire::Writer(wire::Msg::kReady).take());
  std::vector<wire::Frame> frames;
  bool open = true;
  while (open) {
    frames.clear();
    {
      MutexLock lock(in_mu_);
      while (!stash_.empty()) {
        frames.push_back(std::move(stash_.front()));
        stash_.pop_front();
      }
      open = readAvailable(frames);
    }
    for (auto& f : frames) {
      if (!handleFrame(f)) open = false;
    }
    if (!open) break;
    auto now = std::chrono::steady_clock::now();
    // Deadlines before timers: a timer that fell due with (or after) its invocation's deadline,
    // seen late because the worker was busy, must not run the function past its limit.
    bool busy = expireDeadlines(now);
    expireGuests(now);
    busy |= runTimers(now);
    takeJobs();
    pumpPlatform();
    publishContexts();
    // Frames and jobs handled do not call for another round by themselves: the poll below
    // returns at once when more frames came meanwhile (one system call, where a read that finds
    // nothing and then the poll were two), jobs left over are in tasks_, and timers the jobs
    // set are in nextWake().
    if (busy) continue;
    {
      MutexLock lock(in_mu_);
      if (!tasks_.empty() || !stash_.empty()) continue;
    }
    waitReadable(nextWake());
  }
  // Shutdown: fail what is in flight, dispose isolates.
  std::vector<std::uint64_t> ids;
  for (auto& [id, _] : in_flight_) ids.push_back(id);
  for (auto id : ids) {
    auto it = in_flight_.find(id);
    if (it == in_flight_.end()) continue;
    setOutcome(*it->second, kErrUnavailable, "the function runtime is shutting down");
    complete(id);
  }
  while (!slots_.empty()) disposeSlot(slots_.back().get());
  deployments_.clear();
}

bool Worker::handleFrame(wire::Frame& f) {
  using wire::Msg;
  switch (f.type) {
    case Msg::kDeployment: {
      bool current = false;
      auto d = proto::parseDeployment(f.payload, &current);
      if (!d) return false;
      if (current) {
        // The key's new deployment: the others of the key are gone.
        std::string key = (*d)->key;
        std::uint64_t id = (*d)->id;
        current_deployment_[key] = id;
        std::erase_if(deployments_,
                      [&](const auto& kv) { return kv.second->key == key && kv.first != id; });
        sweep(key, id);
      }
      deployments_[(*d)->id] = std::move(*d);
      return true;
    }
    case Msg::kDrop: {
      wire::Reader r(f.payload);
      std::string key = r.str();
      std::uint64_t cur = r.u64();
      if (!r.ok()) return false;
      if (cur) {
        current_deployment_[key] = cur;
      } else {
        current_deployment_.erase(key);
      }
      std::erase_if(deployments_,
                    [&](const auto& kv) { return kv.second->key == key && kv.first != cur; });
      sweep(key, cur);
      return true;
    }
    case Msg::kUnhome: {
      wire::Reader r(f.payload);
      std::string key = r.str();
      if (!r.ok()) return false;
      const auto now = std::chrono::steady_clock::now();
      for (auto& s : slots_) {
        for (auto& [d, c] : s->contexts) {
          if (d->key != key || c->guest) continue;
          c->guest = true;
          c->last_start = now;
          next_guest_check_ = std::min(next_guest_check_, now + config_.guest_context_idle);
        }
      }
      return true;
    }
    case Msg::kForget: {
      wire::Reader r(f.payload);
      deployments_.erase(r.u64());
      return r.ok();
    }
    case Msg::kPrepare: {
      wire::Reader r(f.payload);
      std::uint64_t req = r.u64(), dep = r.u64();
      bool keep = r.u8() != 0;
      if (!r.ok()) return false;
      auto it = deployments_.find(dep);
      Status s;
      if (it == deployments_.end()) {
        s = makeError(ErrorCode::kInternal,
                      "the worker does not know deployment " + std::to_string(dep));
      } else {
        auto d = it->second;
        if (d->ephemeral) deployments_.erase(it);
        shared_.running.store(WorkerShared::kPrepareBit | req, std::memory_order_relaxed);
        s = prepare(d, keep);
        shared_.running.store(0, std::memory_order_relaxed);
        shared_.terminating.store(0, std::memory_order_relaxed);
      }
      send(proto::prepared(req, s));
      return true;
    }
    case Msg::kJob: {
      Task t;
      std::uint64_t dep = 0;
      if (!proto::parseJob(f.payload, &t, &dep)) return false;
      auto it = deployments_.find(dep);
      if (it == deployments_.end()) {
        InvokeResult r;
        r.error_code = std::string(kErrUnavailable);
        r.error_message = "the function worker does not know this deployment; retry";
        send(proto::result(t.id, r));
        return true;
      }
      t.deployment = it->second;
      if (it->second->ephemeral || !isCurrent(*it->second)) deployments_.erase(it);
      MutexLock lock(in_mu_);
      std::string key = t.deployment->key;
      tasks_.push(key, std::move(t), std::numeric_limits<std::size_t>::max(),
                  std::numeric_limits<std::size_t>::max());
      return true;
    }
    case Msg::kHostReply: {
      wire::Reader r(f.payload);
      std::uint64_t inv = r.u64(), call = r.u64();
      std::string json = r.str();
      if (!r.ok()) return false;
      completeCall(inv, call, std::move(json));
      return true;
    }
    case Msg::kProbe: {
      wire::Reader r(f.payload);
      std::string what = r.str();
      if (!r.ok() || !config_.probes) return false;
      send(wire::Writer(Msg::kProbed).str(probe(what)).take());
      return true;
    }
    default:
      return false;
  }
}

std::string Worker::probe(const std::string& what) { return sandbox::probe(what, fd_); }

void Worker::publishContexts() {
  std::size_t n = 0;
  for (auto& s : slots_) n += s->contexts.size();
  shared_.contexts.store(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
}

bool Worker::isCurrent(const Deployment& d) const {
  auto it = current_deployment_.find(d.key);
  return it != current_deployment_.end() && it->second == d.id;
}

SteadyTime Worker::nextWake() const {
  SteadyTime t = SteadyTime::max();
  if (!timers_.empty()) t = timers_.begin()->first.first;
  if (!deadlines_.empty()) t = std::min(t, deadlines_.begin()->first);
  return std::min(t, next_guest_check_);
}

void Worker::expireGuests(SteadyTime now) {
  if (now < next_guest_check_) return;
  next_guest_check_ = SteadyTime::max();
  const auto idle = config_.guest_context_idle;
  std::vector<IsolateSlot*> emptied;
  for (auto& s : slots_) {
    const std::size_t had = s->contexts.size();
    std::erase_if(s->contexts, [&](const auto& kv) {
      const ContextEntry& c = *kv.second;
      if (!c.guest) return false;
      if (c.in_flight == 0 && now - c.last_start >= idle) return true;
      next_guest_check_ =
          std::min(next_guest_check_, c.in_flight ? now + idle : c.last_start + idle);
      return false;
    });
    if (s->contexts.size() < had && s->contexts.empty()) emptied.push_back(s.get());
  }
  // An isolate that held only guest contexts is not needed here any more.
  for (IsolateSlot* s : emptied) {
    if (s->in_flight == 0 && s->live_entries == 0) disposeSlot(s);
  }
}

void Worker::pumpPlatform() {
  for (auto& s : slots_) {
    v8::Isolate::Scope is(s->isolate);
    v8::HandleScope hs(s->isolate);
    while (v8::platform::PumpMessageLoop(&v8Platform(), s->isolate,
                                         v8::platform::MessageLoopBehavior::kDoNotWait)) {
    }
  }
}

bool Worker::runTimers(SteadyTime now) {
  bool any = false;
  // Bounded per round so new jobs and completions interleave with busy intervals.
  for (int n = 0; n < 64 && !timers_.empty() && timers_.begin()->first.first <= now; ++n) {
    auto it = timers_.begin();
    std::uint64_t timer_id = it->first.second;
    SteadyTime it_due = it->first.first;
    TimerRec rec = it->second;
    timers_.erase(it);
    timer_due_.erase(timer_id);
    auto inv_it = in_flight_.find(rec.inv);
    if (inv_it == in_flight_.end()) continue;
    (void)now;
    if (rec.interval_ms > 0) {
      // From the previous due time (not now) so intervals keep their cadence.
      auto due =
          it_due + std::chrono::microseconds(static_cast<std::int64_t>(rec.interval_ms * 1000));
      timers_.emplace(std::make_pair(due, timer_id), rec);
      timer_due_[timer_id] = due;
    } else {
      inv_it->second->timers.erase(timer_id);
    }
    any = true;
    fireTimer(rec.inv, timer_id);
  }
  return any;
}

void Worker::fireTimer(std::uint64_t inv_id, std::uint64_t timer_id) {
  runJs(inv_id, [&](v8::Isolate* iso, v8::Local<v8::Context> ctx, Invocation& inv) {
    v8::Local<v8::Value> argv[] = {v8::Number::New(iso, static_cast<double>(timer_id))};
    use(inv.ctx->fire_timer.Get(iso)->Call(ctx, v8::Undefined(iso), 1, argv));
  });
}

bool Worker::expireDeadlines(SteadyTime now) {
  bool any = false;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    std::uint64_t id = deadlines_.begin()->second;
    auto it = in_flight_.find(id);
    if (it == in_flight_.end()) {
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    Invocation& inv = *it->second;
    setCallbackTimeout(inv);
    complete(id);
    any = true;
  }
  return any;
}

bool Worker::takeJobs() {
  bool any = false;
  // Jobs whose first task ended without a result: the server counts a job against its worker
  // until it hears that (a result says it too), so they are reported at once, in one frame.
  std::vector<std::uint64_t> waiting;
  for (int n = 0; n < kJobsPerRound; ++n) {
    Task job;
    {
      MutexLock lock(in_mu_);
      auto next = tasks_.pop();
      if (!next) break;
      job = std::move(*next);
    }
    any = true;
    std::uint64_t id = job.id;
    startJob(std::move(job));
    if (in_flight_.contains(id)) waiting.push_back(id);
  }
  if (!waiting.empty()) send(proto::ids(wire::Msg::kWaiting, waiting));
  return any;
}

// ---------------------------------------------------------------------------------------------
// Isolates

IsolateSlot* Worker::newSlot(const AccountId& account) {
  // Bound the isolates one worker holds: dispose the least recently used idle one.
  if (slots_.size() >= kMaxIsolatesPerWorker) {
    IsolateSlot* oldest = nullptr;
    for (auto& s : slots_) {
      if (s->retiring || s->in_flight > 0) continue;
      if (!oldest || s->last_used < oldest->last_used) oldest = s.get();
    }
    if (oldest) {
      oldest->retiring = true;
      oldest->contexts.clear();
      maybeDispose(oldest);
    }
  }
  auto slot = std::make_unique<IsolateSlot>();
  slot->worker = this;
  slot->account = account;
  std::size_t limit = config_.heap_limit_mb << 20;
  slot->heap_limit = limit;
  slot->allocator = std::make_unique<CappedAllocator>(limit);
  v8::Isolate::CreateParams params;
  params.array_buffer_allocator = slot->allocator.get();
  params.constraints.ConfigureDefaultsFromHeapSize(0, limit);
  slot->isolate = v8::Isolate::New(params);
  slot->locker.emplace(slot->isolate);
  v8::Isolate* iso = slot->isolate;
  v8::Isolate::Scope is(iso);
  v8::HandleScope hs(iso);
  iso->SetMicrotasksPolicy(v8::MicrotasksPolicy::kExplicit);
  iso->SetAllowAtomicsWait(false);
  iso->AddNearHeapLimitCallback(nearHeapLimit, slot.get());
  if (g_fatal_fd >= 0) iso->SetOOMErrorHandler(onFatalOom);
  // Compile the bootstrap and the lambda getter once per isolate.
  v8::ScriptOrigin origin(iso, v8Str(iso, "parley:bootstrap.js"));
  v8::ScriptCompiler::Source src(v8Str(iso, bindings::kBootstrapJs), origin);
  auto boot = v8::ScriptCompiler::CompileUnboundScript(iso, &src);
  PARLEY_CHECK(!boot.IsEmpty(), "bootstrap.js must compile");
  slot->bootstrap.Reset(iso, boot.ToLocalChecked());
  v8::ScriptCompiler::Source gsrc(v8Str(iso, "typeof lambda === 'function' ? lambda : undefined"),
                                  v8::ScriptOrigin(iso, v8Str(iso, "parley:lambda")));
  slot->getter.Reset(iso, v8::ScriptCompiler::CompileUnboundScript(iso, &gsrc).ToLocalChecked());
  slot->natives.Reset(iso, bindings::nativesTemplate(*slot));
  slots_.push_back(std::move(slot));
  return slots_.back().get();
}

void Worker::disposeSlot(IsolateSlot* slot) {
  slot->contexts.clear();
  PARLEY_CHECK(slot->in_flight == 0 && slot->live_entries == 0, "disposing a slot in use");
  {
    v8::Isolate::Scope is(slot->isolate);
    slot->bootstrap.Reset();
    slot->getter.Reset();
    slot->natives.Reset();
    slot->modules.clear();
  }
  slot->locker.reset();
  slot->isolate->Dispose();
  std::erase_if(slots_, [&](const auto& s) { return s.get() == slot; });
}

void Worker::maybeDispose(IsolateSlot* slot) {
  if (slot->retiring && slot->in_flight == 0 && slot->live_entries == 0) disposeSlot(slot);
}

void Worker::retire(IsolateSlot* slot) {
  if (!slot->retiring) {
    slot->retiring = true;
    countRestart();
  }
  slot->contexts.clear();
}

IsolateSlot* Worker::slotFor(const Deployment& d, std::shared_ptr<ContextEntry>* warm) {
  ++use_counter_;
  if (!d.ephemeral) {
    for (auto& s : slots_) {
      if (s->retiring) continue;
      auto it = s->contexts.find(&d);
      if (it != s->contexts.end()) {
        *warm = it->second;
        s->last_used = use_counter_;
        return s.get();
      }
    }
  }
  // Only an isolate of the same account: accounts never share a heap.
  for (auto& s : slots_) {
    if (!s->retiring && s->account == d.account &&
        s->contexts.size() < config_.max_contexts_per_isolate) {
      s->last_used = use_counter_;
      return s.get();
    }
  }
  IsolateSlot* slot = newSlot(d.account);
  slot->last_used = use_counter_;
  return slot;
}

Result<std::shared_ptr<ContextEntry>> Worker::makeContext(
    IsolateSlot* slot, const std::shared_ptr<const Deployment>& d, SteadyTime deadline) {
  v8::Isolate* iso = slot->isolate;
  auto entry = std::make_shared<ContextEntry>();
  entry->slot = slot;
  ++slot->live_entries;
  entry->deployment = d;
  Status status;
  bool terminated = false;
  {
    v8::Isolate::Scope is(iso);
    v8::HandleScope hs(iso);
    v8::Local<v8::Context> ctx = v8::Context::New(iso);
    ctx->AllowCodeGenerationFromStrings(false);
    v8::Context::Scope cs(ctx);
    Invocation* saved = current_;
    current_ = nullptr;
    long_account_ = d->account.str();
    auto scope = limits_.enterJs(*slot, deadline);
    {
      v8::TryCatch tc(iso);
      auto fail = [&](std::string msg) {
        if (tc.HasTerminated() || iso->IsExecutionTerminating()) {
          terminated = true;
          return;
        }
        status = makeError(ErrorCode::kScriptError, std::move(msg));
      };
      do {
        v8::Local<v8::Object> natives;
        if (!slot->natives.Get(iso)->NewInstance(ctx).ToLocal(&natives)) {
          fail("cannot create natives");
          break;
        }
        v8::Local<v8::Object> env = v8::Object::New(iso);
        for (const auto& e : d->env) use(env->Set(ctx, v8Str(iso, e.key), v8Str(iso, e.value)));
        use(env->Set(ctx, v8Str(iso, "BRAND_ID"), v8Str(iso, d->account.str())));
        use(env->Set(ctx, v8Str(iso, "LAMBDA_UUID"), v8Str(iso, d->function.str())));
        v8::Local<v8::Value> boot_fn;
        if (!slot->bootstrap.Get(iso)->BindToCurrentContext()->Run(ctx).ToLocal(&boot_fn) ||
            !boot_fn->IsFunction()) {
          fail("bootstrap failed: " + describeException(iso, ctx, tc));
          break;
        }
        v8::Local<v8::Value> argv[] = {natives, env};
        v8::Local<v8::Value> api_v;
        if (!boot_fn.As<v8::Function>()->Call(ctx, v8::Undefined(iso), 2, argv).ToLocal(&api_v) ||
            !api_v->IsObject()) {
          fail("bootstrap failed: " + describeException(iso, ctx, tc));
          break;
        }
        auto api = api_v.As<v8::Object>();
        auto getFn = [&](const char* name) -> v8::Local<v8::Function> {
          v8::Local<v8::Value> v;
          if (!api->Get(ctx, v8Str(iso, name)).ToLocal(&v) || !v->IsFunction()) return {};
          return v.As<v8::Function>();
        };
        auto run = getFn("run"), fire = getFn("fireTimer"), drop = getFn("dropTimers"),
             set_lambda = getFn("setLambda");
        PARLEY_CHECK(!run.IsEmpty() && !fire.IsEmpty() && !drop.IsEmpty() && !set_lambda.IsEmpty(),
                     "bootstrap API");
        // The function's code, as a classic script so top-level declarations are globals.
        v8::ScriptOrigin origin(iso, v8Str(iso, "index.js"));
        v8::Local<v8::Script> script;
        if (!v8::Script::Compile(ctx, v8Str(iso, d->code), &origin).ToLocal(&script)) {
          fail(describeException(iso, ctx, tc));
          break;
        }
        if (script->Run(ctx).IsEmpty()) {
          fail("the top-level code threw: " + describeException(iso, ctx, tc));
          break;
        }
        iso->PerformMicrotaskCheckpoint();
        if (iso->IsExecutionTerminating()) {
          terminated = true;
          break;
        }
        v8::Local<v8::Value> lambda;
        if (!slot->getter.Get(iso)->BindToCurrentContext()->Run(ctx).ToLocal(&lambda) ||
            !lambda->IsFunction()) {
          fail(tc.HasCaught() ? describeException(iso, ctx, tc)
                              : "the code must define a top-level function named 'lambda': "
                                "function lambda(input, callback) { ... }");
          break;
        }
        v8::Local<v8::Value> largv[] = {lambda};
        if (set_lambda->Call(ctx, v8::Undefined(iso), 1, largv).IsEmpty()) {
          fail(describeException(iso, ctx, tc));
          break;
        }
        entry->context.Reset(iso, ctx);
        entry->run.Reset(iso, run);
        entry->fire_timer.Reset(iso, fire);
        entry->drop_timers.Reset(iso, drop);
      } while (false);
      if (tc.HasTerminated()) terminated = true;
    }
    terminated = scope.exit() || terminated || slot->oom;
    current_ = saved;
  }
  endLongTask();
  if (terminated) {
    iso->CancelTerminateExecution();
    bool oom = slot->oom;
    entry.reset();
    if (oom) {
      // Nothing else can safely run in this heap: fail everything on it.
      retire(slot);
      std::vector<std::uint64_t> ids;
      for (auto& [id, inv] : in_flight_)
        if (inv->slot == slot) ids.push_back(id);
      for (auto id : ids) {
        auto& inv = *in_flight_.at(id);
        setOutcome(inv, kErrUnavailable,
                   "the function instance ran out of memory and was restarted");
        complete(id);
      }
    } else {
      retire(slot);
    }
    maybeDispose(slot);
    if (oom) {
      return makeError(ErrorCode::kLimitExceeded,
                       "the top-level code exceeded the memory limit of " +
                           std::to_string(config_.heap_limit_mb) + " MB");
    }
    return makeError(ErrorCode::kTimeout, "the top-level code did not finish in time");
  }
  if (!status) return std::unexpected(status.error());
  return entry;
}

void Worker::sweep(const std::string& key, std::uint64_t current) {
  for (auto& s : slots_) {
    std::erase_if(s->contexts, [&](const auto& kv) {
      return kv.second->deployment->key == key && kv.second->deployment->id != current;
    });
  }
  std::vector<IsolateSlot*> all;
  for (auto& s : slots_) all.push_back(s.get());
  for (auto* s : all) maybeDispose(s);
}

Status Worker::prepare(const std::shared_ptr<const Deployment>& d, bool keep) {
  std::shared_ptr<ContextEntry> warm;
  IsolateSlot* slot = slotFor(*d, &warm);
  if (warm) return {};
  auto deadline = std::chrono::steady_clock::now() + config_.deploy_deadline;
  auto entry = makeContext(slot, d, deadline);
  if (!entry) return std::unexpected(entry.error());
  if (keep) slot->contexts[d.get()] = std::move(*entry);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Invocations

void Worker::finishJob(Task& job, InvokeResult result) { send(proto::result(job.id, result)); }

void Worker::startJob(Task job) {
  auto now = std::chrono::steady_clock::now();
  if (now >= job.deadline) {
    finishJob(job, errorResult(kErrTimeExceeded,
                               "the invocation waited in the queue past its deadline of " +
                                   std::to_string(job.budget_ms) + " ms"));
    return;
  }
  std::shared_ptr<ContextEntry> entry;
  IsolateSlot* slot = slotFor(*job.deployment, &entry);
  if (!entry) {
    auto made = makeContext(slot, job.deployment, job.deadline);
    if (!made) {
      const Error& e = made.error();
      std::string_view code = e.code == ErrorCode::kTimeout         ? kErrTimeExceeded
                              : e.code == ErrorCode::kLimitExceeded ? kErrRuntimeException
                                                                    : kErrRuntimeException;
      finishJob(job, errorResult(code, e.message));
      return;
    }
    entry = std::move(*made);
    if (!job.deployment->ephemeral && isCurrent(*job.deployment)) {
      slot->contexts[job.deployment.get()] = entry;
    }
  }
  // A context becomes a guest when this worker runs the function away from its home, and stops
  // being one when the function is at home here (again).
  entry->guest = !job.home;
  if (entry->guest) {
    entry->last_start = now;
    next_guest_check_ = std::min(next_guest_check_, now + config_.guest_context_idle);
  }
  auto inv = std::make_unique<Invocation>();
  std::uint64_t id = job.id;
  inv->id = id;
  inv->slot = slot;
  inv->ctx = entry;
  inv->job = std::move(job);
  inv->deadline_it = deadlines_.emplace(inv->job.deadline, id);
  ++slot->in_flight;
  ++entry->in_flight;
  const std::string& input = inv->job.input_json;
  in_flight_.emplace(id, std::move(inv));
  runJs(id, [&](v8::Isolate* iso, v8::Local<v8::Context> ctx, Invocation& i) {
    v8::Local<v8::Value> argv[] = {v8::Number::New(iso, static_cast<double>(id)),
                                   v8Str(iso, input)};
    use(i.ctx->run.Get(iso)->Call(ctx, v8::Undefined(iso), 2, argv));
  });
}

template <class F>
void Worker::runJs(std::uint64_t inv_id, F&& body) {
  auto it = in_flight_.find(inv_id);
  if (it == in_flight_.end()) return;
  Invocation& inv = *it->second;
  if (std::chrono::steady_clock::now() >= inv.job.deadline) {
    // Past its deadline before the JS started (the worker was busy elsewhere): a timeout of the
    // callback, without entering JS only to have the limits terminate it and restart the isolate.
    setCallbackTimeout(inv);
    complete(inv_id);
    return;
  }
  IsolateSlot* slot = inv.slot;
  v8::Isolate* iso = slot->isolate;
  bool terminated = false;
  const bool cpu_limited = config_.cpu_limit.count() > 0;
  auto cpu0 = cpuNow(cpu_clock_);
  {
    v8::Isolate::Scope is(iso);
    v8::HandleScope hs(iso);
    v8::Local<v8::Context> ctx = inv.ctx->context.Get(iso);
    v8::Context::Scope cs(ctx);
    current_ = &inv;
    long_account_ = inv.job.deployment->account.str();
    shared_.running.store(inv_id, std::memory_order_relaxed);
    CpuBudget budget{cpu_clock_, cpu0,
                     std::max(std::chrono::nanoseconds(1),
                              std::chrono::nanoseconds(config_.cpu_limit) - inv.cpu)};
    auto scope = limits_.enterJs(*slot, inv.job.deadline, cpu_limited ? &budget : nullptr);
    {
      v8::TryCatch tc(iso);
      body(iso, ctx, inv);
      if (tc.HasCaught() && !tc.HasTerminated() && !inv.has_outcome) {
        // An exception escaped a timer callback: in Node it would crash the instance.
        setOutcome(inv, kErrRuntimeException,
                   "uncaught exception: " + describeException(iso, ctx, tc));
      }
      if (!tc.HasTerminated() && !iso->IsExecutionTerminating()) iso->PerformMicrotaskCheckpoint();
      terminated = tc.HasTerminated() || iso->IsExecutionTerminating();
    }
    terminated = scope.exit() || terminated || slot->oom;
    shared_.running.store(0, std::memory_order_relaxed);
    shared_.terminating.store(0, std::memory_order_relaxed);
    current_ = nullptr;
  }
  inv.cpu += cpuNow(cpu_clock_) - cpu0;
  endLongTask();
  if (terminated) {
    onTerminated(slot, inv_id, cpu_limited && inv.cpu >= config_.cpu_limit);
    return;
  }
  afterTask(inv_id);
}

void Worker::afterTask(std::uint64_t inv_id) {
  std::vector<std::uint64_t> finish;
  finish.swap(to_finish_);
  auto it = in_flight_.find(inv_id);
  if (it != in_flight_.end()) {
    Invocation& inv = *it->second;
    if (!inv.has_outcome && inv.timers.empty() && inv.calls.empty()) {
      setOutcome(inv, kErrTimeExceeded,
                 "the function did not call callback and has nothing pending (no timers, "
                 "promises or requests), so it never will");
    }
    if (inv.has_outcome) finish.push_back(inv_id);
  }
  for (auto id : finish) {
    if (in_flight_.count(id)) complete(id);
  }
}

void Worker::onTerminated(IsolateSlot* slot, std::uint64_t inv_id, bool cpu_exhausted) {
  slot->isolate->CancelTerminateExecution();
  to_finish_.clear();
  bool oom = slot->oom;
  auto it = in_flight_.find(inv_id);
  if (it != in_flight_.end()) {
    Invocation& inv = *it->second;
    if (oom) {
      setOutcome(inv, kErrRuntimeException,
                 "the function ran out of memory (heap limit " +
                     std::to_string(config_.heap_limit_mb) + " MB) and was stopped");
    } else if (cpu_exhausted) {
      setOutcome(inv, kErrTimeExceeded,
                 "the function used more than its CPU time limit of " +
                     std::to_string(config_.cpu_limit.count()) + " ms and was terminated");
    } else {
      setOutcome(inv, kErrTimeExceeded,
                 "the function ran longer than its execution time limit of " +
                     std::to_string(inv.job.budget_ms) + " ms and was terminated");
    }
    complete(inv_id);
  }
  retire(slot);
  if (oom) {
    std::vector<std::uint64_t> ids;
    for (auto& [id, inv] : in_flight_)
      if (inv->slot == slot) ids.push_back(id);
    for (auto id : ids) {
      setOutcome(*in_flight_.at(id), kErrUnavailable,
                 "the function instance was restarted because an invocation ran out of memory");
      complete(id);
    }
  }
  maybeDispose(slot);
}

void Worker::setCallbackTimeout(Invocation& inv) {
  setOutcome(inv, kErrTimeExceeded,
             "the function did not call callback within the execution time limit of " +
                 std::to_string(inv.job.budget_ms) + " ms");
}

void Worker::setOutcome(Invocation& inv, std::string_view code, std::string message) {
  if (inv.has_outcome) return;
  inv.has_outcome = true;
  inv.outcome = InvokeResult{};
  if (code.empty()) {
    inv.outcome.ok = true;
  } else {
    inv.outcome.error_code = std::string(code);
    inv.outcome.error_message = std::move(message);
  }
}

void Worker::complete(std::uint64_t inv_id) {
  auto node = in_flight_.extract(inv_id);
  if (node.empty()) return;
  std::unique_ptr<Invocation> inv = std::move(node.mapped());
  deadlines_.erase(inv->deadline_it);
  IsolateSlot* slot = inv->slot;
  if (!inv->timers.empty()) {
    std::vector<std::uint64_t> ids(inv->timers.begin(), inv->timers.end());
    for (auto t : ids) {
      auto due = timer_due_.find(t);
      if (due != timer_due_.end()) {
        timers_.erase({due->second, t});
        timer_due_.erase(due);
      }
    }
    if (!slot->retiring) {
      // Drop the JS side of the timers (bounded: the JS is ours, built-ins captured).
      v8::Isolate* iso = slot->isolate;
      v8::Isolate::Scope is(iso);
      v8::HandleScope hs(iso);
      v8::Local<v8::Context> ctx = inv->ctx->context.Get(iso);
      v8::Context::Scope cs(ctx);
      auto scope =
          limits_.enterJs(*slot, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
      v8::TryCatch tc(iso);
      auto arr = v8::Array::New(iso, static_cast<int>(ids.size()));
      for (std::size_t i = 0; i < ids.size(); ++i)
        use(arr->Set(ctx, static_cast<std::uint32_t>(i),
                     v8::Number::New(iso, static_cast<double>(ids[i]))));
      v8::Local<v8::Value> argv[] = {arr};
      use(inv->ctx->drop_timers.Get(iso)->Call(ctx, v8::Undefined(iso), 1, argv));
      if (scope.exit() || tc.HasTerminated()) {
        iso->CancelTerminateExecution();
        retire(slot);
      }
    }
  }
  if (!inv->has_outcome) setOutcome(*inv, kErrUnavailable, "the invocation was abandoned");
  InvokeResult result = std::move(inv->outcome);
  if (inv->logs.overflow) {
    result.logs.clear();
    result.logs.push_back(LogEntry{"Error",
                                   std::string(kErrLogLimit) + ": the invocation wrote more than " +
                                       std::to_string(kMaxLogEntries) + " log entries or " +
                                       std::to_string(kMaxLogChars) +
                                       " characters; its logs were dropped",
                                   "[]", clock_.nowMs()});
  } else {
    result.logs = std::move(inv->logs.entries);
  }
  --slot->in_flight;
  --inv->ctx->in_flight;
  result.cpu_ms = std::chrono::duration<double, std::milli>(inv->cpu).count();
  Task job = std::move(inv->job);
  {
    // Globals (promise resolvers, the context) are released with the isolate entered.
    v8::Isolate::Scope is(slot->isolate);
    inv.reset();
  }
  finishJob(job, std::move(result));
  maybeDispose(slot);
}

void Worker::addLog(Invocation& inv, const char* level, std::string message, std::string extras) {
  if (inv.logs.overflow) return;
  std::size_t chars = message.size() + (extras == "[]" ? 0 : extras.size());
  if (inv.logs.entries.size() + 1 > kMaxLogEntries || inv.logs.chars + chars > kMaxLogChars) {
    inv.logs.overflow = true;
    inv.logs.entries.clear();
    return;
  }
  inv.logs.chars += chars;
  inv.logs.entries.push_back(
      LogEntry{level, std::move(message), std::move(extras), clock_.nowMs()});
}

// ---------------------------------------------------------------------------------------------
// Natives

void Worker::nativeLog(int level, std::string message, std::string extras_json) {
  if (!current_) return;  // top-level code at deploy time: not an invocation
  static const char* const kLevels[] = {"Debug", "Info", "Warn", "Error"};
  level = std::clamp(level, 0, 3);
  if (level == 0 && current_->job.mode == InvokeMode::kProduction) return;
  addLog(*current_, kLevels[level], std::move(message), std::move(extras_json));
}

Result<std::uint64_t> Worker::nativeTimer(double ms, bool repeat) {
  if (!current_) {
    return invalid(
        "timers can only be started while the function is being invoked (inside lambda)");
  }
  if (current_->timers.size() >= config_.max_timers_per_invocation) {
    return makeError(ErrorCode::kLimitExceeded,
                     "too many pending timers (limit " +
                         std::to_string(config_.max_timers_per_invocation) + ")");
  }
  std::uint64_t id = next_timer_id_++;
  auto due = std::chrono::steady_clock::now() +
             std::chrono::microseconds(static_cast<std::int64_t>(ms * 1000));
  timers_.emplace(std::make_pair(due, id), TimerRec{current_->id, repeat ? std::max(ms, 1.0) : 0});
  timer_due_[id] = due;
  current_->timers.insert(id);
  return id;
}

void Worker::nativeClearTimer(std::uint64_t id) {
  auto due = timer_due_.find(id);
  if (due == timer_due_.end()) return;
  auto t = timers_.find({due->second, id});
  if (t != timers_.end()) {
    auto inv = in_flight_.find(t->second.inv);
    if (inv != in_flight_.end()) inv->second->timers.erase(id);
    timers_.erase(t);
  }
  timer_due_.erase(due);
}

void Worker::nativeDone(std::uint64_t id, int kind, int source, std::string message,
                        std::string json) {
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  Invocation& inv = *it->second;
  if (inv.has_outcome) {
    if (source == 0 && inv.outcome_from_callback) {
      addLog(inv, "Warn", "callback was called more than once; only the first call counts", "[]");
    }
    return;
  }
  switch (kind) {
    case 0:
      setOutcome(inv, "", "");
      inv.outcome.result_json = std::move(json);
      break;
    case 1:
      setOutcome(inv, kErrRuntimeException, std::move(message));
      break;
    case 2:
      setOutcome(inv, kErrCustomFailure, std::move(message));
      break;
    case 3:
      addLog(inv, "Warn",
             "the function failed with an error in an incorrect format (expected an Error "
             "object): " +
                 message,
             "[]");
      setOutcome(inv, kErrCustomFailure, std::move(message));
      break;
    case 4:
      setOutcome(inv, kErrRuntimeException,
                 "the result passed to callback is not JSON-serialisable: " + message);
      break;
    case 6:
      setOutcome(inv, kErrBadInput, "the invocation input is not valid JSON: " + message);
      break;
    default:
      setOutcome(inv, kErrRuntimeException, std::move(message));
      break;
  }
  inv.outcome_from_callback = source == 0;
  to_finish_.push_back(id);
}

v8::MaybeLocal<v8::Promise> Worker::nativeCall(IsolateSlot& slot, v8::Local<v8::Context> ctx,
                                               std::string op, std::string args_json) {
  v8::Isolate* iso = slot.isolate;
  if (!current_) {
    iso->ThrowException(v8::Exception::Error(
        v8Str(iso, "Toolbelt calls can only be made while the function is being invoked")));
    return {};
  }
  if (op.size() + args_json.size() > kMaxHostCallBytes) {
    iso->ThrowException(v8::Exception::RangeError(v8Str(
        iso, "the Toolbelt request is " + std::to_string(op.size() + args_json.size()) +
                 " bytes; at most " + std::to_string(kMaxHostCallBytes) + " bytes can be sent")));
    return {};
  }
  v8::Local<v8::Promise::Resolver> resolver;
  if (!v8::Promise::Resolver::New(ctx).ToLocal(&resolver)) return {};
  std::uint64_t call_id = next_call_id_++;
  current_->calls.emplace(call_id, v8::Global<v8::Promise::Resolver>(iso, resolver));
  // The server runs it (it holds the secrets, the store and the network) and answers with a
  // kHostReply that completeCall() resolves.
  send(proto::hostCall(current_->id, call_id, op, args_json));
  return resolver->GetPromise();
}

void Worker::completeCall(std::uint64_t inv_id, std::uint64_t call_id, std::string json) {
  auto it = in_flight_.find(inv_id);
  if (it == in_flight_.end()) return;
  auto call = it->second->calls.find(call_id);
  if (call == it->second->calls.end()) return;
  runJs(inv_id, [&](v8::Isolate* iso, v8::Local<v8::Context> ctx, Invocation& inv) {
    auto c = inv.calls.find(call_id);
    v8::Local<v8::Promise::Resolver> resolver = c->second.Get(iso);
    inv.calls.erase(c);
    use(resolver->Resolve(ctx, v8Str(iso, json)));
  });
}

v8::MaybeLocal<v8::Value> Worker::loadModule(IsolateSlot& slot, v8::Local<v8::Context> ctx,
                                             const std::string& name) {
  v8::Isolate* iso = slot.isolate;
  auto it = slot.modules.find(name);
  if (it == slot.modules.end()) {
    std::string source;
    std::string origin_name;
    if (name == "toolbelt") {
      source = bindings::kToolbeltJs;
      origin_name = "lp-faas-toolbelt.js";
    } else {
      auto lib = config_.libs.find(name);
      if (lib == config_.libs.end()) {
        iso->ThrowException(v8::Exception::Error(v8Str(
            iso, "module '" + name + "' is not installed on this server (run tools/setup.sh)")));
        return {};
      }
      source =
          "(function (exports, require, module, __filename, __dirname) {" + lib->second + "\n})";
      origin_name = "node_modules/" + name + ".js";
    }
    v8::ScriptOrigin origin(iso, v8Str(iso, origin_name));
    v8::ScriptCompiler::Source src(v8Str(iso, source), origin);
    v8::Local<v8::UnboundScript> script;
    if (!v8::ScriptCompiler::CompileUnboundScript(iso, &src).ToLocal(&script)) return {};
    it = slot.modules.emplace(name, v8::Global<v8::UnboundScript>(iso, script)).first;
  }
  return it->second.Get(iso)->BindToCurrentContext()->Run(ctx);
}

}  // namespace parley::functions::engine
