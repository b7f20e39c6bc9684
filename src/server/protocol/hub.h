#pragma once

// The server's single ConversationListener: receives engine events on engine threads and hands
// each to the protocol sessions of the event's account that want it: messages and chat states
// to the conversation's consumer and to the agents taking part in it, rings to the rung agent,
// conversation changes to the consumer and to the agent sessions whose ExConversations
// subscriptions may show the conversation, agent-state changes to every agent session
// (sessions filter further on their own strand). Also tracks sessions per user and bearer
// (revocation on logout, password/role/status change, delete, account disable), and writes the
// consumer profiles set over the protocol into the shared ConsumerProfiles, dropping each with
// the consumer's last session.
// Thread-safe: one mutex guards the registry. Owned by the Server; outlives every session.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "common/thread_annotations.h"
#include "conversation/consumer_profiles.h"
#include "conversation/conversation_service.h"
#include "server/session_interest.h"

namespace parley::server::protocol {

// A message event is the engine's own shared snapshot (see onMessageAddedShared), not a copy.
using Event = std::variant<conversation::ConversationChanged,
                           std::shared_ptr<const conversation::MessageAdded>,
                           conversation::ChatStateChanged, conversation::RingOffered,
                           conversation::RingEnded, conversation::AgentStateChanged>;

// The notification frames of one message event, each built at most once — when the first
// session that sends it asks — and shared by every session the event is delivered to. Thread-safe.
// A built frame is published by a flag (acquire/release) and built under a mutex, not through
// std::call_once: glibc's pthread_once makes a futex system call each time a new once-flag
// completes, and every message (two per bot turn) had fresh ones.
class MessageFrames {
 public:
  explicit MessageFrames(std::shared_ptr<const conversation::MessageAdded> added)
      : added_(std::move(added)) {}
  const conversation::MessageAdded& added() const { return *added_; }
  // The agent socket's frame: onlineEventDistribution(message) (codec.h).
  const std::string& agentFrame() const;
  // The consumer view's record of the message (appendMessageRecord, View::kConsumer), which
  // each consumer session wraps in a notification with its own subscription id.
  const std::string& consumerRecord() const;

 private:
  std::shared_ptr<const conversation::MessageAdded> added_;
  mutable Mutex build_mu_;  // held while a frame is built; readers of a built one skip it
  mutable std::atomic<bool> agent_built_{false};
  mutable std::atomic<bool> consumer_built_{false};
  // Written once under build_mu_ before their flag is set (release), read after it is seen set
  // (acquire), never written again.
  mutable std::string agent_frame_;
  mutable std::string consumer_record_;
};

// A session registered with the hub. Methods are called on engine threads (deliver) or any
// thread (revoke); implementations post to their own strand.
class HubClient {
 public:
  virtual ~HubClient() = default;
  virtual const AccountId& hubAccount() const = 0;
  // Consumer sessions: their consumer id; agent sessions: nullopt.
  virtual std::optional<ConsumerId> hubConsumer() const = 0;
  // Agent sessions: their user id; consumer sessions: nullopt.
  virtual std::optional<UserId> hubUser() const = 0;
  virtual const std::string& hubBearer() const = 0;
  virtual void deliver(std::shared_ptr<const Event> event) = 0;
  // A message event (`event` holds frames->added()) with its frames, the same object for every
  // session it goes to. Default: deliver(event).
  virtual void deliverMessage(std::shared_ptr<const Event> event,
                              std::shared_ptr<const MessageFrames> frames) {
    (void)frames;
    deliver(std::move(event));
  }
  // The session's login was revoked (logout): close with 4401.
  virtual void revoke() = 0;
};

// Sessions by a key (consumer id, user id, agent uid).
using HubSessionIndex = std::unordered_map<std::string, std::vector<std::weak_ptr<HubClient>>>;

struct HubOptions {
  // Where consumer profiles are kept (shared with their readers, e.g. the bot connector).
  // Default: the hub's own, with the default limits.
  std::shared_ptr<conversation::ConsumerProfiles> profiles;
};

class Hub final : public conversation::ConversationListener {
 public:
  explicit Hub(HubOptions options = {})
      : profiles_(options.profiles ? std::move(options.profiles)
                                   : std::make_shared<conversation::ConsumerProfiles>()) {}

  void add(const std::shared_ptr<HubClient>& client);
  void remove(const HubClient* client);
  // Told of every session added and removed (SessionInterest::watch/unwatch, outside mu_), from
  // then on. Set it before sessions are added (Server::setSessionInterest, before start()); it
  // must outlive the hub's sessions' removal.
  void setSessionInterest(SessionInterest* interest) { interest_.store(interest); }
  // Which conversations' changes an agent session wants: every conversation of its account, or
  // those of some agents (`uids`).
  enum class Interest { kAll, kOfAgents };
  // What an agent session's ExConversations subscriptions want of conversation changes (the
  // session calls this whenever they change; a new session wants none): every conversation of
  // the account (kAll; `uids` is ignored), or those in which one of `uids` is (or was, until
  // this change) a non-consumer participant (kOfAgents; none when `uids` is empty). A consumer
  // session always gets its own conversations' changes.
  void setConversationInterest(const std::shared_ptr<HubClient>& client, Interest interest,
                               const std::vector<std::string>& uids);
  // Live agent sessions of a user (excluding none).
  int sessionsOfUser(const AccountId& acc, const UserId& user) const;
  // Closes every session opened with `bearer`.
  void revokeBearer(const std::string& bearer);
  // Closes every agent session of the user (its credentials were revoked). Non-blocking: the
  // sessions close on their strands.
  void closeUser(const AccountId& acc, const UserId& user);
  // Closes every session of the account, agents and consumers (the account was disabled).
  void closeAccount(const AccountId& acc);
  std::size_t size() const;
  // Prometheus text of the event counters (conversations created/closed, messages).
  std::string metricsText() const;

