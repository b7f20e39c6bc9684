// Load generator for the bot connector, in process: N consumers each hold an open messaging
// conversation with a bot backed by a REAL deployed JavaScript function (V8), and send M
// messages closed-loop (the next message after the bot's reply). Reports turns/s, p50/p99/max
// consumer-message-to-bot-reply latency, and resident memory per open conversation.
//
//   build/connector-bench/bench/load/parley_connector_load --conversations 500 --messages 10
//   ... --store sqlite --data /tmp/parley-load    (SQLite store instead of the memory store)
//
// It drives the conversation engine directly (no sockets): the WebSocket path needs main to
// wire the connector into `parley serve` (see src/connector/README.md); this measures the
// engine + connector + function runtime + store part of that path.

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "connector/bot_service.h"
#include "connector/testing/corpus.h"
#include "conversation/conversation_engine.h"
#include "functions/runtime.h"
#include "functions/testing/fake_host.h"
#include "store/memory/memory_store.h"
#include "store/sqlite/sqlite_store.h"

namespace {

namespace bj = boost::json;
namespace conv = parley::conversation;
using namespace parley;
using SteadyClock = std::chrono::steady_clock;

const AccountId kAcc("9000");

long rssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

template <class T, class F>
Result<T> call(F&& f) {
  auto p = std::make_shared<std::promise<Result<T>>>();
  auto fut = p->get_future();
  f([p](Result<T> r) { p->set_value(std::move(r)); });
  return fut.get();
}

// Closed-loop consumers: on each bot reply, record the latency and send the next message.
class Driver final : public conv::ConversationListener {
 public:
  Driver(conv::ConversationService& engine, int messages) : engine_(engine), messages_(messages) {}

  void add(const store::Conversation& c) {
    std::lock_guard l(mu_);
    state_[c.id.str()] = State{c, 0, {}};
  }
  void sendFirst(const std::string& id) { send(id); }

  void onMessageAdded(const conv::MessageAdded& e) override {
    if (e.message.originator_role == "CONSUMER" || e.message.audience != "ALL") return;
    std::string id = e.message.conversation.str();
    bool more = false;
    {
      std::lock_guard l(mu_);
      auto it = state_.find(id);
      if (it == state_.end()) return;
      latencies_.push_back(
          std::chrono::duration<double, std::milli>(SteadyClock::now() - it->second.sent_at)
              .count());
      ++replies_;
      more = it->second.sent < messages_;
      if (!more) ++finished_;
    }
    if (more) send(id);
    cv_.notify_all();
  }

