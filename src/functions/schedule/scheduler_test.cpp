#include "functions/schedule/scheduler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "common/json.h"
#include "common/testing/fake_clock.h"
#include "functions/runtime.h"
#include "functions/schedule/schedule_service.h"
#include "functions/service/function_service.h"
#include "functions/service/platform_host.h"
#include "functions/testing/schedule_testing.h"
#include "store/memory/memory_store.h"

namespace parley::functions::schedule {
namespace {

namespace bj = boost::json;
namespace chr = std::chrono;
using testing::HeldRunner;

const AccountId kAcc("acc1");

TimeMs at(int y, unsigned m, unsigned d, int h = 0, int mi = 0, int s = 0) {
  auto day = chr::sys_days{chr::year{y} / chr::month{m} / chr::day{d}};
  return chr::duration_cast<chr::milliseconds>(
             (day + chr::hours{h} + chr::minutes{mi} + chr::seconds{s}).time_since_epoch())
      .count();
}

bool anyLog(const std::vector<store::InvocationLog>& logs, const std::string& level,
            const std::string& part) {
  for (const auto& l : logs)
    if (l.level == level && l.message.find(part) != std::string::npos) return true;
  return false;
}

std::string dumpLogs(const std::vector<store::InvocationLog>& logs) {
  std::string out;
  for (const auto& l : logs) out += l.level + ": " + l.message + "\n";
  return out;
}

// The scheduler over the memory store with a Runner the test completes, on a fake clock.
class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_.setMs(at(2026, 12, 7, 10, 0, 30));
    store_ = store::makeMemoryStore(clock_);
    store::FunctionRecord f;
    f.uuid = FunctionId("fn1");
    f.account = kAcc;
    f.name = "ticker";
    ASSERT_TRUE(store_->functions().createFunction(f));
    rest_ = std::make_unique<ScheduleService>(*store_, clock_);
    scheduler_ = makeScheduler();
  }
  void TearDown() override {
    scheduler_.reset();
    rest_.reset();
  }

  std::unique_ptr<FunctionScheduler> makeScheduler() {
    SchedulerOptions o;
    o.catch_up_window = chr::hours(1);
    o.deadline = chr::seconds(30);
    o.claim_margin = chr::seconds(30);
    return std::make_unique<FunctionScheduler>(*store_, runner_, clock_, o);
  }

  // Creates a schedule over REST; returns its uuid.
  std::string schedule(const std::string& cron, const std::string& payload = R"({"n":1})") {
    auto r = testing::callHandler(
        *rest_, "POST", "schedules",
        R"({"lambdaUUID":"fn1","cronExpression":")" + cron + R"(","payload":)" + payload + "}",
        {policy::Role::kFaasDeveloper}, kAcc.str());
    EXPECT_EQ(r.status, 201) << r.body;
    auto v = json::parseObject(r.body);
    return v ? json::getString(*v, "uuid") : "";
  }
  store::Schedule stored(const std::string& id) {
    auto s = store_->schedules().getSchedule(kAcc, id);
    EXPECT_TRUE(s) << s.error().message;
    return s.value_or(store::Schedule{});
  }
  std::vector<store::InvocationLog> logs() {
    scheduler_->waitIdleForTest();
    return store_->functions()
        .listLogs(kAcc, FunctionId("fn1"), 0, 100)
        .value_or(std::vector<store::InvocationLog>{});
  }

  parley::testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  HeldRunner runner_;
  std::unique_ptr<ScheduleService> rest_;
  std::unique_ptr<FunctionScheduler> scheduler_;
};

