#include "connector/richcontent/richcontent_handler.h"

#include <fmt/format.h>

#include "common/json.h"

namespace parley::connector::richcontent {

namespace bj = boost::json;

namespace {

api::Response errorResponse(ErrorCode code, std::string message) {
  bj::object err{{"code", errorCodeName(code)}, {"message", std::move(message)}};
  return api::Response{httpStatus(code), bj::serialize(bj::object{{"error", std::move(err)}})};
}

}  // namespace

bj::object validationResultJson(const ValidationResult& r) {
  bj::array errors;
  for (const auto& e : r.errors)
    errors.push_back(bj::object{{"path", e.path}, {"message", e.message}});
  return bj::object{{"valid", r.valid}, {"errors", std::move(errors)}};
}

ValidationResult validateBotStructuredContent(const Validator& validator, const bj::value& sc,
                                              const ValidateOptions& opts) {
  if (sc.is_object() && sc.get_object().contains("quickReplies") &&
      !sc.get_object().contains("type")) {
    ValidationResult r;
    const bj::object& o = sc.get_object();
    auto msg = o.find("message");
    if (msg == o.end() || !msg->value().is_string() || msg->value().get_string().empty())
      r.fail(opts.path_prefix,
             "text with quick replies needs a non-empty \"message\" string next to "
             "\"quickReplies\"");
    for (const auto& kv : o)
      if (kv.key() != "message" && kv.key() != "quickReplies")
        r.fail(opts.path_prefix + "/" + std::string(kv.key()),
               fmt::format("property \"{}\" is not allowed next to quickReplies; allowed: "
                           "message, quickReplies",
                           std::string_view(kv.key())));
    ValidateOptions q = opts;
    q.path_prefix = opts.path_prefix + "/quickReplies";
    ValidationResult qr = validator.validateQuickReplies(o.at("quickReplies"), q);
    if (!qr.valid) {
      r.valid = false;
      for (auto& e : qr.errors) r.errors.push_back(std::move(e));
    }
    return r;
  }
  return validator.validate(sc, opts);
}

Status checkPublishedEvent(const Validator& validator, const AccountId& account,
                           const bj::object& event, Channel channel,
                           const AllowlistProvider& allowlist) {
  auto t = event.find("type");
  std::string_view type =
      t != event.end() && t->value().is_string() ? std::string_view(t->value().get_string()) : "";
  if (type != "RichContentEvent" && type != "ContentEvent") return {};
  auto content = event.find("content");
  auto quick = event.find("quickReplies");
  const bool has_quick = quick != event.end() && !quick->value().is_null();
  if (type == "ContentEvent" && !has_quick) return {};
  ValidateOptions opts;
  opts.channel = channel;
  if (allowlist) opts.image_allowlist = allowlist(account);
  ValidationResult r;
  if (type == "RichContentEvent") {
    if (content == event.end()) {
      r.fail("/event/content", "a RichContentEvent needs \"content\": a JSON Pollock object");
    } else {
      opts.path_prefix = "/event/content";
      r = validator.validate(content->value(), opts);
    }
  }
  if (has_quick) {
    opts.path_prefix = "/event/quickReplies";
    ValidationResult q = validator.validateQuickReplies(quick->value(), opts);
    if (!q.valid) {
      r.valid = false;
      for (auto& e : q.errors) r.errors.push_back(std::move(e));
    }
  }
  if (r.valid) return {};
  std::string out = fmt::format("the {} is refused: ", type);
  for (std::size_t i = 0; i < r.errors.size() && i < 5; ++i) {
    if (i) out += "; ";
    out += r.errors[i].path + ": " + r.errors[i].message;
  }
  if (r.errors.size() > 5) out += fmt::format("; and {} more", r.errors.size() - 5);
  out +=
      ". Fix the structured content (JSON Pollock; POST richcontent/validate shows every "
      "problem) and publish it again";
  return std::unexpected(Error{ErrorCode::kInvalid, std::move(out)});
}

RichContentHandler::RichContentHandler(Validator validator, AllowlistProvider allowlist)
    : validator_(std::move(validator)), allowlist_(std::move(allowlist)) {}

void RichContentHandler::handle(api::Request request, std::function<void(api::Response)> done) {
  api::Response resp;
  try {
    resp = validate(request);
  } catch (const std::exception& e) {
    resp = errorResponse(ErrorCode::kInternal, fmt::format("validation failed: {}", e.what()));
  }
  done(std::move(resp));
}

api::Response RichContentHandler::validate(const api::Request& request) const {
  if (request.path.size() != 2 || request.path[0] != "richcontent" || request.path[1] != "validate")
    return errorResponse(ErrorCode::kNotFound,
                         "unknown richcontent call; use POST richcontent/validate");
  if (request.method != "POST")
    return errorResponse(ErrorCode::kInvalid, "use POST richcontent/validate");
  auto body = json::parseObject(request.body);
  if (!body) return errorResponse(body.error().code, body.error().message);
  auto sc = body->find("structuredContent");
  if (sc == body->end())
    return errorResponse(ErrorCode::kInvalid,
                         "field 'structuredContent' is required: the JSON Pollock body to check");
  ValidateOptions opts;
  auto channel = json::optString(*body, "channel");
  if (!channel) return errorResponse(channel.error().code, channel.error().message);
  if (*channel) {
    if (**channel == "MESSAGING")
      opts.channel = Channel::kMessaging;
    else if (**channel == "CHAT")
      opts.channel = Channel::kChat;
    else
      return errorResponse(ErrorCode::kInvalid, "field 'channel' must be MESSAGING or CHAT");
  }
  if (auto al = body->find("imageAllowlist"); al != body->end() && !al->value().is_null()) {
    if (!al->value().is_array())
      return errorResponse(ErrorCode::kInvalid, "field 'imageAllowlist' must be an array of hosts");
    std::vector<std::string> hosts;
    for (const auto& h : al->value().get_array()) {
      if (!h.is_string())
        return errorResponse(ErrorCode::kInvalid,
                             "field 'imageAllowlist' must be an array of hosts");
      hosts.emplace_back(h.get_string());
    }
    opts.image_allowlist = std::move(hosts);
  } else if (allowlist_) {
    opts.image_allowlist = allowlist_(request.caller.account);
  }
  opts.path_prefix = "/structuredContent";
  ValidationResult r = validateBotStructuredContent(validator_, sc->value(), opts);
  if (auto md = body->find("metadata"); md != body->end() && !md->value().is_null()) {
    ValidateOptions m = opts;
    m.path_prefix = "/metadata";
    ValidationResult mr = validator_.validateMetadata(md->value(), m);
    if (!mr.valid) {
      r.valid = false;
      for (auto& e : mr.errors) r.errors.push_back(std::move(e));
    }
  }
  return api::Response{200, bj::serialize(validationResultJson(r))};
}

}  // namespace parley::connector::richcontent
