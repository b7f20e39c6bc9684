// Tests of the CLI: option parsing, the saved config, the lpf project layout, `invoke --local`
// in the real V8 sandbox, and every remote command against a small in-process HTTP server that
// forwards the REST API to a real FunctionService (memory store, real runtime).

#include "cli/cli.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/config.h"
#include "cli/http_client.h"
#include "cli/project.h"
#include "common/json.h"
#include "common/testing/api_request.h"
#include "common/testing/call.h"
#include "common/testing/fake_clock.h"
#include "common/testing/temp_dir.h"
#include "functions/runtime.h"
#include "functions/schedule/schedule_service.h"
#include "functions/service/function_service.h"
#include "functions/service/platform_host.h"
#include "functions/templates.h"
#include "store/memory/memory_store.h"

namespace parley::cli {
namespace {

namespace fs = std::filesystem;
namespace bj = boost::json;

using parley::testing::TempDir;

std::string readAll(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- option parsing --------------------------------------------------------------------------

struct Parsed {
  std::vector<FunctionCommand> functions;
  std::vector<LoginCommand> logins;
};

int parse(std::vector<std::string> args, Parsed& out, int rc = 0) {
  CLI::App app("parley");
  app.require_subcommand(1);
  registerFunctionCommands(app, [&](const FunctionCommand& c) {
    out.functions.push_back(c);
    return rc;
  });
  registerLoginCommand(app, [&](const LoginCommand& c) {
    out.logins.push_back(c);
    return rc;
  });
  std::vector<char*> argv;
  args.insert(args.begin(), "parley");
  for (auto& a : args) argv.push_back(a.data());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
    return 0;
  } catch (const CLI::ParseError& e) {
    return e.get_exit_code() == 0 ? -1 : e.get_exit_code();
  }
}

TEST(CliOptions, ScheduleOptions) {
  Parsed p;
  ASSERT_EQ(parse({"function", "schedule", "bot", "--cron", "*/5 * * * *", "--payload",
                   R"({"a":1})", "--paused"},
                  p),
            0);
  ASSERT_EQ(p.functions.size(), 1u);
  EXPECT_EQ(p.functions[0].verb, "schedule");
  EXPECT_EQ(p.functions[0].cron, "*/5 * * * *");
  EXPECT_EQ(p.functions[0].payload, R"({"a":1})");
  EXPECT_TRUE(p.functions[0].paused);
  Parsed d;
  ASSERT_EQ(parse({"function", "schedule", "bot", "--delete", "s-1"}, d), 0);
  EXPECT_EQ(d.functions[0].delete_id, "s-1");
  // One action at a time; --payload and --paused only with --cron.
  Parsed x;
  EXPECT_NE(parse({"function", "schedule", "bot", "--cron", "* * * * *", "--delete", "s-1"}, x), 0);
  EXPECT_NE(parse({"function", "schedule", "bot", "--pause", "a", "--resume", "b"}, x), 0);
  EXPECT_NE(parse({"function", "schedule", "bot", "--payload", "{}"}, x), 0);
  EXPECT_TRUE(x.functions.empty());
}

TEST(CliOptions, FunctionVerbs) {
  Parsed p;
  ASSERT_EQ(parse({"function", "init", "bot", "--event", "bot_connectors_custom_integration",
                   "--dir", "/tmp/proj", "-d", "my bot"},
                  p),
            0);
  ASSERT_EQ(p.functions.size(), 1u);
  EXPECT_EQ(p.functions[0].verb, "init");
  EXPECT_EQ(p.functions[0].name, "bot");
  EXPECT_EQ(p.functions[0].event, "bot_connectors_custom_integration");
  EXPECT_EQ(p.functions[0].dir, "/tmp/proj");
  EXPECT_EQ(p.functions[0].description, "my bot");

  Parsed q;
  ASSERT_EQ(parse({"function", "invoke", "bot", "--local"}, q), 0);
  EXPECT_EQ(q.functions[0].verb, "invoke");
  EXPECT_TRUE(q.functions[0].local);
  EXPECT_EQ(q.functions[0].dir, ".");

  Parsed l;
  ASSERT_EQ(parse({"function", "logs", "bot", "--level", "Error", "--limit", "5", "--since", "17",
                   "--json"},
                  l),
            0);
  EXPECT_EQ(l.functions[0].level, "Error");
  EXPECT_EQ(l.functions[0].limit, 5);
  EXPECT_EQ(l.functions[0].since, 17);
  EXPECT_TRUE(l.functions[0].json);

  Parsed g;
  ASSERT_EQ(parse({"function", "get"}, g), 0);
  EXPECT_EQ(g.functions[0].what, "functions");
  Parsed g2;
  ASSERT_EQ(parse({"function", "get", "deployments", "bot"}, g2), 0);
  EXPECT_EQ(g2.functions[0].what, "deployments");
  EXPECT_EQ(g2.functions[0].name, "bot");

  for (const char* verb : {"push", "pull", "deploy", "undeploy"}) {
    Parsed v;
    ASSERT_EQ(parse({"function", verb, "bot"}, v), 0) << verb;
    EXPECT_EQ(v.functions[0].verb, verb);
  }
}

TEST(CliOptions, Errors) {
  Parsed p;
  EXPECT_NE(parse({"function", "push"}, p), 0);               // name required
  EXPECT_NE(parse({"function", "get", "everything"}, p), 0);  // not functions|deployments
  EXPECT_NE(parse({"function", "logs", "x", "--limit", "0"}, p), 0);
  EXPECT_NE(parse({"function"}, p), 0);  // a verb is required
  EXPECT_NE(parse({"function", "fly", "x"}, p), 0);
  EXPECT_TRUE(p.functions.empty());
  // A failing command becomes the exit code.
  Parsed f;
  EXPECT_EQ(parse({"function", "deploy", "x"}, f, 1), 1);
  EXPECT_EQ(f.functions.size(), 1u);
}

TEST(CliOptions, Login) {
  Parsed p;
  ASSERT_EQ(parse({"login", "--server", "https://127.0.0.1:8443", "--account", "123", "--username",
                   "admin", "--password", "pw"},
                  p),
            0);
  ASSERT_EQ(p.logins.size(), 1u);
  EXPECT_EQ(p.logins[0].server, "https://127.0.0.1:8443");
  EXPECT_EQ(p.logins[0].account, "123");
  EXPECT_EQ(p.logins[0].username, "admin");
  EXPECT_EQ(p.logins[0].password, "pw");
  Parsed q;
  EXPECT_NE(parse({"login", "--server", "https://x"}, q), 0);  // account, username required
  EXPECT_NE(parse({"login", "--server", "https://x", "--account", "1", "--username", "u", "--ca",
                   "/no/such/ca.pem"},
                  q),
            0);
}

TEST(CliOptions, PublicRegistrationAddsSubcommands) {
  CLI::App app("parley");
  registerFunctionCommands(app);
  registerLoginCommand(app);
  EXPECT_NE(app.get_subcommand("function"), nullptr);
  EXPECT_NE(app.get_subcommand("login"), nullptr);
  EXPECT_NE(app.get_subcommand("function")->get_subcommand("invoke"), nullptr);
}

// ---- config ----------------------------------------------------------------------------------

TEST(CliConfig, SaveLoadWithMode0600) {
  TempDir dir;
  std::string path = dir.path() + "/nested/cli.json";
  EXPECT_EQ(loadConfig(path).error().code, ErrorCode::kNotFound);
  EXPECT_NE(loadConfig(path).error().message.find("parley login"), std::string::npos);
  CliConfig c{"https://127.0.0.1:8443", "123", "bearer-xyz", "/data/tls/ca.pem"};
  ASSERT_TRUE(saveConfig(path, c));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto back = loadConfig(path);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->server, c.server);
  EXPECT_EQ(back->account, c.account);
  EXPECT_EQ(back->bearer, c.bearer);
  EXPECT_EQ(back->ca, c.ca);
  std::ofstream(path) << "{\"server\":1}";
  EXPECT_EQ(loadConfig(path).error().code, ErrorCode::kInvalid);
}

TEST(CliConfig, DefaultPathHonoursParleyConfig) {
  const char* old = std::getenv("PARLEY_CONFIG");
  std::string saved = old ? old : "";
  ::setenv("PARLEY_CONFIG", "/tmp/x/cli.json", 1);
  EXPECT_EQ(defaultConfigPath().value(), "/tmp/x/cli.json");
  ::unsetenv("PARLEY_CONFIG");
  const char* home = std::getenv("HOME");
  if (home) {
    EXPECT_EQ(defaultConfigPath().value(), std::string(home) + "/.config/parley/cli.json");
  }
  if (old) ::setenv("PARLEY_CONFIG", saved.c_str(), 1);
}

// ---- project layout --------------------------------------------------------------------------

TEST(CliProject, InitWritesTheLpfLayout) {
  TempDir dir;
  FunctionCommand cmd;
  cmd.verb = "init";
  cmd.name = "mybot";
  cmd.event = "bot_connectors_custom_integration";
  cmd.dir = dir.path();
  std::stringstream out, err;
  ASSERT_EQ(runFunctionCommand(cmd, out, err), 0) << err.str();
  fs::path fn = fs::path(dir.path()) / "functions" / "mybot";
  EXPECT_EQ(readAll(fn / "index.js"),
            functions::templateFor("bot_connectors_custom_integration").code);
  auto config = json::parseObject(readAll(fn / "config.json"));
  ASSERT_TRUE(config);
  EXPECT_EQ(json::getString(*config, "name"), "mybot");
  EXPECT_EQ(json::getString(*config, "event"), "bot_connectors_custom_integration");
  auto input = config->at("input").as_object();
  EXPECT_TRUE(input.at("headers").is_array());
  EXPECT_EQ(json::getString(input.at("payload").as_object(), "message"), "hi");
  EXPECT_TRUE(config->at("environmentVariables").is_array());
  auto settings = json::parseObject(readAll(fs::path(dir.path()) / "functions" / "settings.json"));
  ASSERT_TRUE(settings);
  EXPECT_TRUE(settings->at("secrets").is_array());
  EXPECT_TRUE(settings->at("whitelist").is_array());

  std::stringstream out2, err2;
  EXPECT_EQ(runFunctionCommand(cmd, out2, err2), 1);  // exists already
  EXPECT_NE(err2.str().find("already exists"), std::string::npos);
  cmd.name = "other";
  cmd.event = "no_such_event";
  EXPECT_EQ(runFunctionCommand(cmd, out2, err2), 1);
  cmd.event = "no_event";
  cmd.name = "bad name";
  EXPECT_EQ(runFunctionCommand(cmd, out2, err2), 1);
}

TEST(CliProject, ReadsProjectsMadeByLpf) {
  TempDir dir;
  fs::create_directories(fs::path(dir.path()) / "functions" / "lpfmade");
  std::ofstream(fs::path(dir.path()) / "functions" / "lpfmade" / "index.js")
      << "function lambda(input, callback) { callback(null, 1); }";
  std::ofstream(fs::path(dir.path()) / "functions" / "lpfmade" / "config.json") << R"({
    "name": "lpfmade", "event": "No Event", "description": "made by lpf",
    "input": {"headers": [{"key": "a", "value": "b"}], "payload": "plain string"},
    "environmentVariables": [{"key": "X", "value": "1"}]
  })";
  std::ofstream(fs::path(dir.path()) / "functions" / "settings.json") << R"({
    "secrets": [{"key": "s1", "value": "v1"}, {"key": "json", "value": {"a": 1}}],
    "whitelist": ["*.liveperson.com"]
  })";
  Project p(dir.path());
  auto c = p.readConfig("lpfmade");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->description, "made by lpf");
  EXPECT_EQ(c->input_headers_json, R"([{"key":"a","value":"b"}])");
  EXPECT_EQ(c->input_payload_json, R"("plain string")");
  ASSERT_EQ(c->env.size(), 1u);
  EXPECT_EQ(c->env[0].key, "X");
  auto s = p.readSettings();
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_EQ(s->secrets.size(), 2u);
  EXPECT_EQ(s->secrets[1].value, R"({"a":1})");
  EXPECT_EQ(s->whitelist, std::vector<std::string>{"*.liveperson.com"});
  // Round trip.
  ASSERT_TRUE(p.writeConfig(*c));
  auto again = p.readConfig("lpfmade");
  EXPECT_EQ(again->input_payload_json, c->input_payload_json);
  EXPECT_EQ(p.readCode("missing").error().code, ErrorCode::kNotFound);
  EXPECT_NE(p.readCode("missing").error().message.find("parley function init"), std::string::npos);
}

