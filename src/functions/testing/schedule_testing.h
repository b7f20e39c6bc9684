#pragma once

// Test support shared by the schedule tests: a Runner whose invocations the test completes, and
// a REST caller for api::Handler. Test-only.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/api.h"
#include "common/testing/api_request.h"
#include "common/testing/call.h"
#include "functions/runner.h"

namespace parley::functions::schedule::testing {

// Records every invocation and holds its `done` until the test completes it. Thread-safe.
class HeldRunner final : public Runner {
 public:
  // Runner
  void invoke(InvokeRequest request, std::function<void(InvokeResult)> done) override {
    std::lock_guard lock(mu_);
    requests_.push_back(request);
    pending_.push_back(std::move(done));
  }

  std::vector<InvokeRequest> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::size_t pending() {
    std::lock_guard lock(mu_);
    return pending_.size();
  }
  // Completes the oldest pending invocation with `r`.
  void completeOldest(InvokeResult r) {
    std::function<void(InvokeResult)> done;
    {
      std::lock_guard lock(mu_);
      if (pending_.empty()) return;
      done = std::move(pending_.front());
      pending_.erase(pending_.begin());
    }
    done(std::move(r));
  }
  void completeOldestOk(std::string result_json = "{}") {
    InvokeResult r;
    r.ok = true;
    r.result_json = std::move(result_json);
    r.duration_ms = 3;
    completeOldest(std::move(r));
  }

 private:
  std::mutex mu_;
  std::vector<InvokeRequest> requests_;
  std::vector<std::function<void(InvokeResult)>> pending_;
};

// Sends one request ("GET", "schedules?lambdaUUID=x") through `handler` and waits for it.
inline api::Response callHandler(api::Handler& handler, const std::string& method,
                                 const std::string& target, const std::string& body,
                                 policy::RoleSet roles, const std::string& account) {
  api::Request req;
  req.method = method;
  parley::testing::fillTarget(req, target);
  req.body = body;
  req.caller.account = AccountId(account);
  req.caller.user = UserId("1000");
  req.caller.login_name = "tester";
  req.caller.roles = roles;
  return parley::testing::await<api::Response>(
      [&](auto done) { handler.handle(std::move(req), std::move(done)); });
}

}  // namespace parley::functions::schedule::testing
