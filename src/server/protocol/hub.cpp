#include "server/protocol/hub.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/prometheus.h"
#include "server/protocol/codec.h"

namespace parley::server::protocol {

namespace {

// Removes `client` (and sessions already gone) from `v`; returns how many entries were removed.
std::size_t eraseClient(std::vector<std::weak_ptr<HubClient>>& v, const HubClient* client) {
  return std::erase_if(v, [&](const std::weak_ptr<HubClient>& w) {
    auto s = w.lock();
    return !s || s.get() == client;
  });
}

// Removes `client` (and sessions already gone) from index[key], and the key once it has none.
void eraseFromIndex(HubSessionIndex& index, const std::string& key, const HubClient* client,
                    std::size_t* removed = nullptr) {
  auto it = index.find(key);
  if (it == index.end()) return;
  const std::size_t n = eraseClient(it->second, client);
  if (removed) *removed = n;
  if (it->second.empty()) index.erase(it);
}

}  // namespace

void Hub::add(const std::shared_ptr<HubClient>& client) {
  auto consumer = client->hubConsumer();
  // First the interest (a cluster node subscribes to what the session watches), then the
  // registration: the session reads the store only after this returns.
  bool first = false;
  {
    MutexLock lock(mu_);
    first = watching_.insert(client.get()).second;
  }
  if (auto* interest = interest_.load(); interest && first)
    interest->watch(client->hubAccount(), consumer);
  MutexLock lock(mu_);
  auto& acc = sessions_[client->hubAccount().str()];
  if (consumer) {
    acc.consumers[consumer->str()].push_back(client);
  } else {
    acc.agents.push_back(client);
    if (auto user = client->hubUser()) acc.agents_by_user[user->str()].push_back(client);
  }
  ++size_;
}

void Hub::remove(const HubClient* client) {
  auto consumer = client->hubConsumer();
  std::size_t removed = 0;
  bool watched = false;
  {
    MutexLock lock(mu_);
    watched = watching_.erase(client) > 0;
    removeLocked(client, consumer, removed);
  }
  if (!watched) return;
  if (auto* interest = interest_.load()) interest->unwatch(client->hubAccount(), consumer);
}

void Hub::removeLocked(const HubClient* client, const std::optional<ConsumerId>& consumer,
                       std::size_t& removed) {
  auto it = sessions_.find(client->hubAccount().str());
  if (it == sessions_.end()) return;
  if (consumer) {
    eraseFromIndex(it->second.consumers, consumer->str(), client, &removed);
    // The consumer's last session is gone: so is its profile.
    if (!it->second.consumers.contains(consumer->str()))
      profiles_->erase(client->hubAccount(), *consumer);
  } else {
    removed = eraseClient(it->second.agents, client);
    dropInterest(it->second, client);
    if (auto user = client->hubUser())
      eraseFromIndex(it->second.agents_by_user, user->str(), client);
  }
  size_ -= std::min(size_, removed);
}

void Hub::dropInterest(AccountSessions& acc, const HubClient* client) {
  auto it = acc.interest.find(client);
  if (it == acc.interest.end()) return;
  eraseClient(acc.changes_all, client);
  for (const auto& uid : it->second) eraseFromIndex(acc.changes_by_uid, uid, client);
  acc.interest.erase(it);
}

void Hub::setConversationInterest(const std::shared_ptr<HubClient>& client, Interest interest,
                                  const std::vector<std::string>& uids) {
  const bool all = interest == Interest::kAll;
  if (client->hubConsumer()) return;  // consumers get their own conversations' changes
  MutexLock lock(mu_);
  auto& acc = sessions_[client->hubAccount().str()];
  dropInterest(acc, client.get());
  if (!all && uids.empty()) return;
  auto& registered = acc.interest[client.get()];
  if (all) {
    acc.changes_all.push_back(client);
    return;
  }
  for (const auto& uid : uids) {
    if (std::find(registered.begin(), registered.end(), uid) != registered.end()) continue;
    registered.push_back(uid);
    acc.changes_by_uid[uid].push_back(client);
  }
}

int Hub::sessionsOfUser(const AccountId& acc, const UserId& user) const {
  MutexLock lock(mu_);
  auto it = sessions_.find(acc.str());
  if (it == sessions_.end()) return 0;
  auto u = it->second.agents_by_user.find(user.str());
  if (u == it->second.agents_by_user.end()) return 0;
  int n = 0;
  for (const auto& w : u->second)
    if (!w.expired()) ++n;
  return n;
}

void Hub::revokeBearer(const std::string& bearer) {
  if (bearer.empty()) return;
  std::vector<std::shared_ptr<HubClient>> hit;
  {
    MutexLock lock(mu_);
    auto scan = [&](const std::vector<std::weak_ptr<HubClient>>& v) {
      for (const auto& w : v)
        if (auto s = w.lock(); s && s->hubBearer() == bearer) hit.push_back(std::move(s));
    };
    for (const auto& [acc, sessions] : sessions_) {
      scan(sessions.agents);
      for (const auto& [consumer, v] : sessions.consumers) scan(v);
    }
  }
  for (auto& s : hit) s->revoke();
}

void Hub::collect(const std::vector<std::weak_ptr<HubClient>>& v,
                  std::vector<std::shared_ptr<HubClient>>& out) {
  for (const auto& w : v)
    if (auto s = w.lock()) out.push_back(std::move(s));
}

void Hub::closeUser(const AccountId& acc, const UserId& user) {
  std::vector<std::shared_ptr<HubClient>> hit;
  {
    MutexLock lock(mu_);
    auto it = sessions_.find(acc.str());
    if (it == sessions_.end()) return;
    auto u = it->second.agents_by_user.find(user.str());
    if (u != it->second.agents_by_user.end()) collect(u->second, hit);
  }
  for (auto& s : hit) s->revoke();
}

void Hub::closeAccount(const AccountId& acc) {
  std::vector<std::shared_ptr<HubClient>> hit;
  {
    MutexLock lock(mu_);
    auto it = sessions_.find(acc.str());
    if (it == sessions_.end()) return;
    collect(it->second.agents, hit);
    for (const auto& [consumer, v] : it->second.consumers) collect(v, hit);
  }
  for (auto& s : hit) s->revoke();
}

std::size_t Hub::size() const {
  MutexLock lock(mu_);
  return size_;
}

Status Hub::setProfile(const AccountId& acc, const ConsumerId& c, std::string profile_json) {
  MutexLock lock(mu_);
  auto it = sessions_.find(acc.str());
  if (it == sessions_.end() || !it->second.consumers.contains(c.str()))
    return invalid("the consumer has no open socket; connect, then set the profile");
  return profiles_->set(acc, c, std::move(profile_json));
}

void Hub::dispatch(const AccountId& acc, const std::optional<ConsumerId>& consumer,
                   const AgentTargets& agents,
                   const std::function<std::shared_ptr<const Event>()>& make_event,
                   const std::shared_ptr<const conversation::MessageAdded>* message) {
  std::vector<std::shared_ptr<HubClient>> targets;
  {
    MutexLock lock(mu_);
    auto it = sessions_.find(acc.str());
    if (it == sessions_.end()) return;
    auto take = [&](const std::vector<std::weak_ptr<HubClient>>& v) {
      for (const auto& w : v)
        if (auto s = w.lock()) targets.push_back(std::move(s));
    };
    // The sessions index[key] has that are not among targets[from..] yet (a user listed twice,
    // or a session registered for two uids of the same conversation, is taken once).
    const auto takeNew = [&](const HubSessionIndex& index, const std::string& key,
                             std::size_t from) {
      auto u = index.find(key);
      if (u == index.end()) return;
      for (const auto& w : u->second) {
        auto s = w.lock();
        if (s && std::find(targets.begin() + static_cast<std::ptrdiff_t>(from), targets.end(), s) ==
                     targets.end())
          targets.push_back(std::move(s));
      }
    };
    if (consumer) {
      if (auto c = it->second.consumers.find(consumer->str()); c != it->second.consumers.end())
        take(c->second);
    }
    const std::size_t first = targets.size();
    switch (agents.kind) {
      case AgentTargets::Kind::kAll:
        take(it->second.agents);
        break;
      case AgentTargets::Kind::kParticipants:
        // The same participants ProtocolSession::isParticipant accepts.
        for (const auto& p : agents.conversation->participants)
          if (p.role != store::ParticipantRole::kConsumer &&
              p.state == store::ParticipantState::kActive)
            takeNew(it->second.agents_by_user, p.id, first);
        break;
      case AgentTargets::Kind::kUser:
        takeNew(it->second.agents_by_user, agents.user->str(), first);
        break;
      case AgentTargets::Kind::kInterested: {
        // A subscription filtered on agent uids shows a conversation while one of them is an
        // ACTIVE non-consumer participant, and must hear of the change that ends that (the
        // uid is then in `removed`, or still listed in another state): every non-consumer
        // participant and every removed one is looked up. Sessions that want every change are
        // registered for no uid, so they are never found twice.
        take(it->second.changes_all);
        const std::size_t from = targets.size();
        auto byUid = [&](const store::Participant& p) {
          if (p.role != store::ParticipantRole::kConsumer)
            takeNew(it->second.changes_by_uid, p.id, from);
        };
        for (const auto& p : agents.conversation->participants) byUid(p);
        if (agents.removed)
          for (const auto& p : *agents.removed) byUid(p);
        break;
      }
    }
  }
  if (targets.empty()) return;  // nobody to tell: no copy of the event
  auto ev = make_event();
  if (message) {
    auto frames = std::make_shared<const MessageFrames>(*message);
    for (auto& s : targets) s->deliverMessage(ev, frames);
    return;
  }
  for (auto& s : targets) s->deliver(ev);
}

const std::string& MessageFrames::agentFrame() const {
  if (!agent_built_.load(std::memory_order_acquire)) {
    MutexLock lock(build_mu_);
    if (!agent_built_.load(std::memory_order_relaxed)) {
      agent_frame_ = onlineEventDistribution(added_->message);
      agent_built_.store(true, std::memory_order_release);
    }
  }
  return agent_frame_;
}

const std::string& MessageFrames::consumerRecord() const {
  if (!consumer_built_.load(std::memory_order_acquire)) {
    MutexLock lock(build_mu_);
    if (!consumer_built_.load(std::memory_order_relaxed)) {
      consumer_record_.reserve(384 + added_->message.event_json.size() +
                               added_->message.metadata_json.size());
      appendMessageRecord(consumer_record_, added_->message, View::kConsumer);
      consumer_built_.store(true, std::memory_order_release);
    }
  }
  return consumer_record_;
}

std::string Hub::metricsText() const {
  std::string out;
  auto counter = [&](const char* name, const char* help, std::int64_t v) {
    prometheus::appendSample(out, name, "counter", help, v);
  };
  counter("parley_conversations_created_total", "Conversations created.",
          conversations_created_.load());
  counter("parley_conversations_closed_total", "Conversations closed.",
          conversations_closed_.load());
  counter("parley_messages_total", "Conversation events persisted (messages, receipts).",
          messages_.load());
  counter("parley_chat_states_total", "Chat state events delivered.", chat_states_.load());
  counter("parley_rings_total", "Rings offered to agents.", rings_.load());
  prometheus::appendSample(out, "parley_protocol_sessions", "gauge",
                           "Protocol sessions registered for events.",
                           static_cast<std::int64_t>(size()));
  prometheus::appendSample(out, "parley_consumer_profiles", "gauge",
                           "Consumer profiles held (consumers with an open socket that set one).",
                           static_cast<std::int64_t>(profiles_->count()));
  prometheus::appendSample(out, "parley_consumer_profile_bytes", "gauge",
                           "Bytes of the consumer profiles held.",
                           static_cast<std::int64_t>(profiles_->bytes()));
  return out;
}

void Hub::onConversationChanged(const conversation::ConversationChanged& e) {
  if (e.kind == conversation::ChangeKind::kCreated) conversations_created_.fetch_add(1);
  if (e.kind == conversation::ChangeKind::kClosed) conversations_closed_.fetch_add(1);
  dispatch(e.conversation.account, e.conversation.consumer,
           {AgentTargets::Kind::kInterested, &e.conversation, nullptr, &e.removed},
           [&e] { return std::make_shared<const Event>(e); });
}

void Hub::onMessageAdded(const conversation::MessageAdded& e) {
  onMessageAddedShared(std::make_shared<const conversation::MessageAdded>(e));
}

void Hub::onMessageAddedShared(const std::shared_ptr<const conversation::MessageAdded>& e) {
  messages_.fetch_add(1);
  dispatch(
      e->conversation.account, e->conversation.consumer,
      {AgentTargets::Kind::kParticipants, &e->conversation, nullptr},
      [&e] { return std::make_shared<const Event>(e); }, &e);
}

void Hub::onChatState(const conversation::ChatStateChanged& e) {
  chat_states_.fetch_add(1);
  dispatch(e.conversation.account, e.conversation.consumer,
           {AgentTargets::Kind::kParticipants, &e.conversation, nullptr},
           [&e] { return std::make_shared<const Event>(e); });
}

void Hub::onRingOffered(const conversation::RingOffered& e) {
  rings_.fetch_add(1);
  dispatch(e.ring.account, std::nullopt, {AgentTargets::Kind::kUser, nullptr, &e.ring.user},
           [&e] { return std::make_shared<const Event>(e); });
}

void Hub::onRingEnded(const conversation::RingEnded& e) {
  dispatch(e.ring.account, std::nullopt, {AgentTargets::Kind::kUser, nullptr, &e.ring.user},
           [&e] { return std::make_shared<const Event>(e); });
}

void Hub::onAgentStateChanged(const conversation::AgentStateChanged& e) {
  dispatch(e.state.account, std::nullopt, {}, [&e] { return std::make_shared<const Event>(e); });
}

}  // namespace parley::server::protocol
