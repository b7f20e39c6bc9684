#include "functions/service/gateway.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>

#include "common/json.h"
#include "common/policy.h"
#include "common/random.h"

namespace parley::functions::service {

namespace bj = boost::json;

namespace {

api::Response lpError(std::string_view code, std::string_view message, int status = 0) {
  return api::Response{status != 0 ? status : gatewayStatus(code), gatewayErrorBody(code, message)};
}

api::Response retryLater(api::Response r) {
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

// The answer for one finished invocation: the callback result, or the error body.
api::Response invocationResponse(InvokeResult& r) {
  if (r.ok) return api::Response{200, std::move(r.result_json)};
  api::Response out = lpError(r.error_code, r.error_message);
  if (out.status == 503) return retryLater(std::move(out));
  return out;
}

}  // namespace

int gatewayStatus(std::string_view code) {
  if (code == kErrBadInput) return 400;
  if (code == kErrGatewayUnauthorized) return 401;
  if (code == kErrGatewayForbidden) return 403;
  if (code == kErrMissingLambda || code == kErrNotDeployed) return 404;
  if (code == kErrRateLimited) return 429;
  if (code == kErrTimeExceeded) return 504;
  if (code == kErrUnavailable || code == kErrWorkerCrashed) return 503;
  // custom-failure, runtime-exception, log-limit-reached: the function's own code failed.
  return 500;
}

std::string gatewayErrorBody(std::string_view code, std::string_view message) {
  return json::dump(bj::object{{"errorCode", code}, {"errorMsg", message}});
}

// What outlives the Gateway object for as long as an invocation is in flight.
struct Gateway::Shared {
  std::mutex mu;
  std::condition_variable idle_cv;                 // guarded by mu: total reached 0
  std::map<std::string, std::size_t> per_account;  // GUARDED_BY(mu); entries > 0 only
  std::size_t total = 0;                           // GUARDED_BY(mu)

