#pragma once

// One messaging-protocol connection (agent/bot socket `/messaging/brand/{bearer}` or consumer
// socket `/messaging/consumer`): parses request envelopes, maps them onto the
// ConversationService, answers with `resp` envelopes, and turns engine events (via the Hub) into
// notifications in LivePerson's shapes (codec.h). Socket-free: it talks to a WsTransport, so
// tests drive it with a fake transport.
//
// Threading: every method runs on the connection strand (WsHandler calls, posted completions,
// posted hub deliveries); engine completions and hub events are posted there through the
// transport.
//
// Ownership: the network session (the WsTransport) owns its handler, this session, until
// onClose(); pending callbacks (engine completions, posted work, timers) hold it too. The session
// refers back to its transport only weakly, so the two never form a cycle: once the connection is
// gone, frames, posts and timers the session still issues are dropped.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "common/policy.h"
#include "conversation/conversation_service.h"
#include "server/auth.h"
#include "server/http_types.h"
#include "server/metrics.h"
#include "server/protocol/codec.h"
#include "server/protocol/directory.h"
#include "server/protocol/hub.h"

namespace parley::server::protocol {

struct SessionOptions {
  // A consumer socket without an Authorization header must authenticate with InitConnection
  // within this time, else it is closed with 4401. Default: 5 s.
  std::chrono::milliseconds init_timeout{5000};
  // How often an agent socket re-checks its token (session or API key: expired, revoked, user
  // or account disabled → close 4401). Revocations through this server close sockets at once;
  // this catches expiry. Default: 30 s.
  std::chrono::milliseconds revalidate_interval{30'000};
  // `ringExpiration` seconds reported in routing notifications. Default: 60.
  std::int64_t ring_expiration_s = 60;
  // Most history records returned by one QueryMessages / SubscribeMessagingEvents. Default: 10000.
  int max_history = 10'000;
  // Largest conversationContext of ConsumerRequestConversation (serialized JSON), which is
  // stored with the conversation. Default: 16 KiB.
  std::size_t max_conversation_context_bytes = 16 << 10;
  // History is read from the store in pages of this many records and sent while the
  // connection's write queue is under half its byte limit (WsTransport::maxQueuedBytes); a
  // QueryMessages answer stops at half that limit too (the client asks again from the last
  // sequence). Default: 50. REQUIRES: >= 1.
  int history_page = 50;
  // A history that cannot go on because the peer takes nothing from the write queue for this
  // long closes the connection with 1008 (slow consumer). Default: 30 s.
  std::chrono::milliseconds history_stall_timeout{30'000};
};

// Everything a session uses. All references must outlive every session.
struct SessionDeps {
  conversation::ConversationService& service;
  Hub& hub;
  Directory& directory;
  Auth& auth;
  BlockingExecutor& blocking;
  const Clock& clock;
  Metrics& metrics;
  SessionOptions options;
};

class ProtocolSession final : public WsHandler,
                              public HubClient,
                              public std::enable_shared_from_this<ProtocolSession> {
 public:
  // An agent/bot socket of an authenticated brand user. The caller keeps `transport` alive (the
  // session holds it weakly) and makes the returned session its handler.
  static std::shared_ptr<ProtocolSession> agent(SessionDeps deps,
                                                std::shared_ptr<WsTransport> transport,
                                                Principal principal);
  // A consumer socket; `consumer` is set when the upgrade carried a valid `Authorization: jwt`,
  // else the first frames must include InitConnection.
  static std::shared_ptr<ProtocolSession> consumer(SessionDeps deps,
                                                   std::shared_ptr<WsTransport> transport,
                                                   AccountId account,
                                                   std::optional<ConsumerId> consumer);

  ProtocolSession(SessionDeps deps, std::shared_ptr<WsTransport> transport, AccountId account);

  // WsHandler
  void onOpen() override;
  void onFrame(std::string text) override;
  void onClose() override;
  void onDrain() override;
  int requestsInFlight() const override { return in_flight_.load(); }

  // HubClient
  const AccountId& hubAccount() const override { return account_; }
  std::optional<ConsumerId> hubConsumer() const override;
  std::optional<UserId> hubUser() const override;
  const std::string& hubBearer() const override { return bearer_; }
  void deliver(std::shared_ptr<const Event> event) override;
  void deliverMessage(std::shared_ptr<const Event> event,
                      std::shared_ptr<const MessageFrames> frames) override;
  void revoke() override;

 private:
  enum class Kind { kAgent, kConsumer };

  struct ExSub {
    std::string id;
    std::vector<store::ConversationState> states;
    std::set<std::string> agent_uids;  // empty = all conversations of the account (agents)
    TimeMs min_updated = 0;
    std::unordered_set<std::string> shown;  // conversations currently shown (UPSERT sent)
    std::unordered_set<std::string> seen;   // conversations with a live event already handled
  };
  struct DialogSub {
    std::string id;
    bool loading = true;
    std::int64_t max_sent = -1;
    std::vector<store::Message> buffered;  // live events while the history is sent
    std::size_t buffered_bytes = 0;
  };
  struct Pending {
    std::vector<std::string> uids;  // agents whose PIds the build needs
    std::function<void()> emit;
  };

  void handle(Envelope env);
  // Agents: true when the policy allows `action` (docs/authorization.md); otherwise answers
  // request `id` with 403 naming the roles and returns false.
  bool allowed(const bj::value& id, policy::Action action);
  // Agents: whether this session's user may read conversation `c`.
  Status authorizeRead(const store::Conversation& c) const;
  void reply(const bj::value& id, int code, std::string_view type, const bj::value& body);
  void replyError(const bj::value& id, const Error& e);
  // Posts `fn` to the strand, keeping the session alive.
  template <class T>
  conversation::Callback<T> onStrand(std::function<void(Result<T>)> fn);

  // Requests
  void getClock(const Envelope& e);
  void initConnection(const Envelope& e);
  void setAgentState(const Envelope& e);
  void subscribeEx(const Envelope& e);
  void unsubscribeEx(const Envelope& e);
  // Tells the hub which conversation changes the ExConversations subscriptions may show.
  void updateConversationInterest();
  void subscribeRouting(const Envelope& e);
  void updateRingState(const Envelope& e);
  void subscribeAgentsState(const Envelope& e);
  void getUserProfile(const Envelope& e);
  void setUserProfile(const Envelope& e);
  void queryMessages(const Envelope& e);
  void subscribeMessaging(const Envelope& e);
  // Sends the subscription's history from `from`, a page at a time while the write queue has
  // room (see SessionOptions::history_page), then the live events buffered meanwhile.
  void streamHistory(std::string dialog, std::string sub_id, std::int64_t from, int remaining,
                     std::chrono::steady_clock::time_point waiting_since);
  void finishHistory(const std::string& dialog);
  // Whether the write queue is at least half full (history waits), on the strand.
  bool writeQueueBusy() const;
  void queryPage(bj::value id, ConversationId conv, std::int64_t from, int remaining,
                 std::shared_ptr<bj::array> out, std::size_t bytes);
  void unsubscribeMessaging(const Envelope& e);
  void publishEvent(const Envelope& e);
  void updateField(const Envelope& e);
  void requestConversation(const Envelope& e);

  // Events (on the strand)
  void onEvent(const Event& ev);
  void onConversation(const conversation::ConversationChanged& e);
  // The queued emission keeps the shared frames (and through them the shared event), not a copy
  // of the message.
  void onMessage(std::shared_ptr<const MessageFrames> frames);
  void onChatState(const conversation::ChatStateChanged& e);
  void onRingOffered(const conversation::RingOffered& e);
  void onRingEnded(const conversation::RingEnded& e);
  void onAgentState(const conversation::AgentStateChanged& e);

  bool matches(const ExSub& s, const store::Conversation& c) const;
  bool isParticipant(const store::Conversation& c) const;
  void sendExChange(const ExSub& s, const store::Conversation& c, const char* type);
  void sendExChanges(const std::string& sub_id, const std::vector<store::Conversation>& convs);
  void sendDialogRecords(const std::string& sub_id, std::span<const store::Message> msgs);
  // Emits in order, once the PIds of `uids` are known (reloading the directory once if not).
  void emitOrdered(std::vector<std::string> uids, std::function<void()> emit);
  void pump();
  std::vector<std::string> agentUids(const store::Conversation& c) const;
  PidLookup pidLookup() const;
  UidFromPid uidFromPid() const;
  conversation::Actor actor() const;
  void scheduleRevalidate();
  void closeWith(int code, std::string reason);
  // The transport's methods, or nothing once the transport is gone. Any thread.
  void send(std::string text);
  void post(std::function<void()> fn);
  void postAfter(std::chrono::milliseconds delay, std::function<void()> fn);
  void closeTransport(int code, std::string reason);

  SessionDeps deps_;
  // Weak: the transport owns this session (see the class comment). Never reassigned, so any
  // thread may lock() it.
  const std::weak_ptr<WsTransport> transport_;
  const AccountId account_;
  Kind kind_ = Kind::kConsumer;
  // Agent identity (kAgent).
  std::optional<Principal> principal_;
  std::string bearer_;
  // Consumer identity (kConsumer); unset until authenticated.
  std::optional<ConsumerId> consumer_;
  std::optional<ConsumerId> consumer_fixed_;  // immutable copy for hubConsumer()
  bool closed_ = false;
  bool registered_ = false;
  // The server is draining: new requests are refused (onDrain).
  bool draining_ = false;
  // Engine calls made for requests (onStrand) whose completion has not run yet.
  std::atomic<int> in_flight_{0};

  std::map<std::string, ExSub> ex_subs_;
  std::optional<std::string> routing_sub_;
  std::unordered_set<std::string> rings_sent_;
  std::optional<std::string> agents_state_sub_;
  std::unordered_map<std::string, DialogSub> dialog_subs_;  // by dialogId
  std::deque<Pending> pending_;
  bool reloading_ = false;
  bool reloaded_once_ = false;
};

}  // namespace parley::server::protocol
