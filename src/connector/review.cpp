#include "connector/review.h"

#include <fmt/format.h>

#include <array>
#include <string>

namespace parley::connector {

namespace bj = boost::json;

namespace {

// Keys the connector reads (spec §2); anything else in the response is ignored.
constexpr std::array<std::string_view, 2> kResponseKeys = {"messages", "context"};
constexpr std::array<std::string_view, 9> kContextKeys = {
    "action",     "actionParameters",  "intentId",
    "intentName", "confidenceScore",   "alternativeIntents",
    "metadata",   "structuredContent", "encodedMetadata"};

template <std::size_t N>
bool known(const std::array<std::string_view, N>& keys, std::string_view k) {
  for (auto key : keys)
    if (key == k) return true;
  return false;
}

bj::object warning(std::string_view rule, std::string path, std::string message) {
  return bj::object{{"rule", rule}, {"path", std::move(path)}, {"message", std::move(message)}};
}

// The event a step publishes; empty for delays.
bj::object eventOf(const Step& s) { return s.event ? *s.event : bj::object{}; }

bool consumerVisible(const Step& s) {
  return s.kind == StepKind::kText || s.kind == StepKind::kRichContent;
}

}  // namespace

bool isBotResponseEvent(std::string_view event_id) {
  return event_id == "bot_connectors_custom_integration" || event_id == "bot_connectors_post_hook";
}

bj::object reviewResponse(std::string_view result_json, const richcontent::Validator& validator,
                          const PlanOptions& opts) {
  ResponsePlan plan = planResponse(result_json, validator, opts);
  bj::object out;
  out["channel"] = opts.channel == store::Channel::kChat ? "CHAT" : "MESSAGING";
  out["verdict"] = plan.fatal ? "REFUSED" : plan.refused.empty() ? "OK" : "PARTIAL";

  bj::array consumer, agent, warnings;
  std::vector<bj::object> events;
  events.reserve(plan.steps.size());
  for (const auto& s : plan.steps) {
    bj::object ev = eventOf(s);
    bj::object item{{"kind", stepKindName(s.kind)}, {"source", s.source}};
    if (s.kind == StepKind::kDelay) {
      item["delaySeconds"] = s.delay_s;
      item["typing"] = s.typing;
    }
    if (const bj::value* m = ev.if_contains("message"); m && m->is_string()) item["text"] = *m;
    if (const bj::value* qr = ev.if_contains("quickReplies")) {
      const bj::value* replies = qr->is_object() ? qr->as_object().if_contains("replies") : nullptr;
      item["quickReplies"] = replies && replies->is_array() ? replies->as_array().size() : 0;
    }
    if (const bj::value* c = ev.if_contains("content"); c && c->is_object())
      if (const bj::value* t = c->as_object().if_contains("type"); t && t->is_string())
        item["contentType"] = *t;
    if (!s.metadata.empty()) item["metadata"] = s.metadata;
    (s.kind == StepKind::kPrivateText ? agent : consumer).push_back(std::move(item));
    events.push_back(std::move(ev));
  }
  out["consumerSees"] = std::move(consumer);
  out["agentSees"] = std::move(agent);
  out["action"] = plan.action ? bj::value(plan.action->toJson()) : bj::value(nullptr);

  bj::array problems;
  if (plan.fatal) problems.push_back(plan.fatal->toJson());
  for (const auto& p : plan.refused) problems.push_back(p.toJson());
  out["problems"] = std::move(problems);

  // Quick replies stay on screen only while their message is the newest one: a later message
  // (the usual case: a card in context.structuredContent, which is sent last) hides them.
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    if (!consumerVisible(plan.steps[i]) || !events[i].contains("quickReplies")) continue;
    for (std::size_t j = i + 1; j < plan.steps.size(); ++j) {
      if (!consumerVisible(plan.steps[j])) continue;
      warnings.push_back(warning(
          "quick-replies-hidden", plan.steps[i].source,
          fmt::format("the quick replies of {} are followed by {}; the consumer's window shows "
                      "quick replies only while their message is the newest, so they will be "
                      "hidden. Put them on the last message{}",
                      plan.steps[i].source, plan.steps[j].source,
                      plan.steps[j].source == "/context/structuredContent"
                          ? " (context.structuredContent is always sent after messages)"
                          : "")));
      break;
    }
  }
  // Quick replies the consumer can't answer: the conversation closes or leaves the bot.
  if (plan.action &&
      (plan.action->kind == ActionKind::kClose || plan.action->kind == ActionKind::kTransfer)) {
    for (std::size_t i = 0; i < plan.steps.size(); ++i)
      if (events[i].contains("quickReplies"))
        warnings.push_back(warning(
            "quick-replies-with-" +
                std::string(plan.action->kind == ActionKind::kClose ? "close" : "transfer"),
            plan.steps[i].source,
            fmt::format("the quick replies of {} are sent with the {} action: the bot will not "
                        "be there to receive the answer",
                        plan.steps[i].source, actionKindName(plan.action->kind))));
  }
  // Keys the connector never reads: usually a typo (`message` for `messages`).
  boost::system::error_code ec;
  bj::value v = bj::parse(result_json.empty() ? std::string_view("null") : result_json, ec);
  if (!ec && v.is_object()) {
    for (const auto& [k, val] : v.as_object()) {
      if (known(kResponseKeys, k)) continue;
      warnings.push_back(
          warning("ignored-key", "/" + std::string(k),
                  fmt::format("'{}' is ignored: the connector reads only 'messages' and "
                              "'context'{}",
                              std::string_view(k),
                              k == "message" || k == "text" ? " (did you mean 'messages'?)" : "")));
    }
    if (const bj::value* c = v.as_object().if_contains("context"); c && c->is_object())
      for (const auto& [k, val] : c->as_object())
        if (!known(kContextKeys, k))
          warnings.push_back(
              warning("ignored-key", "/context/" + std::string(k),
                      fmt::format("context.{} is ignored by the connector", std::string_view(k))));
  }
  out["warnings"] = std::move(warnings);
  return out;
}

}  // namespace parley::connector
