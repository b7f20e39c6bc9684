// `parley`: the composition root. Builds the concrete objects (store, conversation engine,
// function platform, bot connector, server), wires them, and runs `serve` or a CLI command.
// The only code that tests never link.

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "app/account_command.h"
#include "app/allocator.h"
#include "app/bus_health.h"
#include "app/cluster_limits.h"
#include "app/cluster_material.h"
#include "app/cluster_routing.h"
#include "app/conversation_forwarder.h"
#include "app/conversation_reader.h"
#include "app/conversation_relay.h"
#include "app/demo.h"
#include "app/local_api.h"
#include "app/node_presence.h"
#include "bus/bus.h"
#include "bus/invalidations.h"
#include "bus/nats_bus.h"
#include "cli/cli.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/thread_annotations.h"
#include "connector/bot_service.h"
#include "connector/review.h"
#include "connector/richcontent/richcontent_handler.h"
#include "conversation/conversation_engine.h"
#include "functions/runtime.h"
#include "functions/schedule/schedule_service.h"
#include "functions/schedule/scheduler.h"
#include "functions/service/function_service.h"
#include "functions/service/gateway.h"
#include "functions/service/platform_host.h"
#include "server/server.h"
#include "store/postgres/postgres_store.h"
#include "store/sqlite/sqlite_store.h"

namespace {

namespace bj = boost::json;
namespace fs = std::filesystem;

struct ServeFlags {
  std::string data = "./parley-data";
  std::string listen = "127.0.0.1:8080";
  std::string tls_listen = "127.0.0.1:8443";
  std::string tls_cert;
  std::string tls_key;
  std::string web;
  std::string log_level = "info";
  std::string log_format = "json";
  int threads = 0;
  bool demo = false;
  int session_ttl_s = 12 * 3600;
  int oauth_token_ttl_s = 3600;
  std::string schema_dir;  // "": the JSON Pollock schema compiled into the binary
  bool sqlite_batch_wal = true;
  // "sqlite" (DATA/parley.db) or a postgres:// / postgresql:// URI.
  std::string store = "sqlite";
  // Function sandbox.
  std::string function_isolation = "process";
  std::string function_channels = "io-threads";
  int function_workers = 2;
  int function_max_workers = 6;
  int function_cpu_limit_ms = 5'000;
  // Functions gateway: invocations of one account running at once (more get 429).
  std::size_t gateway_max_in_flight = 256;
  // Function schedules: missed times at most this old run once at the next pass (seconds).
  int schedule_catch_up_s = 3600;
  std::vector<std::string> outbound_allow;
  std::string metrics_token;
  bool metrics_tenant_labels = false;
  // SIGTERM/SIGINT: how long requests already read and running bot turns may take to finish.
  int drain_timeout_s = 10;
  // Cluster mode: this node's name ("": host name and port) and the address clients use.
  std::string node;
  std::string public_url;
  // The bus between nodes: "" (in-process, a node alone) or nats://HOST:PORT.
  std::string bus;
  // Cluster mode: how long a node's lease on a conversation lasts without renewal (ms).
  std::int64_t lease_ms = 3000;
};

std::string hostName() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  return host;
}

void printLine(const bj::object& o) {
  std::string line = bj::serialize(o) + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

// The console when --web is not given: the installed copy beside the binary
// (PREFIX/share/parley/web for PREFIX/bin/parley, see the root CMakeLists.txt), else DATA/web.
std::string defaultWebDir(const std::string& data_dir) {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path installed = exe.parent_path().parent_path() / "share" / "parley" / "web";
    if (fs::exists(installed / "index.html", ec)) return installed.string();
  }
  return (fs::path(data_dir) / "web").string();
}

// Calls the function service's REST handler as the demo admin and waits for the answer
// (startup only).
parley::api::Response callFunctions(parley::functions::service::FunctionService& svc,
                                    const parley::AccountId& acc, const parley::UserId& admin,
                                    std::string method, std::vector<std::string> path,
                                    std::string body = "") {
  parley::api::Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.body = std::move(body);
  r.caller.account = acc;
  r.caller.user = admin;
  r.caller.login_name = "admin";
  r.caller.roles = {"ADMIN", "FAAS_ADMIN", "FAAS_DEVELOPER"};
  auto promise = std::make_shared<std::promise<parley::api::Response>>();
  auto future = promise->get_future();
  svc.handle(std::move(r),
             [promise](parley::api::Response resp) { promise->set_value(std::move(resp)); });
  return future.get();
}

constexpr const char* kDemoFunctionName = "demo-echo";
constexpr const char* kDemoEchoCode = R"(function lambda(input, callback) {
  const payload = input.payload || {};
  // Chat conversations start with a WELCOME event before the consumer says anything.
  if (payload.event && payload.event.name === 'WELCOME') {
    return callback(null, { messages: ['Hi! I am the demo echo bot: I repeat what you write.'] });
  }
  callback(null, { messages: [`echo : ${payload.message}`] });
}
)";

struct DemoFunction {
  std::string uuid;
  bool deployed_here = false;  // this call deployed it (else it was Productive already)
};

