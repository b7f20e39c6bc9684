// Agreement with the published verdicts on every fixture of ../shared/corpus/sc (MANIFEST.json),
// and property tests that mutate valid fixtures into invalid ones.

#include "connector/testing/corpus.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "connector/richcontent/embedded_schema.h"
#include "connector/richcontent/schema.h"
#include "connector/richcontent/validator.h"

namespace parley::connector::richcontent {
namespace {

namespace bj = boost::json;
using testing::corpusDir;
using testing::readFile;
using testing::readJson;
using testing::schemaDir;

class CorpusTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // The schema the binary carries, checked against the corpus's copy below.
    auto v = Validator::loadEmbedded();
    ASSERT_TRUE(v) << v.error().message;
    validator_ = new Validator(std::move(*v));
    SchemaReader embedded = [](const std::string& file) -> Result<std::string> {
      const EmbeddedFile* f = findEmbeddedFile(embeddedJsonPollockSchema(), file);
      if (!f) return invalid(file + " is not embedded");
      return std::string(f->text);
    };
    auto plain = CompiledSchema::load(embedded, "rich_content.json", Dispatching::kOff);
    ASSERT_TRUE(plain) << plain.error().message;
    plain_ = plain->get();
    plain_owner_ = new std::shared_ptr<const CompiledSchema>(std::move(*plain));
    manifest_ = new bj::array(readJson(corpusDir() / "sc" / "MANIFEST.json").as_array());
  }
  static void TearDownTestSuite() {
    delete validator_;
    delete plain_owner_;
    delete manifest_;
  }
  static ValidateOptions schemaOnly() {
    ValidateOptions o;
    o.extra_rules = false;
    return o;
  }
  static std::vector<const bj::object*> entries(std::string_view kind) {
    std::vector<const bj::object*> out;
    for (const auto& e : *manifest_)
      if (e.as_object().at("kind").as_string() == kind) out.push_back(&e.as_object());
    return out;
  }
  static std::filesystem::path fixture(const bj::object& e) {
    return corpusDir() / "sc" / std::string(e.at("file").as_string());
  }

  static Validator* validator_;
  static const CompiledSchema* plain_;
  static std::shared_ptr<const CompiledSchema>* plain_owner_;
  static bj::array* manifest_;
};
Validator* CorpusTest::validator_ = nullptr;
const CompiledSchema* CorpusTest::plain_ = nullptr;
std::shared_ptr<const CompiledSchema>* CorpusTest::plain_owner_ = nullptr;
bj::array* CorpusTest::manifest_ = nullptr;

// The schema compiled into the binary (from the json-pollock npm package) is, byte for byte, the
// JSON Pollock 1.7.7 schema whose verdicts the corpus records: the same files, no more, no fewer.
TEST_F(CorpusTest, EmbeddedSchemaIsTheCorpusSchema) {
  EXPECT_EQ(embeddedJsonPollockVersion(), "1.7.7");
  std::set<std::string> corpus_files;
  for (const auto& f : std::filesystem::directory_iterator(schemaDir() / "json-pollock-1.7.7")) {
    std::string name = f.path().filename().string();
    corpus_files.insert(name);
    const EmbeddedFile* e = findEmbeddedFile(embeddedJsonPollockSchema(), name);
    ASSERT_NE(e, nullptr) << name << " is not embedded";
    EXPECT_EQ(e->text, readFile(f.path())) << name;
  }
  ASSERT_GT(corpus_files.size(), 20u);
  std::set<std::string> embedded_files;
  for (const EmbeddedFile& e : embeddedJsonPollockSchema())
    embedded_files.insert(std::string(e.name));
  EXPECT_EQ(embedded_files, corpus_files);
}

TEST_F(CorpusTest, ManifestCoversEveryFixtureFile) {
  std::set<std::string> listed;
  for (const auto& e : *manifest_) listed.insert(std::string(e.as_object().at("file").as_string()));
  std::size_t files = 0;
  for (const auto& d : std::filesystem::recursive_directory_iterator(corpusDir() / "sc")) {
    if (!d.is_regular_file() || d.path().filename() == "MANIFEST.json") continue;
    ++files;
    auto rel = std::filesystem::relative(d.path(), corpusDir() / "sc").string();
    EXPECT_TRUE(listed.contains(rel)) << rel << " is not in MANIFEST.json";
  }
  EXPECT_EQ(files, listed.size());
  EXPECT_GE(files, 170u);
}

