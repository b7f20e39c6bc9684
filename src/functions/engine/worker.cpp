#include "functions/engine/worker.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common/thread_name.h"

namespace parley::functions::engine {

namespace {

// Consumes a V8 Maybe/MaybeLocal whose emptiness is handled by the surrounding TryCatch.
template <class T>
void use(T&&) {}

constexpr std::size_t kMaxLogEntries = 10;
constexpr std::size_t kMaxLogChars = 6000;
constexpr int kJobsPerRound = 16;

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

std::size_t nearHeapLimit(void* data, std::size_t current, std::size_t /*initial*/) {
  auto* slot = static_cast<IsolateSlot*>(data);
  slot->oom = true;
  ++slot->near_limit_calls;
  slot->isolate->TerminateExecution();
  // Raise the limit a little so V8 can finish the allocation and unwind to the termination.
  return current + std::max<std::size_t>(current / 2, 16u << 20);
}

}  // namespace

v8::Platform& v8Platform() {
  // V8 permits exactly one platform per process, initialised once and never torn down.
  static v8::Platform* platform = [] {
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

Worker::Worker(Engine& engine, int index) : engine_(engine), index_(index) {}

Worker::~Worker() { stop(); }

void Worker::start() {
  thread_ = std::thread([this] {
    nameThisThread("fn-worker-" + std::to_string(index_));
    loop();
  });
}

void Worker::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Worker::post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    posted_.push_back(std::move(task));
  }
  cv_.notify_one();
}

bool Worker::wake(WakeMode mode) {
  bool sleeping;
  {
    std::lock_guard lock(mu_);
    wake_ = true;
    sleeping = sleeping_;
  }
  // A busy worker sees wake_ before it sleeps; only a sleeping one needs the (costly) notify.
  if (sleeping && mode == WakeMode::kNotifyIfSleeping) cv_.notify_one();
  return sleeping;
}

void Worker::loop() {
  v8Platform();
  for (;;) {
    {
      std::lock_guard lock(mu_);
      wake_ = false;
      if (stop_) break;
    }
    bool busy = runPosted();
    auto now = std::chrono::steady_clock::now();
    // Deadlines before timers: a timer that fell due with (or after) its invocation's deadline,
    // seen late because the worker was busy, must not run the function past its limit.
    busy |= expireDeadlines(now);
    busy |= runTimers(now);
    busy |= takeJobs();
    pumpPlatform();
    if (busy) continue;
    std::unique_lock lock(mu_);
    if (posted_.empty() && !wake_ && !stop_) {
      SteadyTime until =
          std::min(nextWake(), std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
      sleeping_ = true;
      cv_.wait_until(lock, until, [&] { return !posted_.empty() || wake_ || stop_; });
      sleeping_ = false;
    }
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
  {
    std::lock_guard lock(mu_);
    posted_.clear();
  }
  while (!slots_.empty()) disposeSlot(slots_.back().get());
}

bool Worker::runPosted() {
  std::deque<std::function<void()>> tasks;
  {
    std::lock_guard lock(mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
  return !tasks.empty();
}

SteadyTime Worker::nextWake() const {
  SteadyTime t = SteadyTime::max();
  if (!timers_.empty()) t = timers_.begin()->first.first;
  if (!deadlines_.empty()) t = std::min(t, deadlines_.begin()->first);
  return t;
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
  for (int n = 0; n < kJobsPerRound; ++n) {
    if (in_flight_.size() >= engine_.options().max_in_flight_per_worker) break;
    auto job = engine_.popJob();
    if (!job) break;
    any = true;
    startJob(std::move(*job));
  }
  return any;
}

// ---------------------------------------------------------------------------------------------
// Isolates

IsolateSlot* Worker::newSlot() {
  auto slot = std::make_unique<IsolateSlot>();
  slot->worker = this;
  std::size_t limit = engine_.options().heap_limit_mb << 20;
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
    engine_.countRestart();
  }
  slot->contexts.clear();
}

IsolateSlot* Worker::slotFor(const Deployment& d, std::shared_ptr<ContextEntry>* warm) {
  if (!d.ephemeral) {
    for (auto& s : slots_) {
      if (s->retiring) continue;
      auto it = s->contexts.find(&d);
      if (it != s->contexts.end()) {
        *warm = it->second;
        return s.get();
      }
    }
  }
  for (auto& s : slots_) {
    if (!s->retiring && s->contexts.size() < engine_.options().max_contexts_per_isolate)
      return s.get();
  }
  return newSlot();
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
    auto scope = engine_.limits().enterJs(*slot, deadline);
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
                           std::to_string(engine_.options().heap_limit_mb) + " MB");
    }
    return makeError(ErrorCode::kTimeout, "the top-level code did not finish in time");
  }
  if (!status) return std::unexpected(status.error());
  return entry;
}

void Worker::sweep(const std::string& key, const Deployment* current) {
  for (auto& s : slots_) {
    std::erase_if(s->contexts, [&](const auto& kv) {
      // Re-check against the table: a later deploy of the same key may already be current.
      return kv.first != current && kv.second->deployment->key == key &&
             !engine_.isCurrent(*kv.second->deployment);
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
  auto deadline = std::chrono::steady_clock::now() + engine_.options().deploy_deadline;
  auto entry = makeContext(slot, d, deadline);
  if (!entry) return std::unexpected(entry.error());
  if (keep) slot->contexts[d.get()] = std::move(*entry);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Invocations

void Worker::finishJob(Job& job, InvokeResult result) {
  result.duration_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - job.start)
          .count();
  engine_.countFinished(result);
  if (job.done) job.done(std::move(result));
}

void Worker::startJob(Job job) {
  auto now = std::chrono::steady_clock::now();
  if (now >= job.deadline) {
    finishJob(job, errorResult(kErrTimeExceeded,
                               "the invocation waited in the queue past its deadline of " +
                                   std::to_string(job.request.deadline.count()) + " ms"));
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
    if (!job.deployment->ephemeral && engine_.isCurrent(*job.deployment)) {
      slot->contexts[job.deployment.get()] = entry;
    }
  }
  auto inv = std::make_unique<Invocation>();
  std::uint64_t id = next_id_++;
  inv->id = id;
  inv->slot = slot;
  inv->ctx = entry;
  inv->job = std::move(job);
  inv->deadline_it = deadlines_.emplace(inv->job.deadline, id);
  ++slot->in_flight;
  ++entry->in_flight;
  engine_.countInFlight(1);
  const std::string& input = inv->job.request.input_json;
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
  {
    v8::Isolate::Scope is(iso);
    v8::HandleScope hs(iso);
    v8::Local<v8::Context> ctx = inv.ctx->context.Get(iso);
    v8::Context::Scope cs(ctx);
    current_ = &inv;
    auto scope = engine_.limits().enterJs(*slot, inv.job.deadline);
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
    current_ = nullptr;
  }
  if (terminated) {
    onTerminated(slot, inv_id);
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

void Worker::onTerminated(IsolateSlot* slot, std::uint64_t inv_id) {
  slot->isolate->CancelTerminateExecution();
  to_finish_.clear();
  bool oom = slot->oom;
  auto it = in_flight_.find(inv_id);
  if (it != in_flight_.end()) {
    Invocation& inv = *it->second;
    if (oom) {
      setOutcome(inv, kErrRuntimeException,
                 "the function ran out of memory (heap limit " +
                     std::to_string(engine_.options().heap_limit_mb) + " MB) and was stopped");
    } else {
      setOutcome(inv, kErrTimeExceeded,
                 "the function ran longer than its execution time limit of " +
                     std::to_string(inv.job.request.deadline.count()) + " ms and was terminated");
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
                 std::to_string(inv.job.request.deadline.count()) + " ms");
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
      auto scope = engine_.limits().enterJs(
          *slot, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
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
                                   "[]", engine_.clock().nowMs()});
  } else {
    result.logs = std::move(inv->logs.entries);
  }
  --slot->in_flight;
  --inv->ctx->in_flight;
  engine_.countInFlight(-1);
  Job job = std::move(inv->job);
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
      LogEntry{level, std::move(message), std::move(extras), engine_.clock().nowMs()});
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
  if (current_->timers.size() >= engine_.options().max_timers_per_invocation) {
    return makeError(ErrorCode::kLimitExceeded,
                     "too many pending timers (limit " +
                         std::to_string(engine_.options().max_timers_per_invocation) + ")");
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
  v8::Local<v8::Promise::Resolver> resolver;
  if (!v8::Promise::Resolver::New(ctx).ToLocal(&resolver)) return {};
  std::uint64_t call_id = next_call_id_++;
  current_->calls.emplace(call_id, v8::Global<v8::Promise::Resolver>(iso, resolver));
  std::uint64_t inv_id = current_->id;
  engine_.hostCall(current_->job, std::move(op), std::move(args_json),
                   [this, inv_id, call_id](std::string reply) {
                     post([this, inv_id, call_id, reply = std::move(reply)]() mutable {
                       completeCall(inv_id, call_id, std::move(reply));
                     });
                   });
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
      auto lib = engine_.libs().sources.find(name);
      if (lib == engine_.libs().sources.end()) {
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
