// Engine tests with a fake Limits: termination is driven by the test, not by wall time.

#include "functions/engine/engine.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include "common/testing/call.h"
#include "functions/testing/fake_host.h"
#include "functions/testing/fake_limits.h"

namespace parley::functions::engine {
namespace {

InvokeRequest requestFor(const AccountId& acc, const FunctionId& fn, int deadline_ms) {
  InvokeRequest req;
  req.account = acc;
  req.function = fn;
  req.input_json = R"({"timestamp":0,"headers":[],"payload":{}})";
  req.deadline = std::chrono::milliseconds(deadline_ms);
  return req;
}

InvokeResult invokeSync(Engine& e, const AccountId& acc, const FunctionId& fn, int deadline_ms) {
  return parley::testing::await<InvokeResult>([&](auto done) {
    e.invoke(requestFor(acc, fn, deadline_ms), InvokeMode::kTest, std::move(done));
  });
}

bool waitFor(const std::function<bool()>& cond) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < until) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return cond();
}

// This process's thread that runs a worker's JS (in-process mode: named "fn-worker"), or 0.
pid_t workerThread() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name == "fn-worker") return static_cast<pid_t>(std::stoi(entry.path().filename()));
  }
  return 0;
}

int niceOf(pid_t tid) {
  errno = 0;
  int n = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  return errno == 0 ? n : -100;
}

// Demoted for a long task: SCHED_IDLE, or nice 19 where the process could not take a thread out
// of SCHED_IDLE again.
bool demoted(pid_t tid) { return ::sched_getscheduler(tid) == SCHED_IDLE || niceOf(tid) == 19; }

bool normal(pid_t tid, int nice) {
  return ::sched_getscheduler(tid) == SCHED_OTHER && niceOf(tid) == nice;
}

// One worker thread (so tests can hold it busy) and FakeLimits in place of the watchdog.
class EngineLimits : public ::testing::Test {
 protected:
  void SetUp() override { make(RuntimeOptions{}.terminate_nice); }

  void make(int terminate_nice) {
    e.reset();
    auto limits = std::make_unique<testing::FakeLimits>();
    fake = limits.get();
    RuntimeOptions o;
    o.threads = 1;
    o.terminate_nice = terminate_nice;
    auto made = Engine::create(o, host, clock, std::move(limits));
    ASSERT_TRUE(made);
    e = std::move(*made);
  }

  // A looping task is demoted; once marked as being terminated (the loop still running) its
  // thread is lifted: SCHED_OTHER at `lifted_nice`. When it ends, its nice is what it was.
  void demoteThenLift(int lifted_nice_at_least);

  testing::FakeHost host;
  SystemClock clock;
  testing::FakeLimits* fake = nullptr;
  std::unique_ptr<Engine> e;
};