// ---- invoke --local --------------------------------------------------------------------------

FunctionCommand localInvoke(const std::string& dir, const std::string& name) {
  FunctionCommand cmd;
  cmd.verb = "invoke";
  cmd.name = name;
  cmd.dir = dir;
  cmd.local = true;
  cmd.config = dir + "/no-config.json";
  return cmd;
}

TEST(CliLocalInvoke, RunsTheTemplateInTheSandbox) {
  TempDir dir;
  FunctionCommand init;
  init.verb = "init";
  init.name = "greet";
  init.dir = dir.path();
  std::stringstream out, err;
  ASSERT_EQ(runFunctionCommand(init, out, err), 0) << err.str();
  std::stringstream o2, e2;
  ASSERT_EQ(runFunctionCommand(localInvoke(dir.path(), "greet"), o2, e2), 0)
      << e2.str() << o2.str();
  auto v = json::parseObject(o2.str());
  ASSERT_TRUE(v) << o2.str();
  EXPECT_EQ(json::getString(v->at("result").as_object(), "greeting"), "Hello Parley!");
  ASSERT_EQ(v->at("logs").as_array().size(), 1u);
  EXPECT_EQ(json::getString(v->at("logs").as_array()[0].as_object(), "level"), "Info");
}

TEST(CliLocalInvoke, ErrorsSecretsAndEnv) {
  TempDir dir;
  Project p(dir.path());
  FunctionConfig c;
  c.name = "sec";
  c.input_payload_json = R"({"key":"token"})";
  c.env = {{"MODE", "test"}};
  ASSERT_TRUE(
      p.initFunction(c,
                     "const { Toolbelt } = require('lp-faas-toolbelt');\n"
                     "async function lambda(input, callback) {\n"
                     "  const s = await Toolbelt.SecretClient().readSecret(input.payload.key);\n"
                     "  console.debug('debug shown locally');\n"
                     "  callback(null, {secret: s.value, mode: process.env.MODE});\n"
                     "}\n"));
  ASSERT_TRUE(p.writeSettings({{{"token", "t-123"}}, {"*.example.com"}}));
  std::stringstream out, err;
  ASSERT_EQ(runFunctionCommand(localInvoke(dir.path(), "sec"), out, err), 0)
      << err.str() << out.str();
  auto v = json::parseObject(out.str());
  ASSERT_TRUE(v);
  EXPECT_EQ(json::dump(v->at("result")), R"({"secret":"t-123","mode":"test"})");

  c.name = "state";
  ASSERT_TRUE(p.initFunction(
      c,
      "const { Toolbelt } = require('lp-faas-toolbelt');\n"
      "async function lambda(input, callback) {\n"
      "  const secrets = Toolbelt.SecretClient();\n"
      "  await secrets.updateSecret({key: 'token', value: 't-456'});\n"
      "  const s = await secrets.readSecret('token');\n"
      "  let missing = '';\n"
      "  try { await secrets.readSecret('absent'); } catch (e) { missing = e.message; }\n"
      "  const ctx = Toolbelt.ContextServiceClient({apiKey: 'k', accountId: 'a'});\n"
      "  await ctx.createNamespace('ns');\n"
      "  await ctx.setPropertiesInNamespace('ns', {n: 1}, 's1');\n"
      "  await ctx.updatePropertiesInNamespace('ns', {m: 2}, 's1');\n"
      "  const all = await ctx.getAllPropertiesInSession('ns', 's1');\n"
      "  let unknown = '';\n"
      "  try { await ctx.getAllPropertiesInSession('nope'); } catch (e) { unknown = e.message; }\n"
      "  callback(null, {secret: s.value, missing, all, unknown});\n"
      "}\n"));
  std::stringstream o1, e1;
  ASSERT_EQ(runFunctionCommand(localInvoke(dir.path(), "state"), o1, e1), 0)
      << e1.str() << o1.str();
  auto st = json::parseObject(o1.str());
  ASSERT_TRUE(st) << o1.str();
  const auto& res = st->at("result").as_object();
  EXPECT_EQ(json::getString(res, "secret"), "t-456");
  EXPECT_NE(json::getString(res, "missing").find("not in functions/settings.json"),
            std::string::npos)
      << o1.str();
  EXPECT_EQ(json::dump(res.at("all")), R"({"n":1,"m":2})");
  EXPECT_NE(json::getString(res, "unknown").find("does not exist"), std::string::npos) << o1.str();
  // The update lived in memory for the run: settings.json still has the old value.
  auto settings = p.readSettings();
  ASSERT_TRUE(settings);
  EXPECT_EQ(settings->secrets[0].value, "t-123");

  c.name = "fails";
  ASSERT_TRUE(p.initFunction(c,
                             "function lambda(input, callback) {\n  console.error('about to "
                             "fail');\n  callback(new Error('nope'));\n}\n"));
  std::stringstream o2, e2;
  EXPECT_EQ(runFunctionCommand(localInvoke(dir.path(), "fails"), o2, e2), 1);
  auto f = json::parseObject(o2.str());
  ASSERT_TRUE(f) << o2.str();
  EXPECT_EQ(json::getString(*f, "errorCode"), "com.liveperson.faas.handler.custom-failure");
  EXPECT_NE(json::getString(*f, "errorMsg").find("nope"), std::string::npos);
  ASSERT_GE(f->at("errorLogs").as_array().size(), 1u);
  EXPECT_FALSE(f->contains("result"));

  c.name = "syntax";
  ASSERT_TRUE(p.initFunction(c, "function lambda(input, callback) {\n  callback(null, 1;\n}\n"));
  std::stringstream o3, e3;
  EXPECT_EQ(runFunctionCommand(localInvoke(dir.path(), "syntax"), o3, e3), 1);
  EXPECT_NE(o3.str().find("line 2"), std::string::npos) << o3.str();
}

