#include "connector/replay.h"

#include <fmt/format.h>

#include <algorithm>

namespace parley::connector {

namespace bj = boost::json;

namespace {

constexpr std::string_view kFaasPrefix = "com.liveperson.faas.";

bj::object eventOf(const Step& s) { return s.event ? *s.event : bj::object{}; }

bj::array stringsJson(const std::vector<std::string>& v) {
  bj::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

bj::value at(const bj::array& a, std::size_t i) { return i < a.size() ? a[i] : bj::value(); }

void diffList(std::string_view field, const bj::array& before, const bj::array& after,
              std::vector<TurnDifference>& out) {
  for (std::size_t i = 0; i < std::max(before.size(), after.size()); ++i) {
    bj::value b = at(before, i), a = at(after, i);
    if (b != a) out.push_back(TurnDifference{std::string(field), i, std::move(b), std::move(a)});
  }
}

// The (code, path) pairs of an errors list, without messages.
bj::array errorKeys(const bj::array& errors) {
  bj::array keys;
  for (const auto& e : errors) {
    if (!e.is_object()) continue;
    const bj::object& o = e.as_object();
    bj::object k;
    if (const bj::value* c = o.if_contains("code")) k["code"] = *c;
    if (const bj::value* p = o.if_contains("path")) k["path"] = *p;
    keys.push_back(std::move(k));
  }
  return keys;
}

// The first com.liveperson.faas.* code in `text` ("" when none).
std::string faasCodeIn(std::string_view text) {
  auto pos = text.find(kFaasPrefix);
  if (pos == std::string_view::npos) return "";
  auto end = pos;
  while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) ||
                               text[end] == '.' || text[end] == '-' || text[end] == '_'))
    ++end;
  while (end > pos && text[end - 1] == '.') --end;  // a sentence's full stop
  return std::string(text.substr(pos, end - pos));
}

const bj::object* objectAt(const bj::object& o, std::string_view key) {
  const bj::value* v = o.if_contains(key);
  return v && v->is_object() ? &v->as_object() : nullptr;
}

}  // namespace

bj::object TurnSummary::toJson() const {
  return bj::object{{"texts", stringsJson(texts)},
                    {"structuredContent", structured_content},
                    {"quickReplies", quick_replies},
                    {"agentTexts", stringsJson(agent_texts)},
                    {"action", action},
                    {"intents", intents},
                    {"errors", errors}};
}

bj::object TurnDifference::toJson() const {
  bj::object o{{"field", field}};
  if (index) o["index"] = *index;
  o["before"] = before;
  o["after"] = after;
  return o;
}

TurnSummary summarizeResponse(std::string_view result_json, const richcontent::Validator& validator,
                              const PlanOptions& opts) {
  ResponsePlan plan = planResponse(result_json, validator, opts);
  TurnSummary s;
  for (const auto& step : plan.steps) {
    if (step.kind == StepKind::kDelay) continue;
    bj::object ev = eventOf(step);
    if (step.kind == StepKind::kPrivateText) {
      const bj::value* m = ev.if_contains("message");
      s.agent_texts.push_back(m && m->is_string() ? std::string(m->as_string()) : std::string());
      continue;
    }
    if (const bj::value* c = ev.if_contains("content")) {
      s.structured_content.push_back(*c);
    } else if (const bj::value* m = ev.if_contains("message"); m && m->is_string()) {
      s.texts.emplace_back(m->as_string());
    }
    if (const bj::value* qr = ev.if_contains("quickReplies")) s.quick_replies.push_back(*qr);
  }
  s.action = plan.action ? bj::value(plan.action->toJson()) : bj::value(nullptr);
  s.intents = plan.bot_response ? bj::value(*plan.bot_response) : bj::value(nullptr);
  if (plan.fatal) s.errors.push_back(plan.fatal->toJson());
  for (const auto& p : plan.refused) s.errors.push_back(p.toJson());
  return s;
}

TurnSummary summarizeInvocationError(std::string code) {
  TurnSummary s;
  s.action = nullptr;
  s.intents = nullptr;
  s.errors.push_back(bj::object{{"code", std::move(code)}, {"path", ""}});
  return s;
}

std::vector<TurnDifference> diffTurns(const TurnSummary& before, const TurnSummary& after) {
  std::vector<TurnDifference> out;
  diffList("texts", stringsJson(before.texts), stringsJson(after.texts), out);
  diffList("structuredContent", before.structured_content, after.structured_content, out);
  diffList("quickReplies", before.quick_replies, after.quick_replies, out);
  diffList("agentTexts", stringsJson(before.agent_texts), stringsJson(after.agent_texts), out);
  if (before.action != after.action)
    out.push_back(TurnDifference{"action", std::nullopt, before.action, after.action});
  if (before.intents != after.intents)
    out.push_back(TurnDifference{"intents", std::nullopt, before.intents, after.intents});
  if (errorKeys(before.errors) != errorKeys(after.errors))
    out.push_back(TurnDifference{"errors", std::nullopt, before.errors, after.errors});
  return out;
}

