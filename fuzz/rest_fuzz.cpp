// REST request bodies, through the handlers that parse them: the server's core resources
// (handleCoreRest: skills, users, apikeys), the bot connector (BotService: bots,
// bots/image-allowlist), the functions platform (FunctionService: functions, secrets,
// allowlist) and the structured-content check (RichContentHandler: richcontent/validate), all
// on one memory store, called as an account admin holding every role.
//
// An input is a request line, a newline and the body: "POST users\n{...}". Routes that take a
// body are fuzzed (see kRoutes); any other first line picks one of them by its hash, so a
// mutated first line still reaches a body parser. Path placeholders: $UID (a user other than the
// caller), $BOT (a bot), $FN (a function). Path segments are UTF-8, as the HTTP app ensures.
// Deploy, invoke and the other routes that run code are not fuzzed here.
//
// Checks: nothing crashes; no body gets a 5xx; every response is JSON and every error response
// says {"error":{"code","message"}} with a message.

#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/api.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/testing/fake_clock.h"
#include "connector/bot_service.h"
#include "connector/richcontent/richcontent_handler.h"
#include "connector/testing/fake_runner.h"
#include "conversation/conversation_engine.h"
#include "functions/runtime.h"
#include "functions/service/function_service.h"
#include "functions/service/platform_host.h"
#include "fuzz/fuzz_support.h"
#include "server/auth.h"
#include "server/oauth.h"
#include "server/password_hasher.h"
#include "server/protocol/directory.h"
#include "server/rest.h"
#include "store/memory/memory_store.h"

namespace {

namespace bj = boost::json;
using namespace parley;

// Inputs served by one world before it is rebuilt (the memory store only grows).
constexpr int kInputsPerWorld = 2000;

// The routes whose bodies are parsed: method, path.
struct Route {
  const char* method;
  const char* path;
};
constexpr Route kRoutes[] = {
    {"POST", "skills"},         {"POST", "users"},
    {"PATCH", "users/$UID"},    {"POST", "apikeys"},
    {"POST", "bots"},           {"PUT", "bots/$BOT"},
    {"PATCH", "bots/$BOT"},     {"PUT", "bots/image-allowlist"},
    {"POST", "functions"},      {"PUT", "functions/$FN"},
    {"PATCH", "functions/$FN"}, {"PUT", "secrets/api_key"},
    {"PUT", "allowlist"},       {"POST", "richcontent/validate"},
};

enum class Owner { kCore, kBots, kFunctions, kRichContent };

struct World {
  testing::FakeClock clock;
  AccountId acc{"123"};
  std::unique_ptr<store::Store> store;
  std::unique_ptr<conversation::ConversationService> engine;
  server::InlinePasswordHasher hasher;
  std::unique_ptr<server::Auth> auth;
  std::unique_ptr<server::OAuth> oauth;
  server::InlineExecutor inline_exec;
  std::unique_ptr<server::protocol::Directory> directory;
  std::unique_ptr<server::RestDeps> rest;
  server::Principal admin;
  store::User other;
  connector::testing::FakeRunner runner;
  std::unique_ptr<connector::BotService> bots;
  crypto::SecretBox box = crypto::SecretBox::randomForTest();
  std::unique_ptr<functions::service::PlatformHost> host;
  std::unique_ptr<functions::FunctionRuntime> runtime;
  std::unique_ptr<functions::service::FunctionService> functions;
  std::unique_ptr<connector::richcontent::RichContentHandler> richcontent;
  std::string bot_id;
  std::string function_id;
  int inputs = 0;

  World() {
    store = store::makeMemoryStore(clock);
    store::Account a;
    a.id = acc;
    PARLEY_FUZZ_CHECK(store->accounts().createAccount(a).has_value(), "world: account");
    store::Skill s;
    s.account = acc;
    s.name = "general";
    PARLEY_FUZZ_CHECK(store->accounts().createSkill(s).has_value(), "world: skill");
    admin.user =
        makeUser("admin", {store::Role::kAdmin, store::Role::kAgentManager, store::Role::kAgent,
                           store::Role::kFaasAdmin, store::Role::kFaasDeveloper});
    other = makeUser("other", {store::Role::kAgent});
    conversation::Options o;
    o.threads = 1;
    o.tick_interval_ms = 0;
    engine = conversation::makeConversationService(*store, clock, o);
    PARLEY_FUZZ_CHECK(engine->recover().has_value(), "world: recover");
    auth = std::make_unique<server::Auth>(store->accounts(), clock, hasher, "jwt-key",
                                          server::AuthOptions{});
    oauth = std::make_unique<server::OAuth>(store->oauth(), *auth, clock, server::OAuthOptions{});
    directory = std::make_unique<server::protocol::Directory>(store->accounts(), inline_exec);
    PARLEY_FUZZ_CHECK(directory->preloadAll().has_value(), "world: directory");
    rest.reset(new server::RestDeps{*store, *engine, *directory, *auth, *oauth, inline_exec, clock,
                                    crypto::PasswordCost::kMinimumForTest});

    store::FunctionRecord f;
    f.uuid = FunctionId("11111111-2222-3333-4444-555555555555");
    f.account = acc;
    f.name = "bot_function";
    f.event_id = "bot_connectors_custom_integration";
    f.code = "function lambda(input, callback) { callback(null, {messages: ['hi']}); }";
    PARLEY_FUZZ_CHECK(store->functions().createFunction(f).has_value(), "world: function");
    function_id = f.uuid.str();

    connector::ConnectorOptions co;
    co.threads = 1;
    bots = std::make_unique<connector::BotService>(*store, *engine, runner, fuzz::validator(),
                                                   clock, co);
    PARLEY_FUZZ_CHECK(bots->start().has_value(), "world: bots");
    auto bot = bots->createBot(acc, bj::object{{"name", "fuzz bot"},
                                               {"functionUuid", function_id},
                                               {"skills", bj::array{"general"}}});
    PARLEY_FUZZ_CHECK(bot.has_value(), "world: bot");
    bot_id = json::getString(*bot, "id");

    host = std::make_unique<functions::service::PlatformHost>(store->functions(), box, clock);
    functions::RuntimeOptions ro;
    ro.threads = 1;
    ro.http_threads = 1;
    ro.host_threads = 1;
    auto rt = functions::FunctionRuntime::create(ro, *host, clock);
    PARLEY_FUZZ_CHECK(rt.has_value(), "world: function runtime");
    runtime = std::move(*rt);
    functions::service::FunctionServiceOptions fo;
    fo.threads = 1;
    functions =
        std::make_unique<functions::service::FunctionService>(*store, box, *runtime, clock, fo);
    richcontent = std::make_unique<connector::richcontent::RichContentHandler>(fuzz::validator());
  }
  ~World() {
    functions.reset();
    runtime.reset();
    bots.reset();
    engine.reset();
  }

