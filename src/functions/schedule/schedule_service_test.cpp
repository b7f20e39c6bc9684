#include "functions/schedule/schedule_service.h"

#include <gtest/gtest.h>

#include <string>

#include "common/json.h"
#include "common/testing/fake_clock.h"
#include "functions/testing/schedule_testing.h"
#include "store/memory/memory_store.h"

namespace parley::functions::schedule {
namespace {

using policy::Role;

class ScheduleServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_.setMs(1'796'638'430'000);  // 2026-12-07T10:13:50Z
    store_ = store::makeMemoryStore(clock_);
    for (const char* acc : {"acc1", "acc2"})
      for (int i = 0; i < 12; ++i) {
        store::FunctionRecord f;
        f.account = AccountId(acc);
        f.uuid = FunctionId(std::string(acc) + "-fn" + std::to_string(i));
        f.name = "fn" + std::to_string(i);
        ASSERT_TRUE(store_->functions().createFunction(f));
      }
    service_ = std::make_unique<ScheduleService>(*store_, clock_);
  }

  api::Response call(const std::string& method, const std::string& target,
                     const std::string& body = "", policy::RoleSet roles = {Role::kFaasDeveloper},
                     const std::string& account = "acc1") {
    return testing::callHandler(*service_, method, target, body, roles, account);
  }
  api::Response create(const std::string& function, const std::string& cron,
                       const std::string& extra = "") {
    return call(
        "POST", "schedules",
        R"({"lambdaUUID":")" + function + R"(","cronExpression":")" + cron + "\"" + extra + "}");
  }
  static std::string message(const api::Response& r) {
    auto o = json::parseObject(r.body);
    if (!o || !o->contains("error")) return "";
    return json::getString(o->at("error").as_object(), "message");
  }

  parley::testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ScheduleService> service_;
};

TEST_F(ScheduleServiceTest, CreatesReadsUpdatesAndDeletes) {
  auto r = create("acc1-fn0", "*/15 9-17 * * MON-FRI", R"(,"isActive":true,"payload":[1,"two"])");
  ASSERT_EQ(r.status, 201) << r.body;
  auto o = json::parseObject(r.body);
  ASSERT_TRUE(o);
  const std::string id = json::getString(*o, "uuid");
  EXPECT_FALSE(id.empty());
  EXPECT_EQ(json::getString(*o, "lambdaUUID"), "acc1-fn0");
  EXPECT_EQ(json::getString(*o, "cronExpression"), "*/15 9-17 * * MON-FRI");
  EXPECT_TRUE(o->at("isActive").as_bool());
  EXPECT_EQ(json::dump(o->at("payload")), R"([1,"two"])");
  EXPECT_EQ(o->at("nextRunAt").as_int64(), 1'796'638'500'000);  // 10:15
  EXPECT_TRUE(o->at("lastResult").is_null());
  EXPECT_EQ(json::getString(*o, "createdBy"), "1000");

  auto got = call("GET", "schedules/" + id);
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, r.body);
  EXPECT_EQ(call("GET", "schedules/" + id, "", {Role::kFaasDeveloper}, "acc2").status, 404);

  ASSERT_EQ(create("acc1-fn1", "@daily").status, 201);
  auto all = json::parse(call("GET", "schedules").body);
  ASSERT_TRUE(all && all->is_array());
  EXPECT_EQ(all->as_array().size(), 2u);
  auto one = json::parse(call("GET", "schedules?lambdaUUID=acc1-fn1").body);
  ASSERT_EQ(one->as_array().size(), 1u);
  EXPECT_EQ(json::getString(one->as_array()[0].as_object(), "cronExpression"), "@daily");
  EXPECT_EQ(call("GET", "schedules", "", {Role::kAdmin}, "acc2").body, "[]");

  auto upd = call("PUT", "schedules/" + id, R"({"cronExpression":"0 12 * * *","payload":null})");
  ASSERT_EQ(upd.status, 200) << upd.body;
  o = json::parseObject(upd.body);
  EXPECT_EQ(json::getString(*o, "cronExpression"), "0 12 * * *");
  EXPECT_TRUE(o->at("payload").is_null());
  EXPECT_EQ(o->at("nextRunAt").as_int64(), 1'796'644'800'000);  // 12:00
  EXPECT_EQ(call("PATCH", "schedules/" + id, R"({"isActive":false})").status, 200);

  EXPECT_EQ(call("DELETE", "schedules/" + id).status, 200);
  EXPECT_EQ(call("DELETE", "schedules/" + id).status, 404);
  EXPECT_EQ(call("GET", "schedules/" + id).status, 404);
}