TEST_F(SchedulerTest, RunsEachDueTimeOnceWithThePayloadAndLogsIt) {
  const std::string id = schedule("*/5 * * * *");
  EXPECT_EQ(stored(id).next_run_at, at(2026, 12, 7, 10, 5));

  clock_.setMs(at(2026, 12, 7, 10, 4, 59));
  EXPECT_EQ(scheduler_->runDue(), 0);
  EXPECT_TRUE(runner_.requests().empty());

  clock_.setMs(at(2026, 12, 7, 10, 5, 0));
  EXPECT_EQ(scheduler_->runDue(), 1);
  ASSERT_EQ(runner_.requests().size(), 1u);
  const InvokeRequest req = runner_.requests()[0];
  EXPECT_EQ(req.account, kAcc);
  EXPECT_EQ(req.function, FunctionId("fn1"));
  EXPECT_EQ(req.invoker.kind, InvokerKind::kPlatform);
  auto input = json::parseObject(req.input_json);
  ASSERT_TRUE(input) << req.input_json;
  EXPECT_EQ(json::dump(input->at("payload")), R"({"n":1})");
  EXPECT_EQ(input->at("timestamp").as_int64(), at(2026, 12, 7, 10, 5));
  EXPECT_TRUE(input->at("headers").is_array());
  EXPECT_FALSE(req.request_id.empty());
  EXPECT_EQ(stored(id).running_id, req.request_id);
  EXPECT_EQ(stored(id).next_run_at, at(2026, 12, 7, 10, 10));

  // Seconds later, the same time is not run again.
  clock_.setMs(at(2026, 12, 7, 10, 5, 20));
  EXPECT_EQ(scheduler_->runDue(), 0);
  runner_.completeOldestOk();
  auto l = logs();
  EXPECT_TRUE(anyLog(l, "Info", "run due 2026-12-07T10:05:00Z succeeded in 3 ms")) << dumpLogs(l);
  EXPECT_EQ(l.front().request_id, req.request_id);
  auto s = stored(id);
  EXPECT_EQ(s.running_id, "");
  EXPECT_EQ(s.last_outcome, "OK");
  EXPECT_EQ(s.last_due_at, at(2026, 12, 7, 10, 5));
  EXPECT_EQ(scheduler_->runDue(), 0);

  clock_.setMs(at(2026, 12, 7, 10, 10, 1));
  EXPECT_EQ(scheduler_->runDue(), 1);
  runner_.completeOldestOk();
  EXPECT_EQ(runner_.requests().size(), 2u);
  scheduler_->waitIdleForTest();
  EXPECT_NE(scheduler_->prometheusText().find("parley_schedule_runs_total{outcome=\"ok\"} 2"),
            std::string::npos)
      << scheduler_->prometheusText();
}

TEST_F(SchedulerTest, MissedRunsAfterDowntimeRunOnceWithinTheWindowAndAreSkippedBeyondIt) {
  const std::string id = schedule("* * * * *");
  // The server is down for 30 minutes: a new scheduler (a restart) runs the schedule once.
  scheduler_.reset();
  clock_.setMs(at(2026, 12, 7, 10, 30, 10));
  scheduler_ = makeScheduler();
  EXPECT_EQ(scheduler_->runDue(), 1);
  EXPECT_EQ(scheduler_->runDue(), 0);
  ASSERT_EQ(runner_.requests().size(), 1u);
  EXPECT_EQ(stored(id).next_run_at, at(2026, 12, 7, 10, 31));
  runner_.completeOldestOk();
  auto l = logs();
  EXPECT_TRUE(anyLog(l, "Warn", "30 missed runs from 2026-12-07T10:01:00Z run once now"))
      << dumpLogs(l);
  EXPECT_TRUE(anyLog(l, "Info", "run due 2026-12-07T10:30:00Z succeeded")) << dumpLogs(l);

  // Down for 3 hours: the last hour's missed times are inside the 1 h window, so it runs once.
  scheduler_.reset();
  clock_.setMs(at(2026, 12, 7, 13, 30, 10));
  scheduler_ = makeScheduler();
  EXPECT_EQ(scheduler_->runDue(), 1);
  runner_.completeOldestOk();
  scheduler_->waitIdleForTest();

  // An hourly-at-:00 schedule whose last missed time is 90 minutes old: skipped, logged, and
  // resumed at its next time.
  const std::string hourly = schedule("0 * * * *");
  EXPECT_EQ(stored(hourly).next_run_at, at(2026, 12, 7, 14, 0));
  ASSERT_TRUE(store_->schedules().deleteSchedule(kAcc, id));
  scheduler_.reset();
  clock_.setMs(at(2026, 12, 7, 16, 30, 0));  // missed 14:00, 15:00, 16:00: 16:00 is in the window
  scheduler_ = makeScheduler();
  EXPECT_EQ(scheduler_->runDue(), 1);
  runner_.completeOldestOk();
  l = logs();
  EXPECT_TRUE(anyLog(l, "Warn", "3 missed runs from 2026-12-07T14:00:00Z run once now"))
      << dumpLogs(l);
  EXPECT_EQ(stored(hourly).next_run_at, at(2026, 12, 7, 17, 0));
  scheduler_.reset();
  clock_.setMs(at(2026, 12, 7, 18, 30, 0));  // missed 17:00 and 18:00; 18:00 is in the window
  scheduler_ = makeScheduler();
  EXPECT_EQ(scheduler_->runDue(), 1);
  runner_.completeOldestOk();
  scheduler_->waitIdleForTest();
  const std::size_t runs_before = runner_.requests().size();
  scheduler_.reset();
  // At 22:35, 19:00 to 22:00 were missed; the newest is 35 minutes old, outside a 30-minute
  // window: all four are skipped and the schedule resumes at 23:00.
  clock_.setMs(at(2026, 12, 7, 22, 35, 0));
  SchedulerOptions narrow;
  narrow.catch_up_window = chr::minutes(30);
  scheduler_ = std::make_unique<FunctionScheduler>(*store_, runner_, clock_, narrow);
  EXPECT_EQ(scheduler_->runDue(), 0);
  EXPECT_EQ(runner_.requests().size(), runs_before);
  EXPECT_EQ(stored(hourly).next_run_at, at(2026, 12, 7, 23, 0));
  l = logs();
  EXPECT_TRUE(anyLog(l, "Warn",
                     "4 missed runs from 2026-12-07T19:00:00Z skipped: older than the catch-up "
                     "window of 1800 s; next run 2026-12-07T23:00:00Z"))
      << dumpLogs(l);
  EXPECT_NE(
      scheduler_->prometheusText().find("parley_schedule_missed_total{handling=\"skipped\"} 4"),
      std::string::npos)
      << scheduler_->prometheusText();
}

