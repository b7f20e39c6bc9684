// Messaging-protocol client frames, as the consumer and the agent socket decode them.
//
// An input is up to kMaxFrames lines, each one text frame. A line's first character picks the
// socket: 'A' the agent socket (a user with the ADMIN, AGENT_MANAGER and AGENT roles), 'C' an
// authenticated consumer socket, 'U' a consumer socket that has not sent InitConnection yet;
// any other first character sends the whole line to the agent and to the consumer socket.
// Placeholders let the fuzzer name live things: $JWT (a valid consumer JWT of the account),
// $CONV (the consumer's open conversation, if any), $RING (a ring waiting for the agent, if
// any), $AGENT (the agent's "{acc}.{uid}"), $PID
// (the agent's PId), $UID (its user id), $SKILL (a skill id).
//
// Every frame first goes through the codec's pure functions (parseEnvelope, opOf and the body
// decoders: normalizeEvent, normalizeMetadata, parseConversationFields, initConnectionJwt with
// Auth::verifyConsumer, convStates, resolveUserRef, makeResponse/makeErrorResponse), then to a
// real ProtocolSession over a socket-free transport, backed by the conversation engine on the
// memory store. Checks: nothing crashes; every response is JSON echoing the request id; each
// request gets its response (or the socket is closed) within a generous deadline.

#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.h"
#include "common/json.h"
#include "common/testing/fake_clock.h"
#include "conversation/conversation_engine.h"
#include "fuzz/fuzz_support.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/protocol/codec.h"
#include "server/protocol/directory.h"
#include "server/protocol/hub.h"
#include "server/protocol/protocol_session.h"
#include "store/memory/memory_store.h"

namespace {

namespace bj = boost::json;
using namespace parley;
using namespace parley::server;
using namespace parley::server::protocol;

constexpr std::size_t kMaxFrames = 24;
// Inputs served by one world before it is rebuilt (the memory store only grows).
constexpr int kInputsPerWorld = 2000;
// A request without its response after this long is a finding (a client would wait forever).
constexpr auto kResponseDeadline = std::chrono::seconds(20);

// Frames are recorded; posted work queues up and runs when the fuzzer pumps it (the fuzzer's
// thread plays the connection strand).
class Transport final : public WsTransport {
 public:
  void send(std::string text) override {
    std::lock_guard lock(mu_);
    sent_.push_back(std::move(text));
  }
  void close(int, std::string) override {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  void post(std::function<void()> fn) override {
    std::lock_guard lock(mu_);
    posted_.push_back(std::move(fn));
    cv_.notify_all();
  }
  void postAfter(std::chrono::milliseconds, std::function<void()>) override {}

  // Runs posted work once (waiting up to `wait` for some); false when there was none.
  bool pumpOnce(std::chrono::milliseconds wait) {
    std::deque<std::function<void()>> work;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, wait, [&] { return !posted_.empty(); });
      work.swap(posted_);
    }
    for (auto& w : work) w();
    return !work.empty();
  }
  std::vector<std::string> takeSent() {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    out.swap(sent_);
    return out;
  }
  bool closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }
  void dropPosted() {
    std::deque<std::function<void()>> work;
    std::lock_guard lock(mu_);
    work.swap(posted_);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> sent_;
  std::deque<std::function<void()>> posted_;
  bool closed_ = false;
};

struct World {
  testing::FakeClock clock;
  AccountId acc{"123"};
  SkillId skill;
  store::User agent;
  std::string jwt;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<conversation::ConversationService> engine;
  std::unique_ptr<Auth> auth;
  InlineExecutor inline_exec;
  std::unique_ptr<Directory> directory;
  Hub hub;
  Metrics metrics;
  conversation::Subscription sub;
  int inputs = 0;

