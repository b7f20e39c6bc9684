// Function runtime benchmarks: warm invoke latency/throughput of an echo bot (and the floor
// under its hand-offs, BM_HandOffFloor), cold deploy-to-first-result, resident memory per
// deployed function; each in-process (worker threads) and with sandboxed worker processes
// (`isolation:1`; the RSS figure then counts the worker processes too).
//
//   cmake -S . -B build/functions-bench -G Ninja -DCMAKE_BUILD_TYPE=Release
//   -DPARLEY_BUILD_BENCHMARKS=ON cmake --build build/functions-bench --target
//   parley_functions_bench build/functions-bench/bench/functions/parley_functions_bench

#include <benchmark/benchmark.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <future>
#include <thread>

#include "functions/engine/engine.h"
#include "functions/runtime.h"
#include "functions/testing/fake_host.h"

namespace parley::functions {
namespace {

constexpr const char* kEchoBot = R"JS(
function lambda(input, callback) {
  callback(null, {messages: [input.payload.message], context: {echo: true}});
}
)JS";

constexpr const char* kInput =
    R"({"timestamp":1700000000000,"headers":[],"payload":{"message":"hello bot","convId":"c-1","context":{"lpEvent":{},"lpSdes":{}}}})";

struct Env {
  testing::FakeHost host;
  SystemClock clock;
  std::unique_ptr<FunctionRuntime> rt;
  Env(int threads, int isolation) {
    RuntimeOptions o;
    o.threads = threads;
    o.max_workers = threads;
    o.isolation = isolation ? WorkerIsolation::kProcess : WorkerIsolation::kInProcess;
    rt = std::move(*FunctionRuntime::create(o, host, clock));
    rt->engineForTest().waitForWorkersForTest(static_cast<std::size_t>(threads),
                                              std::chrono::seconds(30));
  }
};

InvokeRequest request(const std::string& fn) {
  InvokeRequest r;
  r.account = AccountId("le12345");
  r.function = FunctionId(fn);
  r.input_json = kInput;
  r.request_id = "bench";
  return r;
}

// Round trip of one invocation: submit -> result callback (the caller spins on an atomic, as a
// strand post would not add a thread wake-up of its own).
void BM_WarmInvokeLatency(benchmark::State& state) {
  Env env(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  if (!env.rt->deploy(AccountId("le12345"), FunctionId("echo"), {kEchoBot, {}, 1})) {
    state.SkipWithError("deploy failed");
    return;
  }
  std::vector<double> lat;
  lat.reserve(1 << 20);
  std::atomic<bool> done{false};
  bool ok = true;
  for (auto _ : state) {
    done.store(false, std::memory_order_relaxed);
    auto t0 = std::chrono::steady_clock::now();
    env.rt->invoke(request("echo"), [&](InvokeResult r) {
      ok &= r.ok;
      done.store(true, std::memory_order_release);
    });
    while (!done.load(std::memory_order_acquire)) {
    }
    lat.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  if (!ok) state.SkipWithError("an invocation failed");
  std::sort(lat.begin(), lat.end());
  state.counters["p50_us"] = lat[lat.size() / 2];
  state.counters["p99_us"] = lat[lat.size() * 99 / 100];
}
BENCHMARK(BM_WarmInvokeLatency)
    ->ArgsProduct({{1, 2}, {0, 1}})
    ->ArgNames({"threads", "isolation"})
    ->UseRealTime()
    ->MinTime(2.0);

// The floor under BM_WarmInvokeLatency's hand-offs, without V8 or the engine: the caller writes
// a 176-byte frame (a job's size) to a socketpair and spins; a responder wakes from poll, reads
// it and writes 88 bytes back (a result's size); a reader thread wakes from poll, reads them and
// sets the caller's flag. isolation:0 runs the responder on a thread of this process (as an
// in-process worker), isolation:1 in a forked child process (as a worker process). The
// difference is what two wake-ups across a process boundary cost on this host, whatever the
// channel carries.
void respond(int fd) {
  char buf[512];
  char reply[88] = {};
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) return;
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return;
    if (n > 0 && ::send(fd, reply, sizeof reply, MSG_NOSIGNAL) < 0) return;
  }
}

void BM_HandOffFloor(benchmark::State& state) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    state.SkipWithError("socketpair failed");
    return;
  }
  const bool process = state.range(0) != 0;
  pid_t child = 0;
  std::thread responder;
  if (process) {
    child = ::fork();
    if (child < 0) {
      ::close(sv[0]);
      ::close(sv[1]);
      state.SkipWithError("fork failed");
      return;
    }
    if (child == 0) {
      ::close(sv[0]);
      respond(sv[1]);
      ::_exit(0);
    }
    ::close(sv[1]);
  } else {
    responder = std::thread([fd = sv[1]] { respond(fd); });
  }
  std::atomic<bool> done{false};
  std::thread reader([&, fd = sv[0]] {
    char buf[512];
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, -1) < 0 && errno != EINTR) return;
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return;
      if (n > 0) done.store(true, std::memory_order_release);
    }
  });
  char frame[176] = {};
  std::vector<double> lat;
  lat.reserve(1 << 20);
  for (auto _ : state) {
    done.store(false, std::memory_order_relaxed);
    auto t0 = std::chrono::steady_clock::now();
    if (::send(sv[0], frame, sizeof frame, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof frame)) {
      state.SkipWithError("send failed");
      break;
    }
    while (!done.load(std::memory_order_acquire)) {
    }
    lat.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  ::shutdown(sv[0], SHUT_RDWR);
  reader.join();
  if (process) {
    ::waitpid(child, nullptr, 0);
  } else {
    responder.join();
    ::close(sv[1]);
  }
  ::close(sv[0]);
  if (lat.empty()) return;
  std::sort(lat.begin(), lat.end());
  state.counters["p50_us"] = lat[lat.size() / 2];
  state.counters["p99_us"] = lat[lat.size() * 99 / 100];
}
BENCHMARK(BM_HandOffFloor)->Arg(0)->Arg(1)->ArgName("isolation")->UseRealTime()->MinTime(2.0);