// Creates (once) and deploys the demo echo function. Nodes sharing a store may race: a name
// taken since the list means another node created it (its uuid is used).
parley::Result<DemoFunction> ensureDemoFunction(parley::functions::service::FunctionService& svc,
                                                const parley::app::Demo& demo, int attempt = 0) {
  using namespace parley;
  AccountId acc(demo.account);
  UserId admin(demo.admin.user_id);
  auto list = callFunctions(svc, acc, admin, "GET", {"functions"});
  if (list.status != 200) return internalError("listing functions failed: " + list.body);
  std::string uuid;
  std::string state;
  if (auto v = json::parse(list.body)) {
    const bj::array* arr = v->is_array() ? &v->as_array() : nullptr;
    if (!arr && v->is_object() && v->as_object().contains("functions") &&
        v->as_object().at("functions").is_array())
      arr = &v->as_object().at("functions").as_array();
    if (arr) {
      for (const auto& f : *arr) {
        if (!f.is_object()) continue;
        const auto& o = f.as_object();
        if (json::getString(o, "name") == kDemoFunctionName) {
          uuid = json::getString(o, "uuid");
          state = json::getString(o, "state");
        }
      }
    }
  }
  if (uuid.empty()) {
    bj::object body{{"name", kDemoFunctionName},
                    {"description", "Demo echo bot (created by parley serve --demo)"},
                    {"event", "bot_connectors_custom_integration"},
                    {"code", kDemoEchoCode}};
    auto created = callFunctions(svc, acc, admin, "POST", {"functions"}, bj::serialize(body));
    if (created.status == 409 && attempt == 0) return ensureDemoFunction(svc, demo, attempt + 1);
    if (created.status != 201 && created.status != 200)
      return internalError("creating the demo function failed: " + created.body);
    auto o = json::parseObject(created.body);
    if (o) uuid = json::getString(*o, "uuid");
    if (uuid.empty()) return internalError("the demo function has no uuid: " + created.body);
  }
  if (state != "Productive") {
    auto deployed = callFunctions(svc, acc, admin, "POST", {"functions", uuid, "deploy"});
    if (deployed.status >= 300)
      return internalError("deploying the demo function failed: " + deployed.body);
    return DemoFunction{uuid, true};
  }
  return DemoFunction{uuid, false};
}

// Creates (once) the demo bot on the "general" skill for the demo bot user, serving the echo
// function, and starts it.
parley::Status ensureDemoBot(parley::store::Store& store, parley::connector::BotService& bots,
                             const parley::app::Demo& demo, const std::string& function_uuid,
                             int attempt = 0) {
  using namespace parley;
  AccountId acc(demo.account);
  auto existing = store.bots().listBots(acc);
  if (!existing) return std::unexpected(existing.error());
  for (const auto& b : *existing) {
    if (b.user.str() != demo.bot.user_id) continue;
    // Created before (here, or by another node sharing the store, maybe after this node's
    // start()): starting a running bot does nothing.
    auto started = bots.startBot(acc, b.id);
    if (!started) return std::unexpected(started.error());
    return {};
  }
  bj::object body{{"name", "demo-echo-bot"},
                  {"vendor", "CUSTOM_INTEGRATION"},
                  {"functionUuid", function_uuid},
                  {"conversationTypes", bj::array{"MESSAGING", "CHAT"}},
                  {"skills", bj::array{"general"}},
                  {"disclaimerAccepted", true},
                  {"userId", demo.bot.user_id},
                  {"escalation", bj::object{{"skill", "escalation"},
                                            {"message", "Let me get you to a person."},
                                            {"agentMessage", "The bot failed."},
                                            {"failureMessage", "Sorry, nobody can take over now."},
                                            {"retries", 1},
                                            {"turnTimeoutMs", 10000}}}};
  auto created = bots.createBot(acc, body);
  if (!created && created.error().code == ErrorCode::kConflict && attempt == 0)
    return ensureDemoBot(store, bots, demo, function_uuid, attempt + 1);  // another node's
  if (!created) return std::unexpected(created.error());
  auto started = bots.startBot(acc, BotId(json::getString(*created, "id")));
  if (!started) return std::unexpected(started.error());
  return {};
}

// The bot connector as seen by what is made before it (the engine's content check): empty until
// set, and never keeps it alive.
class ConnectorRef {
 public:
  void set(const std::shared_ptr<parley::connector::BotService>& b) {
    parley::MutexLock lock(mu_);
    bot_ = b;
  }
  std::shared_ptr<parley::connector::BotService> get() const {
    parley::MutexLock lock(mu_);
    return bot_.lock();
  }

 private:
  mutable parley::Mutex mu_;
  std::weak_ptr<parley::connector::BotService> bot_ PARLEY_GUARDED_BY(mu_);
};

// The account's stored image allowlist (bots/image-allowlist) from the connector's memory, or
// none while there is no connector.
parley::connector::richcontent::AllowlistProvider allowlistOf(
    std::shared_ptr<const ConnectorRef> ref) {
  return [ref = std::move(ref)](
             const parley::AccountId& acc) -> std::optional<std::vector<std::string>> {
    auto b = ref->get();
    return b ? b->imageAllowlist(acc) : std::nullopt;
  };
}

int fail(const std::string& what, const parley::Error& e) {
  spdlog::critical("{}: {}", what, e.message);
  std::fprintf(stderr, "parley: %s: %s\n", what.c_str(), e.message.c_str());
  return 1;
}

