// The fair scheduler on its own: caps per account, busy workers, quarantine, affinity.

#include "functions/engine/scheduler.h"

#include <gtest/gtest.h>

namespace parley::functions::engine {
namespace {

using Item = Scheduler::Item;
using Kind = Scheduler::WorkerKind;

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
  auto d = s.schedule();
  // At the cap (3) for B; A's one is not held behind B's backlog.
  int b = 0, a = 0;
  for (auto& x : d) (x.item.account == "B" ? b : a)++;
  EXPECT_EQ(b, 3);
  EXPECT_EQ(a, 1);
  EXPECT_EQ(s.queued(), 2u);
  EXPECT_EQ(s.inFlightOf("B"), 3u);
  // One of B's finishes: exactly one more of B's starts.
  s.finished(1, "B");
  auto more = s.schedule();
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].item.account, "B");
}

TEST(Scheduler, BusyWorkerGetsNothingAndAnAccountHoldsAtMostItsBusyCap) {
  Scheduler s(opts());
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  // B runs a long task on worker 1.
  ASSERT_EQ(s.push(item(1, "B", "loop")), Scheduler::Push::kQueued);
  auto d = s.schedule();
  ASSERT_EQ(d.size(), 1u);
  int loop_worker = d[0].worker;
  s.setBusy(loop_worker, "B");
  EXPECT_EQ(s.busyWorkersOf("B"), 1u);
  // B's next invocation waits (cap 1 busy worker); A's goes to the other worker.
  ASSERT_EQ(s.push(item(2, "B", "loop")), Scheduler::Push::kQueued);
  ASSERT_EQ(s.push(item(3, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].item.account, "A");
  EXPECT_NE(d[0].worker, loop_worker);
  EXPECT_EQ(s.queued(), 1u);
  // A busy worker is not given A's work either.
  ASSERT_EQ(s.push(item(4, "A", "echo")), Scheduler::Push::kQueued);
  d = s.schedule();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d[0].worker, loop_worker);
  // The long task ends: B's waiting invocation starts.
  s.finished(loop_worker, "B");
  s.setFree(loop_worker);
  d = s.schedule();
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
  s.setBusy(1, "B");
  EXPECT_FALSE(s.wantsSharedWorker(0));  // worker 2 is free
  s.setBusy(2, "C");
  EXPECT_TRUE(s.wantsSharedWorker(0));
  EXPECT_FALSE(s.wantsSharedWorker(1));  // one is starting
  s.addWorker(3, Kind::kShared);
  s.setBusy(3, "D");
  EXPECT_FALSE(s.wantsSharedWorker(0));  // at max_workers
}

TEST(Scheduler, AFreeWorkerIsSpareOnlyWhenAnotherWouldStillBeFree) {
  Scheduler s(opts());  // min_free_workers 1
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  s.addWorker(3, Kind::kQuarantine);
  EXPECT_TRUE(s.spareFreeWorker(0));  // two free shared workers
  s.setBusy(1, "B");
  EXPECT_FALSE(s.spareFreeWorker(0));  // worker 2 is the only free one (3 is not shared)
  EXPECT_TRUE(s.spareFreeWorker(1));   // one more is starting
  s.setFree(1);
  EXPECT_TRUE(s.spareFreeWorker(0));
}

TEST(Scheduler, QuarantinedFunctionRunsOnlyOnAQuarantineWorkerAndOthersNeverDo) {
  Scheduler s(opts());
  s.addWorker(1, Kind::kShared);
  s.quarantine("B/bomb");
  EXPECT_TRUE(s.wantsQuarantineWorker(0));
  ASSERT_EQ(s.push(item(1, "B", "bomb")), Scheduler::Push::kQueued);
  ASSERT_EQ(s.push(item(2, "B", "fine")), Scheduler::Push::kQueued);
  auto d = s.schedule();
  // The quarantined one waits for its worker; the account's other function is not held.
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].item.id, 2u);
  EXPECT_EQ(d[0].worker, 1);
  s.addWorker(9, Kind::kQuarantine);
  EXPECT_FALSE(s.wantsQuarantineWorker(0));
  d = s.schedule();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].item.id, 1u);
  EXPECT_EQ(d[0].worker, 9);
  // Nothing else goes to the quarantine worker, even when the shared one is busy.
  s.setBusy(1, "C");
  ASSERT_EQ(s.push(item(3, "A", "echo")), Scheduler::Push::kQueued);
  EXPECT_TRUE(s.schedule().empty());
  // Released (redeployed): back on shared workers.
  s.release("B/bomb");
  s.setFree(1);
  ASSERT_EQ(s.push(item(4, "B", "bomb")), Scheduler::Push::kQueued);
  d = s.schedule();
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
  auto d = s.schedule();
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
  auto d = s.schedule();
  ASSERT_FALSE(d.empty());
  EXPECT_EQ(d[0].item.id, 9u);
}

TEST(Scheduler, PrefersTheWorkerHoldingTheFunctionsWarmContext) {
  Scheduler s(opts());
  s.addWorker(1, Kind::kShared);
  s.addWorker(2, Kind::kShared);
  ASSERT_EQ(s.push(item(1, "A", "echo")), Scheduler::Push::kQueued);
  auto d = s.schedule();
  ASSERT_EQ(d.size(), 1u);
  int first = d[0].worker;
  s.finished(first, "A");
  for (std::uint64_t i = 2; i < 6; ++i) {
    ASSERT_EQ(s.push(item(i, "A", "echo")), Scheduler::Push::kQueued);
    d = s.schedule();
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].worker, first);
    s.finished(first, "A");
  }
}

}  // namespace
}  // namespace parley::functions::engine
