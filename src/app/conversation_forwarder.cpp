// Forwarding publishes and conversation changes to the conversation's owner over the bus.

#include "app/conversation_forwarder.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/json.hpp>
#include <random>

#include "app/bus_wire.h"
#include "app/cluster_routing.h"
#include "app/conversation_relay.h"
#include "common/json.h"

namespace parley::app {

namespace bj = boost::json;
namespace conv = parley::conversation;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kRetryAfter = "; retry after 1 s";

std::string randomId() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return hexToken(std::to_string(gen()) + "-" + std::to_string(gen()));
}

// ---- commands ----

bj::object actorJson(const conv::Actor& a) {
  const char* kind = a.kind == conv::ActorKind::kConsumer ? "consumer"
                     : a.kind == conv::ActorKind::kAgent  ? "agent"
                                                          : "system";
  return bj::object{{"kind", kind},
                    {"account", a.account.str()},
                    {"consumer", a.consumer.str()},
                    {"user", a.user.str()},
                    {"pid", a.pid}};
}

Result<conv::Actor> actorFrom(const bj::object& o) {
  const std::string kind = json::getString(o, "kind");
  const AccountId acc(json::getString(o, "account"));
  if (acc.str().empty()) return invalid("a forwarded command names no account");
  if (kind == "consumer")
    return conv::Actor::ofConsumer(acc, ConsumerId(json::getString(o, "consumer")));
  if (kind == "agent")
    return conv::Actor::ofAgent(acc, UserId(json::getString(o, "user")), json::getString(o, "pid"));
  if (kind == "system") return conv::Actor::ofSystem(acc);
  return invalid("a forwarded command's actor is of no known kind: " + kind);
}

bj::object changeJson(const conv::FieldChange& ch) {
  return std::visit(
      [](const auto& f) -> bj::object {
        using F = std::decay_t<decltype(f)>;
        bj::object o;
        if constexpr (std::is_same_v<F, conv::CloseField>) {
          o["f"] = "close";
          if (f.reason) o["reason"] = store::closeReasonName(*f.reason);
        } else if constexpr (std::is_same_v<F, conv::TtrField>) {
          o["f"] = "ttr";
          o["type"] = store::ttrTypeName(f.type);
          if (f.value_s) o["value"] = *f.value_s;
        } else if constexpr (std::is_same_v<F, conv::SkillField>) {
          o["f"] = "skill";
          o["skill"] = f.skill.str();
        } else if constexpr (std::is_same_v<F, conv::AddParticipantField> ||
                             std::is_same_v<F, conv::RemoveParticipantField>) {
          o["f"] = std::is_same_v<F, conv::AddParticipantField> ? "add" : "remove";
          o["role"] = store::participantRoleName(f.role);
          if (f.user) o["user"] = f.user->str();
        } else {
          o["f"] = "suggest";
          o["user"] = f.user.str();
        }
        return o;
      },
      ch);
}

Result<conv::FieldChange> changeFrom(const bj::object& o) {
  const std::string f = json::getString(o, "f");
  std::optional<UserId> user;
  if (auto* u = o.if_contains("user"); u && u->is_string())
    user = UserId(std::string(u->as_string()));
  if (f == "close") {
    conv::CloseField c;
    if (auto* r = o.if_contains("reason"); r && r->is_string()) {
      auto reason = store::parseCloseReason(r->as_string());
      if (!reason) return std::unexpected(reason.error());
      c.reason = *reason;
    }
    return c;
  }
  if (f == "ttr") {
    auto type = store::parseTtrType(json::getString(o, "type"));
    if (!type) return std::unexpected(type.error());
    conv::TtrField t{*type, std::nullopt};
    if (auto v = json::optInt(o, "value"); v && *v) t.value_s = **v;
    return t;
  }
  if (f == "skill") return conv::SkillField{SkillId(json::getString(o, "skill"))};
  if (f == "add" || f == "remove") {
    auto role = store::parseParticipantRole(json::getString(o, "role"));
    if (!role) return std::unexpected(role.error());
    if (f == "add") return conv::AddParticipantField{*role, user};
    return conv::RemoveParticipantField{*role, user};
  }
  if (f == "suggest" && user) return conv::SuggestAgentField{*user};
  return invalid("a forwarded command holds an unknown field change: " + f);
}

