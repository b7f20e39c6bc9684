#pragma once

// Structured-content (JSON Pollock) validation for bot responses and the REST API.
//
// Validator compiles the JSON Pollock 1.7.7 schema (compiled into the binary from the
// json-pollock npm package) and a quick-replies schema once, then validates messages with a
// type-dispatching validator (see schema.h), and adds the rules that the schema does not express:
//   - image and link-preview URLs must be HTTPS and on the account's image allowlist (exact
//     hosts or https:// URL prefixes; no wildcards);
//   - link actions: `uri` and `web.uri` must be http(s)://, mailto: or tel: URLs; `ios.uri` and
//     `android.uri` (app deep links) may use any scheme except javascript:, vbscript:, data:,
//     file: and blob:;
//   - style colours (`color`, `background-color`, `border-color`, `fill`, ... and their
//     -hover/-active/-selected forms) must be CSS colours: #rgb[a], #rrggbb[aa], a keyword, or
//     rgb()/rgba()/hsl()/hsla() of numbers (never CSS text such as url(...) or ';');
//   - a whole structured-content message is at most 15,000 bytes (compact JSON);
//   - quick replies only in messaging; 1-24 replies; itemsPerRow 1-8; chip titles at most 25
//     characters; each chip is a button with click.actions;
//   - metadata: ExternalId.id <= 64, BotResponse limits, ActionReason, encodedMetadata (base64,
//     at most 5 KB, messaging only).
// Lengths are counted in Unicode code points.
//
// Thread-safety: a loaded Validator is immutable; copies share the compiled schema; validate*()
// may run concurrently on any thread.

#include <boost/json.hpp>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "connector/richcontent/schema.h"

namespace parley::connector::richcontent {

enum class Channel { kMessaging, kChat };

struct ValidateOptions {
  // The conversation's channel. Default: messaging. Quick replies and encodedMetadata are
  // refused in chat.
  Channel channel = Channel::kMessaging;
  // The account's image allowlist: hosts ("images.example.com") or URL prefixes
  // ("https://cdn.example.com/brand/"). Default: nullopt, no allowlist check (HTTPS is still
  // required). An empty list allows no image at all. Entries with '*' never match.
  std::optional<std::vector<std::string>> image_allowlist;
  // False: the schema alone (what json-pollock itself enforces), for comparing with it.
  // Default: true.
  bool extra_rules = true;
  // Default: 15,000 bytes of compact JSON.
  std::size_t max_bytes = 15'000;
  // Default: 50. Validation stops collecting after this many errors.
  std::size_t max_errors = 50;
  // Prepended to every error path, e.g. "/messages/2/structuredContent". Default: "".
  std::string path_prefix;
};

struct ValidationResult {
  bool valid = true;
  // The input was not JSON (validateText only).
  bool parse_error = false;
  std::vector<ValidationError> errors;

  void fail(std::string path, std::string message) {
    valid = false;
    errors.push_back(ValidationError{std::move(path), std::move(message)});
  }
};

// Default limits from the Third-Party Bots documentation.
inline constexpr std::size_t kMaxQuickReplies = 24;
inline constexpr std::int64_t kMaxItemsPerRow = 8;
inline constexpr std::size_t kMaxChipTitle = 25;
inline constexpr std::size_t kMaxEncodedMetadataBytes = 5 * 1024;

class Validator {
 public:
  // Compiles the schemas built into the binary: JSON Pollock's (the json-pollock npm package's
  // js/schema, embedded at build time; see embeddedJsonPollockVersion()) and the quick-replies
  // schema (kQuickRepliesSchema: its chips are JSON Pollock buttons).
  static Result<Validator> loadEmbedded();
  // Compiles JSON Pollock's schema from the files in `pollock_dir` instead (rich_content.json and
  // the files it refers to; a folder holding json-pollock-1.7.7/ is also accepted), with the
  // built-in quick-replies schema on top of them. Invalid when a file is missing or uses an
  // unsupported keyword.
  static Result<Validator> load(const std::filesystem::path& pollock_dir);

  // Validates a structured-content body (the value of `structuredContent`).
  ValidationResult validate(const boost::json::value& sc, const ValidateOptions& opts = {}) const;
  // Parses `json` first; a parse error gives parse_error=true and one error at path "".
  ValidationResult validateText(std::string_view json, const ValidateOptions& opts = {}) const;
  // Validates a quickReplies object ({type:"quickReplies", itemsPerRow, replies:[...]}).
  ValidationResult validateQuickReplies(const boost::json::value& qr,
                                        const ValidateOptions& opts = {}) const;
  // Validates message metadata: one object or an array of objects, each with a string "type".
  ValidationResult validateMetadata(const boost::json::value& md,
                                    const ValidateOptions& opts = {}) const;
  // Validates an encodedMetadata value (base64, at most 5 KB decoded length, messaging only).
  ValidationResult validateEncodedMetadata(std::string_view b64,
                                           const ValidateOptions& opts = {}) const;

  // Notes from schema compilation (ignored formats and keywords).
  std::vector<std::string> warnings() const;
  const CompiledSchema& pollockSchemaForTest() const { return *pollock_; }

 private:
  // JSON Pollock's schema from `pollock`, and the quick-replies schema with its buttons.
  static Result<Validator> compile(const SchemaReader& pollock);
  Validator(std::shared_ptr<const CompiledSchema> pollock,
            std::shared_ptr<const CompiledSchema> quick_replies)
      : pollock_(std::move(pollock)), quick_replies_(std::move(quick_replies)) {}

  // Image URLs, link URIs and style colours (the rules the schema does not express).
  void checkValues(const boost::json::value& v, const ValidateOptions& opts,
                   detail::ErrorSink& sink) const;

  std::shared_ptr<const CompiledSchema> pollock_;
  std::shared_ptr<const CompiledSchema> quick_replies_;
};

// True when `url` is https and (if an allowlist is given) on it. Sets `why` when not.
bool imageUrlAllowed(std::string_view url, const std::optional<std::vector<std::string>>& allowlist,
                     std::string* why);

// The quick-replies object of a messaging message: {type: "quickReplies", itemsPerRow, replies},
// 1-24 replies, each a JSON Pollock button (button.json). The connector's stricter rules
// (itemsPerRow 1-8, chip titles, click actions) are checked in code.
extern const std::string_view kQuickRepliesSchema;

// The version of the json-pollock package whose schema is compiled in ("1.7.7").
std::string_view embeddedJsonPollockVersion();

// True when `uri` may be the target of a link action: http(s)://, mailto: or tel:, or (for
// LinkTarget::kApp, the ios/android deep links) any scheme but javascript:, vbscript:, data:,
// file: and blob:. Sets `why` when not.
enum class LinkTarget { kWeb, kApp };
bool linkUriAllowed(std::string_view uri, LinkTarget target, std::string* why);

// True when `v` is a CSS colour value json-pollock may put into a style: #rgb, #rgba, #rrggbb,
// #rrggbbaa, a keyword of letters ("red", "transparent"), or rgb()/rgba()/hsl()/hsla() whose
// arguments are numbers, %, deg, spaces, commas and '/'.
bool cssColourAllowed(std::string_view v);

// Size of `v` serialised as compact JSON, without allocating the text.
std::size_t compactJsonSize(const boost::json::value& v);

}  // namespace parley::connector::richcontent