Result<RecordedTurn> recordedTurnFromJson(const bj::value& turn) {
  if (!turn.is_object()) return invalid("a turn must be an object with 'input' and 'response'");
  const bj::object& t = turn.as_object();
  const bj::object* input = objectAt(t, "input");
  if (!input) return invalid("a turn has no object 'input' (the function input)");
  RecordedTurn r;
  if (const bj::value* id = t.if_contains("turnId"); id && id->is_string())
    r.turn_id = std::string(id->as_string());
  if (const bj::value* c = t.if_contains("conversationId"); c && c->is_string())
    r.conversation_id = std::string(c->as_string());
  const bj::object* payload = objectAt(*input, "payload");
  if (!payload) {
    r.not_replayable =
        "the turn has no function input (a turn of the connector's own, such as a chat "
        "inactivity close)";
    return r;
  }
  r.input_json = bj::serialize(*input);
  if (r.conversation_id.empty())
    if (const bj::value* c = payload->if_contains("convId"); c && c->is_string())
      r.conversation_id = std::string(c->as_string());
  const bj::object* event = objectAt(*payload, "event");
  if (event && event->contains("name") && event->at("name") == "WELCOME")
    r.consumer_message = "WELCOME";
  else if (const bj::value* m = payload->if_contains("message"); m && m->is_string())
    r.consumer_message = std::string(m->as_string());
  if (const bj::object* ctx = objectAt(*payload, "context"))
    if (const bj::object* lp = objectAt(*ctx, "lpEvent")) {
      const bj::object* cc = objectAt(*lp, "conversationContext");
      if ((lp->contains("@type") && lp->at("@type") == "line") ||
          (cc && cc->contains("type") && cc->at("type") == "CHAT"))
        r.channel = store::Channel::kChat;
    }

  // The function's own response: a post hook's replacement is recorded as the response, the
  // function's under a POST_HOOK_RESPONSE action.
  const bj::value* response = t.if_contains("response");
  std::optional<bj::value> own;
  if (const bj::value* actions = t.if_contains("actions"); actions && actions->is_array())
    for (const auto& a : actions->as_array())
      if (a.is_object() && a.as_object().contains("kind") &&
          a.as_object().at("kind") == "POST_HOOK_RESPONSE")
        if (const bj::value* f = a.as_object().if_contains("functionResponse")) own = *f;
  if (own) {
    r.response_json = bj::serialize(*own);
  } else if (response && !response->is_null()) {
    r.response_json = bj::serialize(*response);
  }
  if (r.response_json) return r;

  // No response: the invocation failed, or the function was never called.
  int attempts = -1;
  if (const bj::object* timings = objectAt(t, "timings"))
    if (const bj::value* n = timings->if_contains("attempts"); n && n->is_int64())
      attempts = static_cast<int>(n->as_int64());
  std::string error_text;
  if (const bj::value* e = t.if_contains("error")) {
    if (e->is_string()) {
      error_text = std::string(e->as_string());
    } else if (e->is_object()) {
      if (const bj::value* c = e->as_object().if_contains("code"); c && c->is_string())
        r.error_code = std::string(c->as_string());
      if (const bj::value* m = e->as_object().if_contains("message"); m && m->is_string())
        error_text = std::string(m->as_string());
    }
  }
  if (attempts == 0) {
    r.not_replayable = error_text.empty()
                           ? std::string("the function was not called for this turn")
                           : "the function was not called for this turn: " + error_text;
    return r;
  }
  if (r.error_code.empty()) {
    // The last failed attempt names the function's error code.
    if (const bj::value* actions = t.if_contains("actions"); actions && actions->is_array())
      for (const auto& a : actions->as_array())
        if (a.is_object() && a.as_object().contains("kind") &&
            a.as_object().at("kind") == "ATTEMPT")
          if (const bj::value* m = a.as_object().if_contains("message"); m && m->is_string())
            if (auto code = faasCodeIn(m->as_string()); !code.empty()) r.error_code = code;
    if (r.error_code.empty()) r.error_code = faasCodeIn(error_text);
  }
  if (r.error_code.empty() && error_text.find("hook") != std::string::npos)
    r.not_replayable = "the function was not called for this turn: " + error_text;
  return r;
}

}  // namespace parley::connector