// ---- remote commands against a real FunctionService -----------------------------------------

// A minimal HTTP/1.1 server on 127.0.0.1:0: login returns a fixed bearer; requests under
// /api/v1/accounts/{acc}/ with that bearer go to the FunctionService as an ADMIN caller.
class TestServer {
 public:
  TestServer()
      : store_(store::makeMemoryStore(clock_)),
        host_(store_->functions(), box_, clock_),
        acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    functions::RuntimeOptions o;
    o.threads = 1;
    o.default_deadline = std::chrono::milliseconds(2000);
    runtime_ = std::move(functions::FunctionRuntime::create(o, host_, clock_).value());
    service_ =
        std::make_unique<functions::service::FunctionService>(*store_, box_, *runtime_, clock_);
    schedules_ = std::make_unique<functions::schedule::ScheduleService>(*store_, clock_);
    thread_ = std::thread([this] { serve(); });
  }
  ~TestServer() {
    stopping_ = true;
    boost::system::error_code ec;
    // Wake the accept loop with one last connection.
    boost::asio::ip::tcp::socket s(ioc_);
    s.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
    schedules_.reset();
    service_.reset();
    runtime_.reset();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }
  functions::service::FunctionService& service() { return *service_; }
  std::vector<std::string> targets() {
    std::lock_guard lock(mu_);
    return targets_;
  }

 private:
  void serve() {
    namespace http = boost::beast::http;
    while (!stopping_) {
      boost::system::error_code ec;
      boost::asio::ip::tcp::socket socket(ioc_);
      acceptor_.accept(socket, ec);
      if (ec || stopping_) break;
      boost::beast::flat_buffer buf;
      http::request<http::string_body> req;
      http::read(socket, buf, req, ec);
      if (ec) continue;
      http::response<http::string_body> res;
      auto [status, body] = dispatch(req);
      res.result(static_cast<unsigned>(status));
      res.set(http::field::content_type, "application/json");
      res.body() = body;
      res.prepare_payload();
      http::write(socket, res, ec);
      socket.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
    }
  }

  std::pair<int, std::string> dispatch(
      const boost::beast::http::request<boost::beast::http::string_body>& req) {
    std::string target(req.target());
    {
      std::lock_guard lock(mu_);
      targets_.push_back(std::string(req.method_string()) + " " + target);
    }
    if (target.starts_with("/api/account/acc1/login")) {
      auto o = json::parseObject(req.body());
      if (o && json::getString(*o, "password") == "pw") return {200, R"({"bearer":"tok-1"})"};
      return {401, R"({"error":{"code":"UNAUTHORIZED","message":"wrong password"}})"};
    }
    if (req[boost::beast::http::field::authorization] != "Bearer tok-1")
      return {401, R"({"error":{"code":"UNAUTHORIZED","message":"bad bearer"}})"};
    const std::string prefix = "/api/v1/accounts/acc1/";
    if (!target.starts_with(prefix))
      return {404, R"({"error":{"code":"NOT_FOUND","message":"?"}})"};
    api::Request r;
    r.method = std::string(req.method_string());
    parley::testing::fillTarget(r, target.substr(prefix.size()));
    r.body = req.body();
    r.caller.account = AccountId("acc1");
    r.caller.login_name = "dev";
    r.caller.roles = {"ADMIN"};
    api::Handler& handler = !r.path.empty() && r.path[0] == "schedules"
                                ? static_cast<api::Handler&>(*schedules_)
                                : static_cast<api::Handler&>(*service_);
    auto resp = parley::testing::await<api::Response>(
        [&](auto done) { handler.handle(std::move(r), std::move(done)); });
    return {resp.status, resp.body};
  }

  testing::FakeClock clock_;
  crypto::SecretBox box_ = crypto::SecretBox::randomForTest();
  std::unique_ptr<store::Store> store_;
  functions::service::PlatformHost host_;
  std::unique_ptr<functions::FunctionRuntime> runtime_;
  std::unique_ptr<functions::service::FunctionService> service_;
  std::unique_ptr<functions::schedule::ScheduleService> schedules_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> targets_;
};

