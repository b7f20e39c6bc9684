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

}  // namespace
}  // namespace parley::connector::richcontent
