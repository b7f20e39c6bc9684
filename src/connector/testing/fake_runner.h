#pragma once

// A scripted functions::Runner for connector tests: answers with a script, can hold invocations
// until the test releases them (to race a slow function against an agent), and records every
// request. Completions run on the fake's own threads, like the functions workers. Thread-safe.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "functions/runner.h"

namespace parley::connector::testing {

class FakeRunner final : public functions::Runner {
 public:
  using Script = std::function<functions::InvokeResult(const functions::InvokeRequest&)>;

  ~FakeRunner() override {
    releaseAll();
    dropKept();
    std::vector<std::thread> threads;
    {
      std::lock_guard l(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

  void setScript(Script s) {
    std::lock_guard l(mu_);
    script_ = std::move(s);
  }
  // While held, invocations wait until release/releaseAll.
  void hold(bool on) {
    std::lock_guard l(mu_);
    hold_ = on;
  }
  // Completes the oldest held invocation. False when none is held.
  bool releaseOne() {
    Pending p;
    {
      std::lock_guard l(mu_);
      if (held_.empty()) return false;
      p = std::move(held_.front());
      held_.erase(held_.begin());
    }
    complete(std::move(p));
    return true;
  }
  void releaseAll() {
    while (releaseOne()) {
    }
  }
  std::vector<functions::InvokeRequest> requests() {
    std::lock_guard l(mu_);
    return requests_;
  }
  std::size_t heldCount() {
    std::lock_guard l(mu_);
    return held_.size();
  }
  // Waits until `n` requests were received.
  bool waitRequests(std::size_t n, int timeout_ms = 5000) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, std::chrono::milliseconds(timeout_ms),
                        [&] { return requests_.size() >= n; });
  }
  int maxConcurrentForTest() {
    std::lock_guard l(mu_);
    return max_in_flight_;
  }
  // While on, each callback is kept after it was called, until dropKept(): a runner may destroy
  // its copy of a callback at any time after calling it, also after the caller has stopped.
  void keepCallbacks(bool on) {
    std::lock_guard l(mu_);
    keep_ = on;
  }
  std::size_t keptCount() {
    std::lock_guard l(mu_);
    return kept_.size();
  }
  void dropKept() {
    std::vector<std::function<void(functions::InvokeResult)>> kept;
    {
      std::lock_guard l(mu_);
      kept.swap(kept_);
    }
    kept.clear();
  }

  // functions::Runner
  void invoke(functions::InvokeRequest request,
              std::function<void(functions::InvokeResult)> done) override {
    Pending p{request, std::move(done)};
    bool held;
    {
      std::lock_guard l(mu_);
      requests_.push_back(request);
      max_in_flight_ = std::max(max_in_flight_, ++in_flight_);
      held = hold_;
      if (held) held_.push_back(std::move(p));
      cv_.notify_all();
    }
    if (!held) complete(std::move(p));
  }

 private:
  struct Pending {
    functions::InvokeRequest request;
    std::function<void(functions::InvokeResult)> done;
  };
  void complete(Pending p) {
    Script script;
    {
      std::lock_guard l(mu_);
      script = script_;
    }
    std::lock_guard l(mu_);
    threads_.emplace_back([this, script, p = std::move(p)]() mutable {
      functions::InvokeResult r;
      if (script) {
        r = script(p.request);
      } else {
        r.ok = true;
        r.result_json = R"({"messages":["ok"]})";
      }
      {
        std::lock_guard l2(mu_);
        --in_flight_;
      }
      p.done(std::move(r));
      std::lock_guard l2(mu_);
      if (keep_) kept_.push_back(std::move(p.done));
    });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  Script script_;
  bool hold_ = false;
  bool keep_ = false;
  std::vector<std::function<void(functions::InvokeResult)>> kept_;
  std::vector<Pending> held_;
  std::vector<functions::InvokeRequest> requests_;
  std::vector<std::thread> threads_;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
};

// Shorthands for scripted results.
inline functions::InvokeResult okResult(std::string json) {
  functions::InvokeResult r;
  r.ok = true;
  r.result_json = std::move(json);
  return r;
}
inline functions::InvokeResult errorResult(std::string code, std::string message) {
  functions::InvokeResult r;
  r.ok = false;
  r.error_code = std::move(code);
  r.error_message = std::move(message);
  return r;
}

}  // namespace parley::connector::testing