TEST_F(EngineLimits, FakeLimitsSeeEveryJsEntryWithTheInvocationDeadline) {
  AccountId acc("1");
  FunctionId fn("f");
  ASSERT_TRUE(
      e->deploy(acc, fn, {"function lambda(i, cb) { setTimeout(() => cb(null, 1), 1); }", {}, 1}));
  int before = fake->enteredForTest();
  auto t0 = std::chrono::steady_clock::now();
  auto r = invokeSync(*e, acc, fn, 12'345);
  EXPECT_TRUE(r.ok) << r.error_message;
  // Entered for the lambda call and for the timer callback.
  EXPECT_GE(fake->enteredForTest() - before, 2);
  auto d = fake->deadlinesForTest().back();
  auto budget = std::chrono::duration_cast<std::chrono::milliseconds>(d - t0).count();
  EXPECT_NEAR(static_cast<double>(budget), 12'345.0, 100.0);
}

TEST_F(EngineLimits, TerminationByLimitsIsALimitResultAndUncatchable) {
  AccountId acc("1");
  FunctionId fn("f");
  ASSERT_TRUE(e->deploy(
      acc, fn,
      {"function lambda(i, cb) { try { for(;;){} } catch (e) { cb(null, 'caught'); } }", {}, 1}));
  fake->setTerminateOnEnter(true);
  auto r = invokeSync(*e, acc, fn, 60'000);  // the wall-clock deadline plays no part
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_code, kErrTimeExceeded);
  EXPECT_LT(r.duration_ms, 5'000);
  fake->setTerminateOnEnter(false);
  ASSERT_TRUE(e->deploy(acc, FunctionId("g"), {"function lambda(i, cb) { cb(null, 2); }", {}, 1}));
  auto ok = invokeSync(*e, acc, FunctionId("g"), 1000);
  EXPECT_TRUE(ok.ok) << ok.error_message;
  EXPECT_GE(e->stats().isolate_restarts, 1u);
}

TEST_F(EngineLimits, ATimerSeenOnlyAfterItsInvocationsDeadlineIsACallbackTimeoutNotARun) {
  // The fixture's one worker: the busy function keeps it from the timer and the deadline.
  AccountId acc("1");
  ASSERT_TRUE(
      e->deploy(acc, FunctionId("timer"),
                {"function lambda(i, cb) { setTimeout(() => cb(null, 'late'), 100); }", {}, 1}));
  ASSERT_TRUE(e->deploy(acc, FunctionId("busy"),
                        {"function lambda(i, cb) { const end = Date.now() + 600;"
                         " while (Date.now() < end) {} cb(null, 'done'); }",
                         {},
                         1}));
  // Warm both contexts so the invocations below start at once.
  ASSERT_TRUE(invokeSync(*e, acc, FunctionId("busy"), 5'000).ok);
  std::promise<InvokeResult> timer;
  int entered_before = fake->enteredForTest();
  e->invoke(requestFor(acc, FunctionId("timer"), 300), InvokeMode::kTest,
            [&](InvokeResult r) { timer.set_value(std::move(r)); });
  // The timer's lambda has run (its timer is set) before the busy function takes the worker.
  for (int i = 0; i < 5'000 && fake->enteredForTest() == entered_before; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_GT(fake->enteredForTest(), entered_before);
  int late_before = fake->enteredLateForTest();
  auto busy = invokeSync(*e, acc, FunctionId("busy"), 5'000);
  EXPECT_TRUE(busy.ok) << busy.error_message;
  auto r = timer.get_future().get();
  // The timer (due at 100 ms) and the deadline (300 ms) both passed while the worker ran the
  // busy function: the timer must not run the function after its deadline.
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_code, kErrTimeExceeded);
  EXPECT_NE(r.error_message.find("did not call callback within the execution time limit of 300"),
            std::string::npos)
      << r.error_message;
  EXPECT_EQ(fake->enteredLateForTest(), late_before);
  EXPECT_EQ(e->stats().isolate_restarts, 0u);
}

void EngineLimits::demoteThenLift(int lifted_nice_at_least) {
  ASSERT_TRUE(RuntimeOptions{}.demote_long_tasks);  // on by default
  AccountId acc("1");
  ASSERT_TRUE(
      e->deploy(acc, FunctionId("loop"), {"function lambda(i, cb) { for (;;) {} }", {}, 1}));
  pid_t tid = workerThread();
  ASSERT_NE(tid, 0);
  int nice0 = niceOf(tid);
  ASSERT_TRUE(normal(tid, nice0));
  ASSERT_LT(nice0, 19);
  std::promise<InvokeResult> loop;
  e->invoke(requestFor(acc, FunctionId("loop"), 600'000), InvokeMode::kTest,
            [&](InvokeResult r) { loop.set_value(std::move(r)); });
  ASSERT_TRUE(waitFor([&] { return fake->liveForTest() == 1; }));
  ASSERT_EQ(fake->longTaskNow(), 1);
  ASSERT_TRUE(waitFor([&] { return demoted(tid); })) << "not demoted";
  EXPECT_EQ(e->stats().demotions, 1u);
  EXPECT_EQ(e->stats().demotions_restored_early, 0u);
  e->setLiftedGraceForTest(std::chrono::milliseconds(1'500));
  e->markTerminatingForTest();
  // (An unprivileged process's demotion, nice 19 in SCHED_OTHER, stays as it is.)
  const int lifted = e->demotesToIdleClassForTest() ? std::max(nice0, lifted_nice_at_least) : 19;
  ASSERT_TRUE(waitFor([&] { return normal(tid, lifted); })) << "not lifted to nice " << lifted;
  EXPECT_EQ(fake->liveForTest(), 1);  // the loop still runs
  EXPECT_EQ(e->stats().demotions_restored_early, 1u);
  if (lifted != nice0 && e->demotesToIdleClassForTest()) {
    // Still running when the grace ends: the termination must not wait for a nice-19 share of
    // saturated cores, so it gets its normal priority back.
    ASSERT_TRUE(waitFor([&] { return normal(tid, nice0); })) << "not restored after the grace";
    EXPECT_EQ(e->stats().demotions_restored_after_lift, 1u);
    EXPECT_EQ(fake->liveForTest(), 1);
  } else {
    EXPECT_EQ(e->stats().demotions_restored_after_lift, 0u);
  }
  ASSERT_EQ(fake->terminateNow(), 1);
  auto r = loop.get_future().get();
  EXPECT_EQ(r.error_code, kErrTimeExceeded);
  EXPECT_TRUE(waitFor([&] { return normal(tid, nice0); })) << "priority not restored at the end";
}

// A long task's JS thread is demoted, and leaves SCHED_IDLE as soon as the worker says its JS
// is being terminated, while that JS still runs (V8's TerminateExecution takes effect only when
// the thread gets the CPU): at nice 19 by default, so that any normal thread waking on its core
// still preempts it.
TEST_F(EngineLimits, ADemotedTaskBeingTerminatedLeavesTheIdleClassAtNice19) { demoteThenLift(19); }

// With terminate_nice 0, the thread gets its normal priority back at once.
TEST_F(EngineLimits, ADemotedTaskBeingTerminatedGetsItsPriorityBackWithTerminateNice0) {
  make(0);
  demoteThenLift(0);
}

// In-process workers with their channel read on an io_context (Engine::readChannelsOn): results
// and their `done` come on the context's thread, and a long task is demoted (kBusy) and its
// thread's priority restored when it ends, read there too; the engine is destroyed while the
// context reads.
TEST_F(EngineLimits, AChannelReadOnAnIoContextKeepsResultsAndLongTaskDemotion) {
  boost::asio::io_context ctx(1);
  auto guard = boost::asio::make_work_guard(ctx);
  std::thread io([&] { ctx.run(); });
  const auto io_id = io.get_id();
  AccountId acc("1");
  ASSERT_TRUE(
      e->deploy(acc, FunctionId("echo"), {"function lambda(i, cb) { cb(null, 7); }", {}, 1}));
  ASSERT_TRUE(
      e->deploy(acc, FunctionId("loop"), {"function lambda(i, cb) { for (;;) {} }", {}, 1}));
  e->readChannelsOn({&ctx});
  std::promise<std::pair<InvokeResult, std::thread::id>> echo;
  e->invoke(requestFor(acc, FunctionId("echo"), 5'000), InvokeMode::kTest, [&](InvokeResult r) {
    echo.set_value({std::move(r), std::this_thread::get_id()});
  });
  auto [er, eon] = echo.get_future().get();
  EXPECT_TRUE(er.ok) << er.error_message;
  EXPECT_EQ(er.result_json, "7");
  EXPECT_EQ(eon, io_id) << "done did not run on the io_context's thread";

  pid_t tid = workerThread();
  ASSERT_NE(tid, 0);
  const int nice0 = niceOf(tid);
  ASSERT_TRUE(normal(tid, nice0));
  std::promise<std::pair<InvokeResult, std::thread::id>> loop;
  e->invoke(requestFor(acc, FunctionId("loop"), 600'000), InvokeMode::kTest, [&](InvokeResult r) {
    loop.set_value({std::move(r), std::this_thread::get_id()});
  });
  ASSERT_TRUE(waitFor([&] { return fake->liveForTest() == 1; }));
  ASSERT_EQ(fake->longTaskNow(), 1);
  ASSERT_TRUE(waitFor([&] { return demoted(tid); })) << "not demoted";
  EXPECT_EQ(e->stats().demotions, 1u);
  ASSERT_EQ(fake->terminateNow(), 1);
  auto [lr, lon] = loop.get_future().get();
  EXPECT_EQ(lr.error_code, kErrTimeExceeded);
  EXPECT_EQ(lon, io_id);
  EXPECT_TRUE(waitFor([&] { return normal(tid, nice0); })) << "priority not restored at the end";
  e.reset();
  guard.reset();
  io.join();
}

// With the channels on two io_contexts, a worker's reader moves to the io thread that starts its
// jobs, after a run of them (16) from that thread: one connection's requests then have their
// results read on their own io thread, whichever context the worker was dealt first.
TEST_F(EngineLimits, AWorkersReaderMovesToTheIoThreadThatStartsItsJobs) {
  boost::asio::io_context c1(1), c2(1);
  auto g1 = boost::asio::make_work_guard(c1);
  auto g2 = boost::asio::make_work_guard(c2);
  std::thread t1([&] { c1.run(); });
  std::thread t2([&] { c2.run(); });
  AccountId acc("1");
  ASSERT_TRUE(
      e->deploy(acc, FunctionId("echo"), {"function lambda(i, cb) { cb(null, 7); }", {}, 1}));
  e->readChannelsOn({&c1, &c2});
  // Invokes from `ctx`'s thread, as a connection's request does; returns where `done` ran.
  auto invokeFrom = [&](boost::asio::io_context& ctx) {
    auto p = std::make_shared<std::promise<std::thread::id>>();
    auto f = p->get_future();
    boost::asio::post(ctx, [&, p] {
      e->invoke(requestFor(acc, FunctionId("echo"), 5'000), InvokeMode::kTest, [p](InvokeResult r) {
        EXPECT_TRUE(r.ok) << r.error_message;
        p->set_value(std::this_thread::get_id());
      });
    });
    return f.get();
  };
  for (auto [ctx, id] :
       {std::pair{&c1, t1.get_id()}, std::pair{&c2, t2.get_id()}, std::pair{&c1, t1.get_id()}}) {
    std::thread::id last;
    for (int i = 0; i < 20; ++i) last = invokeFrom(*ctx);
    EXPECT_EQ(last, id) << "the result was not read on the io thread that started the jobs";
  }
  e.reset();
  g1.reset();
  g2.reset();
  t1.join();
  t2.join();
}

TEST(EngineOptions, TerminateNiceOutsideZeroToNineteenIsRefused) {
  testing::FakeHost host;
  SystemClock clock;
  for (int bad : {-1, 20}) {
    RuntimeOptions o;
    o.terminate_nice = bad;
    auto made = Engine::create(o, host, clock, std::make_unique<testing::FakeLimits>());
    ASSERT_FALSE(made);
    EXPECT_NE(made.error().message.find("terminate_nice"), std::string::npos);
  }
}

// An extra worker started while the others are busy is not stopped as idle while it is the
// only free one (it would only be started again), and is stopped once others are free.
TEST(EngineExtraWorkers, TheOnlyFreeWorkerIsNotStoppedAsIdle) {
  testing::FakeHost host;
  SystemClock clock;
  auto limits = std::make_unique<testing::FakeLimits>();
  testing::FakeLimits* fake = limits.get();
  RuntimeOptions o;
  o.threads = 1;
  o.max_workers = 3;
  o.extra_worker_idle = std::chrono::milliseconds(20);
  auto made = Engine::create(o, host, clock, std::move(limits));
  ASSERT_TRUE(made);
  auto e = std::move(*made);
  ASSERT_TRUE(e->waitForWorkersForTest(1, std::chrono::seconds(60)));
  AccountId acc("1");
  ASSERT_TRUE(
      e->deploy(acc, FunctionId("loop"), {"function lambda(i, cb) { for (;;) {} }", {}, 1}));
  std::promise<InvokeResult> loop;
  e->invoke(requestFor(acc, FunctionId("loop"), 600'000), InvokeMode::kTest,
            [&](InvokeResult r) { loop.set_value(std::move(r)); });
  ASSERT_TRUE(waitFor([&] { return fake->liveForTest() == 1; }));
  ASSERT_EQ(fake->longTaskNow(), 1);  // the base worker is busy: an extra one starts
  ASSERT_TRUE(e->waitForWorkersForTest(2, std::chrono::seconds(60)));
  EXPECT_EQ(e->stats().extra_workers, 1u);
  // Fifty idle periods: each would have stopped it and started another.
  std::this_thread::sleep_for(std::chrono::milliseconds(1'000));
  EXPECT_EQ(e->stats().extra_workers, 1u);
  EXPECT_EQ(e->workerCountForTest(), 2u);
  ASSERT_EQ(fake->terminateNow(), 1);
  EXPECT_EQ(loop.get_future().get().error_code, kErrTimeExceeded);
  // Both free now: the idle extra one stops.
  EXPECT_TRUE(waitFor([&] { return e->workerCountForTest() == 1; }));
  EXPECT_EQ(e->stats().extra_workers, 1u);
}

// The threads of this process that run a worker's JS (in-process mode: named "fn-worker").
std::vector<pid_t> workerThreads() {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name == "fn-worker") out.push_back(static_cast<pid_t>(std::stoi(entry.path().filename())));
  }
  return out;
}

std::size_t demotedWorkerThreads() {
  std::size_t n = 0;
  for (pid_t t : workerThreads()) n += demoted(t);
  return n;
}

// Two worker threads, FakeLimits: a long task is marked only when the test says so, so the
// window between an invocation's dispatch and its long-task mark lasts as long as the test wants.
// One invocation at a time per worker: a second one of B cannot join B's first on its worker.
class TwoAccounts : public ::testing::Test {
 protected:
  void SetUp() override {
    auto limits = std::make_unique<testing::FakeLimits>();
    fake = limits.get();
    RuntimeOptions o;
    o.threads = 2;
    o.max_workers = 2;
    o.max_in_flight_per_worker = 1;
    auto made = Engine::create(o, host, clock, std::move(limits));
    ASSERT_TRUE(made);
    e = std::move(*made);
    ASSERT_TRUE(e->waitForWorkersForTest(2, std::chrono::seconds(60)));
    ASSERT_TRUE(
        e->deploy(b, FunctionId("loop"), {"function lambda(i, cb) { for (;;) {} }", {}, 1}));
    ASSERT_TRUE(
        e->deploy(a, FunctionId("echo"), {"function lambda(i, cb) { cb(null, 1); }", {}, 1}));
    ASSERT_EQ(workerThreads().size(), 2u);
  }
  // Ends every loop still running or queued, so that the engine can stop.
  void TearDown() override {
    for (int i = 0; i < 2'000 && e; ++i) {
      auto s = e->stats();
      if (s.in_flight == 0 && s.queue_depth == 0) break;
      fake->terminateNow();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  std::future<InvokeResult> invoke(const AccountId& acc, const char* fn) {
    auto p = std::make_shared<std::promise<InvokeResult>>();
    auto f = p->get_future();
    e->invoke(requestFor(acc, FunctionId(fn), 600'000), InvokeMode::kTest,
              [p](InvokeResult r) { p->set_value(std::move(r)); });
    return f;
  }

  AccountId a{"A"}, b{"B"};
  testing::FakeHost host;
  SystemClock clock;
  testing::FakeLimits* fake = nullptr;
  std::unique_ptr<Engine> e;
};

// B's two runaway loops invoked at once, before either is marked long: B's busy-worker cap (1)
// counts the worker its first loop holds from dispatch, so the second waits in the queue; A's
// echoes go to the worker B does not hold and never wait behind a loop (with these limits a
// loop is never marked long, so an echo sent to a loop's worker would wait for the loop).
TEST_F(TwoAccounts, TwoLoopsInvokedAtOnceHoldOneWorkerAndAnotherAccountDoesNotWaitBehindThem) {
  auto l1 = invoke(b, "loop");
  auto l2 = invoke(b, "loop");
  ASSERT_TRUE(waitFor([&] { return fake->liveForTest() >= 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // time for a second dispatch
  EXPECT_EQ(fake->liveForTest(), 1) << "both of B's loops started";
  EXPECT_EQ(e->stats().queue_depth, 1u);
  for (int i = 0; i < 5; ++i) {
    auto echo = invoke(a, "echo");
    ASSERT_EQ(echo.wait_for(std::chrono::seconds(20)), std::future_status::ready)
        << "echo " << i << " waits behind a loop of B";
    EXPECT_TRUE(echo.get().ok);
  }
  EXPECT_EQ(e->stats().jobs_returned, 0u);
  // The first loop ends: the second starts.
  ASSERT_EQ(fake->terminateNow(), 1);
  EXPECT_EQ(l1.get().error_code, kErrTimeExceeded);
  ASSERT_TRUE(waitFor([&] { return fake->liveForTest() == 1; }));
  ASSERT_EQ(fake->terminateNow(), 1);
  EXPECT_EQ(l2.get().error_code, kErrTimeExceeded);
}

// B ran a long task lately (a loop marked long for ~150 ms): B's next invocation starts with its
// worker's JS thread already demoted, before any long-task mark; the priority comes back when
// that task ends, and A's echo afterwards runs on workers that are not demoted. A's or B's first
// invocation, before any long task of theirs, is not demoted.
TEST_F(TwoAccounts, AnAccountThatRanLongTasksLatelyStartsItsNextInvocationDemoted) {
  auto l1 = invoke(b, "loop");
  ASSERT_TRUE(waitFor([&] { return fake->liveForTest() == 1; }));
  EXPECT_EQ(demotedWorkerThreads(), 0u) << "B's first loop started demoted";
  ASSERT_EQ(fake->longTaskNow(), 1);
  ASSERT_TRUE(waitFor([&] { return demotedWorkerThreads() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  ASSERT_EQ(fake->terminateNow(), 1);
  EXPECT_EQ(l1.get().error_code, kErrTimeExceeded);
  ASSERT_TRUE(waitFor([&] { return demotedWorkerThreads() == 0; }));
  // B re-invokes: demoted from the start (no long-task mark this time).
  auto l2 = invoke(b, "loop");
  ASSERT_TRUE(waitFor([&] { return fake->liveForTest() == 1; }));
  // Demoted before its job was sent, so already while its JS runs.
  EXPECT_EQ(demotedWorkerThreads(), 1u) << "B's loop started at normal priority";
  EXPECT_EQ(e->stats().busy_workers, 0u);  // no long-task mark
  auto echo = invoke(a, "echo");
  EXPECT_TRUE(echo.get().ok);
  EXPECT_EQ(demotedWorkerThreads(), 1u);  // the loop's worker only
  ASSERT_EQ(fake->terminateNow(), 1);
  EXPECT_EQ(l2.get().error_code, kErrTimeExceeded);
  EXPECT_TRUE(waitFor([&] { return demotedWorkerThreads() == 0; })) << "priority not restored";
  EXPECT_TRUE(invoke(a, "echo").get().ok);
  EXPECT_EQ(demotedWorkerThreads(), 0u);
}

// Worker affinity: four accounts with five functions each invoke them again and again at the
// same time, on two workers. Each invocation's 2 ms of JS holds its worker from dispatch, so jobs
// are sent past their homes to the other worker (guest dispatches). Those guest contexts are
// dropped once idle, and the workers then hold one context per function, not one on each worker.
TEST(EngineAffinity, TwoWorkersHoldOneContextPerFunctionAfterManyInvocations) {
  testing::FakeHost host;
  SystemClock clock;
  RuntimeOptions o;
  o.threads = 2;
  o.max_workers = 2;
  o.guest_context_idle = std::chrono::milliseconds(200);
  auto made = Engine::create(o, host, clock);
  ASSERT_TRUE(made);
  auto& e = **made;
  ASSERT_TRUE(e.waitForWorkersForTest(2, std::chrono::seconds(60)));
  constexpr int kAccounts = 4, kFunctions = 5, kRounds = 20;
  auto account = [](int a) { return AccountId("acc" + std::to_string(a)); };
  auto function = [](int f) { return FunctionId("fn" + std::to_string(f)); };
  for (int a = 0; a < kAccounts; ++a) {
    for (int f = 0; f < kFunctions; ++f) {
      ASSERT_TRUE(e.deploy(account(a), function(f),
                           {"function lambda(i, cb) { const t = Date.now(); "
                            "while (Date.now() - t < 2) {} cb(null, 1); }",
                            {},
                            1}));
    }
  }
  // One client per account, each invoking its functions one after another: while one account's
  // job holds a worker, another account's job homed there goes to the other worker when that one
  // is free of other accounts (when every worker is held, it waits at home instead).
  // Whether a job meets its home held depends on timing: run the load until some did (at most
  // 10 times).
  for (int attempt = 0; attempt < 10 && e.stats().guest_dispatches == 0; ++attempt) {
    std::atomic<int> failed{0};
    std::vector<std::thread> clients;
    for (int a = 0; a < kAccounts; ++a) {
      clients.emplace_back([&, a] {
        for (int round = 0; round < kRounds; ++round) {
          for (int f = 0; f < kFunctions; ++f) {
            if (!invokeSync(e, account(a), function(f), 60'000).ok) failed.fetch_add(1);
          }
        }
      });
    }
    for (auto& t : clients) t.join();
    EXPECT_EQ(failed.load(), 0);
  }
  // The load did send invocations away from their homes (else this shows nothing).
  EXPECT_GT(e.stats().guest_dispatches, 0u);
  const std::size_t functions = kAccounts * kFunctions;
  EXPECT_TRUE(waitFor([&] { return e.stats().warm_contexts == functions; }))
      << e.stats().warm_contexts << " warm contexts for " << functions << " functions";
}

}  // namespace
}  // namespace parley::functions::engine