  World() {
    store = store::makeMemoryStore(clock);
    store::Account a;
    a.id = acc;
    PARLEY_FUZZ_CHECK(store->accounts().createAccount(a).has_value(), "world: account");
    store::Skill s;
    s.account = acc;
    s.name = "general";
    skill = store->accounts().createSkill(s)->id;
    store::User u;
    u.account = acc;
    u.login_name = "agent";
    u.pid = "pid-agent";
    u.password_hash = *crypto::hashPassword("secret", crypto::PasswordCost::kMinimumForTest);
    u.roles = {store::Role::kAdmin, store::Role::kAgentManager, store::Role::kAgent};
    u.skills = {skill};
    u.max_open_conversations = 10;
    agent = *store->accounts().createUser(u);
    conversation::Options o;
    o.threads = 1;
    o.tick_interval_ms = 0;
    engine = conversation::makeConversationService(*store, clock, o);
    PARLEY_FUZZ_CHECK(engine->recover().has_value(), "world: recover");
    auth = std::make_unique<Auth>(store->accounts(), clock, "jwt-key", AuthOptions{});
    directory = std::make_unique<Directory>(store->accounts(), inline_exec);
    PARLEY_FUZZ_CHECK(directory->preloadAll().has_value(), "world: directory");
    sub = engine->subscribe(hub);
    jwt = *auth->signupConsumer(acc);
  }
  ~World() {
    sub.reset();
    engine.reset();
  }