TEST_F(CorpusTest, BodiesAgreeWithJsonPollockVerdicts) {
  auto bodies = entries("body");
  ASSERT_EQ(bodies.size(), 125u);
  int valid = 0, invalid = 0;
  for (const bj::object* e : bodies) {
    std::string verdict(e->at("jsonPollock_1_7_7").as_string());
    bj::value doc = readJson(fixture(*e));
    ValidationResult r = validator_->validate(doc, schemaOnly());
    SCOPED_TRACE(std::string(e->at("file").as_string()));
    if (verdict == "valid") {
      ++valid;
      EXPECT_TRUE(r.valid) << (r.errors.empty() ? ""
                                                : r.errors[0].path + ": " + r.errors[0].message);
    } else {
      ++invalid;
      EXPECT_FALSE(r.valid);
      EXPECT_FALSE(r.errors.empty());
    }
  }
  EXPECT_EQ(valid, 107);
  EXPECT_EQ(invalid, 18);
}

TEST_F(CorpusTest, CompactSizeMatchesSerialisation) {
  for (const bj::object* e : entries("body")) {
    bj::value doc = readJson(fixture(*e));
    EXPECT_EQ(compactJsonSize(doc), bj::serialize(doc).size()) << e->at("file").as_string();
  }
}

TEST_F(CorpusTest, DispatchAndPlainValidationAgreeOnBodies) {
  for (const bj::object* e : entries("body")) {
    bj::value doc = readJson(fixture(*e));
    bool dispatched = validator_->pollockSchemaForTest().validate(doc, nullptr);
    bool plain = plain_->validate(doc, nullptr);
    EXPECT_EQ(dispatched, plain) << e->at("file").as_string();
  }
}

// Each invalid fixture's errors point where the manifest's violations do.
TEST_F(CorpusTest, InvalidBodiesReportTheManifestPaths) {
  for (const bj::object* e : entries("body")) {
    if (e->at("jsonPollock_1_7_7").as_string() != "invalid") continue;
    bj::value doc = readJson(fixture(*e));
    if (!doc.is_object()) continue;
    ValidationResult r = validator_->validate(doc, schemaOnly());
    std::set<std::string> manifest_paths;
    for (const auto& v : e->at("violations").as_array()) {
      std::string s(v.as_string());
      manifest_paths.insert(s.substr(0, s.find(':')));
    }
    bool overlap = false;
    for (const auto& err : r.errors)
      for (const auto& mp : manifest_paths)
        if (err.path.starts_with(mp) || mp.starts_with(err.path + "/") || mp == err.path)
          overlap = true;
    std::string ours;
    for (const auto& err : r.errors) ours += err.path + ": " + err.message + "\n";
    EXPECT_TRUE(overlap) << e->at("file").as_string() << "\nours:\n" << ours;
  }
}

TEST_F(CorpusTest, ExtraRulesOnlyAddUrlAndSizeErrorsToValidBodies) {
  int refused = 0;
  for (const bj::object* e : entries("body")) {
    if (e->at("jsonPollock_1_7_7").as_string() != "valid") continue;
    bj::value doc = readJson(fixture(*e));
    ValidationResult r = validator_->validate(doc);
    for (const auto& err : r.errors) {
      EXPECT_TRUE(err.path.ends_with("/url"))
          << e->at("file").as_string() << " " << err.path << ": " << err.message;
    }
    refused += !r.valid;
  }
  // Fixtures with http:// or relative image URLs.
  EXPECT_GT(refused, 0);
}

TEST_F(CorpusTest, MalformedInputIsAParseError) {
  auto list = entries("malformed");
  ASSERT_FALSE(list.empty());
  for (const bj::object* e : list) {
    ValidationResult r = validator_->validateText(readFile(fixture(*e)));
    EXPECT_TRUE(r.parse_error) << e->at("file").as_string();
    EXPECT_FALSE(r.valid);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].path, "");
  }
}

TEST_F(CorpusTest, QuickRepliesAgreeWithWebValidatorVerdicts) {
  auto list = entries("quickReplies");
  ASSERT_EQ(list.size(), 28u);
  for (const bj::object* e : list) {
    bool expected = e->at("richContentValidator_web").as_string() == "valid";
    bj::value doc = readJson(fixture(*e));
    ValidationResult r = validator_->validateQuickReplies(doc, schemaOnly());
    EXPECT_EQ(r.valid, expected) << e->at("file").as_string() << " "
                                 << (r.errors.empty() ? "" : r.errors[0].message);
  }
}

