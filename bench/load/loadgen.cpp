// parley_loadgen: whole-server load generator. Starts `parley serve --demo` (or uses --url),
// makes sure a bot serves a skill with an echo function (through the REST API as the demo
// admin), then drives consumer WebSockets (plain ws:// to the http listener, LivePerson's
// consumer protocol v3) on one or two io threads.
//
//   turns mode: N consumers each send a text, wait for the bot's reply (a ContentEvent from a
//     non-consumer), record the latency, send the next (closed loop) for --duration seconds after
//     --warmup seconds. Reports turns/s, p50/p90/p99/max latency, server RSS and CPU.
//   idle mode:  K conversations each send one message, wait for the reply and then stay idle,
//     with their sockets kept open (--keep-sockets) or closed (conversations stay OPEN in the
//     server). Reports the server's RSS growth per open conversation.
//
// See bench/load/README.md for commands and figures.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/detail/hybi13.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace bj = boost::json;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "parley_loadgen: %s\n", what.c_str());
  std::exit(1);
}

double nowSec() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// ---- /proc readings -------------------------------------------------------------------------

long procStatusKb(int pid, const char* key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(in, line))
    if (line.rfind(k, 0) == 0) return std::stol(line.substr(k.size()));
  return -1;
}

// utime + stime of a process, in seconds.
double procCpuSec(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto p = s.rfind(')');
  if (p == std::string::npos) return -1;
  std::istringstream rest(s.substr(p + 2));
  std::string f;
  std::vector<std::string> fields;
  while (rest >> f) fields.push_back(f);
  // fields[0] is state (field 3); utime is field 14, stime 15.
  if (fields.size() < 13) return -1;
  return (std::stod(fields[11]) + std::stod(fields[12])) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The live child processes of `pid` (of all its threads).
std::vector<int> childPids(int pid) {
  std::vector<int> out;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream f(task.path() / "children");
    int child = 0;
    while (f >> child) out.push_back(child);
  }
  return out;
}

// CPU seconds of `pid`'s live child processes (the function workers of `parley serve`).
double childrenCpuSec(int pid) {
  double total = 0;
  for (int child : childPids(pid)) total += procCpuSec(child);
  return total;
}

// CPU seconds of `pid` and every live descendant (a PostgreSQL postmaster and its backends,
// a server and its function workers).
double treeCpuSec(int pid) {
  double total = procCpuSec(pid);
  if (total < 0) return 0;
  for (int child : childPids(pid)) total += treeCpuSec(child);
  return total;
}

// Runs a shell command that prints one number (e.g. a database's commit counter); NaN when it
// fails or prints something else.
double probeValue(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return std::nan("");
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int rc = ::pclose(p);
  char* end = nullptr;
  const double v = std::strtod(out.c_str(), &end);
  if (rc != 0 || end == out.c_str()) return std::nan("");
  return v;
}

// Context switches (voluntary + involuntary) of every thread of a process.
long procContextSwitches(int pid) {
  long total = 0;
  std::error_code ec;
  for (const auto& t :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(t.path() / "status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0 ||
          line.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
        total += std::stol(line.substr(line.find(':') + 1));
  }
  return total;
}

// Machine-wide CPU time from /proc/stat, in seconds: {busy (all but idle and iowait), steal}.
std::pair<double, double> machineCpuSec() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double v[10] = {};
  in >> cpu;
  for (double& x : v) in >> x;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  double all = 0;
  for (double x : v) all += x;
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
  const double busy = all - v[3] - v[4] - v[8] - v[9];
  return {busy / hz, v[7] / hz};
}

double selfCpuSec() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// ---- the server process ---------------------------------------------------------------------

struct Endpoint {
  std::string host = "127.0.0.1";
  std::string port;
};

Endpoint parseUrl(const std::string& url) {
  std::string u = url;
  if (auto p = u.find("://"); p != std::string::npos) u = u.substr(p + 3);
  if (auto p = u.find('/'); p != std::string::npos) u = u.substr(0, p);
  auto c = u.rfind(':');
  if (c == std::string::npos) die("--url needs host:port: " + url);
  return Endpoint{u.substr(0, c), u.substr(c + 1)};
}

