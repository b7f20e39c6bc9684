#include <fmt/format.h>

#include "common/log.h"
#include "common/random.h"
#include "connector/turn_runner.h"

namespace parley::connector {

namespace bj = boost::json;
namespace conv = parley::conversation;

namespace {

// Parses JSON text the connector built itself (a turn's input, an event) — which may nest a
// function's or hook's output (up to the parser's default depth) a few levels deeper — without
// throwing: an error value, never an exception, and a JSON object or an error.
Result<bj::value> parseOwn(std::string_view text) {
  bj::parse_options opts;
  opts.max_depth = 64;
  boost::system::error_code ec;
  bj::value v = bj::parse(text, ec, {}, opts);
  if (ec) return invalid("not readable JSON: " + ec.message());
  if (!v.is_object()) return invalid("not a JSON object");
  return v;
}

}  // namespace

// Invokes hook `fn` with `payload` (JSON text) as input.payload; `then` runs on the strand.
void TurnRunner::invokeHook(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                            const FunctionId& fn, const std::string& tag,
                            const std::string& payload_json,
                            std::function<void(const functions::InvokeResult&)> then) {
  auto req = functions::InvokeRequest::of(st->account, fn)
                 .withPayload(d_.clock.nowMs(), payload_json)
                 .within(std::chrono::milliseconds(turn->config->escalation.turn_timeout_ms))
                 .withRequestId(turn->id + "-" + tag);
  auto t0 = SteadyClock::now();
  d_.work.add();
  d_.runner.invoke(std::move(req), [this, st = st, turn = turn, t0,
                                    then = std::move(then)](functions::InvokeResult r) mutable {
    auto s = std::move(st);  // see released()
    d_.strands.onStrand(s, [turn = std::move(turn), t0, then = std::move(then), r = std::move(r)] {
      turn->hook_ms += msSince(t0);
      then(r);
    });
    d_.strands.released(std::move(s));
  });
}

void TurnRunner::hookFailed(const std::shared_ptr<ConvState>& st, const std::shared_ptr<Turn>& turn,
                            const char* hook, const FunctionId& fn, const std::string& why) {
  d_.metrics.hookFailure(turn->bot->id.str(), hook);
  turn->actions.push_back(bj::object{{"kind", hook},
                                     {"function", fn.str()},
                                     {"status", "FAILED"},
                                     {"code", std::string(kCodePrefix) + codes::kFailedHook},
                                     {"message", why}});
  turn->failure_kind = TurnHealth::kFunctionFailure;
  fail(st, turn, codes::kFailedHook, fmt::format("{} {} failed: {}", hook, fn.str(), why),
       Retry::kNever);
}

// Pre hooks: input.payload = the request {message, convId, event?, context}; the callback's
// value (a JSON object) is the request the bot's function gets.
void TurnRunner::runPreHooks(const std::shared_ptr<ConvState>& st,
                             const std::shared_ptr<Turn>& turn, std::vector<FunctionId> fns,
                             std::size_t i) {
  if (interrupted(st, turn)) return;
  if (stale(st, turn))
    return discard(st, turn, "the conversation changed owner while the pre hook ran");
  if (i == fns.size()) return invoke(st, turn);
  FunctionId fn = fns[i];
  auto input = parseOwn(turn->input_json);
  const bj::value* request = input ? input->as_object().if_contains("payload") : nullptr;
  if (!request)
    return hookFailed(st, turn, "PRE_HOOK", fn,
                      "the request for the pre hook cannot be built: " +
                          (input ? std::string("it has no payload") : input.error().message));
  std::string payload = bj::serialize(*request);
  invokeHook(st, turn, fn, "pre-hook-" + std::to_string(i), payload,
             [this, st, turn, fns = std::move(fns), i, fn](const functions::InvokeResult& r) {
               if (stale(st, turn))
                 return discard(st, turn, "the conversation changed owner while the pre hook ran");
               if (!r.ok)
                 return hookFailed(st, turn, "PRE_HOOK", fn, r.error_code + ": " + r.error_message);
               boost::system::error_code ec;
               bj::value out = bj::parse(r.result_json, ec);
               if (ec || !out.is_object())
                 return hookFailed(st, turn, "PRE_HOOK", fn,
                                   "the pre hook must call back with the request object "
                                   "{message, convId, context}" +
                                       (ec ? " (" + ec.message() + ")" : std::string()) + "; got " +
                                       r.result_json.substr(0, 200));
               auto input = parseOwn(turn->input_json);
               if (!input)
                 return hookFailed(st, turn, "PRE_HOOK", fn,
                                   "the turn input cannot be read back: " + input.error().message);
               input->as_object()["payload"] = std::move(out);
               turn->input_json = bj::serialize(*input);
               turn->actions.push_back(
                   bj::object{{"kind", "PRE_HOOK"}, {"function", fn.str()}, {"status", "DONE"}});
               runPreHooks(st, turn, fns, i + 1);
             });
}

// Post hooks: input.payload = the function's response; the callback's value replaces it and
// is then validated and applied like any response.
void TurnRunner::runPostHooks(const std::shared_ptr<ConvState>& st,
                              const std::shared_ptr<Turn>& turn, std::vector<FunctionId> fns,
                              std::size_t i, std::string response_json) {
  if (interrupted(st, turn)) return;
  if (stale(st, turn))
    return discard(st, turn, "the conversation changed owner while the post hook ran");
  if (i == fns.size()) {
    if (response_json != turn->response_json) {
      boost::system::error_code ec;
      bj::value original = bj::parse(turn->response_json, ec);
      turn->actions.push_back(bj::object{{"kind", "POST_HOOK_RESPONSE"},
                                         {"functionResponse", ec ? bj::value() : original}});
      turn->response_json = response_json;
    }
    return planAndApply(st, turn, response_json);
  }
  std::string payload = response_json.empty() ? "null" : response_json;
  FunctionId fn = fns[i];
  invokeHook(st, turn, fn, "post-hook-" + std::to_string(i), payload,
             [this, st, turn, fns = std::move(fns), i, fn](const functions::InvokeResult& r) {
               if (stale(st, turn))
                 return discard(st, turn, "the conversation changed owner while the post hook ran");
               if (!r.ok)
                 return hookFailed(st, turn, "POST_HOOK", fn,
                                   r.error_code + ": " + r.error_message);
               turn->actions.push_back(
                   bj::object{{"kind", "POST_HOOK"}, {"function", fn.str()}, {"status", "DONE"}});
               runPostHooks(st, turn, fns, i + 1, r.result_json);
             });
}

// Error hooks: told about the error, nothing fed back; a failure is only logged and counted.
void TurnRunner::runErrorHooks(const std::shared_ptr<ConvState>& st,
                               const std::shared_ptr<Turn>& turn, const std::string& code,
                               const std::string& message) {
  if (!turn->config->hooks.error) return;
  auto fns = d_.hooks.functions(st->account, HookCache::kErrorHookEvent);
  if (fns.empty()) return;
  auto parse = [](const std::string& text) {
    boost::system::error_code ec;
    bj::value v = bj::parse(text, ec);
    return ec ? bj::value() : v;
  };
  bj::value input = parse(turn->input_json);
  bj::value request = input.is_object() && input.as_object().contains("payload")
                          ? input.as_object().at("payload")
                          : bj::value();
  std::string error_id = randomUuid();
  std::string payload = bj::serialize(bj::object{
      {"error",
       {{"errorId", error_id}, {"name", std::string(kCodePrefix) + code}, {"message", message}}},
      {"vendor", turn->config->vendor},
      {"convId", st->id.str()},
      {"faasPayload", std::move(request)},
      {"faas", turn->response_json.empty() ? bj::value() : parse(turn->response_json)}});
  for (std::size_t i = 0; i < fns.size(); ++i) {
    auto req = functions::InvokeRequest::of(st->account, fns[i])
                   .withPayload(d_.clock.nowMs(), payload)
                   .within(std::chrono::milliseconds(turn->config->escalation.turn_timeout_ms))
                   .withRequestId(turn->id + "-error-hook-" + std::to_string(i));
    turn->actions.push_back(bj::object{{"kind", "ERROR_HOOK"},
                                       {"function", fns[i].str()},
                                       {"errorId", error_id},
                                       {"status", "INVOKED"}});
    d_.work.add();
    d_.runner.invoke(std::move(req), [this, bot = turn->bot->id.str(), fn = fns[i].str(),
                                      error_id](functions::InvokeResult r) {
      if (!r.ok) {
        spdlog::warn("connector: error hook {} of bot {} failed for error {}: {}: {}", fn, bot,
                     error_id, r.error_code, r.error_message);
        d_.metrics.hookFailure(bot, "ERROR_HOOK");
      }
      d_.work.done();
    });
  }
}

}  // namespace parley::connector