class CliRemoteTest : public ::testing::Test {
 protected:
  int run(FunctionCommand cmd, std::string* out_text = nullptr) {
    cmd.dir = dir_.path();
    cmd.config = config_;
    std::stringstream out, err;
    int rc = runFunctionCommand(cmd, out, err);
    last_out_ = out.str();
    last_err_ = err.str();
    if (out_text) *out_text = out.str();
    return rc;
  }
  FunctionCommand verb(const std::string& v, const std::string& name = "") {
    FunctionCommand c;
    c.verb = v;
    c.name = name;
    return c;
  }
  int login(const std::string& password) {
    LoginCommand l{server_.url() + "/", "acc1", "dev", password, "", config_};
    std::stringstream out, err;
    int rc = runLoginCommand(l, out, err);
    last_err_ = err.str();
    return rc;
  }

  TestServer server_;
  TempDir dir_;
  std::string config_ = dir_.path() + "/cli.json";
  std::string last_out_, last_err_;
};

TEST_F(CliRemoteTest, LoginSavesTheBearer) {
  EXPECT_EQ(run(verb("get")), 1);
  EXPECT_NE(last_err_.find("parley login"), std::string::npos);
  EXPECT_EQ(login("wrong"), 1);
  EXPECT_NE(last_err_.find("wrong password"), std::string::npos);
  ASSERT_EQ(login("pw"), 0) << last_err_;
  auto saved = loadConfig(config_);
  ASSERT_TRUE(saved);
  EXPECT_EQ(saved->bearer, "tok-1");
  EXPECT_EQ(saved->account, "acc1");
  EXPECT_EQ(saved->server, server_.url());  // trailing slash removed
  EXPECT_EQ(server_.targets().front(), "POST /api/account/acc1/login?v=1.3");
}