class ServerProcess {
 public:
  // Starts `binary serve --demo` with its data in `data_dir`; returns once both JSON lines
  // (listening, demo) were read from its stdout.
  ServerProcess(const std::string& binary, const std::string& data_dir,
                const std::vector<std::string>& extra) {
    int out[2];
    if (pipe(out) != 0) die("pipe failed");
    std::vector<std::string> args = {binary,        "serve",       "--data",       data_dir,
                                     "--listen",    "127.0.0.1:0", "--tls-listen", "",
                                     "--log-level", "warn",        "--demo"};
    for (const auto& e : extra) args.push_back(e);
    const std::string log = data_dir + "/server.log";
    pid_ = fork();
    if (pid_ < 0) die("fork failed");
    if (pid_ == 0) {
      dup2(out[1], 1);
      int err = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (err >= 0) dup2(err, 2);
      close(out[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      std::perror("execv");
      _exit(127);
    }
    close(out[1]);
    out_ = out[0];
    auto deadline = Clock::now() + std::chrono::seconds(60);
    while (!(listening_ && demo_)) {
      std::string line = readLine(deadline);
      if (line.empty()) die("the server did not print its listening/demo lines; see " + log);
      auto v = bj::parse(line);
      const auto& o = v.as_object();
      std::string ev(o.at("event").as_string());
      if (ev == "listening") {
        listening_ = o;
      } else if (ev == "demo") {
        demo_ = o;
      }
    }
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int st = 0;
      for (int i = 0; i < 300; ++i) {
        if (waitpid(pid_, &st, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (pid_ > 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &st, 0);
      }
    }
    if (out_ >= 0) close(out_);
  }
  int pid() const { return pid_; }
  const bj::object& listening() const { return *listening_; }
  const bj::object& demo() const { return *demo_; }

 private:
  std::string readLine(Clock::time_point deadline) {
    for (;;) {
      if (auto p = buf_.find('\n'); p != std::string::npos) {
        std::string line = buf_.substr(0, p);
        buf_.erase(0, p + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return {};
      pollfd pfd{out_, POLLIN, 0};
      if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return {};
      char tmp[4096];
      ssize_t n = read(out_, tmp, sizeof tmp);
      if (n <= 0) return {};
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
  }

  int pid_ = -1;
  int out_ = -1;
  std::string buf_;
  std::optional<bj::object> listening_;
  std::optional<bj::object> demo_;
};

// ---- a small synchronous HTTP client (keep-alive) -------------------------------------------

struct HttpResult {
  int status = 0;
  std::string body;
  bj::value json() const {
    boost::system::error_code ec;
    auto v = bj::parse(body, ec);
    return ec ? bj::value() : v;
  }
};

class HttpClient {
 public:
  explicit HttpClient(Endpoint ep) : ep_(std::move(ep)), stream_(ioc_) {}

  HttpResult call(http::verb method, const std::string& target, const std::string& body = "",
                  const std::string& bearer = "") {
    for (int attempt = 0; attempt < 3; ++attempt) {
      try {
        if (!connected_) {
          tcp::resolver r(ioc_);
          stream_.connect(r.resolve(ep_.host, ep_.port));
          connected_ = true;
        }
        http::request<http::string_body> req(method, target, 11);
        req.set(http::field::host, ep_.host);
        req.set(http::field::content_type, "application/json");
        if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
        req.body() = body;
        req.prepare_payload();
        req.keep_alive(true);
        http::write(stream_, req);
        beast::flat_buffer buf;
        http::response<http::string_body> res;
        http::read(stream_, buf, res);
        if (!res.keep_alive()) {
          beast::error_code ec;
          stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
          stream_.close();
          connected_ = false;
        }
        return HttpResult{static_cast<int>(res.result_int()), res.body()};
      } catch (const std::exception&) {
        beast::error_code ec;
        stream_.socket().close(ec);
        connected_ = false;
      }
    }
    return HttpResult{0, "connection failed"};
  }

 private:
  Endpoint ep_;
  asio::io_context ioc_;
  beast::tcp_stream stream_;
  bool connected_ = false;
};

// --noisy: account B test-invokes a runaway loop through REST, again and again, from `threads`
// clients at once (each waits for its invocation's answer: the CPU limit ends it).
class Noisy {
 public:
  Noisy(const Endpoint& ep, const std::string& account, const std::string& user,
        const std::string& password, int threads) {
    HttpClient h(ep);
    auto login = h.call(http::verb::post, "/api/account/" + account + "/login?v=1.3",
                        bj::serialize(bj::object{{"username", user}, {"password", password}}));
    if (login.status != 200) die("noisy: login failed: " + login.body);
    std::string bearer(login.json().at("bearer").as_string());
    auto created = h.call(
        http::verb::post, "/api/v1/accounts/" + account + "/functions",
        bj::serialize(bj::object{{"name", "noisy-loop-" + std::to_string(getpid())},
                                 {"event", "bot_connectors_custom_integration"},
                                 {"code", "function lambda(input, callback) { while (true) {} }"}}),
        bearer);
    if (created.status != 201) die("noisy: creating the function failed: " + created.body);
    std::string uuid(created.json().at("uuid").as_string());
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, ep, account, bearer, uuid] {
        HttpClient c(ep);
        while (!stop_) {
          auto r = c.call(http::verb::post,
                          "/api/v1/accounts/" + account + "/functions/" + uuid + "/invoke",
                          R"({"payload":{}})", bearer);
          std::lock_guard l(mu_);
          ++invocations_;
          auto v = r.json();
          std::string code = "http " + std::to_string(r.status);
          if (v.is_object() && v.as_object().contains("error") &&
              v.as_object().at("error").is_object())
            code = std::string(v.at("error").at("code").as_string());
          ++outcomes_[code];
        }
      });
    }
  }
  ~Noisy() { stop(); }
  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  bj::object summary() {
    std::lock_guard l(mu_);
    bj::object o;
    for (auto& [k, v] : outcomes_) o[k] = v;
    return bj::object{{"threads", threads_.size()}, {"invocations", invocations_}, {"outcomes", o}};
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  long invocations_ = 0;
  std::map<std::string, long> outcomes_;
};

// ---- setting up the bot ----------------------------------------------------------------------

constexpr const char* kEchoCode =
    "function lambda(input, callback) {\n"
    "  callback(null, {messages: ['echo: ' + input.payload.message]});\n"
    "}\n";

struct Target {
  std::string account;
  std::string skill_id;
  std::string bot_id;
  std::string bearer;  // the admin's login (agent sessions use it)
  std::string note;    // what setup did
};

// Finds (or creates through REST) a running bot on `skill_name` with an echo function.
Target setUpBot(const Endpoint& ep, const std::string& account, const std::string& user,
                const std::string& password, const std::string& skill_name) {
  HttpClient h(ep);
  Target t;
  t.account = account;
  auto login = h.call(http::verb::post, "/api/account/" + account + "/login?v=1.3",
                      bj::serialize(bj::object{{"username", user}, {"password", password}}));
  if (login.status != 200) die("login failed: " + std::to_string(login.status) + " " + login.body);
  std::string bearer(login.json().at("bearer").as_string());
  t.bearer = bearer;
  const std::string base = "/api/v1/accounts/" + account + "/";
  auto skills = h.call(http::verb::get, base + "skills", "", bearer);
  if (skills.status != 200) die("GET skills: " + skills.body);
  const bj::value skills_json = skills.json();
  if (!skills_json.is_array()) die("GET skills: " + skills.body);
  for (const auto& s : skills_json.as_array()) {
    const auto& o = s.as_object();
    if (o.at("name").as_string() == skill_name) t.skill_id = bj::value_to<std::string>(o.at("id"));
  }
  if (t.skill_id.empty()) die("skill " + skill_name + " does not exist in account " + account);

  auto bots = h.call(http::verb::get, base + "bots", "", bearer);
  if (bots.status != 200) die("GET bots: " + std::to_string(bots.status) + " " + bots.body);
  const bj::value bots_json = bots.json();
  if (!bots_json.is_array()) die("GET bots: " + bots.body);
  for (const auto& b : bots_json.as_array()) {
    const auto& o = b.as_object();
    bool serves = false;
    if (auto it = o.find("skills"); it != o.end() && it->value().is_array())
      for (const auto& s : it->value().as_array())
        if (s.is_string() && (s.as_string() == skill_name || s.as_string() == t.skill_id))
          serves = true;
    if (serves) {
      t.bot_id = std::string(o.at("id").as_string());
      t.note = "used existing bot " + t.bot_id + " (status " +
               std::string(o.at("status").as_string()) + ")";
      if (o.at("status").as_string() != "ONLINE") {
        auto st = h.call(http::verb::post, base + "bots/" + t.bot_id + "/start", "{}", bearer);
        if (st.status / 100 != 2) die("start bot: " + st.body);
        t.note += ", started it";
      }
      return t;
    }
  }
  // Create the echo function, deploy it, create a bot on the skill and start it.
  auto fn = h.call(http::verb::post, base + "functions",
                   bj::serialize(bj::object{{"name", "loadgen-echo"},
                                            {"description", "parley_loadgen echo"},
                                            {"event", "bot_connectors_custom_integration"},
                                            {"code", kEchoCode}}),
                   bearer);
  if (fn.status / 100 != 2) die("create function: " + fn.body);
  std::string uuid(fn.json().at("uuid").as_string());
  auto dep = h.call(http::verb::post, base + "functions/" + uuid + "/deploy", "{}", bearer);
  if (dep.status / 100 != 2) die("deploy function: " + dep.body);
  // Deploys may complete asynchronously: wait until the function reports a deployed state.
  for (int i = 0; i < 100; ++i) {
    auto g = h.call(http::verb::get, base + "functions/" + uuid, "", bearer);
    auto v = g.json();
    if (v.is_object()) {
      auto st = v.as_object().find("state");
      if (st != v.as_object().end() && st->value().is_string() &&
          st->value().as_string() != "Draft" && st->value().as_string() != "Deploying")
        break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto bot = h.call(http::verb::post, base + "bots",
                    bj::serialize(bj::object{{"name", "loadgen"},
                                             {"vendor", "CUSTOM_INTEGRATION"},
                                             {"functionUuid", uuid},
                                             {"conversationTypes", bj::array{"MESSAGING", "CHAT"}},
                                             {"skills", bj::array{bj::value(skill_name)}},
                                             {"disclaimerAccepted", true},
                                             {"escalation", bj::object{{"skill", skill_name}}}}),
                    bearer);
  if (bot.status / 100 != 2) die("create bot: " + bot.body);
  t.bot_id = std::string(bot.json().at("id").as_string());
  auto st = h.call(http::verb::post, base + "bots/" + t.bot_id + "/start", "{}", bearer);
  if (st.status / 100 != 2) die("start bot: " + st.body);
  t.note = "created function " + uuid + " (echo), deployed it, created and started bot " + t.bot_id;
  return t;
}

// Consumer identities: POST signup from `threads` keep-alive connections.
std::vector<std::string> signups(const Endpoint& ep, const std::string& account, int n,
                                 int threads) {
  std::vector<std::string> out(static_cast<std::size_t>(n));
  std::atomic<int> next{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      HttpClient h(ep);
      for (int i; (i = next++) < n;) {
        auto r = h.call(http::verb::post, "/api/account/" + account + "/signup", "{}");
        auto v = r.json();
        if (r.status != 200 || !v.is_object() || !v.as_object().contains("jwt")) {
          ++failed;
          continue;
        }
        out[static_cast<std::size_t>(i)] = std::string(v.as_object().at("jwt").as_string());
      }
    });
  for (auto& t : ts) t.join();
  if (failed) die(std::to_string(failed.load()) + " signups failed");
  return out;
}

// ---- consumers -------------------------------------------------------------------------------

struct Shared {
  Endpoint ep;
  std::string account;
  std::string skill_id;
  std::vector<std::string> source_ips;  // local addresses to bind (spreads ephemeral ports)
  // Think time between a reply and the consumer's next message (0: closed loop, send at once).
  // Each wait is uniform in [0.5, 1.5] x think_ms; the first message waits uniform [0, think_ms].
  double think_ms = 0;
  // More than one io thread: each consumer runs on its own strand. With one (the default) the
  // io_context's own executor already runs everything in order, and a strand would only add a
  // lock and a queue to every handler of every consumer, on the cores the server is using.
  bool strands = false;
  std::atomic<bool> measuring{false};
  std::atomic<bool> stopping{false};
  std::atomic<long> ready{0};
  std::atomic<long> failed{0};
  std::atomic<long> idle_done{0};
  std::atomic<long> turns{0};         // completed during the measurement window
  std::atomic<long> frames{0};        // text messages received during the measurement window
  std::atomic<long> agent_frames{0};  // the same, by the idle agent sessions (--agents)
  std::string agent_bearer;
  std::atomic<long> errors{0};
  std::mutex err_mu;
  std::string first_error;
  void error(const std::string& e) {
    ++errors;
    std::lock_guard l(err_mu);
    if (first_error.empty()) first_error = e;
  }
};

// The consumer protocol apart from its transport: RequestConversation →
// SubscribeMessagingEvents → closed-loop (or one) messages. A transport calls opened() once its
// WebSocket handshake is done and onFrame() for each text message, and provides writeText,
// sendAfter and closeGracefully. Every call for one consumer is made on one thread at a time.
class ConsumerLogic {
 public:
  // kAgentIdle: not a consumer but an agent (brand) session of the admin that stays logged in
  // and idle, as agents in a contact centre do while bots take the conversations.
  enum class Mode { kTurns, kIdleKeep, kIdleClose, kAgentIdle };

  ConsumerLogic(Shared& sh, std::string jwt, int index, Mode mode)
      : sh_(sh),
        jwt_(std::move(jwt)),
        index_(index),
        mode_(mode),
        rng_(static_cast<std::uint32_t>(index) * 2654435761u + 1) {}
  virtual ~ConsumerLogic() = default;
  ConsumerLogic(const ConsumerLogic&) = delete;
  ConsumerLogic& operator=(const ConsumerLogic&) = delete;

  bool awaiting() const { return awaiting_; }
  void collect(std::vector<float>& into) const {
    into.insert(into.end(), latencies_ms_.begin(), latencies_ms_.end());
  }

 protected:
  virtual void writeText(std::string text) = 0;
  virtual void sendAfter(double ms) = 0;
  virtual void closeGracefully() = 0;

  void fail(const std::string& what) {
    if (done_) return;
    done_ = true;
    ++sh_.failed;
    sh_.error("consumer " + std::to_string(index_) + ": " + what);
  }

  void opened() {
    if (mode_ == Mode::kAgentIdle) {
      ++sh_.ready;
      return;
    }
    request("cm.ConsumerRequestConversation",
            bj::object{
                {"channelType", "MESSAGING"}, {"ttrDefName", "NORMAL"}, {"skillId", sh_.skill_id}});
  }

  // The closed (or open) loop starts: the first message now, or after a uniform [0, think).
  void startTurns() {
    if (mode_ == Mode::kAgentIdle) return;
    if (sh_.think_ms > 0)
      sendAfter(std::uniform_real_distribution<double>(0, 1)(rng_) * sh_.think_ms);
    else
      sendText();
  }

  // Every frame is parsed as JSON, into a per-thread arena (no allocation per node): the
  // generator shares the server's two cores, so what it spends per frame is taken from them.
  void onFrame(std::string_view text) {
    if (mode_ == Mode::kAgentIdle) {
      if (sh_.measuring) sh_.agent_frames.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (sh_.measuring) sh_.frames.fetch_add(1, std::memory_order_relaxed);
    alignas(16) thread_local unsigned char arena_buf[16384];
    boost::system::error_code ec;
    bj::monotonic_resource arena(arena_buf, sizeof arena_buf);
    auto v = bj::parse(text, ec, &arena);
    if (ec || !v.is_object())
      return sh_.error("unparsable frame: " + std::string(text.substr(0, 200)));
    const auto& o = v.as_object();
    auto kind = o.if_contains("kind");
    auto type = o.if_contains("type");
    std::string_view t = type && type->is_string() ? std::string_view(type->as_string()) : "";
    if (kind && kind->is_string() && kind->as_string() == "resp") {
      auto code = o.if_contains("code");
      int c = code && code->is_int64() ? static_cast<int>(code->as_int64()) : 0;
      if (c != 200) return fail("response " + std::string(text.substr(0, 300)));
      if (t == "cm.RequestConversationResponse") {
        conv_ = std::string(o.at("body").at("conversationId").as_string());
        request("ms.SubscribeMessagingEvents", bj::object{{"dialogId", conv_}, {"fromSeq", 0}});
      } else if (t == "GenericSubscribeResponse") {
        subscribed();
      }
      return;
    }
    if (t != "ms.MessagingEventNotification") return;
    const auto* body = o.if_contains("body");
    if (!body || !body->is_object()) return;
    const auto* changes = body->as_object().if_contains("changes");
    if (!changes || !changes->is_array()) return;
    for (const auto& ch : changes->as_array()) {
      const auto& c = ch.as_object();
      const auto* seq = c.if_contains("sequence");
      std::int64_t s = seq && seq->is_int64() ? seq->as_int64() : -1;
      if (s <= max_seq_) continue;
      max_seq_ = s;
      const auto* ev = c.if_contains("event");
      const auto* md = c.if_contains("originatorMetadata");
      if (!ev || !ev->is_object() || !md || !md->is_object()) continue;
      const auto* et = ev->as_object().if_contains("type");
      const auto* role = md->as_object().if_contains("role");
      if (!et || !role || *et != "ContentEvent" || *role == "CONSUMER") continue;
      onReply();
    }
  }

  void sendText() {
    if (sh_.stopping || done_) return;
    awaiting_ = true;
    sent_measuring_ = sh_.measuring;
    sent_at_ = Clock::now();
    request("ms.PublishEvent",
            bj::object{{"dialogId", conv_},
                       {"event", bj::object{{"type", "ContentEvent"},
                                            {"contentType", "text/plain"},
                                            {"message", "hello " + std::to_string(++sent_)}}}});
  }

  Shared& sh_;
  std::string jwt_;
  int index_;
  Mode mode_;
  bool done_ = false;
  bool closing_ = false;

 private:
  void request(const char* type, bj::object body) {
    bj::object env{{"kind", "req"},
                   {"id", std::to_string(++req_id_)},
                   {"type", type},
                   {"body", std::move(body)}};
    writeText(bj::serialize(env));
  }

  void subscribed() {
    if (mode_ == Mode::kTurns) {
      ++sh_.ready;  // the driver starts the turns when everybody is ready
    } else {
      sendText();
    }
  }

  void onReply() {
    if (!awaiting_) return;  // e.g. a welcome message
    awaiting_ = false;
    const auto now = Clock::now();
    if (mode_ != Mode::kTurns) {
      ++sh_.idle_done;
      if (mode_ == Mode::kIdleClose) {
        closing_ = true;
        closeGracefully();
      }
      return;
    }
    if (sent_measuring_ && sh_.measuring) {
      latencies_ms_.push_back(
          static_cast<float>(std::chrono::duration<double, std::milli>(now - sent_at_).count()));
      ++sh_.turns;
    }
    if (sh_.think_ms > 0)
      sendAfter(std::uniform_real_distribution<double>(0.5, 1.5)(rng_) * sh_.think_ms);
    else
      sendText();
  }

  std::mt19937 rng_;
  std::string conv_;
  long req_id_ = 0;
  long sent_ = 0;
  std::int64_t max_seq_ = -1;
  bool awaiting_ = false;
  bool sent_measuring_ = false;
  Clock::time_point sent_at_;
  std::vector<float> latencies_ms_;
};

// A consumer on a Beast WebSocket: signup JWT → ws connect → the protocol above. Runs on its own
// strand (with one io thread: on the io_context). Used by idle mode, and by turns mode with
// --client beast.
class Consumer : public ConsumerLogic, public std::enable_shared_from_this<Consumer> {
 public:
  Consumer(asio::io_context& ioc, Shared& sh, std::string jwt, int index, Mode mode)
      : ConsumerLogic(sh, std::move(jwt), index, mode),
        ws_(sh.strands ? asio::any_io_executor(asio::make_strand(ioc))
                       : asio::any_io_executor(ioc.get_executor())),
        timer_(ws_.get_executor()) {}

  void start() {
    auto& sock = beast::get_lowest_layer(ws_).socket();
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(sh_.ep.host, ec);
    if (ec) return fail("bad host " + sh_.ep.host);
    tcp::endpoint remote(addr, static_cast<unsigned short>(std::stoi(sh_.ep.port)));
    sock.open(tcp::v4(), ec);
    if (ec) return fail("socket: " + ec.message());
    if (!sh_.source_ips.empty()) {
      const auto& src = sh_.source_ips[static_cast<std::size_t>(index_) % sh_.source_ips.size()];
      sock.bind(tcp::endpoint(asio::ip::make_address(src), 0), ec);
      if (ec) return fail("bind " + src + ": " + ec.message());
    }
    sock.set_option(tcp::no_delay(true), ec);
    beast::get_lowest_layer(ws_).async_connect(
        remote, [self = shared_from_this()](beast::error_code ec) { self->onConnect(ec); });
  }

  // Starts the closed loop (turns mode). Posted onto the strand.
  void go() {
    asio::post(ws_.get_executor(), [self = shared_from_this()] { self->startTurns(); });
  }
  void closeSocket() {
    asio::post(ws_.get_executor(), [self = shared_from_this()] {
      beast::error_code ec;
      beast::get_lowest_layer(self->ws_).socket().close(ec);
    });
  }

 private:
  void onConnect(beast::error_code ec) {
    if (ec) return fail("connect: " + ec.message());
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::decorator([jwt = jwt_](websocket::request_type& req) {
      req.set(http::field::authorization, "jwt " + jwt);
    }));
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    ws_.async_handshake(sh_.ep.host + ":" + sh_.ep.port,
                        "/ws_api/account/" + sh_.account + "/messaging/consumer?v=3",
                        [self = shared_from_this()](beast::error_code ec) {
                          if (ec) return self->fail("handshake: " + ec.message());
                          self->readLoop();
                          self->opened();
                        });
  }

  void writeText(std::string text) override {
    out_.push_back(std::move(text));
    if (out_.size() == 1) writeNext();
  }
  void writeNext() {
    ws_.text(true);
    ws_.async_write(asio::buffer(out_.front()),
                    [self = shared_from_this()](beast::error_code ec, std::size_t) {
                      if (ec) return self->fail("write: " + ec.message());
                      self->out_.erase(self->out_.begin());
                      if (!self->out_.empty()) self->writeNext();
                    });
  }
  void closeGracefully() override {
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](auto) {});
  }
  void sendAfter(double ms) override {
    timer_.expires_after(std::chrono::microseconds(static_cast<long>(ms * 1000)));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->sendText();
    });
  }

  void readLoop() {
    ws_.async_read(in_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        if (self->closing_ || self->sh_.stopping) return;
        return self->fail("read: " + ec.message());
      }
      const auto data = self->in_.data();
      self->onFrame(std::string_view(static_cast<const char*>(data.data()), data.size()));
      self->in_.consume(self->in_.size());
      self->readLoop();
    });
  }

  websocket::stream<beast::tcp_stream> ws_;
  asio::steady_timer timer_;
  beast::flat_buffer in_;
  std::vector<std::string> out_;
};

