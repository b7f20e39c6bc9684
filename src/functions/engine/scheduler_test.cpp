// The fair scheduler on its own: caps per account, busy workers, quarantine, affinity.

#include "functions/engine/scheduler.h"

#include <gtest/gtest.h>

namespace parley::functions::engine {
namespace {

using Item = Scheduler::Item;
using Kind = Scheduler::WorkerKind;
using namespace std::chrono_literals;

const Scheduler::Time t0 = Scheduler::Time() + 1000s;

Item item(std::uint64_t id, const std::string& account, const std::string& fn = "f") {
  return Item{id, account, account + "/" + fn};
}

SchedulerOptions opts() {
  SchedulerOptions o;
  o.max_in_flight_per_account = 3;
  o.max_busy_workers_per_account = 1;
  o.max_workers = 4;
  return o;
}

TEST(Scheduler, AccountCapOnInFlightHoldsOnlyThatAccount) {
  Scheduler s(opts());
  s.addWorker(1, Kind::kShared);
  for (std::uint64_t i = 1; i <= 5; ++i) ASSERT_EQ(s.push(item(i, "B")), Scheduler::Push::kQueued);
  ASSERT_EQ(s.push(item(100, "A")), Scheduler::Push::kQueued);
  auto d = s.schedule(t0);
  // At the cap (3) for B; A's one is not held behind B's backlog.
  int b = 0, a = 0;
  for (auto& x : d) (x.item.account == "B" ? b : a)++;
  EXPECT_EQ(b, 3);
  EXPECT_EQ(a, 1);
  EXPECT_EQ(s.queued(), 2u);
  EXPECT_EQ(s.inFlightOf("B"), 3u);
  // One of B's finishes: exactly one more of B's starts.
  s.finished(1, "B");
  auto more = s.schedule(t0);
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].item.account, "B");
}

TEST(Scheduler, BusyWorkerGetsNothingAndAnAccountHoldsAtMostItsBusyCap) {
  Scheduler s(opts());
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  // B runs a long task on worker 1.
  ASSERT_EQ(s.push(item(1, "B", "loop")), Scheduler::Push::kQueued);
  auto d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  int loop_worker = d[0].worker;
  s.setBusy(loop_worker, "B", t0);
  EXPECT_EQ(s.busyWorkersOf("B"), 1u);
  // B's next invocation waits (cap 1 busy worker); A's goes to the other worker.
  ASSERT_EQ(s.push(item(2, "B", "loop")), Scheduler::Push::kQueued);
  ASSERT_EQ(s.push(item(3, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].item.account, "A");
  EXPECT_NE(d[0].worker, loop_worker);
  EXPECT_EQ(s.queued(), 1u);
  // A busy worker is not given A's work either.
  ASSERT_EQ(s.push(item(4, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d[0].worker, loop_worker);
  // The long task ends: B's waiting invocation starts.
  s.finished(loop_worker, "B");
  s.setFree(loop_worker, t0);
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].item.id, 2u);
}

TEST(Scheduler, AsksForAnotherWorkerWhenNoneIsFreeUpToTheLimit) {
  SchedulerOptions o = opts();
  o.max_workers = 3;
  Scheduler s(o);
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  EXPECT_FALSE(s.wantsSharedWorker(0));
  s.setBusy(1, "B", t0);
  EXPECT_FALSE(s.wantsSharedWorker(0));  // worker 2 is free
  s.setBusy(2, "C", t0);
  EXPECT_TRUE(s.wantsSharedWorker(0));
  EXPECT_FALSE(s.wantsSharedWorker(1));  // one is starting
  s.addWorker(3, Kind::kShared);
  s.setBusy(3, "D", t0);
  EXPECT_FALSE(s.wantsSharedWorker(0));  // at max_workers
}

TEST(Scheduler, AFreeWorkerIsSpareOnlyWhenAnotherWouldStillBeFree) {
  Scheduler s(opts());  // min_free_workers 1
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  s.addWorker(3, Kind::kQuarantine);
  EXPECT_TRUE(s.spareFreeWorker(0));  // two free shared workers
  s.setBusy(1, "B", t0);
  EXPECT_FALSE(s.spareFreeWorker(0));  // worker 2 is the only free one (3 is not shared)
  EXPECT_TRUE(s.spareFreeWorker(1));   // one more is starting
  s.setFree(1, t0);
  EXPECT_TRUE(s.spareFreeWorker(0));
}

TEST(Scheduler, QuarantinedFunctionRunsOnlyOnAQuarantineWorkerAndOthersNeverDo) {
  Scheduler s(opts());
  s.addWorker(1, Kind::kShared);
  s.quarantine("B/bomb");
  EXPECT_TRUE(s.wantsQuarantineWorker(0));
  ASSERT_EQ(s.push(item(1, "B", "bomb")), Scheduler::Push::kQueued);
  ASSERT_EQ(s.push(item(2, "B", "fine")), Scheduler::Push::kQueued);
  auto d = s.schedule(t0);
  // The quarantined one waits for its worker; the account's other function is not held.
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].item.id, 2u);
  EXPECT_EQ(d[0].worker, 1);
  s.addWorker(9, Kind::kQuarantine);
  EXPECT_FALSE(s.wantsQuarantineWorker(0));
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].item.id, 1u);
  EXPECT_EQ(d[0].worker, 9);
  // Nothing else goes to the quarantine worker, even when the shared one is busy.
  s.setBusy(1, "C", t0);
  ASSERT_EQ(s.push(item(3, "A", "echo")), Scheduler::Push::kQueued);
  EXPECT_TRUE(s.schedule(t0).empty());
  // Released (redeployed): back on shared workers.
  s.release("B/bomb");
  s.setFree(1, t0);
  ASSERT_EQ(s.push(item(4, "B", "bomb")), Scheduler::Push::kQueued);
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 2u);
  for (auto& x : d) EXPECT_EQ(x.worker, 1);
}

