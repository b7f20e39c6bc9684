// Unit tests of the service's pure parts: validation rules, metrics, templates and the
// PlatformHost (secrets, allowlist, context service with TTL, LpClient, SDEUtil.addSDEs and
// GDPRUtil.replaceConversationFiles).

#include <gtest/gtest.h>

#include "common/json.h"
#include "common/testing/fake_clock.h"
#include "functions/lp_services.h"
#include "functions/service/domains.h"
#include "functions/service/metrics.h"
#include "functions/service/platform_host.h"
#include "functions/templates.h"
#include "functions/validation.h"
#include "store/engagement_attributes.h"
#include "store/memory/memory_store.h"

namespace parley::functions::service {
namespace {

TEST(Validation, FunctionNames) {
  EXPECT_TRUE(validateFunctionName("a"));
  EXPECT_TRUE(validateFunctionName("A_b-9"));
  EXPECT_TRUE(validateFunctionName(std::string(100, 'x')));
  EXPECT_FALSE(validateFunctionName(std::string(101, 'x')));
  EXPECT_FALSE(validateFunctionName(""));
  EXPECT_FALSE(validateFunctionName("a b"));
  EXPECT_FALSE(validateFunctionName("a/b"));
  EXPECT_FALSE(validateFunctionName("ä"));
}

TEST(Validation, EnvVars) {
  EXPECT_TRUE(validateEnvVar({"A", ""}));
  EXPECT_TRUE(validateEnvVar({"_A1", "v"}));
  EXPECT_TRUE(validateEnvVar({std::string(200, 'A'), std::string(200, 'v')}));
  EXPECT_FALSE(validateEnvVar({std::string(201, 'A'), "v"}));
  EXPECT_FALSE(validateEnvVar({"A", std::string(201, 'v')}));
  EXPECT_FALSE(validateEnvVar({"9A", "v"}));
  EXPECT_FALSE(validateEnvVar({"aA", "v"}));
  EXPECT_FALSE(validateEnvVar({"A.B", "v"}));
  for (const auto& name : reservedEnvNames()) {
    auto s = validateEnvVar({name, "v"});
    ASSERT_FALSE(s) << name;
    EXPECT_NE(s.error().message.find(kReservedEnvMessage), std::string::npos);
  }
  EXPECT_FALSE(validateEnvVars({{"A", "1"}, {"A", "2"}}));
  EXPECT_TRUE(validateEnvVars({{"A", "1"}, {"B", "2"}}));
}

TEST(Validation, SecretKeysAndValues) {
  EXPECT_TRUE(validateSecretKey("lp-faas-default-app-key"));
  EXPECT_TRUE(validateSecretKey(std::string(100, 'k')));
  EXPECT_FALSE(validateSecretKey(std::string(101, 'k')));
  EXPECT_FALSE(validateSecretKey(""));
  EXPECT_FALSE(validateSecretKey("a.b"));
  EXPECT_TRUE(validateSecretValue(std::string(10'000, 'v')));
  auto big = validateSecretValue(std::string(10'001, 'v'));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ErrorCode::kTooLarge);
}

TEST(Validation, Domains) {
  EXPECT_EQ(normalizeDomain("API.Example.COM.").value(), "api.example.com");
  EXPECT_EQ(normalizeDomain("*.example.com").value(), "*.example.com");
  EXPECT_TRUE(normalizeDomain("93.184.216.34"));  // a public IPv4 address
  EXPECT_TRUE(normalizeDomain("1e100.net"));
  EXPECT_TRUE(normalizeDomain("xn--bcher-kva.example"));
  EXPECT_TRUE(normalizeDomain(std::string(63, 'a') + ".com"));
  EXPECT_FALSE(normalizeDomain(std::string(64, 'a') + ".com"));
  EXPECT_FALSE(normalizeDomain(""));
  EXPECT_FALSE(normalizeDomain("*"));
  EXPECT_FALSE(normalizeDomain("*.com"));
  EXPECT_FALSE(normalizeDomain("*.*.example.com"));
  EXPECT_FALSE(normalizeDomain("www.*.example.com"));
  EXPECT_FALSE(normalizeDomain("a..b"));
  EXPECT_FALSE(normalizeDomain("-a.com"));
  EXPECT_FALSE(normalizeDomain("a-.com"));
  EXPECT_FALSE(normalizeDomain("a_b.com"));
  EXPECT_FALSE(normalizeDomain("example.com/path"));
  EXPECT_FALSE(normalizeDomain("example.com:443"));
  std::string long_name;
  for (int i = 0; i < 5; ++i) long_name += std::string(50, 'a') + ".";
  long_name += "com";  // 258 characters
  EXPECT_FALSE(normalizeDomain(long_name));
}

TEST(Validation, DomainsThatLeadInsideAreRefused) {
  auto refused = [](std::string_view d, std::string_view says) {
    auto r = normalizeDomain(d);
    if (r) return ::testing::AssertionFailure() << d << " was accepted";
    if (r.error().message.find(says) == std::string::npos)
      return ::testing::AssertionFailure() << d << ": " << r.error().message;
    return ::testing::AssertionSuccess();
  };
  EXPECT_TRUE(refused("127.0.0.1", "loopback"));
  EXPECT_TRUE(refused("10.1.2.3", "private"));
  EXPECT_TRUE(refused("172.16.0.1", "private"));
  EXPECT_TRUE(refused("192.168.0.10", "private"));
  EXPECT_TRUE(refused("169.254.169.254", "metadata"));
  EXPECT_TRUE(refused("169.254.1.1", "link-local"));
  EXPECT_TRUE(refused("100.64.0.1", "CGNAT"));
  EXPECT_TRUE(refused("0.0.0.0", "unspecified"));
  EXPECT_TRUE(refused("224.0.0.1", "multicast"));
  EXPECT_TRUE(refused("255.255.255.255", "broadcast"));
  EXPECT_TRUE(refused("192.0.2.1", "reserved"));
  // Other spellings a resolver reads as IPv4 addresses.
  EXPECT_TRUE(refused("2130706433", "127.0.0.1 written in another form"));
  EXPECT_TRUE(refused("0x7f000001", "127.0.0.1 written in another form"));
  EXPECT_TRUE(refused("0X7F.1", "127.0.0.1 written in another form"));
  EXPECT_TRUE(refused("0177.0.0.1", "127.0.0.1 written in another form"));
  EXPECT_TRUE(refused("127.1", "127.0.0.1 written in another form"));
  EXPECT_TRUE(refused("127.0.1", "127.0.0.1 written in another form"));
  EXPECT_TRUE(refused("0", "0.0.0.0 written in another form"));
  EXPECT_TRUE(refused("1572395042", "93.184.216.34 written in another form"));
  EXPECT_TRUE(refused("010.0.0.1", "8.0.0.1 written in another form"));
  // Patterns over addresses and names whose last label is a number.
  EXPECT_TRUE(refused("*.0.0.1", "wildcard cannot be followed by an IP address"));
  EXPECT_TRUE(refused("*.1.2.3.4", "wildcard cannot be followed by an IP address"));
  EXPECT_TRUE(refused("*.a.1", "last label is a number"));
  EXPECT_TRUE(refused("1.2.3.4.5", "last label is a number"));
  EXPECT_TRUE(refused("::1", "IPv6"));
  EXPECT_TRUE(refused("[::1]", "IPv6"));
  EXPECT_TRUE(refused("[fd00:ec2::254]", "IPv6"));
  // Names of this machine and of metadata services, also through a wildcard.
  EXPECT_TRUE(refused("localhost", "loopback"));
  EXPECT_TRUE(refused("LOCALHOST.", "loopback"));
  EXPECT_TRUE(refused("api.localhost", "loopback"));
  EXPECT_TRUE(refused("*.dev.localhost", "loopback"));
  EXPECT_TRUE(refused("metadata.google.internal", "metadata service metadata.google.internal"));
  EXPECT_TRUE(refused("*.google.internal", "matches the cloud metadata service"));
  EXPECT_TRUE(refused("metadata", "metadata"));
  EXPECT_TRUE(refused("instance-data", "metadata"));
  EXPECT_TRUE(refused("*.ec2.internal", "instance-data.ec2.internal"));
  EXPECT_TRUE(normalizeDomain("google.internal"));  // the apex is not the metadata name
}

TEST(Validation, OperatorOpenedRangesMayBeAllowlisted) {
  auto policy = engine::AddressPolicy::parse({"loopback", "10.1.0.0/16"});
  ASSERT_TRUE(policy);
  EXPECT_TRUE(normalizeDomain("127.0.0.1", *policy));
  EXPECT_TRUE(normalizeDomain("localhost", *policy));
  EXPECT_TRUE(normalizeDomain("10.1.2.3", *policy));
  EXPECT_FALSE(normalizeDomain("10.2.0.1", *policy));
  EXPECT_FALSE(normalizeDomain("169.254.169.254", *policy));
  EXPECT_FALSE(normalizeDomain("metadata.google.internal", *policy));
  EXPECT_FALSE(normalizeDomain("2130706433", *policy));  // odd spellings never
  auto metadata = engine::AddressPolicy::parse({"metadata"});
  EXPECT_TRUE(normalizeDomain("metadata.google.internal", *metadata));
  EXPECT_TRUE(validateAllowlist({"localhost", "api.example.com"}, *policy));
  EXPECT_FALSE(validateAllowlist({"localhost", "api.example.com"}));
}

TEST(Validation, Allowlist) {
  EXPECT_FALSE(validateAllowlist({"a.com", "A.com"}));
  std::vector<std::string> list(101);
  for (int i = 0; i < 101; ++i) list[i] = "h" + std::to_string(i) + ".com";
  EXPECT_FALSE(validateAllowlist(list));
  list.pop_back();
  EXPECT_TRUE(validateAllowlist(list));
}

TEST(Metrics, CountsErrorsAndPercentiles) {
  FunctionMetrics m;
  AccountId a("a");
  FunctionId f("f");
  for (int i = 1; i <= 100; ++i) m.record(a, f, i, i % 10 == 0 ? "code-x" : "");
  auto s = m.snapshot(a, f);
  EXPECT_EQ(s.invocations, 100);
  EXPECT_EQ(s.errors, 10);
  EXPECT_EQ(s.errors_by_code["code-x"], 10);
  EXPECT_DOUBLE_EQ(s.p50_ms, 50);
  EXPECT_DOUBLE_EQ(s.p95_ms, 95);
  EXPECT_DOUBLE_EQ(s.p99_ms, 99);
  EXPECT_EQ(m.snapshot(a, FunctionId("other")).invocations, 0);

  std::string text = m.prometheusText();
  EXPECT_NE(text.find("parley_function_invocations_total{account=\"a\",function=\"f\"} 100"),
            std::string::npos);
  EXPECT_NE(
      text.find("parley_function_errors_total{account=\"a\",function=\"f\",code=\"code-x\"} 10"),
      std::string::npos);
  // 1..100 ms: 10 of them are <= 10 ms, all are <= 100 ms.
  EXPECT_NE(
      text.find(
          "parley_function_duration_seconds_bucket{account=\"a\",function=\"f\",le=\"0.01\"} 10"),
      std::string::npos)
      << text;
  EXPECT_NE(
      text.find(
          "parley_function_duration_seconds_bucket{account=\"a\",function=\"f\",le=\"0.1\"} 100"),
      std::string::npos);
  EXPECT_NE(text.find("le=\"+Inf\"} 100"), std::string::npos);
  m.erase(a, f);
  EXPECT_EQ(m.snapshot(a, f).invocations, 0);
}

TEST(Metrics, ReservoirIsBounded) {
  FunctionMetrics m;
  for (int i = 0; i < 5000; ++i) m.record(AccountId("a"), FunctionId("f"), i < 4000 ? 1000 : 1, "");
  auto s = m.snapshot(AccountId("a"), FunctionId("f"));
  EXPECT_EQ(s.invocations, 5000);
  // Only the most recent 1024 samples count: 1000 of 1 ms and 24 of 1000 ms.
  EXPECT_DOUBLE_EQ(s.p95_ms, 1);
  EXPECT_DOUBLE_EQ(s.p99_ms, 1000);
}

TEST(Templates, CatalogueIsConsistent) {
  EXPECT_TRUE(isKnownEvent("bot_connectors_custom_integration"));
  EXPECT_TRUE(isKnownEvent("no_event"));
  EXPECT_FALSE(isKnownEvent("made_up"));
  for (const auto& t : allTemplates()) {
    EXPECT_TRUE(isKnownEvent(t.event)) << t.event;
    EXPECT_NE(t.code.find("function lambda(input, callback)"), std::string::npos) << t.event;
    auto sample = json::parseObject(t.sample_payload);
    ASSERT_TRUE(sample) << t.event;
    EXPECT_TRUE(sample->contains("timestamp"));
    EXPECT_TRUE(sample->at("headers").is_array());
    EXPECT_TRUE(sample->contains("payload"));
  }
  EXPECT_EQ(templateFor("controllerbot_messaging_ttr").event, "controllerbot_messaging_ttr");
}

class PlatformHostTest : public ::testing::Test {
 protected:
  testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_ = store::makeMemoryStore(clock_);
  crypto::SecretBox box_ = crypto::SecretBox::randomForTest();
  PlatformHost host_{store_->functions(), box_, clock_};
  AccountId acc_{"acc"};

  std::string ctx(const std::string& op, const std::string& args) {
    auto r = host_.contextCall(acc_, op, args);
    EXPECT_TRUE(r) << op << ": " << r.error().message;
    return r ? *r : "";
  }
};

TEST_F(PlatformHostTest, SecretsRoundTripEncrypted) {
  EXPECT_EQ(host_.readSecret(acc_, "k").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(host_.updateSecret(acc_, "k", "v").error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(store_->functions().putSecret({acc_, "k", box_.seal("first").value(), 0}));
  EXPECT_EQ(host_.readSecret(acc_, "k").value(), "first");
  ASSERT_TRUE(host_.updateSecret(acc_, "k", "second"));
  EXPECT_EQ(host_.readSecret(acc_, "k").value(), "second");
  EXPECT_EQ(store_->functions().getSecret(acc_, "k")->ciphertext.find("second"), std::string::npos);
  EXPECT_FALSE(host_.updateSecret(acc_, "k", std::string(10'001, 'x')));
  EXPECT_EQ(host_.readSecret(AccountId("other"), "k").error().code, ErrorCode::kNotFound);
  // Another key cannot open it.
  PlatformHost other(store_->functions(), crypto::SecretBox::randomForTest(), clock_);
  EXPECT_FALSE(other.readSecret(acc_, "k"));
}

TEST_F(PlatformHostTest, ConversationReader) {
  EXPECT_EQ(host_.getConversation(acc_, "c").error().code, ErrorCode::kUnavailable);
  PlatformHost with(store_->functions(), box_, clock_,
                    [](const AccountId& a, const std::string& id) -> Result<std::string> {
                      return "{\"acc\":\"" + a.str() + "\",\"id\":\"" + id + "\"}";
                    });
  EXPECT_EQ(with.getConversation(acc_, "c").value(), R"({"acc":"acc","id":"c"})");
}

TEST_F(PlatformHostTest, ContextServiceWithTtl) {
  EXPECT_EQ(
      host_.contextCall(acc_, "set", R"({"namespace":"ns","properties":{"a":1}})").error().code,
      ErrorCode::kNotFound);
  ctx("createNamespace", R"({"namespace":"ns","ttl":60})");
  ctx("createNamespace", R"({"namespace":"perm"})");
  auto list = json::parse(ctx("getListOfNamespaces", "{}")).value().as_array();
  EXPECT_EQ(list.size(), 2u);

  ctx("set", R"({"namespace":"ns","properties":{"a":1,"b":{"x":"y"}},"sessionId":"s1"})");
  ctx("update", R"({"namespace":"ns","properties":{"c":true},"sessionId":"s1"})");
  ctx("set", R"({"namespace":"ns","properties":{"z":0}})");
  EXPECT_EQ(ctx("getAll", R"({"namespace":"ns","sessionId":"s1"})"),
            R"({"a":1,"b":{"x":"y"},"c":true})");
  EXPECT_EQ(ctx("get", R"({"namespace":"ns","name":"b","sessionId":"s1"})"), R"({"x":"y"})");
  EXPECT_EQ(ctx("get", R"({"namespace":"ns","name":"nope","sessionId":"s1"})"), "null");
  EXPECT_EQ(ctx("getSelected", R"({"namespace":"ns","names":["a","c","q"],"sessionId":"s1"})"),
            R"({"a":1,"c":true})");
  EXPECT_EQ(ctx("getAll", R"({"namespace":"ns"})"), R"({"z":0})");
  auto sessions = ctx("getListOfSessions", R"({"namespace":"ns"})");
  EXPECT_NE(sessions.find("s1"), std::string::npos);
  EXPECT_NE(sessions.find(kDefaultContextSession), std::string::npos);

  // set replaces the session's properties.
  ctx("set", R"({"namespace":"ns","properties":{"only":1},"sessionId":"s1"})");
  EXPECT_EQ(ctx("getAll", R"({"namespace":"ns","sessionId":"s1"})"), R"({"only":1})");
  ctx("deleteProperty", R"({"namespace":"ns","name":"only","sessionId":"s1"})");
  EXPECT_EQ(ctx("getAll", R"({"namespace":"ns","sessionId":"s1"})"), "{}");

  // TTL: properties of "ns" expire after 60 s; "perm" keeps them.
  ctx("set", R"({"namespace":"ns","properties":{"t":1},"sessionId":"s2"})");
  ctx("set", R"({"namespace":"perm","properties":{"t":1},"sessionId":"s2"})");
  clock_.advanceMs(59'000);
  EXPECT_EQ(ctx("getAll", R"({"namespace":"ns","sessionId":"s2"})"), R"({"t":1})");
  clock_.advanceMs(2'000);
  EXPECT_EQ(ctx("getAll", R"({"namespace":"ns","sessionId":"s2"})"), "{}");
  EXPECT_EQ(ctx("getAll", R"({"namespace":"perm","sessionId":"s2"})"), R"({"t":1})");

  ctx("deleteSession", R"({"namespace":"perm","sessionId":"s2"})");
  EXPECT_EQ(ctx("getAll", R"({"namespace":"perm","sessionId":"s2"})"), "{}");
  ctx("deleteNamespace", R"({"namespace":"perm"})");
  EXPECT_EQ(host_.contextCall(acc_, "getAll", R"({"namespace":"perm"})").error().code,
            ErrorCode::kNotFound);
  // Isolation and bad input.
  EXPECT_EQ(host_.contextCall(AccountId("other"), "getAll", R"({"namespace":"ns"})").error().code,
            ErrorCode::kNotFound);
  EXPECT_EQ(host_.contextCall(acc_, "createNamespace", R"({"namespace":"__parley.namespaces"})")
                .error()
                .code,
            ErrorCode::kInvalid);
  EXPECT_EQ(host_.contextCall(acc_, "explode", R"({"namespace":"ns"})").error().code,
            ErrorCode::kInvalid);
}

TEST(LpServices, RoutesAndRefusals) {
  AccountId acc("acc");
  const std::string skills = "/api/v1/accounts/acc/skills";
  EXPECT_EQ(checkLpRequest(acc, "accountConfigReadOnly", "GET", skills, 0).value(), skills);
  EXPECT_TRUE(checkLpRequest(acc, "accountConfigReadOnly", "GET", skills + "/7?x=1", 0));
  EXPECT_TRUE(checkLpRequest(acc, "accountConfigReadWrite", "DELETE", skills + "/7", 0));
  EXPECT_TRUE(checkLpRequest(acc, "msgHist", "GET", "/api/v1/accounts/acc/conversations", 0));
  auto code = [&](std::string_view svc, std::string_view method, std::string_view path,
                  std::size_t body = 0) {
    auto r = checkLpRequest(acc, svc, method, path, body);
    return r ? std::string("ok") : std::string(errorCodeName(r.error().code));
  };
  EXPECT_EQ(checkLpRequest(acc, "nope", "GET", skills, 0).error().message,
            "Service \"nope\" could not be found.");
  EXPECT_EQ(code("nope", "GET", skills), "NOT_FOUND");
  EXPECT_EQ(code("rtbf", "GET", skills), "INVALID");
  EXPECT_EQ(code("smt", "GET", skills), "INVALID");
  EXPECT_EQ(code("accountConfigReadOnly", "POST", skills), "FORBIDDEN");
  EXPECT_EQ(code("msgHist", "DELETE", "/api/v1/accounts/acc/conversations/1"), "FORBIDDEN");
  EXPECT_EQ(code("accountConfigReadWrite", "TRACE", skills), "INVALID");
  EXPECT_EQ(code("accountConfigReadWrite", "GET", "/api/v1/accounts/other/skills"), "FORBIDDEN");
  EXPECT_EQ(code("accountConfigReadWrite", "GET", "/api/v1/accounts/acc/functions"), "FORBIDDEN");
  EXPECT_EQ(code("msgHist", "GET", skills), "FORBIDDEN");
  EXPECT_EQ(code("accountConfigReadOnly", "GET", "/api/v1/accounts/acc/skills/../functions"),
            "INVALID");
  EXPECT_EQ(code("accountConfigReadOnly", "GET", "/api/v1/accounts/acc/skills/%2e%2e/x"),
            "INVALID");
  EXPECT_EQ(code("accountConfigReadOnly", "GET", "/api/v1/accounts/acc//skills"), "INVALID");
  EXPECT_EQ(code("accountConfigReadOnly", "GET", "/api/v1/accounts/acc"), "INVALID");
  EXPECT_EQ(code("accountConfigReadOnly", "GET", "https://evil.example/api/v1/accounts/acc/skills"),
            "INVALID");
  EXPECT_EQ(code("accountConfigReadOnly", "GET", skills + "#frag"), "INVALID");
  EXPECT_EQ(code("accountConfigReadOnly", "GET", skills + "?" + std::string(kMaxLpPathChars, 'x')),
            "INVALID");
  EXPECT_EQ(code("accountConfigReadWrite", "POST", skills, kMaxLpBodyBytes), "ok");
  EXPECT_EQ(code("accountConfigReadWrite", "POST", skills, kMaxLpBodyBytes + 1), "INVALID");
}

TEST(LpServices, ApiKeyFromSecret) {
  EXPECT_EQ(lpApiKeyFromSecret("s", "pk_abc").value(), "pk_abc");
  EXPECT_EQ(lpApiKeyFromSecret("s", R"({"apiKey":"pk_abc"})").value(), "pk_abc");
  auto oauth1 = lpApiKeyFromSecret("s", R"({"consumerKey":"a","consumerSecret":"b"})");
  ASSERT_FALSE(oauth1);
  EXPECT_NE(oauth1.error().message.find("OAuth1"), std::string::npos);
  EXPECT_FALSE(lpApiKeyFromSecret("s", ""));
  EXPECT_FALSE(lpApiKeyFromSecret("s", "two words"));
  EXPECT_FALSE(lpApiKeyFromSecret("s", "key\r\nX-Injected: 1"));
  EXPECT_FALSE(lpApiKeyFromSecret("s", R"({"apiKey":""})"));
  EXPECT_FALSE(lpApiKeyFromSecret("s", "{not json"));
}

TEST_F(PlatformHostTest, LpClientCallsTheLocalApiWithTheSecretsKey) {
  PlatformCall call{
      acc_,    FunctionId("f-1"),
      "req-1", Invoker{},
      "lp",    R"({"service":"accountConfigReadOnly","path":"/api/v1/accounts/acc/skills"})"};
  // No secret yet, then no LocalApi yet.
  EXPECT_EQ(host_.platformCall(call).error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(store_->functions().putSecret(
      {acc_, std::string(kDefaultLpAppKeySecret), box_.seal("pk_secret").value(), 0}));
  EXPECT_EQ(host_.platformCall(call).error().code, ErrorCode::kUnavailable);
  LocalApiRequest seen;
  host_.setLocalApi([&](LocalApiRequest req) -> Result<LocalApiResponse> {
    seen = req;
    return LocalApiResponse{200, "application/json", "[{\"id\":\"1\"}]"};
  });
  auto r = host_.platformCall(call);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(
      *r,
      R"({"statusCode":200,"headers":{"content-type":"application/json"},"body":"[{\"id\":\"1\"}]"})");
  EXPECT_EQ(seen.method, "GET");
  EXPECT_EQ(seen.target, "/api/v1/accounts/acc/skills");
  bool has_auth = false;
  for (auto& [k, v] : seen.headers) has_auth |= k == "authorization" && v == "Bearer pk_secret";
  EXPECT_TRUE(has_auth);
  // A refused request reaches neither the secret nor the API.
  seen = {};
  PlatformCall other = call;
  other.args_json = R"({"service":"accountConfigReadOnly","path":"/api/v1/accounts/x/skills"})";
  EXPECT_EQ(host_.platformCall(other).error().code, ErrorCode::kForbidden);
  EXPECT_TRUE(seen.target.empty());
  // Every read of the key is audited; a failing audit stops the request.
  auto audit = store_->functions().listSecretAudit(acc_, 100);
  ASSERT_TRUE(audit);
  EXPECT_EQ(audit->size(), 3u);
  PlatformCall unknown = call;
  unknown.op = "nope";
  EXPECT_EQ(host_.platformCall(unknown).error().code, ErrorCode::kInvalid);
}

// A conversation "c-1" of account "acc" with consumer "consumer-1", a visitor id in its context
// and one hosted file; any other id or account is NotFound.
ConversationFactsReader oneConversation() {
  return [](const AccountId& a, const std::string& id) -> Result<ConversationFacts> {
    if (a.str() != "acc" || id != "c-1") return notFound("no conversation " + id);
    return ConversationFacts{"consumer-1",
                             R"({"type":"SharkContext","visitor":{"sharkVisitorId":"sv-1"}})",
                             {"/files/a.png"}};
  };
}

TEST_F(PlatformHostTest, AddSdesChecksTheConversationVisitorAndInputThenStores) {
  auto add = [&](const AccountId& acc, const std::string& args) {
    return host_.platformCall(
        PlatformCall{acc, FunctionId("f-1"), "req-1", Invoker{}, "sdes.add", args});
  };
  const std::string personal =
      R"([{"type":"personal","personal":{"contacts":[{"email":"j@x.io"}]}}])";
  auto args = [&](const std::string& sdes, const std::string& visitor, const std::string& session) {
    return R"({"sdes":)" + sdes + R"(,"visitorId":")" + visitor + R"(","sessionId":")" + session +
           "\"}";
  };
  // No conversations here yet.
  EXPECT_EQ(add(acc_, args(personal, "consumer-1", "c-1")).error().code, ErrorCode::kUnavailable);
  host_.setConversationFacts(oneConversation());

  clock_.setMs(1'700'000'000'000);
  auto r = add(acc_, args(personal, "consumer-1", "c-1"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "null");
  clock_.setMs(1'700'000'000'500);
  ASSERT_TRUE(add(acc_, args(R"([{"type":"cart","total":3}])", "sv-1", "c-1")));  // context visitor

  auto ev = store::reportedSdeEvents(store_->functions(), acc_, ConversationId("c-1"));
  ASSERT_TRUE(ev);
  ASSERT_EQ(ev->size(), 2u);
  EXPECT_EQ((*ev)[0].at("sdeType").as_string(), "PERSONAL_INFO");
  EXPECT_EQ((*ev)[0].at("serverTimeStamp").as_int64(), 1'700'000'000'000);
  EXPECT_EQ((*ev)[1].at("sdeType").as_string(), "CART_STATUS");

  // Refusals, each naming what was wrong; none stores anything.
  auto refused = [&](const AccountId& acc, const std::string& a, ErrorCode code,
                     const std::string& mention) {
    auto x = add(acc, a);
    ASSERT_FALSE(x) << a;
    EXPECT_EQ(x.error().code, code) << x.error().message;
    EXPECT_NE(x.error().message.find(mention), std::string::npos) << x.error().message;
  };
  refused(AccountId("other"), args(personal, "consumer-1", "c-1"), ErrorCode::kNotFound,
          "is not a conversation of this account");
  refused(acc_, args(personal, "consumer-1", "c-2"), ErrorCode::kNotFound, "'c-2'");
  refused(acc_, args(personal, "someone-else", "c-1"), ErrorCode::kInvalid,
          "is not the visitor of conversation c-1");
  refused(acc_, args(R"([{"type":"bogus"}])", "consumer-1", "c-1"), ErrorCode::kInvalid,
          "addSDEs: sdes[0] has unknown type 'bogus'");
  refused(acc_, args(R"({"type":"cart"})", "consumer-1", "c-1"), ErrorCode::kInvalid,
          "must be an array");
  std::string many = "[";
  for (int i = 0; i < 21; ++i) many += std::string(i ? "," : "") + R"({"type":"cart"})";
  refused(acc_, args(many + "]", "consumer-1", "c-1"), ErrorCode::kTooLarge, "at most 20");
  refused(acc_, R"({"sdes":[],"sessionId":"c-1"})", ErrorCode::kInvalid, "needs visitorId");
  EXPECT_EQ(store::reportedSdeEvents(store_->functions(), acc_, ConversationId("c-1"))->size(), 2u);
  EXPECT_TRUE(
      store::reportedSdeEvents(store_->functions(), AccountId("other"), ConversationId("c-1"))
          ->empty());
  // The context service cannot reach where they are kept.
  EXPECT_FALSE(
      host_.contextCall(acc_, "getAll", R"({"namespace":"__parley.sdes","sessionId":"c-1"})"));
}

TEST_F(PlatformHostTest, ReplaceFilesNeedsAnAdminLoginAndSaysNoFileCanBeReplaced) {
  host_.setConversationFacts(oneConversation());
  std::vector<LocalApiRequest> seen;
  // The server's login: "admin"/"right" holds ADMIN, "dev"/"right" FAAS_DEVELOPER; anything else
  // is refused.
  host_.setLocalApi([&](LocalApiRequest req) -> Result<LocalApiResponse> {
    seen.push_back(req);
    if (req.target.find("/logout") != std::string::npos)
      return LocalApiResponse{200, "application/json", "{}"};
    auto body = json::parseObject(req.body).value();
    std::string user = json::getString(body, "username");
    if (json::getString(body, "password") != "right")
      return LocalApiResponse{401, "application/json",
                              R"({"error":"wrong login name or password"})"};
    std::string role = user == "admin" ? "ADMIN" : "FAAS_DEVELOPER";
    return LocalApiResponse{
        200, "application/json",
        R"({"bearer":"b-)" + user + R"(","config":{"roles":[")" + role + "\"]}}"};
  });
  auto replace = [&](const AccountId& acc, const std::string& args) {
    return host_.platformCall(
        PlatformCall{acc, FunctionId("f-1"), "req-1", Invoker{}, "gdpr.replaceFiles", args});
  };
  auto args = [](const std::string& user, const std::string& pass, const std::string& paths,
                 const std::string& conv = "c-1") {
    return R"({"conversationId":")" + conv + R"(","username":")" + user + R"(","password":")" +
           pass + R"(","paths":)" + paths + "}";
  };

  // An admin, nothing selected: nothing to replace. The login came from "function:acc" and was
  // logged out again.
  auto r = replace(acc_, args("admin", "right", "[]"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "[]");
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].target, "/api/account/acc/login?v=1.3");
  EXPECT_EQ(seen[0].remote_address, "function:acc");
  EXPECT_EQ(seen[1].target, "/api/account/acc/logout");
  bool bearer = false;
  for (auto& [k, v] : seen[1].headers) bearer |= k == "authorization" && v == "Bearer b-admin";
  EXPECT_TRUE(bearer);

  // An admin selecting the conversation's file: refused, saying why.
  auto files = replace(acc_, args("admin", "right", R"(["/files/a.png"])"));
  ASSERT_FALSE(files);
  EXPECT_EQ(files.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(files.error().message.find("Parley keeps no file storage"), std::string::npos)
      << files.error().message;
  EXPECT_NE(files.error().message.find("/files/a.png"), std::string::npos);
  // A path that is not the conversation's.
  EXPECT_EQ(replace(acc_, args("admin", "right", R"(["/files/b.png"])")).error().code,
            ErrorCode::kInvalid);

  // A developer is refused, naming the role; a wrong password is refused as the server said.
  auto dev = replace(acc_, args("dev", "right", "[]"));
  ASSERT_FALSE(dev);
  EXPECT_EQ(dev.error().code, ErrorCode::kForbidden);
  EXPECT_NE(dev.error().message.find("needs ADMIN"), std::string::npos) << dev.error().message;
  EXPECT_NE(dev.error().message.find("FAAS_DEVELOPER"), std::string::npos);
  auto wrong = replace(acc_, args("admin", "wrong", "[]"));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::kUnauthorized);
  EXPECT_NE(wrong.error().message.find("wrong login name or password"), std::string::npos);

  // Another account's conversation is not found, before any login.
  seen.clear();
  EXPECT_EQ(replace(AccountId("other"), args("admin", "right", "[]")).error().code,
            ErrorCode::kNotFound);
  EXPECT_EQ(replace(acc_, args("admin", "right", "[]", "c-9")).error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(replace(acc_, R"({"conversationId":"c-1","paths":[]})").error().code,
            ErrorCode::kInvalid);
}

}  // namespace
}  // namespace parley::functions::service
