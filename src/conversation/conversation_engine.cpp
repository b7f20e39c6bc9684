#include "conversation/conversation_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/defer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "common/check.h"
#include "common/json.h"
#include "common/policy.h"
#include "common/random.h"
#include "common/shared_mutex.h"
#include "common/thread_name.h"
#include "conversation/engine_pool.h"

namespace parley::conversation {
namespace {

namespace asio = boost::asio;
using Strand = asio::strand<asio::thread_pool::executor_type>;
using store::Availability;
using store::Conversation;
using store::ConversationState;
using store::Lease;
using store::Participant;
using store::participantRoleName;
using store::TtrType;

constexpr const char* kNoSkill = "-1";
// The first block of a published event's parse (a text message needs a few hundred bytes;
// larger events take more blocks).
constexpr std::size_t kEventBlockBytes = 1024;
// How deep a published event may nest: what boost::json::parse accepts by default, so an event
// handed over as a value is held to the same limit as one sent as text.
constexpr int kMaxEventDepth = 32;

// Whether `v`'s arrays and objects nest at most `max` deep (`v` itself counting as one).
bool withinDepth(const boost::json::value& v, int max);
bool withinDepth(const boost::json::object& o, int max) {
  if (max <= 0) return false;
  for (const auto& kv : o)
    if (!withinDepth(kv.value(), max - 1)) return false;
  return true;
}
bool withinDepth(const boost::json::value& v, int max) {
  if (const auto* o = v.if_object()) return withinDepth(*o, max);
  if (const auto* a = v.if_array()) {
    if (max <= 0) return false;
    for (const auto& e : *a)
      if (!withinDepth(e, max - 1)) return false;
  }
  return true;
}
// The answer to a conversation request while the consumer has the open conversation `open`
// (one per consumer and account).
std::unexpected<Error> consumerHasOpenConversation(const ConversationId& open) {
  return conflict("consumer already has an open conversation " + open.str());
}

constexpr ParticipantRole kAssignedAgent = ParticipantRole::kAssignedAgent;
constexpr ParticipantRole kManager = ParticipantRole::kManager;
constexpr ParticipantRole kReader = ParticipantRole::kReader;
constexpr ParticipantState kActive = ParticipantState::kActive;
constexpr ParticipantState kSuggested = ParticipantState::kSuggested;

// One open conversation: its strand and its current state. `conv` is touched only on `strand`
// (after the entry is published in the entry map).
// Operations on a conversation run one at a time on its strand; one that waits for an
// asynchronous store write (a publish) marks the entry `busy`, and operations that arrive
// meanwhile are `held` and run, in order, when it ends. So events are emitted in the order
// their writes were queued, and no operation sees a state whose write may still fail.
struct ConvEntry {
  ConvEntry(Strand s, Conversation c) : strand(std::move(s)), conv(std::move(c)) {}
  Strand strand;
  Conversation conv;
  bool busy = false;  // on strand
  // On strand. A write of this conversation failed with Unavailable: the store may have stored
  // it all the same (an answer lost with the connection), so `conv` may be behind the store.
  // The next operation reads the store first (Engine::resync).
  bool unsure = false;
  // On strand. A vector, not a deque: an empty one allocates nothing (idle conversations are
  // many), and more than a few held operations per conversation are rare.
  std::vector<std::function<void()>> held;
};
using EntryPtr = std::shared_ptr<ConvEntry>;

bool isActiveAssigned(const Participant& p) {
  return p.role == kAssignedAgent && p.state == kActive;
}
bool hasActiveAssigned(const Conversation& c) {
  return std::ranges::any_of(c.participants, isActiveAssigned);
}
const Participant* findSuggested(const Conversation& c) {
  for (const auto& p : c.participants)
    if (p.role == kAssignedAgent && p.state == kSuggested) return &p;
  return nullptr;
}
std::string consumerKey(const AccountId& acc, const ConsumerId& c) {
  return acc.str() + '\n' + c.str();
}

// Listener registry, shared with Subscription handles so that either may outlive the other.
class Listeners {
 public:
  std::uint64_t add(ConversationListener* l) PARLEY_EXCLUDES(mu_) {
    WriterMutexLock lock(mu_);
    auto id = ++next_;
    list_.emplace_back(id, l);
    return id;
  }
  void remove(std::uint64_t id) PARLEY_EXCLUDES(mu_) {
    WriterMutexLock lock(mu_);
    std::erase_if(list_, [id](const auto& e) { return e.first == id; });
  }
  template <class F>
  void emit(F&& f) PARLEY_EXCLUDES(mu_) {
    ReaderMutexLock lock(mu_);
    for (auto& [_, l] : list_) {
      try {
        f(*l);
      } catch (const std::exception& e) {
        spdlog::error("conversation listener threw: {}", e.what());
      } catch (...) {
        spdlog::error("conversation listener threw a non-exception");
      }
    }
  }

 private:
  SharedMutex mu_;
  std::uint64_t next_ PARLEY_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<std::uint64_t, ConversationListener*>> list_ PARLEY_GUARDED_BY(mu_);
};

class Engine final : public ConversationService {
 public:
  Engine(store::Store& store, const Clock& clock, Options options)
      : pool_(static_cast<std::size_t>(std::max(1, options.threads))),
        agents_strand_(asio::make_strand(pool_)),
        store_(store),
        clock_(clock),
        options_(options),
        listeners_(std::make_shared<Listeners>()) {
    nameThreads([this](auto task) { asio::post(pool_, std::move(task)); },
                static_cast<std::size_t>(std::max(1, options.threads)), "conv-engine");
    PARLEY_CHECK(options_.ring_expiry_ms > 0, "ring_expiry_ms must be > 0");
    PARLEY_CHECK(options_.ring_fanout >= 1, "ring_fanout must be >= 1");
    PARLEY_CHECK(options_.suggest_timeout_ms > 0, "suggest_timeout_ms must be > 0");
    PARLEY_CHECK(options_.ttr_defer_ms >= 0, "ttr_defer_ms must be >= 0");
    if (clustered()) PARLEY_CHECK(options_.lease_ms > 0, "lease_ms must be > 0");
    if (clustered() && options_.tick_interval_ms > 0) {
      lease_thread_ = std::jthread([this](std::stop_token st) {
        nameThisThread("conv-leases");
        std::mutex m;
        std::condition_variable_any cv;
        std::unique_lock lock(m);
        while (!st.stop_requested()) {
          cv.wait_for(lock, st,
                      std::chrono::milliseconds(std::max<TimeMs>(1, options_.lease_ms / 3)),
                      [] { return false; });
          if (st.stop_requested()) break;
          if (recovered_announce_.load()) maintainLeases();
        }
      });
    }
    if (options_.tick_interval_ms > 0) {
      timer_ = std::jthread([this](std::stop_token st) {
        nameThisThread("conv-ticker");
        std::mutex m;
        std::condition_variable_any cv;
        std::unique_lock lock(m);
        while (!st.stop_requested()) {
          cv.wait_for(lock, st, std::chrono::milliseconds(options_.tick_interval_ms),
                      [] { return false; });
          if (st.stop_requested()) break;
          tick();
        }
      });
    }
  }

  ~Engine() override {
    if (lease_thread_.joinable()) {
      lease_thread_.request_stop();
      lease_thread_.join();
    }
    if (timer_.joinable()) {
      timer_.request_stop();
      timer_.join();
    }
    {
      // Their completions post to strands of pool_: wait for them before joining it.
      MutexLock lock(writes_mu_);
      while (writes_in_flight_ != 0) lock.wait(writes_cv_);
    }
    pool_.join();
    if (clustered()) releaseHeldAtShutdown();
  }

  // ConversationService
  Status recover() override;
  Subscription subscribe(ConversationListener& listener) override {
    auto id = listeners_->add(&listener);
    std::weak_ptr<Listeners> weak = listeners_;
    return Subscription([weak, id] {
      if (auto l = weak.lock()) l->remove(id);
    });
  }
  void requestConversation(ConversationRequest req, Callback<Conversation> done) override;
  void publish(PublishRequest req, Callback<Published> done) override;
  void markTurn(Actor actor, ConversationId id, store::TurnMark mark, Callback<void> done) override;
  void updateConversation(Actor actor, ConversationId id, std::vector<FieldChange> changes,
                          Callback<Conversation> done) override;
  void setAgentState(AccountId acc, UserId user, Availability availability,
                     Callback<store::AgentState> done) override;
  void refreshAgent(AccountId acc, UserId user, Callback<void> done) override;
  void acceptRing(Actor agent, std::string ring_id, Callback<Conversation> done) override;
  void rejectRing(Actor agent, std::string ring_id, Callback<void> done) override;
  void getConversation(AccountId acc, ConversationId id, Callback<Conversation> done) override;
  void listMessages(AccountId acc, ConversationId id, std::int64_t from_seq, int limit,
                    Callback<std::vector<store::Message>> done) override;
  void listConversations(AccountId acc, store::ConversationQuery q,
                         Callback<std::vector<Conversation>> done) override;
  std::vector<QueueSnapshot> queues(const AccountId& acc,
                                    const std::optional<SkillId>& skill) const override;
  std::vector<Ring> ringsForAgent(const AccountId& acc, const UserId& user) const override;
  std::vector<AgentInfo> agents(const AccountId& acc) const override;
  void tick() override;
  void maintainLeases();
  // Options::may_hold_leases said no: drops every held conversation and releases its lease.
  void giveUpLeases();
  // Releases `leases` (this node's) in batches of kReleaseBatch, one store call each.
  Status releaseLeases(const std::vector<Lease>& leases);
  // At shutdown (after the pool is joined: nothing writes any more): releases every lease held,
  // so the other nodes claim the conversations at their next round instead of at the expiry.
  void releaseHeldAtShutdown();
  bool holds(const ConversationId& id) const {
    MutexLock lock(entries_mu_);
    return entries_.contains(id);
  }
  void attachRemoteRings(std::shared_ptr<RemoteRings> rings) {
    MutexLock lock(remote_mu_);
    remote_rings_ = std::move(rings);
  }
  std::vector<AnnouncedAgent> localAgents() const;
  std::vector<AnnouncedQueue> localQueueHeads(std::size_t max) const;
  void applyAnnouncement(const std::string& node, std::vector<AnnouncedAgent> agents, TimeMs ttl_ms,
                         std::vector<AnnouncedQueue> queues);

 private:
  // The most leases one claim takes (recover() claims until a claim takes fewer).
  static constexpr int kClaimBatch = 500;
  // The most leases one release call gives up (a node giving up or shutting down).
  static constexpr std::size_t kReleaseBatch = 1000;
  bool clustered() const { return !options_.node.empty() && store_.cluster() != nullptr; }
  // Adds an open conversation read from the store (recover, takeover): entry, consumer index,
  // routing. nullptr when the engine already holds it.
  EntryPtr load(Conversation c);
  // Claims the leases nobody holds and loads their conversations; how many were loaded.
  Result<std::size_t> claimAndLoad();
  void forgetLease(const ConversationId& id);
  Error refusedCreate(const Conversation& c, Error refused);
  void drop(const ConversationId& id);
  // On the entry's strand: its lease, lost, was taken again by this node before the drop ran.
  void retake(const EntryPtr& held, Conversation fresh);

  // ---- routing state (guarded by mu_) ----
  struct Waiting {
    EntryPtr entry;
    AccountId account;
    ConversationId id;
    ConsumerId consumer;
    SkillId skill;
    TtrType ttr_type = TtrType::kNormal;
    std::int64_t ttr_value_s = 0;
    TimeMs queued_at = 0;
    TimeMs due_at = 0;
    std::uint64_t order = 0;
    std::uint64_t epoch = 0;
    bool overdue = false;
    bool claimed = false;  // an accept is being committed
    std::optional<UserId> suggested;
    std::vector<std::string> rings;  // WAITING ring ids
    // Cluster mode: when an agent was first held back from it for another node's earlier-due
    // conversation (0: never); it is held back for at most Options::ttr_defer_ms after.
    TimeMs deferred_since = 0;
  };
  using QueueKey = std::tuple<TimeMs, std::uint64_t, std::string>;
  // An agent as another node announced it (cluster-wide routing).
  struct Announced {
    Availability availability = Availability::kOffline;
    std::vector<SkillId> skills;
    int max_open = 0;
    int load = 0;  // that node's assigned conversations and rings
  };
  struct Agent {
    UserId id;
    bool loaded = false;  // skills/capacity read from the store
    Availability availability = Availability::kOffline;
    store::UserType type = store::UserType::kHuman;
    std::vector<SkillId> skills;
    int max_open = 0;
    std::unordered_set<std::string> assigned;  // open conversations where ACTIVE ASSIGNED_AGENT
    std::unordered_set<std::string> declined;  // rejected or expired rings, until state changes
    int waiting_rings = 0;
    TimeMs last_offer_at = 0;
    std::map<std::string, Announced> remote;  // by node: other nodes' announcements
    // The availability this node's listeners were last told (AgentStateChanged): the state a
    // session here set, or the one another node announced (announcedStatesLocked).
    Availability shown = Availability::kOffline;
  };
  // How an agent is reached now: its state set on this node (`node` null), else the state
  // another node announced (`node` names it). `ok` false: not reachable (OFFLINE everywhere).
  struct Reach {
    bool ok = false;
    const std::string* node = nullptr;
    Availability availability = Availability::kOffline;
    const std::vector<SkillId>* skills = nullptr;
    int max_open = 0;
  };
  struct AccountRouting {
    std::map<std::string, std::set<QueueKey>> queues;  // skill -> waiting conversations
    std::unordered_map<std::string, Agent> agents;
  };
  struct RingRec {
    Ring ring;
    EntryPtr entry;
    // Where the agent is rung: this node's sessions of the agent (`local`) and the other
    // nodes whose sessions of the agent have it (`nodes`). A WAITING ring has at least one.
    bool local = false;
    std::set<std::string> nodes;
    bool announced = false;      // offered at its places (RingOffered, RemoteRings::offer)
    bool end_announced = false;  // its end was told to its places
    RingEndReason end_reason = RingEndReason::kCancelled;
    TimeMs ended_at = 0;
  };
  // Work collected under mu_ and performed after releasing it.
  struct Effects {
    std::vector<std::pair<EntryPtr, std::string>> offers;  // ring ids to announce
    std::vector<std::pair<EntryPtr, std::string>> ends;    // ring ids whose end to announce
    // A WAITING ring offered at one more place, or withdrawn from one place (it goes on at the
    // others, or ends): (entry, ring id, node; "" for this node's sessions).
    std::vector<std::tuple<EntryPtr, std::string, std::string>> offers_at;
    std::vector<std::tuple<EntryPtr, std::string, std::string>> withdrawals;
    std::vector<std::tuple<EntryPtr, std::uint64_t, UserId>> drop_suggestions;
    std::vector<std::pair<EntryPtr, ConversationOverdue>> overdue;
    std::set<std::string> dispatch_accounts;
  };