// ---- answers: {"ok":true,"result":...} | {"ok":false,"code","message"} | {"notHeld":true} ----

std::string errorAnswer(const Error& e) {
  return json::dump(
      bj::object{{"ok", false}, {"code", errorCodeName(e.code)}, {"message", e.message}});
}
const std::string kNotHeld = json::dump(bj::object{{"notHeld", true}});

Error errorFrom(const bj::object& o) {
  auto code = parseErrorCode(json::getString(o, "code"));
  return Error{code.value_or(ErrorCode::kInternal), json::getString(o, "message")};
}

bj::object publishedJson(const conv::Published& p) {
  bj::object o{{"serverTs", p.server_ts}};
  if (p.sequence) o["sequence"] = *p.sequence;
  return o;
}
Result<conv::Published> publishedFrom(const bj::object& o) {
  conv::Published p;
  p.server_ts = json::getInt(o, "serverTs", 0);
  if (o.contains("sequence")) p.sequence = json::getInt(o, "sequence", 0);
  return p;
}

// Whether a local call's outcome means "this engine does not hold the conversation".
bool getBool(const bj::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_bool() && v->as_bool();
}

bool notHeldHere(const Error& e, const std::function<bool(const ConversationId&)>& holds,
                 const ConversationId& id) {
  return e.code == ErrorCode::kUnavailable && !holds(id);
}

}  // namespace

std::string forwardSubject(const std::string& node) { return nodeSubject("parley-fwd", node); }

// One call waiting for an owner.
struct ConversationForwarder::Job {
  std::uint64_t key = 0;
  ConversationId conversation;
  Clock::time_point deadline;
  std::function<bj::object()> encode;
  std::string command;  // encode()d when the call leaves the fast path
  // Runs the call on this node's engine; then(true) once its outcome went to the caller,
  // then(false) when the engine does not hold the conversation (nothing went to the caller).
  std::function<void(std::function<void(bool)>)> run_local;
  // Gives an owner's answer to the caller; false when the owner does not hold the conversation.
  std::function<bool(const bj::object&)> answer;
  std::function<void(Error)> fail;
  std::string last;  // why the last attempt did not end the call
};

ConversationForwarder::ConversationForwarder(conv::ConversationService& engine,
                                             store::ClusterStore& leases, bus::Bus& bus,
                                             std::function<bool(const ConversationId&)> holds,
                                             ForwarderOptions options)
    : engine_(engine),
      leases_(leases),
      bus_(bus),
      holds_(std::move(holds)),
      options_(std::move(options)) {
  thread_ = std::thread([this] { runLoop(); });
}

ConversationForwarder::~ConversationForwarder() {
  stop();
  MutexLock lock(mu_);
  while (outstanding_ != 0) lock.wait(cv_);
}

Status ConversationForwarder::start() {
  auto sub = bus_.serve(
      forwardSubject(options_.node),
      [this](const bus::BusMessage& m, bus::Reply reply) { serveRequest(m, std::move(reply)); });
  if (!sub) return std::unexpected(sub.error());
  serving_sub_ = std::move(*sub);
  return {};
}

void ConversationForwarder::stop() {
  serving_sub_.reset();
  std::unordered_map<std::uint64_t, JobPtr> jobs;
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    jobs.swap(jobs_);
    queues_.clear();
    timers_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& [_, job] : jobs)
    job->fail(Error{ErrorCode::kUnavailable, "the server is stopping" + std::string(kRetryAfter)});
}