  SessionDeps deps() {
    return SessionDeps{*engine, hub, *directory, *auth, inline_exec, clock, metrics, {}};
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

void replaceAll(std::string& s, std::string_view from, std::string_view to) {
  for (std::size_t pos = s.find(from); pos != std::string::npos;
       pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

// The consumer's open conversation, or "".
std::string openConversation(World& w) {
  store::ConversationQuery q;
  q.state = store::ConversationState::kOpen;
  q.consumer = ConsumerId("cons-1");
  auto open = w.store->conversations().listConversations(w.acc, q);
  return open && !open->empty() ? open->front().id.str() : std::string();
}

// A ring waiting for the agent, or "".
std::string waitingRing(World& w) {
  for (const auto& r : w.engine->ringsForAgent(w.acc, w.agent.id))
    if (r.state == conversation::RingState::kWaiting) return r.ring_id;
  return {};
}

// The request id as the session echoes it (see makeResponse).
bj::value echoedId(const bj::value& id) {
  if (id.is_string() || id.is_null()) return id;
  return bj::value(bj::serialize(id));
}

// The codec's pure decoding of one frame.
void decodeFrame(World& w, const std::string& text) {
  auto env = parseEnvelope(text);
  if (!env) {
    auto resp = json::parseObject(makeErrorResponse(env.error().id, env.error().error));
    PARLEY_FUZZ_CHECK(resp.has_value(), "an error response is a JSON object");
    return;
  }
  PARLEY_FUZZ_CHECK(!env->type.empty(), "a parsed envelope has a type");
  Op op = opOf(env->type);
  auto resp = json::parseObject(makeResponse(env->id, 200, env->type, env->body));
  PARLEY_FUZZ_CHECK(resp.has_value(), "a response is a JSON object");
  PARLEY_FUZZ_CHECK(resp->at("reqId") == echoedId(env->id), "a response echoes the request id");
  (void)normalizeMetadata(env->metadata);
  std::string jwt = initConnectionJwt(env->headers);
  if (!jwt.empty()) (void)w.auth->verifyConsumer(w.acc, jwt);
  if (!env->body.is_object()) return;
  const bj::object& body = env->body.as_object();
  (void)convStates(body);
  auto uid_from_pid = [&w](const std::string& pid) { return w.directory->uidOfPid(w.acc, pid); };
  if (op == Op::kPublishEvent) {
    if (const auto* ev = body.if_contains("event")) {
      auto norm = normalizeEvent(*ev);
      if (norm) PARLEY_FUZZ_CHECK(json::parseObject(*norm).has_value(), "an event stays JSON");
    }
  }
  if (op == Op::kUpdateConversationField) {
    if (const auto* f = body.if_contains("conversationField"))
      (void)parseConversationFields(w.acc, *f, uid_from_pid);
  }
  for (const char* key : {"agentUserId", "userId", "agentId"}) {
    if (const auto* v = body.if_contains(key); v && v->is_string())
      (void)resolveUserRef(w.acc, v->as_string(), uid_from_pid);
  }
}

struct Socket {
  std::shared_ptr<Transport> transport = std::make_shared<Transport>();
  std::shared_ptr<ProtocolSession> session;
  std::size_t requests = 0;   // frames that must be answered
  std::size_t responses = 0;  // resp frames seen

  void collect() {
    for (const auto& f : transport->takeSent()) {
      auto o = json::parseObject(f);
      PARLEY_FUZZ_CHECK(o.has_value(), "every frame the server sends is a JSON object");
      if (json::getString(*o, "kind") == "resp") ++responses;
    }
  }
  bool settled() { return transport->closed() || responses >= requests; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool trace = std::getenv("PARLEY_FUZZ_TRACE") != nullptr;
  auto t_start = std::chrono::steady_clock::now();
  World& w = world();
  std::string input(reinterpret_cast<const char*>(data), size);

  const std::string old_style = w.acc.str() + "." + w.agent.id.str();

  Socket agent, consumer, anonymous;
  agent.session =
      ProtocolSession::agent(w.deps(), agent.transport, Principal{w.agent, "bearer", 0});
  consumer.session =
      ProtocolSession::consumer(w.deps(), consumer.transport, w.acc, ConsumerId("cons-1"));
  anonymous.session = ProtocolSession::consumer(w.deps(), anonymous.transport, w.acc, {});
  for (Socket* s : {&agent, &consumer, &anonymous}) {
    s->transport->takeSent();
    s->session->onOpen();
  }

  // PARLEY_FUZZ_TRACE=1: how long each frame took to be answered, and each phase.
  auto t_setup = std::chrono::steady_clock::now();
  std::size_t frames = 0;
  std::size_t begin = 0;
  while (begin <= input.size() && frames < kMaxFrames) {
    std::size_t end = input.find('\n', begin);
    if (end == std::string::npos) end = input.size();
    std::string line = input.substr(begin, end - begin);
    begin = end + 1;
    if (line.empty()) continue;
    ++frames;
    std::vector<Socket*> to;
    switch (line[0]) {
      case 'A':
        to = {&agent};
        line.erase(0, 1);
        break;
      case 'C':
        to = {&consumer};
        line.erase(0, 1);
        break;
      case 'U':
        to = {&anonymous};
        line.erase(0, 1);
        break;
      default:
        to = {&agent, &consumer};
    }
    replaceAll(line, "$JWT", w.jwt);
    if (line.find("$CONV") != std::string::npos) replaceAll(line, "$CONV", openConversation(w));
    if (line.find("$RING") != std::string::npos) replaceAll(line, "$RING", waitingRing(w));
    replaceAll(line, "$AGENT", old_style);
    replaceAll(line, "$PID", w.agent.pid);
    replaceAll(line, "$UID", w.agent.id.str());
    replaceAll(line, "$SKILL", w.skill.str());
    decodeFrame(w, line);
    for (Socket* s : to) {
      if (s->transport->closed()) continue;
      ++s->requests;
      s->session->onFrame(line);
      // Answer this frame before the next one, as a client waiting for its response would.
      auto deadline = std::chrono::steady_clock::now() + kResponseDeadline;
      for (;;) {
        s->collect();
        if (s->settled()) break;
        if (std::chrono::steady_clock::now() > deadline) {
          std::fprintf(stderr, "no response to frame: %s\n", line.c_str());
          PARLEY_FUZZ_CHECK(false, "every request gets a response");
        }
        s->transport->pumpOnce(std::chrono::milliseconds(50));
      }
      if (trace) {
        auto ms = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - (deadline - kResponseDeadline))
                      .count();
        std::fprintf(stderr, "frame %zu: %lld us\n", frames, static_cast<long long>(ms));
      }
    }
  }
  auto t_frames = std::chrono::steady_clock::now();
  for (Socket* s : {&agent, &consumer, &anonymous}) {
    // Work already posted (notifications) runs once, as on a live connection; then it closes.
    s->transport->pumpOnce(std::chrono::milliseconds(0));
    s->collect();
    s->session->onClose();
    s->transport->dropPosted();
  }
  if (trace) {
    auto us = [](auto a, auto b) {
      return static_cast<long long>(
          std::chrono::duration_cast<std::chrono::microseconds>(b - a).count());
    };
    auto t_end = std::chrono::steady_clock::now();
    std::fprintf(stderr, "input: setup %lld us, frames %lld us, teardown %lld us\n",
                 us(t_start, t_setup), us(t_setup, t_frames), us(t_frames, t_end));
  }
  return 0;
}