TEST(Scheduler, AccountsAreServedRoundRobin) {
  SchedulerOptions o = opts();
  o.max_in_flight_per_account = 1000;
  o.max_in_flight_per_worker = 4;
  Scheduler s(o);
  s.addWorker(1, Kind::kShared);
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_EQ(s.push(item(i, "B")), Scheduler::Push::kQueued);
  ASSERT_EQ(s.push(item(100, "A")), Scheduler::Push::kQueued);
  auto d = s.schedule(t0);
  ASSERT_EQ(d.size(), 4u);  // the worker's cap
  bool a_started = false;
  for (auto& x : d) a_started |= x.item.account == "A";
  EXPECT_TRUE(a_started) << "A's invocation waited behind B's backlog";
}

TEST(Scheduler, ReturnedJobsGoFirstAndQueueLimitsHold) {
  SchedulerOptions o = opts();
  o.max_queued = 3;
  o.max_queued_per_function = 2;
  Scheduler s(o);
  EXPECT_EQ(s.push(item(1, "A")), Scheduler::Push::kQueued);
  EXPECT_EQ(s.push(item(2, "A")), Scheduler::Push::kQueued);
  EXPECT_EQ(s.push(item(3, "A")), Scheduler::Push::kFunctionQueueFull);
  EXPECT_EQ(s.push(item(4, "A", "g")), Scheduler::Push::kQueued);
  EXPECT_EQ(s.push(item(5, "C")), Scheduler::Push::kQueueFull);
  s.pushFront(item(9, "A"));  // handed back by a busy worker: never refused, served first
  s.addWorker(1, Kind::kShared);
  auto d = s.schedule(t0);
  ASSERT_FALSE(d.empty());
  EXPECT_EQ(d[0].item.id, 9u);
}

TEST(Scheduler, PrefersTheWorkerHoldingTheFunctionsWarmContext) {
  Scheduler s(opts());
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  ASSERT_EQ(s.push(item(1, "A", "echo")), Scheduler::Push::kQueued);
  auto d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  int first = d[0].worker;
  s.finished(first, "A");
  for (std::uint64_t i = 2; i < 6; ++i) {
    ASSERT_EQ(s.push(item(i, "A", "echo")), Scheduler::Push::kQueued);
    d = s.schedule(t0);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].worker, first);
    s.finished(first, "A");
  }
}