int serve(const ServeFlags& f) {
  using namespace parley;
  // A bad --store is a usage error (exit 2), found before anything starts.
  if (f.store != "sqlite") {
    Status st = store::isPostgresUri(f.store)
                    ? store::checkPostgresUri(f.store)
                    : invalid("--store is sqlite or a postgres:// (postgresql://) URI, not '" +
                              f.store + "'");
    if (!st) {
      std::fprintf(stderr, "parley: --store: %s\n", st.error().message.c_str());
      return 2;
    }
  }
  if (!f.public_url.empty()) {
    if (auto u = server::checkPublicUrl(f.public_url); !u) {
      std::fprintf(stderr, "parley: --public-url: %s\n", u.error().message.c_str());
      return 2;
    }
  }
  if (!f.bus.empty()) {
    if (auto b = bus::checkNatsUrl(f.bus); !b) {
      std::fprintf(stderr, "parley: --bus: %s\n", b.error().message.c_str());
      return 2;
    }
  }
  if (f.node.size() > 128 || std::any_of(f.node.begin(), f.node.end(),
                                         [](unsigned char ch) { return ch < 0x21 || ch > 0x7e; })) {
    std::fprintf(stderr, "parley: --node: at most 128 printable ASCII characters without spaces\n");
    return 2;
  }
  // Block the stop signals in every thread; main waits for them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  log::setup(f.log_level, f.log_format == "text");
  app::enableAllocatorBackgroundPurge();
  std::error_code ec;
  fs::create_directories(f.data, ec);
  if (ec)
    return fail("cannot create the data directory " + f.data,
                Error{ErrorCode::kInternal, ec.message()});
  const std::string data_dir = fs::absolute(f.data).lexically_normal().string();

  // The listeners are bound first: a node without --node is named after its port
  // ("host:port"), and that name is in the store's leases and on the bus before the server
  // starts. Connections made meanwhile wait in the backlog until it serves.
  std::shared_ptr<server::ListenSocket> http_bound;
  std::shared_ptr<server::ListenSocket> https_bound;
  if (!f.listen.empty()) {
    auto b = server::bindListenSocket(f.listen);
    if (!b) return fail("cannot start the server", b.error());
    http_bound = std::move(*b);
  }
  if (!f.tls_listen.empty()) {
    auto b = server::bindListenSocket(f.tls_listen);
    if (!b) return fail("cannot start the server", b.error());
    https_bound = std::move(*b);
  }
  // The node's name: in the store's leases (presence, conversation ownership), on the bus and
  // in the `listening` line.
  const std::string who =
      !f.node.empty() ? f.node
                      : app::defaultNodeName(hostName(), http_bound ? http_bound->host() : "",
                                             https_bound ? https_bound->host() : "");

  SystemClock clock;
  Result<std::unique_ptr<store::Store>> store = std::unique_ptr<store::Store>();
  if (f.store == "sqlite") {
    store::SqliteOptions store_options;
    store_options.batch_wal_writes = f.sqlite_batch_wal;
    store =
        store::openSqliteStore((fs::path(data_dir) / "parley.db").string(), clock, store_options);
  } else {
    store = store::openPostgresStore(f.store, clock);
  }
  if (!store) return fail("cannot open the store", store.error());
  spdlog::info("store: {} (schema version {})", f.store == "sqlite" ? "sqlite" : "postgres",
               (*store)->schemaVersion());

  // Nodes sharing a PostgreSQL store share their TLS material (unless brought), consumer JWT key
  // and secrets key through it (the first node's); a SQLite store is one node's own.
  const bool shared_store = f.store != "sqlite";
  if (shared_store) {
    if (auto* cluster = (*store)->cluster()) {
      const bool brought_tls = f.tls_listen.empty() || !f.tls_cert.empty() || !f.tls_key.empty();
      if (auto st = app::shareClusterMaterial(
              *cluster, data_dir, brought_tls ? app::SharedTls::kBrought : app::SharedTls::kShared);
          !st)
        return fail("cannot share the cluster material", st.error());
    }
  }

  // The bus between nodes (in-process without --bus). Changes other nodes hold in memory
  // (deployments, bots, image allowlists) are published as invalidations; the handlers are
  // registered below, once what they reload exists, and the subscription starts before serving.
  std::unique_ptr<bus::Bus> node_bus;
  if (f.bus.empty()) {
    node_bus = bus::makeLocalBus();
  } else {
    bus::NatsOptions bus_options;
    bus_options.name = "parley " + who;
    auto b = bus::connectNatsBus(f.bus, bus_options);
    if (!b) return fail("cannot connect to the bus " + f.bus, b.error());
    node_bus = std::move(*b);
  }
  spdlog::info("bus: {}", node_bus->describe());
  // Cluster mode: the login and token throttles and the functions' HTTP rate limit count what
  // the other nodes count (app/cluster_limits.h).
  std::shared_ptr<app::ClusterLimits> cluster_limits;
  if (node_bus->shared()) {
    cluster_limits = std::make_shared<app::ClusterLimits>(*node_bus, who);
    if (auto s = cluster_limits->start(); !s) return fail("cannot subscribe to the bus", s.error());
  }
  // Nodes sharing a PostgreSQL store all need the bus (app/node_presence.h).
  std::unique_ptr<app::NodePresence> presence;
  if (shared_store) {
    if (auto* cluster = (*store)->cluster()) {
      auto p = app::NodePresence::start(*cluster, clock, who, !f.bus.empty());
      if (!p) return fail("--bus", p.error());
      presence = std::move(*p);
    }
  }
  auto invalidations = std::make_unique<bus::Invalidations>(*node_bus);

  std::optional<app::Demo> demo;
  if (f.demo) {
    auto d = app::ensureDemo(**store, clock, data_dir);
    if (!d) return fail("cannot create the demo data", d.error());
    demo = *d;
  }

  // The structured-content validator: bot responses (connector), `richcontent/validate`, and
  // the engine's content check, so that what consumers and agents publish meets the same rules
  // as what bots send before it is stored.
  auto validator = f.schema_dir.empty() ? connector::richcontent::Validator::loadEmbedded()
                                        : connector::richcontent::Validator::load(f.schema_dir);
  if (!validator)
    return fail(f.schema_dir.empty()
                    ? std::string("cannot compile the built-in structured-content schema")
                    : "cannot load the structured-content schema from " + f.schema_dir +
                          " (--schema-dir: a folder with JSON Pollock's rich_content.json and the "
                          "files it refers to; leave it out for the built-in schema)",
                validator.error());
  spdlog::info("structured-content schema: {}",
               f.schema_dir.empty()
                   ? "json-pollock " +
                         std::string(connector::richcontent::embeddedJsonPollockVersion()) +
                         " (built in)"
                   : f.schema_dir);
  // The account's image allowlist lives in the bot connector, which needs the engine first;
  // until it is set no allowlist applies (HTTPS is still required).
  auto allowlist_source = std::make_shared<ConnectorRef>();
  conversation::Options engine_options;
  engine_options.content_check = [v = *validator, allowlist = allowlistOf(allowlist_source)](
                                     const conversation::ContentToCheck& in) {
    return connector::richcontent::checkPublishedEvent(
        v, in.account, in.event,
        in.channel == store::Channel::kChat ? connector::richcontent::Channel::kChat
                                            : connector::richcontent::Channel::kMessaging,
        allowlist);
  };
  // A shared store: each open conversation is driven by the one node holding its lease.
  // A node cut off from the bus the others have gives its conversations up to them
  // (app/bus_health.h): after a third of the lease disconnected, while another node marks the
  // bus up in the store. Checked on a thread of its own: the lease rounds only read the answer.
  std::unique_ptr<app::BusHealth> bus_health;
  if (shared_store) {
    engine_options.node = who;
    engine_options.lease_ms = f.lease_ms;
    if (auto* cluster = (*store)->cluster(); cluster && node_bus->shared()) {
      bus_health = std::make_unique<app::BusHealth>(
          *cluster, clock, who, [b = node_bus.get()] { return b->connected(); },
          std::max<std::int64_t>(1, f.lease_ms / 3), f.lease_ms);
      bus_health->check();
      bus_health->start(std::chrono::milliseconds(std::max<std::int64_t>(1, f.lease_ms / 3)));
      engine_options.may_hold_leases = [h = bus_health.get()] { return h->mayHoldLeases(); };
    }
  }
  auto engine = conversation::makeConversationService(**store, clock, engine_options);
  if (auto s = engine->recover(); !s) return fail("cannot recover conversations", s.error());
  // Cluster mode: the protocol's publishes and changes of a conversation another node holds go
  // to that node over the bus (app/conversation_forwarder.h); this node serves the others'.
  std::unique_ptr<app::ConversationForwarder> forwarder;
  if (!engine_options.node.empty() && node_bus->shared()) {
    if (auto* cluster = (*store)->cluster()) {
      app::ForwarderOptions fo;
      fo.node = who;
      forwarder = std::make_unique<app::ConversationForwarder>(
          *engine, *cluster, *node_bus,
          [e = engine.get()](const ConversationId& id) {
            return conversation::holdsConversation(*e, id);
          },
          fo);
      if (auto s = forwarder->start(); !s)
        return fail("cannot serve forwarded commands", s.error());
    }
  }
  // Cluster mode: agents, rings and their accepts across the nodes (app/cluster_routing.h);
  // it starts once the server's sessions exist (below).
  std::unique_ptr<app::ClusterRouting> routing;
  conversation::Subscription routing_subscription;
  if (forwarder) {
    app::ClusterRoutingOptions ro;
    ro.node = who;
    routing = std::make_unique<app::ClusterRouting>(*engine, *node_bus, ro);
    forwarder->setRouting(routing.get());
  }
  conversation::ConversationService& conversations =
      forwarder ? static_cast<conversation::ConversationService&>(*forwarder) : *engine;

  // ---- Function platform (src/functions) ---------------------------------------------------
  // PlatformHost → FunctionRuntime → FunctionService; restoreDeployments() before serving; the
  // service is registered with the server below (REST `functions`, `secrets`, `allowlist`).
  auto secret_box =
      crypto::SecretBox::loadOrCreate((fs::path(data_dir) / "keys" / "secrets.key").string());
  if (!secret_box) return fail("cannot load the secrets key", secret_box.error());
  store::Store& store_ref = **store;
  functions::service::PlatformHost function_host(
      store_ref.functions(), *secret_box, clock,
      [&store_ref](const AccountId& acc, const std::string& id) {
        return app::readConversationForFunctions(store_ref, acc, id);
      });
  // SDEUtil.addSDEs and GDPRUtil check the conversation (its account, consumer, visitor ids,
  // hosted files) in the store.
  function_host.setConversationFacts(
      [&store_ref](const AccountId& acc,
                   const std::string& id) -> Result<functions::service::ConversationFacts> {
        auto c = store_ref.conversations().getConversation(acc, ConversationId(id));
        if (!c) return std::unexpected(c.error());
        auto msgs = store_ref.conversations().listMessages(c->id, 0, 10'000);
        if (!msgs) return std::unexpected(msgs.error());
        return functions::service::ConversationFacts{c->consumer.str(), c->context_json,
                                                     app::hostedFilePaths(*msgs)};
      });
  // Toolbelt.LpClient's and GDPRUtil's requests reach the server's router once the server
  // exists (below).
  auto [local_api_gate, local_api] = app::LocalApiGate::make();
  function_host.setLocalApi(std::move(local_api));
  functions::RuntimeOptions runtime_options;
  runtime_options.isolation = f.function_isolation == "in-process"
                                  ? functions::WorkerIsolation::kInProcess
                                  : functions::WorkerIsolation::kProcess;
  runtime_options.threads = f.function_workers;
  runtime_options.max_workers = std::max(f.function_workers, f.function_max_workers);
  runtime_options.cpu_limit = std::chrono::milliseconds(f.function_cpu_limit_ms);
  runtime_options.outbound_allow = f.outbound_allow;
  runtime_options.limit_peers = cluster_limits;
  auto function_runtime = functions::FunctionRuntime::create(runtime_options, function_host, clock);
  if (!function_runtime) return fail("cannot start the function runtime", function_runtime.error());
  functions::service::FunctionServiceOptions function_service_options;
  // The test invoke shows what the connector would do with a bot function's result.
  function_service_options.review_result =
      [v = *validator, allowlist = allowlistOf(allowlist_source)](
          const AccountId& acc, const std::string& event, store::Channel channel,
          std::string_view result) -> std::optional<boost::json::object> {
    if (!connector::isBotResponseEvent(event)) return std::nullopt;
    connector::PlanOptions o;
    o.channel = channel;
    o.image_allowlist = allowlist(acc);
    return connector::reviewResponse(result, v, o);
  };
  function_service_options.on_change = [inv = invalidations.get()](const AccountId& acc,
                                                                   const FunctionId& id) {
    inv->publish({"function", acc, id.str()});
  };
  auto function_service = std::make_shared<functions::service::FunctionService>(
      store_ref, *secret_box, **function_runtime, clock, function_service_options);
  if (auto n = function_service->restoreDeployments(); !n) {
    spdlog::warn("restoring function deployments: {}", n.error().message);
  } else {
    spdlog::info("restored {} function deployments", *n);
  }
  std::string demo_function;
  if (demo) {
    auto f = ensureDemoFunction(*function_service, *demo);
    if (f) {
      demo_function = f->uuid;
      // Another node deployed it, maybe after this node restored the deployments: restore again
      // so that it runs here too.
      if (!f->deployed_here && shared_store) {
        if (auto n = function_service->restoreDeployments(); !n)
          spdlog::warn("restoring function deployments: {}", n.error().message);
      }
    } else {
      spdlog::warn("demo: the echo function could not be created or deployed: {}",
                   f.error().message);
    }
  }

  // ---- Bot connector (src/connector) -------------------------------------------------------
  // BotService subscribes itself to the engine in start() and resumes stored bots; it invokes
  // functions through the service's recording Runner (stored logs, metrics).
  connector::ConnectorOptions connector_options;
  // Turns run on the conversations' own strands, on the engine's threads; the connector is
  // stopped before the engine is destroyed.
  // Engagement attributes: the server's protocol hub keeps the consumer profiles set with
  // SetUserProfile where the connector reads them.
  auto consumer_profiles = std::make_shared<conversation::ConsumerProfiles>();
  connector_options.consumer_profiles = consumer_profiles;
  // The conversation tester and replay run any version of a bot's function (the draft
  // included) in a fresh context, as a test invoke does.
  connector_options.invoke_code = [rt = function_runtime->get()](
                                      const AccountId& acc, std::string code,
                                      std::vector<store::EnvVar> env, functions::InvokeRequest req,
                                      std::function<void(functions::InvokeResult)> done) {
    rt->invokeCode(acc, std::move(code), std::move(env), std::move(req), std::move(done));
  };
  connector_options.on_change = [inv = invalidations.get()](const AccountId& acc,
                                                            std::string_view kind,
                                                            const std::string& id) {
    inv->publish({std::string(kind), acc, id});
  };
  // A stopped bot's conversations are handed on by their owners, on whichever node.
  if (forwarder) connector_options.hand_off_through = forwarder.get();
  auto bot_service = std::make_shared<connector::BotService>(
      **store, *engine, function_service->runner(), *validator, clock, connector_options);
  if (auto s = bot_service->start(); !s) return fail("cannot start the bot connector", s.error());
  // Another node's changes: reload what this node keeps of them.
  invalidations->on("function", [fs = function_service.get(),
                                 bs = bot_service.get()](const bus::Invalidation& i) {
    fs->refreshFunction(i.account, FunctionId(i.id));
    bs->applyRemoteChange(i.account, "function", i.id);  // hook functions
  });
  for (const char* kind : {"bot", "image-allowlist", "skills"})
    invalidations->on(kind, [bs = bot_service.get()](const bus::Invalidation& i) {
      bs->applyRemoteChange(i.account, i.kind, i.id);
    });
  // Another node's credential change (logout, revocation, deleted API key or OAuth app): this
  // node forgets the account's verified tokens. The server exists only later; until then (and
  // after invalidations->stop(), before it is destroyed) nothing is cached to drop.
  auto credentials_target = std::make_shared<std::atomic<server::Server*>>(nullptr);
  invalidations->on("credentials", [credentials_target](const bus::Invalidation& i) {
    if (auto* s = credentials_target->load()) s->dropCachedCredentials(i.account);
  });
  if (auto s = invalidations->start(); !s) return fail("cannot subscribe to the bus", s.error());
  allowlist_source->set(bot_service);
  if (demo && !demo_function.empty()) {
    if (auto b = ensureDemoBot(**store, *bot_service, *demo, demo_function); !b)
      spdlog::warn("demo: the echo bot could not be created or started: {}", b.error().message);
  }

  server::ServerOptions so;
  so.data_dir = data_dir;
  so.http_listen = f.listen;
  so.https_listen = f.tls_listen;
  so.http_bound = http_bound;
  so.https_bound = https_bound;
  so.tls_cert = f.tls_cert;
  so.tls_key = f.tls_key;
  so.threads = f.threads;
  so.web_dir = f.web.empty() ? defaultWebDir(data_dir) : f.web;
  so.session_ttl_ms = static_cast<TimeMs>(f.session_ttl_s) * 1000;
  so.oauth_token_ttl_ms = static_cast<TimeMs>(f.oauth_token_ttl_s) * 1000;
  so.metrics_token = f.metrics_token;
  so.consumer_profiles = consumer_profiles;
  so.metrics_tenant_labels =
      f.metrics_tenant_labels ? server::TenantLabels::kKept : server::TenantLabels::kSummed;
  so.public_url = f.public_url;
  so.on_credentials_change = [inv = invalidations.get()](const AccountId& acc) {
    inv->publish({"credentials", acc, ""});
  };
  so.login_throttle.peers = cluster_limits;
  auto server = server::makeServer(**store, conversations, clock, so);
  if (!server) return fail("cannot set up the server", server.error());
  credentials_target->store(server->get());
  // Forgotten before the server is destroyed, on every path out of this scope.
  std::shared_ptr<void> forget_server(
      nullptr, [credentials_target](void*) { credentials_target->store(nullptr); });
  local_api_gate->open(**server);
  // Closed before the server is destroyed, on every path out of this scope too.
  std::shared_ptr<void> close_local_api(nullptr, [g = local_api_gate](void*) { g->close(); });

  if (auto st = (*server)->addHandler(function_service); !st)
    return fail("cannot register the function service", st.error());
  (*server)->addMetricsSource([fs = function_service.get()] { return fs->prometheusText(); });
  // The functions gateway (faasGW): deployed functions on their warm contexts, through the
  // service's recording Runner like the connector.
  functions::service::GatewayOptions gateway_options;
  gateway_options.max_in_flight_per_account = std::max<std::size_t>(1, f.gateway_max_in_flight);
  auto gateway =
      std::make_shared<functions::service::Gateway>(function_service->runner(), **function_runtime,
                                                    store_ref.functions(), clock, gateway_options);
  (*server)->setGateway(gateway);
  // A node cut off from the cluster's bus answers /healthz with 503, so a balancer's health
  // check (tools/cluster.sh's HAProxy: `option httpchk GET /healthz`) sends clients elsewhere.
  if (bus_health)
    (*server)->setHealthCheck([h = bus_health.get()]() -> std::optional<std::string> {
      if (h->mayHoldLeases()) return std::nullopt;
      return std::string(
          "cut off from the cluster's bus (NATS): its conversations are handed to the other "
          "nodes");
    });
  // Function schedules: REST `schedules`, and the scheduler that runs them through the same
  // recording Runner (started once the server serves; its first pass applies the missed-runs
  // rule to what came due while the server was down).
  if (auto st = (*server)->addHandler(
          std::make_shared<functions::schedule::ScheduleService>(store_ref, clock));
      !st)
    return fail("cannot register the schedules", st.error());
  functions::schedule::SchedulerOptions scheduler_options;
  scheduler_options.catch_up_window = std::chrono::seconds(f.schedule_catch_up_s);
  auto scheduler = std::make_unique<functions::schedule::FunctionScheduler>(
      store_ref, function_service->runner(), clock, scheduler_options);
  (*server)->addMetricsSource([s = scheduler.get()] { return s->prometheusText(); });
  (*server)->addMetricsSource([rt = function_runtime->get()] { return rt->prometheusText(); });
  if (cluster_limits)
    (*server)->addMetricsSource([l = cluster_limits] { return l->prometheusText(); });
  if (auto st = (*server)->addHandler(bot_service); !st)
    return fail("cannot register the bot connector", st.error());
  if (auto st = (*server)->addHandler(std::make_shared<connector::richcontent::RichContentHandler>(
          *validator,
          // The account's stored image allowlist (bots/image-allowlist), from the connector's
          // memory: no store call on the io thread.
          allowlistOf(allowlist_source)));
      !st)
    return fail("cannot register the structured-content validator", st.error());
  (*server)->addMetricsSource([b = bot_service.get()] { return b->prometheusText(); });
  (*server)->addMetricsSource([s = store->get()] { return store::sqlitePrometheusText(*s); });
  (*server)->addMetricsSource([s = store->get()] { return store::postgresPrometheusText(*s); });

  // Cluster mode: this node's conversation events go to the other nodes' sessions, and theirs
  // to this node's sessions (app/conversation_relay.h). Nothing with the in-process bus.
  std::unique_ptr<app::ConversationRelay> relay;
  conversation::Subscription relay_subscription;
  if (node_bus->shared()) {
    if (auto* sessions = (*server)->sessionEvents()) {
      relay =
          std::make_unique<app::ConversationRelay>(*node_bus, *sessions, store_ref.conversations());
      if (auto s = relay->start(); !s) return fail("cannot subscribe to the bus", s.error());
      // The node takes other nodes' events of the conversations its sessions watch.
      (*server)->setSessionInterest(relay.get());
      relay_subscription = engine->subscribe(*relay);
      if (routing) {
        if (auto s = routing->start(*sessions); !s)
          return fail("cannot start cluster routing", s.error());
        routing_subscription = engine->subscribe(*routing);
      }
    }
  }

  auto endpoints = (*server)->start();
  if (!endpoints) return fail("cannot start the server", endpoints.error());
  // The worker channels are read on the io threads from here on (a gateway request's answer is
  // read and written there); back on the runtime's own I/O threads before the io threads stop,
  // on every way out.
  if (f.function_channels == "io-threads")
    (*function_runtime)->readChannelsOn((*server)->ioContexts());
  // Holds the runtime's owner, not the runtime: on the normal way out the runtime is reset
  // before this scope ends (and its channels were moved back before the io threads stopped).
  struct ChannelsOff {
    std::unique_ptr<functions::FunctionRuntime>& rt;
    ~ChannelsOff() {
      if (rt) rt->readChannelsOnOwnThreads();
    }
  } channels_off{*function_runtime};
  scheduler->start();

  printLine(bj::object{{"event", "listening"},
                       {"http", endpoints->http_url},
                       {"https", endpoints->https_url},
                       {"ca", endpoints->ca_path},
                       {"node", who}});
  if (demo) {
    auto user = [](const app::DemoUser& u) {
      return bj::object{{"username", u.username}, {"password", u.password}};
    };
    std::string console =
        !f.public_url.empty()
            ? (f.public_url.ends_with("/") ? f.public_url : f.public_url + "/")
            : (endpoints->https_url.empty() ? endpoints->http_url : endpoints->https_url) + "/";
    printLine(bj::object{{"event", "demo"},
                         {"account", demo->account},
                         {"admin", user(demo->admin)},
                         {"agent", user(demo->agent)},
                         {"bot", user(demo->bot)},
                         {"skills", bj::object{{"general", demo->skill_general},
                                               {"human", demo->skill_human},
                                               {"escalation", demo->skill_escalation}}},
                         {"console", console},
                         {"function", demo_function}});
  }
  spdlog::info("parley serving (data {})", data_dir);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("received signal {}: draining (at most {} s), then shutting down", sig,
               f.drain_timeout_s);
  // The drain, within --drain-timeout of the signal: no new connection or request (requests
  // that arrive are refused with 503); every request already read is answered (a publish is
  // acknowledged or refused, never committed unanswered); then no new bot turn starts and the
  // running ones finish, their replies reaching the still-open sockets; turns still running at
  // the deadline stop and stay pending, as do consumer messages not answered yet (the next start
  // runs them).
  const auto drain_end =
      std::chrono::steady_clock::now() + std::chrono::seconds(std::max(0, f.drain_timeout_s));
  auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::max(
        drain_end - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration{}));
  };
  if (!(*server)->drain(left())) spdlog::warn("drain: requests still in flight at the deadline");
  // No scheduled run starts after this; the runs in flight finish (within their deadline).
  scheduler.reset();
  bot_service->drain(left());
  // Then: stop the network (acceptors closed, sockets closed with 1001 after the frames queued
  // before, the engine unsubscribed), then the connector, then the engine (drains its queues;
  // completions for sockets land in the stopped io_context), then destroy the server (which
  // frees them), then the function service and runtime, then the store (flushes).
  (*function_runtime)->readChannelsOnOwnThreads();  // the connector still invokes after this
  (*server)->stop();
  invalidations->stop();  // no other node's change is applied from here on
  relay_subscription.reset();
  (*server)->setSessionInterest(nullptr);
  if (relay) relay->stop();
  routing_subscription.reset();
  if (routing) routing->stop();  // rings are no longer offered to other nodes, nor taken from them
  bot_service->stop();
  bot_service.reset();
  forwarder.reset();  // fails the calls still waiting for an owner; waits for its callbacks
  routing.reset();
  engine.reset();
  local_api_gate->close();
  relay.reset();
  server->reset();
  gateway.reset();
  function_service.reset();
  invalidations.reset();
  if (cluster_limits) cluster_limits->stop();  // the runtime keeps it, not the bus
  node_bus.reset();
  presence.reset();
  function_runtime->reset();
  store->reset();
  spdlog::info("parley stopped");
  spdlog::default_logger()->flush();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // `parley __function-worker ...`: a sandboxed function worker started by `serve` (not for
  // people; not in --help).
  if (auto rc = parley::functions::runFunctionWorkerIfAsked(argc, argv)) return *rc;
  CLI::App app{"Parley: a self-hosted contact-centre platform with serverless bots"};
  app.require_subcommand(1);
  ServeFlags f;
  auto* serve_cmd = app.add_subcommand("serve", "Run the server");
  serve_cmd->add_option("--data", f.data, "Data directory")->capture_default_str();
  serve_cmd->add_option("--listen", f.listen, "Plain HTTP listener HOST:PORT (\"\" disables)")
      ->capture_default_str();
  serve_cmd->add_option("--tls-listen", f.tls_listen, "HTTPS listener HOST:PORT (\"\" disables)")
      ->capture_default_str();
  serve_cmd->add_option("--tls-cert", f.tls_cert,
                        "TLS certificate chain (PEM); default: generated");
  serve_cmd->add_option("--tls-key", f.tls_key, "TLS private key (PEM)");
  serve_cmd->add_option(
      "--web", f.web,
      "Directory of the built console (web/dist); default: PREFIX/share/parley/web "
      "of an installed binary, else DATA/web");
  serve_cmd->add_option("--threads", f.threads, "io threads (0 = cores)")->capture_default_str();
  serve_cmd->add_option("--log-level", f.log_level, "trace|debug|info|warn|error")
      ->capture_default_str();
  serve_cmd->add_option("--log-format", f.log_format, "json|text")->capture_default_str();
  serve_cmd->add_option("--session-ttl", f.session_ttl_s, "Login session lifetime in seconds")
      ->capture_default_str();
  serve_cmd
      ->add_option("--oauth-token-ttl", f.oauth_token_ttl_s,
                   "Lifetime in seconds of the functions gateway's OAuth 2.0 access tokens "
                   "(expires_in)")
      ->check(CLI::Range(1, 24 * 3600))
      ->capture_default_str();
  serve_cmd->add_option("--schema-dir", f.schema_dir,
                        "Folder with a JSON Pollock schema (rich_content.json, ...) to use instead "
                        "of the built-in json-pollock schema");
  serve_cmd->add_flag("--demo", f.demo, "Create the demo account, users and bot");
  serve_cmd
      ->add_option("--function-isolation", f.function_isolation,
                   "Where functions run: process (sandboxed worker processes) or in-process "
                   "(threads of the server: no seccomp, no resource limits, a crash ends the "
                   "server)")
      ->check(CLI::IsMember({"process", "in-process"}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--function-channels", f.function_channels,
                   "Which threads read the function workers' results: io-threads (the server's "
                   "io threads: less CPU and fewer thread wake-ups per invocation) or "
                   "own-threads (one thread per worker: results read at once while the io "
                   "threads are busy, more throughput under many concurrent gateway requests)")
      ->check(CLI::IsMember({"io-threads", "own-threads"}))
      ->capture_default_str();
  serve_cmd->add_option("--function-workers", f.function_workers, "Function workers kept running")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  serve_cmd
      ->add_option("--function-max-workers", f.function_max_workers,
                   "Function workers at most, counting those started while others are busy")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  serve_cmd
      ->add_option("--function-cpu-limit-ms", f.function_cpu_limit_ms,
                   "CPU time one function invocation may use (0 = no limit; the 30 s wall "
                   "limit stays)")
      ->check(CLI::Range(0, 600'000))
      ->capture_default_str();
  serve_cmd
      ->add_option("--gateway-max-in-flight", f.gateway_max_in_flight,
                   "Functions gateway invocations of one account running at once; more are "
                   "refused with 429")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  serve_cmd
      ->add_option("--schedule-catch-up", f.schedule_catch_up_s,
                   "Seconds: a function schedule's missed times (downtime, a run still going) "
                   "at most this old run once at the next pass; older ones are skipped and "
                   "logged")
      ->check(CLI::Range(0, 30 * 24 * 3600))
      ->capture_default_str();
  serve_cmd
      ->add_option("--metrics-token", f.metrics_token,
                   "Bearer token that GET /metrics needs; without one /metrics is off")
      ->envname("PARLEY_METRICS_TOKEN");
  serve_cmd->add_flag("--metrics-tenant-labels", f.metrics_tenant_labels,
                      "Keep the account, bot and function labels in /metrics (default: summed)");
  serve_cmd
      ->add_option("--drain-timeout", f.drain_timeout_s,
                   "SIGTERM/SIGINT: seconds that requests already read and running bot turns "
                   "get to finish (the rest of the turns stay pending for the next start)")
      ->capture_default_str()
      ->check(CLI::Range(0, 600));
  serve_cmd
      ->add_option("--store", f.store,
                   "Where durable state lives: sqlite (DATA/parley.db) or a PostgreSQL URI, "
                   "postgres://USER[:PW]@HOST:PORT/DB or postgresql://... with libpq parameters "
                   "(e.g. ?sslmode=require); an empty database is migrated")
      ->capture_default_str();
  serve_cmd
      ->add_option("--sqlite-batch-wal", f.sqlite_batch_wal,
                   "Write each commit's WAL frames together (one write per 124 KiB instead of "
                   "two per page; same durability). false: SQLite's default VFS")
      ->capture_default_str();
  serve_cmd
      ->add_option(
          "--outbound-allow", f.outbound_allow,
          "Internal addresses functions' HTTP requests may reach (default: public addresses only): "
          "loopback, private, link-local, cgnat, metadata or a CIDR block; repeat or separate by "
          "commas")
      ->delimiter(',');
  serve_cmd->add_option("--node", f.node,
                        "This node's name in a cluster, unique per cluster (default: host name "
                        "and port)");
  serve_cmd->add_option("--bus", f.bus,
                        "The bus between the nodes of a cluster, nats://HOST:PORT (NATS with "
                        "JetStream); required with a PostgreSQL store shared by several nodes "
                        "(default: none, a node alone)");
  serve_cmd
      ->add_option("--lease-ms", f.lease_ms,
                   "Cluster mode (PostgreSQL store): how long a node's ownership of a "
                   "conversation lasts without renewal; renewed every third of it, and a dead "
                   "node's conversations are taken by the others within about 4/3 of it "
                   "(default: 3000)")
      ->check(CLI::Range(std::int64_t{300}, std::int64_t{600'000}));
  serve_cmd->add_option("--public-url", f.public_url,
                        "The address clients use, http[s]://HOST[:PORT] (a balancer in front of "
                        "the nodes); CSDS answers with it (default: this node's listener)");
  parley::cli::registerLoginCommand(app);
  parley::cli::registerFunctionCommands(app);
  parley::cli::registerBotCommands(app);
  parley::app::registerAccountCommands(app);
  CLI11_PARSE(app, argc, argv);
  if (serve_cmd->parsed()) {
    try {
      return serve(f);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "parley: fatal: %s\n", e.what());
      return 1;
    }
  }
  return 0;
}