// Throughput with up to 256 invocations outstanding.
void BM_WarmInvokeThroughput(benchmark::State& state) {
  Env env(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  if (!env.rt->deploy(AccountId("le12345"), FunctionId("echo"), {kEchoBot, {}, 1})) {
    state.SkipWithError("deploy failed");
    return;
  }
  std::atomic<std::int64_t> outstanding{0};
  std::atomic<std::int64_t> failed{0};
  std::int64_t n = 0;
  for (auto _ : state) {
    while (outstanding.load(std::memory_order_acquire) >= 256) std::this_thread::yield();
    outstanding.fetch_add(1);
    env.rt->invoke(request("echo"), [&](InvokeResult r) {
      if (!r.ok) failed.fetch_add(1);
      outstanding.fetch_sub(1, std::memory_order_release);
    });
    ++n;
  }
  while (outstanding.load() > 0) std::this_thread::yield();
  if (failed.load()) state.SkipWithError("an invocation failed");
  state.SetItemsProcessed(n);
}
BENCHMARK(BM_WarmInvokeThroughput)
    ->ArgsProduct({{1, 2}, {0, 1}})
    ->ArgNames({"threads", "isolation"})
    ->UseRealTime()
    ->MinTime(2.0);

// deploy() of a new function + its first invocation.
void BM_ColdDeployToFirstResult(benchmark::State& state) {
  Env env(1, static_cast<int>(state.range(0)));
  int i = 0;
  bool ok = true;
  std::vector<double> lat;
  for (auto _ : state) {
    std::string fn = "cold-" + std::to_string(i++);
    auto t0 = std::chrono::steady_clock::now();
    ok &= env.rt->deploy(AccountId("le12345"), FunctionId(fn), {kEchoBot, {}, 1}).has_value();
    std::promise<InvokeResult> p;
    env.rt->invoke(request(fn), [&](InvokeResult r) { p.set_value(std::move(r)); });
    ok &= p.get_future().get().ok;
    lat.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    state.PauseTiming();
    env.rt->undeploy(AccountId("le12345"), FunctionId(fn));
    state.ResumeTiming();
  }
  if (!ok) state.SkipWithError("deploy or invoke failed");
  std::sort(lat.begin(), lat.end());
  state.counters["p50_ms"] = lat[lat.size() / 2];
  state.counters["p99_ms"] = lat[lat.size() * 99 / 100];
}
BENCHMARK(BM_ColdDeployToFirstResult)
    ->Arg(0)
    ->Arg(1)
    ->ArgName("isolation")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(200);

double rssMiBOf(const std::string& pid) {
  std::ifstream f("/proc/" + pid + "/statm");
  long size = 0, resident = 0;
  f >> size >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) /
         (1024.0 * 1024.0);
}