// With the Third-Party Bots rules on, a fixture stays valid exactly when every chip title is at
// most 25 code points, itemsPerRow is 1..8 and every chip has click.actions.
TEST_F(CorpusTest, QuickRepliesUnderConnectorRules) {
  int stricter = 0;
  for (const bj::object* e : entries("quickReplies")) {
    if (e->at("richContentValidator_web").as_string() != "valid") continue;
    bj::value doc = readJson(fixture(*e));
    bool expected = true;
    const bj::object& o = doc.as_object();
    double ipr = o.at("itemsPerRow").to_number<double>();
    if (ipr < 1 || ipr > 8 || ipr != static_cast<int>(ipr)) expected = false;
    for (const auto& chip : o.at("replies").as_array()) {
      const bj::object& c = chip.as_object();
      if (codePointCount(c.at("title").as_string()) > 25) expected = false;
      if (!c.contains("click") || !c.at("click").as_object().contains("actions")) expected = false;
    }
    ValidationResult r = validator_->validateQuickReplies(doc);
    EXPECT_EQ(r.valid, expected) << e->at("file").as_string();
    stricter += !expected;
    ValidateOptions chat;
    chat.channel = Channel::kChat;
    EXPECT_FALSE(validator_->validateQuickReplies(doc, chat).valid);
  }
  EXPECT_GT(stricter, 0);
}

TEST_F(CorpusTest, MetadataFixturesAreValid) {
  auto list = entries("metadata");
  ASSERT_EQ(list.size(), 25u);
  for (const bj::object* e : list) {
    ValidationResult r = validator_->validateMetadata(readJson(fixture(*e)));
    EXPECT_TRUE(r.valid) << e->at("file").as_string() << " "
                         << (r.errors.empty() ? "" : r.errors[0].path + r.errors[0].message);
  }
}

// ---------------------------------------------------------------------------------------------
// Property tests: mutations of valid fixtures.

// Element schemas by their `type` value, read from the schema files (independently of the
// compiler): every object schema whose properties.type has a one-value enum.
std::map<std::string, bj::object> elementSchemas() {
  std::map<std::string, bj::object> out;
  std::function<void(const bj::value&)> scan = [&](const bj::value& v) {
    if (v.is_object()) {
      const bj::object& o = v.as_object();
      if (auto p = o.find("properties"); p != o.end() && p->value().is_object()) {
        const bj::object& props = p->value().as_object();
        if (auto t = props.find("type"); t != props.end() && t->value().is_object()) {
          const bj::object& tt = t->value().as_object();
          if (auto en = tt.find("enum"); en != tt.end() && en->value().as_array().size() == 1 &&
                                         en->value().as_array()[0].is_string())
            out.emplace(std::string(en->value().as_array()[0].as_string()), o);
        }
      }
      for (const auto& kv : o) scan(kv.value());
    } else if (v.is_array()) {
      for (const auto& x : v.as_array()) scan(x);
    }
  };
  for (const auto& f : std::filesystem::directory_iterator(schemaDir() / "json-pollock-1.7.7"))
    scan(readJson(f.path()));
  return out;
}

struct Mutation {
  std::string what;
  bj::value doc;
};

// Visits every typed element object (outside free-form metadata) with a mutable reference.
void forEachElement(bj::value& v, const std::function<void(bj::object&, const std::string&)>& fn,
                    const std::string& path = "") {
  if (v.is_object()) {
    bj::object& o = v.as_object();
    if (auto t = o.find("type"); t != o.end() && t->value().is_string()) fn(o, path);
    for (auto& kv : o) {
      // Free-form or non-element objects that also carry a "type".
      if (kv.key() == "metadata" || kv.key() == "data" || kv.key() == "ref" ||
          kv.key() == "selectMode")
        continue;
      forEachElement(kv.value(), fn, path + "/" + std::string(kv.key()));
    }
  } else if (v.is_array()) {
    std::size_t i = 0;
    for (auto& x : v.as_array()) forEachElement(x, fn, path + "/" + std::to_string(i++));
  }
}

std::string repeat(std::string_view unit, std::int64_t n) {
  std::string s;
  for (std::int64_t i = 0; i < n; ++i) s += unit;
  return s;
}