TEST_F(ScheduleServiceTest, BadInputIsRefusedWithAMessageThatSaysWhatToFix) {
  auto expect = [&](const api::Response& r, int status, const std::string& part) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_NE(message(r).find(part), std::string::npos) << "'" << part << "' not in " << r.body;
  };
  expect(create("acc1-fn0", "61 * * * *"), 400,
         "cron expression '61 * * * *': the minute field '61' has 61, out of range 0-59");
  expect(create("acc1-fn0", "0 0 * * 8"), 400, "the day-of-week field '8'");
  expect(create("acc1-fn0", "* * * *"), 400, "has 4 fields");
  expect(create("acc1-fn0", "0 0 30 2 *"), 400, "never matches");
  expect(call("POST", "schedules", R"({"lambdaUUID":"acc1-fn0"})"), 400,
         "cronExpression is required");
  expect(call("POST", "schedules", R"({"cronExpression":"* * * * *"})"), 400, "lambdaUUID");
  expect(call("POST", "schedules", R"({"lambdaUUID":"","cronExpression":"* * * * *"})"), 400,
         "lambdaUUID must name a function");
  expect(call("POST", "schedules", R"({"lambdaUUID":5,"cronExpression":"* * * * *"})"), 400,
         "lambdaUUID");
  expect(create("acc1-fn0", "* * * * *", R"(,"isActive":"yes")"), 400, "isActive");
  expect(create("acc1-fn0", "* * * * *", R"(,"cron":"x")"), 400,
         "unknown field 'cron'; a schedule has lambdaUUID, cronExpression, isActive, payload, "
         "uuid");
  expect(create("acc1-fn0", "* * * * *", R"(,"uuid":"mine")"), 400, "uuid is assigned");
  expect(call("POST", "schedules", "not json"), 400, "JSON object");
  expect(call("POST", "schedules", "[1]"), 400, "JSON object");
  // The function must exist in the caller's account.
  expect(create("nope", "* * * * *"), 404, "function nope does not exist in account acc1");
  expect(create("acc2-fn0", "* * * * *"), 404, "does not exist in account acc1");
  // Payload: at most 8,000 characters of JSON.
  const std::string fits = "\"" + std::string(7998, 'x') + "\"";
  EXPECT_EQ(create("acc1-fn0", "* * * * *", R"(,"payload":)" + fits).status, 201);
  expect(create("acc1-fn0", "* * * * *", R"(,"payload":")" + std::string(7999, 'x') + "\""), 413,
         "payload has 8001 characters of JSON; at most 8000");
  // Updates: the same checks, and the function cannot change.
  auto r = create("acc1-fn1", "* * * * *");
  const std::string id = json::getString(*json::parseObject(r.body), "uuid");
  expect(call("PUT", "schedules/" + id, R"({"cronExpression":"* * * * * *"})"), 400,
         "has 6 fields");
  expect(call("PUT", "schedules/" + id, R"({"lambdaUUID":"acc1-fn2"})"), 400, "cannot change");
  expect(call("PUT", "schedules/" + id, R"({"isActive":1})"), 400, "isActive");
  expect(call("PUT", "schedules/nope", R"({"isActive":true})"), 404, "schedule nope");
  expect(call("POST", "schedules/" + id, "{}"), 400, "takes GET, PUT, PATCH or DELETE");
  // A refused update changed nothing.
  auto got = json::parseObject(call("GET", "schedules/" + id).body);
  EXPECT_EQ(json::getString(*got, "cronExpression"), "* * * * *");
}

TEST_F(ScheduleServiceTest, LimitsPerAccountAndPerFunction) {
  for (int i = 0; i < 10; ++i) ASSERT_EQ(create("acc1-fn0", "* * * * *").status, 201) << i;
  auto r = create("acc1-fn0", "* * * * *");
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_NE(message(r).find("already has 10 schedules"), std::string::npos) << r.body;
  for (int i = 1; i < 10; ++i)
    ASSERT_EQ(create("acc1-fn" + std::to_string(i), "0 0 * * *").status, 201) << i;
  r = create("acc1-fn10", "0 0 * * *");
  EXPECT_EQ(r.status, 429) << r.body;
  EXPECT_NE(message(r).find("10 functions of this account already have schedules"),
            std::string::npos)
      << r.body;
  // Another account has its own count.
  EXPECT_EQ(call("POST", "schedules", R"({"lambdaUUID":"acc2-fn10","cronExpression":"@hourly"})",
                 {Role::kFaasDeveloper}, "acc2")
                .status,
            201);
}

TEST_F(ScheduleServiceTest, FaasAdminAndDeveloperManageSchedulesOthersGet403) {
  auto r = create("acc1-fn0", "* * * * *");
  const std::string id = json::getString(*json::parseObject(r.body), "uuid");
  for (Role role : policy::kAllRoles) {
    const bool allowed =
        role == Role::kAdmin || role == Role::kFaasAdmin || role == Role::kFaasDeveloper;
    const std::string who = policy::roleName(role);
    auto list = call("GET", "schedules", "", {role});
    auto one = call("GET", "schedules/" + id, "", {role});
    auto put = call("PUT", "schedules/" + id, R"({"isActive":true})", {role});
    auto post =
        call("POST", "schedules", R"({"lambdaUUID":"acc1-fn1","cronExpression":"@daily"})", {role});
    for (const auto* resp : {&list, &one, &put, &post}) {
      if (allowed) {
        EXPECT_LT(resp->status, 300) << who << ": " << resp->body;
      } else {
        EXPECT_EQ(resp->status, 403) << who << ": " << resp->body;
        EXPECT_NE(message(*resp).find("ADMIN, FAAS_ADMIN or FAAS_DEVELOPER"), std::string::npos)
            << resp->body;
      }
    }
    if (!allowed) {
      EXPECT_EQ(call("DELETE", "schedules/" + id, "", {role}).status, 403) << who;
    }
  }
  EXPECT_EQ(call("DELETE", "schedules/" + id, "", {Role::kFaasAdmin}).status, 200);
}

}  // namespace
}  // namespace parley::functions::schedule
