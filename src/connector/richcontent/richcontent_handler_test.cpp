// POST richcontent/validate through the transport-free handler.

#include "connector/richcontent/richcontent_handler.h"

#include <gtest/gtest.h>

namespace parley::connector::richcontent {
namespace {

namespace bj = boost::json;

api::Response call(RichContentHandler& h, std::string method, std::vector<std::string> path,
                   std::string body) {
  api::Request req;
  req.method = std::move(method);
  req.path = std::move(path);
  req.body = std::move(body);
  req.caller.account = AccountId("123");
  api::Response out;
  int calls = 0;
  h.handle(std::move(req), [&](api::Response r) {
    out = std::move(r);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
  return out;
}

class HandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto v = Validator::loadEmbedded();
    ASSERT_TRUE(v);
    handler_ = std::make_unique<RichContentHandler>(
        *v, [](const AccountId& acc) -> std::optional<std::vector<std::string>> {
          if (acc.str() == "123") return std::vector<std::string>{"cdn.example.com"};
          return std::nullopt;
        });
  }
  api::Response post(const std::string& body) {
    return call(*handler_, "POST", {"richcontent", "validate"}, body);
  }
  std::unique_ptr<RichContentHandler> handler_;
};

TEST_F(HandlerTest, ValidBody) {
  auto r =
      post(R"({"structuredContent":{"type":"vertical","elements":[{"type":"text","text":"hi"}]}})");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(bj::parse(r.body), bj::parse(R"({"valid":true,"errors":[]})"));
  EXPECT_EQ(handler_->resources(), std::vector<std::string>{"richcontent"});
}

TEST_F(HandlerTest, InvalidBodyListsPathsFromTheRequestRoot) {
  auto r = post(R"({"structuredContent":{"type":"vertical","elements":[{"type":"button"}]}})");
  EXPECT_EQ(r.status, 200);
  auto v = bj::parse(r.body).as_object();
  EXPECT_FALSE(v.at("valid").as_bool());
  auto& e = v.at("errors").as_array().at(0).as_object();
  EXPECT_EQ(e.at("path").as_string(), "/structuredContent/elements/0");
  EXPECT_EQ(e.at("message").as_string(), "missing required property \"title\" (in button)");
}

TEST_F(HandlerTest, UsesTheAccountAllowlistUnlessTheRequestGivesOne) {
  std::string sc = R"({"type":"image","url":"https://other.com/a.png"})";
  auto r = post(R"({"structuredContent":)" + sc + "}");
  EXPECT_FALSE(bj::parse(r.body).at("valid").as_bool());
  r = post(R"({"structuredContent":)" + sc + R"(,"imageAllowlist":["other.com"]})");
  EXPECT_TRUE(bj::parse(r.body).at("valid").as_bool()) << r.body;
}

TEST_F(HandlerTest, QuickRepliesFormAndChannel) {
  std::string body =
      R"({"structuredContent":{"message":"Pick","quickReplies":{"type":"quickReplies",
    "itemsPerRow":2,"replies":[{"type":"button","title":"A","click":{"actions":[{"type":"publishText","text":"a"}]}}]}})";
  auto r = post(body + "}");
  EXPECT_TRUE(bj::parse(r.body).at("valid").as_bool()) << r.body;
  r = post(body + R"(,"channel":"CHAT"})");
  auto v = bj::parse(r.body).as_object();
  EXPECT_FALSE(v.at("valid").as_bool());
  EXPECT_EQ(v.at("errors").as_array()[0].at("path").as_string(), "/structuredContent/quickReplies");
  r = post(R"({"structuredContent":{"quickReplies":{}}})");
  EXPECT_FALSE(bj::parse(r.body).at("valid").as_bool());
}

TEST_F(HandlerTest, MetadataIsValidatedWhenGiven) {
  auto r = post(
      R"({"structuredContent":{"type":"text","text":"x"},"metadata":[{"type":"ExternalId"}]})");
  auto v = bj::parse(r.body).as_object();
  EXPECT_FALSE(v.at("valid").as_bool());
  EXPECT_EQ(v.at("errors").as_array()[0].at("path").as_string(), "/metadata/0");
}