// This process and its worker processes.
double rssMiB(FunctionRuntime& rt) {
  double total = rssMiBOf("self");
  for (auto kind :
       {engine::Scheduler::WorkerKind::kShared, engine::Scheduler::WorkerKind::kQuarantine})
    for (int pid : rt.engineForTest().workerPidsForTest(kind))
      total += rssMiBOf(std::to_string(pid));
  return total;
}

// Resident memory with 1,000 deployed functions, each also invoked once. With 2 workers a
// function may be warm on both (one context per worker that ran it).
void BM_Rss1000Deployed(benchmark::State& state) {
  for (auto _ : state) {
    Env env(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
    // Warm up the isolates first so the figure is per function, not per isolate.
    (void)env.rt->deploy(AccountId("le12345"), FunctionId("warm"), {kEchoBot, {}, 1});
    double before = rssMiB(*env.rt);
    bool ok = true;
    for (int i = 0; i < 1000; ++i) {
      std::string fn = "fn-" + std::to_string(i);
      std::string code = std::string(kEchoBot) + "\n// function " + fn + "\n";
      ok &=
          env.rt->deploy(AccountId("le12345"), FunctionId(fn), {code, {{"N", fn}}, 1}).has_value();
      std::promise<InvokeResult> p;
      env.rt->invoke(request(fn), [&](InvokeResult r) { p.set_value(std::move(r)); });
      ok &= p.get_future().get().ok;
    }
    double after = rssMiB(*env.rt);
    if (!ok) state.SkipWithError("deploy or invoke failed");
    state.counters["rss_before_MiB"] = before;
    state.counters["rss_after_MiB"] = after;
    state.counters["per_function_KiB"] = (after - before) * 1024.0 / 1000.0;
    state.counters["deployed"] = static_cast<double>(env.rt->stats().deployed);
  }
}
BENCHMARK(BM_Rss1000Deployed)
    ->ArgsProduct({{1, 2}, {0, 1}})
    ->ArgNames({"threads", "isolation"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime();

// Resident memory per deployed function with 2 workers under load from several accounts at once:
// 4 accounts with 250 functions each, every function invoked 8 times, each account's client
// keeping 16 invocations outstanding, so the workers are nearly always held by some account's
// job when another account's job is dispatched. Counters: RSS growth per function (isolates an
// account opens on a second worker included) and warm contexts per function, right after the
// load (`*_loaded`) and after 6 s without invocations (`*_settled`).
void BM_RssDeployedUnderLoad(benchmark::State& state) {
  constexpr int kAccounts = 4, kPerAccount = 250, kRounds = 8, kOutstanding = 16;
  for (auto _ : state) {
    Env env(2, static_cast<int>(state.range(0)));
    auto account = [](int a) { return AccountId("le" + std::to_string(10000 + a)); };
    for (int a = 0; a < kAccounts; ++a)
      (void)env.rt->deploy(account(a), FunctionId("warm"), {kEchoBot, {}, 1});
    const double before = rssMiB(*env.rt);
    bool ok = true;
    for (int a = 0; a < kAccounts; ++a) {
      for (int i = 0; i < kPerAccount; ++i) {
        std::string fn = "fn-" + std::to_string(i);
        std::string code = std::string(kEchoBot) + "\n// function " + fn + "\n";
        ok &= env.rt->deploy(account(a), FunctionId(fn), {code, {}, 1}).has_value();
      }
    }
    std::atomic<int> failed{0};
    std::vector<std::thread> clients;
    for (int a = 0; a < kAccounts; ++a) {
      clients.emplace_back([&, a] {
        std::atomic<int> outstanding{0};
        for (int round = 0; round < kRounds; ++round) {
          for (int i = 0; i < kPerAccount; ++i) {
            while (outstanding.load() >= kOutstanding) std::this_thread::yield();
            outstanding.fetch_add(1);
            InvokeRequest r = request("fn-" + std::to_string(i));
            r.account = account(a);
            env.rt->invoke(r, [&](InvokeResult res) {
              if (!res.ok) failed.fetch_add(1);
              outstanding.fetch_sub(1);
            });
          }
        }
        while (outstanding.load() > 0) std::this_thread::yield();
      });
    }
    for (auto& t : clients) t.join();
    if (!ok || failed.load() != 0) state.SkipWithError("deploy or invoke failed");
    const double functions = kAccounts * kPerAccount;
    const double loaded = rssMiB(*env.rt);
    const double contexts_loaded = static_cast<double>(env.rt->stats().warm_contexts);
    std::this_thread::sleep_for(std::chrono::seconds(6));
    const double settled = rssMiB(*env.rt);
    state.counters["per_function_KiB_loaded"] = (loaded - before) * 1024.0 / functions;
    state.counters["per_function_KiB_settled"] = (settled - before) * 1024.0 / functions;
    state.counters["contexts_per_function_loaded"] = contexts_loaded / (functions + kAccounts);
    state.counters["contexts_per_function_settled"] =
        static_cast<double>(env.rt->stats().warm_contexts) / (functions + kAccounts);
  }
}
BENCHMARK(BM_RssDeployedUnderLoad)
    ->ArgsProduct({{0, 1}})
    ->ArgNames({"isolation"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime();

double vmMiBOf(int pid, const char* field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0) return std::stod(line.substr(std::strlen(field))) / 1024.0;
  }
  return 0;
}

// Address space of one worker process holding `range(0)` isolates (one per account): what
// RLIMIT_AS must allow.
void BM_WorkerAddressSpace(benchmark::State& state) {
  for (auto _ : state) {
    Env env(1, 1);
    int n = static_cast<int>(state.range(0));
    bool ok = true;
    for (int i = 0; i < n; ++i) {
      AccountId acc("acc-" + std::to_string(i));
      ok &= env.rt->deploy(acc, FunctionId("echo"), {kEchoBot, {}, 1}).has_value();
      InvokeRequest r = request("echo");
      r.account = acc;
      std::promise<InvokeResult> p;
      env.rt->invoke(r, [&](InvokeResult res) { p.set_value(std::move(res)); });
      ok &= p.get_future().get().ok;
    }
    if (!ok) state.SkipWithError("deploy or invoke failed");
    auto pids = env.rt->engineForTest().workerPidsForTest();
    if (pids.empty()) continue;
    state.counters["vm_peak_MiB"] = vmMiBOf(pids[0], "VmPeak:");
    state.counters["vm_size_MiB"] = vmMiBOf(pids[0], "VmSize:");
    state.counters["rss_MiB"] = vmMiBOf(pids[0], "VmRSS:");
  }
}
BENCHMARK(BM_WorkerAddressSpace)
    ->Arg(1)
    ->Arg(32)
    ->ArgName("isolates")
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime();

constexpr const char* kLoop = "function lambda(input, callback) { while (true) {} }";

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(static_cast<double>(v.size()) * q))];
}

