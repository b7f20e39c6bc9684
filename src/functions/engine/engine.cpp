#include "functions/engine/engine.h"

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <fstream>
#include <future>
#include <sstream>

#include "common/json.h"
#include "common/random.h"
#include "common/thread_name.h"
#include "functions/engine/js_libs.h"
#include "functions/engine/watchdog.h"
#include "functions/engine/worker.h"

namespace parley::functions::engine {

namespace bj = boost::json;

namespace {

constexpr std::size_t kMaxCodeChars = 100'000;

std::string keyOf(const AccountId& a, const FunctionId& f) { return a.str() + "/" + f.str(); }

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

}  // namespace

InvokeResult errorResult(std::string_view code, std::string message) {
  InvokeResult r;
  r.ok = false;
  r.error_code = std::string(code);
  r.error_message = std::move(message);
  return r;
}

Engine::Engine(RuntimeOptions options, FunctionHost& host, const Clock& clock)
    : options_(std::move(options)),
      host_(host),
      clock_(clock),
      rate_(clock, options_.http_rate_per_s) {}

Result<std::unique_ptr<Engine>> Engine::create(RuntimeOptions options, FunctionHost& host,
                                               const Clock& clock, std::unique_ptr<Limits> limits) {
  if (options.threads < 1) return invalid("RuntimeOptions.threads must be at least 1");
  if (options.heap_limit_mb < 16)
    return invalid("RuntimeOptions.heap_limit_mb must be at least 16");
  auto policy = AddressPolicy::parse(options.outbound_allow);
  if (!policy) return std::unexpected(policy.error());
  std::unique_ptr<Engine> e(new Engine(std::move(options), host, clock));
  e->address_policy_ = std::move(*policy);
  e->limits_ = limits ? std::move(limits) : std::make_unique<Watchdog>();
  e->libs_.dir = e->options_.js_lib_dir;
  if (e->libs_.dir.empty()) {
    for (const EmbeddedFile& lib : embeddedJsLibs()) e->libs_.sources.emplace(lib.name, lib.text);
  } else {
    std::string lodash = readFile(e->libs_.dir + "/lodash/lodash.js");
    if (!lodash.empty()) e->libs_.sources["lodash"] = std::move(lodash);
    std::string luxon = readFile(e->libs_.dir + "/luxon/build/cjs-browser/luxon.js");
    if (!luxon.empty()) e->libs_.sources["luxon"] = std::move(luxon);
  }
  v8Platform();
  e->host_pool_ = std::make_unique<boost::asio::thread_pool>(std::max(1, e->options_.host_threads));
  nameThreads([&](auto task) { boost::asio::post(*e->host_pool_, std::move(task)); },
              static_cast<std::size_t>(std::max(1, e->options_.host_threads)), "fn-host");
  e->http_ = std::make_unique<HttpClient>(e->options_.http_threads, e->options_.http_max_body_bytes,
                                          e->address_policy_);
  for (int i = 0; i < e->options_.threads; ++i) {
    e->workers_.push_back(std::make_unique<Worker>(*e, i));
  }
  for (auto& w : e->workers_) w->start();
  return e;
}

Engine::~Engine() {
  std::vector<Job> dropped;
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
    while (auto j = queue_.pop()) dropped.push_back(std::move(*j));
    queued_ = 0;
  }
  for (auto& j : dropped) {
    if (j.done) j.done(errorResult(kErrUnavailable, "the function runtime is shutting down"));
  }
  // Host tasks may still start HTTP requests: finish them before the HTTP client goes.
  host_pool_->join();
  http_.reset();
  for (auto& w : workers_) w->stop();
  workers_.clear();
  host_pool_.reset();
}

Status Engine::prepareOnWorker(std::shared_ptr<const Deployment> d, bool keep) {
  auto done = std::make_shared<std::promise<Status>>();
  auto fut = done->get_future();
  Worker& w = *workers_[next_worker_.fetch_add(1) % workers_.size()];
  w.post([&w, d, keep, done] { done->set_value(w.prepare(d, keep)); });
  try {
    return fut.get();
  } catch (const std::future_error&) {
    return makeError(ErrorCode::kUnavailable, "the function runtime is shutting down");
  }
}