// Makes every single-point mutation of `doc` of the four kinds, plus "at the limit" variants
// that must stay valid.
void mutations(const bj::value& doc, const std::map<std::string, bj::object>& schemas,
               std::vector<Mutation>& must_fail, std::vector<Mutation>& must_pass) {
  // Count the elements first, then mutate the k-th one in a fresh copy.
  std::vector<std::pair<std::string, std::string>> elements;  // (path, type)
  bj::value probe = doc;
  forEachElement(probe, [&](bj::object& o, const std::string& path) {
    elements.emplace_back(path, std::string(o.at("type").as_string()));
  });
  for (std::size_t k = 0; k < elements.size(); ++k) {
    auto it = schemas.find(elements[k].second);
    if (it == schemas.end()) continue;
    const bj::object& schema = it->second;
    auto mutate = [&](const std::string& what, const std::function<void(bj::object&)>& change,
                      std::vector<Mutation>& into) {
      bj::value copy = doc;
      std::size_t seen = 0;
      forEachElement(copy, [&](bj::object& o, const std::string&) {
        if (seen++ == k) change(o);
      });
      into.push_back(Mutation{elements[k].first + ": " + what, std::move(copy)});
    };
    bj::value probe_el = doc;
    bj::object current;
    std::size_t seen = 0;
    forEachElement(probe_el, [&](bj::object& o, const std::string&) {
      if (seen++ == k) current = o;
    });
    if (auto req = schema.find("required"); req != schema.end()) {
      for (const auto& r : req->value().as_array()) {
        std::string key(r.as_string());
        if (!current.contains(key)) continue;
        mutate(
            "drop required " + key, [key](bj::object& o) { o.erase(key); }, must_fail);
      }
    }
    if (schema.contains("additionalProperties") &&
        schema.at("additionalProperties") == bj::value(false)) {
      mutate(
          "extra property", [](bj::object& o) { o["zzNotInTheSchema"] = 1; }, must_fail);
    }
    const bj::object& props = schema.at("properties").as_object();
    for (const auto& p : props) {
      std::string key(p.key());
      if (!current.contains(key) || !p.value().is_object()) continue;
      const bj::object& ps = p.value().as_object();
      if (auto ml = ps.find("maxLength");
          ml != ps.end() && current.at(key).is_string() && !ps.contains("format")) {
        std::int64_t max = ml->value().to_number<std::int64_t>();
        // One code point over the limit, with two-byte characters.
        mutate(
            "maxLength+1 " + key,
            [key, max](bj::object& o) { o[key] = repeat("\xC3\xA9", max + 1); }, must_fail);
        // Exactly at the limit, with four-byte characters: still valid.
        mutate(
            "maxLength " + key,
            [key, max](bj::object& o) { o[key] = repeat("\xF0\x9F\x98\x80", max); }, must_pass);
      }
      if (auto en = ps.find("enum"); en != ps.end() && key != "type") {
        mutate(
            "wrong enum " + key, [key](bj::object& o) { o[key] = "notAnAllowedValue"; }, must_fail);
      }
    }
  }
}

TEST_F(CorpusTest, MutationsOfValidFixtures) {
  auto schemas = elementSchemas();
  ASSERT_GT(schemas.size(), 25u);
  std::size_t failed_total = 0, passed_total = 0;
  for (const bj::object* e : entries("body")) {
    if (e->at("jsonPollock_1_7_7").as_string() != "valid") continue;
    bj::value doc = readJson(fixture(*e));
    std::vector<Mutation> must_fail, must_pass;
    mutations(doc, schemas, must_fail, must_pass);
    for (const auto& m : must_fail) {
      ValidationResult r = validator_->validate(m.doc, schemaOnly());
      EXPECT_FALSE(r.valid) << e->at("file").as_string() << " " << m.what;
      EXPECT_FALSE(r.errors.empty());
      EXPECT_FALSE(plain_->validate(m.doc, nullptr)) << m.what;
    }
    for (const auto& m : must_pass) {
      ValidationResult r = validator_->validate(m.doc, schemaOnly());
      EXPECT_TRUE(r.valid) << e->at("file").as_string() << " " << m.what << " "
                           << (r.errors.empty() ? ""
                                                : r.errors[0].path + ": " + r.errors[0].message);
      EXPECT_EQ(plain_->validate(m.doc, nullptr), r.valid) << m.what;
    }
    failed_total += must_fail.size();
    passed_total += must_pass.size();
  }
  EXPECT_GT(failed_total, 1000u);
  EXPECT_GT(passed_total, 200u);
}

}  // namespace
}  // namespace parley::connector::richcontent