TEST_F(SchedulerTest, ARunStillGoingIsNeverOverlappedAndItsMissedTimesFoldIntoOneRun) {
  const std::string id = schedule("* * * * *");
  clock_.setMs(at(2026, 12, 7, 10, 1, 0));
  EXPECT_EQ(scheduler_->runDue(), 1);
  // The run is still going at 10:02 and 10:03: nothing else starts.
  for (int minute : {2, 3}) {
    clock_.setMs(at(2026, 12, 7, 10, minute, 0));
    EXPECT_EQ(scheduler_->runDue(), 0) << minute;
  }
  // Past the store's claim (deadline + margin = 60 s), this node still knows the run is going.
  clock_.setMs(at(2026, 12, 7, 10, 2, 30));
  EXPECT_LE(stored(id).running_until, clock_.nowMs());
  EXPECT_EQ(scheduler_->runDue(), 0);
  EXPECT_EQ(runner_.requests().size(), 1u);

  clock_.setMs(at(2026, 12, 7, 10, 1, 40));
  runner_.completeOldestOk();
  scheduler_->waitIdleForTest();
  clock_.setMs(at(2026, 12, 7, 10, 3, 10));
  // 10:02 and 10:03 were missed while the run went on: one run for both.
  EXPECT_EQ(scheduler_->runDue(), 1);
  EXPECT_EQ(scheduler_->runDue(), 0);
  EXPECT_EQ(runner_.requests().size(), 2u);
  runner_.completeOldestOk();
  auto l = logs();
  EXPECT_TRUE(anyLog(l, "Warn", "2 missed runs from 2026-12-07T10:02:00Z run once now"))
      << dumpLogs(l);
}

TEST_F(SchedulerTest, TwoNodesOnOneStoreRunATimeOnce) {
  schedule("* * * * *");
  auto other = makeScheduler();
  clock_.setMs(at(2026, 12, 7, 10, 1, 0));
  EXPECT_EQ(scheduler_->runDue() + other->runDue(), 1);
  EXPECT_EQ(runner_.requests().size(), 1u);
  runner_.completeOldestOk();
  scheduler_->waitIdleForTest();
  other->waitIdleForTest();
  clock_.setMs(at(2026, 12, 7, 10, 2, 0));
  EXPECT_EQ(other->runDue() + scheduler_->runDue(), 1);
  runner_.completeOldestOk();
  other->waitIdleForTest();
}

TEST_F(SchedulerTest, PausedSchedulesDoNotRunAndResumeAtTheirNextTime) {
  const std::string id = schedule("* * * * *");
  auto r = testing::callHandler(*rest_, "PUT", "schedules/" + id, R"({"isActive":false})",
                                {policy::Role::kFaasAdmin}, kAcc.str());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("isActive":false)"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("nextRunAt":null)"), std::string::npos) << r.body;
  clock_.setMs(at(2026, 12, 7, 10, 5, 0));
  EXPECT_EQ(scheduler_->runDue(), 0);
  r = testing::callHandler(*rest_, "PUT", "schedules/" + id, R"({"isActive":true})",
                           {policy::Role::kFaasAdmin}, kAcc.str());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(stored(id).next_run_at, at(2026, 12, 7, 10, 6));
  EXPECT_EQ(scheduler_->runDue(), 0);
  clock_.setMs(at(2026, 12, 7, 10, 6, 0));
  EXPECT_EQ(scheduler_->runDue(), 1);
  runner_.completeOldestOk();
}

