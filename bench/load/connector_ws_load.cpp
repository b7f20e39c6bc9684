// WebSocket load generator for the bot connector: N consumer sockets (Beast, one thread each)
// each hold a messaging conversation with a bot backed by a REAL deployed JavaScript function
// and send M messages closed-loop. Reports turns/s, p50/p99/max consumer-message-to-bot-reply
// latency (publish sent → the bot's ContentEvent notification received on the socket) and
// resident memory per open conversation of the serving process.
//
// By default it boots the server in process (store, engine, function runtime, connector and
// server wired as main does), so memory is that of the server:
//   build/connector-bench/bench/load/parley_connector_ws_load --consumers 100 --messages 10
// Against a running `parley serve` whose connector has a started bot on `--skill`:
//   ... --url http://127.0.0.1:8080 --account <acc> --skill <skillId>   (no memory figure)

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "connector/bot_service.h"
#include "connector/testing/corpus.h"
#include "conversation/conversation_engine.h"
#include "functions/runtime.h"
#include "functions/testing/fake_host.h"
#include "server/server.h"
#include "store/memory/memory_store.h"
#include "ws_client.h"

namespace {

namespace bj = boost::json;
namespace conv = parley::conversation;
namespace t = parley::connector::testing;
using namespace parley;
using SteadyClock = std::chrono::steady_clock;

long rssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

// The bot's reply on the consumer socket: a ContentEvent not from the consumer.
bool isBotReply(const bj::value& f) {
  if (!f.is_object()) return false;
  const auto* type = f.as_object().if_contains("type");
  if (!type || *type != "ms.MessagingEventNotification") return false;
  for (const auto& ch : f.at("body").at("changes").as_array())
    if (ch.at("originatorMetadata").at("role") != "CONSUMER" &&
        ch.at("event").at("type") == "ContentEvent")
      return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"parley bot connector WebSocket load generator"};
  int consumers = 50, messages = 10;
  std::string url, account = "9100", skill;
  app.add_option("--consumers", consumers, "consumer sockets (one conversation each)");
  app.add_option("--messages", messages, "messages per consumer (closed loop)");
  app.add_option("--url", url, "an existing server (default: boot one in process)");
  app.add_option("--account", account);
  app.add_option("--skill", skill, "skill id of a started bot (with --url)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  SystemClock clock;
  std::unique_ptr<store::Store> st;
  std::unique_ptr<functions::FunctionRuntime> runtime;
  std::unique_ptr<conv::ConversationService> engine;
  std::shared_ptr<connector::BotService> connector;
  std::unique_ptr<server::Server> srv;
  functions::testing::FakeHost host;
  auto dir =
      std::filesystem::temp_directory_path() / ("parley_ws_load_" + std::to_string(::getpid()));
  long rss_before = 0;
  if (url.empty()) {
    std::filesystem::create_directories(dir);
    AccountId acc(account);
    st = store::makeMemoryStore(clock);
    (void)st->accounts().createAccount(store::Account{acc, "load", 300, 600, 3600, 0});
    skill = st->accounts().createSkill(store::Skill{acc, SkillId(), "general", 0})->id.str();
    auto rt = functions::FunctionRuntime::create({}, host, clock);
    if (!rt) return 1;
    runtime = std::move(*rt);
    const char* code =
        "function lambda(input, callback) {"
        "  callback(null, {messages: ['echo: ' + input.payload.message]});"
        "}";
    store::FunctionRecord f;
    f.uuid = FunctionId("ws-load-fn");
    f.account = acc;
    f.name = "echo";
    f.code = code;
    (void)st->functions().createFunction(f);
    if (!runtime->deploy(acc, f.uuid, functions::DeployedCode{code, {}, 1})) return 1;
    engine = conv::makeConversationService(*st, clock);
    (void)engine->recover();
    auto v = connector::richcontent::Validator::load(connector::testing::schemaDir());
    if (!v) return 1;
    connector::ConnectorOptions co;
    co.max_open_conversations = std::max(999, consumers);
    connector = std::make_shared<connector::BotService>(*st, *engine, *runtime, *v, clock, co);
    if (!connector->start()) return 1;
    server::ServerOptions so;
    so.data_dir = dir.string();
    so.http_listen = "127.0.0.1:0";
    so.https_listen = "";
    auto s = server::makeServer(*st, *engine, clock, so);
    if (!s) {
      std::fprintf(stderr, "server: %s\n", s.error().message.c_str());
      return 1;
    }
    srv = std::move(*s);
    (void)srv->addHandler(connector);
    auto ep = srv->start();
    if (!ep) return 1;
    url = ep->http_url;
    auto bot = connector->createBot(
        acc, bj::parse(R"({"name":"Load","functionUuid":"ws-load-fn","skills":["general"],
          "disclaimerAccepted":true})")
                 .as_object());
    if (!bot || !connector->startBot(acc, BotId(std::string(bot->at("id").as_string())))) return 1;
    rss_before = rssKb();
  }
  auto hp = t::HostPort::fromUrl(url);

