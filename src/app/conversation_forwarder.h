#pragma once

// Cluster mode: a publish or a conversation change that reaches a node which does not hold the
// conversation is forwarded to the node that does, over the bus (request/reply on the owner's
// subject `parley-fwd.<hex of its node name>`), and the owner's answer (the sequence, the
// conversation after the change, or the error) is the caller's answer, exactly what a local
// call answers.
//
// `ConversationForwarder` is a ConversationService in front of this node's engine: the
// protocol sessions call it. `publish` and `updateConversation` of a conversation the engine
// holds go to the engine directly; otherwise (or when the engine answers Unavailable because it
// no longer holds it) the forwarder reads the conversation's lease and
//   - the lease is another node's: forwards the command there; an owner that does not answer
//     (no responders: a dead node; no answer within `attempt_timeout`), or that answers it does
//     not hold the conversation (it lost it, or has not loaded it yet), means waiting for the
//     next owner: read the lease again and go on;
//   - the lease is this node's, expired, or absent: calls the engine again (it loads the
//     conversations it claims every lease_ms / 3);
// every `retry_pause`, until `wait` (10 s) has passed since the call; then Unavailable
// "... retry after 1 s" (the protocol's 503). The calls of one conversation waiting here are
// applied in the order they were made: only the oldest is attempted, the next once it has
// ended (answered or failed), and a call made while some are waiting waits behind them even
// when the engine holds the conversation by then (a caller that gave up on a publish and
// published again finds the two applied in its order, or the first refused). Ring accepts, rejects
// and replays go through the cluster routing when one is set (setRouting: a ring another node
// offered is answered there); every other call goes to the engine as it is.
//
// Trust: the receiving node authenticated the caller and checked its rights as for a local
// call (the protocol session); the owner takes the command's actor (account, consumer or user
// and PId) as given and applies it with the engine's own checks (participant, roles read from
// the store, conversation state, content check), as any publish. The bus is inside the
// cluster's trust boundary (as the relay and the invalidations are).
//
// At most once per owner: each forwarded command carries a random id; an owner that gets the
// same id again (the sender timed out and retried) answers what it answered, or will answer,
// the first time instead of applying it twice (the last `remembered` ids). A command applied by
// an owner that died before answering can be applied again by the next owner.
//
// Limits: a forwarded command is at most `max_payload` bytes of JSON (TooLarge otherwise, not
// forwarded); at most `max_waiting` calls of this node wait for an owner at once (Unavailable
// "retry after 1 s" beyond); an owner applies at most `max_serving` forwarded commands at once
// (it answers the others Unavailable, and their senders retry within their 10 s).
//
// Threading: thread-safe. The lease reads and the waits run on one thread of the forwarder's
// own; completions are called on an engine thread (a local call), a bus thread (a forwarded
// one) or the forwarder's thread (a failure). The engine, the store and the bus must outlive
// it; stop() (or the destructor) ends the serving and fails the calls still waiting.

#include <boost/json/object.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bus/bus.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "conversation/conversation_service.h"
#include "store/store.h"

