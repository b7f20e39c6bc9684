#include "functions/schedule/scheduler.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "common/random.h"
#include "functions/runtime.h"
#include "functions/schedule/cron.h"

namespace parley::functions::schedule {
namespace {

// "2026-12-07T05:00:00Z".
std::string isoTime(TimeMs t) {
  namespace chr = std::chrono;
  const chr::sys_time<chr::milliseconds> tp{chr::milliseconds(t)};
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", chr::floor<chr::seconds>(tp));
}

// Missed times counted at most (the count only goes into a log message).
constexpr int kMaxCounted = 1000;

}  // namespace

FunctionScheduler::FunctionScheduler(store::Store& store, Runner& runner, const Clock& clock,
                                     SchedulerOptions options)
    : store_(store),
      runner_(runner),
      clock_(clock),
      options_(options),
      executor_(std::make_unique<service::Executor>(1)) {}

FunctionScheduler::~FunctionScheduler() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  MutexLock lock(mu_);
  while (!in_flight_.empty()) lock.wait(cv_);
}

void FunctionScheduler::start() {
  thread_ = std::thread([this] { loop(); });
}

void FunctionScheduler::loop() {
  for (;;) {
    runDue();
    MutexLock lock(mu_);
    if (stopping_) return;
    lock.waitFor(cv_, options_.poll_interval);
    if (stopping_) return;
  }
}

int FunctionScheduler::runDue() {
  const TimeMs now = clock_.nowMs();
  auto due = store_.schedules().listDueSchedules(now, options_.batch);
  if (!due) {
    spdlog::warn("schedules: listing due schedules failed: {}", due.error().message);
    return 0;
  }
  int started = 0;
  for (const auto& s : *due) {
    {
      MutexLock lock(mu_);
      if (stopping_) break;
    }
    if (handle(s, now)) ++started;
  }
  return started;
}

bool FunctionScheduler::handle(const store::Schedule& s, TimeMs now) {
  const Key key{s.account.str(), s.id};
  {
    MutexLock lock(mu_);
    // Still running here (its claim expired early, e.g. a clock jump): never overlap.
    if (in_flight_.contains(key)) return false;
  }
  auto cron = CronExpression::parse(s.cron);
  if (!cron) {
    // Stored expressions were checked when written; one this binary cannot read stops.
    if (store_.schedules().skipScheduleRuns(s.account, s.id, s.next_run_at, 0, now))
      log(s, randomUuid(), "Error",
          fmt::format("schedule {} stopped: {}; fix its cron expression", s.id,
                      cron.error().message));
    return false;
  }
  const TimeMs next = cron->nextAfter(now).value_or(0);
  const TimeMs window_start = now - options_.catch_up_window.count();
  // The first missed time inside the window (not before next_run_at, the first time not yet
  // handled); the schedule runs when there is one, for the latest of them.
  const TimeMs first_in_window =
      std::max(s.next_run_at, cron->nextAfter(window_start - 1).value_or(0));
  const bool run = first_in_window > 0 && first_in_window <= now;
  TimeMs latest = first_in_window;
  for (int i = 0; run && i < kMaxCounted; ++i) {
    auto n = cron->nextAfter(latest);
    if (!n || *n > now) break;
    latest = *n;
  }
  int missed = 0;
  for (TimeMs t = s.next_run_at; t > 0 && t <= now && missed < kMaxCounted;
       t = cron->nextAfter(t).value_or(0))
    ++missed;
  const std::string more = missed >= kMaxCounted ? "+" : "";

  if (!run) {
    auto st = store_.schedules().skipScheduleRuns(s.account, s.id, s.next_run_at, next, now);
    if (!st) return false;  // another node handled it, or it was edited or deleted
    {
      MutexLock lock(mu_);
      missed_skipped_ += missed;
    }
    log(s, randomUuid(), "Warn",
        fmt::format("schedule {} ({}): {}{} missed run{} from {} skipped: older than the "
                    "catch-up window of {} s; next run {}",
                    s.id, s.cron, missed, more, missed == 1 ? "" : "s", isoTime(s.next_run_at),
                    options_.catch_up_window.count() / 1000, isoTime(next)));
    return false;
  }

  store::ScheduleClaim claim;
  claim.account = s.account;
  claim.id = s.id;
  claim.due_at = s.next_run_at;
  claim.next_run_at = next;
  claim.now = now;
  claim.run_id = randomUuid();
  claim.running_until = now + options_.deadline.count() + options_.claim_margin.count();
  if (auto st = store_.schedules().claimScheduleRun(claim); !st) {
    // Conflict: another pass or node took this time, or the schedule was edited; NotFound: it
    // was deleted. Anything else is the store's trouble: the next pass tries again.
    if (st.error().code != ErrorCode::kConflict && st.error().code != ErrorCode::kNotFound)
      spdlog::warn("schedules: claiming a run of schedule {}: {}", s.id, st.error().message);
    return false;
  }
  {
    MutexLock lock(mu_);
    in_flight_.insert(key);
    if (missed > 1) missed_run_ += missed - 1;
  }
  if (missed > 1)
    log(s, claim.run_id, "Warn",
        fmt::format("schedule {} ({}): {}{} missed runs from {} run once now", s.id, s.cron, missed,
                    more, isoTime(s.next_run_at)));

  InvokeRequest req;
  req.account = s.account;
  req.function = s.function;
  req.input_json = fmt::format(R"({{"timestamp":{},"headers":[],"payload":{}}})", now,
                               s.payload_json.empty() ? "{}" : s.payload_json);
  req.deadline = options_.deadline;
  req.request_id = claim.run_id;
  req.invoker.kind = InvokerKind::kPlatform;
  const TimeMs due_at = latest;
  runner_.invoke(std::move(req), [this, s, run_id = claim.run_id, due_at](InvokeResult r) {
    executor_->post([this, s, run_id, due_at, r = std::move(r)] { finish(s, run_id, due_at, r); });
  });
  return true;
}