  std::mutex mu;
  std::vector<double> latencies;
  std::atomic<int> failures{0}, replies{0}, opened{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < consumers; ++i) {
    threads.emplace_back([&, i] {
      try {
        auto [status, body] =
            t::httpRequest(hp, t::http::verb::post, "/api/account/" + account + "/signup", "");
        if (status != 200) throw std::runtime_error("signup " + std::to_string(status));
        t::ConsumerSocket ws;
        ws.connect(hp, account, std::string(bj::parse(body).at("jwt").as_string()));
        auto id =
            ws.request("cm.ConsumerRequestConversation",
                       {{"channelType", "MESSAGING"}, {"brandId", account}, {"skillId", skill}});
        auto resp = ws.response(id, 30000);
        if (!resp || !resp->at("body").as_object().contains("conversationId"))
          throw std::runtime_error("no conversation");
        std::string conv_id(resp->at("body").at("conversationId").as_string());
        auto sub =
            ws.request("ms.SubscribeMessagingEvents", {{"dialogId", conv_id}, {"fromSeq", 0}});
        if (!ws.response(sub, 30000)) throw std::runtime_error("no subscription");
        ws.pending.clear();
        ++opened;
        while (!go) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        for (int m = 0; m < messages; ++m) {
          auto t0 = SteadyClock::now();
          ws.request("ms.PublishEvent", {{"dialogId", conv_id},
                                         {"event",
                                          {{"type", "ContentEvent"},
                                           {"contentType", "text/plain"},
                                           {"message", "message " + std::to_string(m)}}}});
          bool got = false;
          for (int k = 0; k < 50 && !got; ++k) {
            auto f = ws.read(30000);
            if (!f) break;
            got = isBotReply(*f);
          }
          if (!got) throw std::runtime_error("no reply");
          double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
          std::lock_guard l(mu);
          latencies.push_back(ms);
          ++replies;
        }
        ws.close();
      } catch (const std::exception& e) {
        if (failures++ < 5) std::fprintf(stderr, "consumer %d: %s\n", i, e.what());
      }
    });
  }
  while (opened + failures < consumers) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  long rss_open = url.empty() ? 0 : rssKb();
  auto t0 = SteadyClock::now();
  go = true;
  for (auto& th : threads) th.join();
  double secs = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies.empty()
               ? 0.0
               : latencies[std::min(latencies.size() - 1,
                                    static_cast<std::size_t>(p * (latencies.size() - 1) + 0.5))];
  };
  bool in_process = srv != nullptr;
  bj::object out{{"consumers", consumers},
                 {"messagesPerConsumer", messages},
                 {"failures", failures.load()},
                 {"turns", replies.load()},
                 {"seconds", secs},
                 {"turnsPerSecond", replies / secs},
                 {"latencyMs",
                  {{"p50", pct(0.5)},
                   {"p90", pct(0.9)},
                   {"p99", pct(0.99)},
                   {"max", latencies.empty() ? 0.0 : latencies.back()}}}};
  if (in_process) {
    out["rssKbBeforeConversations"] = rss_before;
    out["rssKbWithOpenConversations"] = rss_open;
    // Includes the client side (threads, sockets) living in the same process.
    out["rssKbPerOpenConversationInclClient"] =
        static_cast<double>(rss_open - rss_before) / std::max(1, consumers);
  }
  std::printf("%s\n", bj::serialize(out).c_str());
  if (srv) srv->stop();
  srv.reset();
  if (connector) connector->stop();
  connector.reset();
  engine.reset();
  runtime.reset();
  std::filesystem::remove_all(dir);
  return failures == 0 ? 0 : 2;
}