  store::User makeUser(const std::string& login, std::vector<store::Role> roles) {
    store::User u;
    u.account = acc;
    u.login_name = login;
    u.pid = "pid-" + login;
    u.password_hash = "!";
    u.roles = std::move(roles);
    auto created = store->accounts().createUser(u);
    PARLEY_FUZZ_CHECK(created.has_value(), "world: user");
    return *created;
  }
};

World& world() {
  static std::unique_ptr<World> w;
  if (!w || w->inputs >= kInputsPerWorld) {
    w.reset();
    w = std::make_unique<World>();
  }
  ++w->inputs;
  return *w;
}

std::vector<std::string> split(std::string_view path) {
  std::vector<std::string> out;
  std::size_t begin = 0;
  for (;;) {
    std::size_t end = path.find('/', begin);
    out.emplace_back(path.substr(begin, end == std::string_view::npos ? end : end - begin));
    if (end == std::string_view::npos) return out;
    begin = end + 1;
  }
}

// The route of a request line, when it names one of kRoutes' shapes.
bool fuzzable(const std::string& method, const std::vector<std::string>& p) {
  // The HTTP app refuses a path that is not UTF-8 before any handler sees it.
  for (const auto& s : p)
    if (!json::isValidUtf8(s)) return false;
  auto is = [&](const char* m, std::size_t n, const char* first) {
    return method == m && p.size() == n && p[0] == first;
  };
  if (is("POST", 1, "skills") || is("POST", 1, "users") || is("PATCH", 2, "users") ||
      is("POST", 1, "apikeys") || is("POST", 1, "bots") || is("PUT", 2, "bots") ||
      is("PATCH", 2, "bots") || is("POST", 1, "functions") || is("PUT", 2, "functions") ||
      is("PATCH", 2, "functions") || is("PUT", 2, "secrets") || is("PUT", 1, "allowlist"))
    return !(p[0] == "functions" && p.size() == 2 && p[1] == "templates");
  return method == "POST" && p.size() == 2 && p[0] == "richcontent" && p[1] == "validate";
}

Owner ownerOf(const std::string& first) {
  if (first == "bots") return Owner::kBots;
  if (first == "functions" || first == "secrets" || first == "allowlist") return Owner::kFunctions;
  if (first == "richcontent") return Owner::kRichContent;
  return Owner::kCore;
}

api::Response call(World& w, api::Request req) {
  std::promise<api::Response> promise;
  auto future = promise.get_future();
  auto done = [&promise](api::Response r) { promise.set_value(std::move(r)); };
  switch (ownerOf(req.path[0])) {
    case Owner::kCore:
      server::handleCoreRest(*w.rest, w.admin, std::move(req), done);
      break;
    case Owner::kBots:
      w.bots->handle(std::move(req), done);
      break;
    case Owner::kFunctions:
      w.functions->handle(std::move(req), done);
      break;
    case Owner::kRichContent:
      w.richcontent->handle(std::move(req), done);
      break;
  }
  return future.get();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World& w = world();
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::size_t nl = input.find('\n');
  std::string_view line = input.substr(0, nl);
  std::string_view body = nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);

  std::string method;
  std::string path;
  if (auto sp = line.find(' '); sp != std::string_view::npos) {
    method = line.substr(0, sp);
    path = line.substr(sp + 1);
  }
  auto segments = split(path);
  if (!fuzzable(method, segments)) {
    const Route& r = kRoutes[std::hash<std::string_view>{}(line) % std::size(kRoutes)];
    method = r.method;
    segments = split(r.path);
  }
  for (auto& s : segments) {
    if (s == "$UID") s = w.other.id.str();
    if (s == "$BOT") s = w.bot_id;
    if (s == "$FN") s = w.function_id;
  }

  api::Request req;
  req.method = method;
  req.path = segments;
  req.body = std::string(body);
  req.caller = w.admin.caller();
  api::Response resp = call(w, std::move(req));

  PARLEY_FUZZ_CHECK(resp.status >= 200 && resp.status < 500, "a request body never gets a 5xx");
  auto parsed = json::parse(resp.body);
  PARLEY_FUZZ_CHECK(parsed.has_value(), "a response body is JSON");
  if (resp.status >= 400) {
    PARLEY_FUZZ_CHECK(parsed->is_object() && parsed->as_object().contains("error"),
                      "an error response has an \"error\" object");
    const auto& err = parsed->as_object().at("error");
    PARLEY_FUZZ_CHECK(err.is_object() && !json::getString(err.as_object(), "message").empty() &&
                          !json::getString(err.as_object(), "code").empty(),
                      "an error says its code and what was wrong");
  }
  return 0;
}
