#include "connector/replay_runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/post.hpp>

#include "common/json.h"
#include "connector/bot_config.h"
#include "connector/function_versions.h"
#include "connector/replay.h"

namespace parley::connector {

namespace bj = boost::json;
namespace asio = boost::asio;

namespace {

api::Response errorResponse(const Error& e) {
  bj::object err{{"code", errorCodeName(e.code)}, {"message", e.message}};
  return api::Response{httpStatus(e.code), bj::serialize(bj::object{{"error", std::move(err)}})};
}

bj::value parseOr(const std::string& s, bj::value def) {
  boost::system::error_code ec;
  bj::value v = bj::parse(s, ec);
  return ec ? def : v;
}

}  // namespace

struct ReplayRunner::Run {
  AccountId account;
  BotId bot;
  FunctionId function;
  FunctionVersion version;
  functions::Invoker invoker;
  std::int64_t turn_timeout_ms = 30'000;
  std::string source;
  std::vector<RecordedTurn> turns;
  std::size_t index = 0;
  std::chrono::steady_clock::time_point deadline;
  bj::array results;
  int replayed = 0, skipped = 0, changed = 0, not_run = 0, differences = 0;
  std::function<void(api::Response)> done;
};

void ReplayRunner::run(const api::Request& req, const BotId& bot,
                       std::function<void(api::Response)> done) {
  if (!d_.opts.invoke_code)
    return done(
        errorResponse(Error{ErrorCode::kUnavailable, "replay is not available on this server"}));
  auto body = json::parseObject(req.body.empty() ? "{}" : req.body);
  if (!body) return done(errorResponse(body.error()));
  for (const auto& [k, v] : *body)
    if (k != "functionVersion" && k != "from" && k != "conversationId" && k != "limit")
      return done(errorResponse(
          Error{ErrorCode::kInvalid,
                fmt::format("unknown field '{}'; replay takes 'functionVersion', 'from', "
                            "'conversationId' and 'limit'",
                            std::string_view(k))}));
  const bj::value* spec = body->if_contains("functionVersion");
  if (!spec || spec->is_null())
    return done(errorResponse(
        Error{ErrorCode::kInvalid,
              "'functionVersion' is required: the version to replay the turns against "
              "(\"draft\", \"deployed\", a version number or a deployment id)"}));
  int limit = kMaxTurns;
  if (const bj::value* l = body->if_contains("limit")) {
    if (!l->is_int64() || l->as_int64() < 1 || l->as_int64() > kMaxTurns)
      return done(errorResponse(Error{
          ErrorCode::kInvalid, fmt::format("'limit' must be a number from 1 to {}", kMaxTurns)}));
    limit = static_cast<int>(l->as_int64());
  }
  std::string only_conversation;
  if (const bj::value* c = body->if_contains("conversationId")) {
    if (!c->is_string())
      return done(errorResponse(Error{ErrorCode::kInvalid, "'conversationId' must be a string"}));
    only_conversation = std::string(c->as_string());
  }
  const AccountId& acc = req.caller.account;
  auto rec = d_.store.bots().getBot(acc, bot);
  if (!rec) return done(errorResponse(rec.error()));
  BotConfig cfg = botConfigFromStored(rec->config_json);
  auto version = resolveFunctionVersion(d_.store.functions(), acc, cfg.function, *spec);
  if (!version) return done(errorResponse(version.error()));

  auto run = std::make_shared<Run>();
  run->account = acc;
  run->bot = bot;
  run->function = cfg.function;
  run->version = std::move(*version);
  run->invoker = invokerOf(req.caller);
  run->turn_timeout_ms = cfg.escalation.turn_timeout_ms;
  run->done = std::move(done);

  bj::array items;
  if (const bj::value* from = body->if_contains("from"); from && !from->is_null()) {
    run->source = "upload";
    const bj::value* list = from;
    if (from->is_object()) list = from->as_object().if_contains("turns");
    if (!list || !list->is_array())
      return run->done(errorResponse(
          Error{ErrorCode::kInvalid,
                "'from' must be a transcript: the array GET bots/{id}/turns answers, or a tester "
                "session ({\"turns\": [...]})"}));
    items = list->as_array();
    if (items.size() > static_cast<std::size_t>(kMaxTurns))
      return run->done(errorResponse(
          Error{ErrorCode::kTooLarge,
                fmt::format("the transcript has {} turns; a replay runs at most {} (split it)",
                            items.size(), kMaxTurns)}));
  } else {
    run->source = "turns";
    auto turns = d_.store.bots().listTurns(acc, bot, d_.opts.turns_kept);
    if (!turns) return run->done(errorResponse(turns.error()));
    // Newest first in the store: replay in the order they ran.
    for (auto it = turns->rbegin(); it != turns->rend(); ++it)
      items.push_back(bj::object{
          {"turnId", it->turn_id},
          {"conversationId", it->conversation.str()},
          {"input", parseOr(it->input_json, bj::object{})},
          {"response", it->response_json.empty() ? bj::value() : parseOr(it->response_json, {})},
          {"actions", parseOr(it->actions_json, bj::array{})},
          {"timings", parseOr(it->timings_json, bj::object{})},
          {"error", it->error}});
  }
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto t = recordedTurnFromJson(items[i]);
    if (!t)
      return run->done(
          errorResponse(Error{ErrorCode::kInvalid,
                              fmt::format("turn {} of the transcript: {}", i, t.error().message)}));
    if (!only_conversation.empty() && t->conversation_id != only_conversation) continue;
    run->turns.push_back(std::move(*t));
  }
  // The newest `limit` turns.
  if (run->turns.size() > static_cast<std::size_t>(limit))
    run->turns.erase(run->turns.begin(), run->turns.end() - static_cast<std::ptrdiff_t>(limit));
  run->deadline = std::chrono::steady_clock::now() + kBudget;
  next(run);
}