TEST_F(CliRemoteTest, PushDeployInvokeLogsPullGet) {
  ASSERT_EQ(login("pw"), 0) << last_err_;
  FunctionCommand init = verb("init", "greet");
  ASSERT_EQ(run(init), 0) << last_err_;
  EXPECT_EQ(run(verb("deploy", "greet")), 1);  // not pushed yet
  EXPECT_NE(last_err_.find("push"), std::string::npos) << last_err_;

  ASSERT_EQ(run(verb("push", "greet")), 0) << last_err_;
  EXPECT_NE(last_out_.find("version 1, state Draft"), std::string::npos) << last_out_;
  // Pushing again updates (same name): a changed file bumps the version.
  std::ofstream(fs::path(dir_.path()) / "functions" / "greet" / "index.js")
      << "function lambda(input, callback) {\n  console.info('hi from v2');\n"
         "  callback(null, {v: 2, name: input.payload.name});\n}\n";
  ASSERT_EQ(run(verb("push", "greet")), 0) << last_err_;
  EXPECT_NE(last_out_.find("version 2"), std::string::npos) << last_out_;

  ASSERT_EQ(run(verb("deploy", "greet")), 0) << last_err_;
  EXPECT_NE(last_out_.find("Productive"), std::string::npos);

  std::string out;
  ASSERT_EQ(run(verb("invoke", "greet"), &out), 0) << last_err_;
  auto v = json::parseObject(out);
  ASSERT_TRUE(v) << out;
  EXPECT_EQ(json::dump(v->at("result")), R"({"v":2,"name":"Parley"})");
  EXPECT_EQ(json::getString(v->at("logs").as_array()[0].as_object(), "message"), "hi from v2");

  // Production logs come from the connector's Runner.
  functions::InvokeRequest req;
  req.account = AccountId("acc1");
  auto list = json::parse(HttpClient(server_.url(), "", "tok-1")
                              .request("GET", "/api/v1/accounts/acc1/functions")
                              ->body);
  req.function = FunctionId(json::getString(list->as_array()[0].as_object(), "uuid"));
  req.input_json = R"({"timestamp":1,"headers":[],"payload":{"name":"prod"}})";
  ASSERT_TRUE(parley::testing::await<functions::InvokeResult>([&](auto done) {
                server_.service().runner().invoke(req, std::move(done));
              }).ok);
  server_.service().waitIdleForTest();
  ASSERT_EQ(run(verb("logs", "greet"), &out), 0) << last_err_;
  EXPECT_NE(out.find("Info  "), std::string::npos) << out;
  EXPECT_NE(out.find("hi from v2"), std::string::npos) << out;

  ASSERT_EQ(run(verb("get"), &out), 0) << last_err_;
  EXPECT_NE(out.find("greet"), std::string::npos);
  EXPECT_NE(out.find("Productive"), std::string::npos);
  FunctionCommand deployments = verb("get");
  deployments.what = "deployments";
  ASSERT_EQ(run(deployments, &out), 0) << last_err_;
  EXPECT_NE(out.find("greet"), std::string::npos) << out;
  EXPECT_NE(out.find("Productive"), std::string::npos) << out;

  // Pull into a fresh project.
  fs::remove_all(fs::path(dir_.path()) / "functions");
  ASSERT_EQ(run(verb("pull", "greet")), 0) << last_err_;
  EXPECT_NE(readAll(fs::path(dir_.path()) / "functions" / "greet" / "index.js").find("v: 2"),
            std::string::npos);
  EXPECT_TRUE(fs::exists(fs::path(dir_.path()) / "functions" / "settings.json"));

  ASSERT_EQ(run(verb("undeploy", "greet")), 0) << last_err_;
  EXPECT_NE(last_out_.find("Draft"), std::string::npos);
}

