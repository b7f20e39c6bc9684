#include "functions/schedule/schedule_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <iterator>
#include <optional>
#include <set>
#include <string_view>

#include "common/json.h"
#include "common/policy.h"
#include "common/random.h"
#include "functions/schedule/cron.h"

namespace parley::functions::schedule {
namespace {

namespace bj = boost::json;

api::Response errorResponse(const Error& e) {
  bj::object err{{"code", errorCodeName(e.code)}, {"message", e.message}};
  return api::Response{httpStatus(e.code), json::dump(bj::object{{"error", std::move(err)}})};
}
api::Response errorResponse(ErrorCode code, std::string message) {
  return errorResponse(Error{code, std::move(message)});
}

std::optional<api::Response> authorize(const api::Caller& c, policy::Action action) {
  if (auto st = policy::authorize(c.subject(), action); !st) return errorResponse(st.error());
  return std::nullopt;
}

bj::value timeOrNull(TimeMs t) { return t > 0 ? bj::value(t) : bj::value(nullptr); }

bj::object scheduleJson(const store::Schedule& s) {
  bj::object o;
  o["uuid"] = s.id;
  o["lambdaUUID"] = s.function.str();
  o["cronExpression"] = s.cron;
  o["isActive"] = s.state == store::ScheduleState::kActive;
  auto payload = json::parse(s.payload_json);
  o["payload"] = payload ? std::move(*payload) : bj::value(bj::object{});
  o["nextRunAt"] =
      s.state == store::ScheduleState::kActive ? timeOrNull(s.next_run_at) : bj::value(nullptr);
  o["running"] = !s.running_id.empty();
  o["lastRunAt"] = timeOrNull(s.last_started_at);
  o["lastRunDueAt"] = timeOrNull(s.last_due_at);
  if (s.last_outcome.empty()) {
    o["lastResult"] = nullptr;
  } else {
    bj::object r{{"ok", s.last_outcome == "OK"},
                 {"finishedAt", s.last_finished_at},
                 {"durationMs", s.last_duration_ms}};
    if (s.last_outcome != "OK") {
      r["errorCode"] = s.last_outcome;
      r["errorMsg"] = s.last_error;
    }
    o["lastResult"] = std::move(r);
  }
  o["createdAt"] = s.created_at;
  o["createdBy"] = s.created_by;
  o["updatedAt"] = s.updated_at;
  return o;
}

// Refuses fields outside `allowed` (typos must not pass silently).
Status onlyFields(const bj::object& o, std::initializer_list<std::string_view> allowed) {
  for (const auto& kv : o) {
    if (std::ranges::find(allowed, std::string_view(kv.key())) != allowed.end()) continue;
    std::string names;
    for (auto a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
    return invalid(
        fmt::format("unknown field '{}'; a schedule has {}", std::string(kv.key()), names));
  }
  return {};
}

// The schedule definition fields of a POST or PUT body, applied to `s`.
Status applyFields(const bj::object& o, store::Schedule& s, std::size_t max_payload, TimeMs now) {
  const std::string old_cron = s.cron;
  const store::ScheduleState old_state = s.state;
  if (o.contains("cronExpression")) {
    auto text = json::requireString(o, "cronExpression");
    if (!text) return std::unexpected(text.error());
    auto cron = CronExpression::parse(*text);
    if (!cron) return std::unexpected(cron.error());
    s.cron = cron->text();
  }
  if (o.contains("isActive")) {
    auto active = json::requireBool(o, "isActive");
    if (!active) return std::unexpected(active.error());
    s.state = *active ? store::ScheduleState::kActive : store::ScheduleState::kPaused;
  }
  if (o.contains("payload")) {
    std::string text = json::dump(o.at("payload"));
    if (text.size() > max_payload)
      return makeError(ErrorCode::kTooLarge,
                       fmt::format("payload has {} characters of JSON; at most {} are accepted",
                                   text.size(), max_payload));
    s.payload_json = std::move(text);
  }
  // The next time changes with the expression or the state; an edit of the payload alone keeps
  // a time that is due but not yet run.
  if (s.cron == old_cron && s.state == old_state && s.next_run_at > 0) return {};
  s.next_run_at = 0;
  if (s.state == store::ScheduleState::kActive) {
    auto cron = CronExpression::parse(s.cron);
    if (!cron) return std::unexpected(cron.error());
    s.next_run_at = cron->nextAfter(now).value_or(0);
  }
  return {};
}

}  // namespace

ScheduleService::ScheduleService(store::Store& store, const Clock& clock,
                                 ScheduleServiceOptions options)
    : store_(store),
      clock_(clock),
      options_(options),
      executor_(std::make_unique<service::Executor>(1)) {}

ScheduleService::~ScheduleService() {
  stopping_ = true;
  executor_->waitIdle();
}

void ScheduleService::handle(api::Request request, std::function<void(api::Response)> done) {
  if (stopping_) {
    done(errorResponse(ErrorCode::kUnavailable, "the server is shutting down; retry later"));
    return;
  }
  executor_->post([this, req = std::move(request), done = std::move(done)] {
    api::Response r;
    try {
      r = route(req);
    } catch (const std::exception& e) {
      r = errorResponse(ErrorCode::kInternal, std::string("schedules: ") + e.what());
    }
    done(std::move(r));
  });
}

void ScheduleService::waitIdleForTest() { executor_->waitIdle(); }

api::Response ScheduleService::route(const api::Request& req) {
  const auto& p = req.path;
  const std::string& m = req.method;
  if (p.empty() || p[0] != "schedules")
    return errorResponse(ErrorCode::kNotFound, "no such resource");
  if (p.size() == 1) {
    if (m == "GET") return list(req);
    if (m == "POST") return create(req);
    return errorResponse(ErrorCode::kInvalid, "schedules takes GET or POST");
  }
  if (p.size() == 2 && !p[1].empty()) {
    if (m == "GET") return get(req, p[1]);
    if (m == "PUT" || m == "PATCH") return update(req, p[1]);
    if (m == "DELETE") return remove(req, p[1]);
    return errorResponse(ErrorCode::kInvalid, "schedules/{uuid} takes GET, PUT, PATCH or DELETE");
  }
  return errorResponse(ErrorCode::kNotFound, "no such schedules endpoint");
}

api::Response ScheduleService::list(const api::Request& req) {
  if (auto r = authorize(req.caller, policy::Action::kSchedulesList)) return *r;
  auto all = store_.schedules().listSchedules(req.caller.account);
  if (!all) return errorResponse(all.error());
  auto f = req.query.find("lambdaUUID");
  bj::array out;
  for (const auto& s : *all)
    if (f == req.query.end() || s.function.str() == f->second) out.push_back(scheduleJson(s));
  return api::Response{200, json::dump(out)};
}

api::Response ScheduleService::create(const api::Request& req) {
  if (auto r = authorize(req.caller, policy::Action::kSchedulesCreate)) return *r;
  auto body = json::parseObject(req.body);
  if (!body) return errorResponse(ErrorCode::kInvalid, "the body must be a JSON object");
  if (auto st = onlyFields(*body, {"lambdaUUID", "cronExpression", "isActive", "payload", "uuid"});
      !st)
    return errorResponse(st.error());
  if (auto uuid = json::optString(*body, "uuid"); !uuid || (*uuid && !(*uuid)->empty()))
    return errorResponse(ErrorCode::kInvalid,
                         "uuid is assigned by the server; send \"\" or leave it out");
  auto function = json::requireString(*body, "lambdaUUID");
  if (!function) return errorResponse(function.error());
  if (function->empty())
    return errorResponse(ErrorCode::kInvalid, "lambdaUUID must name a function of the account");
  if (!body->contains("cronExpression"))
    return errorResponse(ErrorCode::kInvalid,
                         "cronExpression is required (five fields, e.g. \"*/15 * * * *\")");
  const TimeMs now = clock_.nowMs();
  store::Schedule s;
  s.account = req.caller.account;
  s.id = randomUuid();
  s.function = FunctionId(*function);
  s.created_by = req.caller.user.str();
  s.created_at = now;
  s.updated_at = now;
  if (auto st = applyFields(*body, s, options_.max_payload_chars, now); !st)
    return errorResponse(st.error());

  MutexLock lock(create_mu_);
  auto existing = store_.schedules().listSchedules(s.account);
  if (!existing) return errorResponse(existing.error());
  std::set<std::string> functions;
  int of_function = 0;
  for (const auto& e : *existing) {
    functions.insert(e.function.str());
    if (e.function == s.function) ++of_function;
  }
  if (of_function >= options_.max_schedules_per_function)
    return errorResponse(ErrorCode::kLimitExceeded,
                         fmt::format("function {} already has {} schedules, the most allowed; "
                                     "delete one first",
                                     s.function.str(), of_function));
  if (!functions.contains(s.function.str()) &&
      std::ssize(functions) >= options_.max_scheduled_functions_per_account)
    return errorResponse(ErrorCode::kLimitExceeded,
                         fmt::format("{} functions of this account already have schedules, the "
                                     "most allowed; delete the schedules of one first",
                                     functions.size()));
  if (auto st = store_.schedules().createSchedule(s); !st) return errorResponse(st.error());
  return api::Response{201, json::dump(scheduleJson(s))};
}

api::Response ScheduleService::get(const api::Request& req, const std::string& id) {
  if (auto r = authorize(req.caller, policy::Action::kSchedulesGet)) return *r;
  auto s = store_.schedules().getSchedule(req.caller.account, id);
  if (!s) return errorResponse(s.error());
  return api::Response{200, json::dump(scheduleJson(*s))};
}

api::Response ScheduleService::update(const api::Request& req, const std::string& id) {
  if (auto r = authorize(req.caller, policy::Action::kSchedulesUpdate)) return *r;
  auto body = json::parseObject(req.body);
  if (!body) return errorResponse(ErrorCode::kInvalid, "the body must be a JSON object");
  if (auto st = onlyFields(*body, {"lambdaUUID", "cronExpression", "isActive", "payload", "uuid"});
      !st)
    return errorResponse(st.error());
  auto s = store_.schedules().getSchedule(req.caller.account, id);
  if (!s) return errorResponse(s.error());
  if (auto f = json::optString(*body, "lambdaUUID"); !f || (*f && **f != s->function.str()))
    return errorResponse(ErrorCode::kInvalid,
                         "a schedule's lambdaUUID cannot change; create a schedule for the other "
                         "function and delete this one");
  if (auto u = json::optString(*body, "uuid"); !u || (*u && !(*u)->empty() && **u != id))
    return errorResponse(ErrorCode::kInvalid, "uuid must be this schedule's or left out");
  const TimeMs now = clock_.nowMs();
  if (auto st = applyFields(*body, *s, options_.max_payload_chars, now); !st)
    return errorResponse(st.error());
  s->updated_at = now;
  if (auto st = store_.schedules().updateSchedule(*s); !st) return errorResponse(st.error());
  auto fresh = store_.schedules().getSchedule(req.caller.account, id);
  if (!fresh) return errorResponse(fresh.error());
  return api::Response{200, json::dump(scheduleJson(*fresh))};
}

api::Response ScheduleService::remove(const api::Request& req, const std::string& id) {
  if (auto r = authorize(req.caller, policy::Action::kSchedulesDelete)) return *r;
  if (auto st = store_.schedules().deleteSchedule(req.caller.account, id); !st)
    return errorResponse(st.error());
  return api::Response{200, "{}"};
}

}  // namespace parley::functions::schedule