std::uint64_t ConversationForwarder::forwarded() const {
  MutexLock lock(mu_);
  return forwarded_;
}

std::shared_ptr<void> ConversationForwarder::track() {
  {
    MutexLock lock(mu_);
    ++outstanding_;
  }
  return std::shared_ptr<void>(nullptr, [this](void*) {
    MutexLock lock(mu_);
    if (--outstanding_ == 0) cv_.notify_all();
  });
}

template <class T>
ConversationForwarder::JobPtr ConversationForwarder::makeJob(
    ConversationId id, std::function<bj::object()> encode,
    std::function<void(conv::Callback<T>)> call_engine,
    std::function<Result<T>(const bj::object&)> decode, conv::Callback<T> done) {
  auto once = std::make_shared<std::atomic<bool>>(false);
  auto deliver = [done = std::move(done), once](Result<T> r) {
    if (!once->exchange(true)) done(std::move(r));
  };
  auto job = std::make_shared<Job>();
  job->conversation = id;
  job->deadline = Clock::now() + options_.wait;
  job->encode = std::move(encode);
  job->run_local = [this, id, call_engine = std::move(call_engine),
                    deliver](std::function<void(bool)> then) {
    call_engine([this, id, deliver, then = std::move(then), token = track()](Result<T> r) {
      if (!r && notHeldHere(r.error(), holds_, id)) return then(false);
      deliver(std::move(r));
      then(true);
    });
  };
  job->answer = [deliver, decode = std::move(decode)](const bj::object& o) {
    if (getBool(o, "notHeld")) return false;
    if (!getBool(o, "ok")) {
      deliver(std::unexpected(errorFrom(o)));
      return true;
    }
    const bj::object* result = nullptr;
    if (auto* v = o.if_contains("result"); v && v->is_object()) result = &v->as_object();
    if (!result) {
      deliver(std::unexpected(Error{ErrorCode::kInternal, "the owner's answer has no result"}));
      return true;
    }
    deliver(decode(*result));
    return true;
  };
  job->fail = [deliver](Error e) { deliver(std::unexpected(std::move(e))); };
  return job;
}

void ConversationForwarder::publish(conv::PublishRequest req,
                                    conv::Callback<conv::Published> done) {
  const ConversationId id = req.conversation;
  auto shared = std::make_shared<const conv::PublishRequest>(std::move(req));
  auto job = makeJob<conv::Published>(
      id,
      [shared] {
        const auto& r = *shared;
        return bj::object{{"type", "publish"},
                          {"actor", actorJson(r.actor)},
                          {"conversation", r.conversation.str()},
                          // As text (a value when the caller passed one): the owner parses
                          // it with the engine's own depth limit, as a local publish would.
                          {"event", r.event ? json::dump(*r.event) : r.event_json},
                          {"metadata", r.metadata_json},
                          {"audience", store::audienceName(r.audience)},
                          {"turn", store::encodeTurnMark(r.turn)},
                          {"idempotencyKey", r.idempotency_key}};
      },
      [this, shared](conv::Callback<conv::Published> cb) {
        engine_.publish(*shared, std::move(cb));
      },
      publishedFrom, std::move(done));
  begin(std::move(job));
}

void ConversationForwarder::updateConversation(conv::Actor actor, ConversationId id,
                                               std::vector<conv::FieldChange> changes,
                                               conv::Callback<store::Conversation> done) {
  struct Update {
    conv::Actor actor;
    ConversationId id;
    std::vector<conv::FieldChange> changes;
  };
  auto shared = std::make_shared<const Update>(Update{std::move(actor), id, std::move(changes)});
  auto job = makeJob<store::Conversation>(
      id,
      [shared] {
        bj::array changes;
        for (const auto& c : shared->changes) changes.push_back(changeJson(c));
        return bj::object{{"type", "update"},
                          {"actor", actorJson(shared->actor)},
                          {"conversation", shared->id.str()},
                          {"changes", std::move(changes)}};
      },
      [this, shared](conv::Callback<store::Conversation> cb) {
        engine_.updateConversation(shared->actor, shared->id, shared->changes, std::move(cb));
      },
      conversationFrom, std::move(done));
  begin(std::move(job));
}