  // Counts one invocation of `acc` in; false when the account is at `cap`.
  bool enter(const std::string& acc, std::size_t count, std::size_t cap) {
    std::lock_guard lock(mu);
    auto& n = per_account[acc];
    if (n + count > cap) {
      if (n == 0) per_account.erase(acc);
      return false;
    }
    n += count;
    total += count;
    return true;
  }
  void leave(const std::string& acc) {
    std::lock_guard lock(mu);
    auto it = per_account.find(acc);
    if (it != per_account.end() && --it->second == 0) per_account.erase(it);
    if (--total == 0) idle_cv.notify_all();
  }
};

Gateway::Gateway(Runner& runner, FunctionRuntime& runtime, store::FunctionStore& store,
                 const Clock& clock, GatewayOptions options)
    : runner_(runner),
      runtime_(runtime),
      store_(store),
      clock_(clock),
      options_(options),
      shared_(std::make_shared<Shared>()),
      executor_(std::make_unique<Executor>(std::max<std::size_t>(1, options.threads))) {}

Gateway::~Gateway() {
  executor_->waitIdle();
  std::unique_lock lock(shared_->mu);
  shared_->idle_cv.wait(lock, [&] { return shared_->total == 0; });
}

std::vector<std::string> Gateway::resources() const { return {"lambdas", "events"}; }

void Gateway::handle(api::Request req, std::function<void(api::Response)> done) {
  const auto& p = req.path;
  auto action = policy::matchRoute(req.method, p, policy::Surface::kGateway).action;
  if (!action) {
    if (!policy::matchRoute(req.method, p, policy::Surface::kGateway).methods.empty())
      return done(lpError(kErrGatewayGeneral,
                          fmt::format("{} is not supported on this gateway path", req.method),
                          405));
    return done(lpError(kErrGatewayGeneral,
                        "no such gateway route; use POST lambdas/{uuid}/invoke, POST "
                        "events/{eventId}/invoke or GET events/{eventId}/isImplemented",
                        404));
  }
  if (auto st = policy::authorize(req.caller.subject(), *action); !st)
    return done(lpError(kErrGatewayForbidden, st.error().message));
  auto ext = req.query.find("externalSystem");
  if (ext == req.query.end() || ext->second.empty())
    return done(lpError(kErrBadInput,
                        "the query parameter 'externalSystem' is required: name the calling "
                        "system, e.g. ?v=1&externalSystem=my-crm"));
  if (ext->second.size() > 200)
    return done(lpError(kErrBadInput, "the query parameter 'externalSystem' is longer than 200"));
  if (auto v = req.query.find("v"); v != req.query.end() && v->second != "1")
    return done(lpError(kErrBadInput, "the query parameter 'v' must be 1 (the V1 gateway API)"));
  switch (*action) {
    case policy::Action::kGatewayInvoke:
      return invokeLambda(req, FunctionId(p[1]), std::move(done));
    case policy::Action::kGatewayEventInvoke:
      return invokeEvent(req, p[1], std::move(done));
    case policy::Action::kGatewayEventImplemented:
      return isImplemented(req, p[1], std::move(done));
    default:
      return done(lpError(kErrGatewayGeneral, "no such gateway route", 404));
  }
}

namespace {

// Checks the body {timestamp?, headers?:[{key,value}], payload} and makes it the invocation
// input. The body itself is the input when it has every field; otherwise the missing
// `timestamp` (now) and `headers` ([]) are added.
Result<std::string> invocationInput(std::string& body, std::size_t max_bytes, TimeMs now) {
  if (body.size() > max_bytes)
    return makeError(ErrorCode::kTooLarge,
                     fmt::format("the request body is {} bytes; the gateway accepts at most {}",
                                 body.size(), max_bytes));
  auto parsed = json::parseObject(body);
  if (!parsed)
    return invalid(
        "the body must be a JSON object {\"timestamp\": ms, \"headers\": [{\"key\",\"value\"}], "
        "\"payload\": …}");
  bj::object& o = *parsed;
  if (!o.contains("payload"))
    return invalid("the body has no 'payload'; send {\"payload\": …} (null is allowed)");
  bool complete = true;
  if (const bj::value* t = o.if_contains("timestamp"); t && !t->is_null()) {
    if (!t->is_number()) return invalid("'timestamp' must be a number (ms since the epoch)");
  } else {
    o["timestamp"] = now;
    complete = false;
  }
  if (const bj::value* h = o.if_contains("headers"); h && !h->is_null()) {
    if (!h->is_array())
      return invalid("'headers' must be an array of {\"key\": string, \"value\": string}");
    for (const auto& e : h->as_array()) {
      const bj::object* kv = e.if_object();
      if (!kv || !kv->contains("key") || !kv->at("key").is_string() ||
          (kv->contains("value") && !kv->at("value").is_string()))
        return invalid("'headers' must be an array of {\"key\": string, \"value\": string}");
    }
  } else {
    o["headers"] = bj::array{};
    complete = false;
  }
  if (complete) return std::move(body);
  return json::dump(o);
}

}  // namespace

void Gateway::invokeLambda(api::Request& req, const FunctionId& id,
                           std::function<void(api::Response)> done) {
  auto input = invocationInput(req.body, options_.max_body_bytes, clock_.nowMs());
  if (!input)
    return done(lpError(kErrBadInput, input.error().message,
                        input.error().code == ErrorCode::kTooLarge ? 413 : 400));
  const std::string acc = req.caller.account.str();
  if (!shared_->enter(acc, 1, options_.max_in_flight_per_account))
    return done(retryLater(lpError(
        kErrRateLimited,
        fmt::format("account {} has {} gateway invocations running, the most it may; retry later",
                    acc, options_.max_in_flight_per_account))));
  auto ir = InvokeRequest::of(req.caller.account, id)
                .withInput(std::move(*input))
                .within(options_.deadline);
  runner_.invoke(std::move(ir), [this, shared = shared_, acc, id, account = req.caller.account,
                                 done = std::move(done)](InvokeResult r) mutable {
    if (!r.ok && r.error_code == kErrNotDeployed) {
      // Unknown or not deployed: the store tells (the error path only).
      executor_->post([this, shared, acc, id, account, done = std::move(done)] {
        auto f = store_.getFunction(account, id);
        if (!f && f.error().code == ErrorCode::kNotFound)
          done(lpError(kErrMissingLambda,
                       fmt::format("function {} does not exist in account {}", id.str(), acc)));
        else if (!f)
          done(retryLater(lpError(kErrUnavailable, "the function store is unavailable")));
        else
          done(lpError(kErrNotDeployed,
                       fmt::format("function {} is not deployed (state {}); deploy it first",
                                   id.str(), store::functionStateName(f->state))));
        shared->leave(acc);
      });
      return;
    }
    done(invocationResponse(r));
    shared->leave(acc);
  });
}

Result<std::vector<store::FunctionRecord>> Gateway::deployedForEvent(const AccountId& acc,
                                                                     const std::string& event_id) {
  auto all = store_.listFunctions(acc);
  if (!all) return std::unexpected(all.error());
  std::vector<store::FunctionRecord> out;
  for (auto& f : *all)
    if (f.event_id == event_id && runtime_.isDeployed(acc, f.uuid)) out.push_back(std::move(f));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

void Gateway::isImplemented(const api::Request& req, const std::string& event_id,
                            std::function<void(api::Response)> done) {
  executor_->post([this, acc = req.caller.account, event_id, done = std::move(done)] {
    auto fs = deployedForEvent(acc, event_id);
    if (!fs) return done(retryLater(lpError(kErrUnavailable, "the function store is unavailable")));
    done(api::Response{200, fs->empty() ? R"({"implemented":false})" : R"({"implemented":true})"});
  });
}

void Gateway::invokeEvent(api::Request& req, const std::string& event_id,
                          std::function<void(api::Response)> done) {
  auto input = invocationInput(req.body, options_.max_body_bytes, clock_.nowMs());
  if (!input)
    return done(lpError(kErrBadInput, input.error().message,
                        input.error().code == ErrorCode::kTooLarge ? 413 : 400));
  executor_->post([this, acc = req.caller.account, event_id, input = std::move(*input),
                   done = std::move(done)]() mutable {
    auto fs = deployedForEvent(acc, event_id);
    if (!fs) return done(retryLater(lpError(kErrUnavailable, "the function store is unavailable")));
    if (fs->empty())
      return done(lpError(kErrNotDeployed,
                          fmt::format("no deployed function of account {} implements event '{}'",
                                      acc.str(), event_id)));
    const std::size_t n = fs->size();
    if (!shared_->enter(acc.str(), n, options_.max_in_flight_per_account))
      return done(retryLater(lpError(
          kErrRateLimited, fmt::format("account {} has too many gateway invocations running "
                                       "(at most {}); retry later",
                                       acc.str(), options_.max_in_flight_per_account))));
    // One entry per function, in name order: {uuid, name, statusCode, body}.
    struct Gather {
      std::mutex mu;
      std::vector<std::string> entries;  // GUARDED_BY(mu)
      std::size_t left;                  // GUARDED_BY(mu)
      std::function<void(api::Response)> done;
    };
    auto g = std::make_shared<Gather>();
    g->entries.resize(n);
    g->left = n;
    g->done = std::move(done);
    for (std::size_t i = 0; i < n; ++i) {
      const auto& f = (*fs)[i];
      auto ir = InvokeRequest::of(acc, f.uuid)
                    .withInput(i + 1 == n ? std::move(input) : input)
                    .within(options_.deadline);
      std::string head =
          fmt::format(R"({{"uuid":{},"name":{},"statusCode":)",
                      json::dump(bj::string(f.uuid.str())), json::dump(bj::string(f.name)));
      runner_.invoke(std::move(ir), [g, i, head = std::move(head), shared = shared_,
                                     accs = acc.str()](InvokeResult r) mutable {
        api::Response one = invocationResponse(r);
        std::string entry = head + std::to_string(one.status) + R"(,"body":)" + one.body + "}";
        bool last = false;
        {
          std::lock_guard lock(g->mu);
          g->entries[i] = std::move(entry);
          last = --g->left == 0;
        }
        if (last) {
          std::string body = "[";
          for (std::size_t k = 0; k < g->entries.size(); ++k) {
            if (k) body += ',';
            body += g->entries[k];
          }
          body += ']';
          g->done(api::Response{200, std::move(body)});
        }
        shared->leave(accs);
      });
    }
  });
}

}  // namespace parley::functions::service