// Account A's echo bot, one invocation at a time (submit -> result, then 1 ms pause: a
// conversation's pace), in alternating phases: without B's loops (2.5 s) and with two clients
// of account B each invoking a runaway loop again and again (2 s deadline each; 4.5 s, so each
// phase sees loops start, be demoted and be terminated). Between phases B's loops are let run
// out (not measured). `reps` pairs of phases; the machine's noise falls on both phases alike.
// Default runtime options (2 workers kept, up to 6; 5 s CPU limit) but for `demote`:0, which
// leaves long tasks at normal priority (RuntimeOptions::demote_long_tasks off), and
// `terminate_nice` (RuntimeOptions::terminate_nice; 0: a demoted loop gets its normal priority
// back when it is being terminated or 5 ms before its deadline, as before that option).
// Counters: A's p50/p99 without (`off`) and with (`on`) the loops over all phases, the median
// over the reps of p99 on / p99 off (`p99_ratio`), demotions and their early restores.
void BM_NoisyNeighbourEcho(benchmark::State& state) {
  testing::FakeHost host;
  SystemClock clock;
  RuntimeOptions o;
  o.isolation = state.range(0) ? WorkerIsolation::kProcess : WorkerIsolation::kInProcess;
  o.demote_long_tasks = state.range(1) != 0;
  const int reps = static_cast<int>(state.range(2));
  o.terminate_nice = static_cast<int>(state.range(3));
  auto rt = std::move(*FunctionRuntime::create(o, host, clock));
  rt->engineForTest().waitForWorkersForTest(static_cast<std::size_t>(o.threads),
                                            std::chrono::seconds(30));
  if (!rt->deploy(AccountId("A"), FunctionId("echo"), {kEchoBot, {}, 1}) ||
      !rt->deploy(AccountId("B"), FunctionId("loop"), {kLoop, {}, 1})) {
    state.SkipWithError("deploy failed");
    return;
  }
  std::atomic<bool> stop{false}, loops_on{false};
  std::atomic<int> loops_running{0};
  std::vector<std::thread> noisy;
  for (int i = 0; i < 2; ++i) {
    noisy.emplace_back([&] {
      while (!stop.load()) {
        if (!loops_on.load()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        InvokeRequest r = request("loop");
        r.account = AccountId("B");
        r.deadline = std::chrono::milliseconds(2'000);
        std::promise<InvokeResult> p;
        ++loops_running;
        rt->invoke(r, [&](InvokeResult res) { p.set_value(std::move(res)); });
        p.get_future().get();
        --loops_running;
      }
    });
  }
  bool ok = true;
  auto echoFor = [&](std::chrono::milliseconds how_long, std::vector<double>& lat) {
    auto until = std::chrono::steady_clock::now() + how_long;
    while (std::chrono::steady_clock::now() < until) {
      std::atomic<bool> done{false};
      InvokeRequest r = request("echo");
      r.account = AccountId("A");
      auto t0 = std::chrono::steady_clock::now();
      rt->invoke(r, [&](InvokeResult res) {
        ok &= res.ok;
        done.store(true, std::memory_order_release);
        done.notify_one();
      });
      // Blocks as a server thread waiting for a reply would (a caller spinning on
      // sched_yield() would hand its time to a runaway loop on its core).
      done.wait(false, std::memory_order_acquire);
      lat.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };
  std::vector<double> all_off, all_on, ratios;
  for (auto _ : state) {
    for (int rep = 0; rep < reps; ++rep) {
      std::vector<double> off, on;
      echoFor(std::chrono::milliseconds(2'500), off);
      loops_on.store(true);
      echoFor(std::chrono::milliseconds(4'500), on);
      loops_on.store(false);
      while (loops_running.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      ratios.push_back(percentile(on, 0.99) / percentile(off, 0.99));
      all_off.insert(all_off.end(), off.begin(), off.end());
      all_on.insert(all_on.end(), on.begin(), on.end());
    }
  }
  stop.store(true);
  for (auto& t : noisy) t.join();
  if (!ok) state.SkipWithError("an echo invocation failed");
  RuntimeStats stats = rt->stats();
  state.counters["demotions"] = static_cast<double>(stats.demotions);
  state.counters["restored_early"] = static_cast<double>(stats.demotions_restored_early);
  state.counters["restored_after_lift"] = static_cast<double>(stats.demotions_restored_after_lift);
  state.counters["replaced"] = static_cast<double>(stats.demoted_retired);
  state.counters["crashes"] = static_cast<double>(stats.worker_crashes);
  state.counters["off_p50_us"] = percentile(all_off, 0.5);
  state.counters["off_p99_us"] = percentile(all_off, 0.99);
  state.counters["on_p50_us"] = percentile(all_on, 0.5);
  state.counters["on_p99_us"] = percentile(all_on, 0.99);
  state.counters["on_max_us"] = percentile(all_on, 1.0);
  state.counters["p99_ratio"] = percentile(ratios, 0.5);
  state.counters["p99_ratio_min"] = percentile(ratios, 0.0);
  state.counters["p99_ratio_max"] = percentile(ratios, 1.0);
}
BENCHMARK(BM_NoisyNeighbourEcho)
    ->Args({0, 1, 4, 19})
    ->Args({1, 1, 4, 19})
    ->Args({0, 1, 4, 0})
    ->Args({1, 1, 4, 0})
    ->Args({0, 0, 4, 19})
    ->Args({1, 0, 4, 19})
    ->ArgNames({"isolation", "demote", "reps", "terminate_nice"})
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kSecond);

}  // namespace
}  // namespace parley::functions

// The benchmark binary is also its own worker process (isolation:1).
int main(int argc, char** argv) {
  if (auto rc = parley::functions::runFunctionWorkerIfAsked(argc, argv)) return *rc;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