// The fast path: the engine holds the conversation (most calls) and answers itself.
void ConversationForwarder::begin(JobPtr job) {
  bool queued = false;
  {
    MutexLock lock(mu_);
    queued = queues_.contains(job->conversation.str());
  }
  // Behind the calls of the conversation already waiting, to be applied after them.
  if (queued || !holds_(job->conversation)) return submit(std::move(job));
  auto j = job;
  j->run_local([this, job = std::move(job), token = track()](bool handled) mutable {
    if (!handled) submit(std::move(job));
  });
}

void ConversationForwarder::submit(JobPtr job) {
  bj::object command = job->encode();
  command["id"] = randomId();
  job->command = json::dump(command);
  if (job->command.size() > options_.max_payload)
    return job->fail(Error{ErrorCode::kTooLarge,
                           "conversation " + job->conversation.str() +
                               " is held by another node and the command is larger than " +
                               std::to_string(options_.max_payload) + " bytes to forward"});
  {
    MutexLock lock(mu_);
    if (stopping_) {
      job->fail(
          Error{ErrorCode::kUnavailable, "the server is stopping" + std::string(kRetryAfter)});
      return;
    }
    if (jobs_.size() >= options_.max_waiting) {
      job->fail(Error{ErrorCode::kUnavailable,
                      "too many calls waiting for their conversation's node (" +
                          std::to_string(options_.max_waiting) + ")" + std::string(kRetryAfter)});
      return;
    }
    job->key = ++next_job_;
    jobs_.emplace(job->key, job);
    auto& queue = queues_[job->conversation.str()];
    queue.push_back(job);
    if (queue.size() > 1) {  // started when the calls before it have ended
      job->last = "waiting behind an earlier call of this conversation";
      return;
    }
  }
  after(Clock::now(), [this, job] { attempt(job); });
}

void ConversationForwarder::after(Clock::time_point at, std::function<void()> task) {
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    timers_.emplace(at, std::move(task));
  }
  cv_.notify_all();
}

void ConversationForwarder::runLoop() {
  MutexLock lock(mu_);
  while (!stopping_) {
    if (timers_.empty()) {
      lock.wait(cv_);
      continue;
    }
    auto first = timers_.begin();
    if (first->first > Clock::now()) {
      // A copy: the wait reads its deadline again after waking, when the timer may be gone.
      const auto until = first->first;
      (void)lock.waitUntil(cv_, until);
      continue;
    }
    auto task = std::move(first->second);
    timers_.erase(first);
    lock.unlock();
    task();
    lock.lock();
  }
}

void ConversationForwarder::finish(const JobPtr& job, std::optional<Error> error) {
  JobPtr next;
  {
    MutexLock lock(mu_);
    jobs_.erase(job->key);
    if (auto q = queues_.find(job->conversation.str()); q != queues_.end()) {
      std::erase(q->second, job);
      if (q->second.empty())
        queues_.erase(q);
      else
        next = q->second.front();
    }
  }
  if (error) job->fail(std::move(*error));
  if (next) after(Clock::now(), [this, next] { attempt(next); });
}

void ConversationForwarder::retryLater(const JobPtr& job) {
  after(Clock::now() + options_.retry_pause, [this, job] { attempt(job); });
}

