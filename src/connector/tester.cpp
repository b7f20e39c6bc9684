#include "connector/tester.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>

#include "common/json.h"
#include "common/random.h"
#include "connector/bot_config.h"
#include "connector/conversation_state.h"
#include "connector/function_versions.h"
#include "connector/input.h"
#include "connector/review.h"
#include "connector/sdes.h"

namespace parley::connector {

namespace bj = boost::json;
namespace asio = boost::asio;

namespace {

// Whether the bot still owns the tester's conversation.
enum class TesterState { kOpen, kClosed, kTransferred, kEscalated };

const char* testerStateName(TesterState s) {
  switch (s) {
    case TesterState::kOpen:
      return "OPEN";
    case TesterState::kClosed:
      return "CLOSED";
    case TesterState::kTransferred:
      return "TRANSFERRED";
    case TesterState::kEscalated:
      return "ESCALATED";
  }
  return "OPEN";
}

api::Response errorResponse(const Error& e) {
  bj::object err{{"code", errorCodeName(e.code)}, {"message", e.message}};
  return api::Response{httpStatus(e.code), bj::serialize(bj::object{{"error", std::move(err)}})};
}

bj::value parseOrString(const std::string& s) {
  boost::system::error_code ec;
  bj::value v = bj::parse(s, ec);
  return ec ? bj::value(s) : v;
}

}  // namespace

struct ConversationTester::Session {
  std::string id;
  AccountId account;
  BotId bot;
  UserId user;
  BotConfig config;
  FunctionVersion version;
  store::Conversation conv;
  std::string skill_name;
  bj::object lp_sdes;
  bj::array sdes_problems;
  std::int64_t next_seq = 0;
  std::size_t bytes = 0;
  TesterState state = TesterState::kOpen;
  // Why the bot no longer owns the conversation (the turn that ended it).
  std::string ended_by;
  bool busy = false;
  TimeMs last_used = 0;
  bj::array turns;
};

std::size_t ConversationTester::sessionsForTest() const {
  MutexLock lock(mu_);
  return sessions_.size();
}

bj::object ConversationTester::sessionJson(const Session& s) const {
  return bj::object{{"sessionId", s.id},
                    {"botId", s.bot.str()},
                    {"conversationId", s.conv.id.str()},
                    {"channel", store::channelName(s.conv.channel)},
                    {"functionVersion", s.version.toJson()},
                    {"state", testerStateName(s.state)},
                    {"endedBy", s.ended_by.empty() ? bj::value() : bj::value(s.ended_by)},
                    {"turnCount", s.turns.size()},
                    {"sdesProblems", s.sdes_problems},
                    {"turns", s.turns}};
}

Result<std::shared_ptr<ConversationTester::Session>> ConversationTester::find(
    const api::Caller& caller, const BotId& bot, const std::string& id) {
  MutexLock lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->account != caller.account || it->second->bot != bot ||
      it->second->user != caller.user)
    return notFound(fmt::format(
        "no tester session {} of this bot for you (sessions end after {} idle minutes); start "
        "one with POST bots/{}/tester",
        id, TesterLimits::kIdleMs / 60'000, bot.str()));
  if (d_.clock.nowMs() - it->second->last_used > TesterLimits::kIdleMs && !it->second->busy) {
    sessions_.erase(it);
    return notFound(fmt::format("tester session {} ended after {} idle minutes; start a new one",
                                id, TesterLimits::kIdleMs / 60'000));
  }
  it->second->last_used = d_.clock.nowMs();
  return it->second;
}

void ConversationTester::create(const api::Request& req, const BotId& bot,
                                std::function<void(api::Response)> done) {
  if (!d_.opts.invoke_code)
    return done(errorResponse(
        Error{ErrorCode::kUnavailable, "the conversation tester is not available on this server"}));
  auto body = req.body.empty() ? Result<bj::object>(bj::object{}) : json::parseObject(req.body);
  if (!body) return done(errorResponse(body.error()));
  const bj::value* ch = body->if_contains("channel");
  auto channel = parseChannel(ch ? *ch : bj::value());
  if (!channel) return done(errorResponse(channel.error()));
  for (const auto& [k, v] : *body)
    if (k != "channel" && k != "functionVersion")
      return done(errorResponse(
          Error{ErrorCode::kInvalid, fmt::format("unknown field '{}'; a tester session takes "
                                                 "'functionVersion' and 'channel'",
                                                 std::string_view(k))}));
  const AccountId& acc = req.caller.account;
  auto rec = d_.store.bots().getBot(acc, bot);
  if (!rec) return done(errorResponse(rec.error()));
  BotConfig cfg = botConfigFromStored(rec->config_json);
  if (std::find(cfg.conversation_types.begin(), cfg.conversation_types.end(), *channel) ==
      cfg.conversation_types.end())
    return done(errorResponse(
        Error{ErrorCode::kInvalid,
              fmt::format("bot {} does not serve {} conversations (conversationTypes); choose a "
                          "channel it serves or add it to the bot",
                          rec->name, store::channelName(*channel))}));
  const bj::value* spec = body->if_contains("functionVersion");
  auto version =
      resolveFunctionVersion(d_.store.functions(), acc, cfg.function, spec ? *spec : bj::value());
  if (!version) return done(errorResponse(version.error()));

  auto s = std::make_shared<Session>();
  s->id = randomUuid();
  s->account = acc;
  s->bot = bot;
  s->user = req.caller.user;
  s->version = std::move(*version);
  s->conv.id = ConversationId("tester-" + randomHex(8));
  s->conv.account = acc;
  s->conv.consumer = ConsumerId("tester-consumer-" + randomHex(4));
  s->conv.channel = *channel;
  s->conv.skill = cfg.skill_ids.empty() ? SkillId("-1") : cfg.skill_ids.front();
  s->conv.start_ts = d_.clock.nowMs();
  s->conv.context_json = "{}";
  s->skill_name = d_.skills.name(acc, s->conv.skill);
  if (cfg.engagement_attributes) {
    SdesResult sdes = buildLpSdes(s->conv, std::nullopt, d_.clock.nowMs());
    s->lp_sdes = std::move(sdes.lp_sdes);
    for (const auto& [code, message] : sdes.problems)
      s->sdes_problems.push_back(
          bj::object{{"code", std::string(kCodePrefix) + code}, {"message", message}});
  }
  s->config = std::move(cfg);
  s->last_used = d_.clock.nowMs();
  const bool chat = *channel == store::Channel::kChat;
  s->busy = chat;
  // `done` is called with no lock held (a caller may call the tester again from it).
  std::optional<api::Response> refused;
  {
    MutexLock lock(mu_);
    TimeMs now = d_.clock.nowMs();
    std::erase_if(sessions_, [&](const auto& kv) {
      return !kv.second->busy && now - kv.second->last_used > TesterLimits::kIdleMs;
    });
    // The account's least recently used sessions make room.
    for (;;) {
      std::size_t n = 0;
      std::map<std::string, std::shared_ptr<Session>>::iterator oldest = sessions_.end();
      for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
        if (it->second->account != acc) continue;
        ++n;
        if (!it->second->busy &&
            (oldest == sessions_.end() || it->second->last_used < oldest->second->last_used))
          oldest = it;
      }
      if (n < TesterLimits::kSessionsPerAccount) break;
      if (oldest == sessions_.end()) {
        refused = errorResponse(
            Error{ErrorCode::kLimitExceeded,
                  fmt::format("the account has {} tester sessions running a turn; try again when "
                              "one has answered",
                              n)});
        break;
      }
      sessions_.erase(oldest);
    }
    if (!refused) sessions_[s->id] = s;
  }
  if (refused) return done(std::move(*refused));
  if (!chat) {
    api::Response created;
    {
      MutexLock lock(mu_);
      created = api::Response{201, bj::serialize(sessionJson(*s))};
    }
    return done(std::move(created));
  }
  // A chat conversation starts with the bot's WELCOME turn.
  runTurn(s, req.caller, bj::object{}, std::move(done), [this, s](const bj::object&) {
    MutexLock lock(mu_);
    return api::Response{201, bj::serialize(sessionJson(*s))};
  });
}

void ConversationTester::message(const api::Request& req, const BotId& bot,
                                 const std::string& session,
                                 std::function<void(api::Response)> done) {
  if (!d_.opts.invoke_code)
    return done(errorResponse(
        Error{ErrorCode::kUnavailable, "the conversation tester is not available on this server"}));
  auto body = json::parseObject(req.body.empty() ? "{}" : req.body);
  if (!body) return done(errorResponse(body.error()));
  bj::object event;
  const bj::value* text = body->if_contains("text");
  const bj::value* ev = body->if_contains("event");
  if ((text != nullptr) == (ev != nullptr))
    return done(errorResponse(
        Error{ErrorCode::kInvalid,
              "send {\"text\": \"...\"} or {\"event\": {ContentEvent | RichContentEvent}}"}));
  if (text) {
    if (!text->is_string())
      return done(errorResponse(Error{ErrorCode::kInvalid, "'text' must be a string"}));
    if (text->as_string().size() > TesterLimits::kTextChars)
      return done(errorResponse(
          Error{ErrorCode::kTooLarge,
                fmt::format("'text' is longer than {} characters", TesterLimits::kTextChars)}));
    event = bj::object{
        {"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", text->as_string()}};
  } else {
    if (!ev->is_object())
      return done(errorResponse(Error{ErrorCode::kInvalid, "'event' must be an object"}));
    if (bj::serialize(*ev).size() > TesterLimits::kEventBytes)
      return done(
          errorResponse(Error{ErrorCode::kTooLarge, fmt::format("'event' is larger than {} bytes",
                                                                TesterLimits::kEventBytes)}));
    event = ev->as_object();
    store::Message probe;
    probe.originator_role = store::ParticipantRole::kConsumer;
    if (!classifyConsumerMessage(probe, event))
      return done(errorResponse(
          Error{ErrorCode::kInvalid,
                "'event' is not a consumer event the bot answers: a ContentEvent (text/plain, "
                "hosted/file, forms/...) or a RichContentEvent"}));
  }
  auto s = find(req.caller, bot, session);
  if (!s) return done(errorResponse(s.error()));
  // `done` is called with no lock held (a caller may call the tester again from it).
  std::optional<Error> refused;
  {
    MutexLock lock(mu_);
    Session& ss = **s;
    if (ss.busy)
      refused =
          Error{ErrorCode::kConflict,
                "the bot is still answering the previous message; send the next one after it"};
    else if (ss.state != TesterState::kOpen)
      refused =
          Error{ErrorCode::kConflict,
                fmt::format("the bot no longer owns this conversation ({}: {}); start a new tester "
                            "session",
                            testerStateName(ss.state), ss.ended_by)};
    else if (ss.turns.size() >= static_cast<std::size_t>(TesterLimits::kTurns) ||
             ss.bytes >= TesterLimits::kBytes)
      refused =
          Error{ErrorCode::kLimitExceeded,
                fmt::format("a tester session holds at most {} turns and {} MiB; start a new one",
                            TesterLimits::kTurns, TesterLimits::kBytes >> 20)};
    else
      ss.busy = true;
  }
  if (refused) return done(errorResponse(*refused));
  runTurn(*s, req.caller, std::move(event), std::move(done), [this, s = *s](const bj::object& t) {
    MutexLock lock(mu_);
    return api::Response{
        200, bj::serialize(bj::object{
                 {"turn", t},
                 {"session",
                  {{"sessionId", s->id},
                   {"state", testerStateName(s->state)},
                   {"endedBy", s->ended_by.empty() ? bj::value() : bj::value(s->ended_by)},
                   {"turnCount", s->turns.size()}}}})};
  });
}

void ConversationTester::runTurn(const std::shared_ptr<Session>& s, const api::Caller& caller,
                                 bj::object consumer_event, std::function<void(api::Response)> done,
                                 std::function<api::Response(const bj::object&)> answer) {
  TurnInput in;
  std::string consumer_message = "WELCOME";
  std::size_t turn_number = 0;
  {
    MutexLock lock(mu_);
    turn_number = s->turns.size() + 1;
    if (consumer_event.empty()) {
      in.kind = InputKind::kWelcome;
    } else {
      store::Message m;
      m.conversation = s->conv.id;
      m.sequence = s->next_seq++;
      m.originator_id = s->conv.consumer.str();
      m.originator_role = store::ParticipantRole::kConsumer;
      m.server_ts = d_.clock.nowMs();
      m.event_json = bj::serialize(consumer_event);
      in.kind = classifyConsumerMessage(m, consumer_event).value_or(InputKind::kText);
      in.through = m.sequence;
      in.messages.push_back(ConsumerMessage::fromStored(std::move(m)));
      const bj::value* msg = consumer_event.if_contains("message");
      consumer_message = msg && msg->is_string()              ? std::string(msg->as_string())
                         : in.kind == InputKind::kRichContent ? std::string(kRichContentMessage)
                                                              : std::string(kFileMessage);
    }
  }
  bj::object input = buildFunctionInput(in, s->conv, s->skill_name, d_.clock.nowMs(), s->lp_sdes);
  auto req = functions::InvokeRequest::of(s->account, s->config.function)
                 .withInput(bj::serialize(input))
                 .within(std::chrono::milliseconds(s->config.escalation.turn_timeout_ms))
                 .withRequestId(fmt::format("{}-{}", s->conv.id.str(), turn_number))
                 .by(invokerOf(caller));
  d_.work.add();
  d_.opts.invoke_code(
      s->account, s->version.code, s->version.env, std::move(req),
      [this, s, input = std::move(input), consumer_message, done = std::move(done),
       answer = std::move(answer)](functions::InvokeResult r) mutable {
        asio::post(d_.pool, [this, s, input = std::move(input), consumer_message,
                             done = std::move(done), answer = std::move(answer),
                             r = std::move(r)]() mutable {
          bj::object turn{{"turn", 0},
                          {"consumerMessage", consumer_message},
                          {"input", std::move(input)},
                          {"response", r.ok ? parseOrString(r.result_json) : bj::value()},
                          {"error", r.ok ? bj::value()
                                         : bj::value(bj::object{{"code", r.error_code},
                                                                {"message", r.error_message}})},
                          {"durationMs", r.duration_ms}};
          bj::array logs;
          for (const auto& l : r.logs)
            logs.push_back(bj::object{{"level", l.level},
                                      {"message", l.message},
                                      {"extras", parseOrString(l.extras_json)},
                                      {"timestamp", l.ts}});
          turn["logs"] = std::move(logs);
          PlanOptions po;
          po.channel = s->conv.channel;
          po.image_allowlist = d_.allowlists.forAccount(s->account);
          po.max_delay_s = d_.opts.max_delay_s;
          po.conversation_id = s->conv.id.str();
          bj::object review;
          std::optional<std::pair<std::string, std::string>> failure;
          if (r.ok) {
            review = reviewResponse(r.result_json, d_.validator, po);
            if (review["verdict"] == "REFUSED") {
              const bj::object& p = review["problems"].as_array().at(0).as_object();
              failure = {std::string(kCodePrefix) + json::getString(p, "code"),
                         json::getString(p, "message")};
            }
          } else {
            failure = {std::string(kCodePrefix) + codes::kInvokeLambda,
                       fmt::format("the function failed: {}: {}", r.error_code, r.error_message)};
          }
          turn["review"] = review.empty() ? bj::value() : bj::value(review);
          {
            MutexLock lock(mu_);
            std::int64_t published = 0;
            if (failure) {
              // What the connector's failure ladder would do (src/connector/README.md).
              const EscalationPolicy& pol = s->config.escalation;
              bj::array consumer;
              if (!pol.message.empty()) consumer.emplace_back(pol.message);
              turn["escalation"] = bj::object{
                  {"code", failure->first},
                  {"message", failure->second},
                  {"retries", pol.retries},
                  {"consumerSees", std::move(consumer)},
                  {"agentSees", fmt::format("{} Reason: {}: {}", pol.agent_message, failure->first,
                                            failure->second)},
                  {"transferToSkill", pol.skill.empty() ? bj::value() : bj::value(pol.skill)}};
              s->state = TesterState::kEscalated;
              s->ended_by =
                  fmt::format("turn {} escalated: {}", s->turns.size() + 1, failure->first);
              published = 2;
            } else {
              published = static_cast<std::int64_t>(review["consumerSees"].as_array().size() +
                                                    review["agentSees"].as_array().size());
              if (const bj::value& a = review["action"]; a.is_object()) {
                std::string kind = json::getString(a.as_object(), "action");
                if (kind == "CLOSE_CONVERSATION") {
                  s->state = TesterState::kClosed;
                  s->ended_by = fmt::format("turn {}: CLOSE_CONVERSATION", s->turns.size() + 1);
                } else if (kind == "TRANSFER") {
                  s->state = TesterState::kTransferred;
                  s->ended_by = fmt::format("turn {}: TRANSFER", s->turns.size() + 1);
                }
              }
            }
            // The bot's messages take sequence numbers too, as in a real conversation.
            s->next_seq += published;
            turn["turn"] = s->turns.size() + 1;
            turn["state"] = testerStateName(s->state);
            s->bytes += bj::serialize(turn).size();
            s->turns.push_back(turn);
            s->busy = false;
            s->last_used = d_.clock.nowMs();
          }
          api::Response resp;
          try {
            resp = answer(turn);
          } catch (const std::exception& e) {
            resp = errorResponse(Error{ErrorCode::kInternal, std::string("tester: ") + e.what()});
          }
          done(std::move(resp));
          d_.work.done();
        });
      });
}

api::Response ConversationTester::get(const api::Request& req, const BotId& bot,
                                      const std::string& session) {
  auto s = find(req.caller, bot, session);
  if (!s) return errorResponse(s.error());
  MutexLock lock(mu_);
  return api::Response{200, bj::serialize(sessionJson(**s))};
}

api::Response ConversationTester::remove(const api::Request& req, const BotId& bot,
                                         const std::string& session) {
  auto s = find(req.caller, bot, session);
  if (!s) return errorResponse(s.error());
  MutexLock lock(mu_);
  sessions_.erase(session);
  return api::Response{200, R"({"deleted":true})"};
}

}  // namespace parley::connector