  // ---- helpers ----
  template <class T>
  void completeOnPool(Callback<T> done, Result<T> r) {
    asio::post(pool_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  }
  // Runs `task` on the entry's strand, after the operation in progress (if any) has ended.
  // Deferred rather than posted: called from one of the pool's own threads (the connector's
  // turns, an append's completion), the task runs on that thread once the current handler
  // returns instead of waking another one; from any other thread it is a plain post.
  static void onStrand(const EntryPtr& entry, std::function<void()> task) {
    asio::defer(entry->strand, [entry, task = std::move(task)]() mutable {
      if (entry->busy) {
        entry->held.push_back(std::move(task));
        return;
      }
      task();
    });
  }
  // On the strand: ends the operation that set `busy` and runs held operations until one of
  // them is busy again.
  static void release(const EntryPtr& entry) {
    entry->busy = false;
    while (!entry->busy && !entry->held.empty()) {
      auto task = std::move(entry->held.front());
      entry->held.erase(entry->held.begin());
      task();
    }
  }
  // One asynchronous append of `publish`, shared by the store's completion (writer thread) and
  // the strand handler that finishes the publish; the last to let go destroys it. Its
  // destructor drops the entry (whose strand belongs to pool_) and the caller's callback first
  // and only then ends the write, so ~Engine — which waits for writes in flight before joining
  // pool_ — never runs while something here still refers to the pool. (ASan caught the entry
  // released on the writer thread after the pool was gone when the count ended in the handler,
  // and, later, the writer thread's copy of the strand made by `defer` destroyed after the
  // handler had already finished the publish and the test had destroyed the engine.)
  struct PendingAppend {
    explicit PendingAppend(Engine& e) : engine(e) {}
    PendingAppend(const PendingAppend&) = delete;
    PendingAppend& operator=(const PendingAppend&) = delete;
    ~PendingAppend() {
      entry.reset();
      done = nullptr;
      engine.writeEnded();
    }
    Engine& engine;
    EntryPtr entry;
    // The message and the conversation as appended: written by the store, then emitted.
    std::shared_ptr<MessageAdded> added;
    TimeMs prev_updated = 0;
    TimeMs now = 0;
    Callback<Published> done;
  };
  // Asynchronous store writes in flight (the destructor waits for them).
  void writeStarted() {
    MutexLock lock(writes_mu_);
    ++writes_in_flight_;
  }
  void writeEnded() {
    MutexLock lock(writes_mu_);
    if (--writes_in_flight_ == 0) writes_cv_.notify_all();
  }
  // Runs `fn(entry)` on the conversation's strand, or `fail(error)` on a pool thread when the
  // conversation is not open here.
  void withEntry(const AccountId& acc, const ConversationId& id, std::function<void(EntryPtr)> fn,
                 std::function<void(Error)> fail);
  // On the entry's strand, when `unsure`: reads the conversation from the store and takes what
  // a failed write stored all the same — messages past `next_sequence` are adopted in order and
  // announced (onMessageAdded) as if their publish had succeeded. Unavailable while the store
  // cannot be read (the entry stays unsure and the operation fails: retry).
  Status resync(const EntryPtr& entry);
  static Status checkOpen(const Conversation& c, const AccountId& acc) {
    if (c.account != acc)
      return notFound("conversation " + c.id.str() + " does not exist in account " + acc.str());
    if (c.state != ConversationState::kOpen)
      return conflict("conversation " + c.id.str() + " is closed");
    return {};
  }
  Result<std::int64_t> ttrSeconds(const AccountId& acc, TtrType type,
                                  std::optional<std::int64_t> value);
  Status checkSkill(const AccountId& acc, const SkillId& skill);
  // The policy's rules for an agent's field changes on `c`: the role each change needs
  // (closing, TTR, transfers, joining as MANAGER/READER, adding or removing somebody else),
  // checked against the actor's roles as stored now. Reads the store only when a change needs a
  // role. Forbidden naming the role; Forbidden when the user no longer exists.
  Status authorizeChanges(const Actor& actor, const Conversation& c,
                          const std::vector<FieldChange>& changes);

  void emitChanged(ChangeKind kind, const Conversation& c, std::vector<Participant> removed) {
    ConversationChanged ev{kind, c, std::move(removed)};
    listeners_->emit([&](ConversationListener& l) { l.onConversationChanged(ev); });
  }

  // Under mu_.
  // The routing state of an open conversation held here (queue, agents' counts), and its
  // removal.
  void addRoutingLocked(const EntryPtr& entry) PARLEY_REQUIRES(mu_);
  void removeRoutingLocked(const Conversation& c, Effects& fx) PARLEY_REQUIRES(mu_);
  void addWaitingLocked(const EntryPtr& entry, const Conversation& c, TimeMs queued_at,
                        std::optional<UserId> suggested) PARLEY_REQUIRES(mu_);
  void removeWaitingLocked(const std::string& conv, Effects& fx) PARLEY_REQUIRES(mu_);
  void endRingLocked(RingRec& r, RingState state, RingEndReason reason, Effects& fx)
      PARLEY_REQUIRES(mu_);
  void rekeyDueLocked(Waiting& w, TimeMs due) PARLEY_REQUIRES(mu_);
  void dispatchLocked(const std::string& acc, Effects& fx) PARLEY_REQUIRES(mu_);
  // How an agent is rung: as the named agent of a transfer (ONLINE or OCCUPIED, any skill),
  // or from the skill's queue (ONLINE, serving the skill, not having declined it).
  enum class Offer { kSuggested, kFromQueue };
  bool eligibleLocked(const Agent& a, const std::string& skill, const Waiting& w, Offer offer) const
      PARLEY_REQUIRES(mu_);
  static Reach reachLocked(const Agent& a);
  // Whether a live other node announced a queue head of `acc` due before `due` that `a` could
  // take (it serves the head's skill, or the head is the default queue's).
  bool earlierElsewhereLocked(const std::string& acc, const Agent& a, TimeMs due, TimeMs now) const
      PARLEY_REQUIRES(mu_);
  // The availability agents() shows and this node's sessions are told: the reach's.
  static Availability shownLocked(const Agent& a) {
    const Reach r = reachLocked(a);
    return r.ok ? r.availability : Availability::kOffline;
  }
  // Whether some agent of this engine shows another state than its listeners were last told,
  // with no state set by a session here (the other nodes' announcements changed it).
  bool announcedStateChangedLocked() const PARLEY_REQUIRES(mu_);
  // On agents_strand_: tells the listeners the announced state of every agent whose shown
  // state changed (see announcedStateChangedLocked), as AgentStateChanged{announced = true}.
  void emitAnnouncedStates();
  // Open assignments and WAITING rings of the agent, this engine's and the other nodes'.
  static int loadLocked(const Agent& a);
  // Whether a session in state `av` may be rung for `r`: ONLINE, or OCCUPIED for a transfer
  // to the agent by name.
  bool ringableLocked(Availability av, const RingRec& r) const PARLEY_REQUIRES(mu_);
  // The places of a new ring: this node's sessions when the agent's state here allows the
  // ring, and every other node that announces the agent in a state that allows it.
  void placeRingLocked(RingRec& r, const Agent& a) const PARLEY_REQUIRES(mu_);
  // Offers a WAITING ring at one more place (`node`, "" for this node's sessions).
  void addPlaceLocked(RingRec& r, const std::string& node, Effects& fx) PARLEY_REQUIRES(mu_);
  // Withdraws a WAITING ring from one place; it ends (CANCELLED) when no place is left.
  // `tell`: the place hears that the ring ended there (false for a node that is gone).
  void dropPlaceLocked(RingRec& r, const std::string& node, bool tell, Effects& fx)
      PARLEY_REQUIRES(mu_);
  // The state of `user` of `acc` at `node` ("" for this node) is now `av`: each WAITING ring
  // of the agent is offered there or withdrawn from there accordingly.
  void replaceAgentRingsLocked(const std::string& acc, const std::string& user,
                               const std::string& node, Availability av, Effects& fx)
      PARLEY_REQUIRES(mu_);
  // Withdraws the WAITING rings offered through `node` (to `user` of `acc` only, when given).
  void dropNodeLocked(const std::string& node, const std::string* acc, const std::string* user,
                      bool tell, Effects& fx) PARLEY_REQUIRES(mu_);
  // Offers the ring at one place / tells one place it ended there (no lock held).
  void offerAt(const std::string& ring_id, const Ring& ring, const std::string& node);
  void endAt(const Ring& ring, RingEndReason reason, const std::string& node);
  // A remote offer failed: `node` is dropped from the ring's places (the ring ends when it was
  // the last) and the agent is not rung through `node` again until that node announces it
  // again.
  void remoteOfferFailed(const std::string& ring_id, const std::string& node, const Error& e);
  std::shared_ptr<RemoteRings> remoteRings() const {
    MutexLock lock(remote_mu_);
    return remote_rings_;
  }

  // Performs collected effects (no lock held).
  void apply(Effects fx);
  void dispatch(const AccountId& acc) {
    Effects fx;
    fx.dispatch_accounts.insert(acc.str());
    apply(std::move(fx));
  }
  void dropSuggestion(const EntryPtr& entry, std::uint64_t epoch, const UserId& user);
  Status loadAgent(const AccountId& acc, const UserId& user,
                   std::optional<Availability> availability, Effects& fx);

  asio::thread_pool pool_;  // first: destroyed last, after every strand that refers to it

 public:
  std::optional<Strand> strandOf(const ConversationId& id) {
    MutexLock lock(entries_mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return std::nullopt;
    return it->second->strand;
  }

 private:
  Strand agents_strand_;
  store::Store& store_;
  const Clock& clock_;
  const Options options_;
  std::shared_ptr<Listeners> listeners_;

  // Open conversations and the one-open-per-consumer index.
  mutable Mutex entries_mu_;
  std::unordered_map<ConversationId, EntryPtr> entries_ PARLEY_GUARDED_BY(entries_mu_);
  std::unordered_map<std::string, ConversationId> consumers_ PARLEY_GUARDED_BY(entries_mu_);
  bool recovered_ PARLEY_GUARDED_BY(entries_mu_) = false;

  // Routing.
  mutable Mutex mu_;
  std::unordered_map<std::string, AccountRouting> accounts_ PARLEY_GUARDED_BY(mu_);
  std::unordered_map<std::string, Waiting> waiting_ PARLEY_GUARDED_BY(mu_);
  std::unordered_map<std::string, RingRec> rings_ PARLEY_GUARDED_BY(mu_);
  std::set<std::pair<TimeMs, std::string>> ring_deadlines_ PARLEY_GUARDED_BY(mu_);
  std::deque<std::pair<TimeMs, std::string>> ended_rings_ PARLEY_GUARDED_BY(mu_);
  std::set<std::tuple<TimeMs, std::string, std::uint64_t>> due_ PARLEY_GUARDED_BY(mu_);
  std::set<std::tuple<TimeMs, std::string, std::uint64_t>> suggest_deadlines_
      PARLEY_GUARDED_BY(mu_);
  std::uint64_t next_order_ PARLEY_GUARDED_BY(mu_) = 0;
  std::uint64_t next_epoch_ PARLEY_GUARDED_BY(mu_) = 0;
  // Cluster-wide routing: when each other node's announcement expires.
  std::map<std::string, TimeMs> remote_nodes_ PARLEY_GUARDED_BY(mu_);
  // Other nodes' queue heads: node -> account -> skill -> due time (applyAnnouncement).
  std::map<std::string, std::map<std::string, std::map<std::string, TimeMs>>> remote_heads_
      PARLEY_GUARDED_BY(mu_);
  // Accounts with a conversation held back for another node's earlier-due one: dispatched again
  // at every tick and announcement until none is.
  std::set<std::string> deferred_accounts_ PARLEY_GUARDED_BY(mu_);
  mutable Mutex remote_mu_;
  std::shared_ptr<RemoteRings> remote_rings_ PARLEY_GUARDED_BY(remote_mu_);

  Mutex writes_mu_;
  std::condition_variable writes_cv_;
  int writes_in_flight_ PARLEY_GUARDED_BY(writes_mu_) = 0;

  // Cluster mode: the leases this node holds, by conversation.
  Mutex leases_mu_;
  std::unordered_map<ConversationId, Lease> leases_ PARLEY_GUARDED_BY(leases_mu_);
  // recover() has run: conversations taken from now on are announced (OwnershipChanged).
  std::atomic<bool> recovered_announce_{false};
  // Options::may_hold_leases said no at the last lease round: no lease is kept, claimed or
  // taken for a new conversation.
  std::atomic<bool> leases_given_up_{false};

  std::jthread timer_;         // stopped first
  std::jthread lease_thread_;  // last: stopped first
};

// ---------------------------------------------------------------------------------------------
// Helpers

void Engine::withEntry(const AccountId& acc, const ConversationId& id,
                       std::function<void(EntryPtr)> fn, std::function<void(Error)> fail) {
  EntryPtr entry;
  {
    MutexLock lock(entries_mu_);
    auto it = entries_.find(id);
    if (it != entries_.end()) entry = it->second;
  }
  if (entry) {
    onStrand(entry, [this, entry, fn = std::move(fn), fail] {
      if (entry->unsure)
        if (auto st = resync(entry); !st) return fail(st.error());
      fn(entry);
    });
    return;
  }
  asio::post(pool_, [this, acc, id, fail = std::move(fail)] {
    auto c = store_.conversations().getConversation(acc, id);
    if (!c) return fail(c.error());
    if (c->state != ConversationState::kOpen)
      return fail(Error{ErrorCode::kConflict, "conversation " + id.str() + " is closed"});
    if (clustered())
      return fail(Error{ErrorCode::kUnavailable,
                        "conversation " + id.str() + " is owned by another node; retry"});
    fail(Error{ErrorCode::kUnavailable, "conversation " + id.str() +
                                            " is open in the store but not loaded by the engine; "
                                            "restart the server (recover) and retry"});
  });
}

Status Engine::resync(const EntryPtr& entry) {
  Conversation& c = entry->conv;
  auto unavailable = [&](const Error& e) {
    return Status(std::unexpected(
        Error{ErrorCode::kUnavailable,
              "conversation " + c.id.str() +
                  ": a write failed while the store was unavailable, and whether it was stored "
                  "cannot be read yet (" +
                  e.message + "); retry"}));
  };
  auto stored = store_.conversations().getConversation(c.account, c.id);
  if (!stored) return unavailable(stored.error());
  if (stored->next_sequence > c.next_sequence) {
    auto missing = store_.conversations().listMessages(
        c.id, c.next_sequence, static_cast<int>(stored->next_sequence - c.next_sequence));
    if (!missing) return unavailable(missing.error());
    for (auto& m : *missing) {
      if (m.sequence != c.next_sequence) break;  // only a gapless continuation is adopted
      auto added = std::make_shared<MessageAdded>();
      boost::system::error_code ec;
      boost::json::value v = boost::json::parse(m.event_json, ec);
      added->event = std::make_shared<const boost::json::object>(
          !ec && v.is_object() ? std::move(v.as_object()) : boost::json::object());
      c.next_sequence = m.sequence + 1;
      c.updated_at = std::max(c.updated_at, m.server_ts);
      spdlog::warn(
          "conversation {}: message {} was stored although its write reported a failure; "
          "announced now",
          c.id.str(), m.sequence);
      added->message = std::move(m);
      added->conversation = c;
      std::shared_ptr<const MessageAdded> shared = std::move(added);
      listeners_->emit([&](ConversationListener& l) { l.onMessageAddedShared(shared); });
    }
  }
  entry->unsure = false;
  return {};
}

Result<std::int64_t> Engine::ttrSeconds(const AccountId& acc, TtrType type,
                                        std::optional<std::int64_t> value) {
  if (type == TtrType::kCustom) {
    if (!value) return invalid("a CUSTOM TTR needs a value in seconds (>= 0)");
    if (*value < 0) return invalid("TTR value must be >= 0 seconds");
    return *value;
  }
  auto a = store_.accounts().getAccount(acc);
  if (!a) return std::unexpected(a.error());
  switch (type) {
    case TtrType::kUrgent:
      return a->ttr_urgent_s;
    case TtrType::kPrioritized:
      return a->ttr_prioritized_s;
    case TtrType::kNormal:
    case TtrType::kCustom:
      break;
  }
  return a->ttr_normal_s;
}

Status Engine::checkSkill(const AccountId& acc, const SkillId& skill) {
  if (skill.str() == kNoSkill) return {};
  auto skills = store_.accounts().listSkills(acc);
  if (!skills) return std::unexpected(skills.error());
  for (const auto& s : *skills)
    if (s.id == skill) return {};
  return invalid("skill " + skill.str() + " does not exist in account " + acc.str() +
                 "; use an existing skill id or -1");
}

Status Engine::authorizeChanges(const Actor& actor, const Conversation& c,
                                const std::vector<FieldChange>& changes) {
  using policy::Action;
  std::vector<Action> needed;
  for (const auto& ch : changes) {
    if (std::holds_alternative<CloseField>(ch)) {
      needed.push_back(Action::kCloseConversation);
    } else if (std::holds_alternative<TtrField>(ch)) {
      needed.push_back(Action::kSetTtr);
    } else if (std::holds_alternative<SkillField>(ch)) {
      needed.push_back(Action::kTransferToSkill);
    } else if (std::holds_alternative<SuggestAgentField>(ch)) {
      needed.push_back(Action::kTransferToAgent);
    } else if (const auto* f = std::get_if<AddParticipantField>(&ch)) {
      if (f->user && *f->user != actor.user) {
        needed.push_back(Action::kAddOtherParticipant);
      } else if (f->role == kManager) {
        needed.push_back(Action::kJoinAsManager);
      } else if (f->role == kReader) {
        needed.push_back(Action::kJoinAsReader);
      }
    } else if (const auto* f = std::get_if<RemoveParticipantField>(&ch)) {
      if (f->role == kAssignedAgent) {
        auto it = std::ranges::find_if(c.participants, isActiveAssigned);
        if (it != c.participants.end() && it->id != actor.user.str())
          needed.push_back(Action::kRemoveOtherParticipant);
      } else if (f->user && *f->user != actor.user) {
        needed.push_back(Action::kRemoveOtherParticipant);
      }
    }
  }
  if (needed.empty()) return {};
  auto u = store_.accounts().getUser(actor.account, actor.user);
  if (!u) {
    if (u.error().code == ErrorCode::kNotFound)
      return forbidden("user " + actor.user.str() + " no longer exists in account " +
                       actor.account.str());
    return std::unexpected(u.error());
  }
  policy::Subject who{policy::RoleSet(std::span<const store::Role>(u->roles)), u->type};
  for (Action a : needed)
    if (auto st = policy::authorize(who, a); !st) return st;
  return {};
}

// ---------------------------------------------------------------------------------------------
// Routing internals (mu_ held)

void Engine::addWaitingLocked(const EntryPtr& entry, const Conversation& c, TimeMs queued_at,
                              std::optional<UserId> suggested) {
  Waiting w;
  w.entry = entry;
  w.account = c.account;
  w.id = c.id;
  w.consumer = c.consumer;
  w.skill = c.skill;
  w.ttr_type = c.ttr_type;
  w.ttr_value_s = c.ttr_value_s;
  w.queued_at = queued_at;
  w.due_at = c.ttr_due_at;
  w.order = ++next_order_;
  w.epoch = ++next_epoch_;
  w.suggested = std::move(suggested);
  auto& ar = accounts_[c.account.str()];
  ar.queues[c.skill.str()].emplace(w.due_at, w.order, c.id.str());
  due_.emplace(w.due_at, c.id.str(), w.epoch);
  if (w.suggested)
    suggest_deadlines_.emplace(clock_.nowMs() + options_.suggest_timeout_ms, c.id.str(), w.epoch);
  for (auto& [_, a] : ar.agents) a.declined.erase(c.id.str());
  waiting_[c.id.str()] = std::move(w);
}

void Engine::endRingLocked(RingRec& r, RingState state, RingEndReason reason, Effects& fx) {
  if (r.ring.state != RingState::kWaiting) return;
  r.ring.state = state;
  r.end_reason = reason;
  r.ended_at = clock_.nowMs();
  ended_rings_.emplace_back(r.ended_at, r.ring.ring_id);
  auto& ar = accounts_[r.ring.account.str()];
  auto ag = ar.agents.find(r.ring.user.str());
  if (ag != ar.agents.end() && ag->second.waiting_rings > 0) ag->second.waiting_rings--;
  if (auto w = waiting_.find(r.ring.conversation.str()); w != waiting_.end())
    std::erase(w->second.rings, r.ring.ring_id);
  fx.ends.emplace_back(r.entry, r.ring.ring_id);
  fx.dispatch_accounts.insert(r.ring.account.str());
}

void Engine::removeWaitingLocked(const std::string& conv, Effects& fx) {
  auto it = waiting_.find(conv);
  if (it == waiting_.end()) return;
  Waiting& w = it->second;
  for (auto ring_id : std::vector<std::string>(w.rings)) {
    if (auto r = rings_.find(ring_id); r != rings_.end())
      endRingLocked(r->second, RingState::kCancelled, RingEndReason::kCancelled, fx);
  }
  auto& ar = accounts_[w.account.str()];
  auto q = ar.queues.find(w.skill.str());
  if (q != ar.queues.end()) {
    q->second.erase({w.due_at, w.order, conv});
    if (q->second.empty()) ar.queues.erase(q);
  }
  due_.erase({w.due_at, conv, w.epoch});
  fx.dispatch_accounts.insert(w.account.str());
  waiting_.erase(it);
}

void Engine::rekeyDueLocked(Waiting& w, TimeMs due) {
  auto& ar = accounts_[w.account.str()];
  auto& q = ar.queues[w.skill.str()];
  q.erase({w.due_at, w.order, w.id.str()});
  due_.erase({w.due_at, w.id.str(), w.epoch});
  w.due_at = due;
  w.overdue = false;
  q.emplace(w.due_at, w.order, w.id.str());
  due_.emplace(w.due_at, w.id.str(), w.epoch);
}

Engine::Reach Engine::reachLocked(const Agent& a) {
  if (a.loaded && a.availability != Availability::kOffline)
    return Reach{true, nullptr, a.availability, &a.skills, a.max_open};
  // Another node's session: the first (by name) that announces it ONLINE, else the first that
  // announces it in another state than OFFLINE.
  const std::pair<const std::string, Announced>* best = nullptr;
  for (const auto& kv : a.remote) {
    if (kv.second.availability == Availability::kOffline) continue;
    if (!best || (best->second.availability != Availability::kOnline &&
                  kv.second.availability == Availability::kOnline))
      best = &kv;
  }
  if (!best) return {};
  return Reach{true, &best->first, best->second.availability, &best->second.skills,
               best->second.max_open};
}

bool Engine::earlierElsewhereLocked(const std::string& acc, const Agent& a, TimeMs due,
                                    TimeMs now) const {
  const Reach reach = reachLocked(a);
  for (const auto& [node, accounts] : remote_heads_) {
    auto live = remote_nodes_.find(node);
    if (live == remote_nodes_.end() || live->second <= now) continue;
    auto heads = accounts.find(acc);
    if (heads == accounts.end()) continue;
    for (const auto& [skill, head_due] : heads->second) {
      if (head_due >= due) continue;
      if (skill == kNoSkill ||
          (reach.skills &&
           std::ranges::any_of(*reach.skills, [&](const SkillId& s) { return s.str() == skill; })))
        return true;
    }
  }
  return false;
}

int Engine::loadLocked(const Agent& a) {
  int load = static_cast<int>(a.assigned.size()) + a.waiting_rings;
  for (const auto& [_, r] : a.remote) load += r.load;
  return load;
}

bool Engine::eligibleLocked(const Agent& a, const std::string& skill, const Waiting& w,
                            Offer offer) const {
  const Reach reach = reachLocked(a);
  if (!reach.ok) return false;
  if (offer == Offer::kSuggested) {
    if (reach.availability != Availability::kOnline &&
        reach.availability != Availability::kOccupied)
      return false;
  } else {
    if (reach.availability != Availability::kOnline) return false;
    if (skill != kNoSkill &&
        std::ranges::none_of(*reach.skills, [&](const SkillId& s) { return s.str() == skill; }))
      return false;
    if (a.declined.contains(w.id.str())) return false;
  }
  if (loadLocked(a) >= reach.max_open) return false;
  for (const auto& rid : w.rings) {
    auto r = rings_.find(rid);
    if (r != rings_.end() && r->second.ring.user == a.id) return false;
  }
  return true;
}

void Engine::dispatchLocked(const std::string& acc, Effects& fx) {
  auto ait = accounts_.find(acc);
  if (ait == accounts_.end()) return;
  AccountRouting& ar = ait->second;
  if (ar.agents.empty()) return;
  const TimeMs now = clock_.nowMs();
  auto offer = [&](Waiting& w, Agent& a) PARLEY_REQUIRES(mu_) {
    std::string id = w.id.str() + "_" + a.id.str() + "_" + std::to_string(now);
    for (int n = 1; rings_.contains(id); ++n)
      id = w.id.str() + "_" + a.id.str() + "_" + std::to_string(now) + "." + std::to_string(n);
    RingRec r;
    r.ring.ring_id = id;
    r.ring.account = w.account;
    r.ring.conversation = w.id;
    r.ring.consumer = w.consumer;
    r.ring.user = a.id;
    r.ring.skill = w.skill;
    r.ring.state = RingState::kWaiting;
    r.ring.offered_at = now;
    r.ring.expires_at = now + options_.ring_expiry_ms;
    r.entry = w.entry;
    placeRingLocked(r, a);
    ring_deadlines_.emplace(r.ring.expires_at, id);
    rings_.emplace(id, std::move(r));
    a.waiting_rings++;
    a.last_offer_at = now;
    w.rings.push_back(id);
    fx.offers.emplace_back(w.entry, id);
  };
  auto serves = [](const Agent& a, const std::string& skill) {
    const Reach reach = reachLocked(a);
    return reach.ok && reach.availability == Availability::kOnline &&
           (skill == kNoSkill ||
            std::ranges::any_of(*reach.skills, [&](const SkillId& s) { return s.str() == skill; }));
  };
  auto has_room = [](const Agent& a) { return loadLocked(a) < reachLocked(a).max_open; };
  // One TTR order across owners: `a` is not rung for `w` while another node waits with an
  // earlier-due conversation `a` could take, for at most ttr_defer_ms from the first time `w`
  // was held back. Nothing to check on a node alone (no other node's heads).
  auto held_back = [&](const Agent& a, Waiting& w) PARLEY_REQUIRES(mu_) {
    if (options_.ttr_defer_ms <= 0 || remote_heads_.empty()) return false;
    if (w.deferred_since != 0 && now - w.deferred_since >= options_.ttr_defer_ms) return false;
    if (!earlierElsewhereLocked(acc, a, w.due_at, now)) return false;
    if (w.deferred_since == 0) w.deferred_since = now;
    deferred_accounts_.insert(acc);
    return true;
  };
  // Walk all queues of the account together, earliest due first, so that no skill (not even
  // the default queue) starves another; stop walking a queue when nobody can take from it.
  struct Cursor {
    const std::string* skill;
    std::set<QueueKey>::const_iterator it;
    std::set<QueueKey>::const_iterator end;
    bool done = false;
  };
  std::vector<Cursor> cursors;
  for (const auto& [skill, queue] : ar.queues)
    cursors.push_back(Cursor{&skill, queue.begin(), queue.end()});
  for (;;) {
    Cursor* cur = nullptr;
    for (auto& c : cursors)
      if (!c.done && c.it != c.end && (!cur || *c.it < *cur->it)) cur = &c;
    if (!cur) break;
    const std::string& skill = *cur->skill;
    Waiting& w = waiting_.at(std::get<2>(*cur->it));
    if (w.claimed) {
      ++cur->it;
      continue;
    }
    if (w.suggested) {
      if (w.rings.empty()) {
        auto a = ar.agents.find(w.suggested->str());
        if (a != ar.agents.end() && eligibleLocked(a->second, skill, w, Offer::kSuggested))
          offer(w, a->second);
      }
      ++cur->it;
      continue;
    }
    if (static_cast<int>(w.rings.size()) >= options_.ring_fanout) {
      ++cur->it;
      continue;
    }
    bool any_room = std::ranges::any_of(
        ar.agents, [&](const auto& kv) { return serves(kv.second, skill) && has_room(kv.second); });
    if (!any_room) {
      cur->done = true;
      continue;
    }
    while (static_cast<int>(w.rings.size()) < options_.ring_fanout) {
      Agent* best = nullptr;
      for (auto& [_, a] : ar.agents) {
        if (!serves(a, skill) || !eligibleLocked(a, skill, w, Offer::kFromQueue)) continue;
        if (held_back(a, w)) continue;
        auto load = [](const Agent& x) { return loadLocked(x); };
        if (!best || load(a) < load(*best) ||
            (load(a) == load(*best) && a.last_offer_at < best->last_offer_at))
          best = &a;
      }
      if (!best) break;
      offer(w, *best);
    }
    ++cur->it;
  }
}

void Engine::apply(Effects fx) {
  if (!fx.dispatch_accounts.empty()) {
    MutexLock lock(mu_);
    for (const auto& acc : fx.dispatch_accounts) dispatchLocked(acc, fx);
  }
  for (auto& [entry, id] : fx.offers) {
    onStrand(entry, [this, id = std::move(id)] {
      std::optional<Ring> ring;
      bool local = false;
      std::set<std::string> nodes;
      {
        MutexLock lock(mu_);
        auto it = rings_.find(id);
        if (it != rings_.end() && it->second.ring.state == RingState::kWaiting) {
          it->second.announced = true;
          ring = it->second.ring;
          local = it->second.local;
          nodes = it->second.nodes;
        }
      }
      if (!ring) return;
      if (local) offerAt(id, *ring, "");
      for (const auto& node : nodes) offerAt(id, *ring, node);
    });
  }
  for (auto& [entry, id, node] : fx.offers_at) {
    onStrand(entry, [this, id = std::move(id), node = std::move(node)] {
      std::optional<Ring> ring;
      {
        MutexLock lock(mu_);
        auto it = rings_.find(id);
        if (it != rings_.end() && it->second.ring.state == RingState::kWaiting &&
            it->second.announced &&
            (node.empty() ? it->second.local : it->second.nodes.contains(node)))
          ring = it->second.ring;
      }
      if (ring) offerAt(id, *ring, node);
    });
  }
  for (auto& [entry, id, node] : fx.withdrawals) {
    onStrand(entry, [this, id = std::move(id), node = std::move(node)] {
      std::optional<Ring> ring;
      {
        MutexLock lock(mu_);
        auto it = rings_.find(id);
        const bool back = it != rings_.end() && it->second.ring.state == RingState::kWaiting &&
                          (node.empty() ? it->second.local : it->second.nodes.contains(node));
        if (it != rings_.end() && !back) ring = it->second.ring;
      }
      if (!ring) return;
      ring->state = RingState::kCancelled;  // here: it may go on at its other places
      endAt(*ring, RingEndReason::kCancelled, node);
    });
  }
  for (auto& [entry, id] : fx.ends) {
    onStrand(entry, [this, id = std::move(id)] {
      std::optional<RingEnded> ev;
      bool local = false;
      std::set<std::string> nodes;
      {
        MutexLock lock(mu_);
        auto it = rings_.find(id);
        if (it != rings_.end() && it->second.announced && !it->second.end_announced) {
          it->second.end_announced = true;
          ev = RingEnded{it->second.ring, it->second.end_reason};
          local = it->second.local;
          nodes = it->second.nodes;
        }
      }
      if (!ev) return;
      if (local) endAt(ev->ring, ev->reason, "");
      for (const auto& node : nodes) endAt(ev->ring, ev->reason, node);
    });
  }
  for (auto& [entry, ev] : fx.overdue) {
    onStrand(entry, [this, ev = std::move(ev)] {
      listeners_->emit([&](ConversationListener& l) { l.onOverdue(ev); });
    });
  }
  for (auto& [entry, epoch, user] : fx.drop_suggestions) dropSuggestion(entry, epoch, user);
}

// Removes a SUGGESTED participant whose agent declined, timed out or was never rung, and
// lets the conversation fall back to its skill queue.
void Engine::dropSuggestion(const EntryPtr& entry, std::uint64_t epoch, const UserId& user) {
  onStrand(entry, [this, entry, epoch, user] {
    {
      MutexLock lock(mu_);
      auto w = waiting_.find(entry->conv.id.str());
      if (w == waiting_.end() || w->second.epoch != epoch || w->second.claimed ||
          w->second.suggested != user)
        return;
    }
    Conversation& c = entry->conv;
    if (c.state != ConversationState::kOpen) return;
    Conversation next = c;
    std::vector<Participant> removed;
    std::erase_if(next.participants, [&](const Participant& p) {
      bool match = p.role == kAssignedAgent && p.state == kSuggested && p.id == user.str();
      if (match) removed.push_back(p);
      return match;
    });
    next.updated_at = clock_.nowMs();
    if (!removed.empty()) {
      if (auto st = store_.conversations().saveConversation(next); !st) {
        spdlog::warn("conversation {}: dropping suggestion of agent {} failed: {}", c.id.str(),
                     user.str(), st.error().message);
        return;
      }
      c = std::move(next);
    }
    Effects fx;
    {
      MutexLock lock(mu_);
      auto w = waiting_.find(c.id.str());
      if (w != waiting_.end() && w->second.epoch == epoch) {
        w->second.suggested.reset();
        for (auto ring_id : std::vector<std::string>(w->second.rings))
          if (auto r = rings_.find(ring_id); r != rings_.end())
            endRingLocked(r->second, RingState::kCancelled, RingEndReason::kCancelled, fx);
      }
      fx.dispatch_accounts.insert(c.account.str());
    }
    if (!removed.empty()) emitChanged(ChangeKind::kParticipants, c, std::move(removed));
    apply(std::move(fx));
  });
}

// ---------------------------------------------------------------------------------------------
// Recovery

EntryPtr Engine::load(Conversation c) {
  auto entry = std::make_shared<ConvEntry>(asio::make_strand(pool_), std::move(c));
  const Conversation& cv = entry->conv;
  {
    MutexLock lock(entries_mu_);
    if (entries_.contains(cv.id)) return nullptr;  // created by this engine before recover()
    entries_[cv.id] = entry;
    consumers_[consumerKey(cv.account, cv.consumer)] = cv.id;
  }
  MutexLock lock(mu_);
  addRoutingLocked(entry);
  return entry;
}

void Engine::addRoutingLocked(const EntryPtr& entry) {
  const Conversation& cv = entry->conv;
  auto& ar = accounts_[cv.account.str()];
  bool assigned = false;
  for (const auto& p : cv.participants) {
    if (!isActiveAssigned(p)) continue;
    assigned = true;
    auto& a = ar.agents[p.id];
    a.id = UserId(p.id);
    a.assigned.insert(cv.id.str());
  }
  if (!assigned) {
    std::optional<UserId> suggested;
    if (const Participant* s = findSuggested(cv)) suggested = UserId(s->id);
    addWaitingLocked(entry, cv, cv.ttr_due_at - cv.ttr_value_s * 1000, std::move(suggested));
  }
}

void Engine::removeRoutingLocked(const Conversation& c, Effects& fx) {
  removeWaitingLocked(c.id.str(), fx);
  auto& ar = accounts_[c.account.str()];
  for (const auto& p : c.participants)
    if (isActiveAssigned(p))
      if (auto a = ar.agents.find(p.id); a != ar.agents.end()) a->second.assigned.erase(c.id.str());
  fx.dispatch_accounts.insert(c.account.str());
}

// ---------------------------------------------------------------------------------------------
// Leases (cluster mode)

Result<std::size_t> Engine::claimAndLoad() {
  auto claimed = store_.cluster()->claimLeases(options_.node, options_.lease_ms, kClaimBatch);
  if (!claimed) return std::unexpected(claimed.error());
  if (claimed->empty()) return std::size_t{0};
  // Takeovers are rare: one read of the open conversations finds the claimed ones.
  auto open = store_.conversations().listOpenConversations();
  if (!open) {
    // Claimed but not loaded: nothing drives them here and they are not in the lease table (no
    // renewal). Released at once, so the next claim (this node's or another's) takes them,
    // instead of nobody driving them until they expire.
    if (auto r = store_.cluster()->releaseLeases(options_.node, *claimed); !r)
      spdlog::warn(
          "node {}: releasing {} claimed leases it could not load failed (they expire "
          "in {} ms): {}",
          options_.node, claimed->size(), options_.lease_ms, r.error().message);
    return std::unexpected(open.error());
  }
  std::unordered_map<std::string, Lease> by_id;
  for (auto& l : *claimed) by_id.emplace(l.conversation.str(), std::move(l));
  std::size_t loaded = 0;
  for (auto& c : *open) {
    auto it = by_id.find(c.id.str());
    if (it == by_id.end()) continue;
    const Lease& l = it->second;
    c.fence = l.fence();
    EntryPtr held;
    {
      // The lease goes into the table and the entry is looked up under the table's lock, which
      // a drop's strand task holds while it checks the table and removes the entry: either the
      // entry is gone already (loaded again below) or the drop will leave it (retake).
      MutexLock leases_lock(leases_mu_);
      leases_[c.id] = l;
      MutexLock lock(entries_mu_);
      if (auto e = entries_.find(c.id); e != entries_.end()) held = e->second;
    }
    if (held) {
      // Still held here (its renewal failed and it expired before it was dropped).
      onStrand(held,
               [this, held, fresh = std::move(c)]() mutable { retake(held, std::move(fresh)); });
      continue;
    }
    const AccountId account = c.account;
    auto entry = load(std::move(c));
    if (!entry) continue;
    ++loaded;
    if (recovered_announce_) dispatch(account);
    spdlog::info("conversation {}: taken by node {} (lease epoch {})", l.conversation.str(),
                 options_.node, l.epoch);
    if (recovered_announce_) {
      onStrand(entry, [this, entry] {
        OwnershipChanged ev{entry->conv, true};
        listeners_->emit([&](ConversationListener& x) { x.onOwnershipChanged(ev); });
      });
    }
  }
  return loaded;
}

void Engine::giveUpLeases() {
  if (!leases_given_up_.exchange(true))
    spdlog::warn(
        "node {}: may not hold conversation leases now (cut off from the cluster's bus); "
        "giving up its conversations to the other nodes",
        options_.node);
  std::unordered_map<ConversationId, Lease> held;
  {
    MutexLock lock(leases_mu_);
    held.swap(leases_);
  }
  // Dropped first (no more turns or writes started here), then released: another node claims
  // the conversation at its next round instead of after the lease's expiry. A write of ours
  // still in flight carries the old fence, which the store refuses once the lease is taken.
  for (const auto& [id, _] : held) drop(id);
  if (held.empty()) return;
  std::vector<Lease> leases;
  leases.reserve(held.size());
  for (auto& [_, l] : held) leases.push_back(std::move(l));
  if (auto s = releaseLeases(leases); s) {
    spdlog::warn("node {}: gave up {} conversations (leases released)", options_.node,
                 leases.size());
  } else {
    spdlog::warn(
        "node {}: gave up {} conversations; releasing their leases failed (they expire "
        "within {} ms): {}",
        options_.node, leases.size(), options_.lease_ms, s.error().message);
  }
}

// One store call per kReleaseBatch leases (one statement each in SQLite and PostgreSQL).
Status Engine::releaseLeases(const std::vector<Lease>& leases) {
  for (std::size_t i = 0; i < leases.size(); i += kReleaseBatch) {
    const auto end =
        leases.begin() + static_cast<std::ptrdiff_t>(std::min(leases.size(), i + kReleaseBatch));
    std::vector<Lease> batch(leases.begin() + static_cast<std::ptrdiff_t>(i), end);
    if (auto s = store_.cluster()->releaseLeases(options_.node, batch); !s) return s;
  }
  return {};
}

void Engine::releaseHeldAtShutdown() {
  std::vector<Lease> leases;
  {
    MutexLock lock(leases_mu_);
    leases.reserve(leases_.size());
    for (auto& [_, l] : leases_) leases.push_back(std::move(l));
    leases_.clear();
  }
  if (leases.empty()) return;
  if (auto s = releaseLeases(leases); s) {
    spdlog::info("node {}: shutting down; released {} conversation leases", options_.node,
                 leases.size());
  } else {
    spdlog::warn(
        "node {}: shutting down; releasing {} conversation leases failed (they expire "
        "within {} ms): {}",
        options_.node, leases.size(), options_.lease_ms, s.error().message);
  }
}

void Engine::maintainLeases() {
  if (!clustered()) return;
  if (options_.may_hold_leases && !options_.may_hold_leases()) return giveUpLeases();
  if (leases_given_up_.exchange(false))
    spdlog::info("node {}: may hold conversation leases again; claiming", options_.node);
  std::vector<Lease> held;
  {
    MutexLock lock(leases_mu_);
    held.reserve(leases_.size());
    for (const auto& [_, l] : leases_) held.push_back(l);
  }
  const TimeMs now = clock_.nowMs();
  std::vector<ConversationId> lost;
  if (!held.empty()) {
    auto renewed = store_.cluster()->renewLeases(options_.node, held, options_.lease_ms);
    if (const TimeMs took = clock_.nowMs() - now; took > options_.lease_ms / 6)
      spdlog::warn("node {}: renewing {} conversation leases took {} ms (lease {} ms)",
                   options_.node, held.size(), took, options_.lease_ms);
    MutexLock lock(leases_mu_);
    if (renewed) {
      std::unordered_map<std::string, TimeMs> kept;
      for (const auto& l : *renewed) kept.emplace(l.conversation.str(), l.expires_at);
      for (const auto& l : held) {
        auto it = leases_.find(l.conversation);
        if (it == leases_.end() || it->second.epoch != l.epoch) continue;  // closed meanwhile
        if (auto k = kept.find(l.conversation.str()); k != kept.end()) {
          it->second.expires_at = k->second;
        } else {
          lost.push_back(l.conversation);
          leases_.erase(it);
        }
      }
    } else {
      // Not renewed (the store is unreachable): stop driving what another node may take
      // before the next attempt; the store refuses the old fence once it is taken anyway.
      spdlog::warn("conversation leases of node {} not renewed: {}", options_.node,
                   renewed.error().message);
      const TimeMs margin = std::max<TimeMs>(1, options_.lease_ms / 3);
      for (const auto& l : held) {
        auto it = leases_.find(l.conversation);
        if (it == leases_.end() || it->second.expires_at > now + margin) continue;
        lost.push_back(l.conversation);
        leases_.erase(it);
      }
    }
  }
  for (const auto& id : lost) drop(id);
  const TimeMs claim_start = clock_.nowMs();
  auto n = claimAndLoad();
  if (const TimeMs took = clock_.nowMs() - claim_start; took > options_.lease_ms / 6)
    spdlog::warn("node {}: claiming free conversation leases took {} ms (lease {} ms)",
                 options_.node, took, options_.lease_ms);
  if (!n)
    spdlog::warn("node {} could not claim free conversation leases: {}", options_.node,
                 n.error().message);
}

void Engine::forgetLease(const ConversationId& id) {
  if (!clustered()) return;
  MutexLock lock(leases_mu_);
  leases_.erase(id);
}

// The lease of `id` was lost: the conversation leaves this engine (entries, consumer index,
// routing) on its strand, after the operation in progress, and listeners hear it.
void Engine::drop(const ConversationId& id) {
  EntryPtr entry;
  {
    MutexLock lock(entries_mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    entry = it->second;
  }
  spdlog::warn("conversation {}: lease lost by node {}; no longer driven here", id.str(),
               options_.node);
  onStrand(entry, [this, entry] {
    const Conversation& c = entry->conv;
    {
      // Lease table, then entries (claimAndLoad's order): a lease taken again since it was lost
      // keeps its entry, which retake() fences (or replaces) after this task.
      MutexLock leases_lock(leases_mu_);
      if (leases_.contains(c.id)) {
        spdlog::info("conversation {}: lease taken again by node {}; still driven here", c.id.str(),
                     options_.node);
        return;
      }
      MutexLock lock(entries_mu_);
      auto it = entries_.find(c.id);
      if (it == entries_.end() || it->second != entry) return;
      entries_.erase(it);
      auto key = consumerKey(c.account, c.consumer);
      if (auto k = consumers_.find(key); k != consumers_.end() && k->second == c.id)
        consumers_.erase(k);
    }
    Effects fx;
    {
      MutexLock lock(mu_);
      removeRoutingLocked(c, fx);
    }
    OwnershipChanged ev{c, false};
    listeners_->emit([&](ConversationListener& l) { l.onOwnershipChanged(ev); });
    apply(std::move(fx));
  });
}

// With the epoch after the entry's, nobody held the lease in between: the entry goes on and its
// next writes carry the new epoch. With a later one another node held it and may have written
// (messages, participants, a close is not listed open): the entry is stale, and the store's
// version, read after the claim, replaces it — a new entry, the routing state rebuilt, listeners
// told it was lost and taken (the bot connector resumes from its turn marks).
void Engine::retake(const EntryPtr& held, Conversation fresh) {
  const ConversationId id = fresh.id;
  const store::Fence fence = fresh.fence;
  const std::int64_t was = held->conv.fence.epoch;
  if (was + 1 == fence.epoch) {
    held->conv.fence = fence;
    spdlog::info("conversation {}: taken again by node {} (lease epoch {})", id.str(), fence.node,
                 fence.epoch);
    return;
  }
  auto entry = std::make_shared<ConvEntry>(asio::make_strand(pool_), std::move(fresh));
  {
    MutexLock leases_lock(leases_mu_);
    auto l = leases_.find(id);
    if (l == leases_.end() || l->second.epoch != fence.epoch) return;  // lost again: its drop
    MutexLock lock(entries_mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second != held) return;
    it->second = entry;
  }
  spdlog::warn(
      "conversation {}: taken again by node {} at lease epoch {} after epoch {} held here; "
      "another node drove it meanwhile, reloaded from the store",
      id.str(), fence.node, fence.epoch, was);
  Effects fx;
  {
    MutexLock lock(mu_);
    removeRoutingLocked(held->conv, fx);
    addRoutingLocked(entry);
  }
  OwnershipChanged lost{held->conv, false};
  listeners_->emit([&](ConversationListener& x) { x.onOwnershipChanged(lost); });
  onStrand(entry, [this, entry] {
    OwnershipChanged ev{entry->conv, true};
    listeners_->emit([&](ConversationListener& x) { x.onOwnershipChanged(ev); });
  });
  apply(std::move(fx));
}

Status Engine::recover() {
  {
    MutexLock lock(entries_mu_);
    if (recovered_) return conflict("recover() was already called");
    recovered_ = true;
  }
  std::size_t loaded = 0;
  if (clustered()) {
    // Only the conversations this node holds a lease on: nobody's, or a dead node's.
    for (;;) {
      auto n = claimAndLoad();
      if (!n) return std::unexpected(n.error());
      loaded += *n;
      if (*n < kClaimBatch) break;
    }
  } else {
    auto open = store_.conversations().listOpenConversations();
    if (!open) return std::unexpected(open.error());
    for (auto& c : *open)
      if (load(std::move(c))) ++loaded;
  }
  // Agent availability does not survive a restart: sessions reconnect and set it again. A node
  // alone resets every stored state. In cluster mode the stored states are left alone: they
  // are the ones the sessions on the other nodes set (which route by their announcements, not
  // by the store), and the store does not say which node's session set one, so a reset here
  // would mark the agents of the live nodes OFFLINE.
  auto accounts = clustered() ? Result<std::vector<store::Account>>(std::vector<store::Account>{})
                              : store_.accounts().listAccounts();
  if (!accounts) return std::unexpected(accounts.error());
  for (const auto& acc : *accounts) {
    auto states = store_.accounts().listAgentStates(acc.id);
    if (!states) return std::unexpected(states.error());
    for (auto s : *states) {
      if (s.availability == Availability::kOffline) continue;
      s.availability = Availability::kOffline;
      s.updated_at = clock_.nowMs();
      if (auto st = store_.accounts().putAgentState(s); !st) return st;
    }
  }
  recovered_announce_ = true;
  spdlog::info("conversation engine recovered {} open conversations", loaded);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Requests

// The answer to a create the store refused. A Conflict there is the store's
// one-open-conversation rule (it holds across nodes: the consumer's open conversation may be
// another node's, so the check on consumers_ did not see it): answered as that check answers,
// naming the open conversation.
Error Engine::refusedCreate(const Conversation& c, Error refused) {
  if (refused.code != ErrorCode::kConflict) return refused;
  store::ConversationQuery q;
  q.consumer = c.consumer;
  q.state = ConversationState::kOpen;
  q.limit = 1;
  auto open = store_.conversations().listConversations(c.account, q);
  if (!open || open->empty() || open->front().id == c.id) return refused;
  return consumerHasOpenConversation(open->front().id).error();
}

void Engine::requestConversation(ConversationRequest req, Callback<Conversation> done) {
  asio::post(pool_, [this, req = std::move(req), done = std::move(done)]() mutable {
    if (req.account.empty()) return done(invalid("account is required"));
    if (req.consumer.empty()) return done(invalid("consumer id is required"));
    if (auto ctx = json::parseObject(req.context_json); !ctx)
      return done(invalid("conversationContext must be a JSON object"));
    SkillId skill = req.skill.value_or(SkillId(kNoSkill));
    if (skill.empty()) skill = SkillId(kNoSkill);
    if (auto acc = store_.accounts().getAccount(req.account); !acc)
      return done(std::unexpected(acc.error()));
    if (auto st = checkSkill(req.account, skill); !st) return done(std::unexpected(st.error()));
    TtrType ttr_type = req.ttr_type.value_or(TtrType::kNormal);
    auto ttr_s = ttrSeconds(req.account, ttr_type, req.ttr_value_s);
    if (!ttr_s) return done(std::unexpected(ttr_s.error()));

    const TimeMs now = clock_.nowMs();
    Conversation c;
    c.id = ConversationId(randomUuid());
    c.account = req.account;
    c.consumer = req.consumer;
    c.channel = req.channel;
    c.state = ConversationState::kOpen;
    c.skill = skill;
    c.ttr_type = ttr_type;
    c.ttr_value_s = *ttr_s;
    c.ttr_due_at = now + *ttr_s * 1000;
    c.start_ts = now;
    c.updated_at = now;
    c.next_sequence = 0;
    c.participants.push_back(
        Participant{req.consumer.str(), ParticipantRole::kConsumer, kActive, now});
    c.context_json = std::move(req.context_json);

    const std::string key = consumerKey(req.account, req.consumer);
    {
      MutexLock lock(entries_mu_);
      auto it = consumers_.find(key);
      if (it != consumers_.end()) return done(consumerHasOpenConversation(it->second));
      consumers_.emplace(key, c.id);  // reserved until saved
    }
    if (clustered()) {
      if (leases_given_up_.load()) {
        MutexLock lock(entries_mu_);
        consumers_.erase(key);
        return done(std::unexpected(
            Error{ErrorCode::kUnavailable, "node " + options_.node +
                                               " is cut off from the cluster's bus and holds no "
                                               "conversations now; retry (through another node)"}));
      }
      auto lease = store_.cluster()->acquireLease(c.id, options_.node, options_.lease_ms);
      if (!lease) {
        MutexLock lock(entries_mu_);
        consumers_.erase(key);
        return done(std::unexpected(lease.error()));
      }
      c.fence = lease->fence();
      MutexLock lock(leases_mu_);
      leases_[c.id] = *lease;
    }
    if (auto st = store_.conversations().saveConversation(c); !st) {
      if (clustered()) {
        // Nothing was stored: give the lease up so that claims drop its row.
        forgetLease(c.id);
        if (auto r = store_.cluster()->releaseLease(c.id, c.fence.node, c.fence.epoch); !r)
          spdlog::warn("conversation {}: releasing the lease of a refused create: {}", c.id.str(),
                       r.error().message);
      }
      {
        MutexLock lock(entries_mu_);
        consumers_.erase(key);
      }
      return done(std::unexpected(refusedCreate(c, st.error())));
    }
    auto entry = std::make_shared<ConvEntry>(asio::make_strand(pool_), c);
    if (!clustered()) {
      MutexLock lock(entries_mu_);
      entries_[c.id] = entry;
    } else {
      // The lease table and the entry under both locks (leases_mu_, then entries_mu_: the order
      // of the claim and the drop). The save may have outlasted the lease: a renewal that failed
      // meanwhile took the lease out of the table (its drop found no entry yet). The entry is
      // added only while the table still holds the lease this create took, so no conversation is
      // driven here without a lease the node renews.
      MutexLock leases_lock(leases_mu_);
      MutexLock lock(entries_mu_);
      auto l = leases_.find(c.id);
      if (l != leases_.end() && l->second.epoch == c.fence.epoch) {
        entries_[c.id] = entry;
      } else {
        // Stored but no longer this create's: a claim (this node's, which loaded it, or another
        // node's) drives it. The client gets the stored conversation.
        if (!entries_.contains(c.id))
          if (auto k = consumers_.find(key); k != consumers_.end() && k->second == c.id)
            consumers_.erase(k);
        spdlog::warn(
            "conversation {}: created by node {}, whose lease ran out while it was stored; "
            "driven by the node that claims it",
            c.id.str(), options_.node);
        entry.reset();
      }
    }
    if (!entry) return done(std::move(c));
    onStrand(entry, [this, entry, done = std::move(done)] {
      const Conversation& cv = entry->conv;
      emitChanged(ChangeKind::kCreated, cv, {});
      {
        MutexLock lock(mu_);
        addWaitingLocked(entry, cv, cv.start_ts, std::nullopt);
      }
      dispatch(cv.account);
      done(cv);
    });
  });
}

void Engine::publish(PublishRequest req, Callback<Published> done) {
  auto fail = [done](Error e) { done(std::unexpected(std::move(e))); };
  if (!req.idempotency_key.empty())
    if (auto st = checkIdempotencyKey(req.idempotency_key); !st)
      return done(std::unexpected(st.error()));
  AccountId acc = req.actor.account;
  ConversationId id = req.conversation;
  withEntry(
      acc, id,
      [this, req = std::move(req), done](EntryPtr entry) mutable {
        Conversation& c = entry->conv;
        if (auto st = checkOpen(c, req.actor.account); !st)
          return done(std::unexpected(st.error()));
        // The event is a value the publisher made (req.event), or its text is parsed once,
        // here, into a block of its own; either way the listeners share it
        // (MessageAdded::event). The metadata is checked, not kept: parsed into a stack arena.
        alignas(16) unsigned char arena_buf[4096];
        boost::json::monotonic_resource arena(arena_buf, sizeof arena_buf);
        boost::system::error_code jec;
        std::shared_ptr<const boost::json::object> ev = std::move(req.event);
        if (ev) {
          if (!withinDepth(*ev, kMaxEventDepth)) return done(invalid("event is nested too deep"));
          req.event_json = boost::json::serialize(*ev);
        } else {
          auto parsed = std::make_shared<boost::json::value>(
              boost::json::parse(req.event_json, jec,
                                 boost::json::make_shared_resource<boost::json::monotonic_resource>(
                                     kEventBlockBytes)));
          if (jec || !parsed->is_object()) return done(invalid("event must be a JSON object"));
          ev = std::shared_ptr<const boost::json::object>(parsed, &parsed->as_object());
        }
        auto type = json::getString(*ev, "type");
        bool persisted =
            type == "ContentEvent" || type == "RichContentEvent" || type == "AcceptStatusEvent";
        if (!persisted && type != "ChatStateEvent")
          return done(invalid("event type '" + type +
                              "' is not supported; use ContentEvent, RichContentEvent, "
                              "AcceptStatusEvent or ChatStateEvent"));
        std::optional<ChatState> chat_state;
        if (!persisted) {
          auto cs = parseChatState(json::getString(*ev, "chatState"));
          if (!cs) return done(std::unexpected(std::move(cs.error())));
          chat_state = *cs;
        }
        if (req.metadata_json.empty()) req.metadata_json = "[]";
        boost::json::value md = boost::json::parse(req.metadata_json, jec, &arena);
        if (jec || !md.is_array()) return done(invalid("metadata must be a JSON array"));

        std::optional<ParticipantRole> role;
        std::string originator_id;
        std::string originator_pid;
        switch (req.actor.kind) {
          case ActorKind::kConsumer:
            if (req.actor.consumer != c.consumer)
              return done(forbidden("consumer " + req.actor.consumer.str() +
                                    " is not a participant of conversation " + c.id.str()));
            if (req.audience != Audience::kAll)
              return done(forbidden("consumers cannot publish to AGENTS_AND_MANAGERS"));
            role = ParticipantRole::kConsumer;
            originator_id = originator_pid = c.consumer.str();
            break;
          case ActorKind::kAgent: {
            for (const auto& p : c.participants) {
              if (p.id != req.actor.user.str()) continue;
              if (isActiveAssigned(p)) {
                role = kAssignedAgent;
                break;
              }
              if (p.role == kManager) role = kManager;
            }
            if (!role)
              return done(forbidden("agent " + req.actor.user.str() +
                                    " is not the assigned agent or a manager of conversation " +
                                    c.id.str() + "; accept it or join as MANAGER first"));
            originator_id = req.actor.oldId();
            originator_pid = req.actor.pid;
            break;
          }
          case ActorKind::kSystem:
            role = ParticipantRole::kController;
            originator_id = originator_pid = req.actor.oldId();
            break;
        }
        if (persisted && type != "AcceptStatusEvent" && options_.content_check) {
          auto checked = options_.content_check(
              ContentToCheck{req.actor.account, c.channel, req.actor.kind, *ev});
          if (!checked) return done(std::unexpected(std::move(checked.error())));
        }
        const TimeMs now = clock_.nowMs();
        if (!persisted) {
          ChatStateChanged cs{
              std::move(originator_id),  std::move(originator_pid),    *role, *chat_state,
              std::move(req.event_json), std::move(req.metadata_json), now,   c};
          listeners_->emit([&](ConversationListener& l) { l.onChatState(cs); });
          return done(Published{std::nullopt, now});
        }
        const TimeMs prev_updated = c.updated_at;
        // One snapshot of the message and the conversation after it: the store writes it and
        // the listeners get it (shared, not copied) once it has committed.
        auto added = std::make_shared<MessageAdded>();
        store::Message& m = added->message;
        m.conversation = c.id;
        m.sequence = c.next_sequence;
        m.server_ts = now;
        m.originator_id = std::move(originator_id);
        m.originator_pid = std::move(originator_pid);
        m.originator_role = *role;
        m.audience = req.audience;
        m.event_json = std::move(req.event_json);
        m.metadata_json = std::move(req.metadata_json);
        m.turn = std::move(req.turn);
        m.idempotency_key = std::move(req.idempotency_key);
        added->event = std::move(ev);
        c.next_sequence++;
        c.updated_at = now;
        added->conversation = c;
        // Group-committed with other conversations' writes; this conversation's next
        // operations wait (held) until it has committed or failed.
        entry->busy = true;
        writeStarted();
        auto pending = std::make_shared<PendingAppend>(*this);
        pending->entry = entry;
        pending->prev_updated = prev_updated;
        pending->now = now;
        pending->done = done;
        pending->added = added;
        std::shared_ptr<const store::Conversation> conv_snap(added, &added->conversation);
        std::shared_ptr<const store::Message> msg_snap(added, &added->message);
        store_.conversations().appendMessageAsync(
            std::move(conv_snap), std::move(msg_snap), [pending](Status st) mutable {
              // Runs on the store's writer thread. `pending` stays held here until the store drops
              // this callback, after `defer` has returned: the strand copy `defer` makes lives on
              // this thread until then, so the write must not end (see PendingAppend) before it.
              const Strand& strand = pending->entry->strand;
              asio::defer(strand, [p = pending, st = std::move(st)]() mutable {
                Engine& self = p->engine;
                EntryPtr e = p->entry;
                Conversation& cv = e->conv;
                if (!st) {
                  cv.next_sequence--;
                  cv.updated_at = p->prev_updated;
                  if (st.error().code == ErrorCode::kUnavailable) e->unsure = true;
                  const store::Message& m = p->added->message;
                  if (st.error().code == ErrorCode::kConflict && !m.idempotency_key.empty()) {
                    // A resend of a stored publish (the key's message is there): answered as
                    // the first was, with nothing stored, announced or run.
                    auto first = self.store_.conversations().findMessageByKey(
                        cv.id, m.originator_id, m.idempotency_key);
                    if (first && *first) {
                      p->done(Published{(*first)->sequence, (*first)->server_ts});
                      return release(e);
                    }
                  }
                  p->done(std::unexpected(st.error()));
                } else {
                  std::shared_ptr<const MessageAdded> added = std::move(p->added);
                  self.listeners_->emit(
                      [&](ConversationListener& l) { l.onMessageAddedShared(added); });
                  p->done(Published{added->message.sequence, p->now});
                }
                release(e);
              });
            });
      },
      std::move(fail));
}

void Engine::updateConversation(Actor actor, ConversationId id, std::vector<FieldChange> changes,
                                Callback<Conversation> done) {
  auto fail = [done](Error e) { done(std::unexpected(std::move(e))); };
  AccountId acc = actor.account;
  withEntry(
      acc, id,
      [this, actor = std::move(actor), changes = std::move(changes), done](EntryPtr entry) {
        Conversation& c = entry->conv;
        if (auto st = checkOpen(c, actor.account); !st) return done(std::unexpected(st.error()));
        if (changes.empty()) return done(invalid("no conversation field to change"));

        // Who may do what.
        bool is_participant = false;
        if (actor.kind == ActorKind::kConsumer) {
          if (actor.consumer != c.consumer)
            return done(forbidden("consumer " + actor.consumer.str() +
                                  " is not a participant of conversation " + c.id.str()));
          for (const auto& ch : changes)
            if (!std::holds_alternative<CloseField>(ch) && !std::holds_alternative<TtrField>(ch))
              return done(forbidden("consumers may only close a conversation or change its TTR"));
        } else if (actor.kind == ActorKind::kAgent) {
          // The roles each change needs (docs/authorization.md), with the actor's current
          // roles from the store; then the participant rules.
          if (auto st = authorizeChanges(actor, c, changes); !st)
            return done(std::unexpected(st.error()));
          for (const auto& p : c.participants)
            if (p.id == actor.user.str() && (isActiveAssigned(p) || p.role == kManager))
              is_participant = true;
          // A non-participant may only join, or leave an entry of its own (a READER).
          if (!is_participant)
            for (const auto& ch : changes) {
              if (std::holds_alternative<AddParticipantField>(ch)) continue;
              if (const auto* f = std::get_if<RemoveParticipantField>(&ch);
                  f && (f->role == kManager || f->role == kReader) &&
                  (!f->user || *f->user == actor.user))
                continue;
              return done(forbidden("agent " + actor.user.str() +
                                    " is not the assigned agent or a manager of conversation " +
                                    c.id.str()));
            }
        }

        const TimeMs now = clock_.nowMs();
        Conversation next = c;
        std::vector<Participant> removed;
        bool closing = false;
        bool ttr_changed = false;
        bool skill_changed = false;
        bool participants_changed = false;
        bool agent_removed = false;
        std::optional<UserId> suggested;
        for (const auto& ch : changes) {
          if (const auto* f = std::get_if<CloseField>(&ch)) {
            CloseReason reason = CloseReason::kAgent;
            if (f->reason) {
              reason = *f->reason;
            } else if (actor.kind == ActorKind::kConsumer) {
              reason = CloseReason::kConsumer;
            } else if (actor.kind == ActorKind::kSystem) {
              reason = CloseReason::kSystem;
            } else {
              auto u = store_.accounts().getUser(actor.account, actor.user);
              reason =
                  u && u->type == store::UserType::kBot ? CloseReason::kBot : CloseReason::kAgent;
            }
            closing = true;
            next.close_reason = reason;
          } else if (const auto* f = std::get_if<TtrField>(&ch)) {
            auto s = ttrSeconds(c.account, f->type, f->value_s);
            if (!s) return done(std::unexpected(s.error()));
            next.ttr_type = f->type;
            next.ttr_value_s = *s;
            ttr_changed = true;
          } else if (const auto* f = std::get_if<SkillField>(&ch)) {
            SkillId skill = f->skill.empty() ? SkillId(kNoSkill) : f->skill;
            if (auto st = checkSkill(c.account, skill); !st)
              return done(std::unexpected(st.error()));
            if (skill != next.skill) skill_changed = true;
            next.skill = skill;
          } else if (const auto* f = std::get_if<AddParticipantField>(&ch)) {
            if (f->role != kManager && f->role != kReader)
              return done(invalid(
                  std::string("participants can be added only as MANAGER or READER, not '") +
                  participantRoleName(f->role) + "'"));
            UserId user = f->user.value_or(actor.user);
            if (user.empty()) return done(invalid("a user id is needed to add a participant"));
            if (actor.kind == ActorKind::kAgent && !is_participant && user != actor.user)
              return done(forbidden("agent " + actor.user.str() +
                                    " may add only itself to conversation " + c.id.str()));
            if (auto u = store_.accounts().getUser(c.account, user); !u)
              return done(std::unexpected(u.error()));
            bool exists = std::ranges::any_of(next.participants, [&](const Participant& p) {
              return p.id == user.str() && p.role == f->role;
            });
            if (!exists) {
              next.participants.push_back(Participant{user.str(), f->role, kActive, now});
              participants_changed = true;
            }
          } else if (const auto* f = std::get_if<RemoveParticipantField>(&ch)) {
            if (f->role == kAssignedAgent) {
              auto it = std::ranges::find_if(next.participants, isActiveAssigned);
              if (it == next.participants.end())
                return done(invalid("conversation " + c.id.str() + " has no assigned agent"));
              // node-agent-sdk adds the caller's own userId to every REMOVE entry, so a manager
              // (or the system) naming itself means "whoever is assigned".
              if (f->user && f->user->str() != it->id && *f->user != actor.user)
                return done(invalid("agent " + f->user->str() +
                                    " is not the assigned agent of conversation " + c.id.str()));
              removed.push_back(*it);
              next.participants.erase(it);
              agent_removed = true;
              participants_changed = true;
            } else if (f->role == kManager || f->role == kReader) {
              UserId user = f->user.value_or(actor.user);
              auto it = std::ranges::find_if(next.participants, [&](const Participant& p) {
                return p.id == user.str() && p.role == f->role;
              });
              if (it == next.participants.end())
                return done(invalid("user " + user.str() + " is not a " +
                                    participantRoleName(f->role) + " of conversation " +
                                    c.id.str()));
              removed.push_back(*it);
              next.participants.erase(it);
              participants_changed = true;
            } else {
              return done(invalid(std::string("participants can be removed only as ASSIGNED_AGENT, "
                                              "MANAGER or READER, not '") +
                                  participantRoleName(f->role) + "'"));
            }
          } else if (const auto* f = std::get_if<SuggestAgentField>(&ch)) {
            if (f->user.empty()) return done(invalid("SUGGEST needs the agent's userId"));
            if (auto u = store_.accounts().getUser(c.account, f->user); !u)
              return done(std::unexpected(u.error()));
            std::erase_if(next.participants, [&](const Participant& p) {
              bool match = p.role == kAssignedAgent && p.state == kSuggested;
              if (match) removed.push_back(p);
              return match;
            });
            next.participants.push_back(
                Participant{f->user.str(), kAssignedAgent, kSuggested, now});
            suggested = f->user;
            participants_changed = true;
          }
        }
        const bool has_agent = hasActiveAssigned(next);
        if (suggested && has_agent)
          return done(invalid("transfer to agent " + suggested->str() +
                              " needs REMOVE ASSIGNED_AGENT in the same request"));
        const bool requeue =
            !closing && !has_agent && (agent_removed || skill_changed || suggested);
        TimeMs queued_at = now;
        if (!requeue && ttr_changed) {
          MutexLock lock(mu_);
          if (auto w = waiting_.find(c.id.str()); w != waiting_.end())
            queued_at = w->second.queued_at;
        }
        if (requeue || ttr_changed) next.ttr_due_at = queued_at + next.ttr_value_s * 1000;
        if (closing) {
          next.state = ConversationState::kClose;
          next.end_ts = now;
        }
        next.updated_at = now;
        if (auto st = store_.conversations().saveConversation(next); !st) {
          if (st.error().code == ErrorCode::kUnavailable) entry->unsure = true;
          return done(std::unexpected(st.error()));
        }
        c = std::move(next);

        Effects fx;
        {
          MutexLock lock(mu_);
          auto& ar = accounts_[c.account.str()];
          for (const auto& p : removed)
            if (p.role == kAssignedAgent && p.state == kActive)
              if (auto a = ar.agents.find(p.id); a != ar.agents.end()) {
                a->second.assigned.erase(c.id.str());
                fx.dispatch_accounts.insert(c.account.str());
              }
          if (closing) {
            removeWaitingLocked(c.id.str(), fx);
            for (const auto& p : c.participants)
              if (isActiveAssigned(p))
                if (auto a = ar.agents.find(p.id); a != ar.agents.end())
                  a->second.assigned.erase(c.id.str());
            fx.dispatch_accounts.insert(c.account.str());
          } else if (requeue) {
            removeWaitingLocked(c.id.str(), fx);
            addWaitingLocked(entry, c, queued_at, suggested);
            fx.dispatch_accounts.insert(c.account.str());
          } else if (ttr_changed) {
            if (auto w = waiting_.find(c.id.str()); w != waiting_.end()) {
              w->second.ttr_type = c.ttr_type;
              w->second.ttr_value_s = c.ttr_value_s;
              rekeyDueLocked(w->second, c.ttr_due_at);
            }
          } else if (skill_changed) {
            // Skill changed while an agent stays assigned: nothing to route.
          }
        }
        if (closing) forgetLease(c.id);
        if (closing) {
          MutexLock lock(entries_mu_);
          entries_.erase(c.id);
          auto key = consumerKey(c.account, c.consumer);
          if (auto it = consumers_.find(key); it != consumers_.end() && it->second == c.id)
            consumers_.erase(it);
        }
        ChangeKind kind = closing                ? ChangeKind::kClosed
                          : skill_changed        ? ChangeKind::kSkill
                          : participants_changed ? ChangeKind::kParticipants
                          : ttr_changed          ? ChangeKind::kTtr
                                                 : ChangeKind::kUpdated;
        emitChanged(kind, c, std::move(removed));
        apply(std::move(fx));
        done(c);
      },
      std::move(fail));
}

// ---------------------------------------------------------------------------------------------
// Agents and rings

Status Engine::loadAgent(const AccountId& acc, const UserId& user,
                         std::optional<Availability> availability, Effects& fx) {
  auto u = store_.accounts().getUser(acc, user);
  if (!u) return std::unexpected(u.error());
  MutexLock lock(mu_);
  auto& ar = accounts_[acc.str()];
  Agent& a = ar.agents[user.str()];
  a.id = user;
  a.loaded = true;
  a.type = u->type;
  a.skills = u->skills;
  a.max_open = u->max_open_conversations;
  if (availability) {
    a.availability = *availability;
    a.declined.clear();
    // Rings of an agent who left ONLINE are withdrawn from its sessions here (OCCUPIED keeps
    // transfer rings) and end unless the agent's sessions on another node have them (that
    // node's state rules those); one who came back ONLINE is rung here for the rings its
    // sessions on other nodes have.
    replaceAgentRingsLocked(acc.str(), user.str(), "", a.availability, fx);
  }
  fx.dispatch_accounts.insert(acc.str());
  return {};
}

void Engine::setAgentState(AccountId acc, UserId user, Availability availability,
                           Callback<store::AgentState> done) {
  asio::post(agents_strand_, [this, acc = std::move(acc), user = std::move(user), availability,
                              done = std::move(done)] {
    if (auto u = store_.accounts().getUser(acc, user); !u) return done(std::unexpected(u.error()));
    store::AgentState s{acc, user, availability, clock_.nowMs()};
    if (auto st = store_.accounts().putAgentState(s); !st) return done(std::unexpected(st.error()));
    Effects fx;
    if (auto st = loadAgent(acc, user, availability, fx); !st)
      return done(std::unexpected(st.error()));
    bool announced_elsewhere = false;
    {
      MutexLock lock(mu_);
      Agent& a = accounts_[acc.str()].agents[user.str()];
      a.shown = availability;
      announced_elsewhere = !a.remote.empty();
    }
    AgentStateChanged ev{s};
    listeners_->emit([&](ConversationListener& l) { l.onAgentStateChanged(ev); });
    // Gone OFFLINE here while another node announces the agent: its sessions here show that.
    if (availability == Availability::kOffline && announced_elsewhere) emitAnnouncedStates();
    apply(std::move(fx));
    done(s);
  });
}

void Engine::refreshAgent(AccountId acc, UserId user, Callback<void> done) {
  asio::post(agents_strand_,
             [this, acc = std::move(acc), user = std::move(user), done = std::move(done)] {
               Effects fx;
               if (auto st = loadAgent(acc, user, std::nullopt, fx); !st)
                 return done(std::unexpected(st.error()));
               apply(std::move(fx));
               done({});
             });
}

void Engine::acceptRing(Actor agent, std::string ring_id, Callback<Conversation> done) {
  EntryPtr entry;
  EntryPtr retry;
  std::uint64_t epoch = 0;
  {
    MutexLock lock(mu_);
    auto it = rings_.find(ring_id);
    if (it == rings_.end())
      return completeOnPool<Conversation>(std::move(done),
                                          notFound("ring " + ring_id + " does not exist"));
    RingRec& r = it->second;
    if (agent.kind != ActorKind::kAgent || r.ring.account != agent.account ||
        r.ring.user != agent.user)
      return completeOnPool<Conversation>(
          std::move(done), forbidden("ring " + ring_id + " was offered to another agent"));
    if (r.ring.state == RingState::kAccepted) {
      retry = r.entry;
    } else {
      if (r.ring.state != RingState::kWaiting)
        return completeOnPool<Conversation>(
            std::move(done),
            conflict(std::string("ring ") + ring_id + " is " + ringStateName(r.ring.state)));
      auto w = waiting_.find(r.ring.conversation.str());
      if (w == waiting_.end() || w->second.claimed)
        return completeOnPool<Conversation>(std::move(done),
                                            conflict("conversation " + r.ring.conversation.str() +
                                                     " was already accepted by another agent"));
      Effects ignored;  // the accepted ring's end is announced after the commit
      endRingLocked(r, RingState::kAccepted, RingEndReason::kAccepted, ignored);
      w->second.claimed = true;
      epoch = w->second.epoch;
      entry = r.entry;
    }
  }
  if (retry) {
    // The agent accepts its ring again: a retry whose first answer was lost. Answered on the
    // conversation's strand, after the first accept's write: the conversation while the agent
    // holds it (nothing changes), else a Conflict.
    return onStrand(retry, [entry = retry, agent = std::move(agent), ring_id = std::move(ring_id),
                            done = std::move(done)] {
      const Conversation& c = entry->conv;
      bool holds = false;
      if (checkOpen(c, agent.account))
        for (const auto& p : c.participants)
          holds =
              holds || (p.role == kAssignedAgent && p.state == kActive && p.id == agent.user.str());
      if (holds) return done(c);
      done(conflict("ring " + ring_id + " is ACCEPTED, and conversation " + c.id.str() +
                    " is no longer assigned to its agent"));
    });
  }
  onStrand(entry, [this, entry, epoch, agent = std::move(agent), ring_id = std::move(ring_id),
                   done = std::move(done)] {
    Conversation& c = entry->conv;
    auto unclaim = [&](Error e) {
      Effects fx;
      {
        MutexLock lock(mu_);
        auto w = waiting_.find(c.id.str());
        if (w != waiting_.end() && w->second.epoch == epoch) w->second.claimed = false;
        fx.dispatch_accounts.insert(c.account.str());
      }
      apply(std::move(fx));
      done(std::unexpected(std::move(e)));
    };
    {
      MutexLock lock(mu_);
      auto w = waiting_.find(c.id.str());
      if (w == waiting_.end() || w->second.epoch != epoch)
        return done(conflict("conversation " + c.id.str() +
                             " was transferred or closed before the ring was accepted"));
    }
    if (auto st = checkOpen(c, agent.account); !st) return unclaim(st.error());
    if (hasActiveAssigned(c))
      return unclaim(Error{ErrorCode::kConflict,
                           "conversation " + c.id.str() + " already has an assigned agent"});
    const TimeMs now = clock_.nowMs();
    Conversation next = c;
    bool activated = false;
    for (auto& p : next.participants)
      if (p.role == kAssignedAgent && p.state == kSuggested && p.id == agent.user.str()) {
        p.state = kActive;
        p.joined_at = now;
        activated = true;
      }
    std::vector<Participant> removed;
    std::erase_if(next.participants, [&](const Participant& p) {
      bool other = p.role == kAssignedAgent && p.state == kSuggested && p.id != agent.user.str();
      if (other) removed.push_back(p);
      return other;
    });
    if (!activated)
      next.participants.push_back(Participant{agent.user.str(), kAssignedAgent, kActive, now});
    next.updated_at = now;
    if (auto st = store_.conversations().saveConversation(next); !st) return unclaim(st.error());
    c = std::move(next);
    Effects fx;
    {
      MutexLock lock(mu_);
      removeWaitingLocked(c.id.str(), fx);
      auto& ar = accounts_[c.account.str()];
      Agent& a = ar.agents[agent.user.str()];
      a.id = agent.user;
      a.assigned.insert(c.id.str());
      fx.ends.emplace_back(entry, ring_id);
    }
    emitChanged(ChangeKind::kParticipants, c, std::move(removed));
    apply(std::move(fx));
    done(c);
  });
}

void Engine::rejectRing(Actor agent, std::string ring_id, Callback<void> done) {
  Effects fx;
  {
    MutexLock lock(mu_);
    auto it = rings_.find(ring_id);
    if (it == rings_.end())
      return completeOnPool<void>(std::move(done), notFound("ring " + ring_id + " does not exist"));
    RingRec& r = it->second;
    if (agent.kind != ActorKind::kAgent || r.ring.account != agent.account ||
        r.ring.user != agent.user)
      return completeOnPool<void>(std::move(done),
                                  forbidden("ring " + ring_id + " was offered to another agent"));
    if (r.ring.state != RingState::kWaiting)
      return completeOnPool<void>(std::move(done), conflict(std::string("ring ") + ring_id +
                                                            " is " + ringStateName(r.ring.state)));
    endRingLocked(r, RingState::kRejected, RingEndReason::kRejected, fx);
    auto& ar = accounts_[r.ring.account.str()];
    if (auto a = ar.agents.find(r.ring.user.str()); a != ar.agents.end())
      a->second.declined.insert(r.ring.conversation.str());
    auto w = waiting_.find(r.ring.conversation.str());
    if (w != waiting_.end() && w->second.suggested == r.ring.user)
      fx.drop_suggestions.emplace_back(r.entry, w->second.epoch, r.ring.user);
  }
  apply(std::move(fx));
  completeOnPool<void>(std::move(done), {});
}

void Engine::tick() {
  const TimeMs now = clock_.nowMs();
  Effects fx;
  {
    MutexLock lock(mu_);
    // Conversations held back for another node's earlier-due one: rung once that one is taken
    // or their time to be held back is over (dispatching holds them back again otherwise).
    fx.dispatch_accounts.merge(std::exchange(deferred_accounts_, {}));
    while (!ring_deadlines_.empty() && ring_deadlines_.begin()->first <= now) {
      std::string id = ring_deadlines_.begin()->second;
      ring_deadlines_.erase(ring_deadlines_.begin());
      auto it = rings_.find(id);
      if (it == rings_.end() || it->second.ring.state != RingState::kWaiting) continue;
      RingRec& r = it->second;
      endRingLocked(r, RingState::kExpired, RingEndReason::kExpired, fx);
      auto& ar = accounts_[r.ring.account.str()];
      if (auto a = ar.agents.find(r.ring.user.str()); a != ar.agents.end())
        a->second.declined.insert(r.ring.conversation.str());
      auto w = waiting_.find(r.ring.conversation.str());
      if (w != waiting_.end() && w->second.suggested == r.ring.user)
        fx.drop_suggestions.emplace_back(r.entry, w->second.epoch, r.ring.user);
    }
    while (!due_.empty() && std::get<0>(*due_.begin()) < now) {
      auto [due, conv, epoch] = *due_.begin();
      due_.erase(due_.begin());
      auto w = waiting_.find(conv);
      if (w == waiting_.end() || w->second.epoch != epoch || w->second.due_at != due ||
          w->second.overdue)
        continue;
      w->second.overdue = true;
      fx.overdue.emplace_back(w->second.entry, ConversationOverdue{w->second.account, w->second.id,
                                                                   w->second.skill, due});
    }
    while (!suggest_deadlines_.empty() && std::get<0>(*suggest_deadlines_.begin()) <= now) {
      auto [deadline, conv, epoch] = *suggest_deadlines_.begin();
      suggest_deadlines_.erase(suggest_deadlines_.begin());
      auto w = waiting_.find(conv);
      if (w == waiting_.end() || w->second.epoch != epoch || !w->second.suggested ||
          w->second.claimed || !w->second.rings.empty())
        continue;  // a ring in progress ends by itself
      fx.drop_suggestions.emplace_back(w->second.entry, epoch, *w->second.suggested);
    }
    // Nodes that stopped announcing (dead, or cut off): their agents are forgotten and the
    // rings offered through them end, so their conversations are offered again.
    for (auto n = remote_nodes_.begin(); n != remote_nodes_.end();) {
      if (n->second > now) {
        ++n;
        continue;
      }
      const std::string node = n->first;
      n = remote_nodes_.erase(n);
      remote_heads_.erase(node);
      spdlog::warn("cluster routing: node {} stopped announcing its agents; forgetting them", node);
      dropNodeLocked(node, nullptr, nullptr, /*tell=*/false, fx);
      for (auto& [acc, ar] : accounts_)
        for (auto& [_, a] : ar.agents)
          if (a.remote.erase(node) > 0) fx.dispatch_accounts.insert(acc);
      if (announcedStateChangedLocked())
        asio::post(agents_strand_, [this] { emitAnnouncedStates(); });
    }
    while (!ended_rings_.empty() && ended_rings_.front().first + options_.ring_expiry_ms < now) {
      auto it = rings_.find(ended_rings_.front().second);
      if (it != rings_.end() && it->second.announced && !it->second.end_announced) break;
      if (it != rings_.end()) rings_.erase(it);
      ended_rings_.pop_front();
    }
  }
  apply(std::move(fx));
}

// ---------------------------------------------------------------------------------------------
// Cluster-wide routing

bool Engine::ringableLocked(Availability av, const RingRec& r) const {
  if (av == Availability::kOnline) return true;
  if (av != Availability::kOccupied) return false;
  auto w = waiting_.find(r.ring.conversation.str());
  return w != waiting_.end() && w->second.suggested == r.ring.user;
}

void Engine::placeRingLocked(RingRec& r, const Agent& a) const {
  r.local = a.loaded && ringableLocked(a.availability, r);
  for (const auto& [node, x] : a.remote)
    if (ringableLocked(x.availability, r)) r.nodes.insert(node);
  // The place the agent was found eligible through is always one of them.
  if (const Reach reach = reachLocked(a); reach.node)
    r.nodes.insert(*reach.node);
  else if (reach.ok)
    r.local = true;
}

void Engine::addPlaceLocked(RingRec& r, const std::string& node, Effects& fx) {
  if (r.ring.state != RingState::kWaiting) return;
  if (node.empty()) {
    if (r.local) return;
    r.local = true;
  } else if (!r.nodes.insert(node).second) {
    return;
  }
  // Not offered yet: the first offer goes to every place it has by then.
  if (r.announced) fx.offers_at.emplace_back(r.entry, r.ring.ring_id, node);
}

void Engine::dropPlaceLocked(RingRec& r, const std::string& node, bool tell, Effects& fx) {
  if (r.ring.state != RingState::kWaiting) return;
  if (node.empty()) {
    if (!r.local) return;
    r.local = false;
  } else if (r.nodes.erase(node) == 0) {
    return;
  }
  if (r.announced && tell) fx.withdrawals.emplace_back(r.entry, r.ring.ring_id, node);
  if (!r.local && r.nodes.empty())
    endRingLocked(r, RingState::kCancelled, RingEndReason::kCancelled, fx);
}

void Engine::replaceAgentRingsLocked(const std::string& acc, const std::string& user,
                                     const std::string& node, Availability av, Effects& fx) {
  for (auto& [_, r] : rings_) {
    if (r.ring.state != RingState::kWaiting || r.ring.account.str() != acc ||
        r.ring.user.str() != user)
      continue;
    if (ringableLocked(av, r))
      addPlaceLocked(r, node, fx);
    else
      dropPlaceLocked(r, node, /*tell=*/true, fx);
  }
}

void Engine::dropNodeLocked(const std::string& node, const std::string* acc,
                            const std::string* user, bool tell, Effects& fx) {
  for (auto& [_, r] : rings_) {
    if (r.ring.state != RingState::kWaiting || !r.nodes.contains(node)) continue;
    if (acc && r.ring.account.str() != *acc) continue;
    if (user && r.ring.user.str() != *user) continue;
    dropPlaceLocked(r, node, tell, fx);
  }
}

void Engine::offerAt(const std::string& ring_id, const Ring& ring, const std::string& node) {
  if (node.empty()) {
    listeners_->emit([&](ConversationListener& l) { l.onRingOffered(RingOffered{ring}); });
    return;
  }
  auto remote = remoteRings();
  if (!remote) {
    remoteOfferFailed(ring_id, node, Error{ErrorCode::kUnavailable, "no cluster routing"});
    return;
  }
  remote->offer(node, ring, [this, ring_id, node](Status st) {
    if (!st) remoteOfferFailed(ring_id, node, st.error());
  });
}

void Engine::endAt(const Ring& ring, RingEndReason reason, const std::string& node) {
  if (node.empty()) {
    listeners_->emit([&](ConversationListener& l) { l.onRingEnded(RingEnded{ring, reason}); });
  } else if (auto remote = remoteRings()) {
    remote->ended(node, ring, reason);
  }
}

void Engine::remoteOfferFailed(const std::string& ring_id, const std::string& node,
                               const Error& e) {
  Effects fx;
  {
    MutexLock lock(mu_);
    auto it = rings_.find(ring_id);
    if (it == rings_.end() || it->second.ring.state != RingState::kWaiting ||
        !it->second.nodes.contains(node))
      return;
    RingRec& r = it->second;
    spdlog::warn("ring {}: offering it to agent {} on node {} failed: {}", ring_id,
                 r.ring.user.str(), node, e.message);
    // A refusal or no responders: nothing reached the agent there. No answer in time: it may
    // have, so that node is told the ring ended there.
    dropPlaceLocked(r, node, /*tell=*/e.code == ErrorCode::kTimeout, fx);
    auto& ar = accounts_[r.ring.account.str()];
    if (auto a = ar.agents.find(r.ring.user.str()); a != ar.agents.end())
      a->second.remote.erase(node);
  }
  apply(std::move(fx));
}

std::vector<AnnouncedAgent> Engine::localAgents() const {
  std::vector<AnnouncedAgent> out;
  MutexLock lock(mu_);
  for (const auto& [acc, ar] : accounts_) {
    for (const auto& [_, a] : ar.agents) {
      const bool here = a.loaded && a.availability != Availability::kOffline;
      const int load = static_cast<int>(a.assigned.size()) + a.waiting_rings;
      if (a.loaded && a.type == store::UserType::kBot) continue;
      if (!here && load == 0) continue;
      AnnouncedAgent x;
      x.account = AccountId(acc);
      x.user = a.id;
      x.availability = here ? a.availability : Availability::kOffline;
      x.type = a.type;
      x.skills = a.skills;
      x.max_open_conversations = a.max_open;
      x.load = load;
      out.push_back(std::move(x));
    }
  }
  return out;
}

std::vector<AnnouncedQueue> Engine::localQueueHeads(std::size_t max) const {
  std::vector<AnnouncedQueue> out;
  MutexLock lock(mu_);
  for (const auto& [acc, ar] : accounts_) {
    for (const auto& [skill, queue] : ar.queues) {
      for (const auto& key : queue) {
        const Waiting& w = waiting_.at(std::get<2>(key));
        if (w.claimed || w.suggested || !w.rings.empty()) continue;
        out.push_back(AnnouncedQueue{AccountId(acc), SkillId(skill), w.due_at});
        break;
      }
    }
  }
  if (out.size() > max) {
    std::ranges::nth_element(out, out.begin() + static_cast<std::ptrdiff_t>(max), {},
                             &AnnouncedQueue::due_at);
    out.resize(max);
  }
  return out;
}

void Engine::applyAnnouncement(const std::string& node, std::vector<AnnouncedAgent> agents,
                               TimeMs ttl_ms, std::vector<AnnouncedQueue> queues) {
  Effects fx;
  {
    MutexLock lock(mu_);
    remote_nodes_[node] = clock_.nowMs() + ttl_ms;
    std::map<std::string, std::map<std::string, TimeMs>> heads;
    for (const auto& q : queues) {
      TimeMs& due = heads[q.account.str()].try_emplace(q.skill.str(), q.due_at).first->second;
      due = std::min(due, q.due_at);
    }
    if (heads.empty()) {
      remote_heads_.erase(node);
    } else {
      remote_heads_[node] = std::move(heads);
    }
    // What held a conversation back may have changed (the earlier one was taken).
    fx.dispatch_accounts.merge(std::exchange(deferred_accounts_, {}));
    std::set<std::pair<std::string, std::string>> now_announced;
    for (const auto& x : agents) now_announced.emplace(x.account.str(), x.user.str());
    // Agents the node no longer announces: gone from there.
    for (auto& [acc, ar] : accounts_) {
      for (auto& [user, a] : ar.agents) {
        if (!a.remote.contains(node) || now_announced.contains({acc, user})) continue;
        a.remote.erase(node);
        dropNodeLocked(node, &acc, &user, /*tell=*/true, fx);
        fx.dispatch_accounts.insert(acc);
      }
    }
    for (auto& x : agents) {
      if (x.type == store::UserType::kBot) continue;
      const std::string acc = x.account.str();
      const std::string user = x.user.str();
      Agent& a = accounts_[acc].agents[user];
      a.id = x.user;
      Announced next{x.availability, std::move(x.skills), x.max_open_conversations, x.load};
      auto it = a.remote.find(node);
      const bool is_new = it == a.remote.end();
      const Availability before = is_new ? Availability::kOffline : it->second.availability;
      if (!is_new && before == next.availability && it->second.load == next.load &&
          it->second.max_open == next.max_open && it->second.skills == next.skills)
        continue;  // the periodic repeat of what it said
      const Availability now_av = next.availability;
      a.remote[node] = std::move(next);
      if (before != now_av) {
        a.declined.clear();  // as when a local session sets a state
        // The agent's WAITING rings are offered there too, or withdrawn from there (as a
        // local session's state change does here).
        replaceAgentRingsLocked(acc, user, node, now_av, fx);
      }
      fx.dispatch_accounts.insert(acc);
    }
    if (announcedStateChangedLocked())
      asio::post(agents_strand_, [this] { emitAnnouncedStates(); });
  }
  apply(std::move(fx));
}

bool Engine::announcedStateChangedLocked() const {
  for (const auto& [_, ar] : accounts_)
    for (const auto& [_, a] : ar.agents)
      if (shownLocked(a) != a.shown) return true;
  return false;
}

void Engine::emitAnnouncedStates() {
  std::vector<AgentStateChanged> events;
  {
    MutexLock lock(mu_);
    const TimeMs now = clock_.nowMs();
    for (auto& [acc, ar] : accounts_) {
      for (auto& [_, a] : ar.agents) {
        const Availability shown = shownLocked(a);
        if (shown == a.shown) continue;
        a.shown = shown;
        events.push_back(AgentStateChanged{store::AgentState{AccountId(acc), a.id, shown, now},
                                           /*announced=*/true});
      }
    }
  }
  for (const auto& ev : events)
    listeners_->emit([&](ConversationListener& l) { l.onAgentStateChanged(ev); });
}

// ---------------------------------------------------------------------------------------------
// Reads

void Engine::markTurn(Actor actor, ConversationId id, store::TurnMark mark, Callback<void> done) {
  auto fail = [done](Error e) { done(std::unexpected(std::move(e))); };
  AccountId acc = actor.account;
  withEntry(
      acc, id,
      [this, actor = std::move(actor), mark = std::move(mark), done](EntryPtr entry) mutable {
        Conversation& c = entry->conv;
        if (auto st = checkOpen(c, actor.account); !st) return done(std::unexpected(st.error()));
        bool assigned = false;
        for (const auto& p : c.participants)
          if (isActiveAssigned(p) && actor.kind == ActorKind::kAgent && p.id == actor.user.str())
            assigned = true;
        if (!assigned)
          return done(forbidden("only the assigned agent of conversation " + c.id.str() +
                                " may mark its turns"));
        Conversation next = c;
        next.turn_mark = std::move(mark);
        if (auto st = store_.conversations().saveConversation(next); !st)
          return done(std::unexpected(st.error()));
        c = std::move(next);
        done({});
      },
      std::move(fail));
}

void Engine::getConversation(AccountId acc, ConversationId id, Callback<Conversation> done) {
  asio::post(pool_, [this, acc = std::move(acc), id = std::move(id), done = std::move(done)] {
    done(store_.conversations().getConversation(acc, id));
  });
}

void Engine::listMessages(AccountId acc, ConversationId id, std::int64_t from_seq, int limit,
                          Callback<std::vector<store::Message>> done) {
  asio::post(pool_, [this, acc = std::move(acc), id = std::move(id), from_seq, limit,
                     done = std::move(done)] {
    if (auto c = store_.conversations().getConversation(acc, id); !c)
      return done(std::unexpected(c.error()));
    done(store_.conversations().listMessages(id, from_seq, limit));
  });
}

void Engine::listConversations(AccountId acc, store::ConversationQuery q,
                               Callback<std::vector<Conversation>> done) {
  asio::post(pool_, [this, acc = std::move(acc), q = std::move(q), done = std::move(done)] {
    done(store_.conversations().listConversations(acc, q));
  });
}

std::vector<QueueSnapshot> Engine::queues(const AccountId& acc,
                                          const std::optional<SkillId>& skill) const {
  const TimeMs now = clock_.nowMs();
  std::vector<QueueSnapshot> out;
  MutexLock lock(mu_);
  auto ait = accounts_.find(acc.str());
  if (ait == accounts_.end()) return out;
  for (const auto& [sk, queue] : ait->second.queues) {
    if (skill && skill->str() != sk) continue;
    QueueSnapshot snap{acc, SkillId(sk), {}};
    for (const auto& key : queue) {
      const Waiting& w = waiting_.at(std::get<2>(key));
      QueueEntry e;
      e.conversation = w.id;
      e.consumer = w.consumer;
      e.skill = w.skill;
      e.ttr_type = w.ttr_type;
      e.ttr_value_s = w.ttr_value_s;
      e.queued_at = w.queued_at;
      e.due_at = w.due_at;
      e.overdue = now > w.due_at;
      for (const auto& rid : w.rings)
        if (auto r = rings_.find(rid); r != rings_.end()) e.ringing.push_back(r->second.ring.user);
      e.suggested = w.suggested;
      snap.entries.push_back(std::move(e));
    }
    out.push_back(std::move(snap));
  }
  return out;
}

std::vector<Ring> Engine::ringsForAgent(const AccountId& acc, const UserId& user) const {
  std::vector<Ring> out;
  MutexLock lock(mu_);
  for (const auto& [_, r] : rings_)
    if (r.ring.state == RingState::kWaiting && r.local && r.ring.account == acc &&
        r.ring.user == user)
      out.push_back(r.ring);
  std::ranges::sort(out, {}, &Ring::offered_at);
  return out;
}

std::vector<AgentInfo> Engine::agents(const AccountId& acc) const {
  std::vector<AgentInfo> out;
  MutexLock lock(mu_);
  auto ait = accounts_.find(acc.str());
  if (ait == accounts_.end()) return out;
  for (const auto& [_, a] : ait->second.agents) {
    AgentInfo i;
    i.account = acc;
    i.user = a.id;
    i.availability = a.availability;
    i.type = a.type;
    i.skills = a.skills;
    i.max_open_conversations = a.max_open;
    i.open_assigned = static_cast<int>(a.assigned.size());
    i.waiting_rings = a.waiting_rings;
    // Cluster mode: no session here set a state; another node's announcement says it.
    if (const Reach reach = reachLocked(a); reach.ok && reach.node) {
      i.availability = reach.availability;
      i.node = *reach.node;
      if (!a.loaded) {
        i.skills = *reach.skills;
        i.max_open_conversations = reach.max_open;
      }
    }
    for (const auto& [_, r] : a.remote) i.load_elsewhere += r.load;
    out.push_back(std::move(i));
  }
  std::ranges::sort(out, {}, [](const AgentInfo& i) { return i.user.str(); });
  return out;
}

}  // namespace

std::unique_ptr<ConversationService> makeConversationService(store::Store& store,
                                                             const Clock& clock, Options options) {
  return std::make_unique<Engine>(store, clock, options);
}

bool holdsConversation(const ConversationService& engine, const ConversationId& id) {
  const auto* e = dynamic_cast<const Engine*>(&engine);
  return e && e->holds(id);
}

void attachRemoteRings(ConversationService& engine, std::shared_ptr<RemoteRings> rings) {
  if (auto* e = dynamic_cast<Engine*>(&engine)) e->attachRemoteRings(std::move(rings));
}

std::vector<AnnouncedAgent> localAgents(const ConversationService& engine) {
  const auto* e = dynamic_cast<const Engine*>(&engine);
  return e ? e->localAgents() : std::vector<AnnouncedAgent>{};
}

void applyAnnouncement(ConversationService& engine, const std::string& node,
                       std::vector<AnnouncedAgent> agents, TimeMs ttl_ms,
                       std::vector<AnnouncedQueue> queues) {
  if (auto* e = dynamic_cast<Engine*>(&engine))
    e->applyAnnouncement(node, std::move(agents), ttl_ms, std::move(queues));
}

std::vector<AnnouncedQueue> localQueueHeads(const ConversationService& engine, std::size_t max) {
  const auto* e = dynamic_cast<const Engine*>(&engine);
  return e ? e->localQueueHeads(max) : std::vector<AnnouncedQueue>{};
}

void maintainLeases(ConversationService& engine) {
  if (auto* e = dynamic_cast<Engine*>(&engine)) e->maintainLeases();
}

std::optional<ConversationStrand> conversationStrand(ConversationService& engine,
                                                     const ConversationId& id) {
  auto* e = dynamic_cast<Engine*>(&engine);
  if (e == nullptr) return std::nullopt;
  return e->strandOf(id);
}

}  // namespace parley::conversation
