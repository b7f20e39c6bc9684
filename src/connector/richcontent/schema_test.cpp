// The schema compiler on small schemas written to a temporary directory.

#include "connector/richcontent/schema.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/testing/temp_dir.h"

namespace parley::connector::richcontent {
namespace {

namespace bj = boost::json;

class SchemaTest : public ::testing::Test {
 protected:
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::shared_ptr<const CompiledSchema> load(const std::string& root,
                                             Dispatching d = Dispatching::kOn) {
    auto s = CompiledSchema::load(dir_, root, d);
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    return s ? *s : nullptr;
  }
  static std::vector<ValidationError> errors(const CompiledSchema& s, const std::string& json) {
    detail::ErrorSink sink(50);
    s.validate(bj::parse(json), &sink);
    return sink.errors();
  }
  static bool ok(const CompiledSchema& s, const std::string& json) {
    bool fast = s.validate(bj::parse(json), nullptr);
    detail::ErrorSink sink(50);
    bool slow = s.validate(bj::parse(json), &sink);
    EXPECT_EQ(fast, slow) << json;
    EXPECT_EQ(slow, sink.errors().empty()) << json;
    return fast;
  }

  parley::testing::TempDir tmp_;
  const std::filesystem::path dir_{tmp_.path()};
};

TEST(CodePoints, CountsUtf8CodePoints) {
  EXPECT_EQ(codePointCount(""), 0u);
  EXPECT_EQ(codePointCount("abc"), 3u);
  EXPECT_EQ(codePointCount("\xC3\xA9t\xC3\xA9"), 3u);  // été
  EXPECT_EQ(codePointCount("\xF0\x9F\x98\x80!"), 2u);  // 😀!
  EXPECT_EQ(codePointCount("\xE2\x82\xAC"), 1u);       // €
}

TEST(UriFormat, MatchesAjvFullUri) {
  EXPECT_TRUE(isAbsoluteUri("https://www.example.com"));
  EXPECT_TRUE(isAbsoluteUri("https://www.example.com/a/b?x=1&y=%20#frag"));
  EXPECT_TRUE(isAbsoluteUri("tel:+15551234567"));
  EXPECT_TRUE(isAbsoluteUri("mailto:someone@example.com"));
  EXPECT_TRUE(isAbsoluteUri("http://[::1]:8080/x"));
  EXPECT_TRUE(isAbsoluteUri("urn:isbn:0451450523"));
  EXPECT_FALSE(isAbsoluteUri("www.example.com"));
  EXPECT_FALSE(isAbsoluteUri("/relative/path"));
  EXPECT_FALSE(isAbsoluteUri("https://exa mple.com"));
  EXPECT_FALSE(isAbsoluteUri("https://example.com/%zz"));
  EXPECT_FALSE(isAbsoluteUri("1http://example.com"));
  EXPECT_FALSE(isAbsoluteUri("https:"));
  EXPECT_FALSE(isAbsoluteUri("https://example.com/\xC3\xA9"));
  EXPECT_FALSE(isAbsoluteUri(""));
}

TEST_F(SchemaTest, TypesRequiredAndAdditionalProperties) {
  write("a.json", R"({"type":"object","additionalProperties":false,"title":"thing",
    "properties":{"n":{"type":"integer","minimum":1,"maximum":3},"s":{"type":"string","maxLength":2},
                  "x":{"type":["string","null"]}},
    "required":["n"]})");
  auto s = load("a.json");
  ASSERT_TRUE(s);
  EXPECT_TRUE(ok(*s, R"({"n":2})"));
  EXPECT_TRUE(ok(*s, R"({"n":2.0,"s":"\u00e9\u00e9","x":null})"));
  EXPECT_FALSE(ok(*s, R"({"n":2.5})"));
  EXPECT_FALSE(ok(*s, R"({"n":4})"));
  EXPECT_FALSE(ok(*s, R"({"s":"ab"})"));
  EXPECT_FALSE(ok(*s, R"({"n":1,"s":"abc"})"));
  EXPECT_FALSE(ok(*s, R"({"n":1,"x":1})"));
  EXPECT_FALSE(ok(*s, R"([])"));
  auto e = errors(*s, R"({"s":"abc","zz":true})");
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].path, "");
  EXPECT_EQ(e[0].message, "missing required property \"n\" (in thing)");
  EXPECT_EQ(e[1].path, "/s");
  EXPECT_EQ(e[1].message, "is too long: 3 characters, at most 2 allowed");
  EXPECT_EQ(e[2].path, "/zz");
  EXPECT_NE(e[2].message.find("property \"zz\" is not allowed"), std::string::npos);
}