void FunctionScheduler::finish(const store::Schedule& s, const std::string& run_id, TimeMs due_at,
                               const InvokeResult& result) {
  store::ScheduleRunEnd end;
  end.account = s.account;
  end.id = s.id;
  end.run_id = run_id;
  end.finished_at = clock_.nowMs();
  end.outcome = result.ok ? "OK" : result.error_code;
  end.error = result.ok ? "" : result.error_message;
  end.duration_ms = static_cast<std::int64_t>(result.duration_ms);
  if (auto st = store_.schedules().finishScheduleRun(end);
      !st && st.error().code != ErrorCode::kNotFound)
    spdlog::warn("schedules: recording the end of run {} of schedule {}: {}", run_id, s.id,
                 st.error().message);
  if (result.ok) {
    log(s, run_id, "Info",
        fmt::format("schedule {} ({}): run due {} succeeded in {} ms", s.id, s.cron,
                    isoTime(due_at), end.duration_ms));
  } else if (result.error_code == kErrNotDeployed) {
    log(s, run_id, "Error",
        fmt::format("schedule {} ({}): run due {} failed: {}: the function is not deployed; "
                    "deploy it, or pause or delete the schedule",
                    s.id, s.cron, isoTime(due_at), result.error_code));
  } else {
    log(s, run_id, "Error",
        fmt::format("schedule {} ({}): run due {} failed: {}: {}", s.id, s.cron, isoTime(due_at),
                    result.error_code, result.error_message));
  }
  MutexLock lock(mu_);
  (result.ok ? runs_ok_ : runs_failed_)++;
  in_flight_.erase(Key{s.account.str(), s.id});
  cv_.notify_all();
}

void FunctionScheduler::log(const store::Schedule& s, const std::string& request_id,
                            const std::string& level, std::string message) {
  store::InvocationLog entry{s.function, s.account,          request_id, clock_.nowMs(),
                             level,      std::move(message), "[]"};
  if (auto st = store_.functions().appendLogs({entry}); !st)
    spdlog::warn("schedules: storing a log entry of schedule {} failed: {}", s.id,
                 st.error().message);
}

void FunctionScheduler::waitIdleForTest() {
  {
    MutexLock lock(mu_);
    while (!in_flight_.empty()) lock.wait(cv_);
  }
  executor_->waitIdle();
}

std::string FunctionScheduler::prometheusText() const {
  MutexLock lock(mu_);
  std::string out;
  out += "# HELP parley_schedule_runs_total Scheduled function runs that ended, by outcome.\n";
  out += "# TYPE parley_schedule_runs_total counter\n";
  out += fmt::format("parley_schedule_runs_total{{outcome=\"ok\"}} {}\n", runs_ok_);
  out += fmt::format("parley_schedule_runs_total{{outcome=\"error\"}} {}\n", runs_failed_);
  out +=
      "# HELP parley_schedule_missed_total Missed schedule times (downtime, a run still going): "
      "folded into one run, or skipped as older than the catch-up window.\n";
  out += "# TYPE parley_schedule_missed_total counter\n";
  out += fmt::format("parley_schedule_missed_total{{handling=\"run\"}} {}\n", missed_run_);
  out += fmt::format("parley_schedule_missed_total{{handling=\"skipped\"}} {}\n", missed_skipped_);
  return out;
}

}  // namespace parley::functions::schedule
