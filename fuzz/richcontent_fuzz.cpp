// The structured-content validator: an input is JSON text, validated as a structured-content
// body (messaging, with and without the extra rules, and chat with an image allowlist), as a
// bot-response structuredContent (text + quick replies), as quick replies, as metadata and as
// encodedMetadata. Checks: nothing crashes, a valid verdict has no errors and an invalid one at
// least one, and compactJsonSize equals the length of the serialised value.

#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "connector/richcontent/richcontent_handler.h"
#include "fuzz/fuzz_support.h"

namespace rc = parley::connector::richcontent;
namespace bj = boost::json;

namespace {

void checkVerdict(const rc::ValidationResult& r) {
  PARLEY_FUZZ_CHECK(r.valid == r.errors.empty(), "a verdict agrees with its error list");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const rc::Validator& v = parley::fuzz::validator();
  std::string_view text(reinterpret_cast<const char*>(data), size);

  rc::ValidateOptions messaging;
  auto r = v.validateText(text, messaging);
  checkVerdict(r);
  if (r.parse_error) {
    // Not JSON: still a string for the encodedMetadata and URL checks.
    checkVerdict(v.validateEncodedMetadata(text, messaging));
    std::string why;
    (void)rc::imageUrlAllowed(text, std::vector<std::string>{"images.example.com"}, &why);
    return 0;
  }
  bj::value doc = bj::parse(text);
  PARLEY_FUZZ_CHECK(rc::compactJsonSize(doc) == bj::serialize(doc).size(),
                    "compactJsonSize is the serialised length");

  rc::ValidateOptions schema_only;
  schema_only.extra_rules = false;
  checkVerdict(v.validate(doc, schema_only));

  rc::ValidateOptions chat;
  chat.channel = rc::Channel::kChat;
  chat.image_allowlist =
      std::vector<std::string>{"images.example.com", "https://cdn.example.com/brand/", "*.bad"};
  chat.max_errors = 3;
  chat.path_prefix = "/messages/0/structuredContent";
  checkVerdict(v.validate(doc, chat));

  checkVerdict(rc::validateBotStructuredContent(v, doc, messaging));
  checkVerdict(v.validateQuickReplies(doc, messaging));
  checkVerdict(v.validateMetadata(doc, messaging));
  checkVerdict(v.validateMetadata(doc, chat));
  if (doc.is_string()) {
    checkVerdict(v.validateEncodedMetadata(doc.as_string(), messaging));
    std::string why;
    (void)rc::imageUrlAllowed(doc.as_string(), chat.image_allowlist, &why);
  }
  return 0;
}
