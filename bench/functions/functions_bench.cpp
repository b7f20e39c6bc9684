// Function runtime benchmarks: warm invoke latency/throughput of an echo bot, cold
// deploy-to-first-result, resident memory per deployed function.
//
//   cmake -S . -B build/functions-bench -G Ninja -DCMAKE_BUILD_TYPE=Release
//   -DPARLEY_BUILD_BENCHMARKS=ON cmake --build build/functions-bench --target
//   parley_functions_bench build/functions-bench/bench/functions/parley_functions_bench

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <future>
#include <thread>

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
  explicit Env(int threads) {
    RuntimeOptions o;
    o.threads = threads;
    rt = std::move(*FunctionRuntime::create(o, host, clock));
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
  Env env(static_cast<int>(state.range(0)));
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
BENCHMARK(BM_WarmInvokeLatency)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->MinTime(2.0);

// Throughput with up to 256 invocations outstanding.
void BM_WarmInvokeThroughput(benchmark::State& state) {
  Env env(static_cast<int>(state.range(0)));
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
BENCHMARK(BM_WarmInvokeThroughput)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->MinTime(2.0);

// deploy() of a new function + its first invocation.
void BM_ColdDeployToFirstResult(benchmark::State& state) {
  Env env(1);
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
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(200);

double rssMiB() {
  std::ifstream f("/proc/self/statm");
  long size = 0, resident = 0;
  f >> size >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) /
         (1024.0 * 1024.0);
}

// Resident memory with 1,000 deployed functions, each also invoked once. With 2 workers a
// function may be warm on both (one context per worker that ran it).
void BM_Rss1000Deployed(benchmark::State& state) {
  for (auto _ : state) {
    Env env(static_cast<int>(state.range(0)));
    // Warm up the isolates first so the figure is per function, not per isolate.
    (void)env.rt->deploy(AccountId("le12345"), FunctionId("warm"), {kEchoBot, {}, 1});
    double before = rssMiB();
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
    double after = rssMiB();
    if (!ok) state.SkipWithError("deploy or invoke failed");
    state.counters["rss_before_MiB"] = before;
    state.counters["rss_after_MiB"] = after;
    state.counters["per_function_KiB"] = (after - before) * 1024.0 / 1000.0;
    state.counters["deployed"] = static_cast<double>(env.rt->stats().deployed);
  }
}
BENCHMARK(BM_Rss1000Deployed)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime();

}  // namespace
}  // namespace parley::functions

BENCHMARK_MAIN();
