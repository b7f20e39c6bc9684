// Rules beyond the schema: URLs, allowlist, size, quick replies, metadata, encodedMetadata.

#include "connector/richcontent/validator.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/testing/temp_dir.h"
#include "connector/richcontent/embedded_schema.h"
#include "connector/testing/corpus.h"

namespace parley::connector::richcontent {
namespace {

namespace bj = boost::json;

class ValidatorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto v = Validator::loadEmbedded();
    ASSERT_TRUE(v) << v.error().message;
    v_ = new Validator(std::move(*v));
  }
  static void TearDownTestSuite() { delete v_; }
  static const Validator& v() { return *v_; }
  static Validator* v_;
};
Validator* ValidatorTest::v_ = nullptr;

std::string card(const std::string& image_url) {
  return R"({"type":"vertical","elements":[{"type":"image","url":")" + image_url +
         R"("},{"type":"text","text":"hi"}]})";
}

TEST_F(ValidatorTest, LoadsFromAFolderInstead) {
  EXPECT_TRUE(Validator::load(testing::schemaDir() / "json-pollock-1.7.7"));
  EXPECT_TRUE(Validator::load(testing::schemaDir()));
  auto bad = Validator::load("/nonexistent/schema");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("rich_content.json"), std::string::npos);
}

// A schema folder given instead of the built-in schema is the one that decides: the same card
// is valid under the built-in schema and invalid under a copy whose text.json allows 3
// characters.
TEST_F(ValidatorTest, AFolderOverridesTheBuiltInSchema) {
  parley::testing::TempDir dir;
  for (const EmbeddedFile& f : embeddedJsonPollockSchema()) {
    std::string text(f.text);
    if (f.name == "text.json") {
      bj::value v = bj::parse(text);
      v.as_object()["properties"].as_object()["text"].as_object()["maxLength"] = 3;
      text = bj::serialize(v);
    }
    std::ofstream(dir.file(std::string(f.name)), std::ios::binary) << text;
  }
  auto custom = Validator::load(dir.path());
  ASSERT_TRUE(custom) << custom.error().message;
  std::string doc = R"({"type":"text","text":"four"})";
  EXPECT_TRUE(v().validateText(doc).valid);
  auto r = custom->validateText(doc);
  ASSERT_FALSE(r.valid);
  EXPECT_EQ(r.errors[0].path, "/text");
  // Quick replies use the folder's button.json too.
  EXPECT_TRUE(
      custom
          ->validateQuickReplies(bj::parse(
              R"({"type":"quickReplies","itemsPerRow":2,"replies":[{"type":"button","title":"Yes",)"
              R"("click":{"actions":[{"type":"publishText","text":"yes"}]}}]})"))
          .valid);
  std::filesystem::remove(dir.file("button.json"));
  auto missing = Validator::load(dir.path());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("button.json"), std::string::npos);
}

TEST_F(ValidatorTest, BuiltInSchemaNeedsNoFiles) {
  auto v = Validator::loadEmbedded();
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_TRUE(v->validateText(R"({"type":"text","text":"hi"})").valid);
  EXPECT_FALSE(v->validateText(R"({"type":"text"})").valid);
  EXPECT_FALSE(embeddedJsonPollockSchema().empty());
}

TEST_F(ValidatorTest, ImageUrlsMustBeHttps) {
  EXPECT_TRUE(v().validateText(card("https://cdn.example.com/a.png")).valid);
  auto r = v().validateText(card("http://cdn.example.com/a.png"));
  ASSERT_FALSE(r.valid);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "/elements/0/url");
  EXPECT_NE(r.errors[0].message.find("https://"), std::string::npos);
  EXPECT_FALSE(v().validateText(card("/relative.png")).valid);
  ValidateOptions schema_only;
  schema_only.extra_rules = false;
  EXPECT_TRUE(v().validateText(card("http://cdn.example.com/a.png"), schema_only).valid);
}