  bool waitAll(std::size_t conversations, std::chrono::seconds timeout) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, timeout, [&] { return finished_ >= conversations; });
  }
  std::vector<double> latencies() {
    std::lock_guard l(mu_);
    return latencies_;
  }
  std::size_t replies() {
    std::lock_guard l(mu_);
    return replies_;
  }

 private:
  struct State {
    store::Conversation conv;
    int sent = 0;
    SteadyClock::time_point sent_at;
  };
  void send(const std::string& id) {
    conv::PublishRequest req;
    {
      std::lock_guard l(mu_);
      auto& s = state_.at(id);
      ++s.sent;
      s.sent_at = SteadyClock::now();
      req.actor = conv::Actor::ofConsumer(kAcc, s.conv.consumer);
      req.conversation = s.conv.id;
      req.event_json = bj::serialize(bj::object{{"type", "ContentEvent"},
                                                {"contentType", "text/plain"},
                                                {"message", "message " + std::to_string(s.sent)}});
    }
    engine_.publish(std::move(req), [](Result<conv::Published> r) {
      if (!r) std::fprintf(stderr, "publish failed: %s\n", r.error().message.c_str());
    });
  }

  conv::ConversationService& engine_;
  int messages_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, State> state_;
  std::vector<double> latencies_;
  std::size_t replies_ = 0;
  std::size_t finished_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"parley bot connector load generator (in process)"};
  int conversations = 200, messages = 10, engine_threads = 2, connector_threads = 2,
      function_threads = 2;
  std::string store_kind = "memory", data_dir = "/tmp/parley-connector-load";
  app.add_option("--conversations", conversations, "open conversations (concurrent consumers)");
  app.add_option("--messages", messages, "messages per consumer (closed loop)");
  app.add_option("--store", store_kind, "memory or sqlite");
  app.add_option("--data", data_dir, "directory for the sqlite store");
  app.add_option("--engine-threads", engine_threads);
  app.add_option("--connector-threads", connector_threads);
  app.add_option("--function-threads", function_threads);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  SystemClock clock;
  std::unique_ptr<store::Store> st;
  if (store_kind == "sqlite") {
    std::filesystem::remove_all(data_dir);
    std::filesystem::create_directories(data_dir);
    auto s = store::openSqliteStore(data_dir + "/parley.db", clock);
    if (!s) {
      std::fprintf(stderr, "sqlite: %s\n", s.error().message.c_str());
      return 1;
    }
    st = std::move(*s);
  } else {
    st = store::makeMemoryStore(clock);
  }
  (void)st->accounts().createAccount(store::Account{kAcc, "load", 300, 600, 3600, 0});
  auto skill = st->accounts().createSkill(store::Skill{kAcc, SkillId(), "bots", 0});
  (void)st->accounts().createSkill(store::Skill{kAcc, SkillId(), "escalation", 0});

  functions::testing::FakeHost host;
  functions::RuntimeOptions ro;
  ro.threads = function_threads;
  auto runtime = functions::FunctionRuntime::create(ro, host, clock);
  if (!runtime) {
    std::fprintf(stderr, "runtime: %s\n", runtime.error().message.c_str());
    return 1;
  }
  const char* code =
      "function lambda(input, callback) {"
      "  callback(null, {messages: ['echo: ' + input.payload.message]});"
      "}";
  store::FunctionRecord f;
  f.uuid = FunctionId("load-fn");
  f.account = kAcc;
  f.name = "echo";
  f.code = code;
  (void)st->functions().createFunction(f);
  if (auto s = (*runtime)->deploy(kAcc, f.uuid, functions::DeployedCode{code, {}, 1}); !s) {
    std::fprintf(stderr, "deploy: %s\n", s.error().message.c_str());
    return 1;
  }

  conv::Options eo;
  eo.threads = engine_threads;
  auto engine = conv::makeConversationService(*st, clock, eo);
  (void)engine->recover();
  auto validator = connector::richcontent::Validator::load(connector::testing::schemaDir());
  if (!validator) {
    std::fprintf(stderr, "schema: %s\n", validator.error().message.c_str());
    return 1;
  }
  connector::ConnectorOptions co;
  co.threads = connector_threads;
  co.max_open_conversations = std::max(999, conversations);
  auto service =
      std::make_unique<connector::BotService>(*st, *engine, **runtime, *validator, clock, co);
  if (auto s = service->start(); !s) return 1;
  auto bot = service->createBot(
      kAcc, bj::parse(R"({"name":"Load","functionUuid":"load-fn","skills":["bots"],
        "disclaimerAccepted":true,"escalation":{"skill":"escalation"}})")
                .as_object());
  if (!bot) {
    std::fprintf(stderr, "bot: %s\n", bot.error().message.c_str());
    return 1;
  }
  BotId bot_id(std::string(bot->at("id").as_string()));
  if (auto s = service->startBot(kAcc, bot_id); !s) {
    std::fprintf(stderr, "start: %s\n", s.error().message.c_str());
    return 1;
  }

  Driver driver(*engine, messages);
  auto sub = engine->subscribe(driver);
  long rss_before = rssKb();
  std::vector<std::string> ids;
  for (int i = 0; i < conversations; ++i) {
    conv::ConversationRequest req;
    req.account = kAcc;
    req.consumer = ConsumerId("load-consumer-" + std::to_string(i));
    req.skill = skill->id;
    auto c = call<store::Conversation>([&](auto cb) { engine->requestConversation(req, cb); });
    if (!c) {
      std::fprintf(stderr, "conversation: %s\n", c.error().message.c_str());
      return 1;
    }
    driver.add(*c);
    ids.push_back(c->id.str());
  }
  auto t0 = SteadyClock::now();
  for (const auto& id : ids) driver.sendFirst(id);
  bool ok = driver.waitAll(ids.size(), std::chrono::seconds(600));
  double secs = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  long rss_after = rssKb();
  auto lat = driver.latencies();
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0.0
                       : lat[std::min(lat.size() - 1,
                                      static_cast<std::size_t>(p * (lat.size() - 1) + 0.5))];
  };
  bj::object out{{"ok", ok},
                 {"store", store_kind},
                 {"conversations", conversations},
                 {"messagesPerConversation", messages},
                 {"turns", driver.replies()},
                 {"seconds", secs},
                 {"turnsPerSecond", driver.replies() / secs},
                 {"latencyMs",
                  {{"p50", pct(0.5)},
                   {"p90", pct(0.9)},
                   {"p99", pct(0.99)},
                   {"max", lat.empty() ? 0.0 : lat.back()}}},
                 {"rssKbBefore", rss_before},
                 {"rssKbAfter", rss_after},
                 {"rssKbPerConversation",
                  static_cast<double>(rss_after - rss_before) / std::max(1, conversations)}};
  std::printf("%s\n", bj::serialize(out).c_str());
  sub.reset();
  service.reset();
  engine.reset();
  runtime->reset();
  return ok ? 0 : 2;
}