TEST_F(CliRemoteTest, ScheduleCreatesListsPausesResumesAndDeletes) {
  ASSERT_EQ(login("pw"), 0) << last_err_;
  ASSERT_EQ(run(verb("init", "tick")), 0) << last_err_;
  ASSERT_EQ(run(verb("push", "tick")), 0) << last_err_;
  std::string out;
  ASSERT_EQ(run(verb("schedule", "tick"), &out), 0) << last_err_;
  EXPECT_NE(out.find("tick has no schedules"), std::string::npos) << out;

  FunctionCommand add = verb("schedule", "tick");
  add.cron = "*/15 * * * *";
  add.payload = R"({"job":"sync"})";
  add.json = true;
  ASSERT_EQ(run(add, &out), 0) << last_err_;
  auto created = json::parseObject(out);
  ASSERT_TRUE(created) << out;
  const std::string id = json::getString(*created, "uuid");
  EXPECT_EQ(json::getString(*created, "cronExpression"), "*/15 * * * *");
  EXPECT_EQ(json::dump(created->at("payload")), R"({"job":"sync"})");
  EXPECT_TRUE(created->at("isActive").as_bool());

  ASSERT_EQ(run(verb("schedule", "tick"), &out), 0) << last_err_;
  EXPECT_NE(out.find("CRON (UTC)"), std::string::npos) << out;
  EXPECT_NE(out.find(id), std::string::npos) << out;
  EXPECT_NE(out.find("*/15 * * * *"), std::string::npos) << out;

  FunctionCommand pause = verb("schedule", "tick");
  pause.pause_id = id;
  ASSERT_EQ(run(pause, &out), 0) << last_err_;
  EXPECT_NE(out.find("paused"), std::string::npos) << out;
  FunctionCommand resume = verb("schedule", "tick");
  resume.resume_id = id;
  ASSERT_EQ(run(resume, &out), 0) << last_err_;
  EXPECT_NE(out.find("active, next run"), std::string::npos) << out;

  // Bad input: the server's message names the field; bad JSON is caught before sending.
  FunctionCommand bad = verb("schedule", "tick");
  bad.cron = "0 25 * * *";
  EXPECT_EQ(run(bad), 1);
  EXPECT_NE(last_err_.find("the hour field '25'"), std::string::npos) << last_err_;
  bad.cron = "0 1 * * *";
  bad.payload = "{not json";
  EXPECT_EQ(run(bad), 1);
  EXPECT_NE(last_err_.find("--payload is not JSON"), std::string::npos) << last_err_;
  // A schedule of another function is not this one's to delete.
  ASSERT_EQ(run(verb("init", "other")), 0) << last_err_;
  ASSERT_EQ(run(verb("push", "other")), 0) << last_err_;
  FunctionCommand wrong = verb("schedule", "other");
  wrong.delete_id = id;
  EXPECT_EQ(run(wrong), 1);
  EXPECT_NE(last_err_.find("is not a schedule of other"), std::string::npos) << last_err_;

  FunctionCommand del = verb("schedule", "tick");
  del.delete_id = id;
  ASSERT_EQ(run(del, &out), 0) << last_err_;
  EXPECT_NE(out.find("Deleted schedule " + id), std::string::npos) << out;
  ASSERT_EQ(run(verb("schedule", "tick"), &out), 0) << last_err_;
  EXPECT_NE(out.find("no schedules"), std::string::npos) << out;
  EXPECT_EQ(run(del), 1);
}