// On the forwarder's thread.
void ConversationForwarder::attempt(const JobPtr& job) {
  const auto now = Clock::now();
  if (now >= job->deadline)
    return finish(
        job, Error{ErrorCode::kUnavailable, "conversation " + job->conversation.str() +
                                                ": no node took it within " +
                                                std::to_string(options_.wait.count()) + " ms (" +
                                                job->last + ")" + std::string(kRetryAfter)});
  auto local = [this, job] {
    job->run_local([this, job, token = track()](bool handled) {
      if (handled) return finish(job, std::nullopt);
      job->last = "this node does not hold it yet";
      retryLater(job);
    });
  };
  if (holds_(job->conversation)) return local();
  auto lease = leases_.getLease(job->conversation);
  if (!lease && lease.error().code != ErrorCode::kNotFound) {
    job->last = "reading its lease: " + lease.error().message;
    return retryLater(job);
  }
  // Never leased, or this node's: the engine answers (a conversation that does not exist or is
  // closed) or will hold it once it loaded it.
  if (!lease || lease->node == options_.node) return local();
  const std::string node = lease->node;
  const auto timeout = std::max<std::chrono::milliseconds>(
      std::chrono::milliseconds(1),
      std::min(options_.attempt_timeout,
               std::chrono::duration_cast<std::chrono::milliseconds>(job->deadline - now)));
  bus_.request(forwardSubject(node), job->command, timeout,
               [this, job, node, token = track()](Result<std::string> r) {
                 if (!r) {
                   job->last = "node " + node + ": " + r.error().message;
                   return retryLater(job);
                 }
                 auto o = json::parseObject(*r);
                 if (!o) {
                   job->last = "node " + node + " answered no JSON object";
                   return retryLater(job);
                 }
                 if (getBool(*o, "notHeld")) {
                   job->last = "node " + node + " does not hold it";
                   return retryLater(job);
                 }
                 {
                   MutexLock lock(mu_);
                   ++forwarded_;
                 }
                 job->answer(*o);
                 finish(job, std::nullopt);
               });
}

// ---- the owner's side ----

