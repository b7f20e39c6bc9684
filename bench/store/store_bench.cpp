// Store microbenchmarks: appendMessage throughput (one thread, and 8 threads sharing the group
// commit) and listMessages latency, for the SQLite store (synchronous NORMAL and FULL) with the
// in-memory store as the floor. The database lives in $TMPDIR.
//
//   cmake --preset bench && cmake --build build/bench --target parley_store_bench
//   build/bench/bench/store/parley_store_bench

#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/testing/temp_dir.h"
#include "store/memory/memory_store.h"
#include "store/sqlite/sqlite_store.h"

namespace parley::store {
namespace {

enum Kind { kMemory = 0, kSqliteNormal = 1, kSqliteFull = 2 };

// One store per kind for the whole run, shared by all threads of a benchmark.
Store& storeFor(int kind) {
  static SystemClock clock;
  static parley::testing::TempDir dir;
  static std::mutex mu;
  static std::map<int, std::unique_ptr<Store>> stores;
  std::lock_guard lock(mu);
  auto& s = stores[kind];
  if (!s) {
    if (kind == kMemory) {
      s = makeMemoryStore(clock);
    } else {
      SqliteOptions o;
      o.sync = kind == kSqliteFull ? SqliteOptions::Sync::kFull : SqliteOptions::Sync::kNormal;
      auto r = openSqliteStore(dir.file("bench-" + std::to_string(kind) + ".db"), clock, o);
      if (!r) {
        std::fprintf(stderr, "open failed: %s\n", r.error().message.c_str());
        std::abort();
      }
      s = std::move(*r);
    }
  }
  return *s;
}

std::atomic<int> next_conversation{0};

// CPU time of the whole process (all threads, the SQLite writer included), in microseconds.
double processCpuUs() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  auto us = [](const timeval& t) { return t.tv_sec * 1e6 + static_cast<double>(t.tv_usec); };
  return us(r.ru_utime) + us(r.ru_stime);
}

Message makeMessage(const ConversationId& id, std::int64_t seq) {
  Message m;
  m.conversation = id;
  m.sequence = seq;
  m.server_ts = 1'700'000'000'000 + seq;
  m.originator_id = "4f1c8a52-consumer";
  m.originator_pid = "4f1c8a52-consumer";
  m.originator_role = store::ParticipantRole::kConsumer;
  m.event_json =
      R"({"type":"ContentEvent","contentType":"text/plain","message":"Hello, I would like to change my flight booking please"})";
  return m;
}

// Each thread appends to its own conversation (as conversations do: one strand each).
void BM_AppendMessage(benchmark::State& state) {
  Store& store = storeFor(static_cast<int>(state.range(0)));
  Conversation c;
  c.id = ConversationId("bench-" + std::to_string(next_conversation++));
  c.account = AccountId("1");
  // A consumer of its own: a consumer has at most one open conversation.
  c.consumer = ConsumerId("4f1c8a52-consumer-" + c.id.str());
  c.participants = {
      {c.consumer.str(), store::ParticipantRole::kConsumer, store::ParticipantState::kActive, 0},
      {"1000", store::ParticipantRole::kAssignedAgent, store::ParticipantState::kActive, 0}};
  std::int64_t seq = 0;
  SqliteWriteStats before;
  if (auto st = sqliteWriteStats(store)) before = *st;
  const double cpu_before = processCpuUs();
  for (auto _ : state) {
    c.next_sequence = seq + 1;
    auto r = store.conversations().appendMessage(c, makeMessage(c.id, seq++));
    if (!r) state.SkipWithError(r.error().message.c_str());
  }
  state.SetItemsProcessed(state.iterations());
  // Process CPU per append (all threads), as seen by thread 0: on a shared machine this is the
  // stable figure, while real time depends on how much CPU the other processes leave us.
  if (state.thread_index() == 0) {
    state.counters["proc_cpu_us_per_op"] =
        (processCpuUs() - cpu_before) /
        static_cast<double>(state.iterations() * static_cast<std::int64_t>(state.threads()));
  }
  // Writes per committed transaction during this run, as seen by thread 0 (approximate when
  // threads start and stop at different times).
  if (state.thread_index() == 0 && state.range(0) != kMemory) {
    if (auto st = sqliteWriteStats(store)) {
      const auto txns = std::max<std::int64_t>(1, st->transactions - before.transactions);
      state.counters["writes_per_txn"] =
          static_cast<double>(st->writes - before.writes) / static_cast<double>(txns);
    }
  }
}
BENCHMARK(BM_AppendMessage)
    ->ArgNames({"store"})
    ->Arg(kMemory)
    ->Arg(kSqliteNormal)
    ->Arg(kSqliteFull)
    ->Threads(1)
    ->Threads(8)
    ->UseRealTime();

// Asynchronous appends (what the conversation engine does): `in_flight` conversations each keep
// one append queued at a time, as a conversation does while its turn runs; a completion queues
// that conversation's next append. Measures appends/s through the writer thread and how many
// share each commit.
void BM_AppendMessageAsync(benchmark::State& state) {
  Store& store = storeFor(static_cast<int>(state.range(0)));
  const int in_flight = static_cast<int>(state.range(1));
  struct Conv {
    Conversation c;
    std::int64_t seq = 0;
  };
  static int run = 0;
  ++run;
  std::vector<Conv> convs(static_cast<std::size_t>(in_flight));
  for (int i = 0; i < in_flight; ++i) {
    auto& c = convs[static_cast<std::size_t>(i)].c;
    c.id = ConversationId("async-" + std::to_string(run) + "-" + std::to_string(i));
    c.account = AccountId("1");
    c.consumer = ConsumerId("consumer-" + std::to_string(run) + "-" + std::to_string(i));
    c.participants = {
        {c.consumer.str(), store::ParticipantRole::kConsumer, store::ParticipantState::kActive, 0},
        {"1000", store::ParticipantRole::kAssignedAgent, store::ParticipantState::kActive, 0}};
  }
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> ready;  // conversations whose append completed
  std::int64_t failed = 0;
  auto submit = [&](int i) {
    Conv& cv_ = convs[static_cast<std::size_t>(i)];
    cv_.c.next_sequence = cv_.seq + 1;
    store.conversations().appendMessageAsync(cv_.c, makeMessage(cv_.c.id, cv_.seq++),
                                             [&, i](Status st) {
                                               std::lock_guard lock(mu);
                                               if (!st) ++failed;
                                               ready.push_back(i);
                                               cv.notify_one();
                                             });
  };
  SqliteWriteStats before;
  if (auto st = sqliteWriteStats(store)) before = *st;
  const double cpu_before = processCpuUs();
  for (int i = 0; i < in_flight; ++i) submit(i);
  std::int64_t done = 0;
  for (auto _ : state) {
    int i = 0;
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return !ready.empty(); });
      i = ready.back();
      ready.pop_back();
    }
    ++done;
    submit(i);
  }
  {
    // Drain what is still queued.
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return static_cast<std::int64_t>(ready.size()) == in_flight; });
  }
  if (failed > 0) state.SkipWithError("an append failed");
  state.SetItemsProcessed(done);
  state.counters["proc_cpu_us_per_op"] =
      (processCpuUs() - cpu_before) / static_cast<double>(std::max<std::int64_t>(1, done));
  if (state.range(0) != kMemory) {
    if (auto st = sqliteWriteStats(store)) {
      const auto txns = std::max<std::int64_t>(1, st->transactions - before.transactions);
      state.counters["writes_per_txn"] =
          static_cast<double>(st->writes - before.writes) / static_cast<double>(txns);
    }
  }
}
BENCHMARK(BM_AppendMessageAsync)
    ->ArgNames({"store", "in_flight"})
    ->Args({kSqliteNormal, 1})
    ->Args({kSqliteNormal, 100})
    ->Args({kSqliteNormal, 1000})
    ->UseRealTime();