TEST_F(SchemaTest, TupleItemsAndRefsWithPointers) {
  write("defs.json", R"({"definitions":{"t":{"type":"string","enum":["a","b"]}}})");
  write("root.json", R"({"type":"array","minItems":1,"maxItems":3,
    "items":[{"$ref":"defs.json#/definitions/t"},{"type":"number"}]})");
  auto s = load("root.json");
  ASSERT_TRUE(s);
  EXPECT_TRUE(ok(*s, R"(["a"])"));
  EXPECT_TRUE(ok(*s, R"(["b",1,"anything"])"));
  EXPECT_FALSE(ok(*s, R"([])"));
  EXPECT_FALSE(ok(*s, R"(["c"])"));
  EXPECT_FALSE(ok(*s, R"(["a","1"])"));
  EXPECT_FALSE(ok(*s, R"(["a",1,2,3])"));
  auto e = errors(*s, R"(["a","x"])");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].path, "/1");
  EXPECT_EQ(e[0].message, "must be a number, got a string \"x\"");
}

TEST_F(SchemaTest, RecursiveRefs) {
  write("tree.json", R"({"type":"object","additionalProperties":false,
    "properties":{"type":{"enum":["node"]},"kids":{"type":"array","items":{"$ref":"tree.json"}}},
    "required":["type"]})");
  auto s = load("tree.json");
  ASSERT_TRUE(s);
  EXPECT_TRUE(ok(*s, R"({"type":"node","kids":[{"type":"node","kids":[{"type":"node"}]}]})"));
  auto e = errors(*s, R"({"type":"node","kids":[{"type":"node","kids":[{"type":"leaf"}]}]})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].path, "/kids/0/kids/0/type");
}

// A oneOf like JSON Pollock's: branches discriminated by "type", two of which do not require it.
const char* kElements = R"({"oneOf":[
  {"title":"text","type":"object","additionalProperties":false,
   "properties":{"type":{"type":"string","enum":["text"]},"text":{"type":"string","maxLength":5}},
   "required":["text"]},
  {"title":"button","type":"object","additionalProperties":false,
   "properties":{"type":{"type":"string","enum":["button"]},"title":{"type":"string"}},
   "required":["title"]},
  {"title":"box","type":"object","additionalProperties":false,
   "properties":{"type":{"type":"string","enum":["box"]},"elements":{"type":"array","items":{"$ref":"el.json"}}},
   "required":["type","elements"]},
  {"title":"either","type":"object","additionalProperties":false,
   "properties":{"type":{"type":"string","enum":["text","button"]},"text":{"type":"string"},"title":{"type":"string"},"both":{"type":"boolean"}},
   "required":["type","both"]}
]})";

