// Data-driven runtime tests: runs tests/functions/<name>.js against <name>.expected.
//
// The .expected file is JSON:
//   "deadline_ms": 300            deadline of each invocation (default 500)
//   "heap_limit_mb": 64           isolate heap cap (default 128)
//   "env": {"K": "V"}             deployment env vars; TEST_HTTP_URL is always added
//   "secrets": {"k": "v"}, "allowlist": ["localhost"], "conversations": {"id": {...}}
//   "audit_fails": true           the host's recordSecretAccess fails (a full disk)
//   "platform_echo": true         platform calls (LpClient) answer with what they received
//   "outbound_allow": ["loopback"] RuntimeOptions::outbound_allow (default: none opened)
//   "http_max_body_bytes": n      RuntimeOptions::http_max_body_bytes (default 10 MiB)
//   "invoker": {"user": "1001", "login": "dev", "secret_writes": "refused"}
//                                 the invoker of every invocation (default: the platform,
//                                 secret writes allowed)
//   "mode": "test"|"production"   (default "test": Debug logs kept)
//   "deploy_error": "substring"   deploy must fail with a message containing it
//   "invocations": [{ "input": <json>            (default
//   {"timestamp":0,"headers":[],"payload":{}})
//                     "result": <json>           expected result (ok)
//                     "error_code": "...", "error_message_contains": "...",
//                     "logs": [{"level","message"|"message_contains"}]  exact list of entries
//                     "max_duration_ms": n }]
//   "after": {"secrets": {"k": "v"}, "min_isolate_restarts": n, "min_worker_crashes": n,
//             "secret_audit": [{"key","op","outcome","user"?}]  exact list, oldest first,
//             "other": {"code": "...", "result": <json>}   another function deployed and
//                                                         invoked after the invocations}
//   "isolation": "process"        run only with worker processes (skipped in-process)
// Two HTTP test servers run: TEST_HTTP_URL (http://localhost:<port>, bound to 127.0.0.1) and
// TEST_HTTP_URL2 (http://127.0.0.2:<port>); TEST_HTTP_PORT is the first one's port.
// After the invocations the runner deploys and invokes an echo function on the same (single)
// worker to prove the runtime survived.
// Usage: parley_functions_jstest <file.js> <file.expected> [in-process|process]
// (default in-process; a skipped test exits with 77)

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url.hpp>
#include <cstdio>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "common/json.h"
#include "functions/runtime.h"
#include "functions/testing/fake_host.h"

namespace bj = boost::json;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace parley;
using namespace parley::functions;

namespace {

int failures = 0;

void fail(const std::string& what) {
  std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  ++failures;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A tiny HTTP/1.1 server for the Toolbelt tests. One thread, one connection at a time.
// GET/POST /echo -> {"method","path","body","ua","host" (without port)}; /status/<n> -> status n;
// /redirect -> 302 to /echo; /redirect?to=<url> -> 302 to <url>; /log -> every request line
// it read before ("METHOD target host=<Host without port>"), as a JSON array. Bytes that are not a
// valid request end the connection and are logged as "unparsed". Request headers up to 1 MiB and
// bodies up to 64 MiB are read.
class TestServer {
 public:
  explicit TestServer(const std::string& address)
      : address_(asio::ip::make_address(address)), acceptor_(io_, {address_, 0}) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { run(); });
  }
  ~TestServer() {
    stop_ = true;
    boost::system::error_code ec;
    asio::ip::tcp::socket s(io_);
    s.connect({address_, port_}, ec);
    thread_.join();
  }
  unsigned short port() const { return port_; }

