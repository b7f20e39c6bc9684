// Per-message structured-content validation time over every body fixture of the corpus
// (../shared/corpus/sc/valid and invalid), reporting p50/p99/max per message.
//
//   build/bench/bench/richcontent/parley_richcontent_bench
//
// Arguments of BM_ValidateCorpus: 0 = schema only (what json-pollock/ajv check),
// 1 = schema + connector rules (HTTPS, image allowlist, 15,000-byte limit).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <ctime>
#include <set>

#include "connector/richcontent/validator.h"
#include "connector/testing/corpus.h"

namespace {

namespace bj = boost::json;
namespace rc = parley::connector::richcontent;
using parley::connector::testing::corpusDir;
using parley::connector::testing::readJson;

struct Corpus {
  std::vector<std::string> names;
  std::vector<bj::value> docs;
  std::vector<std::string> texts;
  std::vector<std::string> hosts;
  std::vector<bj::value> quick_replies;
};

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus out;
    std::set<std::string> hosts;
    for (const char* dir : {"valid", "invalid"}) {
      for (const auto& f : std::filesystem::directory_iterator(corpusDir() / "sc" / dir)) {
        bj::value v = readJson(f.path());
        out.names.push_back(std::string(dir) + "/" + f.path().filename().string());
        out.texts.push_back(bj::serialize(v));
        out.docs.push_back(std::move(v));
      }
    }
    for (const auto& f :
         std::filesystem::recursive_directory_iterator(corpusDir() / "sc" / "quickreplies"))
      if (f.is_regular_file()) out.quick_replies.push_back(readJson(f.path()));
    // An allowlist holding every https image host of the corpus, so the allowlist is exercised.
    for (const auto& t : out.texts) {
      for (std::size_t p = t.find("\"url\":\"https://"); p != std::string::npos;
           p = t.find("\"url\":\"https://", p + 1)) {
        std::size_t start = p + 15;
        std::size_t end = t.find_first_of("/\"?", start);
        hosts.insert(t.substr(start, end - start));
      }
    }
    out.hosts.assign(hosts.begin(), hosts.end());
    return out;
  }();
  return c;
}

const rc::Validator& validator() {
  static const rc::Validator v = [] {
    auto r = rc::Validator::loadEmbedded();
    if (!r) {
      std::fprintf(stderr, "cannot load schema: %s\n", r.error().message.c_str());
      std::abort();
    }
    return *r;
  }();
  return v;
}

void report(benchmark::State& state, std::vector<double>& ns) {
  std::sort(ns.begin(), ns.end());
  auto pct = [&](double p) {
    return ns[std::min(ns.size() - 1, static_cast<std::size_t>(p * (ns.size() - 1) + 0.5))];
  };
  state.counters["p50_us"] = pct(0.50) / 1000.0;
  state.counters["p90_us"] = pct(0.90) / 1000.0;
  state.counters["p99_us"] = pct(0.99) / 1000.0;
  state.counters["max_us"] = ns.back() / 1000.0;
  state.counters["messages"] = static_cast<double>(ns.size());
  state.SetItemsProcessed(static_cast<std::int64_t>(ns.size()));
}