TEST_F(ValidatorTest, ImageAllowlistHostsAndPrefixesWithoutWildcards) {
  ValidateOptions o;
  o.image_allowlist =
      std::vector<std::string>{"cdn.example.com", "https://img.brand.com/pub/", "*.wild.com"};
  EXPECT_TRUE(v().validateText(card("https://cdn.example.com/a.png"), o).valid);
  EXPECT_TRUE(v().validateText(card("https://CDN.example.com/a.png"), o).valid);
  EXPECT_TRUE(v().validateText(card("https://img.brand.com/pub/x.png"), o).valid);
  EXPECT_FALSE(v().validateText(card("https://img.brand.com/private/x.png"), o).valid);
  EXPECT_FALSE(v().validateText(card("https://evil.cdn.example.com/a.png"), o).valid);
  EXPECT_FALSE(v().validateText(card("https://a.wild.com/a.png"), o).valid);
  auto r = v().validateText(card("https://other.com/a.png"), o);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("\"other.com\" is not on the account's image allowlist"),
            std::string::npos);
  o.image_allowlist = std::vector<std::string>{};
  EXPECT_FALSE(v().validateText(card("https://cdn.example.com/a.png"), o).valid);
}

TEST_F(ValidatorTest, LinkPreviewUrlsAreCheckedToo) {
  auto r = v().validateText(R"({"type":"linkPreview","url":"http://x.com","title":"t"})");
  ASSERT_FALSE(r.valid);
  EXPECT_EQ(r.errors[0].path, "/url");
}

std::string linkCard(const std::string& link_fields) {
  return R"j({"type":"vertical","elements":[{"type":"button","title":"Go","click":{"actions":[{"type":"link","name":"go",)j" +
         link_fields + "}]}}]}";
}

TEST_F(ValidatorTest, LinkUrisAreWebUrlsMailOrPhone) {
  for (const char* ok : {"https://example.com/a?b=1", "http://example.com", "HTTPS://EXAMPLE.COM",
                         "mailto:help@example.com", "tel:+15550100"})
    EXPECT_TRUE(v().validateText(linkCard(std::string(R"j("uri":")j") + ok + "\"")).valid) << ok;
  for (const char* bad :
       {"javascript:alert(1)", "JavaScript:alert(1)", " javascript:alert(1)", "vbscript:x",
        "data:text/html,<script>alert(1)</script>", "file:///etc/passwd", "blob:https://x/y",
        "java\tscript:alert(1)", "//evil.example/", "/relative", "https:///nohost", "ftp://x/y"}) {
    auto r = v().validateText(linkCard(std::string(R"j("uri":)j") + bj::serialize(bj::value(bad))));
    ASSERT_FALSE(r.valid) << bad;
    EXPECT_EQ(r.errors.back().path, "/elements/0/click/actions/0/uri") << bad;
  }
  auto r = v().validateText(linkCard(R"j("uri":"javascript:alert(1)")j"));
  ASSERT_FALSE(r.valid);
  EXPECT_NE(r.errors.back().message.find("http(s)://, mailto: or tel:"), std::string::npos);

  // web.uri is a web link too; ios/android are app deep links: any scheme but script-capable ones.
  EXPECT_TRUE(v().validateText(
                     linkCard(R"j("uri":"https://example.com","web":{"uri":"https://example.com/w"},
        "ios":{"uri":"myapp://open"},"android":{"uri":"intent://x#Intent;end"})j"))
                  .valid);
  r = v().validateText(linkCard(R"j("uri":"https://example.com","web":{"uri":"javascript:x"})j"));
  ASSERT_FALSE(r.valid);
  EXPECT_EQ(r.errors.back().path, "/elements/0/click/actions/0/web/uri");
  r = v().validateText(linkCard(R"j("uri":"https://example.com","ios":{"uri":"javascript:x"})j"));
  ASSERT_FALSE(r.valid);
  EXPECT_EQ(r.errors.back().path, "/elements/0/click/actions/0/ios/uri");
  // Quick-reply chips follow the same rules.
  auto qr =
      bj::parse(R"j({"type":"quickReplies","itemsPerRow":1,"replies":[{"type":"button","title":"x",
      "click":{"actions":[{"type":"link","name":"x","uri":"javascript:alert(1)"}]}}]})j");
  auto q = v().validateQuickReplies(qr);
  ASSERT_FALSE(q.valid);
  EXPECT_EQ(q.errors.back().path, "/replies/0/click/actions/0/uri");
}

TEST_F(ValidatorTest, StyleColoursAreColours) {
  auto text = [](const std::string& style) {
    return R"j({"type":"vertical","elements":[{"type":"text","text":"x","style":)j" + style + "}]}";
  };
  for (const char* ok :
       {"#fff", "#FFFA", "#3736A6", "#00000080", "red", "transparent", "rgb(1, 2, 3)",
        "rgba(1,2,3,0.5)", "hsl(120deg 50% 50%)", "hsla(120, 50%, 50%, .3)", "rgb(1 2 3 / 50%)"}) {
    auto r = v().validateText(text(std::string(R"j({"color":")j") + ok + R"j(","bold":true})j"));
    EXPECT_TRUE(r.valid) << ok << ": " << (r.errors.empty() ? "" : r.errors[0].message);
  }
  for (const char* bad :
       {"red;background-image:url(https://evil.example/x)", "url(x)", "expression(alert(1))",
        "#ggg", "#12345", "", "var(--x)", "rgb(1,2,3);x:y", "red }", "calc(1)"}) {
    auto r = v().validateText(
        text(std::string(R"j({"background-color":)j") + bj::serialize(bj::value(bad)) + "}"));
    ASSERT_FALSE(r.valid) << bad;
    EXPECT_EQ(r.errors.back().path, "/elements/0/style/background-color") << bad;
  }
  EXPECT_FALSE(v().validateText(text(R"j({"border-color-hover":"url(x)"})j")).valid);
  EXPECT_FALSE(v().validateText(text(R"j({"fill":"url(#x)"})j")).valid);
  EXPECT_TRUE(v().validateText(text(R"j({"size":"large","italic":true})j")).valid);
  EXPECT_TRUE(cssColourAllowed("Red"));
  EXPECT_FALSE(cssColourAllowed(std::string(65, 'a')));
}

TEST_F(ValidatorTest, WholeMessageAtMost15000Bytes) {
  // 4 texts of 4000 bytes each: valid per schema, over the byte limit.
  std::string big(4000, 'a');
  std::string sc = R"({"type":"vertical","elements":[)";
  for (int i = 0; i < 4; ++i)
    sc += std::string(i ? "," : "") + R"({"type":"text","text":")" + big + "\"}";
  sc += "]}";
  auto r = v().validateText(sc);
  ASSERT_FALSE(r.valid);
  EXPECT_EQ(r.errors[0].path, "");
  EXPECT_NE(r.errors[0].message.find("the limit is 15000 bytes"), std::string::npos);
  EXPECT_EQ(compactJsonSize(bj::parse(sc)), sc.size());
  ValidateOptions o;
  o.max_bytes = 20'000;
  EXPECT_TRUE(v().validateText(sc, o).valid);
}

TEST_F(ValidatorTest, CompactSizeCountsEscapesAndNumbers) {
  bj::value v = bj::parse(
      R"({"a":"q\"b\\s\n\t\u0001\u007f\u00e9/","n":[-1,0,9,10,-9223372036854775808,18446744073709551615,1.5,-0.25,1e300,true,false,null],"e":{},"f":[]})");
  EXPECT_EQ(compactJsonSize(v), bj::serialize(v).size()) << bj::serialize(v);
}

TEST_F(ValidatorTest, NonObjectAndParseErrors) {
  auto r = v().validateText("[1,2]");
  EXPECT_FALSE(r.valid);
  EXPECT_FALSE(r.parse_error);
  EXPECT_EQ(r.errors[0].message, "structured content must be a JSON object, got an array");
  r = v().validateText("{\"type\":");
  EXPECT_TRUE(r.parse_error);
}

TEST_F(ValidatorTest, ErrorsCarryThePathPrefix) {
  ValidateOptions o;
  o.path_prefix = "/messages/2/structuredContent";
  auto r = v().validateText(R"({"type":"vertical","elements":[{"type":"button"}]})", o);
  ASSERT_FALSE(r.valid);
  EXPECT_EQ(r.errors[0].path, "/messages/2/structuredContent/elements/0");
  EXPECT_EQ(r.errors[0].message, "missing required property \"title\" (in button)");
}

TEST_F(ValidatorTest, UnknownElementTypeListsTheKnownOnes) {
  auto r = v().validateText(R"({"type":"vertical","elements":[{"type":"txet","text":"x"}]})");
  ASSERT_FALSE(r.valid);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "/elements/0/type");
  EXPECT_NE(r.errors[0].message.find("unknown type \"txet\""), std::string::npos);
  EXPECT_NE(r.errors[0].message.find("button"), std::string::npos);
}

bj::value chips(int n, const std::string& title = "Yes", int per_row = 4) {
  bj::array replies;
  for (int i = 0; i < n; ++i)
    replies.push_back(bj::parse(R"({"type":"button","title":")" + title +
                                R"(","click":{"actions":[{"type":"publishText","text":"y"}]}})"));
  return bj::object{{"type", "quickReplies"}, {"itemsPerRow", per_row}, {"replies", replies}};
}

TEST_F(ValidatorTest, QuickReplyLimits) {
  EXPECT_TRUE(v().validateQuickReplies(chips(1)).valid);
  EXPECT_TRUE(v().validateQuickReplies(chips(24)).valid);
  EXPECT_FALSE(v().validateQuickReplies(chips(25)).valid);
  EXPECT_FALSE(v().validateQuickReplies(chips(0)).valid);
  EXPECT_TRUE(v().validateQuickReplies(chips(2, "Yes", 8)).valid);
  EXPECT_TRUE(v().validateQuickReplies(chips(2, "Yes", 1)).valid);
  auto r = v().validateQuickReplies(chips(2, "Yes", 9));
  ASSERT_FALSE(r.valid);
  EXPECT_EQ(r.errors[0].path, "/itemsPerRow");
  EXPECT_FALSE(v().validateQuickReplies(chips(2, "Yes", 0)).valid);
  // 25 emoji are 25 code points (100 bytes): allowed; 26 are not.
  std::string e25, e26;
  for (int i = 0; i < 25; ++i) e25 += "\xF0\x9F\x98\x80";
  e26 = e25 + "!";
  EXPECT_TRUE(v().validateQuickReplies(chips(1, e25)).valid);
  r = v().validateQuickReplies(chips(1, e26));
  ASSERT_FALSE(r.valid);
  EXPECT_EQ(r.errors[0].path, "/replies/0/title");
}

// itemsPerRow beyond int64 (1e300, 2^64-1) was cast to int64 before the range check: undefined
// (UBSan's float-cast-overflow in the sanitizer builds). Now it is refused like 9.
TEST_F(ValidatorTest, ItemsPerRowFarOutOfRangeIsRefused) {
  for (const char* n : {"1e300", "-1e300", "18446744073709551615", "9223372036854775808", "2.5"}) {
    bj::value qr = chips(2);
    qr.as_object()["itemsPerRow"] = bj::parse(n);
    auto r = v().validateQuickReplies(qr);
    ASSERT_FALSE(r.valid) << n;
    EXPECT_EQ(r.errors.back().path, "/itemsPerRow") << n;
    EXPECT_NE(r.errors.back().message.find("whole number from 1 to 8"), std::string::npos) << n;
  }
}

TEST_F(ValidatorTest, QuickRepliesOnlyInMessaging) {
  ValidateOptions chat;
  chat.channel = Channel::kChat;
  auto r = v().validateQuickReplies(chips(2), chat);
  ASSERT_FALSE(r.valid);
  EXPECT_NE(r.errors[0].message.find("only in messaging"), std::string::npos);
}

TEST_F(ValidatorTest, QuickReplyChipsNeedActions) {
  auto qr = bj::parse(
      R"({"type":"quickReplies","itemsPerRow":2,"replies":[{"type":"button","title":"a"}]})");
  auto r = v().validateQuickReplies(qr);
  ASSERT_FALSE(r.valid);
  EXPECT_EQ(r.errors[0].path, "/replies/0");
}

TEST_F(ValidatorTest, MetadataRules) {
  EXPECT_TRUE(v().validateMetadata(bj::parse(R"([{"type":"ExternalId","id":"abc"}])")).valid);
  EXPECT_TRUE(v().validateMetadata(bj::parse(R"({"type":"ExternalId","id":"abc"})")).valid);
  auto r = v().validateMetadata(
      bj::parse(R"([{"type":"ExternalId","id":")" + std::string(65, 'x') + R"("}])"));
  ASSERT_FALSE(r.valid);
  EXPECT_EQ(r.errors[0].path, "/0/id");
  EXPECT_FALSE(v().validateMetadata(bj::parse(R"([{"type":"ExternalId"}])")).valid);
  EXPECT_FALSE(v().validateMetadata(bj::parse(R"([{"id":"x"}])")).valid);
  EXPECT_FALSE(v().validateMetadata(bj::parse(R"([3])")).valid);
  EXPECT_TRUE(
      v().validateMetadata(bj::parse(R"([{"type":"ActionReason","reason":"escalated_by_bot"}])"))
          .valid);
  EXPECT_FALSE(v().validateMetadata(bj::parse(R"([{"type":"ActionReason"}])")).valid);
  EXPECT_TRUE(v()
                  .validateMetadata(bj::parse(
                      R"([{"type":"BotResponse","externalConversationId":"c","businessCases":["b"],
          "intents":[{"id":"i","name":"n","confidenceScore":0.7}]}])"))
                  .valid);
  r = v().validateMetadata(bj::parse(
      R"([{"type":"BotResponse","intents":[{"id":"i","confidenceScore":1.5},{"name":"x","confidenceScore":0}]}])"));
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[0].path, "/0/intents/0/confidenceScore");
  EXPECT_EQ(r.errors[1].path, "/0/intents/1");
  r = v().validateMetadata(bj::parse(R"([{"type":"BotResponse","externalConversationId":")" +
                                     std::string(65, 'c') + R"("}])"));
  EXPECT_FALSE(r.valid);
  // Unknown metadata types pass through.
  EXPECT_TRUE(v().validateMetadata(bj::parse(R"([{"type":"SomethingNew","x":1}])")).valid);
}

TEST_F(ValidatorTest, EncodedMetadata) {
  EXPECT_TRUE(v().validateEncodedMetadata("eyJhIjoxfQ==").valid);
  EXPECT_TRUE(v().validateEncodedMetadata("ZXhhbXBsZQ").valid);
  EXPECT_FALSE(v().validateEncodedMetadata("not base64!").valid);
  EXPECT_FALSE(v().validateEncodedMetadata("ab=c").valid);
  EXPECT_FALSE(v().validateEncodedMetadata("").valid);
  EXPECT_FALSE(v().validateEncodedMetadata(std::string(6000, 'A')).valid);
  ValidateOptions chat;
  chat.channel = Channel::kChat;
  EXPECT_FALSE(v().validateEncodedMetadata("eyJhIjoxfQ==", chat).valid);
}

TEST_F(ValidatorTest, ConcurrentUseIsSafe) {
  std::string sc = card("https://cdn.example.com/a.png");
  std::vector<std::thread> threads;
  std::atomic<int> valid{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) valid += v().validateText(sc).valid;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(valid.load(), 2000);
}

}  // namespace
}  // namespace parley::connector::richcontent