namespace parley::app {

class ClusterRouting;

struct ForwarderOptions {
  // This node's name (the engine's Options::node). REQUIRES: non-empty.
  std::string node;
  // How long a call waits for an owner in all. Default: 10 s (the API's promise).
  std::chrono::milliseconds wait{10'000};
  // How long one forward waits for the owner's answer. Default: 2 s.
  std::chrono::milliseconds attempt_timeout{2'000};
  // The pause before reading the lease again. Default: 100 ms.
  std::chrono::milliseconds retry_pause{100};
  // The largest forwarded command (JSON bytes). Default: 1 MiB (NATS's default max_payload).
  std::size_t max_payload = 1 << 20;
  // Calls of this node waiting for an owner at once. Default: 1024.
  std::size_t max_waiting = 1024;
  // Forwarded commands an owner applies at once. Default: 1024.
  std::size_t max_serving = 1024;
  // Forwarded command ids an owner remembers (with their answers). Default: 4096.
  std::size_t remembered = 4096;
};

// The bus subject on which `node` serves forwarded commands.
std::string forwardSubject(const std::string& node);

class ConversationForwarder final : public conversation::ConversationService {
 public:
  // `holds` says whether `engine` holds a conversation now (conversation::holdsConversation).
  ConversationForwarder(conversation::ConversationService& engine, store::ClusterStore& leases,
                        bus::Bus& bus, std::function<bool(const ConversationId&)> holds,
                        ForwarderOptions options);
  ~ConversationForwarder() override;

  // Serves the commands other nodes forward to this one.
  Status start();
  // Stops serving and fails the calls still waiting for an owner (Unavailable).
  void stop();

  // Calls forwarded to another node and answered by it (tests, metrics).
  std::uint64_t forwarded() const;

  // Cluster-wide routing (app/cluster_routing.h): rings, accepts and rejects go through it.
  // Set before serving; it must outlive the forwarder. nullptr (the default): the engine's.
  void setRouting(ClusterRouting* routing) { routing_ = routing; }

  // ConversationService
  Status recover() override { return engine_.recover(); }
  conversation::Subscription subscribe(conversation::ConversationListener& l) override {
    return engine_.subscribe(l);
  }
  void requestConversation(conversation::ConversationRequest req,
                           conversation::Callback<store::Conversation> done) override {
    engine_.requestConversation(std::move(req), std::move(done));
  }
  void publish(conversation::PublishRequest req,
               conversation::Callback<conversation::Published> done) override;
  void updateConversation(conversation::Actor actor, ConversationId id,
                          std::vector<conversation::FieldChange> changes,
                          conversation::Callback<store::Conversation> done) override;
  void markTurn(conversation::Actor actor, ConversationId id, store::TurnMark mark,
                conversation::Callback<void> done) override {
    engine_.markTurn(std::move(actor), std::move(id), std::move(mark), std::move(done));
  }
  void setAgentState(AccountId acc, UserId user, store::Availability a,
                     conversation::Callback<store::AgentState> done) override {
    engine_.setAgentState(std::move(acc), std::move(user), a, std::move(done));
  }
  void refreshAgent(AccountId acc, UserId user, conversation::Callback<void> done) override {
    engine_.refreshAgent(std::move(acc), std::move(user), std::move(done));
  }
  // A ring another node offered to an agent here is accepted or rejected by that node
  // (cluster routing, when set); any other by this node's engine.
  void acceptRing(conversation::Actor agent, std::string ring_id,
                  conversation::Callback<store::Conversation> done) override;
  void rejectRing(conversation::Actor agent, std::string ring_id,
                  conversation::Callback<void> done) override;
  void getConversation(AccountId acc, ConversationId id,
                       conversation::Callback<store::Conversation> done) override {
    engine_.getConversation(std::move(acc), std::move(id), std::move(done));
  }
  void listMessages(AccountId acc, ConversationId id, std::int64_t from_seq, int limit,
                    conversation::Callback<std::vector<store::Message>> done) override {
    engine_.listMessages(std::move(acc), std::move(id), from_seq, limit, std::move(done));
  }
  void listConversations(AccountId acc, store::ConversationQuery q,
                         conversation::Callback<std::vector<store::Conversation>> done) override {
    engine_.listConversations(std::move(acc), std::move(q), std::move(done));
  }
  std::vector<conversation::QueueSnapshot> queues(
      const AccountId& acc, const std::optional<SkillId>& skill) const override {
    return engine_.queues(acc, skill);
  }
  std::vector<conversation::Ring> ringsForAgent(const AccountId& acc,
                                                const UserId& user) const override;
  std::vector<conversation::AgentInfo> agents(const AccountId& acc) const override {
    return engine_.agents(acc);
  }
  void tick() override { engine_.tick(); }

 private:
  struct Job;
  using JobPtr = std::shared_ptr<Job>;
  // A forwarded command an owner got: its answer once known, and the requests waiting for it.
  struct Served {
    bool answered = false;
    std::string answer;
    std::vector<bus::Reply> waiting;
    std::list<std::string>::iterator age;
  };

  template <class T>
  JobPtr makeJob(ConversationId id, std::function<boost::json::object()> encode,
                 std::function<void(conversation::Callback<T>)> call_engine,
                 std::function<Result<T>(const boost::json::object&)> decode,
                 conversation::Callback<T> done);
  void begin(JobPtr job);
  void submit(JobPtr job);
  // Held by every callback that refers to this object; the destructor waits for them all.
  std::shared_ptr<void> track();
  void attempt(const JobPtr& job);
  void retryLater(const JobPtr& job);
  void finish(const JobPtr& job, std::optional<Error> error);
  void runLoop() PARLEY_EXCLUDES(mu_);
  void after(std::chrono::steady_clock::time_point at, std::function<void()> task);

  // Owner side.
  void serveRequest(const bus::BusMessage& m, bus::Reply reply);
  void answerServed(const std::string& id, std::string answer);

  conversation::ConversationService& engine_;
  store::ClusterStore& leases_;
  bus::Bus& bus_;
  const std::function<bool(const ConversationId&)> holds_;
  const ForwarderOptions options_;
  std::unique_ptr<bus::Subscription> serving_sub_;
  ClusterRouting* routing_ = nullptr;  // set before serving

  mutable Mutex mu_;
  std::condition_variable cv_;
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> timers_
      PARLEY_GUARDED_BY(mu_);
  std::unordered_map<std::uint64_t, JobPtr> jobs_ PARLEY_GUARDED_BY(mu_);  // waiting for an owner
  // The waiting calls of each conversation in call order: only the first attempts; the next
  // starts when it ends.
  std::unordered_map<std::string, std::deque<JobPtr>> queues_ PARLEY_GUARDED_BY(mu_);
  std::uint64_t next_job_ PARLEY_GUARDED_BY(mu_) = 0;
  std::size_t serving_ PARLEY_GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, Served> served_ PARLEY_GUARDED_BY(mu_);  // by command id
  std::list<std::string> served_ages_ PARLEY_GUARDED_BY(mu_);              // oldest first
  std::uint64_t forwarded_ PARLEY_GUARDED_BY(mu_) = 0;
  std::size_t outstanding_ PARLEY_GUARDED_BY(mu_) = 0;  // see track()
  bool stopping_ PARLEY_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace parley::app