// An invocation holds its worker from dispatch until its first task ends: another account's
// invocation goes to a worker nobody else holds, even past its own warm context, where it would
// wait behind a task that may turn out long (it is marked long only 20 ms later).
TEST(Scheduler, AnotherAccountsJobGoesToAWorkerNobodyElseHoldsBeforeItsWarmContext) {
  Scheduler s(opts());
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  s.noteAffinity("A/echo", 1);
  s.noteAffinity("B/loop", 1);
  ASSERT_EQ(s.push(item(1, "B", "loop")), Scheduler::Push::kQueued);
  auto d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  ASSERT_EQ(d[0].worker, 1);
  ASSERT_EQ(s.push(item(2, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].worker, 2);
  // A's echo ended; B's task has not. With every worker held by another account (B on 1, A on
  // 2), C's job still starts, on one of them.
  s.settled(2, 2);
  s.finished(2, "A");
  ASSERT_EQ(s.push(item(3, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].worker, 2);
  ASSERT_EQ(s.push(item(4, "C", "f")), Scheduler::Push::kQueued);
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  // Once B's first task ended (it waits on a timer), A's warm context is used again.
  s.settled(1, 1);
  s.settled(2, 3);
  s.settled(d[0].worker, 4);
  s.noteAffinity("A/echo", 1);
  ASSERT_EQ(s.push(item(5, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].worker, 1);
}

// The busy-worker cap counts the workers an account holds from dispatch on, not from the
// long-task mark: two loops invoked at once (here: two functions with warm contexts on
// different workers) do not take both workers before either is marked.
TEST(Scheduler, TheBusyWorkerCapCountsWorkersHeldFromDispatch) {
  Scheduler s(opts());  // cap 1
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  s.noteAffinity("B/loop1", 1);
  s.noteAffinity("B/loop2", 2);
  ASSERT_EQ(s.push(item(1, "B", "loop1")), Scheduler::Push::kQueued);
  ASSERT_EQ(s.push(item(2, "B", "loop2")), Scheduler::Push::kQueued);
  auto d = s.schedule(t0);
  // The second goes behind the first on the worker B holds (where the long-task mark hands it
  // back), never to the other worker.
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].worker, 1);
  EXPECT_EQ(d[1].worker, 1);
  EXPECT_EQ(s.heldBy("B"), 1u);
  // The first is marked long; the second is handed back and waits for the cap.
  s.setBusy(1, "B", t0);
  s.settled(1, 2);
  s.finished(1, "B");
  s.pushFront(item(2, "B", "loop2"));
  EXPECT_TRUE(s.schedule(t0).empty());
  // A holds worker 2 with a job of its own and B still cannot take it.
  ASSERT_EQ(s.push(item(3, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].item.account, "A");
  EXPECT_EQ(d[0].worker, 2);
  EXPECT_EQ(s.queued(), 1u);
}

// An account whose long tasks took >= heavy_after lately (decayed, half-life heavy_half_life)
// is heavy: its job is dispatched `demote` to a worker no other account holds, which is then
// reserved for it (nobody else's job goes there, and it does not count as free) until the job
// settles. The usage decays: later it is not heavy any more.
TEST(Scheduler, AnAccountWithRecentLongTasksStartsDemotedOnAReservedWorker) {
  SchedulerOptions o = opts();
  o.long_task = 20ms;
  o.heavy_after = 100ms;
  o.heavy_half_life = 1s;
  Scheduler s(o);
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  s.addWorker(3, Kind::kShared);
  EXPECT_FALSE(s.heavy("B", t0));
  // A long task of B: 20 ms before the mark + 60 ms after it = 80 ms, not yet heavy.
  ASSERT_EQ(s.push(item(1, "B", "loop")), Scheduler::Push::kQueued);
  auto d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_FALSE(d[0].demote);
  s.setBusy(d[0].worker, "B", t0);
  EXPECT_TRUE(s.heavy("B", t0));  // while it runs
  s.setFree(d[0].worker, t0 + 60ms);
  s.settled(d[0].worker, 1);
  s.finished(d[0].worker, "B");
  EXPECT_FALSE(s.heavy("B", t0 + 60ms));
  // Another one of 2 s: heavy.
  const auto t1 = t0 + 1s;
  s.setBusy(2, "B", t1);
  s.setFree(2, t1 + 2s);
  const auto t2 = t1 + 2s;
  EXPECT_TRUE(s.heavy("B", t2));
  // A's job holds worker 1 (not settled yet): B's heavy job goes elsewhere, and is reserved.
  s.noteAffinity("B/loop", 1);
  ASSERT_EQ(s.push(item(2, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule(t2);
  ASSERT_EQ(d.size(), 1u);
  const int a_worker = d[0].worker;
  ASSERT_EQ(s.push(item(3, "B", "loop")), Scheduler::Push::kQueued);
  d = s.schedule(t2);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_TRUE(d[0].demote);
  const int b_worker = d[0].worker;
  EXPECT_NE(b_worker, a_worker);
  EXPECT_TRUE(s.reserved(b_worker));
  // No other account's job goes to the reserved worker, even when it is the least loaded.
  s.settled(a_worker, 2);
  s.finished(a_worker, "A");
  for (std::uint64_t i = 10; i < 14; ++i) {
    ASSERT_EQ(s.push(item(i, "C", "f" + std::to_string(i))), Scheduler::Push::kQueued);
    for (auto& x : s.schedule(t2)) EXPECT_NE(x.worker, b_worker);
  }
  // A reserved worker is not free: with the third busy, another worker is asked for.
  const int third = 6 - a_worker - b_worker;
  s.setBusy(third, "D", t2);
  s.setBusy(a_worker, "E", t2);
  EXPECT_TRUE(s.wantsSharedWorker(0));
  // The job's first task ended: the reservation ends.
  s.settled(b_worker, 3);
  EXPECT_FALSE(s.reserved(b_worker));
  EXPECT_FALSE(s.wantsSharedWorker(0));
  // ~2.1 s of long tasks, half-life 1 s: below 100 ms after ~4.5 s.
  EXPECT_TRUE(s.heavy("B", t2 + 4s));
  EXPECT_FALSE(s.heavy("B", t2 + 5s));
}

// A function's home keeps its warm context: detours that fairness calls for (its home held by
// another account's job, its account holding another worker) run it elsewhere as a guest
// (`home` false) and leave the home where it was; its next invocations go home again.
TEST(Scheduler, DetoursLeaveTheHomeWhereItIs) {
  Scheduler s(opts());
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  s.noteAffinity("A/echo", 1, "A");
  s.noteAffinity("B/f", 1, "B");
  for (std::uint64_t round = 0; round < 50; ++round) {
    const std::uint64_t id = round * 10;
    // B's job holds worker 1 (not settled): A's echo runs on worker 2, as a guest.
    ASSERT_EQ(s.push(item(id + 1, "B", "f")), Scheduler::Push::kQueued);
    auto d = s.schedule(t0);
    ASSERT_EQ(d.size(), 1u);
    ASSERT_EQ(d[0].worker, 1);
    EXPECT_TRUE(d[0].home);
    ASSERT_EQ(s.push(item(id + 2, "A", "echo")), Scheduler::Push::kQueued);
    d = s.schedule(t0);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].worker, 2);
    EXPECT_FALSE(d[0].home) << "a detour made worker 2 the home";
    EXPECT_EQ(s.homeOf("A/echo"), 1);
    // Both settle and finish: A's next echo goes home.
    s.settled(1, id + 1);
    s.finished(1, "B");
    s.settled(2, id + 2);
    s.finished(2, "A");
    ASSERT_EQ(s.push(item(id + 3, "A", "echo")), Scheduler::Push::kQueued);
    d = s.schedule(t0);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].worker, 1);
    EXPECT_TRUE(d[0].home);
    s.settled(1, id + 3);
    s.finished(1, "A");
  }
}

// A function dispatched for the first time is homed where it goes: beside its account's other
// functions when that worker is usable, else on the least loaded worker.
TEST(Scheduler, AFunctionsFirstDispatchHomesItBesideItsAccount) {
  Scheduler s(opts());
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  s.noteAffinity("A/one", 2, "A");
  EXPECT_EQ(s.accountHomeOf("A"), 2);
  ASSERT_EQ(s.push(item(1, "A", "two")), Scheduler::Push::kQueued);
  auto d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].worker, 2);
  EXPECT_TRUE(d[0].home);
  EXPECT_EQ(s.homeOf("A/two"), 2);
  EXPECT_EQ(s.homedOn(2), 2u);
  // Another account's new function: the least loaded worker (1; 2 runs A's job).
  ASSERT_EQ(s.push(item(2, "C", "f")), Scheduler::Push::kQueued);
  d = s.schedule(t0);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].worker, 1);
  EXPECT_EQ(s.homeOf("C/f"), 1);
  EXPECT_EQ(s.accountHomeOf("C"), 1);
}