// ---- turns mode without Beast: one epoll loop per client thread ------------------------------
//
// In turns mode the generator's own CPU is taken from the two cores the server runs on, and with
// Beast on Asio it spent ~30 µs per turn: per frame a read that returns EAGAIN (Asio retries a
// socket at once after any read that returned data), the composed read and write operations,
// UTF-8 checking, a strand or executor hop. This transport keeps one consumer = one socket and
// the same protocol code (ConsumerLogic, every frame parsed as JSON), but frames RFC 6455 itself:
//   - the upgrade is a blocking HTTP/1.1 request with Beast's Sec-WebSocket-Key/Accept helpers;
//   - then the socket is non-blocking in an edge-triggered epoll set; a readable socket is read
//     until a read returns fewer bytes than it asked for (on a stream socket the queue was then
//     empty, and data arriving later raises a new edge), so no read returns EAGAIN in the loop;
//   - frames out are text frames, masked with a key from a per-connection xorshift generator;
//     frames in must be unmasked; continuation frames are joined, pings answered with a pong,
//     a close frame from the server is an error unless the run is stopping, and a frame over
//     16 MiB or a binary frame is an error.
class RawLoop;

class RawConsumer final : public ConsumerLogic {
 public:
  RawConsumer(RawLoop& loop, Shared& sh, std::string jwt, int index, Mode mode = Mode::kTurns)
      : ConsumerLogic(sh, std::move(jwt), index, mode),
        loop_(loop),
        mask_state_(static_cast<std::uint32_t>(index) * 2246822519u + 0x9E3779B9u) {}
  ~RawConsumer() override {
    if (fd_ >= 0) ::close(fd_);
  }

