#include "store/memory/memory_store.h"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "store/store_util.h"

namespace parley::store {
namespace {

using internal::numericId;

template <class T>
std::vector<T> firstN(std::vector<T> v, int limit) {
  if (limit <= 0) return {};
  if (v.size() > static_cast<std::size_t>(limit)) v.resize(static_cast<std::size_t>(limit));
  return v;
}

// The in-memory store. Every method locks mu_ for its whole duration, so each call is atomic;
// the state is PARLEY_GUARDED_BY(mu_), checked by clang -Wthread-safety (the thread-safety
// preset).
class MemoryStore final : public Store,
                          public AccountStore,
                          public ConversationStore,
                          public FunctionStore,
                          public BotStore,
                          public OAuthStore,
                          public ScheduleStore,
                          public ClusterStore {
 public:
  explicit MemoryStore(const Clock& clock) : clock_(clock) {}

  // Store
  AccountStore& accounts() override { return *this; }
  ConversationStore& conversations() override { return *this; }
  FunctionStore& functions() override { return *this; }
  BotStore& bots() override { return *this; }
  OAuthStore& oauth() override { return *this; }
  ScheduleStore& schedules() override { return *this; }
  int schemaVersion() const override { return 0; }
  ClusterStore* cluster() override { return this; }

  // ClusterStore
  Result<std::string> putMaterialIfAbsent(const std::string& key,
                                          const std::string& value) override {
    if (key.empty()) return invalid("cluster material needs a key");
    MutexLock lock(mu_);
    return material_.try_emplace(key, value).first->second;
  }

  Result<std::string> getMaterial(const std::string& key) override {
    MutexLock lock(mu_);
    auto it = material_.find(key);
    if (it == material_.end()) return notFound("no cluster material '" + key + "'");
    return it->second;
  }

  Result<Lease> acquireLease(const ConversationId& id, const std::string& node,
                             TimeMs ttl_ms) override {
    if (auto st = internal::checkLeaseArgs(id, node, ttl_ms); !st)
      return std::unexpected(st.error());
    const TimeMs now = clock_.nowMs();
    MutexLock lock(mu_);
    auto [it, fresh] = leases_.try_emplace(id.str(), Lease{id, node, 0, 0});
    Lease& l = it->second;
    const bool expired = l.expires_at <= now;
    if (!fresh && !expired && l.node != node)
      return std::unexpected(internal::leaseHeld(l).error());
    if (fresh || expired) ++l.epoch;
    l.node = node;
    l.expires_at = now + ttl_ms;
    return l;
  }

  Result<Lease> renewLease(const ConversationId& id, const std::string& node, std::int64_t epoch,
                           TimeMs ttl_ms) override {
    if (auto st = internal::checkLeaseArgs(id, node, ttl_ms); !st)
      return std::unexpected(st.error());
    const TimeMs now = clock_.nowMs();
    MutexLock lock(mu_);
    auto it = leases_.find(id.str());
    if (it == leases_.end()) return conflict("conversation " + id.str() + " has no lease");
    Lease& l = it->second;
    if (l.node != node || l.epoch != epoch) return std::unexpected(internal::leaseHeld(l).error());
    l.expires_at = now + ttl_ms;
    return l;
  }

  Status releaseLease(const ConversationId& id, const std::string& node,
                      std::int64_t epoch) override {
    const TimeMs now = clock_.nowMs();
    MutexLock lock(mu_);
    auto it = leases_.find(id.str());
    if (it != leases_.end() && it->second.node == node && it->second.epoch == epoch)
      it->second.expires_at = std::min(it->second.expires_at, now);
    return {};
  }

  Result<std::vector<Lease>> claimLeases(const std::string& node, TimeMs ttl_ms,
                                         int limit) override {
    if (node.empty()) return invalid("a lease needs a node name");
    if (ttl_ms <= 0) return invalid("a lease needs a positive duration");
    if (limit <= 0) return invalid("a lease claim needs a positive limit");
    const TimeMs now = clock_.nowMs();
    MutexLock lock(mu_);
    std::vector<const Conversation*> free;
    for (const auto& [id, c] : conversations_) {
      if (c.state != ConversationState::kOpen) continue;
      auto it = leases_.find(id);
      if (it == leases_.end() || it->second.expires_at <= now) free.push_back(&c);
    }
    std::ranges::sort(free, [](const Conversation* a, const Conversation* b) {
      return std::tie(a->start_ts, a->id) < std::tie(b->start_ts, b->id);
    });
    if (free.size() > static_cast<std::size_t>(limit)) free.resize(limit);
    std::vector<Lease> taken;
    for (const Conversation* c : free) {
      auto [it, fresh] = leases_.try_emplace(c->id.str(), Lease{c->id, node, 0, 0});
      Lease& l = it->second;
      ++l.epoch;
      l.node = node;
      l.expires_at = now + ttl_ms;
      taken.push_back(l);
    }
    return taken;
  }

  Result<Lease> getLease(const ConversationId& id) override {
    MutexLock lock(mu_);
    auto it = leases_.find(id.str());
    if (it == leases_.end()) return notFound("conversation " + id.str() + " was never leased");
    return it->second;
  }

  // AccountStore
  Status createAccount(const Account& a) override {
    if (a.id.empty()) return invalid("account id is required");
    MutexLock lock(mu_);
    if (accounts_.contains(a.id.str()))
      return conflict("account " + a.id.str() + " already exists");
    Account stored = a;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    accounts_.emplace(a.id.str(), std::move(stored));
    return {};
  }

  Result<Account> getAccount(const AccountId& id) override {
    MutexLock lock(mu_);
    auto it = accounts_.find(id.str());
    if (it == accounts_.end()) return notFound("account " + id.str() + " does not exist");
    return it->second;
  }

  Result<std::vector<Account>> listAccounts() override {
    MutexLock lock(mu_);
    std::vector<Account> out;
    for (const auto& [_, a] : accounts_) out.push_back(a);
    return out;
  }

  Status setAccountStatus(const AccountId& id, AccountStatus status) override {
    MutexLock lock(mu_);
    auto it = accounts_.find(id.str());
    if (it == accounts_.end()) return notFound("account " + id.str() + " does not exist");
    it->second.status = status;
    return {};
  }

  Result<User> createUser(User u) override {
    if (u.account.empty()) return invalid("user account is required");
    if (u.login_name.empty()) return invalid("user loginName is required");
    MutexLock lock(mu_);
    if (findUserByLogin(u.account, u.login_name))
      return conflict("login name '" + u.login_name + "' is taken in account " + u.account.str());
    auto& next = next_user_id_.try_emplace(u.account.str(), kFirstUserId).first->second;
    if (u.id.empty()) {
      while (users_.contains({u.account.str(), std::to_string(next)})) ++next;
      u.id = UserId(std::to_string(next++));
    } else {
      if (users_.contains({u.account.str(), u.id.str()}))
        return conflict("user " + u.id.str() + " already exists in account " + u.account.str());
      if (auto n = numericId(u.id.str()); n && *n >= next) next = *n + 1;
    }
    if (u.created_at == 0) u.created_at = clock_.nowMs();
    users_[{u.account.str(), u.id.str()}] = u;
    return u;
  }

  Status updateUser(const User& u) override {
    MutexLock lock(mu_);
    auto it = users_.find({u.account.str(), u.id.str()});
    if (it == users_.end())
      return notFound("user " + u.id.str() + " does not exist in account " + u.account.str());
    const User* other = findUserByLogin(u.account, u.login_name);
    if (other && other->id != u.id)
      return conflict("login name '" + u.login_name + "' is taken in account " + u.account.str());
    it->second = u;
    return {};
  }

  Status deleteUser(const AccountId& acc, const UserId& id) override {
    MutexLock lock(mu_);
    if (users_.erase({acc.str(), id.str()}) == 0)
      return notFound("user " + id.str() + " does not exist in account " + acc.str());
    deleteCredentialsLocked(acc, id);
    return {};
  }

  Result<User> getUser(const AccountId& acc, const UserId& id) override {
    MutexLock lock(mu_);
    auto it = users_.find({acc.str(), id.str()});
    if (it == users_.end())
      return notFound("user " + id.str() + " does not exist in account " + acc.str());
    return it->second;
  }

  Result<User> getUserByLogin(const AccountId& acc, const std::string& login_name) override {
    MutexLock lock(mu_);
    const User* u = findUserByLogin(acc, login_name);
    if (!u) return notFound("no user with login name '" + login_name + "' in account " + acc.str());
    return *u;
  }

  Result<std::vector<User>> listUsers(const AccountId& acc) override {
    MutexLock lock(mu_);
    std::vector<User> out;
    for (const auto& [key, u] : users_)
      if (key.first == acc.str()) out.push_back(u);
    std::ranges::sort(out, idLess<User>);
    return out;
  }

  Status putSession(const Session& s) override {
    if (s.bearer_hash.empty()) return invalid("session bearer hash is required");
    MutexLock lock(mu_);
    sessions_[s.bearer_hash] = s;
    return {};
  }

  Result<Session> getSession(const std::string& bearer_hash) override {
    MutexLock lock(mu_);
    auto it = sessions_.find(bearer_hash);
    if (it == sessions_.end()) return notFound("session does not exist");
    return it->second;
  }

  Status deleteSession(const std::string& bearer_hash) override {
    MutexLock lock(mu_);
    sessions_.erase(bearer_hash);
    return {};
  }

  Status deleteExpiredSessions(TimeMs now) override {
    MutexLock lock(mu_);
    std::erase_if(sessions_, [now](const auto& kv) { return kv.second.expires_at <= now; });
    return {};
  }

  Status putApiKey(const ApiKey& k) override {
    if (k.key_hash.empty()) return invalid("api key hash is required");
    if (k.id.empty()) return invalid("api key id is required");
    MutexLock lock(mu_);
    for (const auto& [hash, other] : api_keys_)
      if (hash != k.key_hash && other.account == k.account && other.id == k.id)
        return conflict("api key " + k.id + " already exists in account " + k.account.str());
    ApiKey stored = k;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    if (!api_keys_.contains(k.key_hash)) api_key_order_.push_back(k.key_hash);
    api_keys_[k.key_hash] = std::move(stored);
    return {};
  }

  Result<ApiKey> getApiKey(const std::string& key_hash) override {
    MutexLock lock(mu_);
    auto it = api_keys_.find(key_hash);
    if (it == api_keys_.end()) return notFound("api key does not exist");
    return it->second;
  }

  Result<std::vector<ApiKey>> listApiKeys(const AccountId& acc) override {
    MutexLock lock(mu_);
    std::vector<ApiKey> out;
    for (const auto& hash : api_key_order_) {
      auto it = api_keys_.find(hash);
      if (it != api_keys_.end() && it->second.account == acc) out.push_back(it->second);
    }
    return out;
  }

  Status deleteApiKey(const AccountId& acc, const std::string& id) override {
    MutexLock lock(mu_);
    auto n = std::erase_if(
        api_keys_, [&](const auto& kv) { return kv.second.account == acc && kv.second.id == id; });
    if (n == 0) return notFound("api key " + id + " does not exist in account " + acc.str());
    std::erase_if(api_key_order_, [&](const std::string& h)
                                      PARLEY_REQUIRES(mu_) { return !api_keys_.contains(h); });
    return {};
  }

  Status deleteCredentials(const AccountId& acc, const UserId& user) override {
    MutexLock lock(mu_);
    deleteCredentialsLocked(acc, user);
    return {};
  }

  void deleteCredentialsLocked(const AccountId& acc, const UserId& user) PARLEY_REQUIRES(mu_) {
    std::erase_if(sessions_, [&](const auto& kv) {
      return kv.second.account == acc && kv.second.user == user;
    });
    std::erase_if(api_keys_, [&](const auto& kv) {
      return kv.second.account == acc && kv.second.user == user;
    });
    std::erase_if(api_key_order_, [&](const std::string& h)
                                      PARLEY_REQUIRES(mu_) { return !api_keys_.contains(h); });
  }

  Result<Skill> createSkill(Skill s) override {
    if (s.account.empty()) return invalid("skill account is required");
    if (s.name.empty()) return invalid("skill name is required");
    MutexLock lock(mu_);
    for (const auto& [key, other] : skills_)
      if (key.first == s.account.str() && other.name == s.name)
        return conflict("skill '" + s.name + "' already exists in account " + s.account.str());
    auto& next = next_skill_id_.try_emplace(s.account.str(), kFirstSkillId).first->second;
    if (s.id.empty()) {
      while (skills_.contains({s.account.str(), std::to_string(next)})) ++next;
      s.id = SkillId(std::to_string(next++));
    } else {
      if (skills_.contains({s.account.str(), s.id.str()}))
        return conflict("skill " + s.id.str() + " already exists in account " + s.account.str());
      if (auto n = numericId(s.id.str()); n && *n >= next) next = *n + 1;
    }
    if (s.created_at == 0) s.created_at = clock_.nowMs();
    skills_[{s.account.str(), s.id.str()}] = s;
    return s;
  }

  Status deleteSkill(const AccountId& acc, const SkillId& id) override {
    MutexLock lock(mu_);
    if (skills_.erase({acc.str(), id.str()}) == 0)
      return notFound("skill " + id.str() + " does not exist in account " + acc.str());
    return {};
  }

  Result<std::vector<Skill>> listSkills(const AccountId& acc) override {
    MutexLock lock(mu_);
    std::vector<Skill> out;
    for (const auto& [key, s] : skills_)
      if (key.first == acc.str()) out.push_back(s);
    std::ranges::sort(out, idLess<Skill>);
    return out;
  }

  Status putAgentState(const AgentState& s) override {
    MutexLock lock(mu_);
    AgentState stored = s;
    if (stored.updated_at == 0) stored.updated_at = clock_.nowMs();
    agent_states_[{s.account.str(), s.user.str()}] = std::move(stored);
    return {};
  }

  Result<std::vector<AgentState>> listAgentStates(const AccountId& acc) override {
    MutexLock lock(mu_);
    std::vector<AgentState> out;
    for (const auto& [key, s] : agent_states_)
      if (key.first == acc.str()) out.push_back(s);
    std::ranges::sort(out, [](const AgentState& a, const AgentState& b) {
      return idOrder(a.user.str(), b.user.str());
    });
    return out;
  }

  // ScheduleStore
  Status createSchedule(const Schedule& s) override {
    if (s.account.empty()) return invalid("schedule account is required");
    if (s.id.empty()) return invalid("schedule id is required");
    if (s.function.empty()) return invalid("schedule function is required");
    if (s.cron.empty()) return invalid("schedule cron expression is required");
    MutexLock lock(mu_);
    auto f = functions_.find(s.function.str());
    if (f == functions_.end() || f->second.account != s.account)
      return notFound(functionMissing(s.account, s.function));
    Key2 key{s.account.str(), s.id};
    if (schedules_.contains(key))
      return conflict("schedule " + s.id + " already exists in account " + s.account.str());
    Schedule stored = s;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    if (stored.updated_at == 0) stored.updated_at = stored.created_at;
    schedules_.emplace(std::move(key), std::make_pair(++seq_, std::move(stored)));
    return {};
  }

  Status updateSchedule(const Schedule& s) override {
    MutexLock lock(mu_);
    auto it = schedules_.find(Key2{s.account.str(), s.id});
    if (it == schedules_.end()) return notFound(scheduleMissing(s.account, s.id));
    Schedule& t = it->second.second;
    t.cron = s.cron;
    t.state = s.state;
    t.payload_json = s.payload_json;
    t.next_run_at = s.next_run_at;
    t.updated_at = s.updated_at ? s.updated_at : clock_.nowMs();
    return {};
  }

  Status deleteSchedule(const AccountId& acc, const std::string& id) override {
    MutexLock lock(mu_);
    if (schedules_.erase(Key2{acc.str(), id}) == 0) return notFound(scheduleMissing(acc, id));
    return {};
  }

  Result<Schedule> getSchedule(const AccountId& acc, const std::string& id) override {
    MutexLock lock(mu_);
    auto it = schedules_.find(Key2{acc.str(), id});
    if (it == schedules_.end()) return notFound(scheduleMissing(acc, id));
    return it->second.second;
  }

  Result<std::vector<Schedule>> listSchedules(const AccountId& acc) override {
    MutexLock lock(mu_);
    std::vector<std::pair<std::int64_t, Schedule>> sel;
    for (const auto& [key, v] : schedules_)
      if (v.second.account == acc) sel.push_back(v);
    std::ranges::sort(sel, [](const auto& a, const auto& b) {
      return std::tie(a.second.created_at, a.first) < std::tie(b.second.created_at, b.first);
    });
    std::vector<Schedule> out;
    for (auto& [seq, s] : sel) out.push_back(std::move(s));
    return out;
  }

  Result<std::vector<Schedule>> listDueSchedules(TimeMs now, int limit) override {
    MutexLock lock(mu_);
    std::vector<std::pair<std::int64_t, Schedule>> sel;
    for (const auto& [key, v] : schedules_)
      if (scheduleDue(v.second, now)) sel.push_back(v);
    std::ranges::sort(sel, [](const auto& a, const auto& b) {
      return std::tie(a.second.next_run_at, a.first) < std::tie(b.second.next_run_at, b.first);
    });
    std::vector<Schedule> out;
    for (auto& [seq, s] : sel) {
      if (std::ssize(out) >= limit) break;
      out.push_back(std::move(s));
    }
    return out;
  }

  Status claimScheduleRun(const ScheduleClaim& c) override {
    MutexLock lock(mu_);
    auto it = schedules_.find(Key2{c.account.str(), c.id});
    if (it == schedules_.end()) return notFound(scheduleMissing(c.account, c.id));
    Schedule& s = it->second.second;
    if (!claimable(s, c.due_at, c.now)) return scheduleTaken(c.account, c.id);
    s.running_id = c.run_id;
    s.running_until = c.running_until;
    s.last_due_at = c.due_at;
    s.last_started_at = c.now;
    s.next_run_at = c.next_run_at;
    return {};
  }

  Status skipScheduleRuns(const AccountId& acc, const std::string& id, TimeMs due_at,
                          TimeMs next_run_at, TimeMs now) override {
    MutexLock lock(mu_);
    auto it = schedules_.find(Key2{acc.str(), id});
    if (it == schedules_.end()) return notFound(scheduleMissing(acc, id));
    Schedule& s = it->second.second;
    if (!claimable(s, due_at, now)) return scheduleTaken(acc, id);
    s.next_run_at = next_run_at;
    return {};
  }

  Status finishScheduleRun(const ScheduleRunEnd& e) override {
    MutexLock lock(mu_);
    auto it = schedules_.find(Key2{e.account.str(), e.id});
    if (it == schedules_.end()) return notFound(scheduleMissing(e.account, e.id));
    Schedule& s = it->second.second;
    if (s.running_id.empty() || s.running_id != e.run_id)
      return conflict("schedule " + e.id + " is no longer claimed by run " + e.run_id);
    s.running_id.clear();
    s.running_until = 0;
    s.last_finished_at = e.finished_at;
    s.last_outcome = e.outcome;
    s.last_error = e.error;
    s.last_duration_ms = e.duration_ms;
    return {};
  }

  // OAuthStore
  Status createApp(const OAuthApp& a) override {
    if (a.account.empty()) return invalid("app account is required");
    if (a.client_id.empty()) return invalid("app client id is required");
    if (a.secret_hash.empty()) return invalid("app secret hash is required");
    MutexLock lock(mu_);
    for (const auto& o : apps_)
      if (o.account == a.account && o.client_id == a.client_id)
        return conflict("app " + a.client_id + " already exists in account " + a.account.str());
    OAuthApp stored = a;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    apps_.push_back(std::move(stored));
    return {};
  }

  Result<OAuthApp> getApp(const AccountId& acc, const std::string& client_id) override {
    MutexLock lock(mu_);
    for (const auto& a : apps_)
      if (a.account == acc && a.client_id == client_id) return a;
    return notFound(appMissing(acc, client_id));
  }

  Result<std::vector<OAuthApp>> listApps(const AccountId& acc) override {
    MutexLock lock(mu_);
    std::vector<OAuthApp> out;
    for (const auto& a : apps_)
      if (a.account == acc) out.push_back(a);
    std::ranges::stable_sort(out, {}, &OAuthApp::created_at);
    return out;
  }

  Status deleteApp(const AccountId& acc, const std::string& client_id) override {
    MutexLock lock(mu_);
    auto n = std::erase_if(
        apps_, [&](const OAuthApp& a) { return a.account == acc && a.client_id == client_id; });
    if (n == 0) return notFound(appMissing(acc, client_id));
    std::erase_if(tokens_, [&](const auto& kv) {
      return kv.second.second.account == acc && kv.second.second.client_id == client_id;
    });
    return {};
  }

  Status addAccessToken(const AccessToken& t, int keep) override {
    if (t.token_hash.empty()) return invalid("access token hash is required");
    if (t.client_id.empty()) return invalid("access token client id is required");
    MutexLock lock(mu_);
    bool app = std::ranges::any_of(apps_, [&](const OAuthApp& a) {
      return a.account == t.account && a.client_id == t.client_id;
    });
    if (!app) return notFound(appMissing(t.account, t.client_id));
    if (tokens_.contains(t.token_hash)) return conflict("access token already exists");
    AccessToken stored = t;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    const TimeMs now = stored.created_at;
    tokens_.emplace(t.token_hash, std::make_pair(++seq_, std::move(stored)));
    // The app's tokens, newest first; drop the expired ones and those past `keep`.
    std::vector<std::tuple<TimeMs, std::int64_t, std::string, TimeMs>> mine;
    for (const auto& [hash, v] : tokens_)
      if (v.second.account == t.account && v.second.client_id == t.client_id)
        mine.emplace_back(v.second.created_at, v.first, hash, v.second.expires_at);
    std::ranges::sort(mine, std::greater<>());
    int kept = 0;
    for (const auto& [created, seq, hash, expires] : mine) {
      if (expires <= now || kept >= keep) {
        tokens_.erase(hash);
      } else {
        ++kept;
      }
    }
    return {};
  }

  Result<AccessToken> getAccessToken(const std::string& token_hash) override {
    MutexLock lock(mu_);
    auto it = tokens_.find(token_hash);
    if (it == tokens_.end()) return notFound("access token does not exist");
    return it->second.second;
  }

  Status deleteExpiredAccessTokens(TimeMs now) override {
    MutexLock lock(mu_);
    std::erase_if(tokens_, [now](const auto& kv) { return kv.second.second.expires_at <= now; });
    return {};
  }

  static std::string appMissing(const AccountId& acc, const std::string& client_id) {
    return "app " + client_id + " does not exist in account " + acc.str();
  }

  // ConversationStore
  Status saveConversation(const Conversation& c) override {
    if (auto st = checkConversation(c); !st) return st;
    MutexLock lock(mu_);
    if (auto st = checkConversationOwner(c); !st) return st;
    if (auto st = checkFenceLocked(c); !st) return st;
    if (auto st = checkOneOpenLocked(c); !st) return st;
    storeLocked(c);
    return {};
  }

  // Conflict when `c` is open and its consumer has another open conversation in the account.
  Status checkOneOpenLocked(const Conversation& c) const PARLEY_REQUIRES(mu_) {
    if (c.state != ConversationState::kOpen) return {};
    auto it = open_by_consumer_.find(Key2{c.account.str(), c.consumer.str()});
    if (it != open_by_consumer_.end() && it->second != c.id.str())
      return internal::openConversationTaken(c, it->second);
    return {};
  }

  // As in SQLite: the stored counters are at least what the conversation's last message implies.
  Status checkFenceLocked(const Conversation& c) PARLEY_REQUIRES(mu_) {
    if (c.fence.empty()) return {};
    auto it = leases_.find(c.id.str());
    if (it != leases_.end() && it->second.fence() == c.fence) return {};
    return internal::fenceRefused(
        c, it == leases_.end() ? std::nullopt : std::optional<Lease>(it->second));
  }

  void storeLocked(const Conversation& c) PARLEY_REQUIRES(mu_) {
    if (auto old = conversations_.find(c.id.str()); old != conversations_.end()) {
      auto it = open_by_consumer_.find(Key2{old->second.account.str(), old->second.consumer.str()});
      if (it != open_by_consumer_.end() && it->second == c.id.str()) open_by_consumer_.erase(it);
    }
    if (c.state == ConversationState::kOpen)
      open_by_consumer_[Key2{c.account.str(), c.consumer.str()}] = c.id.str();
    Conversation& stored = conversations_[c.id.str()] = c;
    stored.fence = {};  // a write's credential, not part of the conversation
    if (auto mt = messages_.find(c.id.str()); mt != messages_.end() && !mt->second.empty()) {
      const Message& last = mt->second.rbegin()->second;
      stored.next_sequence = std::max(stored.next_sequence, last.sequence + 1);
      stored.updated_at = std::max(stored.updated_at, last.server_ts);
    }
  }

  Status appendMessage(const Conversation& c, const Message& m) override {
    if (auto st = checkConversation(c); !st) return st;
    if (m.conversation != c.id)
      return invalid("message conversation " + m.conversation.str() +
                     " differs from conversation " + c.id.str());
    if (auto st = internal::checkAppendCounters(c, m); !st) return st;
    MutexLock lock(mu_);
    if (auto st = checkConversationOwner(c); !st) return st;
    if (auto st = checkFenceLocked(c); !st) return st;
    if (auto st = checkOneOpenLocked(c); !st) return st;
    auto& msgs = messages_[c.id.str()];
    if (msgs.contains(m.sequence))
      return conflict("message " + std::to_string(m.sequence) + " already exists in conversation " +
                      c.id.str());
    if (!m.idempotency_key.empty() && findByKeyLocked(c.id, m.originator_id, m.idempotency_key))
      return internal::duplicateKey(c, m);
    msgs.emplace(m.sequence, m);
    storeLocked(c);
    return {};
  }

  // A linear scan of the conversation's messages: the memory store is for tests and demos.
  const Message* findByKeyLocked(const ConversationId& id, const std::string& originator_id,
                                 const std::string& key) PARLEY_REQUIRES(mu_) {
    if (key.empty()) return nullptr;
    auto it = messages_.find(id.str());
    if (it == messages_.end()) return nullptr;
    for (const auto& [_, m] : it->second)
      if (m.idempotency_key == key && m.originator_id == originator_id) return &m;
    return nullptr;
  }

  Result<std::optional<Message>> findMessageByKey(const ConversationId& id,
                                                  const std::string& originator_id,
                                                  const std::string& key) override {
    MutexLock lock(mu_);
    const Message* m = findByKeyLocked(id, originator_id, key);
    if (!m) return std::optional<Message>();
    return std::optional<Message>(*m);
  }

  Result<Conversation> getConversation(const AccountId& acc, const ConversationId& id) override {
    MutexLock lock(mu_);
    auto it = conversations_.find(id.str());
    if (it == conversations_.end() || it->second.account != acc)
      return notFound("conversation " + id.str() + " does not exist in account " + acc.str());
    return it->second;
  }

  Result<std::vector<Conversation>> listConversations(const AccountId& acc,
                                                      const ConversationQuery& q) override {
    MutexLock lock(mu_);
    std::vector<Conversation> out;
    for (const auto& [_, c] : conversations_) {
      if (c.account != acc) continue;
      if (q.state && c.state != *q.state) continue;
      if (q.skill && c.skill != *q.skill) continue;
      if (q.consumer && c.consumer != *q.consumer) continue;
      out.push_back(c);
    }
    std::ranges::sort(out, conversationLess);
    return firstN(std::move(out), q.limit);
  }

  Result<std::vector<Conversation>> listOpenConversations() override {
    MutexLock lock(mu_);
    std::vector<Conversation> out;
    for (const auto& [_, c] : conversations_)
      if (c.state == ConversationState::kOpen) out.push_back(c);
    std::ranges::sort(out, conversationLess);
    return out;
  }

  Result<std::vector<Message>> listMessages(const ConversationId& id, std::int64_t from_seq,
                                            int limit) override {
    MutexLock lock(mu_);
    std::vector<Message> out;
    auto it = messages_.find(id.str());
    if (it == messages_.end() || limit <= 0) return out;
    for (auto m = it->second.lower_bound(from_seq);
         m != it->second.end() && out.size() < static_cast<std::size_t>(limit); ++m) {
      out.push_back(m->second);
      out.back().idempotency_key.clear();  // as the other stores: only findMessageByKey reads it
    }
    return out;
  }

  // Store
  Result<ErasureResult> eraseConversationContent(const AccountId& acc,
                                                 const ConversationId& id) override {
    MutexLock lock(mu_);
    auto c = conversations_.find(id.str());
    if (c == conversations_.end() || c->second.account != acc)
      return std::unexpected(internal::erasureMissing(acc, id).error());
    if (c->second.state == ConversationState::kOpen)
      return std::unexpected(internal::erasureOfOpen(id).error());
    erased_.insert({acc.str(), id.str()});
    ErasureResult out;
    if (c->second.context_json != "{}") {
      c->second.context_json = "{}";
      out.context = true;
    }
    if (auto ms = messages_.find(id.str()); ms != messages_.end())
      for (auto& [_, m] : ms->second) {
        std::string event = erasedEventJson(m.event_json);
        if (event == m.event_json && m.metadata_json == "[]") continue;
        m.event_json = std::move(event);
        m.metadata_json = "[]";
        ++out.messages;
      }
    for (auto& [_, t] : turns_) {
      if (t.account != acc || t.conversation != id) continue;
      if (t.input_json == "{}" && t.response_json == "{}" && t.actions_json == "[]" &&
          t.error.empty())
        continue;
      t.input_json = "{}";
      t.response_json = "{}";
      t.actions_json = "[]";
      t.error.clear();
      ++out.turns;
    }
    out.pending_turns = static_cast<std::int64_t>(std::erase_if(pending_, [&](const auto& kv) {
      return kv.second.second.account == acc && kv.second.second.conversation == id;
    }));
    out.properties = static_cast<std::int64_t>(std::erase_if(context_, [&](const auto& kv) {
      return std::get<0>(kv.first) == acc.str() && std::get<2>(kv.first) == id.str();
    }));
    return out;
  }

  // FunctionStore
  Status createFunction(const FunctionRecord& f) override {
    if (f.uuid.empty()) return invalid("function uuid is required");
    if (f.account.empty()) return invalid("function account is required");
    if (f.name.empty()) return invalid("function name is required");
    MutexLock lock(mu_);
    if (functions_.contains(f.uuid.str()))
      return conflict("function " + f.uuid.str() + " already exists");
    if (functionNameTaken(f)) return conflict(functionNameMessage(f));
    FunctionRecord stored = f;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    if (stored.updated_at == 0) stored.updated_at = stored.created_at;
    functions_.emplace(f.uuid.str(), std::move(stored));
    return {};
  }

  Status updateFunction(const FunctionRecord& f) override {
    MutexLock lock(mu_);
    auto it = functions_.find(f.uuid.str());
    if (it == functions_.end() || it->second.account != f.account)
      return notFound(functionMissing(f.account, f.uuid));
    if (functionNameTaken(f)) return conflict(functionNameMessage(f));
    it->second = f;
    return {};
  }

  Status deleteFunction(const AccountId& acc, const FunctionId& id) override {
    MutexLock lock(mu_);
    auto it = functions_.find(id.str());
    if (it == functions_.end() || it->second.account != acc)
      return notFound(functionMissing(acc, id));
    functions_.erase(it);
    std::erase_if(deployments_, [&](const auto& d) { return d.second.function == id; });
    std::erase_if(logs_, [&](const auto& l) { return l.second.function == id; });
    std::erase_if(schedules_, [&](const auto& kv) {
      return kv.second.second.account == acc && kv.second.second.function == id;
    });
    return {};
  }

  Result<FunctionRecord> getFunction(const AccountId& acc, const FunctionId& id) override {
    MutexLock lock(mu_);
    auto it = functions_.find(id.str());
    if (it == functions_.end() || it->second.account != acc)
      return notFound(functionMissing(acc, id));
    return it->second;
  }

  Result<std::vector<FunctionRecord>> listFunctions(const AccountId& acc) override {
    MutexLock lock(mu_);
    std::vector<FunctionRecord> out;
    for (const auto& [_, f] : functions_)
      if (f.account == acc) out.push_back(f);
    std::ranges::sort(out, [](const FunctionRecord& a, const FunctionRecord& b) {
      return std::tie(a.name, a.uuid) < std::tie(b.name, b.uuid);
    });
    return out;
  }

  Status addDeployment(const Deployment& d) override {
    if (d.uuid.empty()) return invalid("deployment uuid is required");
    MutexLock lock(mu_);
    for (const auto& [_, other] : deployments_)
      if (other.uuid == d.uuid) return conflict("deployment " + d.uuid + " already exists");
    Deployment stored = d;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    deployments_.emplace_back(++seq_, std::move(stored));
    return {};
  }

  Result<std::vector<Deployment>> listDeployments(const AccountId& acc, const FunctionId& id,
                                                  int limit) override {
    MutexLock lock(mu_);
    return firstN(deploymentsNewestFirst(acc, id), limit);
  }

  Status pruneDeployments(const AccountId& acc, const FunctionId& id, int keep) override {
    MutexLock lock(mu_);
    auto all = deploymentsNewestFirst(acc, id);
    std::set<std::string> drop;
    for (std::size_t i = static_cast<std::size_t>(std::max(keep, 0)); i < all.size(); ++i)
      drop.insert(all[i].uuid);
    std::erase_if(deployments_, [&](const auto& d) { return drop.contains(d.second.uuid); });
    return {};
  }

  Status appendLogs(const std::vector<InvocationLog>& logs) override {
    MutexLock lock(mu_);
    for (const auto& l : logs) logs_.emplace_back(++seq_, l);
    return {};
  }

  Result<std::vector<InvocationLog>> listLogs(const AccountId& acc, const FunctionId& id,
                                              TimeMs since, int limit) override {
    MutexLock lock(mu_);
    std::vector<std::pair<std::int64_t, InvocationLog>> sel;
    for (const auto& l : logs_)
      if (l.second.account == acc && l.second.function == id && l.second.ts >= since)
        sel.push_back(l);
    std::ranges::sort(sel, [](const auto& a, const auto& b) {
      return std::tie(a.second.ts, a.first) > std::tie(b.second.ts, b.first);
    });
    std::vector<InvocationLog> out;
    for (auto& [_, l] : sel) out.push_back(std::move(l));
    return firstN(std::move(out), limit);
  }

  Status putSecret(const Secret& s) override {
    if (s.key.empty()) return invalid("secret key is required");
    MutexLock lock(mu_);
    Secret stored = s;
    if (stored.updated_at == 0) stored.updated_at = clock_.nowMs();
    secrets_[{s.account.str(), s.key}] = std::move(stored);
    return {};
  }

  Result<Secret> getSecret(const AccountId& acc, const std::string& key) override {
    MutexLock lock(mu_);
    auto it = secrets_.find({acc.str(), key});
    if (it == secrets_.end())
      return notFound("secret '" + key + "' does not exist in account " + acc.str());
    return it->second;
  }

  Status deleteSecret(const AccountId& acc, const std::string& key) override {
    MutexLock lock(mu_);
    if (secrets_.erase({acc.str(), key}) == 0)
      return notFound("secret '" + key + "' does not exist in account " + acc.str());
    return {};
  }

  Result<std::vector<std::string>> listSecretKeys(const AccountId& acc) override {
    MutexLock lock(mu_);
    std::vector<std::string> out;
    for (const auto& [key, _] : secrets_)
      if (key.first == acc.str()) out.push_back(key.second);
    return out;
  }

  Status appendSecretAudit(const SecretAuditEntry& e, int keep) override {
    if (e.account.empty()) return invalid("account id is required");
    MutexLock lock(mu_);
    auto& list = secret_audit_[e.account.str()];
    list.push_back(e);
    if (list.back().ts == 0) list.back().ts = clock_.nowMs();
    while (!list.empty() && list.size() > static_cast<std::size_t>(std::max(keep, 0)))
      list.pop_front();
    return {};
  }

  Result<std::vector<SecretAuditEntry>> listSecretAudit(const AccountId& acc, int limit) override {
    MutexLock lock(mu_);
    std::vector<SecretAuditEntry> out;
    auto it = secret_audit_.find(acc.str());
    if (it == secret_audit_.end()) return out;
    for (auto e = it->second.rbegin();
         e != it->second.rend() && static_cast<int>(out.size()) < limit; ++e)
      out.push_back(*e);
    return out;
  }

  Status putAllowlist(const AccountId& acc, const std::vector<std::string>& domains) override {
    MutexLock lock(mu_);
    allowlists_[acc.str()] = domains;
    return {};
  }

  Result<std::vector<std::string>> getAllowlist(const AccountId& acc) override {
    MutexLock lock(mu_);
    auto it = allowlists_.find(acc.str());
    if (it == allowlists_.end()) return std::vector<std::string>{};
    return it->second;
  }

  Status putContextProperty(const ContextProperty& p) override {
    if (p.ns.empty()) return invalid("context namespace is required");
    if (p.name.empty()) return invalid("context property name is required");
    MutexLock lock(mu_);
    context_[{p.account.str(), p.ns, p.session_id, p.name}] = p;
    return {};
  }

  Result<std::vector<ContextProperty>> listContextProperties(const AccountId& acc,
                                                             const std::string& ns,
                                                             const std::string& session) override {
    MutexLock lock(mu_);
    const TimeMs now = clock_.nowMs();
    std::vector<ContextProperty> out;
    for (const auto& [key, p] : context_)
      if (std::get<0>(key) == acc.str() && std::get<1>(key) == ns && std::get<2>(key) == session &&
          !internal::expired(p, now))
        out.push_back(p);
    return out;
  }

  Status deleteContextProperties(const AccountId& acc, const std::string& ns,
                                 const std::string& session, const std::string& name) override {
    MutexLock lock(mu_);
    std::erase_if(context_, [&](const auto& kv) {
      const auto& [a, n, s, nm] = kv.first;
      return a == acc.str() && n == ns && s == session && (name.empty() || nm == name);
    });
    return {};
  }

  // BotStore
  Status createBot(const BotRecord& b) override {
    if (b.id.empty()) return invalid("bot id is required");
    if (b.account.empty()) return invalid("bot account is required");
    MutexLock lock(mu_);
    if (bots_.contains({b.account.str(), b.id.str()}))
      return conflict("bot " + b.id.str() + " already exists in account " + b.account.str());
    if (auto st = checkBotUser(b); !st) return st;
    BotRecord stored = b;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    if (stored.updated_at == 0) stored.updated_at = stored.created_at;
    bots_.emplace(std::pair{b.account.str(), b.id.str()}, std::move(stored));
    return {};
  }

  Status updateBot(const BotRecord& b) override {
    MutexLock lock(mu_);
    auto it = bots_.find({b.account.str(), b.id.str()});
    if (it == bots_.end()) return notFound(botMissing(b.account, b.id));
    if (auto st = checkBotUser(b); !st) return st;
    it->second = b;
    return {};
  }

  Status deleteBot(const AccountId& acc, const BotId& id) override {
    MutexLock lock(mu_);
    if (bots_.erase({acc.str(), id.str()}) == 0) return notFound(botMissing(acc, id));
    std::erase_if(turns_,
                  [&](const auto& t) { return t.second.account == acc && t.second.bot == id; });
    return {};
  }

  Result<BotRecord> getBot(const AccountId& acc, const BotId& id) override {
    MutexLock lock(mu_);
    auto it = bots_.find({acc.str(), id.str()});
    if (it == bots_.end()) return notFound(botMissing(acc, id));
    return it->second;
  }

  Result<std::vector<BotRecord>> listBots(const AccountId& acc) override {
    MutexLock lock(mu_);
    std::vector<BotRecord> out;
    for (const auto& [key, b] : bots_)
      if (key.first == acc.str()) out.push_back(b);
    return out;
  }

  Result<std::vector<BotRecord>> listAllBots() override {
    MutexLock lock(mu_);
    std::vector<BotRecord> out;
    for (const auto& [_, b] : bots_) out.push_back(b);
    return out;
  }

  Status appendTurn(const TurnRecord& t, int keep) override {
    if (t.turn_id.empty()) return invalid("turn id is required");
    MutexLock lock(mu_);
    std::erase_if(turns_, [&](const auto& x) {
      return x.second.account == t.account && x.second.bot == t.bot &&
             x.second.turn_id == t.turn_id;
    });
    turns_.emplace_back(++seq_, t);
    if (erased_.contains({t.account.str(), t.conversation.str()})) {
      // Written after its conversation's erasure: stored without texts.
      TurnRecord& stored = turns_.back().second;
      stored.input_json = "{}";
      stored.response_json = "{}";
      stored.actions_json = "[]";
      stored.error.clear();
    }
    auto newest = turnsNewestFirst(t.account, t.bot);
    std::set<std::int64_t> drop;
    for (std::size_t i = static_cast<std::size_t>(std::max(keep, 0)); i < newest.size(); ++i)
      drop.insert(newest[i].first);
    std::erase_if(turns_, [&](const auto& x) { return drop.contains(x.first); });
    return {};
  }

  Result<std::vector<TurnRecord>> listTurns(const AccountId& acc, const BotId& id,
                                            int limit) override {
    MutexLock lock(mu_);
    std::vector<TurnRecord> out;
    for (auto& [_, t] : turnsNewestFirst(acc, id)) out.push_back(std::move(t));
    return firstN(std::move(out), limit);
  }

  Status putPendingTurn(const PendingTurn& p) override {
    if (p.turn_id.empty()) return invalid("turn id is required");
    MutexLock lock(mu_);
    PendingTurn stored = p;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    auto it = pending_.find(p.turn_id);
    if (it != pending_.end()) {
      it->second.second = std::move(stored);
    } else {
      pending_.emplace(p.turn_id, std::pair{++seq_, std::move(stored)});
    }
    return {};
  }

  Status deletePendingTurn(const std::string& turn_id) override {
    MutexLock lock(mu_);
    pending_.erase(turn_id);
    return {};
  }

  Status putImageAllowlist(const AccountId& acc, const std::vector<std::string>& entries) override {
    if (acc.empty()) return invalid("account is required");
    MutexLock lock(mu_);
    image_allowlists_[acc.str()] = entries;
    return {};
  }

  Result<std::vector<std::string>> getImageAllowlist(const AccountId& acc) override {
    MutexLock lock(mu_);
    auto it = image_allowlists_.find(acc.str());
    if (it == image_allowlists_.end())
      return notFound("account " + acc.str() + " has no image allowlist");
    return it->second;
  }

  Status deleteImageAllowlist(const AccountId& acc) override {
    MutexLock lock(mu_);
    if (image_allowlists_.erase(acc.str()) == 0)
      return notFound("account " + acc.str() + " has no image allowlist");
    return {};
  }

  Result<std::vector<PendingTurn>> listPendingTurns() override {
    MutexLock lock(mu_);
    std::vector<std::pair<std::int64_t, PendingTurn>> sel(pending_.size());
    std::ranges::transform(pending_, sel.begin(), [](const auto& kv) { return kv.second; });
    std::ranges::sort(sel, [](const auto& a, const auto& b) {
      return std::tie(a.second.created_at, a.first) < std::tie(b.second.created_at, b.first);
    });
    std::vector<PendingTurn> out;
    for (auto& [_, p] : sel) out.push_back(std::move(p));
    return out;
  }

 private:
  using Key2 = std::pair<std::string, std::string>;

  // Shorter ids first, then byte order: numeric ids (without leading zeros) sort numerically.
  static bool idOrder(const std::string& a, const std::string& b) {
    return std::pair(a.size(), std::string_view(a)) < std::pair(b.size(), std::string_view(b));
  }
  template <class T>
  static bool idLess(const T& a, const T& b) {
    return idOrder(a.id.str(), b.id.str());
  }
  static bool conversationLess(const Conversation& a, const Conversation& b) {
    return std::tie(a.start_ts, a.id) < std::tie(b.start_ts, b.id);
  }

  static Status checkConversation(const Conversation& c) {
    if (c.id.empty()) return invalid("conversation id is required");
    if (c.account.empty()) return invalid("conversation account is required");
    return {};
  }
  Status checkConversationOwner(const Conversation& c) const PARLEY_REQUIRES(mu_) {
    auto it = conversations_.find(c.id.str());
    if (it != conversations_.end() && it->second.account != c.account)
      return conflict("conversation " + c.id.str() + " belongs to another account");
    return {};
  }

  const User* findUserByLogin(const AccountId& acc, const std::string& login) const
      PARLEY_REQUIRES(mu_) {
    for (const auto& [key, u] : users_)
      if (key.first == acc.str() && u.login_name == login) return &u;
    return nullptr;
  }

  bool functionNameTaken(const FunctionRecord& f) const PARLEY_REQUIRES(mu_) {
    for (const auto& [_, other] : functions_)
      if (other.account == f.account && other.name == f.name && other.uuid != f.uuid) return true;
    return false;
  }
  static std::string functionNameMessage(const FunctionRecord& f) {
    return "function name '" + f.name + "' is taken in account " + f.account.str();
  }
  static std::string functionMissing(const AccountId& acc, const FunctionId& id) {
    return "function " + id.str() + " does not exist in account " + acc.str();
  }
  std::vector<Deployment> deploymentsNewestFirst(const AccountId& acc, const FunctionId& id)
      PARLEY_REQUIRES(mu_) {
    std::vector<std::pair<std::int64_t, Deployment>> sel;
    for (const auto& d : deployments_)
      if (d.second.account == acc && d.second.function == id) sel.push_back(d);
    std::ranges::sort(sel, [](const auto& a, const auto& b) {
      return std::tie(a.second.created_at, a.first) > std::tie(b.second.created_at, b.first);
    });
    std::vector<Deployment> out;
    for (auto& [_, d] : sel) out.push_back(std::move(d));
    return out;
  }

  Status checkBotUser(const BotRecord& b) const PARLEY_REQUIRES(mu_) {
    if (b.user.empty()) return {};
    for (const auto& [_, other] : bots_)
      if (other.account == b.account && other.user == b.user && other.id != b.id)
        return conflict("user " + b.user.str() + " already has bot " + other.id.str());
    return {};
  }
  static std::string scheduleMissing(const AccountId& acc, const std::string& id) {
    return "schedule " + id + " does not exist in account " + acc.str();
  }
  static std::unexpected<Error> scheduleTaken(const AccountId& acc, const std::string& id) {
    return conflict("schedule " + id + " in account " + acc.str() +
                    " was claimed, edited or is running");
  }
  static bool scheduleDue(const Schedule& s, TimeMs now) {
    return s.state == ScheduleState::kActive && s.next_run_at > 0 && s.next_run_at <= now &&
           s.running_until <= now;
  }
  static bool claimable(const Schedule& s, TimeMs due_at, TimeMs now) {
    return s.state == ScheduleState::kActive && s.next_run_at == due_at && s.running_until <= now;
  }
  static std::string botMissing(const AccountId& acc, const BotId& id) {
    return "bot " + id.str() + " does not exist in account " + acc.str();
  }
  std::vector<std::pair<std::int64_t, TurnRecord>> turnsNewestFirst(const AccountId& acc,
                                                                    const BotId& id)
      PARLEY_REQUIRES(mu_) {
    std::vector<std::pair<std::int64_t, TurnRecord>> sel;
    for (const auto& t : turns_)
      if (t.second.account == acc && t.second.bot == id) sel.push_back(t);
    std::ranges::sort(sel, [](const auto& a, const auto& b) {
      return std::tie(a.second.ts, a.first) > std::tie(b.second.ts, b.first);
    });
    return sel;
  }

  const Clock& clock_;
  Mutex mu_;
  // Everything below is guarded by mu_.
  std::int64_t seq_ PARLEY_GUARDED_BY(mu_) = 0;  // insertion order for rows ordered "newest first"
  std::map<std::string, Account> accounts_ PARLEY_GUARDED_BY(mu_);
  std::map<Key2, User> users_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::int64_t> next_user_id_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, Session> sessions_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, ApiKey> api_keys_ PARLEY_GUARDED_BY(mu_);
  std::vector<std::string> api_key_order_ PARLEY_GUARDED_BY(mu_);  // key hashes in insertion order
  std::vector<OAuthApp> apps_ PARLEY_GUARDED_BY(mu_);              // in insertion order
  // By token hash: (insertion order, token).
  std::map<std::string, std::pair<std::int64_t, AccessToken>> tokens_ PARLEY_GUARDED_BY(mu_);
  std::map<Key2, Skill> skills_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::int64_t> next_skill_id_ PARLEY_GUARDED_BY(mu_);
  std::map<Key2, AgentState> agent_states_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, Conversation> conversations_ PARLEY_GUARDED_BY(mu_);
  // (account, consumer) -> the id of the consumer's open conversation: at most one (store.h).
  std::map<Key2, std::string> open_by_consumer_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::map<std::int64_t, Message>> messages_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, FunctionRecord> functions_ PARLEY_GUARDED_BY(mu_);
  std::vector<std::pair<std::int64_t, Deployment>> deployments_ PARLEY_GUARDED_BY(mu_);
  std::vector<std::pair<std::int64_t, InvocationLog>> logs_ PARLEY_GUARDED_BY(mu_);
  std::map<Key2, Secret> secrets_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::deque<SecretAuditEntry>> secret_audit_
      PARLEY_GUARDED_BY(mu_);  // by account, oldest first
  std::map<std::string, std::vector<std::string>> allowlists_ PARLEY_GUARDED_BY(mu_);
  std::map<std::tuple<std::string, std::string, std::string, std::string>, ContextProperty> context_
      PARLEY_GUARDED_BY(mu_);
  std::map<Key2, BotRecord> bots_ PARLEY_GUARDED_BY(mu_);
  std::vector<std::pair<std::int64_t, TurnRecord>> turns_ PARLEY_GUARDED_BY(mu_);
  // (account, conversation) of the conversations whose content was erased.
  std::set<std::pair<std::string, std::string>> erased_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::pair<std::int64_t, PendingTurn>> pending_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> image_allowlists_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, std::string> material_ PARLEY_GUARDED_BY(mu_);
  std::map<std::string, Lease> leases_ PARLEY_GUARDED_BY(mu_);
  // By (account, id): (insertion order, schedule).
  std::map<Key2, std::pair<std::int64_t, Schedule>> schedules_ PARLEY_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<Store> makeMemoryStore(const Clock& clock) {
  return std::make_unique<MemoryStore>(clock);
}

}  // namespace parley::store