TEST_F(CliRemoteTest, FailuresAreReported) {
  ASSERT_EQ(login("pw"), 0);
  Project p(dir_.path());
  FunctionConfig c;
  c.name = "bad";
  ASSERT_TRUE(p.initFunction(c, "function lambda(input, callback) {\n  callback(null, 1;\n}\n"));
  ASSERT_EQ(run(verb("push", "bad")), 0) << last_err_;
  EXPECT_EQ(run(verb("deploy", "bad")), 1);
  EXPECT_NE(last_err_.find("line 2"), std::string::npos) << last_err_;
  std::string out;
  EXPECT_EQ(run(verb("invoke", "bad"), &out), 1);
  auto v = json::parseObject(out);
  ASSERT_TRUE(v) << out;
  EXPECT_FALSE(json::getString(*v, "errorCode").empty());
  EXPECT_TRUE(v->contains("errorLogs"));
  // A bad env var name is refused by the server with its message.
  c.name = "badenv";
  c.env = {{"BRAND_ID", "x"}};
  ASSERT_TRUE(p.initFunction(c, "function lambda(i, cb) { cb(null, 1); }"));
  EXPECT_EQ(run(verb("push", "badenv")), 1);
  EXPECT_NE(last_err_.find("reserved"), std::string::npos) << last_err_;
  // A stale bearer asks for a new login.
  ASSERT_TRUE(saveConfig(config_, CliConfig{server_.url(), "acc1", "stale", ""}));
  EXPECT_EQ(run(verb("get")), 1);
  EXPECT_NE(last_err_.find("parley login"), std::string::npos) << last_err_;
}

TEST(CliHttpClient, ReportsUnreachableServersAndBadUrls) {
  HttpClient bad("ftp://x", "", "");
  EXPECT_EQ(bad.request("GET", "/").error().code, ErrorCode::kInvalid);
  // Port 1 on localhost is closed.
  HttpClient closed("http://127.0.0.1:1", "", "");
  auto r = closed.request("GET", "/");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("cannot reach"), std::string::npos);
  HttpClient tls("https://127.0.0.1:1", "/no/such/ca.pem", "");
  EXPECT_EQ(tls.request("GET", "/").error().code, ErrorCode::kInvalid);
}

}  // namespace
}  // namespace parley::cli