  // Blocking: TCP connect and the WebSocket upgrade, then the socket is made non-blocking and
  // the conversation requested. False (and counted as failed) on any error.
  bool connectAndUpgrade(int epoll_fd);
  void readable();
  void flush();
  void go() { startTurns(); }
  void timerFired() { sendText(); }
  int fd() const { return fd_; }

 private:
  void writeText(std::string text) override { sendFrame(0x1, text); }
  void sendAfter(double ms) override;
  void closeGracefully() override {}  // turns mode never closes before the end of the run
  void sendFrame(unsigned opcode, std::string_view payload);
  // Writes what the socket takes now (until EAGAIN or an error, which fails the consumer);
  // returns how many bytes that was.
  std::size_t sendSome(std::string_view bytes);
  // Parses every whole frame in in_; false once the consumer has failed.
  bool parseFrames();
  // Always false, for `return failAndClose(...)`.
  bool failAndClose(const std::string& what) {
    fail(what);
    if (fd_ >= 0) {
      ::close(fd_);  // also leaves the epoll set
      fd_ = -1;
    }
    return false;
  }

  RawLoop& loop_;
  int fd_ = -1;
  std::uint32_t mask_state_;
  std::vector<char> in_;  // bytes read and not yet parsed (at most a partial frame between reads)
  std::size_t in_len_ = 0;
  std::string fragments_;    // a text message arriving in continuation frames
  std::string pending_out_;  // what the socket did not take yet
  std::string frame_;        // scratch for the frame being written
};

class RawLoop {
 public:
  explicit RawLoop(Shared& sh) : sh_(sh), epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (epoll_fd_ < 0) die(std::string("epoll_create1: ") + std::strerror(errno));
  }
  ~RawLoop() {
    quit();
    ::close(epoll_fd_);
  }
  RawLoop(const RawLoop&) = delete;
  RawLoop& operator=(const RawLoop&) = delete;

  void add(std::unique_ptr<RawConsumer> c) { consumers_.push_back(std::move(c)); }
  // The loop's thread connects its consumers one by one, then runs the event loop.
  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void go() { go_ = true; }
  void quit() {
    quit_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // After quit() only.
  const std::vector<std::unique_ptr<RawConsumer>>& consumers() const { return consumers_; }

  void schedule(Clock::time_point at, RawConsumer* c) { timers_.push({at, c}); }

 private:
  void run() {
    for (auto& c : consumers_) {
      if (quit_) return;
      c->connectAndUpgrade(epoll_fd_);
    }
    bool went = false;
    std::vector<epoll_event> events(256);
    while (!quit_) {
      // Timers to the microsecond (epoll_pwait2): the open loop's sends stay spread out as their
      // think times are, instead of leaving together at a millisecond tick.
      auto wait = std::chrono::nanoseconds(std::chrono::milliseconds(20));
      if (!timers_.empty())
        wait = std::clamp<std::chrono::nanoseconds>(timers_.top().first - Clock::now(),
                                                    std::chrono::nanoseconds(0), wait);
      const timespec ts{0, static_cast<long>(wait.count())};
      const int n =
          ::epoll_pwait2(epoll_fd_, events.data(), static_cast<int>(events.size()), &ts, nullptr);
      if (n < 0 && errno != EINTR) die(std::string("epoll_pwait2: ") + std::strerror(errno));
      if (go_ && !went) {
        went = true;
        for (auto& c : consumers_) c->go();
      }
      for (int i = 0; i < n; ++i) {
        auto* c = static_cast<RawConsumer*>(events[static_cast<std::size_t>(i)].data.ptr);
        const auto ev = events[static_cast<std::size_t>(i)].events;
        if (ev & EPOLLOUT) c->flush();
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) c->readable();
      }
      const auto now = Clock::now();
      while (!timers_.empty() && timers_.top().first <= now) {
        auto* c = timers_.top().second;
        timers_.pop();
        c->timerFired();
      }
    }
  }

  using Timer = std::pair<Clock::time_point, RawConsumer*>;
  Shared& sh_;
  int epoll_fd_;
  std::vector<std::unique_ptr<RawConsumer>> consumers_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::atomic<bool> go_{false};
  std::atomic<bool> quit_{false};
  std::thread thread_;
};