// One timed call per message; the percentiles are over all (message, iteration) samples.
void BM_ValidateCorpus(benchmark::State& state) {
  const Corpus& c = corpus();
  const rc::Validator& v = validator();
  rc::ValidateOptions opts;
  opts.extra_rules = state.range(0) == 1;
  if (opts.extra_rules) opts.image_allowlist = c.hosts;
  std::vector<double> ns;
  ns.reserve(c.docs.size() * 2000);
  int invalid = 0;
  for (auto _ : state) {
    for (const auto& d : c.docs) {
      auto t0 = std::chrono::steady_clock::now();
      rc::ValidationResult r = v.validate(d, opts);
      auto t1 = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(r);
      invalid += !r.valid;
      ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
  }
  state.counters["invalid_share"] =
      static_cast<double>(invalid) / static_cast<double>(std::max<std::size_t>(1, ns.size()));
  report(state, ns);
}
BENCHMARK(BM_ValidateCorpus)->Arg(0)->Arg(1)->MinTime(2.0);

std::int64_t threadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The same as BM_ValidateCorpus/1, timed with the thread's CPU clock, so that time spent
// preempted on a loaded machine is not counted. The clock's own cost (measured back to back) is
// subtracted.
void BM_ValidateCorpusCpuTime(benchmark::State& state) {
  const Corpus& c = corpus();
  const rc::Validator& v = validator();
  rc::ValidateOptions opts;
  opts.image_allowlist = c.hosts;
  std::int64_t overhead = INT64_MAX;
  for (int i = 0; i < 1000; ++i) {
    std::int64_t a = threadCpuNs();
    std::int64_t b = threadCpuNs();
    overhead = std::min(overhead, b - a);
  }
  std::vector<double> ns;
  for (auto _ : state) {
    for (const auto& d : c.docs) {
      std::int64_t t0 = threadCpuNs();
      rc::ValidationResult r = v.validate(d, opts);
      std::int64_t t1 = threadCpuNs();
      benchmark::DoNotOptimize(r);
      ns.push_back(static_cast<double>(std::max<std::int64_t>(0, t1 - t0 - overhead)));
    }
  }
  state.counters["clock_overhead_ns"] = static_cast<double>(overhead);
  report(state, ns);
}
BENCHMARK(BM_ValidateCorpusCpuTime)->MinTime(2.0);

// Parsing included: the cost from the function's response text to a verdict.
void BM_ParseAndValidateCorpus(benchmark::State& state) {
  const Corpus& c = corpus();
  const rc::Validator& v = validator();
  rc::ValidateOptions opts;
  opts.image_allowlist = c.hosts;
  std::vector<double> ns;
  for (auto _ : state) {
    for (const auto& t : c.texts) {
      auto t0 = std::chrono::steady_clock::now();
      rc::ValidationResult r = v.validateText(t, opts);
      auto t1 = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(r);
      ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
  }
  report(state, ns);
}
BENCHMARK(BM_ParseAndValidateCorpus)->MinTime(2.0);

void BM_ValidateQuickReplies(benchmark::State& state) {
  const Corpus& c = corpus();
  const rc::Validator& v = validator();
  std::vector<double> ns;
  for (auto _ : state) {
    for (const auto& q : c.quick_replies) {
      auto t0 = std::chrono::steady_clock::now();
      rc::ValidationResult r = v.validateQuickReplies(q);
      auto t1 = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(r);
      ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
  }
  report(state, ns);
}
BENCHMARK(BM_ValidateQuickReplies)->MinTime(1.0);

// The slowest fixtures by median time (printed to stderr once), to see where time goes.
void BM_SlowestFixtures(benchmark::State& state) {
  const Corpus& c = corpus();
  const rc::Validator& v = validator();
  rc::ValidateOptions opts;
  opts.extra_rules = state.range(0) == 1;
  if (opts.extra_rules) opts.image_allowlist = c.hosts;
  std::vector<std::vector<double>> per(c.docs.size());
  for (auto _ : state) {
    for (std::size_t i = 0; i < c.docs.size(); ++i) {
      auto t0 = std::chrono::steady_clock::now();
      rc::ValidationResult r = v.validate(c.docs[i], opts);
      auto t1 = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(r);
      per[i].push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
  }
  static bool printed[2] = {false, false};
  if (printed[state.range(0)] || per[0].empty()) return;
  printed[state.range(0)] = true;
  std::fprintf(stderr, "slowest fixtures (%s):\n", opts.extra_rules ? "all rules" : "schema only");
  std::vector<std::pair<double, std::size_t>> med;
  for (std::size_t i = 0; i < per.size(); ++i) {
    std::sort(per[i].begin(), per[i].end());
    med.emplace_back(per[i][per[i].size() / 2], i);
  }
  std::sort(med.rbegin(), med.rend());
  for (std::size_t k = 0; k < std::min<std::size_t>(8, med.size()); ++k)
    std::fprintf(stderr, "  slowest #%zu: %8.2f us  %6zu bytes  %s\n", k + 1, med[k].first / 1000,
                 c.texts[med[k].second].size(), c.names[med[k].second].c_str());
}
BENCHMARK(BM_SlowestFixtures)->Arg(0)->Arg(1)->Iterations(200);

void BM_LoadAndCompileSchema(benchmark::State& state) {
  for (auto _ : state) {
    auto r = rc::Validator::loadEmbedded();
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_LoadAndCompileSchema)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
