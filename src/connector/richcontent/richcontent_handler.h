#pragma once

// REST handler for the `richcontent` resource:
//   POST richcontent/validate {structuredContent, channel?:"MESSAGING"|"CHAT", metadata?,
//                              imageAllowlist?:[...]}
//     -> 200 {valid, errors:[{path, message}]}
// `structuredContent` is a JSON Pollock body, or the bot-response form
// {message:"text", quickReplies:{...}} (text with quick replies). Paths are JSON pointers
// relative to the request body ("/structuredContent/elements/0/title").
//
// Thread-safety: handle() is thread-safe and completes inline (validation takes microseconds);
// the allowlist provider must not block.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/api.h"
#include "common/ids.h"
#include "common/result.h"
#include "connector/richcontent/validator.h"

namespace parley::connector::richcontent {

// The account's image allowlist, or nullopt when the account has none configured (then only
// HTTPS is required). Must be fast and non-blocking (a cached value).
using AllowlistProvider =
    std::function<std::optional<std::vector<std::string>>(const AccountId& account)>;

class RichContentHandler final : public api::Handler {
 public:
  // `validator` is shared with the connector; `allowlist` may be empty (no allowlist).
  explicit RichContentHandler(Validator validator, AllowlistProvider allowlist = {});

  // api::Handler
  std::vector<std::string> resources() const override { return {"richcontent"}; }
  void handle(api::Request request, std::function<void(api::Response)> done) override;

 private:
  api::Response validate(const api::Request& request) const;

  Validator validator_;
  AllowlistProvider allowlist_;
};

// Validates a bot-response `structuredContent` value: either a JSON Pollock body or
// {message, quickReplies} (text with quick replies, messaging only).
ValidationResult validateBotStructuredContent(const Validator& validator,
                                              const boost::json::value& sc,
                                              const ValidateOptions& opts);

// Checks the structured parts of a conversation event before it is stored, with the rules of
// bot structured content: a RichContentEvent's `content` (a JSON Pollock body) and the
// `quickReplies` of a ContentEvent or RichContentEvent, in a conversation of `channel`, with
// `account`'s image allowlist (`allowlist` is asked only for such events; it may be empty: no
// allowlist). Error paths start at "/event". Other event types and plain text pass without any
// work. The error is Invalid and lists up to 5 problems.
Status checkPublishedEvent(const Validator& validator, const AccountId& account,
                           const boost::json::object& event, Channel channel,
                           const AllowlistProvider& allowlist);

// {"valid":..,"errors":[{"path":..,"message":..}]}
boost::json::object validationResultJson(const ValidationResult& r);

}  // namespace parley::connector::richcontent