// Latency of reading one page of 50 messages from a 1000-message conversation.
void BM_ListMessages(benchmark::State& state) {
  Store& store = storeFor(static_cast<int>(state.range(0)));
  static std::mutex mu;
  static std::map<int, ConversationId> seeded;
  ConversationId id;
  {
    std::lock_guard lock(mu);
    auto it = seeded.find(static_cast<int>(state.range(0)));
    if (it == seeded.end()) {
      Conversation c;
      c.id = ConversationId("list-" + std::to_string(state.range(0)));
      c.account = AccountId("1");
      for (int i = 0; i < 1000; ++i) {
        c.next_sequence = i + 1;
        if (!store.conversations().appendMessage(c, makeMessage(c.id, i))) std::abort();
      }
      it = seeded.emplace(static_cast<int>(state.range(0)), c.id).first;
    }
    id = it->second;
  }
  std::int64_t from = 0;
  const double cpu_before = processCpuUs();
  for (auto _ : state) {
    auto r = store.conversations().listMessages(id, from, 50);
    if (!r || r->size() != 50) state.SkipWithError("short read");
    benchmark::DoNotOptimize(r);
    from = (from + 97) % 950;
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    state.counters["proc_cpu_us_per_op"] =
        (processCpuUs() - cpu_before) /
        static_cast<double>(state.iterations() * static_cast<std::int64_t>(state.threads()));
  }
}
BENCHMARK(BM_ListMessages)
    ->ArgNames({"store"})
    ->Arg(kMemory)
    ->Arg(kSqliteNormal)
    ->Threads(1)
    ->Threads(4)
    ->UseRealTime();

}  // namespace
}  // namespace parley::store

BENCHMARK_MAIN();