  // Keeps the consumer's profile while the consumer has a session registered here; it is
  // dropped when its last session is removed, so anonymous consumers cannot make the server hold
  // memory after they left. Invalid when the consumer has no session; otherwise as
  // ConsumerProfiles::set (TooLarge, LimitExceeded).
  Status setProfile(const AccountId& acc, const ConsumerId& c, std::string profile_json);
  const conversation::ConsumerProfiles& profiles() const { return *profiles_; }

  // ConversationListener
  void onConversationChanged(const conversation::ConversationChanged& e) override;
  void onMessageAdded(const conversation::MessageAdded& e) override;
  void onMessageAddedShared(const std::shared_ptr<const conversation::MessageAdded>& e) override;
  void onChatState(const conversation::ChatStateChanged& e) override;
  void onRingOffered(const conversation::RingOffered& e) override;
  void onRingEnded(const conversation::RingEnded& e) override;
  void onAgentStateChanged(const conversation::AgentStateChanged& e) override;

 private:
  // Which of an account's agent sessions an event goes to.
  struct AgentTargets {
    enum class Kind {
      kAll,           // every agent session (agent-state changes)
      kInterested,    // sessions whose ExConversations may show `conversation` (see above)
      kParticipants,  // sessions of the ACTIVE non-consumer participants of `conversation`
      kUser,          // sessions of `user` (rings)
    };
    Kind kind = Kind::kAll;
    const store::Conversation* conversation = nullptr;
    const UserId* user = nullptr;
    const std::vector<store::Participant>* removed = nullptr;  // kInterested
  };
  // Delivers to sessions of `acc`: the consumer sessions of `consumer` (if set) and the agent
  // sessions `agents` selects. The event is made (copied) once, shared by the sessions, and
  // only when there is a session to get it. With `message` set the event is that message, and
  // the sessions also get one MessageFrames of it (deliverMessage).
  void dispatch(const AccountId& acc, const std::optional<ConsumerId>& consumer,
                const AgentTargets& agents,
                const std::function<std::shared_ptr<const Event>()>& make_event,
                const std::shared_ptr<const conversation::MessageAdded>* message = nullptr);

  std::atomic<SessionInterest*> interest_{nullptr};
  std::atomic<std::int64_t> conversations_created_{0};
  std::atomic<std::int64_t> conversations_closed_{0};
  std::atomic<std::int64_t> messages_{0};
  std::atomic<std::int64_t> chat_states_{0};
  std::atomic<std::int64_t> rings_{0};
  // The sessions of one account, indexed so that a message costs a hash lookup of its consumer
  // and one per agent taking part in its conversation — never a walk over every consumer socket,
  // nor over every agent logged in (an agent session only shows messages of conversations its
  // user takes part in; with 500 idle agents logged in, posting every message to all of them
  // cut bot turns from ~12,700/s to ~2,200/s).
  struct AccountSessions {
    HubSessionIndex consumers;
    std::vector<std::weak_ptr<HubClient>> agents;
    HubSessionIndex agents_by_user;
    // Conversation changes (setConversationInterest): sessions that want all of them, and
    // sessions by the agent uid their subscriptions filter on; `interest` is what each session
    // registered, to take it out again.
    std::vector<std::weak_ptr<HubClient>> changes_all;
    HubSessionIndex changes_by_uid;
    std::unordered_map<const HubClient*, std::vector<std::string>> interest;
  };
  // Takes `client` out of sessions_ (REQUIRES: mu_ held); `removed` counts the entries removed.
  void removeLocked(const HubClient* client, const std::optional<ConsumerId>& consumer,
                    std::size_t& removed) PARLEY_REQUIRES(mu_);
  // Takes `client`'s conversation-change interest out of `acc` (under mu_).
  static void dropInterest(AccountSessions& acc, const HubClient* client);
  // Appends the live sessions of `v` to `out` (REQUIRES: mu_ held).
  static void collect(const std::vector<std::weak_ptr<HubClient>>& v,
                      std::vector<std::shared_ptr<HubClient>>& out);

  // Written under mu_ (set and erase), so a profile never outlives its consumer's last session.
  const std::shared_ptr<conversation::ConsumerProfiles> profiles_;
  mutable Mutex mu_;
  // account → sessions
  std::unordered_map<std::string, AccountSessions> sessions_ PARLEY_GUARDED_BY(mu_);
  std::size_t size_ PARLEY_GUARDED_BY(mu_) = 0;
  // The sessions added and not removed yet, each told to interest_ once.
  std::unordered_set<const HubClient*> watching_ PARLEY_GUARDED_BY(mu_);
};

}  // namespace parley::server::protocol