TEST_F(SchemaTest, OneOfDispatchMatchesPlainOneOf) {
  write("el.json", kElements);
  auto fast = load("el.json");
  auto plain = load("el.json", Dispatching::kOff);
  ASSERT_TRUE(fast && plain);
  EXPECT_GE(fast->dispatchCountForTest(), 1u);
  EXPECT_EQ(plain->dispatchCountForTest(), 0u);
  const char* docs[] = {
      R"({"type":"text","text":"hi"})",
      R"({"text":"hi"})",
      R"({"title":"go"})",
      R"({"text":"hi","title":"go"})",
      R"({"type":"text","text":"toolong"})",
      R"({"type":"box","elements":[{"type":"text","text":"a"},{"title":"b"}]})",
      R"({"type":"box","elements":[{"type":"nope"}]})",
      R"({"type":"box"})",
      R"({"type":7,"text":"x"})",
      R"({"type":"text","text":"a","both":true})",
      R"({"type":"button","title":"a","both":true})",
      R"({"type":"button","both":false})",
      R"({})",
      R"([])",
      R"("text")",
  };
  for (const char* d : docs) EXPECT_EQ(ok(*fast, d), ok(*plain, d)) << d;
  EXPECT_TRUE(ok(*fast, R"({"type":"box","elements":[{"type":"text","text":"a"},{"title":"b"}]})"));
  EXPECT_TRUE(ok(*fast, R"({"type":"text","text":"a","both":true})"));
}

TEST_F(SchemaTest, OneOfMatchingTwoBranchesIsAmbiguous) {
  write("amb.json", R"({"oneOf":[
    {"title":"text","type":"object","properties":{"type":{"enum":["text"]},"text":{"type":"string"}}},
    {"title":"loose","type":"object","properties":{"type":{"enum":["text","other"]}}}]})");
  auto fast = load("amb.json");
  auto plain = load("amb.json", Dispatching::kOff);
  ASSERT_TRUE(fast && plain);
  EXPECT_FALSE(ok(*fast, R"({"type":"text","text":"a"})"));
  EXPECT_FALSE(ok(*plain, R"({"type":"text","text":"a"})"));
  EXPECT_TRUE(ok(*fast, R"({"type":"other"})"));
  EXPECT_TRUE(ok(*plain, R"({"type":"other"})"));
  auto e = errors(*fast, R"({"type":"text","text":"a"})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NE(e[0].message.find("ambiguous: it matches both text and loose"), std::string::npos);
}

TEST_F(SchemaTest, OneOfMessagesForBotDevelopers) {
  write("el.json", kElements);
  auto s = load("el.json");
  ASSERT_TRUE(s);
  auto e = errors(*s, R"({"type":"box","elements":[{"type":"nope"}]})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].path, "/elements/0/type");
  EXPECT_EQ(e[0].message, "unknown type \"nope\" here; expected one of: box, button, text");
  // One candidate: its own errors, precisely.
  e = errors(*s, R"({"type":"box","elements":[{"type":"text","text":"toolong"}]})");
  ASSERT_GE(e.size(), 1u);
  EXPECT_EQ(e.back().path, "/elements/0/text");
  EXPECT_EQ(e.back().message, "is too long: 7 characters, at most 5 allowed");
}

TEST_F(SchemaTest, UnsupportedKeywordFailsTheLoad) {
  write("p.json", R"({"type":"string","pattern":"^a"})");
  auto s = CompiledSchema::load(dir_, "p.json");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("pattern"), std::string::npos);
}

TEST_F(SchemaTest, MissingFileAndBadRefFailTheLoad) {
  write("r.json", R"({"$ref":"missing.json"})");
  EXPECT_FALSE(CompiledSchema::load(dir_, "r.json"));
  write("r2.json", R"({"$ref":"r.json#/definitions/nothing"})");
  EXPECT_FALSE(CompiledSchema::load(dir_, "r2.json"));
  EXPECT_FALSE(CompiledSchema::load(dir_, "absent.json"));
}

TEST_F(SchemaTest, UnknownKeywordsAndFormatsAreIgnoredWithAWarning) {
  write("w.json", R"({"type":"object","properties":{"c":{"type":"string","format":"color"},
    "n":{"type":"number","min":1,"max":8}}})");
  auto s = load("w.json");
  ASSERT_TRUE(s);
  EXPECT_TRUE(ok(*s, R"({"c":"not a color","n":99})"));
  EXPECT_EQ(s->warnings().size(), 3u);
}

}  // namespace
}  // namespace parley::connector::richcontent
