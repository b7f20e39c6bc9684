#include "connector/response.h"

#include <fmt/format.h>

#include <cmath>

#include "connector/richcontent/richcontent_handler.h"

namespace parley::connector {

namespace bj = boost::json;
namespace rc = richcontent;

const char* stepKindName(StepKind k) {
  switch (k) {
    case StepKind::kText:
      return "TEXT";
    case StepKind::kRichContent:
      return "RICH_CONTENT";
    case StepKind::kPrivateText:
      return "PRIVATE_TEXT";
    case StepKind::kDelay:
      return "DELAY";
  }
  return "?";
}

const char* actionKindName(ActionKind k) {
  switch (k) {
    case ActionKind::kTransfer:
      return "TRANSFER";
    case ActionKind::kClose:
      return "CLOSE_CONVERSATION";
    case ActionKind::kChangeTtr:
      return "CHANGE_TTR";
    case ActionKind::kInvocation:
      return "INVOCATION";
  }
  return "?";
}

bj::object Action::toJson() const {
  bj::object o{{"action", actionKindName(kind)}};
  switch (kind) {
    case ActionKind::kTransfer:
      o["skill"] = skill;
      if (agent_id) o["agentId"] = *agent_id;
      break;
    case ActionKind::kClose:
      o["withoutPcs"] = without_pcs;
      break;
    case ActionKind::kChangeTtr:
      o["ttrType"] = store::ttrTypeName(ttr_type);
      if (ttr_value_s) o["value"] = *ttr_value_s;
      break;
    case ActionKind::kInvocation:
      o["lambdaUuid"] = lambda_uuid;
      o["failOnError"] = fail_on_error;
      break;
  }
  return o;
}

bj::object Problem::toJson() const {
  return bj::object{{"code", code}, {"path", path}, {"message", message}};
}

namespace {

Problem problem(std::string code, std::string path, std::string message) {
  return Problem{std::move(code), std::move(path), std::move(message)};
}

std::string joinErrors(const rc::ValidationResult& r) {
  std::string out;
  for (std::size_t i = 0; i < r.errors.size() && i < 5; ++i) {
    if (i) out += "; ";
    out += (r.errors[i].path.empty() ? std::string("(body)") : r.errors[i].path) + ": " +
           r.errors[i].message;
  }
  if (r.errors.size() > 5) out += fmt::format("; and {} more", r.errors.size() - 5);
  return out;
}

const char* sendMessageCode(store::Channel ch) {
  return ch == store::Channel::kChat ? codes::kChatSendMessage : codes::kMessagingSendMessage;
}

// Parses an event this planner built itself (which nests the function's content one or two
// levels deeper than the function sent it), without throwing.
bj::array normaliseMetadata(const bj::value& v) {
  if (v.is_array()) return v.as_array();
  if (v.is_null()) return {};
  return bj::array{v};
}

// Intents → BotResponse metadata. Problems go to `refused`; the intent is then left out.
std::optional<bj::object> buildBotResponse(const bj::object& ctx, const PlanOptions& opts,
                                           std::vector<Problem>& refused) {
  auto id = ctx.find("intentId");
  if (id == ctx.end() || id->value().is_null()) {
    if (ctx.contains("intentName") || ctx.contains("confidenceScore"))
      refused.push_back(problem(codes::kInvalidParsedResponse, "/context/intentId",
                                "intentName/confidenceScore given without intentId; the intent is "
                                "not sent to the agent"));
    return std::nullopt;
  }
  auto bad = [&](std::string path, std::string msg) {
    refused.push_back(problem(codes::kInvalidParsedResponse, std::move(path), std::move(msg)));
    return std::nullopt;
  };
  if (!id->value().is_string() || id->value().as_string().empty())
    return bad("/context/intentId", "intentId must be a non-empty string");
  if (rc::codePointCount(id->value().as_string()) > 256)
    return bad("/context/intentId", "intentId is longer than 256 characters");
  bj::object intent{{"id", id->value()}};
  if (auto n = ctx.find("intentName"); n != ctx.end() && !n->value().is_null()) {
    if (!n->value().is_string() || rc::codePointCount(n->value().as_string()) > 256)
      return bad("/context/intentName", "intentName must be a string of at most 256 characters");
    intent["name"] = n->value();
  }
  auto cs = ctx.find("confidenceScore");
  if (cs == ctx.end() || !cs->value().is_number())
    return bad("/context/confidenceScore",
               "confidenceScore (a number from 0 to 1) is required with intentId");
  double score = cs->value().to_number<double>();
  if (!(score >= 0 && score <= 1))
    return bad("/context/confidenceScore",
               fmt::format("confidenceScore must be from 0 to 1, got {}", score));
  intent["confidenceScore"] = score;
  bj::array intents{intent};
  if (auto alt = ctx.find("alternativeIntents"); alt != ctx.end() && !alt->value().is_null()) {
    bool ok = alt->value().is_array();
    bj::array alts;
    if (ok) {
      for (const auto& a : alt->value().as_array()) {
        if (!a.is_object()) {
          ok = false;
          break;
        }
        const bj::object& ao = a.as_object();
        auto aid = ao.find("intentId");
        auto acs = ao.find("confidenceScore");
        if (aid == ao.end() || !aid->value().is_string() || acs == ao.end() ||
            !acs->value().is_number() || acs->value().to_number<double>() < 0 ||
            acs->value().to_number<double>() > 1) {
          ok = false;
          break;
        }
        bj::object ai{{"id", aid->value()}, {"confidenceScore", acs->value()}};
        if (auto an = ao.find("intentName"); an != ao.end() && an->value().is_string())
          ai["name"] = an->value();
        alts.push_back(std::move(ai));
      }
    }
    if (ok) {
      for (auto& a : alts) intents.push_back(std::move(a));
    } else {
      refused.push_back(problem(codes::kMalformedAlternativeIntents, "/context/alternativeIntents",
                                "alternativeIntents must be an array of {intentId, intentName?, "
                                "confidenceScore 0..1}; they are left out"));
    }
  }
  return bj::object{{"type", "BotResponse"},
                    {"externalConversationId", opts.conversation_id.substr(0, 64)},
                    {"businessCases", bj::array{}},
                    {"intents", std::move(intents)}};
}

// Parses the action; nullopt + a problem in `why` when the body is invalid.
std::optional<Action> parseAction(const bj::object& ctx, const PlanOptions& opts, Problem& why) {
  const bj::value* action = ctx.if_contains("action");
  if (!action || !action->is_string()) {
    why = problem(codes::kInvalidActionBody, "/context/action", "action must be a string");
    return std::nullopt;
  }
  std::string_view name = action->get_string();
  bj::object params;
  if (auto p = ctx.find("actionParameters"); p != ctx.end() && !p->value().is_null()) {
    if (!p->value().is_object()) {
      why = problem(codes::kInvalidActionBody, "/context/actionParameters",
                    "actionParameters must be an object");
      return std::nullopt;
    }
    params = p->value().as_object();
  }
  Action a;
  auto fail = [&](std::string path, std::string msg, const char* code = codes::kInvalidActionBody) {
    why = problem(code, std::move(path), std::move(msg));
    return std::nullopt;
  };
  if (name == "TRANSFER") {
    a.kind = ActionKind::kTransfer;
    auto skill = params.find("skill");
    if (skill == params.end()) skill = params.find("skillName");
    if (skill == params.end() || !skill->value().is_string() || skill->value().as_string().empty())
      return fail("/context/actionParameters/skill",
                  "TRANSFER needs actionParameters.skill: the name of an existing skill");
    a.skill = std::string(skill->value().as_string());
    if (auto ag = params.find("agentId"); ag != params.end() && !ag->value().is_null()) {
      if (ag->value().is_string())
        a.agent_id = std::string(ag->value().as_string());
      else if (ag->value().is_int64())
        a.agent_id = std::to_string(ag->value().as_int64());
      else
        return fail("/context/actionParameters/agentId", "agentId must be a string");
    }
  } else if (name == "CLOSE_CONVERSATION") {
    a.kind = ActionKind::kClose;
    if (auto w = params.find("withoutPcs"); w != params.end() && !w->value().is_null()) {
      if (!w->value().is_bool())
        return fail("/context/actionParameters/withoutPcs", "withoutPcs must be true or false");
      a.without_pcs = w->value().as_bool();
    }
  } else if (name == "CHANGE_TTR") {
    a.kind = ActionKind::kChangeTtr;
    if (opts.channel == store::Channel::kChat)
      return fail("/context/action", "CHANGE_TTR is supported only in messaging conversations",
                  codes::kChangeTtr);
    auto t = params.find("ttrType");
    if (t == params.end() || !t->value().is_string())
      return fail("/context/actionParameters/ttrType",
                  "CHANGE_TTR needs actionParameters.ttrType: URGENT, NORMAL, PRIORITIZED or "
                  "CUSTOM",
                  codes::kChangeTtr);
    auto type = store::parseTtrType(t->value().as_string());
    if (!type)
      return fail("/context/actionParameters/ttrType",
                  fmt::format("ttrType \"{}\" is not URGENT, NORMAL, PRIORITIZED or CUSTOM",
                              std::string_view(t->value().as_string())),
                  codes::kChangeTtr);
    a.ttr_type = *type;
    if (a.ttr_type == store::TtrType::kCustom) {
      auto v = params.find("value");
      std::optional<std::int64_t> secs;
      if (v != params.end()) {
        if (v->value().is_int64() && v->value().as_int64() >= 0) {
          secs = v->value().as_int64();
        } else if (v->value().is_string()) {
          std::string s(v->value().as_string());
          if (!s.empty() && s.size() < 12 && s.find_first_not_of("0123456789") == std::string::npos)
            secs = std::stoll(s);
        }
      }
      if (!secs)
        return fail("/context/actionParameters/value",
                    "CHANGE_TTR with ttrType CUSTOM needs value: whole seconds, e.g. \"120\"",
                    codes::kChangeTtr);
      a.ttr_value_s = secs;
    }
  } else if (name == "INVOCATION") {
    a.kind = ActionKind::kInvocation;
    auto u = params.find("lambdaUuid");
    if (u == params.end() || !u->value().is_string() || u->value().as_string().empty())
      return fail("/context/actionParameters/lambdaUuid",
                  "INVOCATION needs actionParameters.lambdaUuid: the uuid of a deployed function");
    a.lambda_uuid = std::string(u->value().as_string());
    if (auto p = params.find("payload"); p != params.end()) a.payload = p->value();
    if (auto f = params.find("failOnError"); f != params.end() && !f->value().is_null()) {
      if (!f->value().is_bool())
        return fail("/context/actionParameters/failOnError", "failOnError must be true or false");
      a.fail_on_error = f->value().as_bool();
    }
  } else {
    return fail("/context/action",
                fmt::format("action \"{}\" is not supported; use TRANSFER, CLOSE_CONVERSATION, "
                            "CHANGE_TTR or INVOCATION (case-sensitive)",
                            name),
                codes::kNotSupportedAction);
  }
  return a;
}

}  // namespace

std::shared_ptr<const bj::object> textEvent(std::string_view text) {
  return std::make_shared<const bj::object>(
      bj::object{{"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", text}});
}

ResponsePlan planResponse(std::string_view result_json, const rc::Validator& validator,
                          const PlanOptions& opts) {
  ResponsePlan plan;
  std::string_view trimmed = result_json;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front())))
    trimmed.remove_prefix(1);
  if (trimmed.empty() || trimmed == "null" || trimmed == "undefined") {
    plan.fatal = problem(codes::kMissingResponseBody, "",
                         "the function called back without a response body; call "
                         "callback(null, {messages: [...]})");
    return plan;
  }
  boost::system::error_code ec;
  bj::value v = bj::parse(result_json, ec);
  if (ec || !v.is_object()) {
    plan.fatal = problem(codes::kInvalidBody, "",
                         ec ? "the response is not JSON"
                            : "the response must be an object {messages?, context?}, not a " +
                                  std::string(v.is_string()   ? "string"
                                              : v.is_array()  ? "an array"
                                              : v.is_number() ? "number"
                                                              : "value"));
    return plan;
  }
  const bj::object& resp = v.as_object();
  const bj::object empty_ctx;
  const bj::object* ctx = &empty_ctx;
  if (auto c = resp.find("context"); c != resp.end() && !c->value().is_null()) {
    if (!c->value().is_object()) {
      plan.fatal = problem(codes::kInvalidBody, "/context", "context must be an object");
      return plan;
    }
    ctx = &c->value().as_object();
  }
  const bj::array* messages = nullptr;
  if (auto m = resp.find("messages"); m != resp.end() && !m->value().is_null()) {
    if (!m->value().is_array()) {
      plan.fatal = problem(codes::kInvalidBody, "/messages",
                           "messages must be an array of strings and message objects");
      return plan;
    }
    messages = &m->value().as_array();
  }
  bool has_messages = messages && !messages->empty();
  bool has_legacy_sc =
      ctx->contains("structuredContent") && !ctx->at("structuredContent").is_null();
  bool has_action_key = ctx->contains("action") && !ctx->at("action").is_null();

  // 2. intents → BotResponse
  plan.bot_response = buildBotResponse(*ctx, opts, plan.refused);
  if (ctx->contains("intentId") && !has_messages && !has_action_key && !has_legacy_sc) {
    plan.fatal = problem(codes::kMissingActionAndMessages, "",
                         "the response has an intent but no messages and no action");
    return plan;
  }

  // Action (applied last, but its validity decides whether a message-less response is fatal).
  if (has_action_key) {
    Problem why;
    if (!ctx->at("action").is_string()) {
      why = problem(codes::kInvalidActionBody, "/context/action", "action must be a string");
    } else if (auto a = parseAction(*ctx, opts, why)) {
      plan.action = std::move(*a);
    }
    if (!plan.action) {
      if (!has_messages && !has_legacy_sc) {
        plan.fatal = why.code == codes::kNotSupportedAction
                         ? why
                         : problem(codes::kNotSupportedAction, why.path, why.message);
        return plan;
      }
      why.message += "; the action is ignored and the messages are sent";
      plan.refused.push_back(std::move(why));
    }
  }
  if (!has_messages && !has_legacy_sc && !plan.action) {
    plan.fatal = problem(codes::kMissingActionAndMessages, "",
                         "the response has neither messages nor an action; send at least one "
                         "message, a {delay} for no reply, or an action");
    return plan;
  }

  // encodedMetadata from context applies to every message without its own.
  std::optional<std::string> ctx_encoded;
  if (auto e = ctx->find("encodedMetadata"); e != ctx->end() && !e->value().is_null()) {
    if (e->value().is_string())
      ctx_encoded = std::string(e->value().as_string());
    else
      plan.refused.push_back(problem(codes::kInvalidParsedResponse, "/context/encodedMetadata",
                                     "encodedMetadata must be a base64 string; it is ignored"));
  }

  rc::ValidateOptions vopts;
  vopts.channel =
      opts.channel == store::Channel::kChat ? rc::Channel::kChat : rc::Channel::kMessaging;
  vopts.image_allowlist = opts.image_allowlist;
  const char* send_code = sendMessageCode(opts.channel);

  // Attaches metadata / encodedMetadata to a step; false (and a refusal) when invalid.
  auto finish = [&](Step& step, const bj::object* entry, const std::string& path,
                    const bj::value* metadata) -> bool {
    if (metadata && !metadata->is_null()) {
      bj::array md = normaliseMetadata(*metadata);
      rc::ValidateOptions m = vopts;
      m.path_prefix = path + "/metadata";
      auto r = validator.validateMetadata(md, m);
      if (!r.valid) {
        plan.refused.push_back(
            problem(send_code, path, "the message is dropped: invalid metadata: " + joinErrors(r)));
        return false;
      }
      step.metadata = std::move(md);
    }
    std::optional<std::string> encoded = ctx_encoded;
    if (entry) {
      if (auto e = entry->find("encodedMetadata"); e != entry->end() && !e->value().is_null()) {
        if (!e->value().is_string()) {
          plan.refused.push_back(problem(send_code, path + "/encodedMetadata",
                                         "the message is dropped: encodedMetadata must be a "
                                         "base64 string"));
          return false;
        }
        encoded = std::string(e->value().as_string());
      }
    }
    if (encoded) {
      rc::ValidateOptions m = vopts;
      m.path_prefix = entry && entry->contains("encodedMetadata") ? path + "/encodedMetadata"
                                                                  : "/context/encodedMetadata";
      auto r = validator.validateEncodedMetadata(*encoded, m);
      if (!r.valid) {
        plan.refused.push_back(
            problem(send_code, path, "the message is dropped: " + joinErrors(r)));
        return false;
      }
      bj::object ev = *step.event;
      ev["encodedMetadata"] = *encoded;
      step.event = std::make_shared<const bj::object>(std::move(ev));
    }
    if (plan.bot_response) step.metadata.push_back(*plan.bot_response);
    return true;
  };

  // Builds the step for a structuredContent value (body, or {message, quickReplies}).
  auto structuredStep = [&](const bj::value& sc, const std::string& path,
                            std::optional<Step>& out) {
    rc::ValidateOptions s = vopts;
    s.path_prefix = path;
    auto r = rc::validateBotStructuredContent(validator, sc, s);
    if (!r.valid) {
      bool qr_chat = opts.channel == store::Channel::kChat && sc.is_object() &&
                     sc.as_object().contains("quickReplies");
      plan.refused.push_back(
          problem(qr_chat ? codes::kQuickRepliesNotSupported : codes::kInvalidStructuredContent,
                  path, "the message is dropped: " + joinErrors(r)));
      return;
    }
    Step step;
    step.source = path;
    const bj::object* o = sc.if_object();
    const bj::value* qr = o ? o->if_contains("quickReplies") : nullptr;
    if (qr && !o->contains("type")) {
      const bj::value* text = o->if_contains("message");
      if (!text) {
        plan.refused.push_back(problem(codes::kInvalidParsedResponse, path,
                                       "the message is dropped: quick replies need a message"));
        return;
      }
      step.kind = StepKind::kText;
      bj::object ev{{"type", "ContentEvent"},
                    {"contentType", "text/plain"},
                    {"message", *text},
                    {"quickReplies", *qr}};
      step.event = std::make_shared<const bj::object>(std::move(ev));
    } else {
      step.kind = StepKind::kRichContent;
      step.event = std::make_shared<const bj::object>(
          bj::object{{"type", "RichContentEvent"}, {"content", sc}});
    }
    out = std::move(step);
  };

  // 3. messages in order
  if (messages) {
    for (std::size_t i = 0; i < messages->size(); ++i) {
      const bj::value& m = (*messages)[i];
      std::string path = fmt::format("/messages/{}", i);
      if (m.is_string()) {
        if (m.as_string().empty()) {
          plan.refused.push_back(
              problem(send_code, path, "the message is dropped: it is an empty string"));
          continue;
        }
        Step step;
        step.kind = StepKind::kText;
        step.source = path;
        step.event = textEvent(m.as_string());
        if (finish(step, nullptr, path, nullptr)) plan.steps.push_back(std::move(step));
        continue;
      }
      if (!m.is_object()) {
        plan.refused.push_back(problem(codes::kInvalidParsedResponse, path,
                                       "the message is dropped: an entry must be a string or an "
                                       "object"));
        continue;
      }
      const bj::object& o = m.as_object();
      const bj::value* md = o.contains("metadata") ? &o.at("metadata") : nullptr;
      if (auto sc = o.find("structuredContent"); sc != o.end()) {
        std::optional<Step> step;
        structuredStep(sc->value(), path + "/structuredContent", step);
        if (step && finish(*step, &o, path, md)) {
          step->source = path;
          plan.steps.push_back(std::move(*step));
        }
      } else if (auto d = o.find("delay"); d != o.end()) {
        const bj::value& dv = d->value();
        double secs = dv.is_number() ? dv.to_number<double>() : -1;
        if (!dv.is_number() || secs < 0 || std::floor(secs) != secs) {
          plan.refused.push_back(problem(codes::kInvalidParsedResponse, path + "/delay",
                                         "delay must be a whole number of seconds >= 0; the "
                                         "delay is skipped"));
          continue;
        }
        Step step;
        step.kind = StepKind::kDelay;
        step.source = path;
        step.delay_s = static_cast<int>(std::min<double>(secs, opts.max_delay_s));
        if (secs > opts.max_delay_s)
          plan.refused.push_back(
              problem(codes::kInvalidParsedResponse, path + "/delay",
                      fmt::format("delay is capped at {} seconds", opts.max_delay_s)));
        if (auto t = o.find("typing"); t != o.end() && t->value().is_bool())
          step.typing = t->value().as_bool();
        plan.steps.push_back(std::move(step));
      } else if (auto t = o.find("text"); t != o.end()) {
        auto aud = o.find("messageAudience");
        if (!t->value().is_string() || t->value().as_string().empty()) {
          plan.refused.push_back(
              problem(send_code, path + "/text",
                      "the message is dropped: text must be a non-empty string"));
          continue;
        }
        if (aud == o.end() || !aud->value().is_string() ||
            aud->value().as_string() != "AGENTS_AND_MANAGERS") {
          plan.refused.push_back(problem(
              codes::kInvalidParsedResponse, path + "/messageAudience",
              "the message is dropped: a {text} entry is a private message and needs "
              "messageAudience \"AGENTS_AND_MANAGERS\" (case-sensitive); send plain text as a "
              "string"));
          continue;
        }
        Step step;
        step.kind = StepKind::kPrivateText;
        step.source = path;
        step.event = textEvent(t->value().as_string());
        if (finish(step, &o, path, md)) plan.steps.push_back(std::move(step));
      } else {
        plan.refused.push_back(problem(codes::kInvalidParsedResponse, path,
                                       "the message is dropped: an object entry needs "
                                       "structuredContent, delay, or text + messageAudience"));
      }
    }
  }

  // 4. legacy context.structuredContent, last
  if (has_legacy_sc) {
    const bj::value& sc = ctx->at("structuredContent");
    const bj::value* md = ctx->contains("metadata") ? &ctx->at("metadata") : nullptr;
    std::string path = "/context/structuredContent";
    bool quick_only = sc.is_object() && sc.as_object().contains("quickReplies") &&
                      !sc.as_object().contains("type") && !sc.as_object().contains("message");
    if (quick_only) {
      // Legacy quick replies: attached to the last text message of `messages`.
      Step* last_text = nullptr;
      for (auto& s : plan.steps)
        if (s.kind == StepKind::kText) last_text = &s;
      if (!last_text) {
        plan.refused.push_back(problem(codes::kInvalidParsedResponse, path,
                                       "legacy quickReplies need a text message in messages to "
                                       "attach to; they are dropped"));
      } else {
        const bj::value* text = last_text->event->if_contains("message");
        const bj::value* qr = sc.as_object().if_contains("quickReplies");
        if (!text || !qr) {
          plan.refused.push_back(problem(codes::kInvalidParsedResponse, path,
                                         "legacy quickReplies cannot be attached to the last "
                                         "text message; they are dropped"));
        } else {
          bj::object form{{"message", *text}, {"quickReplies", *qr}};
          std::optional<Step> step;
          structuredStep(form, path, step);
          if (step) {
            bj::object ev = *last_text->event;
            ev["quickReplies"] = *qr;
            last_text->event = std::make_shared<const bj::object>(std::move(ev));
          }
        }
      }
    } else {
      std::optional<Step> step;
      structuredStep(sc, path, step);
      if (step && finish(*step, nullptr, path, md)) plan.steps.push_back(std::move(*step));
    }
  }

  // Everything refused and nothing to do: the consumer would get no answer at all.
  if (plan.steps.empty() && !plan.action && !plan.refused.empty()) {
    plan.fatal = plan.refused.front();
    plan.fatal->message = "nothing in the response could be sent: " + plan.fatal->message;
  }
  return plan;
}

}  // namespace parley::connector