bool RawConsumer::connectAndUpgrade(int epoll_fd) {
  auto sysFail = [&](const std::string& what) {
    return failAndClose(what + ": " + std::strerror(errno));
  };
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return sysFail("socket");
  if (!sh_.source_ips.empty()) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    const auto& ip = sh_.source_ips[static_cast<std::size_t>(index_) % sh_.source_ips.size()];
    if (::inet_pton(AF_INET, ip.c_str(), &src.sin_addr) != 1) return sysFail("bad source " + ip);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0)
      return sysFail("bind " + ip);
  }
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const timeval tv{10, 0};  // the upgrade's reads and writes give up after 10 s
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(static_cast<std::uint16_t>(std::stoi(sh_.ep.port)));
  if (::inet_pton(AF_INET, sh_.ep.host.c_str(), &remote.sin_addr) != 1)
    return sysFail("bad host " + sh_.ep.host);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&remote), sizeof remote) != 0)
    return sysFail("connect");

  websocket::detail::sec_ws_key_type key;
  websocket::detail::make_sec_ws_key(key);
  // A consumer authenticates with its JWT; an agent session with the bearer in the path.
  const bool agent = mode_ == Mode::kAgentIdle;
  const std::string target = "/ws_api/account/" + sh_.account +
                             (agent ? "/messaging/brand/" + sh_.agent_bearer + "?v=2.1"
                                    : std::string("/messaging/consumer?v=3"));
  const std::string req = "GET " + target + " HTTP/1.1\r\nHost: " + sh_.ep.host + ":" +
                          sh_.ep.port +
                          "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
                          std::string(key.data(), key.size()) +
                          (agent ? std::string() : "\r\nAuthorization: jwt " + jwt_) + "\r\n\r\n";
  for (std::size_t off = 0; off < req.size();) {
    const ssize_t w = ::send(fd_, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (w <= 0) return sysFail("send upgrade");
    off += static_cast<std::size_t>(w);
  }
  in_.resize(16384);
  std::size_t header_end = std::string_view::npos;
  while (header_end == std::string_view::npos) {
    if (in_len_ == in_.size()) return failAndClose("upgrade response over 16 KiB");
    const ssize_t r = ::recv(fd_, in_.data() + in_len_, in_.size() - in_len_, 0);
    if (r < 0) return sysFail("read upgrade response");
    if (r == 0) return failAndClose("server closed during the upgrade");
    in_len_ += static_cast<std::size_t>(r);
    header_end = std::string_view(in_.data(), in_len_).find("\r\n\r\n");
  }
  const std::string head(in_.data(), header_end + 2);
  if (!head.starts_with("HTTP/1.1 101 "))
    return failAndClose("upgrade refused: " + head.substr(0, head.find('\r')));
  websocket::detail::sec_ws_accept_type accept;
  websocket::detail::make_sec_ws_accept(accept, std::string_view(key.data(), key.size()));
  std::string lower = head;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  const auto at = lower.find("\r\nsec-websocket-accept:");
  if (at == std::string::npos) return failAndClose("upgrade without Sec-WebSocket-Accept");
  const auto v0 = head.find_first_not_of(' ', at + 23), v1 = head.find('\r', v0);
  if (head.substr(v0, v1 - v0) != std::string_view(accept.data(), accept.size()))
    return failAndClose("wrong Sec-WebSocket-Accept");
  // Bytes after the response are already frames.
  in_len_ -= header_end + 4;
  std::memmove(in_.data(), in_.data() + header_end + 4, in_len_);

  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0) return sysFail("fcntl");
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = this;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd_, &ev) != 0) return sysFail("epoll_ctl");
  opened();
  if (in_len_ > 0) parseFrames();
  return !done_;
}

void RawConsumer::readable() {
  while (fd_ >= 0 && !done_) {
    if (in_.size() - in_len_ < 4096) in_.resize(std::max<std::size_t>(in_.size() * 2, 16384));
    const std::size_t room = in_.size() - in_len_;
    const ssize_t r = ::recv(fd_, in_.data() + in_len_, room, 0);
    if (r > 0) {
      in_len_ += static_cast<std::size_t>(r);
      if (!parseFrames()) return;
      if (static_cast<std::size_t>(r) < room) return;  // drained: the next data raises an edge
      continue;
    }
    if (r == 0) {
      if (!sh_.stopping) failAndClose("the server closed the connection");
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (!sh_.stopping) failAndClose(std::string("read: ") + std::strerror(errno));
    return;
  }
}

bool RawConsumer::parseFrames() {
  constexpr std::uint64_t kMaxFrame = 16u << 20;
  const auto* p = reinterpret_cast<const unsigned char*>(in_.data());
  std::size_t off = 0;
  while (!done_ && in_len_ - off >= 2) {
    const unsigned b0 = p[off], b1 = p[off + 1];
    std::size_t header = 2;
    std::uint64_t len = b1 & 0x7f;
    if (b1 & 0x80) return failAndClose("the server sent a masked frame");
    if (len == 126) {
      if (in_len_ - off < 4) break;
      len = (std::uint64_t{p[off + 2]} << 8) | p[off + 3];
      header = 4;
    } else if (len == 127) {
      if (in_len_ - off < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[off + 2 + static_cast<std::size_t>(i)];
      header = 10;
    }
    if (len > kMaxFrame) return failAndClose("a frame over 16 MiB");
    if (in_len_ - off < header + len) break;
    const std::string_view payload(in_.data() + off + header, static_cast<std::size_t>(len));
    off += header + static_cast<std::size_t>(len);
    const bool fin = (b0 & 0x80) != 0;
    switch (b0 & 0x0f) {
      case 0x0:  // continuation
        fragments_.append(payload);
        if (fin) {
          onFrame(fragments_);
          fragments_.clear();
        }
        break;
      case 0x1:
        if (fin)
          onFrame(payload);
        else
          fragments_.assign(payload);
        break;
      case 0x8:
        if (!sh_.stopping) failAndClose("the server sent a close frame");
        return false;
      case 0x9:
        sendFrame(0xA, payload);
        break;
      case 0xA:
        break;
      default:
        return failAndClose("unexpected frame opcode " + std::to_string(b0 & 0x0f));
    }
  }
  if (fd_ < 0) return false;
  in_len_ -= off;
  if (in_len_ > 0 && off > 0) std::memmove(in_.data(), in_.data() + off, in_len_);
  return !done_;
}

void RawConsumer::sendFrame(unsigned opcode, std::string_view payload) {
  if (fd_ < 0) return;
  frame_.clear();
  frame_.push_back(static_cast<char>(0x80 | opcode));
  const std::size_t n = payload.size();
  if (n < 126) {
    frame_.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    frame_.push_back(static_cast<char>(0x80 | 126));
    frame_.push_back(static_cast<char>(n >> 8));
    frame_.push_back(static_cast<char>(n & 0xff));
  } else {
    frame_.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) frame_.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
  // xorshift32: the key need only differ from frame to frame.
  mask_state_ ^= mask_state_ << 13;
  mask_state_ ^= mask_state_ >> 17;
  mask_state_ ^= mask_state_ << 5;
  unsigned char mask[4];
  std::memcpy(mask, &mask_state_, 4);
  frame_.append(reinterpret_cast<const char*>(mask), 4);
  const std::size_t at = frame_.size();
  frame_.append(payload);
  for (std::size_t i = 0; i < n; ++i)
    frame_[at + i] = static_cast<char>(frame_[at + i] ^ mask[i & 3]);
  if (!pending_out_.empty()) {
    pending_out_.append(frame_);
    return;
  }
  const std::size_t off = sendSome(frame_);
  if (fd_ >= 0 && off < frame_.size()) pending_out_.assign(frame_, off);  // EPOLLOUT flushes it
}

void RawConsumer::flush() { pending_out_.erase(0, sendSome(pending_out_)); }

std::size_t RawConsumer::sendSome(std::string_view bytes) {
  std::size_t off = 0;
  while (fd_ >= 0 && off < bytes.size()) {
    const ssize_t w = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (!sh_.stopping) failAndClose(std::string("write: ") + std::strerror(errno));
    break;
  }
  return off;
}

void RawConsumer::sendAfter(double ms) {
  loop_.schedule(Clock::now() + std::chrono::microseconds(static_cast<long>(ms * 1000)), this);
}

// The value of `name` in Prometheus text (-1 when absent).
double metricValue(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(name + " ")) return std::strtod(line.c_str() + name.size() + 1, nullptr);
  }
  return -1;
}