void ReplayRunner::next(const std::shared_ptr<Run>& run) {
  while (run->index < run->turns.size()) {
    const RecordedTurn& t = run->turns[run->index];
    bj::object result{{"index", run->index},
                      {"turnId", t.turn_id},
                      {"conversationId", t.conversation_id},
                      {"channel", store::channelName(t.channel)},
                      {"consumerMessage", t.consumer_message}};
    if (t.not_replayable || std::chrono::steady_clock::now() > run->deadline) {
      if (t.not_replayable) {
        result["status"] = "SKIPPED";
        result["reason"] = *t.not_replayable;
        ++run->skipped;
      } else {
        result["status"] = "NOT_RUN";
        result["reason"] =
            fmt::format("the replay's {} s were spent before this turn", kBudget.count());
        ++run->not_run;
      }
      run->results.push_back(std::move(result));
      ++run->index;
      continue;
    }
    auto req = functions::InvokeRequest::of(run->account, run->function)
                   .withInput(t.input_json)
                   .within(std::chrono::milliseconds(run->turn_timeout_ms))
                   .withRequestId(fmt::format("replay-{}-{}", t.turn_id, run->index))
                   .by(run->invoker);
    d_.work.add();
    d_.opts.invoke_code(
        run->account, run->version.code, run->version.env, std::move(req),
        [this, run, result = std::move(result)](functions::InvokeResult r) mutable {
          asio::post(d_.pool, [this, run, result = std::move(result), r = std::move(r)]() mutable {
            const RecordedTurn& t = run->turns[run->index];
            PlanOptions po;
            po.channel = t.channel;
            po.image_allowlist = d_.allowlists.forAccount(run->account);
            po.max_delay_s = d_.opts.max_delay_s;
            po.conversation_id = t.conversation_id;
            TurnSummary before = t.response_json
                                     ? summarizeResponse(*t.response_json, d_.validator, po)
                                     : summarizeInvocationError(t.error_code);
            TurnSummary after = r.ok ? summarizeResponse(r.result_json, d_.validator, po)
                                     : summarizeInvocationError(r.error_code);
            auto diffs = diffTurns(before, after);
            bj::array d;
            for (const auto& x : diffs) d.push_back(x.toJson());
            result["status"] = diffs.empty() ? "SAME" : "CHANGED";
            result["differences"] = std::move(d);
            result["before"] = before.toJson();
            result["after"] = after.toJson();
            if (!r.ok)
              result["afterError"] =
                  bj::object{{"code", r.error_code}, {"message", r.error_message}};
            result["durationMs"] = r.duration_ms;
            ++run->replayed;
            if (!diffs.empty()) ++run->changed;
            run->differences += static_cast<int>(diffs.size());
            run->results.push_back(std::move(result));
            ++run->index;
            try {
              next(run);
            } catch (const std::exception& e) {
              run->done(
                  errorResponse(Error{ErrorCode::kInternal, std::string("replay: ") + e.what()}));
            }
            d_.work.done();
          });
        });
    return;
  }
  finish(run);
}

void ReplayRunner::finish(const std::shared_ptr<Run>& run) {
  bj::object out{{"botId", run->bot.str()},
                 {"functionVersion", run->version.toJson()},
                 {"source", run->source},
                 {"turns", run->turns.size()},
                 {"replayed", run->replayed},
                 {"changed", run->changed},
                 {"same", run->replayed - run->changed},
                 {"skipped", run->skipped},
                 {"notRun", run->not_run},
                 {"differences", run->differences},
                 {"complete", run->not_run == 0},
                 {"results", std::move(run->results)}};
  run->done(api::Response{200, bj::serialize(out)});
}

}  // namespace parley::connector
