#include "functions/runtime.h"

#include <gtest/gtest.h>

#include <future>

#include "functions/testing/fake_host.h"

namespace parley::functions {
namespace {

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RuntimeOptions o;
    o.threads = 1;
    o.default_deadline = std::chrono::milliseconds(500);
    o.deploy_deadline = std::chrono::milliseconds(300);
    auto r = FunctionRuntime::create(o, host_, clock_);
    ASSERT_TRUE(r) << r.error().message;
    rt_ = std::move(*r);
  }
  InvokeResult call(const std::string& fn,
                    std::string input = R"({"timestamp":1,"headers":[],"payload":{"x":1}})",
                    int deadline_ms = 500) {
    InvokeRequest req;
    req.account = acc_;
    req.function = FunctionId(fn);
    req.input_json = std::move(input);
    req.deadline = std::chrono::milliseconds(deadline_ms);
    std::promise<InvokeResult> p;
    rt_->invoke(req, InvokeMode::kTest, [&](InvokeResult r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  Status deploy(const std::string& fn, std::string code) {
    return rt_->deploy(acc_, FunctionId(fn),
                       DeployedCode{std::move(code), {{"GREETING", "hi"}}, 1});
  }
  testing::FakeHost host_;
  SystemClock clock_;
  AccountId acc_{"1234"};
  std::unique_ptr<FunctionRuntime> rt_;
};

TEST_F(RuntimeTest, EchoReturnsPayload) {
  ASSERT_TRUE(
      deploy("echo", "function lambda(input, callback) { callback(null, input.payload); }"));
  auto r = call("echo");
  EXPECT_TRUE(r.ok) << r.error_code << " " << r.error_message;
  EXPECT_EQ(r.result_json, R"({"x":1})");
}

TEST_F(RuntimeTest, NotDeployed) {
  auto r = call("nope");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_code, kErrNotDeployed);
}

TEST_F(RuntimeTest, InfiniteLoopIsTerminatedAndWorkerRecovers) {
  ASSERT_TRUE(deploy("loop", "function lambda(i, cb) { while (true) {} }"));
  ASSERT_TRUE(deploy("echo", "function lambda(input, callback) { callback(null, 7); }"));
  auto r = call("loop", R"({"payload":1})", 200);
  EXPECT_EQ(r.error_code, kErrTimeExceeded) << r.error_message;
  auto r2 = call("echo");
  EXPECT_TRUE(r2.ok) << r2.error_message;
  EXPECT_GE(rt_->stats().isolate_restarts, 1u);
}

}  // namespace
}  // namespace parley::functions