// The home moves only when its worker is gone, or has run one long task for rehome_after.
TEST(Scheduler, TheHomeMovesWhenItsWorkerIsGoneOrBusyPastTheBound) {
  SchedulerOptions o = opts();
  o.rehome_after = 1s;
  Scheduler s(o);
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  s.noteAffinity("A/echo", 1, "A");
  // Worker 1 runs C's long task: A's echo is a guest on 2 until the task has run 1 s.
  s.setBusy(1, "C", t0);
  ASSERT_EQ(s.push(item(1, "A", "echo")), Scheduler::Push::kQueued);
  auto d = s.schedule(t0 + 500ms);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].worker, 2);
  EXPECT_FALSE(d[0].home);
  EXPECT_EQ(s.homeOf("A/echo"), 1);
  s.settled(2, 1);
  s.finished(2, "A");
  ASSERT_EQ(s.push(item(2, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule(t0 + 1500ms);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].worker, 2);
  EXPECT_TRUE(d[0].home);
  EXPECT_EQ(d[0].moved_from, 1);  // worker 1's context becomes a guest there
  EXPECT_EQ(s.homeOf("A/echo"), 2);
  s.settled(2, 2);
  s.finished(2, "A");
  // Worker 2 goes away: the function is homed where it runs next.
  s.setFree(1, t0 + 2s);
  s.removeWorker(2);
  EXPECT_EQ(s.homeOf("A/echo"), -1);
  ASSERT_EQ(s.push(item(3, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule(t0 + 2s);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].worker, 1);
  EXPECT_TRUE(d[0].home);
  EXPECT_EQ(d[0].moved_from, -1);  // the old home is gone with its contexts
  EXPECT_EQ(s.homeOf("A/echo"), 1);
}

}  // namespace
}  // namespace parley::functions::engine