TEST_F(HandlerTest, BadRequests) {
  EXPECT_EQ(post("not json").status, 400);
  EXPECT_EQ(post("{}").status, 400);
  EXPECT_EQ(post(R"({"structuredContent":{},"channel":"SMS"})").status, 400);
  EXPECT_EQ(call(*handler_, "GET", {"richcontent", "validate"}, "").status, 400);
  EXPECT_EQ(call(*handler_, "POST", {"richcontent", "other"}, "{}").status, 404);
  auto r = post("{}");
  EXPECT_NE(bj::parse(r.body).at("error").at("message").as_string().find("structuredContent"),
            std::string::npos);
}

TEST(CheckPublishedEvent, RichContentAndQuickRepliesOfConversationEvents) {
  auto v = Validator::loadEmbedded();
  ASSERT_TRUE(v);
  int asked = 0;
  AllowlistProvider allowlist =
      [&](const AccountId& acc) -> std::optional<std::vector<std::string>> {
    ++asked;
    EXPECT_EQ(acc.str(), "123");
    return std::vector<std::string>{"cdn.example.com"};
  };
  auto check = [&](const std::string& ev, Channel ch = Channel::kMessaging) {
    return checkPublishedEvent(*v, AccountId("123"), bj::parse(ev).as_object(), ch, allowlist);
  };
  EXPECT_TRUE(
      check(R"j({"type":"ContentEvent","contentType":"text/plain","message":"<b>x</b>"})j"));
  EXPECT_TRUE(check(R"j({"type":"AcceptStatusEvent","status":"READ","sequenceList":[0]})j"));
  EXPECT_EQ(asked, 0) << "plain text and receipts cost no allowlist lookup";
  EXPECT_TRUE(check(
      R"j({"type":"RichContentEvent","content":{"type":"vertical","elements":[{"type":"text","text":"hi"}]}})j"));
  EXPECT_EQ(asked, 1);
  // The account's image allowlist applies.
  EXPECT_TRUE(check(
      R"j({"type":"RichContentEvent","content":{"type":"image","url":"https://cdn.example.com/a.png"}})j"));
  auto off = check(
      R"j({"type":"RichContentEvent","content":{"type":"image","url":"https://other.example/a.png"}})j");
  ASSERT_FALSE(off);
  EXPECT_NE(off.error().message.find("/event/content/url: image host"), std::string::npos)
      << off.error().message;

  auto bad = check(
      R"j({"type":"RichContentEvent","content":{"type":"vertical","elements":[{"type":"button","title":"x",
          "click":{"actions":[{"type":"link","name":"x","uri":"javascript:alert(1)"}]}}]}})j");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalid);
  EXPECT_NE(bad.error().message.find("the RichContentEvent is refused: "
                                     "/event/content/elements/0/click/actions/0/uri: link URIs "
                                     "must be http(s)://"),
            std::string::npos)
      << bad.error().message;
  EXPECT_NE(bad.error().message.find("publish it again"), std::string::npos);

  auto none = check(R"j({"type":"RichContentEvent"})j");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("/event/content: a RichContentEvent needs"),
            std::string::npos);
  auto str = check(R"j({"type":"RichContentEvent","content":"<img src=x onerror=alert(1)>"})j");
  ASSERT_FALSE(str);
  EXPECT_NE(str.error().message.find("/event/content: structured content must be a JSON object"),
            std::string::npos)
      << str.error().message;

  const std::string qr =
      R"j({"type":"ContentEvent","contentType":"text/plain","message":"pick","quickReplies":{"type":"quickReplies",
          "itemsPerRow":1,"replies":[{"type":"button","title":"A","click":{"actions":[{"type":"publishText","text":"a"}]}}]}})j";
  EXPECT_TRUE(check(qr));
  auto chat = check(qr, Channel::kChat);
  ASSERT_FALSE(chat);
  EXPECT_NE(chat.error().message.find("/event/quickReplies: quick replies are supported only"),
            std::string::npos);
  // Quick replies on a RichContentEvent are checked too.
  auto rq = check(
      R"j({"type":"RichContentEvent","content":{"type":"text","text":"x"},"quickReplies":{"type":"quickReplies","replies":[]}})j");
  ASSERT_FALSE(rq);
  EXPECT_NE(rq.error().message.find("/event/quickReplies"), std::string::npos)
      << rq.error().message;

  // More than five problems: the first five and a count.
  std::string many = R"j({"type":"RichContentEvent","content":{"type":"vertical","elements":[)j";
  for (int i = 0; i < 7; ++i) many += std::string(i ? "," : "") + R"j({"type":"button"})j";
  many += "]}}";
  auto m = check(many);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("; and 2 more"), std::string::npos) << m.error().message;
}

}  // namespace
}  // namespace parley::connector::richcontent