 private:
  void run() {
    while (!stop_) {
      asio::ip::tcp::socket sock(io_);
      boost::system::error_code ec;
      acceptor_.accept(sock, ec);
      if (ec || stop_) continue;
      boost::beast::flat_buffer buf;
      // Keep reading requests on the connection: a smuggled second request shows up here.
      while (true) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(1 << 20);
        parser.body_limit(64 << 20);
        http::read(sock, buf, parser, ec);
        if (ec) {
          if (ec != http::error::end_of_stream && buf.size() > 0) log_.emplace_back("unparsed");
          break;
        }
        auto& req = parser.get();
        std::string target(req.target());
        std::string host(req[http::field::host]);
        if (auto colon = host.rfind(':'); colon != std::string::npos && host.back() != ']')
          host.resize(colon);  // the port differs between runs
        if (target != "/log")
          log_.emplace_back(std::string(req.method_string()) + " " + target + " host=" + host);
        http::response<http::string_body> res;
        res.version(11);
        if (target.starts_with("/status/")) {
          res.result(static_cast<unsigned>(std::stoi(target.substr(8))));
          res.body() = "status " + target.substr(8);
        } else if (target == "/redirect") {
          res.result(http::status::found);
          res.set(http::field::location, "/echo?redirected=1");
        } else if (target.starts_with("/redirect?to=")) {
          res.result(http::status::found);
          std::string query = target.substr(std::string("/redirect?").size());
          auto to = boost::urls::parse_query(query);
          res.set(http::field::location, to ? (*to->begin()).value.decode() : std::string("/"));
        } else if (target == "/log") {
          bj::array out;
          for (auto& l : log_) out.push_back(bj::string(l));
          res.result(http::status::ok);
          res.set(http::field::content_type, "application/json");
          res.body() = json::dump(out);
        } else {
          res.result(http::status::ok);
          res.set(http::field::content_type, "application/json");
          res.body() = json::dump(bj::object{{"method", std::string(req.method_string())},
                                             {"path", target},
                                             {"body", req.body()},
                                             {"ua", std::string(req[http::field::user_agent])},
                                             {"host", host}});
        }
        res.prepare_payload();
        http::write(sock, res, ec);
        if (ec) break;
      }
      sock.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    }
  }
  asio::io_context io_;
  asio::ip::address address_;
  asio::ip::tcp::acceptor acceptor_;
  unsigned short port_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::string> log_;  // only touched by the server thread
};