Status Engine::check(std::string_view code) {
  if (auto s = checkSize(code); !s) return s;
  auto d = std::make_shared<Deployment>();
  d->account = AccountId("check");
  d->function = FunctionId("check");
  d->key = "~check";
  d->code = std::string(code);
  d->ephemeral = true;
  return prepareOnWorker(std::move(d), false);
}

Status Engine::deploy(const AccountId& account, const FunctionId& id, DeployedCode code) {
  if (auto s = checkSize(code.code); !s) return s;
  auto d = std::make_shared<Deployment>();
  d->account = account;
  d->function = id;
  d->key = keyOf(account, id);
  d->code = std::move(code.code);
  d->env = std::move(code.env);
  d->version = code.version;
  if (auto s = prepareOnWorker(d, true); !s) return s;
  {
    std::lock_guard lock(table_mu_);
    table_[d->key] = d;
  }
  sweepWorkers(d->key, d.get());
  return {};
}

void Engine::undeploy(const AccountId& account, const FunctionId& id) {
  {
    std::lock_guard lock(table_mu_);
    if (table_.erase(keyOf(account, id)) == 0) return;
  }
  sweepWorkers(keyOf(account, id), nullptr);
}

void Engine::sweepWorkers(const std::string& key, const Deployment* current) {
  for (auto& w : workers_) {
    Worker* wp = w.get();
    wp->post([wp, key, current] { wp->sweep(key, current); });
  }
}

bool Engine::isDeployed(const AccountId& account, const FunctionId& id) const {
  std::lock_guard lock(table_mu_);
  return table_.count(keyOf(account, id)) > 0;
}

bool Engine::isCurrent(const Deployment& d) const {
  std::lock_guard lock(table_mu_);
  auto it = table_.find(d.key);
  return it != table_.end() && it->second.get() == &d;
}

void Engine::enqueue(Job job) {
  std::string key = job.deployment->key;
  bool ok;
  {
    std::lock_guard lock(queue_mu_);
    ok = !stopping_ &&
         queue_.push(key, std::move(job), options_.max_queued_per_function, options_.max_queued);
    if (ok) ++queued_;
  }
  if (!ok) {
    // push() leaves `job` untouched when it refuses.
    auto r = errorResult(kErrUnavailable, "too many invocations are queued; retry later");
    countFinished(r);
    if (job.done) job.done(std::move(r));
    return;
  }
  wakeWorkers();
}

void Engine::wakeWorkers() {
  // Every worker gets the flag (so none sleeps past the job); only the first sleeping one,
  // starting from a rotating index, gets a notify: one job needs one thread.
  std::size_t n = workers_.size();
  std::size_t first = next_wake_.fetch_add(1, std::memory_order_relaxed) % n;
  bool notified = false;
  for (std::size_t i = 0; i < n; ++i) {
    Worker& w = *workers_[(first + i) % n];
    notified |=
        w.wake(notified ? Worker::WakeMode::kFlagOnly : Worker::WakeMode::kNotifyIfSleeping);
  }
}

std::optional<Job> Engine::popJob() {
  std::lock_guard lock(queue_mu_);
  auto j = queue_.pop();
  if (j) --queued_;
  return j;
}

void Engine::invoke(InvokeRequest request, InvokeMode mode,
                    std::function<void(InvokeResult)> done) {
  std::shared_ptr<const Deployment> d;
  {
    std::lock_guard lock(table_mu_);
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
  auto d = std::make_shared<Deployment>();
  d->account = account;
  d->function = request.function.empty() ? FunctionId(randomUuid()) : request.function;
  d->key = account.str() + "/~test";
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
}

RuntimeStats Engine::stats() const {
  RuntimeStats s;
  {
    std::lock_guard lock(table_mu_);
    s.deployed = table_.size();
  }
  s.invocations = invocations_.load();
  s.errors = errors_.load();
  s.timeouts = timeouts_.load();
  s.isolate_restarts = isolate_restarts_.load();
  s.queue_depth = queued_.load();
  s.in_flight = static_cast<std::size_t>(std::max<std::int64_t>(0, in_flight_.load()));
  return s;
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