TEST_F(SchedulerTest, AFailedRunIsRecordedOnTheScheduleAndInTheLogs) {
  const std::string id = schedule("* * * * *");
  clock_.setMs(at(2026, 12, 7, 10, 1, 0));
  EXPECT_EQ(scheduler_->runDue(), 1);
  InvokeResult failed;
  failed.error_code = "com.liveperson.faas.handler.custom-failure";
  failed.error_message = "boom";
  runner_.completeOldest(failed);
  auto l = logs();
  EXPECT_TRUE(anyLog(l, "Error",
                     "run due 2026-12-07T10:01:00Z failed: "
                     "com.liveperson.faas.handler.custom-failure: boom"))
      << dumpLogs(l);
  auto r = testing::callHandler(*rest_, "GET", "schedules/" + id, "", {policy::Role::kAdmin},
                                kAcc.str());
  ASSERT_EQ(r.status, 200);
  auto o = json::parseObject(r.body);
  ASSERT_TRUE(o);
  const auto& last = o->at("lastResult").as_object();
  EXPECT_FALSE(last.at("ok").as_bool());
  EXPECT_EQ(last.at("errorCode").as_string(), "com.liveperson.faas.handler.custom-failure");
  EXPECT_EQ(last.at("errorMsg").as_string(), "boom");
  EXPECT_EQ(o->at("lastRunDueAt").as_int64(), at(2026, 12, 7, 10, 1));
  EXPECT_EQ(o->at("nextRunAt").as_int64(), at(2026, 12, 7, 10, 2));
  EXPECT_FALSE(o->at("running").as_bool());
}

TEST_F(SchedulerTest, TheThreadRunsPassesUntilStopped) {
  schedule("* * * * *");
  clock_.setMs(at(2026, 12, 7, 10, 1, 0));
  SchedulerOptions o;
  o.poll_interval = chr::milliseconds(5);
  scheduler_ = std::make_unique<FunctionScheduler>(*store_, runner_, clock_, o);
  scheduler_->start();
  for (int i = 0; i < 2000 && runner_.pending() == 0; ++i)
    std::this_thread::sleep_for(chr::milliseconds(1));
  ASSERT_EQ(runner_.pending(), 1u);
  runner_.completeOldestOk();
  scheduler_.reset();  // stops the thread; must not hang
  EXPECT_EQ(runner_.requests().size(), 1u);
}

// ---- With the real runtime and the function service's recording Runner ---------------------

class SchedulerRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_.setMs(at(2026, 12, 7, 10, 0, 30));
    store_ = store::makeMemoryStore(clock_);
    ASSERT_TRUE(store_->accounts().createAccount({kAcc, "one"}));
    host_ = std::make_unique<service::PlatformHost>(store_->functions(), box_, clock_);
    RuntimeOptions o;
    o.threads = 1;
    o.default_deadline = chr::milliseconds(2000);
    o.deploy_deadline = chr::milliseconds(1000);
    auto r = FunctionRuntime::create(o, *host_, clock_);
    ASSERT_TRUE(r) << r.error().message;
    runtime_ = std::move(*r);
    service_ = std::make_unique<service::FunctionService>(*store_, box_, *runtime_, clock_);
    rest_ = std::make_unique<ScheduleService>(*store_, clock_);
    scheduler_ = std::make_unique<FunctionScheduler>(*store_, service_->runner(), clock_);
  }
  void TearDown() override {
    scheduler_.reset();
    rest_.reset();
    service_.reset();
    runtime_.reset();
  }
  api::Response fn(const std::string& method, const std::string& target,
                   const std::string& body = "") {
    return testing::callHandler(*service_, method, target, body, {policy::Role::kAdmin},
                                kAcc.str());
  }
  api::Response sched(const std::string& method, const std::string& target,
                      const std::string& body = "") {
    return testing::callHandler(*rest_, method, target, body, {policy::Role::kAdmin}, kAcc.str());
  }
  std::vector<store::InvocationLog> logs(const std::string& uuid) {
    scheduler_->waitIdleForTest();
    service_->waitIdleForTest();
    return store_->functions()
        .listLogs(kAcc, FunctionId(uuid), 0, 100)
        .value_or(std::vector<store::InvocationLog>{});
  }

  parley::testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  crypto::SecretBox box_ = crypto::SecretBox::randomForTest();
  std::unique_ptr<service::PlatformHost> host_;
  std::unique_ptr<FunctionRuntime> runtime_;
  std::unique_ptr<service::FunctionService> service_;
  std::unique_ptr<ScheduleService> rest_;
  std::unique_ptr<FunctionScheduler> scheduler_;
};