// Fixed work timed three times; the fastest, in ms. On a shared VM the host's speed changes from
// hour to hour with no steal to show for it (the same build's CPU per turn moved by 40 %): runs
// are comparable only beside these figures (lower = faster host).
template <class Work>
double bestOfThreeMs(Work work) {
  double best = 1e9;
  for (int round = 0; round < 3; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    if (work() == 42) std::fputs(" ", stderr);  // keeps the work (its result is used)
    best = std::min(
        best,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// Single-threaded CPU work: integer hashing, no memory traffic.
double hostCalibrationMs() {
  return bestOfThreeMs([] {
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 50'000'000; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      x *= 0xFF51AFD7ED558CCDull;
    }
    return x;
  });
}

// 200,000 system calls (getppid): on this VM a system call's cost varies with the host more
// than arithmetic does, and a bot turn makes ~15 of them.
double hostSyscallCalibrationMs() {
  return bestOfThreeMs([] {
    std::uint64_t sum = 0;
    for (int i = 0; i < 200'000; ++i) sum += static_cast<std::uint64_t>(::syscall(SYS_getppid));
    return sum;
  });
}

double pct(const std::vector<float>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto i = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

bool waitUntil(const std::function<bool()>& pred, double seconds) {
  const double end = nowSec() + seconds;
  while (!pred()) {
    if (nowSec() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"parley_loadgen: consumer WebSockets against parley serve --demo"};
  std::string mode = "turns", url, parley = PARLEY_BINARY, account, admin_user = "admin",
              admin_password, skill = "general", json_out, metrics_token;
  int conversations = 100, io_threads = 1, idle = 10000, sources = 1, signup_threads = 4,
      server_threads = 0, batch = 500;
  double duration = 10, warmup = 2, think_ms = 0;
  bool keep_sockets = false, keep_data = false;
  int server_pid = 0;
  int noisy = 0;
  app.add_option("--mode", mode, "turns | idle")->check(CLI::IsMember({"turns", "idle"}));
  app.add_option("--noisy", noisy,
                 "turns, started server: a second account test-invokes `while(true){}` through "
                 "REST from this many clients at once while the consumers run")
      ->capture_default_str();
  app.add_option("--url", url, "use a running server (http://host:port); default: start one");
  app.add_option("--parley", parley, "the parley binary to start")->capture_default_str();
  app.add_option("--server-pid", server_pid, "with --url: the server's pid (for RSS and CPU)");
  std::vector<int> also_pids;
  app.add_option("--also-pid", also_pids,
                 "with --url: another process whose CPU (with its descendants') counts as the "
                 "system's, e.g. the other nodes of a cluster, PostgreSQL, NATS (repeatable)");
  std::vector<std::string> probes;
  app.add_option("--probe", probes,
                 "NAME=COMMAND: a shell command printing one number, run when the measurement "
                 "starts and ends; the difference per turn is reported as NAME (repeatable)");
  app.add_option("--account", account, "with --url: the account");
  app.add_option("--admin-user", admin_user, "with --url: an admin login")->capture_default_str();
  app.add_option("--admin-password", admin_password, "with --url: its password");
  app.add_option("--metrics-token", metrics_token,
                 "with --url: the server's --metrics-token (the store figures need it)");
  app.add_option("--skill", skill, "skill name the bot serves")->capture_default_str();
  app.add_option("--conversations", conversations, "turns: concurrent consumers")
      ->capture_default_str();
  app.add_option("--duration", duration, "turns: measured seconds")->capture_default_str();
  app.add_option("--warmup", warmup, "turns: seconds before measuring")->capture_default_str();
  app.add_option("--think-ms", think_ms,
                 "turns: a consumer waits ~this long (uniform 0.5-1.5x) after each reply before "
                 "its next message; 0 = closed loop (maximum throughput)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 600000.0));
  app.add_option("--idle", idle, "idle: conversations to open")->capture_default_str();
  app.add_option("--batch", batch, "idle: conversations opened at a time")->capture_default_str();
  app.add_flag("--keep-sockets", keep_sockets,
               "idle: keep every consumer socket open (default: close it after the reply; the "
               "conversation stays OPEN in the server)");
  app.add_option("--sources", sources,
                 "local addresses 127.0.0.1..N to connect from (ephemeral ports per address)")
      ->capture_default_str();
  app.add_option("--io-threads", io_threads, "client io threads (1-2)")->capture_default_str();
  int agents = 0;
  app.add_option("--agents", agents,
                 "turns (raw client): also keep this many agent WebSocket sessions of the demo "
                 "admin logged in and idle (they take no conversation)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  std::string client = "raw";
  app.add_option("--client", client,
                 "turns: raw = RFC 6455 framing on epoll, written here (the lightest client); "
                 "beast = Beast WebSockets on Asio (idle mode always uses Beast)")
      ->check(CLI::IsMember({"raw", "beast"}))
      ->capture_default_str();
  app.add_option("--server-threads", server_threads, "started server: --threads (0: default)");
  std::vector<std::string> server_args;
  app.add_option("--server-arg", server_args,
                 "started server: one more argument for `parley serve` (repeatable), e.g. "
                 "--server-arg=--sqlite-batch-wal=false");
  app.add_option("--signup-threads", signup_threads)->capture_default_str();
  app.add_option("--json", json_out, "also write the JSON summary to this file");
  app.add_flag("--keep-data", keep_data, "keep the started server's data directory");
  CLI11_PARSE(app, argc, argv);

  // Sockets: raise the soft fd limit to the hard one.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  signal(SIGPIPE, SIG_IGN);

  const double calibration_ms = hostCalibrationMs();
  const double syscall_calibration_ms = hostSyscallCalibrationMs();
  std::unique_ptr<ServerProcess> server;
  std::filesystem::path data_dir;
  std::string noisy_account, noisy_password;
  Endpoint ep;
  if (url.empty()) {
    data_dir =
        std::filesystem::temp_directory_path() / ("parley-loadgen-" + std::to_string(getpid()));
    std::filesystem::create_directories(data_dir);
    std::vector<std::string> extra;
    if (server_threads > 0) extra = {"--threads", std::to_string(server_threads)};
    extra.insert(extra.end(), server_args.begin(), server_args.end());
    metrics_token = "loadgen-" + std::to_string(getpid());
    extra.insert(extra.end(), {"--metrics-token", metrics_token});
    server = std::make_unique<ServerProcess>(parley, data_dir.string(), extra);
    server_pid = server->pid();
    ep = parseUrl(std::string(server->listening().at("http").as_string()));
    const auto& d = server->demo();
    account = std::string(d.at("account").as_string());
    admin_user = std::string(d.at("admin").at("username").as_string());
    admin_password = std::string(d.at("admin").at("password").as_string());
    if (noisy > 0) {
      // A second account, made by the operator's `parley account create` on the stopped
      // server's data directory; the server starts again (the demo account's bot resumes from
      // the store).
      server.reset();
      noisy_account = std::to_string(std::stoll(account) + 1);
      noisy_password = "noisy-" + std::to_string(getpid());
      const std::string create = "'" + parley + "' account create --data '" + data_dir.string() +
                                 "' --name noisy --id " + noisy_account +
                                 " --admin admin --admin-password-stdin >/dev/null";
      FILE* p = ::popen(create.c_str(), "w");
      if (!p) die("noisy: cannot run parley account create");
      std::fprintf(p, "%s\n", noisy_password.c_str());
      if (::pclose(p) != 0) die("noisy: parley account create failed: " + create);
      server = std::make_unique<ServerProcess>(parley, data_dir.string(), extra);
      server_pid = server->pid();
      ep = parseUrl(std::string(server->listening().at("http").as_string()));
    }
  } else {
    ep = parseUrl(url);
    if (account.empty() || admin_password.empty())
      die("--url needs --account and --admin-password");
  }
  std::fprintf(stderr, "server %s:%s pid %d account %s\n", ep.host.c_str(), ep.port.c_str(),
               server_pid, account.c_str());

  Target target = setUpBot(ep, account, admin_user, admin_password, skill);
  std::fprintf(stderr, "bot: %s (skill %s = %s)\n", target.note.c_str(), skill.c_str(),
               target.skill_id.c_str());

  Shared sh;
  sh.ep = ep;
  sh.account = account;
  sh.skill_id = target.skill_id;
  sh.think_ms = think_ms;
  for (int i = 1; i <= std::max(1, sources); ++i)
    sh.source_ips.push_back("127.0.0." + std::to_string(i));
  if (sources <= 1) sh.source_ips.clear();

  sh.strands = io_threads > 1;
  asio::io_context ioc(std::max(1, io_threads));
  auto work = asio::make_work_guard(ioc);
  std::vector<std::thread> io;
  for (int i = 0; i < std::max(1, io_threads); ++i) io.emplace_back([&] { ioc.run(); });

  bj::object out{{"mode", mode},
                 {"server", server ? "started" : "external"},
                 {"serverPid", server_pid},
                 {"bot", target.note},
                 {"turnEndsAt", "bot ContentEvent notification"},
                 {"ioThreads", io_threads},
                 {"client", mode == "turns" ? client : "beast"},
                 {"loadavgBefore", loadavg()}};
  auto rssKb = [&] { return server_pid > 0 ? procStatusKb(server_pid, "VmRSS") : -1; };
  std::vector<std::shared_ptr<Consumer>> consumers;
  std::vector<std::unique_ptr<RawLoop>> raw_loops;
  int rc = 0;

  if (mode == "turns") {
    const long rss0 = rssKb();
    const double t_signup = nowSec();
    auto jwts = signups(ep, account, conversations, signup_threads);
    std::fprintf(stderr, "%d signups in %.1f s\n", conversations, nowSec() - t_signup);
    const bool raw = client == "raw";
    if (agents > 0 && !raw) die("--agents needs --client raw");
    sh.agent_bearer = target.bearer;
    if (raw) {
      for (int i = 0; i < std::max(1, io_threads); ++i)
        raw_loops.push_back(std::make_unique<RawLoop>(sh));
      for (int i = 0; i < agents; ++i) {
        auto& loop = *raw_loops[static_cast<std::size_t>(i) % raw_loops.size()];
        loop.add(std::make_unique<RawConsumer>(loop, sh, "", conversations + i,
                                               ConsumerLogic::Mode::kAgentIdle));
      }
      for (int i = 0; i < conversations; ++i) {
        auto& loop = *raw_loops[static_cast<std::size_t>(i) % raw_loops.size()];
        loop.add(std::make_unique<RawConsumer>(loop, sh, jwts[static_cast<std::size_t>(i)], i));
      }
    } else {
      for (int i = 0; i < conversations; ++i) {
        consumers.push_back(std::make_shared<Consumer>(ioc, sh, jwts[static_cast<std::size_t>(i)],
                                                       i, Consumer::Mode::kTurns));
      }
    }
    const double t_open = nowSec();
    for (auto& c : consumers) c->start();
    for (auto& l : raw_loops) l->start();
    bool ok = waitUntil([&] { return sh.ready + sh.failed >= conversations + agents; },
                        60 + conversations / 100.0);
    std::fprintf(stderr, "%ld conversations and agent sessions ready in %.1f s (%ld failed)\n",
                 sh.ready.load(), nowSec() - t_open, sh.failed.load());
    if (!ok || sh.failed > 0) {
      std::fprintf(stderr, "first error: %s\n", sh.first_error.c_str());
      rc = 2;
    }
    const long rss_open = rssKb();
    for (auto& c : consumers) c->go();
    for (auto& l : raw_loops) l->go();
    std::unique_ptr<Noisy> noisy_clients;
    if (noisy > 0 && !noisy_account.empty())
      noisy_clients = std::make_unique<Noisy>(ep, noisy_account, "admin", noisy_password, noisy);
    std::this_thread::sleep_for(std::chrono::duration<double>(warmup));
    HttpClient metrics_client(ep);
    const std::string metrics0 =
        metrics_client.call(http::verb::get, "/metrics", "", metrics_token).body;
    const double workers_cpu0 = childrenCpuSec(server_pid);
    auto alsoCpu = [&] {
      double t = 0;
      for (int p : also_pids) t += treeCpuSec(p);
      return t;
    };
    auto probeAll = [&] {
      std::vector<double> v;
      for (const auto& p : probes) v.push_back(probeValue(p.substr(p.find('=') + 1)));
      return v;
    };
    const std::vector<double> probes0 = probeAll();
    const double also_cpu0 = alsoCpu();
    const double cpu0 = procCpuSec(server_pid), self0 = selfCpuSec();
    const long cs0 = procContextSwitches(server_pid);
    const auto machine0 = machineCpuSec();
    sh.measuring = true;
    const double t0 = nowSec();
    std::this_thread::sleep_for(std::chrono::duration<double>(duration));
    sh.measuring = false;
    const double secs = nowSec() - t0;
    const double cpu1 = procCpuSec(server_pid), self1 = selfCpuSec();
    const double workers_cpu1 = childrenCpuSec(server_pid);
    const double also_cpu1 = alsoCpu();
    const std::vector<double> probes1 = probeAll();
    const long cs1 = procContextSwitches(server_pid);
    const auto machine1 = machineCpuSec();
    const std::string metrics1 =
        metrics_client.call(http::verb::get, "/metrics", "", metrics_token).body;
    // Only now: stopping the --noisy clients waits for their invocations in flight (up to the
    // loops' CPU limit or deadline), which is not part of the measured window.
    bj::object noisy_summary;
    if (noisy_clients) {
      noisy_summary = noisy_clients->summary();
      noisy_clients->stop();
    }
    const double store_txns = metricValue(metrics1, "parley_store_transactions_total") -
                              metricValue(metrics0, "parley_store_transactions_total");
    const double store_writes = metricValue(metrics1, "parley_store_writes_total") -
                                metricValue(metrics0, "parley_store_writes_total");
    const double writes_per_txn = store_txns > 0 ? store_writes / store_txns : 0.0;
    // SQLite writes a WAL frame as a header and a page (two writes through the batched-WAL VFS).
    const double wal_frames = (metricValue(metrics1, "parley_store_wal_writes_total") -
                               metricValue(metrics0, "parley_store_wal_writes_total")) /
                              2.0;
    const double checkpoints = metricValue(metrics1, "parley_store_checkpoints_total") +
                               metricValue(metrics1, "parley_store_inline_checkpoints_total") -
                               metricValue(metrics0, "parley_store_checkpoints_total") -
                               metricValue(metrics0, "parley_store_inline_checkpoints_total");
    const long rss_run = rssKb();
    const std::string load = loadavg();
    sh.stopping = true;
    // Let replies in flight arrive, then collect on the io threads' strands' quiet state.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    for (auto& l : raw_loops) l->quit();
    std::vector<const ConsumerLogic*> all;
    for (auto& c : consumers) all.push_back(c.get());
    for (auto& l : raw_loops)
      for (auto& c : l->consumers()) all.push_back(c.get());
    long stuck = 0;
    for (auto* c : all)
      if (c->awaiting()) ++stuck;
    std::vector<float> lat;
    for (auto* c : all) c->collect(lat);
    std::sort(lat.begin(), lat.end());
    const double turns = static_cast<double>(lat.size());
    if (sh.errors > 0 || lat.empty()) rc = std::max(rc, 3);  // a run to distrust fails
    out["conversations"] = conversations;
    out["thinkMs"] = think_ms;
    out["ready"] = sh.ready.load();
    out["warmupSeconds"] = warmup;
    out["seconds"] = secs;
    out["turns"] = lat.size();
    out["turnsPerSecond"] = turns / secs;
    out["latencyMs"] = bj::object{{"p50", pct(lat, 0.5)},
                                  {"p90", pct(lat, 0.9)},
                                  {"p99", pct(lat, 0.99)},
                                  {"max", lat.empty() ? 0.0 : lat.back()}};
    out["serverRssKb"] = bj::object{{"start", rss0}, {"open", rss_open}, {"afterRun", rss_run}};
    out["serverCpuUsPerTurn"] = turns > 0 ? (cpu1 - cpu0) * 1e6 / turns : 0.0;
    out["serverCpuCores"] = (cpu1 - cpu0) / secs;
    // The function worker processes (children of the server; with --noisy this includes the
    // second account's loops).
    out["workersCpuUsPerTurn"] = turns > 0 ? (workers_cpu1 - workers_cpu0) * 1e6 / turns : 0.0;
    out["workersCpuCores"] = (workers_cpu1 - workers_cpu0) / secs;
    if (noisy > 0) out["noisy"] = noisy_summary;
    out["loadgenCpuCores"] = (self1 - self0) / secs;
    if (!also_pids.empty()) {
      // The whole system: the server (with its workers) and the other processes named.
      const double system = (cpu1 - cpu0) + (workers_cpu1 - workers_cpu0) + (also_cpu1 - also_cpu0);
      out["systemCpuUsPerTurn"] = turns > 0 ? system * 1e6 / turns : 0.0;
      out["systemCpuCores"] = system / secs;
    }
    if (!probes.empty()) {
      bj::object per_turn;
      for (std::size_t i = 0; i < probes.size(); ++i) {
        const std::string name = probes[i].substr(0, probes[i].find('='));
        const double d = probes1[i] - probes0[i];
        per_turn[name] = turns > 0 && std::isfinite(d) ? d / turns : -1.0;
      }
      out["probesPerTurn"] = per_turn;
    }
    out["serverContextSwitchesPerTurn"] = turns > 0 ? static_cast<double>(cs1 - cs0) / turns : 0.0;
    // What else used the CPU meanwhile (other processes, the kernel's own threads) and what the
    // hypervisor took: figures measured on a busy or stolen machine are not comparable.
    const double other_cores =
        (machine1.first - machine0.first - (cpu1 - cpu0) - (self1 - self0)) / secs;
    out["otherCpuCores"] = other_cores;
    out["stealCores"] = (machine1.second - machine0.second) / secs;
    out["hostCalibrationMs"] = calibration_ms;
    out["hostSyscallCalibrationMs"] = syscall_calibration_ms;
    out["storeWritesPerTurn"] = turns > 0 ? store_writes / turns : 0.0;
    out["framesPerTurn"] = turns > 0 ? static_cast<double>(sh.frames.load()) / turns : 0.0;
    out["agents"] = agents;
    out["agentFrames"] = sh.agent_frames.load();
    out["storeWritesPerTransaction"] = writes_per_txn;
    out["walFramesPerTurn"] = turns > 0 ? wal_frames / turns : 0.0;
    out["checkpoints"] = checkpoints;
    out["awaitingAtStop"] = stuck;
    out["errors"] = sh.errors.load();
    out["loadavgAfter"] = load;
    std::printf(
        "turns: %d conversations, think %.0f ms, %.1f s: %.0f turns/s; latency ms p50 %.2f p90 "
        "%.2f p99 %.2f "
        "max %.2f; server CPU %.0f us/turn (%.2f cores), loadgen %.2f cores; server RSS %.1f "
        "MiB open, %.1f MiB after; load %s\n",
        conversations, think_ms, secs, turns / secs, pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99),
        lat.empty() ? 0.0 : lat.back(), turns > 0 ? (cpu1 - cpu0) * 1e6 / turns : 0.0,
        (cpu1 - cpu0) / secs, (self1 - self0) / secs, rss_open / 1024.0, rss_run / 1024.0,
        load.c_str());
    if (store_txns > 0)
      std::printf(
          "store: %.1f writes per turn, %.1f writes per transaction, %.2f WAL pages per turn, "
          "%.0f checkpoints; %.2f frames per turn to each consumer\n",
          turns > 0 ? store_writes / turns : 0.0, writes_per_txn,
          turns > 0 ? wal_frames / turns : 0.0, checkpoints,
          turns > 0 ? static_cast<double>(sh.frames.load()) / turns : 0.0);
    std::printf(
        "machine: server %.1f context switches per turn; other processes %.2f cores, "
        "steal %.2f cores; host calibration %.0f ms CPU, %.0f ms system calls (fixed work, "
        "lower = faster host)\n",
        turns > 0 ? static_cast<double>(cs1 - cs0) / turns : 0.0, other_cores,
        (machine1.second - machine0.second) / secs, calibration_ms, syscall_calibration_ms);
    if (!also_pids.empty())
      std::printf(
          "system (server, workers and %zu more processes): %.0f us CPU per turn, %.2f cores\n",
          also_pids.size(), out["systemCpuUsPerTurn"].as_double(),
          out["systemCpuCores"].as_double());
    for (const auto& [name, v] :
         out.contains("probesPerTurn") ? out["probesPerTurn"].as_object() : bj::object{})
      std::printf("probe %s: %.2f per turn\n", std::string(name).c_str(), v.as_double());
    if (!sh.first_error.empty()) std::printf("first error: %s\n", sh.first_error.c_str());
  } else {
    // Warm up (function compiled, first allocations), then measure the growth from K more.
    const int warm = std::min(200, std::max(1, idle / 50));
    auto open = [&](int from, int n, Consumer::Mode m) -> bool {
      auto jwts = signups(ep, account, n, signup_threads);
      const long target_done = sh.idle_done + n;
      for (int i = 0; i < n; i += batch) {
        const int end = std::min(n, i + batch);
        for (int j = i; j < end; ++j) {
          auto c =
              std::make_shared<Consumer>(ioc, sh, jwts[static_cast<std::size_t>(j)], from + j, m);
          c->start();
          if (m == Consumer::Mode::kIdleKeep) consumers.push_back(c);
        }
        const long want = target_done - (n - end);
        if (!waitUntil([&] { return sh.idle_done + sh.failed >= want; }, 120)) return false;
        if (sh.failed > 0) return false;
        std::fprintf(stderr, "\ropened %d/%d", end, n);
      }
      std::fprintf(stderr, "\n");
      return true;
    };
    const Consumer::Mode m = keep_sockets ? Consumer::Mode::kIdleKeep : Consumer::Mode::kIdleClose;
    const long rss_start = rssKb();
    if (!open(0, warm, m)) {
      std::fprintf(stderr, "warm-up failed: %s\n", sh.first_error.c_str());
      rc = 2;
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
    const long rss0 = rssKb();
    const double t0 = nowSec();
    bool ok = rc == 0 && open(warm, idle, m);
    const double secs = nowSec() - t0;
    std::this_thread::sleep_for(std::chrono::seconds(3));  // let closes and frees settle
    const long rss1 = rssKb();
    if (!ok) {
      std::fprintf(stderr, "opening failed: %s\n", sh.first_error.c_str());
      rc = 2;
    }
    const long opened = sh.idle_done.load() - warm;
    out["idle"] = idle;
    out["opened"] = opened;
    out["warmupConversations"] = warm;
    out["socketsKeptOpen"] = keep_sockets;
    out["sources"] = sources;
    out["openSeconds"] = secs;
    out["conversationsPerSecond"] = opened / secs;
    out["serverRssKb"] = bj::object{{"start", rss_start}, {"beforeIdle", rss0}, {"after", rss1}};
    const double per = opened > 0 ? (rss1 - rss0) * 1024.0 / static_cast<double>(opened) : 0;
    out["serverRssBytesPerConversation"] = per;
    out["errors"] = sh.errors.load();
    out["loadavgAfter"] = loadavg();
    std::printf(
        "idle: %ld conversations opened in %.1f s (%.0f/s), sockets %s; server RSS %.1f -> %.1f "
        "MiB: %.0f bytes per open conversation; load %s\n",
        opened, secs, opened / secs, keep_sockets ? "kept open" : "closed after the reply",
        rss0 / 1024.0, rss1 / 1024.0, per, loadavg().c_str());
    if (!sh.first_error.empty()) std::printf("first error: %s\n", sh.first_error.c_str());
  }

  std::string js = bj::serialize(out);
  std::printf("%s\n", js.c_str());
  if (!json_out.empty()) std::ofstream(json_out) << js << "\n";
  std::fflush(stdout);

  sh.stopping = true;
  for (auto& c : consumers) c->closeSocket();
  work.reset();
  ioc.stop();
  for (auto& t : io) t.join();
  consumers.clear();
  raw_loops.clear();
  server.reset();
  if (!data_dir.empty() && !keep_data) {
    std::error_code ec;
    std::filesystem::remove_all(data_dir, ec);
  }
  return rc;
}
