#include "functions/runtime.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "common/testing/call.h"
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
    auto req = InvokeRequest::of(acc_, FunctionId(fn))
                   .withInput(std::move(input))
                   .within(std::chrono::milliseconds(deadline_ms));
    return parley::testing::await<InvokeResult>(
        [&](auto done) { rt_->invoke(req, InvokeMode::kTest, std::move(done)); });
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

TEST(InvokeRequestTest, TheBuilderFillsEveryFieldItNamesAndWrapsThePayload) {
  auto r = InvokeRequest::of(AccountId("1"), FunctionId("f"))
               .withPayload(42, R"({"a":[1,2]})")
               .within(std::chrono::milliseconds(250))
               .withRequestId("turn-1")
               .by(Invoker{.kind = InvokerKind::kUser,
                           .user = UserId("u"),
                           .login_name = "ann",
                           .secret_writes = SecretWrites::kRefused});
  EXPECT_EQ(r.account.str(), "1");
  EXPECT_EQ(r.function.str(), "f");
  EXPECT_EQ(r.input_json, R"({"timestamp":42,"headers":[],"payload":{"a":[1,2]}})");
  EXPECT_EQ(r.deadline, std::chrono::milliseconds(250));
  EXPECT_EQ(r.request_id, "turn-1");
  EXPECT_EQ(r.invoker.kind, InvokerKind::kUser);
  EXPECT_EQ(r.invoker.user.str(), "u");
  EXPECT_EQ(r.invoker.secret_writes, SecretWrites::kRefused);
  // Unnamed steps keep their defaults.
  auto d = InvokeRequest::of(AccountId("1"), FunctionId("f"));
  EXPECT_EQ(d.deadline, std::chrono::milliseconds(30'000));
  EXPECT_TRUE(d.request_id.empty());
  EXPECT_EQ(d.invoker.kind, InvokerKind::kPlatform);
}

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

namespace parley::functions {
namespace {

TEST_F(RuntimeTest, TimersDoNotBlockTheWorker) {
  ASSERT_TRUE(
      deploy("sleepy", "function lambda(i, cb) { setTimeout(() => cb(null, i.payload), 200); }"));
  constexpr int kN = 50;
  std::vector<std::promise<InvokeResult>> ps(kN);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kN; ++i) {
    InvokeRequest req;
    req.account = acc_;
    req.function = FunctionId("sleepy");
    req.input_json = R"({"payload":)" + std::to_string(i) + "}";
    req.deadline = std::chrono::milliseconds(5000);
    rt_->invoke(req, [&ps, i](InvokeResult r) { ps[i].set_value(std::move(r)); });
  }
  for (int i = 0; i < kN; ++i) {
    auto r = ps[i].get_future().get();
    EXPECT_TRUE(r.ok) << r.error_message;
    EXPECT_EQ(r.result_json, std::to_string(i));
  }
  auto ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  // 50 x 200 ms on ONE worker: concurrent, not serial (which would take 10 s).
  EXPECT_LT(ms, 2000);
}

TEST_F(RuntimeTest, FairQueueServesAColdFunctionBeforeAHotBacklog) {
  ASSERT_TRUE(deploy("hot",
                     "function lambda(i, cb) { const t = Date.now(); while (Date.now() - t < 3) {} "
                     "cb(null, 'hot'); }"));
  ASSERT_TRUE(deploy("cold", "function lambda(i, cb) { cb(null, 'cold'); }"));
  std::atomic<int> hot_done{0};
  std::vector<std::promise<void>> hot(100);
  for (int i = 0; i < 100; ++i) {
    InvokeRequest req;
    req.account = acc_;
    req.function = FunctionId("hot");
    req.input_json = "{}";
    req.deadline = std::chrono::milliseconds(10'000);
    rt_->invoke(req, [&, i](InvokeResult) {
      ++hot_done;
      hot[i].set_value();
    });
  }
  auto r = call("cold", "{}", 10'000);
  int hot_at_cold = hot_done.load();
  EXPECT_TRUE(r.ok);
  // Round-robin: the cold call waits for at most a round of hot work, not 100 x 3 ms.
  EXPECT_LT(hot_at_cold, 40);
  for (auto& p : hot) p.get_future().wait();
}

TEST_F(RuntimeTest, RedeployIsAtomicInFlightFinishOnOldCode) {
  ASSERT_TRUE(deploy("f", "function lambda(i, cb) { setTimeout(() => cb(null, 'v1'), 150); }"));
  std::promise<InvokeResult> old_p;
  InvokeRequest req;
  req.account = acc_;
  req.function = FunctionId("f");
  req.input_json = "{}";
  req.deadline = std::chrono::milliseconds(2000);
  rt_->invoke(req, [&](InvokeResult r) { old_p.set_value(std::move(r)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  ASSERT_TRUE(deploy("f", "function lambda(i, cb) { cb(null, 'v2'); }"));
  auto now_r = call("f", "{}", 2000);
  EXPECT_EQ(now_r.result_json, R"("v2")");
  auto old_r = old_p.get_future().get();
  EXPECT_EQ(old_r.result_json, R"("v1")");
  rt_->undeploy(acc_, FunctionId("f"));
  EXPECT_EQ(call("f").error_code, kErrNotDeployed);
  EXPECT_FALSE(rt_->isDeployed(acc_, FunctionId("f")));
}

TEST_F(RuntimeTest, FailedRedeployKeepsTheOldDeployment) {
  ASSERT_TRUE(deploy("f", "function lambda(i, cb) { cb(null, 'v1'); }"));
  EXPECT_FALSE(deploy("f", "function lambda(i, cb) { cb(null, ; }"));
  EXPECT_EQ(call("f").result_json, R"("v1")");
}

TEST_F(RuntimeTest, CheckCodeGivesClearErrors) {
  EXPECT_TRUE(rt_->checkCode("function lambda(input, callback) { callback(null, 1); }"));
  EXPECT_TRUE(rt_->checkCode("const lambda = async (input, callback) => callback(null, 1);"));
  auto too_long = rt_->checkCode(std::string(100'001, ' '));
  ASSERT_FALSE(too_long);
  EXPECT_NE(too_long.error().message.find("100,000"), std::string::npos);
  auto syntax = rt_->checkCode("\n\nfunction lambda(i, cb) {\n  cb(null, 1;\n}");
  ASSERT_FALSE(syntax);
  EXPECT_EQ(syntax.error().code, ErrorCode::kScriptError);
  EXPECT_NE(syntax.error().message.find("line 4"), std::string::npos) << syntax.error().message;
  auto none = rt_->checkCode("function handler() {}");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("'lambda'"), std::string::npos);
  auto slow = rt_->checkCode("while (true) {} function lambda() {}");
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().code, ErrorCode::kTimeout);
}

TEST_F(RuntimeTest, InvokeCodeRunsUndeployedCodeWithDebugLogs) {
  InvokeRequest req;
  req.input_json = R"({"payload":"p"})";
  req.deadline = std::chrono::milliseconds(1000);
  std::promise<InvokeResult> p;
  rt_->invokeCode(
      acc_, "function lambda(i, cb) { console.debug('d', process.env.A); cb(null, i.payload); }",
      {{"A", "b"}}, req, [&](InvokeResult r) { p.set_value(std::move(r)); });
  auto r = p.get_future().get();
  EXPECT_TRUE(r.ok) << r.error_message;
  EXPECT_EQ(r.result_json, R"("p")");
  ASSERT_EQ(r.logs.size(), 1u);
  EXPECT_EQ(r.logs[0].level, "Debug");
  EXPECT_EQ(r.logs[0].extras_json, R"(["b"])");
  std::promise<InvokeResult> p2;
  rt_->invokeCode(acc_, "function lambda(i, cb) { cb(null, ; }", {}, req,
                  [&](InvokeResult r2) { p2.set_value(std::move(r2)); });
  auto bad = p2.get_future().get();
  EXPECT_FALSE(bad.ok);
  EXPECT_EQ(bad.error_code, kErrRuntimeException);
  EXPECT_NE(bad.error_message.find("SyntaxError"), std::string::npos);
}

TEST_F(RuntimeTest, TerminationDoesNotFailOtherInFlightInvocations) {
  ASSERT_TRUE(
      deploy("slow", "function lambda(i, cb) { setTimeout(() => cb(null, 'slow ok'), 300); }"));
  ASSERT_TRUE(deploy("loop", "function lambda(i, cb) { for (;;) {} }"));
  std::promise<InvokeResult> slow_p;
  InvokeRequest req;
  req.account = acc_;
  req.function = FunctionId("slow");
  req.input_json = "{}";
  req.deadline = std::chrono::milliseconds(3000);
  rt_->invoke(req, [&](InvokeResult r) { slow_p.set_value(std::move(r)); });
  auto loop = call("loop", "{}", 100);
  EXPECT_EQ(loop.error_code, kErrTimeExceeded);
  auto slow = slow_p.get_future().get();
  EXPECT_TRUE(slow.ok) << slow.error_code << " " << slow.error_message;
  EXPECT_EQ(slow.result_json, R"("slow ok")");
}

TEST_F(RuntimeTest, StatsCount) {
  ASSERT_TRUE(deploy("ok", "function lambda(i, cb) { cb(null, 1); }"));
  ASSERT_TRUE(deploy("bad", "function lambda(i, cb) { cb(new Error('x')); }"));
  auto before = rt_->stats();
  call("ok");
  call("bad");
  auto after = rt_->stats();
  EXPECT_EQ(after.deployed, 2u);
  EXPECT_EQ(after.invocations - before.invocations, 2u);
  EXPECT_EQ(after.errors - before.errors, 1u);
  EXPECT_EQ(after.queue_depth, 0u);
}

}  // namespace
}  // namespace parley::functions