InvokeResult invokeSync(FunctionRuntime& rt, const AccountId& acc, const FunctionId& fn,
                        std::string input, int deadline_ms, InvokeMode mode, Invoker invoker = {}) {
  InvokeRequest req;
  req.account = acc;
  req.function = fn;
  req.invoker = std::move(invoker);
  req.input_json = std::move(input);
  req.deadline = std::chrono::milliseconds(deadline_ms);
  std::promise<InvokeResult> p;
  rt.invoke(std::move(req), mode, [&](InvokeResult r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

void checkLogs(const std::string& where, const std::vector<LogEntry>& got, const bj::array& want) {
  std::string got_text;
  for (auto& l : got) got_text += "  " + l.level + ": " + l.message + " " + l.extras_json + "\n";
  if (got.size() != want.size()) {
    fail(where + ": expected " + std::to_string(want.size()) + " log entries, got " +
         std::to_string(got.size()) + ":\n" + got_text);
    return;
  }
  for (std::size_t i = 0; i < want.size(); ++i) {
    const auto& w = want[i].as_object();
    std::string level = json::getString(w, "level");
    if (!level.empty() && got[i].level != level)
      fail(where + ": log " + std::to_string(i) + " level " + got[i].level + " != " + level);
    if (auto* m = w.if_contains("message"); m && got[i].message != m->as_string())
      fail(where + ": log " + std::to_string(i) + " message '" + got[i].message + "' != '" +
           std::string(m->as_string()) + "'");
    if (auto* m = w.if_contains("message_contains");
        m && got[i].message.find(m->as_string()) == std::string::npos)
      fail(where + ": log " + std::to_string(i) + " message '" + got[i].message +
           "' does not contain '" + std::string(m->as_string()) + "'");
    if (auto* e = w.if_contains("extras"); e && json::parse(got[i].extras_json).value() != *e)
      fail(where + ": log " + std::to_string(i) + " extras " + got[i].extras_json);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (auto rc = runFunctionWorkerIfAsked(argc, argv)) return *rc;
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: %s <file.js> <file.expected> [in-process|process]\n", argv[0]);
    return 2;
  }
  const bool process = argc == 4 && std::string_view(argv[3]) == "process";
  std::string code = readFile(argv[1]);
  auto expected_r = json::parseObject(readFile(argv[2]));
  if (!expected_r) {
    std::fprintf(stderr, "bad .expected: %s\n", expected_r.error().message.c_str());
    return 2;
  }
  const bj::object& ex = *expected_r;
  if (!process && json::getString(ex, "isolation") == "process") {
    std::printf("SKIP %s: needs worker processes\n", argv[1]);
    return 77;
  }
  TestServer server("127.0.0.1");
  TestServer server2("127.0.0.2");
  std::string base_url = "http://localhost:" + std::to_string(server.port());
  std::string base_url2 = "http://127.0.0.2:" + std::to_string(server2.port());

  testing::FakeHost host;
  if (auto* s = ex.if_contains("secrets"))
    for (auto& [k, v] : s->as_object()) host.setSecret(k, std::string(v.as_string()));
  if (auto* a = ex.if_contains("allowlist")) {
    std::vector<std::string> list;
    for (auto& d : a->as_array()) list.emplace_back(d.as_string());
    host.setAllowlist(list);
  }
  if (auto* f = ex.if_contains("audit_fails"); f && f->is_bool() && f->as_bool())
    host.failAuditForTest();
  if (auto* c = ex.if_contains("conversations"))
    for (auto& [k, v] : c->as_object()) host.setConversation(k, json::dump(v));
  if (auto* p = ex.if_contains("platform_echo"); p && p->is_bool() && p->as_bool()) {
    // Answers every platform call with what it received, so a test sees what the Toolbelt sent:
    // {"statusCode": <the path's status=N query parameter, else 200>, "headers": {},
    //  "body": "{\"op\":…,\"args\":…,\"function\":…}"}.
    host.setPlatformCall([](const PlatformCall& call) -> Result<std::string> {
      auto args = json::parseObject(call.args_json);
      if (!args) return std::unexpected(args.error());
      std::string path = json::getString(*args, "path");
      int status = 200;
      if (auto q = path.find("status="); q != std::string::npos)
        status = std::atoi(path.c_str() + q + 7);
      bj::object body{{"op", call.op}, {"args", *args}, {"function", call.function.str()}};
      return json::dump(bj::object{
          {"statusCode", status}, {"headers", bj::object{}}, {"body", json::dump(body)}});
    });
  }

  SystemClock clock;
  RuntimeOptions opts;
  opts.threads = 1;
  opts.max_workers = 1;
  if (process) opts.isolation = WorkerIsolation::kProcess;
  opts.heap_limit_mb = static_cast<std::size_t>(json::getInt(ex, "heap_limit_mb", 128));
  opts.deploy_deadline = std::chrono::milliseconds(json::getInt(ex, "deadline_ms", 500));
  if (auto b = json::getInt(ex, "http_max_body_bytes", 0); b > 0)
    opts.http_max_body_bytes = static_cast<std::size_t>(b);
  if (auto* o = ex.if_contains("outbound_allow"))
    for (auto& r : o->as_array()) opts.outbound_allow.emplace_back(r.as_string());
  auto rt_r = FunctionRuntime::create(opts, host, clock);
  if (!rt_r) {
    std::fprintf(stderr, "runtime: %s\n", rt_r.error().message.c_str());
    return 1;
  }
  auto& rt = **rt_r;
  AccountId acc("le12345");
  FunctionId fn("7d3c1a52-0000-4000-8000-000000000001");
  int deadline_ms = static_cast<int>(json::getInt(ex, "deadline_ms", 500));
  InvokeMode mode = json::getString(ex, "mode", "test") == "production" ? InvokeMode::kProduction
                                                                        : InvokeMode::kTest;
  Invoker invoker;
  invoker.secret_writes = SecretWrites::kAllowed;
  if (auto* iv = ex.if_contains("invoker")) {
    const auto& o = iv->as_object();
    invoker.kind = InvokerKind::kUser;
    invoker.user = UserId(json::getString(o, "user"));
    invoker.login_name = json::getString(o, "login");
    invoker.secret_writes = json::getString(o, "secret_writes") == "allowed"
                                ? SecretWrites::kAllowed
                                : SecretWrites::kRefused;
  }
  DeployedCode dc{code,
                  {{"TEST_HTTP_URL", base_url},
                   {"TEST_HTTP_URL2", base_url2},
                   {"TEST_HTTP_PORT", std::to_string(server.port())}},
                  1};
  if (auto* e = ex.if_contains("env"))
    for (auto& [k, v] : e->as_object()) dc.env.push_back({k, std::string(v.as_string())});

  auto dep = rt.deploy(acc, fn, dc);
  if (auto* de = ex.if_contains("deploy_error")) {
    if (dep) {
      fail("deploy succeeded but an error containing '" + std::string(de->as_string()) +
           "' was expected");
    } else if (dep.error().message.find(de->as_string()) == std::string::npos) {
      fail("deploy error '" + dep.error().message + "' does not contain '" +
           std::string(de->as_string()) + "'");
    } else {
      std::printf("deploy failed as expected: %s\n", dep.error().message.c_str());
    }
    auto check = rt.checkCode(code);
    if (check) fail("checkCode accepted code that deploy rejected");
  } else if (!dep) {
    fail("deploy failed: " + dep.error().message);
  }

  if (dep) {
    int n = 0;
    if (auto* invs = ex.if_contains("invocations")) {
      for (auto& iv : invs->as_array()) {
        const auto& inv = iv.as_object();
        std::string where = "invocation " + std::to_string(n++);
        std::string input = R"({"timestamp":0,"headers":[],"payload":{}})";
        if (auto* in = inv.if_contains("input")) input = json::dump(*in);
        auto t0 = std::chrono::steady_clock::now();
        auto r = invokeSync(rt, acc, fn, input, deadline_ms, mode, invoker);
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count();
        std::printf("%s: ok=%d result=%s error=%s %s (%.1f ms, %zu logs)\n", where.c_str(), r.ok,
                    r.result_json.c_str(), r.error_code.c_str(), r.error_message.c_str(), ms,
                    r.logs.size());
        if (auto* want = inv.if_contains("result")) {
          if (!r.ok) {
            fail(where + ": expected a result, got " + r.error_code + ": " + r.error_message);
          } else if (json::parse(r.result_json).value() != *want) {
            fail(where + ": result " + r.result_json + " != " + json::dump(*want));
          }
        }
        if (auto* code_w = inv.if_contains("error_code")) {
          if (r.ok)
            fail(where + ": expected error " + std::string(code_w->as_string()) + ", got ok");
          else if (r.error_code != code_w->as_string())
            fail(where + ": error code " + r.error_code +
                 " != " + std::string(code_w->as_string()));
        }
        if (auto* m = inv.if_contains("error_message_contains");
            m && r.error_message.find(m->as_string()) == std::string::npos)
          fail(where + ": error message '" + r.error_message + "' does not contain '" +
               std::string(m->as_string()) + "'");
        if (auto* logs = inv.if_contains("logs")) checkLogs(where, r.logs, logs->as_array());
        if (auto* mx = inv.if_contains("max_duration_ms"); mx && ms > mx->to_number<double>())
          fail(where + ": took " + std::to_string(ms) + " ms, more than " + json::dump(*mx));
      }
    }
  }

  if (auto* after = ex.if_contains("after")) {
    const auto& a = after->as_object();
    if (auto* s = a.if_contains("secrets"))
      for (auto& [k, v] : s->as_object())
        if (host.secretForTest(k) != v.as_string())
          fail("secret " + std::string(k) + " is '" + host.secretForTest(k) + "'");
    if (auto* audit = a.if_contains("secret_audit")) {
      auto got = host.secretAccessesForTest();
      std::string got_text;
      for (auto& g : got)
        got_text += "  " + g.key + " " + (g.op == SecretOp::kRead ? "read" : "write") + " " +
                    (g.outcome == SecretOutcome::kAllowed ? "allowed" : "refused") +
                    " user=" + g.invoker.user.str() + " " + g.detail + "\n";
      const auto& want = audit->as_array();
      if (got.size() != want.size()) {
        fail("secret audit has " + std::to_string(got.size()) + " entries, expected " +
             std::to_string(want.size()) + ":\n" + got_text);
      } else {
        for (std::size_t i = 0; i < want.size(); ++i) {
          const auto& w = want[i].as_object();
          const auto& g = got[i];
          std::string op = g.op == SecretOp::kRead ? "read" : "write";
          std::string outcome = g.outcome == SecretOutcome::kAllowed ? "allowed" : "refused";
          if (g.key != json::getString(w, "key") || op != json::getString(w, "op") ||
              outcome != json::getString(w, "outcome") ||
              (w.contains("user") && g.invoker.user.str() != json::getString(w, "user")) ||
              g.function != fn || g.account != acc || g.ts == 0 || g.request_id.empty())
            fail("secret audit entry " + std::to_string(i) + " differs from " + json::dump(w) +
                 ":\n" + got_text);
        }
      }
    }
    if (auto* other = a.if_contains("other")) {
      const auto& o = other->as_object();
      FunctionId other_fn("7d3c1a52-0000-4000-8000-00000000a000");
      if (auto d = rt.deploy(acc, other_fn, {json::getString(o, "code"), {}, 1}); !d) {
        fail("deploying the other function failed: " + d.error().message);
      } else {
        auto r = invokeSync(rt, acc, other_fn, R"({"timestamp":0,"headers":[],"payload":{}})", 2000,
                            InvokeMode::kTest);
        std::printf("other: ok=%d result=%s error=%s %s\n", r.ok, r.result_json.c_str(),
                    r.error_code.c_str(), r.error_message.c_str());
        if (!r.ok || json::parse(r.result_json).value() != o.at("result"))
          fail("the other function's result " + r.result_json + " " + r.error_message +
               " != " + json::dump(o.at("result")));
      }
    }
    if (auto restarts = json::getInt(a, "min_isolate_restarts", 0);
        rt.stats().isolate_restarts < static_cast<std::uint64_t>(restarts))
      fail("isolate restarts " + std::to_string(rt.stats().isolate_restarts) + " < " +
           std::to_string(restarts));
    if (auto crashes = json::getInt(a, "min_worker_crashes", 0);
        rt.stats().worker_crashes < static_cast<std::uint64_t>(crashes))
      fail("worker crashes " + std::to_string(rt.stats().worker_crashes) + " < " +
           std::to_string(crashes));
  }

  // The runtime survived: a fresh function works on the same worker.
  FunctionId echo("7d3c1a52-0000-4000-8000-00000000e000");
  if (auto d = rt.deploy(acc, echo, {"function lambda(i, cb) { cb(null, i.payload); }", {}, 1});
      !d) {
    fail("sanity deploy failed: " + d.error().message);
  } else {
    auto r = invokeSync(rt, acc, echo, R"({"payload":{"alive":true}})", 2000, InvokeMode::kTest);
    if (!r.ok || r.result_json != R"({"alive":true})")
      fail("sanity echo failed: " + r.error_code + " " + r.error_message);
  }
  auto st = rt.stats();
  std::printf("stats: invocations=%llu errors=%llu timeouts=%llu restarts=%llu\n",
              (unsigned long long)st.invocations, (unsigned long long)st.errors,
              (unsigned long long)st.timeouts, (unsigned long long)st.isolate_restarts);
  if (failures) {
    std::fprintf(stderr, "%d failure(s) in %s\n", failures, argv[1]);
    return 1;
  }
  std::printf("PASS %s\n", argv[1]);
  return 0;
}