TEST_F(SchedulerRuntimeTest, AnUndeployedFunctionsRunReportsItsErrorAndADeployedOneRunsWarm) {
  auto created = fn("POST", "functions",
                    R"({"name":"tick","event":"no_event","code":"let n = 0; function )"
                    R"(lambda(input, cb) { n++; console.info('tick ' + n + ' ' + )"
                    R"(input.payload.who); cb(null, {n}); }"})");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string uuid = json::getString(*json::parseObject(created.body), "uuid");
  auto s = sched("POST", "schedules",
                 R"({"lambdaUUID":")" + uuid +
                     R"(","cronExpression":"* * * * *","isActive":true,"uuid":"",)"
                     R"("payload":{"who":"cron"}})");
  ASSERT_EQ(s.status, 201) << s.body;
  const std::string id = json::getString(*json::parseObject(s.body), "uuid");

  // Not deployed: the run fails with es.notdeployed, in the function's logs and on the schedule.
  clock_.setMs(at(2026, 12, 7, 10, 1, 0));
  EXPECT_EQ(scheduler_->runDue(), 1);
  auto l = logs(uuid);
  EXPECT_TRUE(anyLog(l, "Error",
                     "run due 2026-12-07T10:01:00Z failed: com.liveperson.faas.es.notdeployed: "
                     "the function is not deployed"))
      << dumpLogs(l);
  auto got = store_->schedules().getSchedule(kAcc, id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->last_outcome, "com.liveperson.faas.es.notdeployed");

  // Deployed: two runs share the warm context (module state persists), the function's own
  // logs are stored under the run's request id, and the metrics count the runs.
  ASSERT_EQ(fn("POST", "functions/" + uuid + "/deploy", "{}").status, 200);
  for (int minute : {2, 3}) {
    clock_.setMs(at(2026, 12, 7, 10, minute, 0));
    EXPECT_EQ(scheduler_->runDue(), 1);
    scheduler_->waitIdleForTest();
  }
  l = logs(uuid);
  EXPECT_TRUE(anyLog(l, "Info", "tick 1 cron")) << dumpLogs(l);
  EXPECT_TRUE(anyLog(l, "Info", "tick 2 cron")) << dumpLogs(l);
  EXPECT_TRUE(anyLog(l, "Info", "run due 2026-12-07T10:03:00Z succeeded")) << dumpLogs(l);
  std::string tick_request;
  std::string run_request;
  for (const auto& e : l) {
    if (e.message == "tick 2 cron") tick_request = e.request_id;
    if (e.message.find("run due 2026-12-07T10:03:00Z") != std::string::npos)
      run_request = e.request_id;
  }
  EXPECT_FALSE(tick_request.empty());
  EXPECT_EQ(tick_request, run_request);
  EXPECT_EQ(service_->metrics().snapshot(kAcc, FunctionId(uuid)).invocations, 2);
  EXPECT_EQ(store_->schedules().getSchedule(kAcc, id)->last_outcome, "OK");
}

TEST_F(SchedulerRuntimeTest, DeletingAFunctionDeletesItsSchedules) {
  auto created = fn("POST", "functions", R"({"name":"gone","event":"no_event"})");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string uuid = json::getString(*json::parseObject(created.body), "uuid");
  for (const char* cron : {"* * * * *", "0 0 * * *"})
    ASSERT_EQ(sched("POST", "schedules",
                    R"({"lambdaUUID":")" + uuid + R"(","cronExpression":")" + cron + R"("})")
                  .status,
              201);
  auto list = sched("GET", "schedules?lambdaUUID=" + uuid);
  ASSERT_EQ(json::parse(list.body)->as_array().size(), 2u);
  ASSERT_EQ(fn("DELETE", "functions/" + uuid).status, 200);
  list = sched("GET", "schedules");
  EXPECT_EQ(list.body, "[]");
  clock_.setMs(at(2026, 12, 8));
  EXPECT_EQ(scheduler_->runDue(), 0);
}

}  // namespace
}  // namespace parley::functions::schedule