void ConversationForwarder::serveRequest(const bus::BusMessage& m, bus::Reply reply) {
  if (m.data.size() > options_.max_payload)
    return reply(errorAnswer(Error{
        ErrorCode::kTooLarge,
        "a forwarded command is larger than " + std::to_string(options_.max_payload) + " bytes"}));
  auto o = json::parseObject(m.data);
  if (!o) return reply(errorAnswer(Error{ErrorCode::kInvalid, "a forwarded command is not JSON"}));
  const std::string id = json::getString(*o, "id");
  const ConversationId conversation(json::getString(*o, "conversation"));
  if (id.empty() || id.size() > 128 || conversation.str().empty())
    return reply(errorAnswer(Error{ErrorCode::kInvalid, "a forwarded command lacks its id"}));
  {
    MutexLock lock(mu_);
    if (stopping_) return reply(kNotHeld);
    if (auto it = served_.find(id); it != served_.end()) {
      // A retry of a command this node has: its answer, now or once known.
      if (it->second.answered) return reply(it->second.answer);
      it->second.waiting.push_back(std::move(reply));
      return;
    }
    if (serving_ >= options_.max_serving)
      return reply(errorAnswer(Error{ErrorCode::kUnavailable,
                                     "the conversation's node applies too many forwarded "
                                     "commands" +
                                         std::string(kRetryAfter)}));
    ++serving_;
    served_ages_.push_back(id);
    Served s;
    s.waiting.push_back(std::move(reply));
    s.age = std::prev(served_ages_.end());
    served_.emplace(id, std::move(s));
    // Forget the oldest answered commands beyond the bound (unanswered ones are in progress).
    for (auto age = served_ages_.begin();
         served_.size() > options_.remembered && age != served_ages_.end();) {
      auto it = served_.find(*age);
      if (it != served_.end() && it->second.answered) {
        served_.erase(it);
        age = served_ages_.erase(age);
      } else {
        ++age;
      }
    }
  }
  // The engine answers for a conversation it does not hold (closed: Conflict; unknown:
  // NotFound; open elsewhere: Unavailable, answered as notHeld below).
  auto actor_obj = json::requireObject(*o, "actor");
  if (!actor_obj) return answerServed(id, errorAnswer(actor_obj.error()));
  auto actor = actorFrom(**actor_obj);
  if (!actor) return answerServed(id, errorAnswer(actor.error()));
  const std::string type = json::getString(*o, "type");
  auto notHeldOr = [this, conversation](const Error& e) {
    return notHeldHere(e, holds_, conversation) ? kNotHeld : errorAnswer(e);
  };
  if (type == "publish") {
    conv::PublishRequest req;
    req.actor = std::move(*actor);
    req.conversation = conversation;
    req.event_json = json::getString(*o, "event");
    req.metadata_json = json::getString(*o, "metadata", "[]");
    auto audience = store::parseAudience(json::getString(*o, "audience", "ALL"));
    if (!audience) return answerServed(id, errorAnswer(audience.error()));
    req.audience = *audience;
    req.turn = store::decodeTurnMark(json::getString(*o, "turn"));
    req.idempotency_key = json::getString(*o, "idempotencyKey");
    engine_.publish(
        std::move(req), [this, id, notHeldOr, token = track()](Result<conv::Published> r) {
          if (!r) return answerServed(id, notHeldOr(r.error()));
          answerServed(id, json::dump(bj::object{{"ok", true}, {"result", publishedJson(*r)}}));
        });
    return;
  }
  if (type == "update") {
    std::vector<conv::FieldChange> changes;
    auto list = json::requireArray(*o, "changes");
    if (!list) return answerServed(id, errorAnswer(list.error()));
    for (const auto& v : **list) {
      if (!v.is_object())
        return answerServed(id, errorAnswer(Error{ErrorCode::kInvalid, "a change is no object"}));
      auto c = changeFrom(v.as_object());
      if (!c) return answerServed(id, errorAnswer(c.error()));
      changes.push_back(std::move(*c));
    }
    engine_.updateConversation(
        std::move(*actor), conversation, std::move(changes),
        [this, id, notHeldOr, token = track()](Result<store::Conversation> r) {
          if (!r) return answerServed(id, notHeldOr(r.error()));
          answerServed(id, json::dump(bj::object{{"ok", true}, {"result", conversationJson(*r)}}));
        });
    return;
  }
  answerServed(id, errorAnswer(Error{ErrorCode::kInvalid, "unknown forwarded command: " + type}));
}

void ConversationForwarder::answerServed(const std::string& id, std::string answer) {
  std::vector<bus::Reply> waiting;
  {
    MutexLock lock(mu_);
    --serving_;
    auto it = served_.find(id);
    if (it == served_.end()) return;
    waiting.swap(it->second.waiting);
    if (answer == kNotHeld) {
      // Not applied here: a retry (once this node holds it, or after the sender read the
      // lease again) must apply it.
      served_ages_.erase(it->second.age);
      served_.erase(it);
    } else {
      it->second.answered = true;
      it->second.answer = answer;
    }
  }
  for (auto& r : waiting) r(answer);
}

void ConversationForwarder::acceptRing(conv::Actor agent, std::string ring_id,
                                       conv::Callback<store::Conversation> done) {
  if (routing_) return routing_->acceptRing(std::move(agent), std::move(ring_id), std::move(done));
  engine_.acceptRing(std::move(agent), std::move(ring_id), std::move(done));
}

void ConversationForwarder::rejectRing(conv::Actor agent, std::string ring_id,
                                       conv::Callback<void> done) {
  if (routing_) return routing_->rejectRing(std::move(agent), std::move(ring_id), std::move(done));
  engine_.rejectRing(std::move(agent), std::move(ring_id), std::move(done));
}

std::vector<conv::Ring> ConversationForwarder::ringsForAgent(const AccountId& acc,
                                                             const UserId& user) const {
  if (routing_) return routing_->ringsForAgent(acc, user);
  return engine_.ringsForAgent(acc, user);
}

}  // namespace parley::app
