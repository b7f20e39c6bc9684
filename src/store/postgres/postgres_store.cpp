#include "store/postgres/postgres_store.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/json.h"
#include "common/mutex_unlock.h"
#include "common/prometheus.h"
#include "common/random.h"
#include "store/postgres/conn.h"
#include "store/postgres/schema.h"
#include "store/store_util.h"

namespace parley::store {
namespace {

using pg::Conn;
using pg::Param;
using pg::Rows;

#define PARLEY_PG_TRY(expr)                                   \
  do {                                                        \
    if (auto try_status_ = (expr); !try_status_)              \
      return std::unexpected(std::move(try_status_).error()); \
  } while (0)

// A binary parameter (bytea).
struct Blob {
  std::string_view bytes;
};

Param toParam(const std::string& s) { return Param{s, false}; }
Param toParam(const char* s) { return Param{s, false}; }
Param toParam(const Blob& b) { return Param{std::string(b.bytes), true}; }
template <class T>
requires std::is_integral_v<T> Param toParam(T v) { return Param{std::to_string(v), false}; }

template <class... Args>
std::vector<Param> params(const Args&... args) {
  std::vector<Param> out;
  out.reserve(sizeof...(args));
  (out.push_back(toParam(args)), ...);
  return out;
}

template <class... Args>
Result<Rows> run(Conn& c, const std::string& sql, const Args&... args) {
  return c.query(sql, params(args...));
}

// Rows changed by the statement.
template <class... Args>
Result<std::int64_t> execute(Conn& c, const std::string& sql, const Args&... args) {
  auto r = run(c, sql, args...);
  if (!r) return std::unexpected(r.error());
  return r->affected();
}

template <class T, class RowFn, class... Args>
Result<std::vector<T>> selectAll(Conn& c, const std::string& sql, RowFn row, const Args&... args) {
  auto r = run(c, sql, args...);
  if (!r) return std::unexpected(r.error());
  std::vector<T> out;
  out.reserve(static_cast<std::size_t>(r->size()));
  for (int i = 0; i < r->size(); ++i) out.push_back(row(*r, i));
  return out;
}

template <class T, class RowFn, class... Args>
Result<std::optional<T>> selectOne(Conn& c, const std::string& sql, RowFn row,
                                   const Args&... args) {
  auto r = run(c, sql, args...);
  if (!r) return std::unexpected(r.error());
  if (r->size() == 0) return std::optional<T>();
  return std::optional<T>(row(*r, 0));
}

template <class... Args>
Result<bool> exists(Conn& c, const std::string& sql, const Args&... args) {
  auto r = run(c, sql, args...);
  if (!r) return std::unexpected(r.error());
  return r->size() > 0;
}

Status conflictAs(Status st, const std::string& message) {
  if (!st && st.error().code == ErrorCode::kConflict) return conflict(message);
  return st;
}
template <class T>
Status asStatus(const Result<T>& r) {
  if (!r) return std::unexpected(r.error());
  return {};
}
Status changedOrNotFound(const Result<std::int64_t>& n, const std::string& message) {
  if (!n) return std::unexpected(n.error());
  if (*n == 0) return notFound(message);
  return {};
}

// ---- JSON columns ---------------------------------------------------------------------------

std::string rolesJson(const std::vector<Role>& roles) {
  boost::json::array a;
  for (Role r : roles) a.emplace_back(roleName(r));
  return json::dump(a);
}
std::vector<Role> parseRolesJson(const std::string& text) {
  std::vector<Role> out;
  auto v = json::parse(text);
  if (!v || !v->is_array()) return out;
  for (const auto& e : v->as_array())
    if (e.is_string())
      if (auto r = parseRole(std::string_view(e.as_string()))) out.push_back(*r);
  return out;
}
std::string stringsJson(const auto& items) {
  boost::json::array a;
  for (const auto& s : items) {
    if constexpr (std::is_same_v<std::decay_t<decltype(s)>, std::string>)
      a.emplace_back(s);
    else
      a.emplace_back(s.str());
  }
  return json::dump(a);
}
std::vector<std::string> parseStringsJson(const std::string& text) {
  std::vector<std::string> out;
  auto v = json::parse(text);
  if (!v || !v->is_array()) return out;
  for (const auto& e : v->as_array())
    if (e.is_string()) out.emplace_back(e.as_string());
  return out;
}
std::string envJson(const std::vector<EnvVar>& env) {
  boost::json::array a;
  for (const auto& e : env) a.push_back(boost::json::object{{"key", e.key}, {"value", e.value}});
  return json::dump(a);
}
std::vector<EnvVar> parseEnvJson(const std::string& text) {
  std::vector<EnvVar> out;
  auto v = json::parse(text);
  if (!v || !v->is_array()) return out;
  for (const auto& e : v->as_array())
    if (e.is_object())
      out.push_back(
          {json::getString(e.as_object(), "key"), json::getString(e.as_object(), "value")});
  return out;
}
template <class E>
E parsedOr(Result<E> r, E def) {
  return r ? *r : def;
}

std::string participantsJson(const std::vector<Participant>& ps) {
  boost::json::array a;
  for (const auto& p : ps)
    a.push_back(boost::json::object{{"id", p.id},
                                    {"role", participantRoleName(p.role)},
                                    {"state", participantStateName(p.state)},
                                    {"joined_at", p.joined_at}});
  return json::dump(a);
}
std::vector<Participant> parseParticipantsJson(const std::string& text) {
  std::vector<Participant> out;
  auto v = json::parse(text);
  if (!v || !v->is_array()) return out;
  for (const auto& e : v->as_array()) {
    if (!e.is_object()) continue;
    const auto& o = e.as_object();
    out.push_back(Participant{
        json::getString(o, "id"),
        parsedOr(parseParticipantRole(json::getString(o, "role")), ParticipantRole::kReader),
        parsedOr(parseParticipantState(json::getString(o, "state")), ParticipantState::kSuggested),
        json::getInt(o, "joined_at")});
  }
  return out;
}

// ---- Row mappers (column order matches the SELECT lists) --------------------------------------

constexpr const char* kAccountCols =
    "id, name, ttr_urgent_s, ttr_prioritized_s, ttr_normal_s, created_at, status";
Account accountRow(const Rows& r, int i) {
  Account a;
  a.id = AccountId(r.text(i, 0));
  a.name = r.text(i, 1);
  a.ttr_urgent_s = r.i64(i, 2);
  a.ttr_prioritized_s = r.i64(i, 3);
  a.ttr_normal_s = r.i64(i, 4);
  a.created_at = r.i64(i, 5);
  a.status = parsedOr(parseAccountStatus(r.text(i, 6)), AccountStatus::kDisabled);
  return a;
}

constexpr const char* kUserCols =
    "account, id, pid, login_name, password_hash, roles_json, type, skills_json, "
    "max_open_conversations, created_at, status";
User userRow(const Rows& r, int i) {
  User u;
  u.account = AccountId(r.text(i, 0));
  u.id = UserId(r.text(i, 1));
  u.pid = r.text(i, 2);
  u.login_name = r.text(i, 3);
  u.password_hash = r.text(i, 4);
  u.roles = parseRolesJson(r.text(i, 5));
  u.type = parsedOr(parseUserType(r.text(i, 6)), UserType::kHuman);
  for (auto& s : parseStringsJson(r.text(i, 7))) u.skills.emplace_back(std::move(s));
  u.max_open_conversations = static_cast<int>(r.i64(i, 8));
  u.created_at = r.i64(i, 9);
  u.status = parsedOr(parseUserStatus(r.text(i, 10)), UserStatus::kDisabled);
  return u;
}

constexpr const char* kSessionCols = "bearer_hash, csrf, account, user_id, created_at, expires_at";
Session sessionRow(const Rows& r, int i) {
  Session s;
  s.bearer_hash = r.text(i, 0);
  s.csrf = r.text(i, 1);
  s.account = AccountId(r.text(i, 2));
  s.user = UserId(r.text(i, 3));
  s.created_at = r.i64(i, 4);
  s.expires_at = r.i64(i, 5);
  return s;
}

constexpr const char* kApiKeyCols =
    "key_hash, account, user_id, name, created_at, id, scopes_json, expires_at, created_by";
ApiKey apiKeyRow(const Rows& r, int i) {
  ApiKey k;
  k.key_hash = r.text(i, 0);
  k.account = AccountId(r.text(i, 1));
  k.user = UserId(r.text(i, 2));
  k.name = r.text(i, 3);
  k.created_at = r.i64(i, 4);
  k.id = r.text(i, 5);
  k.scopes = parseRolesJson(r.text(i, 6));
  k.expires_at = r.i64(i, 7);
  k.created_by = UserId(r.text(i, 8));
  return k;
}

constexpr const char* kOAuthAppCols =
    "account, client_id, name, secret_hash, scopes_json, created_at, created_by";
OAuthApp oauthAppRow(const Rows& r, int i) {
  OAuthApp a;
  a.account = AccountId(r.text(i, 0));
  a.client_id = r.text(i, 1);
  a.name = r.text(i, 2);
  a.secret_hash = r.text(i, 3);
  a.scopes = parseStringsJson(r.text(i, 4));
  a.created_at = r.i64(i, 5);
  a.created_by = UserId(r.text(i, 6));
  return a;
}

constexpr const char* kAccessTokenCols =
    "token_hash, account, client_id, scopes_json, created_at, expires_at";
AccessToken accessTokenRow(const Rows& r, int i) {
  AccessToken t;
  t.token_hash = r.text(i, 0);
  t.account = AccountId(r.text(i, 1));
  t.client_id = r.text(i, 2);
  t.scopes = parseStringsJson(r.text(i, 3));
  t.created_at = r.i64(i, 4);
  t.expires_at = r.i64(i, 5);
  return t;
}

constexpr const char* kScheduleCols =
    "account, id, function_uuid, cron, state, payload_json, next_run_at, running_id, "
    "running_until, last_due_at, last_started_at, last_finished_at, last_outcome, last_error, "
    "last_duration_ms, created_by, created_at, updated_at";
Schedule scheduleRow(const Rows& r, int i) {
  Schedule s;
  s.account = AccountId(r.text(i, 0));
  s.id = r.text(i, 1);
  s.function = FunctionId(r.text(i, 2));
  s.cron = r.text(i, 3);
  s.state = parseScheduleState(r.text(i, 4)).value_or(ScheduleState::kPaused);
  s.payload_json = r.text(i, 5);
  s.next_run_at = r.i64(i, 6);
  s.running_id = r.text(i, 7);
  s.running_until = r.i64(i, 8);
  s.last_due_at = r.i64(i, 9);
  s.last_started_at = r.i64(i, 10);
  s.last_finished_at = r.i64(i, 11);
  s.last_outcome = r.text(i, 12);
  s.last_error = r.text(i, 13);
  s.last_duration_ms = r.i64(i, 14);
  s.created_by = r.text(i, 15);
  s.created_at = r.i64(i, 16);
  s.updated_at = r.i64(i, 17);
  return s;
}

Skill skillRow(const Rows& r, int i) {
  Skill s;
  s.account = AccountId(r.text(i, 0));
  s.id = SkillId(r.text(i, 1));
  s.name = r.text(i, 2);
  s.created_at = r.i64(i, 3);
  return s;
}

AgentState agentStateRow(const Rows& r, int i) {
  AgentState s;
  s.account = AccountId(r.text(i, 0));
  s.user = UserId(r.text(i, 1));
  s.availability = parsedOr(parseAvailability(r.text(i, 2)), Availability::kOffline);
  s.updated_at = r.i64(i, 3);
  return s;
}

constexpr const char* kConversationCols =
    "id, account, consumer, channel, state, skill, ttr_type, ttr_value_s, ttr_due_at, start_ts, "
    "end_ts, updated_at, close_reason, next_sequence, context_json, turn, participants_json";
// The same columns for SELECTs over `conversations c`: updated_at and next_sequence are never
// below what the conversation's last message implies (a save with lower values does not take
// them back), as in the SQLite store.
constexpr const char* kConversationSelect =
    "c.id, c.account, c.consumer, c.channel, c.state, c.skill, c.ttr_type, c.ttr_value_s, "
    "c.ttr_due_at, c.start_ts, c.end_ts, "
    "GREATEST(c.updated_at, COALESCE((SELECT m.server_ts FROM messages m WHERE "
    "m.conversation=c.id ORDER BY m.sequence DESC LIMIT 1), 0)), "
    "c.close_reason, "
    "GREATEST(c.next_sequence, COALESCE((SELECT m.sequence + 1 FROM messages m WHERE "
    "m.conversation=c.id ORDER BY m.sequence DESC LIMIT 1), 0)), "
    "c.context_json, c.turn, c.participants_json";
Conversation conversationRow(const Rows& r, int i) {
  Conversation c;
  c.id = ConversationId(r.text(i, 0));
  c.account = AccountId(r.text(i, 1));
  c.consumer = ConsumerId(r.text(i, 2));
  c.channel = parsedOr(parseChannel(r.text(i, 3)), Channel::kMessaging);
  c.state = parsedOr(parseConversationState(r.text(i, 4)), ConversationState::kOpen);
  c.skill = SkillId(r.text(i, 5));
  c.ttr_type = parsedOr(parseTtrType(r.text(i, 6)), TtrType::kNormal);
  c.ttr_value_s = r.i64(i, 7);
  c.ttr_due_at = r.i64(i, 8);
  c.start_ts = r.i64(i, 9);
  c.end_ts = r.i64(i, 10);
  c.updated_at = r.i64(i, 11);
  c.close_reason = parsedOr(parseCloseReasonText(r.text(i, 12)),
                            std::optional<CloseReason>(CloseReason::kSystem));
  c.next_sequence = r.i64(i, 13);
  c.context_json = r.text(i, 14);
  c.turn_mark = decodeTurnMark(r.text(i, 15));
  c.participants = parseParticipantsJson(r.text(i, 16));
  return c;
}

// A conversation's erasure lock, transaction-scoped: exclusive for eraseConversationContent,
// shared for a turn record's write ($1: the conversation id).
constexpr const char* kErasureLock =
    "SELECT pg_advisory_xact_lock(hashtextextended('parley-erasure/' || $1, 0))";
constexpr const char* kErasureLockShared =
    "SELECT pg_advisory_xact_lock_shared(hashtextextended('parley-erasure/' || $1, 0))";

constexpr const char* kMessageCols =
    "conversation, sequence, server_ts, originator_id, originator_pid, originator_role, "
    "audience, event_json, metadata_json, turn";
Message messageRow(const Rows& r, int i) {
  Message m;
  m.conversation = ConversationId(r.text(i, 0));
  m.sequence = r.i64(i, 1);
  m.server_ts = r.i64(i, 2);
  m.originator_id = r.text(i, 3);
  m.originator_pid = r.text(i, 4);
  m.originator_role = parsedOr(parseParticipantRole(r.text(i, 5)), ParticipantRole::kController);
  m.audience = parsedOr(parseAudience(r.text(i, 6)), Audience::kAgentsAndManagers);
  m.event_json = r.text(i, 7);
  m.metadata_json = r.text(i, 8);
  m.turn = decodeTurnMark(r.text(i, 9));
  return m;
}

constexpr const char* kFunctionCols =
    "uuid, account, name, description, event_id, code, env_json, state, version, created_by, "
    "updated_by, created_at, updated_at";
FunctionRecord functionRow(const Rows& r, int i) {
  FunctionRecord f;
  f.uuid = FunctionId(r.text(i, 0));
  f.account = AccountId(r.text(i, 1));
  f.name = r.text(i, 2);
  f.description = r.text(i, 3);
  f.event_id = r.text(i, 4);
  f.code = r.text(i, 5);
  f.env = parseEnvJson(r.text(i, 6));
  f.state = parseFunctionState(r.text(i, 7)).value_or(FunctionState::kDraft);
  f.version = r.i64(i, 8);
  f.created_by = r.text(i, 9);
  f.updated_by = r.text(i, 10);
  f.created_at = r.i64(i, 11);
  f.updated_at = r.i64(i, 12);
  return f;
}

constexpr const char* kDeploymentCols =
    "uuid, function_uuid, account, function_version, code, env_json, state, error_json, "
    "created_by, created_at, deployed_at";
Deployment deploymentRow(const Rows& r, int i) {
  Deployment d;
  d.uuid = r.text(i, 0);
  d.function = FunctionId(r.text(i, 1));
  d.account = AccountId(r.text(i, 2));
  d.function_version = r.i64(i, 3);
  d.code = r.text(i, 4);
  d.env = parseEnvJson(r.text(i, 5));
  d.state = parseDeploymentState(r.text(i, 6)).value_or(DeploymentState::kDeployError);
  d.error_json = r.text(i, 7);
  d.created_by = r.text(i, 8);
  d.created_at = r.i64(i, 9);
  d.deployed_at = r.i64(i, 10);
  return d;
}

InvocationLog logRow(const Rows& r, int i) {
  InvocationLog l;
  l.function = FunctionId(r.text(i, 0));
  l.account = AccountId(r.text(i, 1));
  l.request_id = r.text(i, 2);
  l.ts = r.i64(i, 3);
  l.level = r.text(i, 4);
  l.message = r.text(i, 5);
  l.extras_json = r.text(i, 6);
  return l;
}

SecretAuditEntry secretAuditRow(const Rows& r, int i) {
  SecretAuditEntry e;
  e.account = AccountId(r.text(i, 0));
  e.ts = r.i64(i, 1);
  e.function = FunctionId(r.text(i, 2));
  e.request_id = r.text(i, 3);
  e.invoker = parseAuditInvoker(r.text(i, 4)).value_or(AuditInvoker::kPlatform);
  e.user = UserId(r.text(i, 5));
  e.login_name = r.text(i, 6);
  e.key = r.text(i, 7);
  e.op = parseAuditOp(r.text(i, 8)).value_or(AuditOp::kRead);
  e.outcome = parseAuditOutcome(r.text(i, 9)).value_or(AuditOutcome::kRefused);
  e.detail = r.text(i, 10);
  return e;
}

ContextProperty contextRow(const Rows& r, int i) {
  ContextProperty p;
  p.account = AccountId(r.text(i, 0));
  p.ns = r.text(i, 1);
  p.session_id = r.text(i, 2);
  p.name = r.text(i, 3);
  p.value_json = r.text(i, 4);
  p.expires_at = r.i64(i, 5);
  return p;
}

constexpr const char* kBotCols =
    "account, id, name, user_id, config_json, status, created_at, updated_at";
BotRecord botRow(const Rows& r, int i) {
  BotRecord b;
  b.account = AccountId(r.text(i, 0));
  b.id = BotId(r.text(i, 1));
  b.name = r.text(i, 2);
  b.user = UserId(r.text(i, 3));
  b.config_json = r.text(i, 4);
  // An unknown status is refused (logged) and read as OFFLINE: the bot does not run.
  auto status = parseBotStatus(r.text(i, 5));
  if (!status)
    spdlog::error("store: bot {}: {}; it is read as OFFLINE", b.id.str(), status.error().message);
  b.status = status.value_or(BotStatus::kOffline);
  b.created_at = r.i64(i, 6);
  b.updated_at = r.i64(i, 7);
  return b;
}

// A lease row as the lease statements return it: conversation, node, epoch, expires_at.
Lease leaseRow(const Rows& r, int i) {
  return Lease{ConversationId(r.text(i, 0)), r.text(i, 1), r.i64(i, 2), r.i64(i, 3)};
}

constexpr const char* kTurnCols =
    "account, bot, conversation, turn_id, ts, outcome, input_json, response_json, actions_json, "
    "timings_json, error";
TurnRecord turnRow(const Rows& r, int i) {
  TurnRecord t;
  t.account = AccountId(r.text(i, 0));
  t.bot = BotId(r.text(i, 1));
  t.conversation = ConversationId(r.text(i, 2));
  t.turn_id = r.text(i, 3);
  t.ts = r.i64(i, 4);
  t.outcome = r.text(i, 5);
  t.input_json = r.text(i, 6);
  t.response_json = r.text(i, 7);
  t.actions_json = r.text(i, 8);
  t.timings_json = r.text(i, 9);
  t.error = r.text(i, 10);
  return t;
}

PendingTurn pendingRow(const Rows& r, int i) {
  PendingTurn p;
  p.account = AccountId(r.text(i, 0));
  p.bot = BotId(r.text(i, 1));
  p.conversation = ConversationId(r.text(i, 2));
  p.turn_id = r.text(i, 3);
  p.state_json = r.text(i, 4);
  p.created_at = r.i64(i, 5);
  return p;
}

// ---- Writer: one connection, group commit -------------------------------------------------------

// What a write sees: the writer connection inside the batch's transaction.
struct Tx {
  Conn& c;
  // Set by a write that failed after changing something it cannot undo alone (no savepoint):
  // the whole batch's transaction is then rolled back and every write in it fails.
  bool must_roll_back = false;
};

// Owns the writer connection. Callers submit a write (a function run inside a transaction):
// blocking (submit) or with a callback (submitAsync). All writes share one FIFO queue. Whoever
// leads takes every queued write (up to max_batch) and runs them in one transaction: BEGIN,
// each write (inside its own SAVEPOINT unless it is one statement that fails without aborting
// the transaction: Wrap::kSelf), COMMIT. A blocking caller that finds nobody writing or waiting
// leads at once; asynchronous writes are led by the writer thread. Callbacks run on the
// leader's thread after COMMIT, in queue order, before the lead is handed on. Only the leader
// touches the connection.
class Writer {
 public:
  using WriteFn = std::function<Status(Tx&)>;
  using DoneFn = std::function<void(Status)>;
  enum class Wrap { kSavepoint, kSelf };

  Writer(std::unique_ptr<Conn> conn, int max_batch)
      : conn_(std::move(conn)), max_batch_(std::max(1, max_batch)) {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "store-pg-writer");
      asyncLoop();
    });
  }

  // REQUIRES: no submit() in progress. Queued asynchronous writes are committed first.
  ~Writer() {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    async_cv_.notify_one();
    thread_.join();
  }

  Status submit(WriteFn fn, Wrap wrap = Wrap::kSavepoint) {
    Op op;
    op.fn = std::move(fn);
    op.wrap = wrap;
    MutexLock lock(mu_);
    const bool idle = !leading_ && queue_.empty();
    queue_.push_back(&op);
    if (!idle) {
      while (!op.done && (leading_ || queue_.front() != &op)) lock.wait(op.cv);
      if (op.done) return std::move(op.result);
    }
    lead([&] { return op.done; });
    return std::move(op.result);
  }

  void submitAsync(WriteFn fn, DoneFn done, Wrap wrap = Wrap::kSavepoint) {
    auto* op = new Op;
    op->fn = std::move(fn);
    op->on_done = std::move(done);
    op->wrap = wrap;
    bool wake = false;
    {
      MutexLock lock(mu_);
      queue_.push_back(op);
      ++async_queued_;
      wake = !leading_ && queue_.size() == 1;
    }
    if (wake) async_cv_.notify_one();
  }

  // Asynchronous writes queued and not yet completed.
  int asyncQueued() const {
    MutexLock lock(mu_);
    return async_queued_;
  }

  PostgresWriteStats stats() const {
    MutexLock lock(mu_);
    return stats_;
  }

 private:
  struct Op {
    WriteFn fn;
    DoneFn on_done;
    Wrap wrap = Wrap::kSavepoint;
    Status result;
    // Guarded by the writer's mu_ (blocking ops only): another object's mutex, which the
    // analysis cannot name here, so the rule is this comment.
    bool done = false;
    std::condition_variable cv;
  };

  // Runs batches while `until()` is false and writes are queued; mu_ is dropped while a batch
  // runs and held again on return. Hands the lead on when it returns.
  template <class Until>
  void lead(Until until) PARLEY_REQUIRES(mu_) {
    leading_ = true;
    std::vector<Op*> batch;
    while (!until() && !queue_.empty()) {
      while (!queue_.empty() && batch.size() < static_cast<std::size_t>(max_batch_)) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
      ++stats_.transactions;
      stats_.writes += static_cast<std::int64_t>(batch.size());
      stats_.largest_batch =
          std::max(stats_.largest_batch, static_cast<std::int64_t>(batch.size()));
      int completed_async = 0;
      {
        MutexUnlock unlocked(mu_);
        runBatch(batch);
        for (Op*& o : batch) {
          if (!o->on_done) continue;
          internal::completeAsyncWrite(o->on_done, std::move(o->result));
          delete o;
          o = nullptr;
          ++completed_async;
        }
      }
      async_queued_ -= completed_async;
      for (Op* o : batch) {
        if (o == nullptr) continue;
        o->done = true;
        o->cv.notify_one();
      }
      batch.clear();
    }
    leading_ = false;
    if (!queue_.empty()) {
      if (queue_.front()->on_done)
        async_cv_.notify_one();
      else
        queue_.front()->cv.notify_one();
    }
  }

  void asyncLoop() PARLEY_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    for (;;) {
      while (!(!leading_ && !queue_.empty() && queue_.front()->on_done) &&
             !(stop_ && !leading_ && queue_.empty()))
        lock.wait(async_cv_);
      if (leading_ || queue_.empty() || !queue_.front()->on_done) {
        if (stop_ && !leading_ && queue_.empty()) return;
        continue;
      }
      lead([] { return false; });
    }
  }

  static Status runOne(Op& op, Tx& tx) {
    try {
      return op.fn(tx);
    } catch (const std::exception& e) {
      tx.must_roll_back = true;
      return internalError(std::string("postgres store: write failed: ") + e.what());
    }
  }

  // Fails every write of the batch that had succeeded (the transaction is gone).
  static void failAll(const std::vector<Op*>& batch, const Error& e) {
    for (Op* op : batch)
      if (op->result) op->result = std::unexpected(e);
  }

  void runBatch(const std::vector<Op*>& batch) PARLEY_EXCLUDES(mu_) {
    Conn& c = *conn_;
    for (Op* op : batch) op->result = {};
    pruneMarkers(c);
    // The transaction's commit marker (a random UUID: the SQL holds only hex digits and
    // hyphens), inserted in BEGIN's round trip: when the connection is lost during COMMIT, the
    // marker tells afterwards whether the transaction committed (resolveCommit).
    const std::string marker = randomUuid();
    if (auto begun = c.exec("BEGIN; INSERT INTO commit_markers(token) VALUES ('" + marker + "')");
        !begun) {
      for (Op* op : batch) op->result = std::unexpected(begun.error());
      if (!c.broken()) (void)c.exec("ROLLBACK");
      return;
    }
    c.holdReconnects(true);
    const bool commit_lost = runInTransaction(c, batch);
    c.holdReconnects(false);
    if (commit_lost) resolveCommit(c, marker, batch);
  }

  // Commit markers older than kMarkersKept are deleted, at most once per kPruneEvery per
  // writer (one statement in autocommit before a batch; a failure is only logged: the next
  // prune deletes them). A lost COMMIT is resolved within kResolveFor of the loss, so a marker
  // is needed only while its transaction runs and shortly after.
  static constexpr std::chrono::minutes kMarkersKept{60};
  static constexpr std::chrono::minutes kPruneEvery{1};

  void pruneMarkers(Conn& c) PARLEY_EXCLUDES(mu_) {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_prune_) return;
    next_prune_ = now + kPruneEvery;
    if (auto st = c.exec("DELETE FROM commit_markers WHERE created_at < now() - interval '" +
                         std::to_string(kMarkersKept.count()) + " minutes'");
        !st)
      spdlog::warn("postgres store: pruning commit markers failed: {}", st.error().message);
  }

  // How long the writer tries to learn the outcome of a COMMIT whose answer was lost (the
  // server restarting takes seconds; its crash recovery keeps the outcome).
  static constexpr std::chrono::seconds kResolveFor{30};
  static constexpr std::chrono::milliseconds kResolvePause{100};

  // The connection was lost after COMMIT was sent: the transaction may have committed. Learns
  // the outcome from its marker, reconnecting (with the connection's backoff) until kResolveFor
  // has passed or the writer stops: a probe transaction inserts the same marker. While the lost
  // transaction is still in progress (its backend has not seen the loss yet) the probe waits
  // for it (unique index; at most 1 s per try, then tries again); once it has ended, the probe
  // conflicts if and only if it committed. A probe that inserts proves that the transaction
  // did not commit and never will (it has ended); the probe is rolled back. Unlike asking
  // pg_xact_status about the transaction id, this is not fooled by a server crash: recovery
  // forgets ids whose WAL never reached disk and hands them out again, to transactions that
  // then commit. Committed: every write keeps its result. Aborted: every write fails with
  // Unavailable. Not learnt: every write fails with Unavailable saying that it may have been
  // stored (callers then read the store before going on).
  void resolveCommit(Conn& c, const std::string& marker, const std::vector<Op*>& batch)
      PARLEY_EXCLUDES(mu_) {
    const auto until = std::chrono::steady_clock::now() + kResolveFor;
    std::string last = "the connection was lost during COMMIT";
    for (;;) {
      auto r = c.execRows(
          "BEGIN; SET LOCAL lock_timeout = '1s'; INSERT INTO commit_markers(token) VALUES ('" +
          marker + "') ON CONFLICT (token) DO NOTHING RETURNING 1");
      if (!c.broken()) (void)c.exec("ROLLBACK");
      if (r && r->size() == 0) {
        count(&PostgresWriteStats::lost_commits_committed);
        spdlog::warn(
            "postgres store: the answer to COMMIT was lost; the transaction (marker {}) "
            "committed",
            marker);
        return;
      }
      if (r) {
        count(&PostgresWriteStats::lost_commits_aborted);
        spdlog::warn(
            "postgres store: the answer to COMMIT was lost; the transaction (marker {}) did "
            "not commit",
            marker);
        failAll(batch, Error{ErrorCode::kUnavailable,
                             "postgres store: the connection was lost during COMMIT; the "
                             "transaction was rolled back"});
        return;
      }
      // A lock timeout (the transaction is still in progress) or the server not back yet.
      last = r.error().message;
      if (std::chrono::steady_clock::now() >= until) break;
      {
        MutexLock lock(mu_);
        if (stop_) break;
      }
      std::this_thread::sleep_for(kResolvePause);
    }
    count(&PostgresWriteStats::lost_commits_unknown);
    spdlog::error("postgres store: the outcome of the transaction (marker {}) is unknown: {}",
                  marker, last);
    failAll(batch, Error{ErrorCode::kUnavailable,
                         "postgres store: the connection was lost during COMMIT and whether it "
                         "committed is unknown (" +
                             last + "); the write may have been stored"});
  }

  void count(std::int64_t PostgresWriteStats::*counter) PARLEY_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    ++(stats_.*counter);
  }

  // REQUIRES: a transaction is open on `c` (BEGIN ran) and reconnects are held. True when the
  // connection was lost during COMMIT (the outcome is unknown); every write's result is set
  // otherwise.
  static bool runInTransaction(Conn& c, const std::vector<Op*>& batch) {
    Tx tx{c};
    if (batch.size() == 1) {
      Op& op = *batch.front();
      op.result = runOne(op, tx);
      if (!op.result) {
        (void)c.exec("ROLLBACK");
        return false;
      }
    } else {
      for (Op* op : batch) {
        if (op->wrap == Wrap::kSelf) {
          op->result = runOne(*op, tx);
        } else {
          if (auto st = c.exec("SAVEPOINT w"); !st) {
            op->result = st;
          } else {
            Status st2 = runOne(*op, tx);
            if (st2) {
              st2 = c.exec("RELEASE SAVEPOINT w");
            } else if (!tx.must_roll_back) {
              (void)c.exec("ROLLBACK TO SAVEPOINT w");
              (void)c.exec("RELEASE SAVEPOINT w");
            }
            op->result = std::move(st2);
          }
        }
        if (tx.must_roll_back || c.inFailedTransaction() || c.broken()) {
          // The transaction cannot commit (a write aborted it, or the connection is lost):
          // every write of the batch fails — those that ran are rolled back, the rest never ran.
          Error lost{ErrorCode::kUnavailable,
                     "postgres store: the transaction was rolled back: " +
                         (op->result ? std::string("a write failed") : op->result.error().message)};
          (void)c.exec("ROLLBACK");
          for (Op* o : batch)
            if (o != op || o->result) o->result = std::unexpected(lost);
          return false;
        }
      }
    }
    Status commit = c.exec("COMMIT");
    if (commit) return false;
    if (c.broken()) return true;
    (void)c.exec("ROLLBACK");
    failAll(batch, commit.error());
    return false;
  }

  std::unique_ptr<Conn> conn_;
  const int max_batch_;
  // When the leader next prunes commit markers (only the leader touches it, one at a time).
  std::chrono::steady_clock::time_point next_prune_{};
  mutable Mutex mu_;
  PostgresWriteStats stats_ PARLEY_GUARDED_BY(mu_);
  std::deque<Op*> queue_ PARLEY_GUARDED_BY(mu_);
  int async_queued_ PARLEY_GUARDED_BY(mu_) = 0;
  bool leading_ PARLEY_GUARDED_BY(mu_) = false;
  bool stop_ PARLEY_GUARDED_BY(mu_) = false;
  std::condition_variable async_cv_;
  std::thread thread_;  // last: started after everything above
};

// ---- Readers --------------------------------------------------------------------------------

class ReaderPool {
 public:
  explicit ReaderPool(std::vector<std::unique_ptr<Conn>> conns) : free_(std::move(conns)) {}

  class Lease {
   public:
    Lease(ReaderPool& pool, std::unique_ptr<Conn> c) : pool_(pool), conn_(std::move(c)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_.release(std::move(conn_)); }
    Conn& operator*() { return *conn_; }

   private:
    ReaderPool& pool_;
    std::unique_ptr<Conn> conn_;
  };

  Lease acquire() {
    MutexLock lock(mu_);
    while (free_.empty()) lock.wait(cv_);
    auto c = std::move(free_.back());
    free_.pop_back();
    return Lease(*this, std::move(c));
  }

 private:
  void release(std::unique_ptr<Conn> c) {
    {
      MutexLock lock(mu_);
      free_.push_back(std::move(c));
    }
    cv_.notify_one();
  }

  Mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> free_ PARLEY_GUARDED_BY(mu_);
};

// ---- The store --------------------------------------------------------------------------------

class PostgresStore final : public Store,
                            public AccountStore,
                            public ConversationStore,
                            public FunctionStore,
                            public BotStore,
                            public OAuthStore,
                            public ScheduleStore,
                            public ClusterStore {
 public:
  PostgresStore(const Clock& clock, int version, std::unique_ptr<Conn> writer,
                std::vector<std::unique_ptr<Conn>> readers, std::unique_ptr<Conn> leases,
                int max_batch)
      : clock_(clock),
        version_(version),
        writer_(std::move(writer), max_batch),
        readers_(std::move(readers)),
        lease_conn_(std::move(leases)) {}

  AccountStore& accounts() override { return *this; }
  ConversationStore& conversations() override { return *this; }
  FunctionStore& functions() override { return *this; }
  BotStore& bots() override { return *this; }
  OAuthStore& oauth() override { return *this; }
  ScheduleStore& schedules() override { return *this; }
  int schemaVersion() const override { return version_; }
  ClusterStore* cluster() override { return this; }

  PostgresWriteStats writeStats() const { return writer_.stats(); }

  // AccountStore
  Status createAccount(const Account& a) override {
    if (a.id.empty()) return invalid("account id is required");
    const TimeMs created = a.created_at ? a.created_at : clock_.nowMs();
    return write([&](Conn& c) {
      return conflictAs(asStatus(execute(c,
                                         "INSERT INTO accounts(" + std::string(kAccountCols) +
                                             ") VALUES($1,$2,$3,$4,$5,$6,$7)",
                                         a.id.str(), a.name, a.ttr_urgent_s, a.ttr_prioritized_s,
                                         a.ttr_normal_s, created, accountStatusName(a.status))),
                        "account " + a.id.str() + " already exists");
    });
  }

  Result<Account> getAccount(const AccountId& id) override {
    auto r = read([&](Conn& c) {
      return selectOne<Account>(
          c, "SELECT " + std::string(kAccountCols) + " FROM accounts WHERE id=$1", accountRow,
          id.str());
    });
    return found(std::move(r), "account " + id.str() + " does not exist");
  }

  Result<std::vector<Account>> listAccounts() override {
    return read([&](Conn& c) {
      return selectAll<Account>(
          c, "SELECT " + std::string(kAccountCols) + " FROM accounts ORDER BY id", accountRow);
    });
  }

  Status setAccountStatus(const AccountId& id, AccountStatus status) override {
    return write([&](Conn& c) {
      return changedOrNotFound(execute(c, "UPDATE accounts SET status=$1 WHERE id=$2",
                                       accountStatusName(status), id.str()),
                               "account " + id.str() + " does not exist");
    });
  }

  Result<User> createUser(User u) override {
    if (u.account.empty()) return invalid("user account is required");
    if (u.login_name.empty()) return invalid("user loginName is required");
    if (u.created_at == 0) u.created_at = clock_.nowMs();
    User stored;
    Status st = write([&](Conn& c) -> Status {
      stored = u;
      auto taken = exists(c, "SELECT 1 FROM users WHERE account=$1 AND login_name=$2",
                          u.account.str(), u.login_name);
      if (!taken) return asStatus(taken);
      if (*taken)
        return conflict("login name '" + u.login_name + "' is taken in account " + u.account.str());
      auto id = assignId(c, u.account, "user", kFirstUserId, "users", u.id.str());
      if (!id) return asStatus(id);
      if (id->empty())
        return conflict("user " + u.id.str() + " already exists in account " + u.account.str());
      stored.id = UserId(*id);
      return conflictAs(
          asStatus(execute(c,
                           "INSERT INTO users(" + std::string(kUserCols) +
                               ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                           stored.account.str(), stored.id.str(), stored.pid, stored.login_name,
                           stored.password_hash, rolesJson(stored.roles), userTypeName(stored.type),
                           stringsJson(stored.skills), stored.max_open_conversations,
                           stored.created_at, userStatusName(stored.status))),
          "login name '" + u.login_name + "' is taken in account " + u.account.str());
    });
    if (!st) return std::unexpected(st.error());
    return stored;
  }

  Status updateUser(const User& u) override {
    return write([&](Conn& c) -> Status {
      auto other = selectOne<std::string>(
          c, "SELECT id FROM users WHERE account=$1 AND login_name=$2",
          [](const Rows& r, int i) { return r.text(i, 0); }, u.account.str(), u.login_name);
      if (!other) return asStatus(other);
      if (*other && **other != u.id.str())
        return conflict("login name '" + u.login_name + "' is taken in account " + u.account.str());
      auto n = execute(c,
                       "UPDATE users SET pid=$1, login_name=$2, password_hash=$3, roles_json=$4, "
                       "type=$5, skills_json=$6, max_open_conversations=$7, created_at=$8, "
                       "status=$9 WHERE account=$10 AND id=$11",
                       u.pid, u.login_name, u.password_hash, rolesJson(u.roles),
                       userTypeName(u.type), stringsJson(u.skills), u.max_open_conversations,
                       u.created_at, userStatusName(u.status), u.account.str(), u.id.str());
      if (!n)
        return conflictAs(asStatus(n), "login name '" + u.login_name + "' is taken in account " +
                                           u.account.str());
      return changedOrNotFound(n, userMissing(u.account, u.id));
    });
  }

  Status deleteUser(const AccountId& acc, const UserId& id) override {
    return write([&](Conn& c) -> Status {
      PARLEY_PG_TRY(changedOrNotFound(
          execute(c, "DELETE FROM users WHERE account=$1 AND id=$2", acc.str(), id.str()),
          userMissing(acc, id)));
      return deleteCredentialsIn(c, acc, id);
    });
  }

  Result<User> getUser(const AccountId& acc, const UserId& id) override {
    auto r = read([&](Conn& c) {
      return selectOne<User>(
          c, "SELECT " + std::string(kUserCols) + " FROM users WHERE account=$1 AND id=$2", userRow,
          acc.str(), id.str());
    });
    return found(std::move(r), userMissing(acc, id));
  }

  Result<User> getUserByLogin(const AccountId& acc, const std::string& login_name) override {
    auto r = read([&](Conn& c) {
      return selectOne<User>(
          c, "SELECT " + std::string(kUserCols) + " FROM users WHERE account=$1 AND login_name=$2",
          userRow, acc.str(), login_name);
    });
    return found(std::move(r),
                 "no user with login name '" + login_name + "' in account " + acc.str());
  }

  Result<std::vector<User>> listUsers(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<User>(c,
                             "SELECT " + std::string(kUserCols) +
                                 " FROM users WHERE account=$1 ORDER BY octet_length(id), id",
                             userRow, acc.str());
    });
  }

  Status putSession(const Session& s) override {
    if (s.bearer_hash.empty()) return invalid("session bearer hash is required");
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "INSERT INTO sessions(" + std::string(kSessionCols) +
                                  ") VALUES($1,$2,$3,$4,$5,$6) ON CONFLICT(bearer_hash) DO UPDATE "
                                  "SET csrf=excluded.csrf, account=excluded.account, "
                                  "user_id=excluded.user_id, created_at=excluded.created_at, "
                                  "expires_at=excluded.expires_at",
                              s.bearer_hash, s.csrf, s.account.str(), s.user.str(), s.created_at,
                              s.expires_at));
    });
  }

  Result<Session> getSession(const std::string& bearer_hash) override {
    auto r = read([&](Conn& c) {
      return selectOne<Session>(
          c, "SELECT " + std::string(kSessionCols) + " FROM sessions WHERE bearer_hash=$1",
          sessionRow, bearer_hash);
    });
    return found(std::move(r), "session does not exist");
  }

  Status deleteSession(const std::string& bearer_hash) override {
    return write([&](Conn& c) {
      return asStatus(execute(c, "DELETE FROM sessions WHERE bearer_hash=$1", bearer_hash));
    });
  }

  Status deleteExpiredSessions(TimeMs now) override {
    return write([&](Conn& c) {
      return asStatus(execute(c, "DELETE FROM sessions WHERE expires_at<=$1", now));
    });
  }

  Status putApiKey(const ApiKey& k) override {
    if (k.key_hash.empty()) return invalid("api key hash is required");
    if (k.id.empty()) return invalid("api key id is required");
    const TimeMs created = k.created_at ? k.created_at : clock_.nowMs();
    return write([&](Conn& c) {
      return conflictAs(
          asStatus(execute(c,
                           "INSERT INTO api_keys(" + std::string(kApiKeyCols) +
                               ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT(key_hash) DO "
                               "UPDATE SET account=excluded.account, user_id=excluded.user_id, "
                               "name=excluded.name, created_at=excluded.created_at, "
                               "id=excluded.id, scopes_json=excluded.scopes_json, "
                               "expires_at=excluded.expires_at, created_by=excluded.created_by",
                           k.key_hash, k.account.str(), k.user.str(), k.name, created, k.id,
                           rolesJson(k.scopes), k.expires_at, k.created_by.str())),
          "api key " + k.id + " already exists in account " + k.account.str());
    });
  }

  Result<ApiKey> getApiKey(const std::string& key_hash) override {
    auto r = read([&](Conn& c) {
      return selectOne<ApiKey>(
          c, "SELECT " + std::string(kApiKeyCols) + " FROM api_keys WHERE key_hash=$1", apiKeyRow,
          key_hash);
    });
    return found(std::move(r), "api key does not exist");
  }

  Result<std::vector<ApiKey>> listApiKeys(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<ApiKey>(c,
                               "SELECT " + std::string(kApiKeyCols) +
                                   " FROM api_keys WHERE account=$1 ORDER BY created_at, id",
                               apiKeyRow, acc.str());
    });
  }

  Status deleteApiKey(const AccountId& acc, const std::string& id) override {
    return write([&](Conn& c) {
      return changedOrNotFound(
          execute(c, "DELETE FROM api_keys WHERE account=$1 AND id=$2", acc.str(), id),
          "api key " + id + " does not exist in account " + acc.str());
    });
  }

  Status deleteCredentials(const AccountId& acc, const UserId& user) override {
    return write([&](Conn& c) { return deleteCredentialsIn(c, acc, user); });
  }

  Result<Skill> createSkill(Skill s) override {
    if (s.account.empty()) return invalid("skill account is required");
    if (s.name.empty()) return invalid("skill name is required");
    if (s.created_at == 0) s.created_at = clock_.nowMs();
    Skill stored;
    Status st = write([&](Conn& c) -> Status {
      stored = s;
      auto taken =
          exists(c, "SELECT 1 FROM skills WHERE account=$1 AND name=$2", s.account.str(), s.name);
      if (!taken) return asStatus(taken);
      if (*taken)
        return conflict("skill '" + s.name + "' already exists in account " + s.account.str());
      auto id = assignId(c, s.account, "skill", kFirstSkillId, "skills", s.id.str());
      if (!id) return asStatus(id);
      if (id->empty())
        return conflict("skill " + s.id.str() + " already exists in account " + s.account.str());
      stored.id = SkillId(*id);
      return conflictAs(
          asStatus(execute(c,
                           "INSERT INTO skills(account, id, name, created_at) VALUES($1,$2,$3,$4)",
                           stored.account.str(), stored.id.str(), stored.name, stored.created_at)),
          "skill '" + s.name + "' already exists in account " + s.account.str());
    });
    if (!st) return std::unexpected(st.error());
    return stored;
  }

  Status deleteSkill(const AccountId& acc, const SkillId& id) override {
    return write([&](Conn& c) {
      return changedOrNotFound(
          execute(c, "DELETE FROM skills WHERE account=$1 AND id=$2", acc.str(), id.str()),
          "skill " + id.str() + " does not exist in account " + acc.str());
    });
  }

  Result<std::vector<Skill>> listSkills(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<Skill>(c,
                              "SELECT account, id, name, created_at FROM skills WHERE account=$1 "
                              "ORDER BY octet_length(id), id",
                              skillRow, acc.str());
    });
  }

  Status putAgentState(const AgentState& s) override {
    const TimeMs updated = s.updated_at ? s.updated_at : clock_.nowMs();
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "INSERT INTO agent_states(account, user_id, availability, "
                              "updated_at) VALUES($1,$2,$3,$4) ON CONFLICT(account, user_id) DO "
                              "UPDATE SET availability=excluded.availability, "
                              "updated_at=excluded.updated_at",
                              s.account.str(), s.user.str(), availabilityName(s.availability),
                              updated));
    });
  }

  Result<std::vector<AgentState>> listAgentStates(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<AgentState>(
          c,
          "SELECT account, user_id, availability, updated_at FROM agent_states WHERE account=$1 "
          "ORDER BY octet_length(user_id), user_id",
          agentStateRow, acc.str());
    });
  }

  // ScheduleStore
  Status createSchedule(const Schedule& s) override {
    if (s.account.empty()) return invalid("schedule account is required");
    if (s.id.empty()) return invalid("schedule id is required");
    if (s.function.empty()) return invalid("schedule function is required");
    if (s.cron.empty()) return invalid("schedule cron expression is required");
    const TimeMs created = s.created_at ? s.created_at : clock_.nowMs();
    const TimeMs updated = s.updated_at ? s.updated_at : created;
    return write([&](Conn& c) -> Status {
      // FOR SHARE: a concurrent deleteFunction waits, then finds this schedule to delete.
      auto fn = exists(c, "SELECT 1 FROM functions WHERE uuid=$1 AND account=$2 FOR SHARE",
                       s.function.str(), s.account.str());
      if (!fn) return std::unexpected(fn.error());
      if (!*fn) return notFound(functionMissing(s.account, s.function));
      return conflictAs(
          asStatus(execute(c,
                           "INSERT INTO schedules(" + std::string(kScheduleCols) +
                               ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,"
                               "$17,$18)",
                           s.account.str(), s.id, s.function.str(), s.cron,
                           scheduleStateName(s.state), s.payload_json, s.next_run_at, s.running_id,
                           s.running_until, s.last_due_at, s.last_started_at, s.last_finished_at,
                           s.last_outcome, s.last_error, s.last_duration_ms, s.created_by, created,
                           updated)),
          "schedule " + s.id + " already exists in account " + s.account.str());
    });
  }

  Status updateSchedule(const Schedule& s) override {
    const TimeMs updated = s.updated_at ? s.updated_at : clock_.nowMs();
    return write([&](Conn& c) {
      return changedOrNotFound(
          execute(c,
                  "UPDATE schedules SET cron=$1, state=$2, payload_json=$3, next_run_at=$4, "
                  "updated_at=$5 WHERE account=$6 AND id=$7",
                  s.cron, scheduleStateName(s.state), s.payload_json, s.next_run_at, updated,
                  s.account.str(), s.id),
          scheduleMissing(s.account, s.id));
    });
  }

  Status deleteSchedule(const AccountId& acc, const std::string& id) override {
    return write([&](Conn& c) {
      return changedOrNotFound(
          execute(c, "DELETE FROM schedules WHERE account=$1 AND id=$2", acc.str(), id),
          scheduleMissing(acc, id));
    });
  }

  Result<Schedule> getSchedule(const AccountId& acc, const std::string& id) override {
    auto r = read([&](Conn& c) {
      return selectOne<Schedule>(
          c, "SELECT " + std::string(kScheduleCols) + " FROM schedules WHERE account=$1 AND id=$2",
          scheduleRow, acc.str(), id);
    });
    return found(std::move(r), scheduleMissing(acc, id));
  }

  Result<std::vector<Schedule>> listSchedules(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<Schedule>(c,
                                 "SELECT " + std::string(kScheduleCols) +
                                     " FROM schedules WHERE account=$1 ORDER BY created_at, seq",
                                 scheduleRow, acc.str());
    });
  }

  Result<std::vector<Schedule>> listDueSchedules(TimeMs now, int limit) override {
    return read([&](Conn& c) {
      return selectAll<Schedule>(
          c,
          "SELECT " + std::string(kScheduleCols) +
              " FROM schedules WHERE state='ACTIVE' AND next_run_at>0 AND next_run_at<=$1 AND "
              "running_until<=$1 ORDER BY next_run_at, seq LIMIT $2",
          scheduleRow, now, static_cast<std::int64_t>(std::max(limit, 0)));
    });
  }

  Status claimScheduleRun(const ScheduleClaim& cl) override {
    return write([&](Conn& c) -> Status {
      auto n = execute(c,
                       "UPDATE schedules SET running_id=$1, running_until=$2, last_due_at=$3, "
                       "last_started_at=$4, next_run_at=$5 WHERE account=$6 AND id=$7 AND "
                       "state='ACTIVE' AND next_run_at=$3 AND running_until<=$4",
                       cl.run_id, cl.running_until, cl.due_at, cl.now, cl.next_run_at,
                       cl.account.str(), cl.id);
      if (!n) return std::unexpected(n.error());
      if (*n == 0) return scheduleTakenOrMissing(c, cl.account, cl.id);
      return {};
    });
  }

  Status skipScheduleRuns(const AccountId& acc, const std::string& id, TimeMs due_at,
                          TimeMs next_run_at, TimeMs now) override {
    return write([&](Conn& c) -> Status {
      auto n = execute(c,
                       "UPDATE schedules SET next_run_at=$1 WHERE account=$2 AND id=$3 AND "
                       "state='ACTIVE' AND next_run_at=$4 AND running_until<=$5",
                       next_run_at, acc.str(), id, due_at, now);
      if (!n) return std::unexpected(n.error());
      if (*n == 0) return scheduleTakenOrMissing(c, acc, id);
      return {};
    });
  }

  Status finishScheduleRun(const ScheduleRunEnd& e) override {
    return write([&](Conn& c) -> Status {
      auto n = execute(c,
                       "UPDATE schedules SET running_id='', running_until=0, "
                       "last_finished_at=$1, last_outcome=$2, last_error=$3, "
                       "last_duration_ms=$4 WHERE account=$5 AND id=$6 AND running_id=$7 AND "
                       "running_id<>''",
                       e.finished_at, e.outcome, e.error, e.duration_ms, e.account.str(), e.id,
                       e.run_id);
      if (!n) return std::unexpected(n.error());
      if (*n > 0) return {};
      auto there =
          exists(c, "SELECT 1 FROM schedules WHERE account=$1 AND id=$2", e.account.str(), e.id);
      if (!there) return std::unexpected(there.error());
      if (!*there) return notFound(scheduleMissing(e.account, e.id));
      return conflict("schedule " + e.id + " is no longer claimed by run " + e.run_id);
    });
  }

  // OAuthStore
  Status createApp(const OAuthApp& a) override {
    if (a.account.empty()) return invalid("app account is required");
    if (a.client_id.empty()) return invalid("app client id is required");
    if (a.secret_hash.empty()) return invalid("app secret hash is required");
    const TimeMs created = a.created_at ? a.created_at : clock_.nowMs();
    return write([&](Conn& c) {
      return conflictAs(asStatus(execute(c,
                                         "INSERT INTO oauth_apps(" + std::string(kOAuthAppCols) +
                                             ") VALUES($1,$2,$3,$4,$5,$6,$7)",
                                         a.account.str(), a.client_id, a.name, a.secret_hash,
                                         stringsJson(a.scopes), created, a.created_by.str())),
                        "app " + a.client_id + " already exists in account " + a.account.str());
    });
  }

  Result<OAuthApp> getApp(const AccountId& acc, const std::string& client_id) override {
    auto r = read([&](Conn& c) {
      return selectOne<OAuthApp>(c,
                                 "SELECT " + std::string(kOAuthAppCols) +
                                     " FROM oauth_apps WHERE account=$1 AND client_id=$2",
                                 oauthAppRow, acc.str(), client_id);
    });
    return found(std::move(r), appMissing(acc, client_id));
  }

  Result<std::vector<OAuthApp>> listApps(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<OAuthApp>(c,
                                 "SELECT " + std::string(kOAuthAppCols) +
                                     " FROM oauth_apps WHERE account=$1 ORDER BY created_at, seq",
                                 oauthAppRow, acc.str());
    });
  }

  Status deleteApp(const AccountId& acc, const std::string& client_id) override {
    return write([&](Conn& c) -> Status {
      PARLEY_PG_TRY(
          changedOrNotFound(execute(c, "DELETE FROM oauth_apps WHERE account=$1 AND client_id=$2",
                                    acc.str(), client_id),
                            appMissing(acc, client_id)));
      return asStatus(execute(c, "DELETE FROM oauth_tokens WHERE account=$1 AND client_id=$2",
                              acc.str(), client_id));
    });
  }

  Status addAccessToken(const AccessToken& t, int keep) override {
    if (t.token_hash.empty()) return invalid("access token hash is required");
    if (t.client_id.empty()) return invalid("access token client id is required");
    const TimeMs created = t.created_at ? t.created_at : clock_.nowMs();
    return write([&](Conn& c) -> Status {
      // Locks the app's row: a deleteApp waits for this write or this write sees it gone.
      auto app = exists(c, "SELECT 1 FROM oauth_apps WHERE account=$1 AND client_id=$2 FOR SHARE",
                        t.account.str(), t.client_id);
      if (!app) return std::unexpected(app.error());
      if (!*app) return notFound(appMissing(t.account, t.client_id));
      PARLEY_PG_TRY(
          conflictAs(asStatus(execute(c,
                                      "INSERT INTO oauth_tokens(" + std::string(kAccessTokenCols) +
                                          ") VALUES($1,$2,$3,$4,$5,$6)",
                                      t.token_hash, t.account.str(), t.client_id,
                                      stringsJson(t.scopes), created, t.expires_at)),
                     "access token already exists"));
      PARLEY_PG_TRY(execute(
          c, "DELETE FROM oauth_tokens WHERE account=$1 AND client_id=$2 AND expires_at<=$3",
          t.account.str(), t.client_id, created));
      return asStatus(execute(c,
                              "DELETE FROM oauth_tokens WHERE seq IN (SELECT seq FROM "
                              "oauth_tokens WHERE account=$1 AND client_id=$2 "
                              "ORDER BY created_at DESC, seq DESC OFFSET $3)",
                              t.account.str(), t.client_id, std::max(keep, 0)));
    });
  }

  Result<AccessToken> getAccessToken(const std::string& token_hash) override {
    auto r = read([&](Conn& c) {
      return selectOne<AccessToken>(
          c, "SELECT " + std::string(kAccessTokenCols) + " FROM oauth_tokens WHERE token_hash=$1",
          accessTokenRow, token_hash);
    });
    return found(std::move(r), "access token does not exist");
  }

  Status deleteExpiredAccessTokens(TimeMs now) override {
    return write([&](Conn& c) {
      return asStatus(execute(c, "DELETE FROM oauth_tokens WHERE expires_at<=$1", now));
    });
  }

  static std::string appMissing(const AccountId& acc, const std::string& client_id) {
    return "app " + client_id + " does not exist in account " + acc.str();
  }

  // ClusterStore
  Result<std::string> putMaterialIfAbsent(const std::string& key,
                                          const std::string& value) override {
    if (key.empty()) return invalid("cluster material needs a key");
    std::string stored;
    Status st = write([&](Conn& c) -> Status {
      // ON CONFLICT DO NOTHING waits for a racing insert of the key to commit, so the SELECT
      // below (a new snapshot in READ COMMITTED) sees the first value.
      PARLEY_PG_TRY(asStatus(execute(c,
                                     "INSERT INTO cluster_material(key, value, created_at) "
                                     "VALUES($1,$2,$3) ON CONFLICT(key) DO NOTHING",
                                     key, value, clock_.nowMs())));
      auto r = found(selectOne<std::string>(
                         c, "SELECT value FROM cluster_material WHERE key=$1",
                         [](const Rows& rows, int i) { return rows.text(i, 0); }, key),
                     "no cluster material '" + key + "'");
      if (!r) return std::unexpected(r.error());
      stored = std::move(*r);
      return {};
    });
    if (!st) return std::unexpected(st.error());
    return stored;
  }

  Result<std::string> getMaterial(const std::string& key) override {
    auto r = read([&](Conn& c) {
      return selectOne<std::string>(
          c, "SELECT value FROM cluster_material WHERE key=$1",
          [](const Rows& rows, int i) { return rows.text(i, 0); }, key);
    });
    return found(std::move(r), "no cluster material '" + key + "'");
  }

  // The lease upsert: takes a free or expired lease (epoch + 1), extends the node's own unexpired
  // one (same epoch); no row when another node holds it unexpired. $1 conversation, $2 node,
  // $3 new expiry, $4 now.
  Result<Lease> acquireLease(const ConversationId& id, const std::string& node,
                             TimeMs ttl_ms) override {
    if (auto st = internal::checkLeaseArgs(id, node, ttl_ms); !st)
      return std::unexpected(st.error());
    Lease out;
    Status st = write([&](Conn& c) -> Status {
      // The time the transaction runs, not the call's: a write may wait in the queue.
      const TimeMs now = clock_.nowMs();
      // `held` locks the row FOR UPDATE first: a change of holder waits for the fenced writes
      // in flight (their FOR KEY SHARE), which a plain upsert (FOR NO KEY UPDATE) would not.
      auto r = selectOne<Lease>(
          c,
          "WITH held AS (SELECT 1 FROM conversation_leases WHERE conversation=$1 FOR UPDATE) "
          "INSERT INTO conversation_leases AS l(conversation, node, epoch, expires_at) "
          "SELECT $1,$2,1,$3 FROM (SELECT count(*) FROM held) h ON CONFLICT(conversation) DO "
          "UPDATE SET "
          "epoch = CASE WHEN l.node = excluded.node AND l.expires_at > $4 THEN l.epoch "
          "ELSE l.epoch + 1 END, node = excluded.node, expires_at = excluded.expires_at "
          "WHERE l.node = excluded.node OR l.expires_at <= $4 RETURNING node, epoch, expires_at",
          [&](const Rows& rows, int i) {
            return Lease{id, rows.text(i, 0), rows.i64(i, 1), rows.i64(i, 2)};
          },
          id.str(), node, now + ttl_ms, now);
      if (!r) return asStatus(r);
      if (*r) {
        out = **r;
        return {};
      }
      auto holder = leaseIn(c, id);
      if (!holder) return asStatus(holder);
      if (!*holder) return makeError(ErrorCode::kUnavailable, "lease row vanished; retry");
      return internal::leaseHeld(**holder);
    });
    if (!st) return std::unexpected(st.error());
    return out;
  }

  Result<Lease> renewLease(const ConversationId& id, const std::string& node, std::int64_t epoch,
                           TimeMs ttl_ms) override {
    if (auto st = internal::checkLeaseArgs(id, node, ttl_ms); !st)
      return std::unexpected(st.error());
    Lease out;
    Status st = write([&](Conn& c) -> Status {
      // The time the transaction runs, not the call's: a write may wait in the queue.
      const TimeMs now = clock_.nowMs();
      auto r = selectOne<Lease>(
          c,
          "UPDATE conversation_leases SET expires_at=$4 WHERE conversation=$1 AND node=$2 AND "
          "epoch=$3 RETURNING node, epoch, expires_at",
          [&](const Rows& rows, int i) {
            return Lease{id, rows.text(i, 0), rows.i64(i, 1), rows.i64(i, 2)};
          },
          id.str(), node, epoch, now + ttl_ms);
      if (!r) return asStatus(r);
      if (*r) {
        out = **r;
        return {};
      }
      auto holder = leaseIn(c, id);
      if (!holder) return asStatus(holder);
      if (!*holder) return conflict("conversation " + id.str() + " has no lease");
      return internal::leaseHeld(**holder);
    });
    if (!st) return std::unexpected(st.error());
    return out;
  }

  Status releaseLease(const ConversationId& id, const std::string& node,
                      std::int64_t epoch) override {
    const TimeMs now = clock_.nowMs();
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "UPDATE conversation_leases SET expires_at=LEAST(expires_at, $4) "
                              "WHERE conversation=$1 AND node=$2 AND epoch=$3",
                              id.str(), node, epoch, now));
    });
  }

  // One statement for a batch of a node's leases (a node giving its conversations up: cut off
  // from the bus, or shutting down), on the lease connection as renewals: the held
  // (conversation, epoch) pairs as a JSON array ($1); only the rows still at the node and epoch
  // expire now.
  Status releaseLeases(const std::string& node, const std::vector<Lease>& held) override {
    if (node.empty()) return invalid("a lease needs a node name");
    if (held.empty()) return {};
    const std::string pairs = internal::leasePairsJson(held);
    return onLeaseConn([&](Conn& c) -> Status {
      const TimeMs now = clock_.nowMs();
      return asStatus(execute(
          c,
          "UPDATE conversation_leases AS l SET expires_at=LEAST(l.expires_at, $3) FROM "
          "jsonb_to_recordset($1::jsonb) AS h(c text, e bigint) WHERE l.conversation = h.c AND "
          "l.epoch = h.e AND l.node = $2",
          pairs, node, now));
    });
  }

  // One statement for all of a node's leases: the held (conversation, epoch) pairs arrive as a
  // JSON array ($1), and only the rows still at the node and epoch are extended. It runs on the
  // lease connection in a transaction of its own, never behind the writer: under load one group
  // commit takes up to seconds, a renewal that waited for the batch in progress and then for its
  // own batch's commit (and the claim after it, the same) came later than the lease, and other
  // nodes took live conversations from under their sockets. It does not wait for the fence
  // checks of the writer's transactions either: an `UPDATE` of `expires_at` alone locks the row
  // FOR NO KEY UPDATE, which a fence check's FOR KEY SHARE lets through.
  Result<std::vector<Lease>> renewLeases(const std::string& node, const std::vector<Lease>& held,
                                         TimeMs ttl_ms) override {
    if (node.empty()) return invalid("a lease needs a node name");
    if (ttl_ms <= 0) return invalid("a lease needs a positive duration");
    if (held.empty()) return std::vector<Lease>{};
    const std::string pairs = internal::leasePairsJson(held);
    std::vector<Lease> renewed;
    Status st = onLeaseConn([&](Conn& c) -> Status {
      // The time the transaction runs, not the call's: a write may wait in the queue.
      const TimeMs now = clock_.nowMs();
      auto r = selectAll<Lease>(
          c,
          "UPDATE conversation_leases AS l SET expires_at=$3 FROM jsonb_to_recordset($1::jsonb) "
          "AS h(c text, e bigint) WHERE l.conversation = h.c AND l.epoch = h.e AND l.node = $2 "
          "RETURNING l.conversation, l.node, l.epoch, l.expires_at",
          leaseRow, pairs, node, now + ttl_ms);
      if (!r) return asStatus(r);
      renewed = std::move(*r);
      return {};
    });
    if (!st) return std::unexpected(st.error());
    return renewed;
  }

  // One statement on the lease connection (as renewals): the expired lease rows, found by the
  // expiry index, oldest expiry first, are locked FOR UPDATE SKIP LOCKED — a row whose holder
  // has a fenced write in flight (FOR KEY SHARE) or is renewing it right now is left for a later
  // claim, so a claim never waits for another node's group commit, and a row renewed since the
  // statement's snapshot is re-checked on its latest version and left out. Those of open
  // conversations go to `node` (epoch + 1); those of closed ones, and of conversations never
  // stored (a create refused after its lease was taken, then released; not the reserved '@'
  // keys of app/node_presence.h), are deleted (nothing claims them, and the expiry scan stays
  // as short as the free leases). Every open
  // conversation has a row: a placeholder (epoch 0) when nobody ever leased it (schema
  // version 5).
  Result<std::vector<Lease>> claimLeases(const std::string& node, TimeMs ttl_ms,
                                         int limit) override {
    if (node.empty()) return invalid("a lease needs a node name");
    if (ttl_ms <= 0) return invalid("a lease needs a positive duration");
    if (limit <= 0) return invalid("a lease claim needs a positive limit");
    std::vector<Lease> taken;
    Status st = onLeaseConn([&](Conn& c) -> Status {
      const TimeMs now = clock_.nowMs();
      auto r = selectAll<Lease>(c, kClaimSql, leaseRow, node, now + ttl_ms, now,
                                static_cast<std::int64_t>(limit));
      if (!r) return asStatus(r);
      taken = std::move(*r);
      return {};
    });
    if (!st) return std::unexpected(st.error());
    return taken;
  }

  // The claim of claimLeases ($1 node, $2 new expiry, $3 now, $4 limit); its plan is in the
  // README (an index scan of conversation_leases_expiry).
  static constexpr const char* kClaimSql =
      "WITH expired AS (SELECT l.conversation, c.state FROM conversation_leases l LEFT JOIN "
      "conversations c ON c.id = l.conversation WHERE l.expires_at <= $3 ORDER BY l.expires_at "
      "LIMIT $4 FOR UPDATE OF l SKIP LOCKED), "
      "closed AS (DELETE FROM conversation_leases d USING expired e WHERE d.conversation = "
      "e.conversation AND (e.state <> 'OPEN' OR (e.state IS NULL AND e.conversation NOT LIKE "
      "'@%'))) "
      "UPDATE conversation_leases AS l SET node = $1, epoch = l.epoch + 1, expires_at = $2 "
      "FROM expired e WHERE l.conversation = e.conversation AND e.state = 'OPEN' "
      "RETURNING l.conversation, l.node, l.epoch, l.expires_at";

  Result<Lease> getLease(const ConversationId& id) override {
    auto l = read([&](Conn& c) { return leaseIn(c, id); });
    // A placeholder (epoch 0) is the row of an open conversation nobody leased yet.
    if (l && *l && (*l)->epoch == 0) l->reset();
    return found(std::move(l), "conversation " + id.str() + " was never leased");
  }

  // Store
  Result<ErasureResult> eraseConversationContent(const AccountId& acc,
                                                 const ConversationId& id) override {
    ErasureResult out;
    Status st = write([&](Conn& c) -> Status {
      out = {};
      // The erasure lock first: turn records being written wait, or are waited for (appendTurnTxn).
      PARLEY_PG_TRY(asStatus(run(c, kErasureLock, id.str())));
      // FOR UPDATE: a write of the conversation by any node waits for this transaction.
      auto state = selectOne<std::string>(
          c, "SELECT state FROM conversations WHERE id=$1 AND account=$2 FOR UPDATE",
          [](const Rows& r, int i) { return r.text(i, 0); }, id.str(), acc.str());
      if (!state) return std::unexpected(state.error());
      if (!*state) return internal::erasureMissing(acc, id);
      if (**state == stateName(ConversationState::kOpen)) return internal::erasureOfOpen(id);
      PARLEY_PG_TRY(
          execute(c, "UPDATE conversations SET erased=true WHERE id=$1 AND NOT erased", id.str()));
      auto ctx = execute(
          c, "UPDATE conversations SET context_json='{}' WHERE id=$1 AND context_json<>'{}'",
          id.str());
      if (!ctx) return std::unexpected(ctx.error());
      out.context = *ctx > 0;
      struct Row {
        std::int64_t sequence;
        std::string event;
        std::string metadata;
      };
      auto rows = selectAll<Row>(
          c, "SELECT sequence, event_json, metadata_json FROM messages WHERE conversation=$1",
          [](const Rows& r, int i) {
            return Row{r.i64(i, 0), r.text(i, 1), r.text(i, 2)};
          },
          id.str());
      if (!rows) return std::unexpected(rows.error());
      for (const Row& r : *rows) {
        std::string event = erasedEventJson(r.event);
        if (event == r.event && r.metadata == "[]") continue;
        PARLEY_PG_TRY(execute(c,
                              "UPDATE messages SET event_json=$1, metadata_json='[]' "
                              "WHERE conversation=$2 AND sequence=$3",
                              event, id.str(), r.sequence));
        ++out.messages;
      }
      auto turns = execute(
          c,
          "UPDATE turns SET input_json='{}', response_json='{}', actions_json='[]', error='' "
          "WHERE account=$1 AND conversation=$2 AND (input_json<>'{}' OR response_json<>'{}' "
          "OR actions_json<>'[]' OR error<>'')",
          acc.str(), id.str());
      if (!turns) return std::unexpected(turns.error());
      out.turns = *turns;
      auto pending = execute(c, "DELETE FROM pending_turns WHERE account=$1 AND conversation=$2",
                             acc.str(), id.str());
      if (!pending) return std::unexpected(pending.error());
      out.pending_turns = *pending;
      auto props = execute(c, "DELETE FROM context_properties WHERE account=$1 AND session_id=$2",
                           acc.str(), id.str());
      if (!props) return std::unexpected(props.error());
      out.properties = *props;
      return {};
    });
    if (!st) return std::unexpected(st.error());
    return out;
  }

  // ConversationStore
  Status saveConversation(const Conversation& conv) override {
    if (auto st = checkConversation(conv); !st) return st;
    return writer_.submit([&](Tx& tx) { return saveTxn(tx.c, conv); }, Writer::Wrap::kSelf);
  }

  void saveConversationAsync(Conversation conv, std::function<void(Status)> done) override {
    if (auto st = checkConversation(conv); !st) return done(st);
    writer_.submitAsync([conv = std::move(conv)](Tx& tx) { return saveTxn(tx.c, conv); },
                        std::move(done), Writer::Wrap::kSelf);
  }

  Status appendMessage(const Conversation& conv, const Message& m) override {
    if (auto st = checkAppend(conv, m); !st) return st;
    return writer_.submit([&](Tx& tx) { return appendTxn(tx, conv, m); }, Writer::Wrap::kSelf);
  }

  void appendMessageAsync(std::shared_ptr<const Conversation> conv,
                          std::shared_ptr<const Message> m,
                          std::function<void(Status)> done) override {
    if (auto st = checkAppend(*conv, *m); !st) return done(st);
    writer_.submitAsync(
        [conv = std::move(conv), m = std::move(m)](Tx& tx) { return appendTxn(tx, *conv, *m); },
        std::move(done), Writer::Wrap::kSelf);
  }

  Result<Conversation> getConversation(const AccountId& acc, const ConversationId& id) override {
    auto r = read([&](Conn& c) {
      return selectOne<Conversation>(c,
                                     "SELECT " + std::string(kConversationSelect) +
                                         " FROM conversations c WHERE id=$1 AND account=$2",
                                     conversationRow, id.str(), acc.str());
    });
    return found(std::move(r),
                 "conversation " + id.str() + " does not exist in account " + acc.str());
  }

  Result<std::vector<Conversation>> listConversations(const AccountId& acc,
                                                      const ConversationQuery& q) override {
    if (q.limit <= 0) return std::vector<Conversation>{};
    std::string sql =
        "SELECT " + std::string(kConversationSelect) + " FROM conversations c WHERE account=$1";
    std::vector<Param> ps = params(acc.str());
    if (q.state) {
      ps.push_back(toParam(stateName(*q.state)));
      sql += " AND state=$" + std::to_string(ps.size());
    }
    if (q.skill) {
      ps.push_back(toParam(q.skill->str()));
      sql += " AND skill=$" + std::to_string(ps.size());
    }
    if (q.consumer) {
      ps.push_back(toParam(q.consumer->str()));
      sql += " AND consumer=$" + std::to_string(ps.size());
    }
    ps.push_back(toParam(q.limit));
    sql += " ORDER BY start_ts, id LIMIT $" + std::to_string(ps.size());
    return read([&](Conn& c) -> Result<std::vector<Conversation>> {
      auto r = c.query(sql, ps);
      if (!r) return std::unexpected(r.error());
      std::vector<Conversation> out;
      for (int i = 0; i < r->size(); ++i) out.push_back(conversationRow(*r, i));
      return out;
    });
  }

  Result<std::vector<Conversation>> listOpenConversations() override {
    return read([&](Conn& c) {
      return selectAll<Conversation>(c,
                                     "SELECT " + std::string(kConversationSelect) +
                                         " FROM conversations c WHERE state=$1 ORDER BY "
                                         "start_ts, id",
                                     conversationRow, stateName(ConversationState::kOpen));
    });
  }

  Result<std::vector<Message>> listMessages(const ConversationId& id, std::int64_t from_seq,
                                            int limit) override {
    if (limit <= 0) return std::vector<Message>{};
    return read([&](Conn& c) {
      return selectAll<Message>(c,
                                "SELECT " + std::string(kMessageCols) +
                                    " FROM messages WHERE conversation=$1 AND sequence>=$2 "
                                    "ORDER BY sequence LIMIT $3",
                                messageRow, id.str(), from_seq, limit);
    });
  }

  Result<std::optional<Message>> findMessageByKey(const ConversationId& id,
                                                  const std::string& originator_id,
                                                  const std::string& key) override {
    if (key.empty()) return std::optional<Message>();
    return read([&](Conn& c) { return messageByKey(c, id, originator_id, key); });
  }

  // FunctionStore
  Status createFunction(const FunctionRecord& f) override {
    if (f.uuid.empty()) return invalid("function uuid is required");
    if (f.account.empty()) return invalid("function account is required");
    if (f.name.empty()) return invalid("function name is required");
    FunctionRecord stored = f;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    if (stored.updated_at == 0) stored.updated_at = stored.created_at;
    return write([&](Conn& c) -> Status {
      auto dup = exists(c, "SELECT 1 FROM functions WHERE uuid=$1", f.uuid.str());
      if (!dup) return asStatus(dup);
      if (*dup) return conflict("function " + f.uuid.str() + " already exists");
      return conflictAs(
          asStatus(execute(c,
                           "INSERT INTO functions(" + std::string(kFunctionCols) +
                               ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                           stored.uuid.str(), stored.account.str(), stored.name, stored.description,
                           stored.event_id, stored.code, envJson(stored.env),
                           std::string(functionStateName(stored.state)), stored.version,
                           stored.created_by, stored.updated_by, stored.created_at,
                           stored.updated_at)),
          functionNameMessage(f));
    });
  }

  Status updateFunction(const FunctionRecord& f) override {
    return write([&](Conn& c) -> Status {
      auto n = execute(c,
                       "UPDATE functions SET name=$1, description=$2, event_id=$3, code=$4, "
                       "env_json=$5, state=$6, version=$7, created_by=$8, updated_by=$9, "
                       "created_at=$10, updated_at=$11 WHERE uuid=$12 AND account=$13",
                       f.name, f.description, f.event_id, f.code, envJson(f.env),
                       std::string(functionStateName(f.state)), f.version, f.created_by,
                       f.updated_by, f.created_at, f.updated_at, f.uuid.str(), f.account.str());
      if (!n) return conflictAs(asStatus(n), functionNameMessage(f));
      if (*n == 0) return notFound(functionMissing(f.account, f.uuid));
      return {};
    });
  }

  Status deleteFunction(const AccountId& acc, const FunctionId& id) override {
    return write([&](Conn& c) -> Status {
      PARLEY_PG_TRY(changedOrNotFound(
          execute(c, "DELETE FROM functions WHERE uuid=$1 AND account=$2", id.str(), acc.str()),
          functionMissing(acc, id)));
      PARLEY_PG_TRY(execute(c, "DELETE FROM deployments WHERE account=$1 AND function_uuid=$2",
                            acc.str(), id.str()));
      PARLEY_PG_TRY(execute(c, "DELETE FROM schedules WHERE account=$1 AND function_uuid=$2",
                            acc.str(), id.str()));
      return asStatus(execute(c,
                              "DELETE FROM invocation_logs WHERE account=$1 AND function_uuid=$2",
                              acc.str(), id.str()));
    });
  }

  Result<FunctionRecord> getFunction(const AccountId& acc, const FunctionId& id) override {
    auto r = read([&](Conn& c) {
      return selectOne<FunctionRecord>(
          c,
          "SELECT " + std::string(kFunctionCols) + " FROM functions WHERE uuid=$1 AND account=$2",
          functionRow, id.str(), acc.str());
    });
    return found(std::move(r), functionMissing(acc, id));
  }

  Result<std::vector<FunctionRecord>> listFunctions(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<FunctionRecord>(c,
                                       "SELECT " + std::string(kFunctionCols) +
                                           " FROM functions WHERE account=$1 ORDER BY name, uuid",
                                       functionRow, acc.str());
    });
  }

  Status addDeployment(const Deployment& d) override {
    if (d.uuid.empty()) return invalid("deployment uuid is required");
    const TimeMs created = d.created_at ? d.created_at : clock_.nowMs();
    return write([&](Conn& c) {
      return conflictAs(
          asStatus(execute(c,
                           "INSERT INTO deployments(" + std::string(kDeploymentCols) +
                               ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                           d.uuid, d.function.str(), d.account.str(), d.function_version, d.code,
                           envJson(d.env), std::string(deploymentStateName(d.state)), d.error_json,
                           d.created_by, created, d.deployed_at)),
          "deployment " + d.uuid + " already exists");
    });
  }

  Result<std::vector<Deployment>> listDeployments(const AccountId& acc, const FunctionId& id,
                                                  int limit) override {
    if (limit <= 0) return std::vector<Deployment>{};
    return read([&](Conn& c) {
      return selectAll<Deployment>(c,
                                   "SELECT " + std::string(kDeploymentCols) +
                                       " FROM deployments WHERE account=$1 AND function_uuid=$2 "
                                       "ORDER BY created_at DESC, seq DESC LIMIT $3",
                                   deploymentRow, acc.str(), id.str(), limit);
    });
  }

  Status pruneDeployments(const AccountId& acc, const FunctionId& id, int keep) override {
    return write([&](Conn& c) {
      return asStatus(
          execute(c,
                  "DELETE FROM deployments WHERE account=$1 AND function_uuid=$2 AND seq NOT IN "
                  "(SELECT seq FROM deployments WHERE account=$1 AND function_uuid=$2 "
                  "ORDER BY created_at DESC, seq DESC LIMIT $3)",
                  acc.str(), id.str(), std::max(keep, 0)));
    });
  }

  Status appendLogs(const std::vector<InvocationLog>& logs) override {
    if (logs.empty()) return {};
    return write([&](Conn& c) -> Status {
      for (const auto& l : logs)
        PARLEY_PG_TRY(execute(c,
                              "INSERT INTO invocation_logs(function_uuid, account, request_id, "
                              "ts, level, message, extras_json) VALUES($1,$2,$3,$4,$5,$6,$7)",
                              l.function.str(), l.account.str(), l.request_id, l.ts, l.level,
                              l.message, l.extras_json));
      return {};
    });
  }

  Result<std::vector<InvocationLog>> listLogs(const AccountId& acc, const FunctionId& id,
                                              TimeMs since, int limit) override {
    if (limit <= 0) return std::vector<InvocationLog>{};
    return read([&](Conn& c) {
      return selectAll<InvocationLog>(
          c,
          "SELECT function_uuid, account, request_id, ts, level, message, extras_json FROM "
          "invocation_logs WHERE account=$1 AND function_uuid=$2 AND ts>=$3 "
          "ORDER BY ts DESC, seq DESC LIMIT $4",
          logRow, acc.str(), id.str(), since, limit);
    });
  }

  Status putSecret(const Secret& s) override {
    if (s.key.empty()) return invalid("secret key is required");
    const TimeMs updated = s.updated_at ? s.updated_at : clock_.nowMs();
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "INSERT INTO secrets(account, key_name, ciphertext, updated_at) "
                              "VALUES($1,$2,$3,$4) ON CONFLICT(account, key_name) DO UPDATE SET "
                              "ciphertext=excluded.ciphertext, updated_at=excluded.updated_at",
                              s.account.str(), s.key, Blob{s.ciphertext}, updated));
    });
  }

  Result<Secret> getSecret(const AccountId& acc, const std::string& key) override {
    auto r = read([&](Conn& c) {
      return selectOne<Secret>(
          c,
          "SELECT account, key_name, ciphertext, updated_at FROM secrets "
          "WHERE account=$1 AND key_name=$2",
          [](const Rows& rows, int i) {
            Secret s;
            s.account = AccountId(rows.text(i, 0));
            s.key = rows.text(i, 1);
            s.ciphertext = rows.bytes(i, 2);
            s.updated_at = rows.i64(i, 3);
            return s;
          },
          acc.str(), key);
    });
    return found(std::move(r), "secret '" + key + "' does not exist in account " + acc.str());
  }

  Status deleteSecret(const AccountId& acc, const std::string& key) override {
    return write([&](Conn& c) {
      return changedOrNotFound(
          execute(c, "DELETE FROM secrets WHERE account=$1 AND key_name=$2", acc.str(), key),
          "secret '" + key + "' does not exist in account " + acc.str());
    });
  }

  Result<std::vector<std::string>> listSecretKeys(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<std::string>(
          c, "SELECT key_name FROM secrets WHERE account=$1 ORDER BY key_name",
          [](const Rows& r, int i) { return r.text(i, 0); }, acc.str());
    });
  }

  Status appendSecretAudit(const SecretAuditEntry& e, int keep) override {
    if (e.account.empty()) return invalid("account id is required");
    const TimeMs ts = e.ts ? e.ts : clock_.nowMs();
    return write([&](Conn& c) -> Status {
      PARLEY_PG_TRY(execute(c,
                            "INSERT INTO secret_audit(account, ts, function_uuid, request_id, "
                            "invoker, user_id, login_name, key_name, op, outcome, detail) "
                            "VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                            e.account.str(), ts, e.function.str(), e.request_id,
                            std::string(auditInvokerName(e.invoker)), e.user.str(), e.login_name,
                            e.key, std::string(auditOpName(e.op)),
                            std::string(auditOutcomeName(e.outcome)), e.detail));
      return asStatus(execute(c,
                              "DELETE FROM secret_audit WHERE account=$1 AND seq <= "
                              "(SELECT seq FROM secret_audit WHERE account=$1 "
                              "ORDER BY seq DESC LIMIT 1 OFFSET $2)",
                              e.account.str(), std::max(keep, 0)));
    });
  }

  Result<std::vector<SecretAuditEntry>> listSecretAudit(const AccountId& acc, int limit) override {
    if (limit <= 0) return std::vector<SecretAuditEntry>{};
    return read([&](Conn& c) {
      return selectAll<SecretAuditEntry>(
          c,
          "SELECT account, ts, function_uuid, request_id, invoker, user_id, login_name, "
          "key_name, op, outcome, detail FROM secret_audit WHERE account=$1 "
          "ORDER BY seq DESC LIMIT $2",
          secretAuditRow, acc.str(), limit);
    });
  }

  Status putAllowlist(const AccountId& acc, const std::vector<std::string>& domains) override {
    return write([&](Conn& c) -> Status {
      PARLEY_PG_TRY(execute(c, "DELETE FROM allowlist WHERE account=$1", acc.str()));
      std::int64_t pos = 0;
      for (const auto& d : domains)
        PARLEY_PG_TRY(execute(c,
                              "INSERT INTO allowlist(account, position, domain) VALUES($1,$2,$3)",
                              acc.str(), pos++, d));
      return {};
    });
  }

  Result<std::vector<std::string>> getAllowlist(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<std::string>(
          c, "SELECT domain FROM allowlist WHERE account=$1 ORDER BY position",
          [](const Rows& r, int i) { return r.text(i, 0); }, acc.str());
    });
  }

  Status putContextProperty(const ContextProperty& p) override {
    if (p.ns.empty()) return invalid("context namespace is required");
    if (p.name.empty()) return invalid("context property name is required");
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "INSERT INTO context_properties(account, ns, session_id, name, "
                              "value_json, expires_at) VALUES($1,$2,$3,$4,$5,$6) "
                              "ON CONFLICT(account, ns, session_id, name) DO UPDATE SET "
                              "value_json=excluded.value_json, expires_at=excluded.expires_at",
                              p.account.str(), p.ns, p.session_id, p.name, p.value_json,
                              p.expires_at));
    });
  }

  Result<std::vector<ContextProperty>> listContextProperties(const AccountId& acc,
                                                             const std::string& ns,
                                                             const std::string& session) override {
    const TimeMs now = clock_.nowMs();
    return read([&](Conn& c) {
      return selectAll<ContextProperty>(
          c,
          "SELECT account, ns, session_id, name, value_json, expires_at FROM context_properties "
          "WHERE account=$1 AND ns=$2 AND session_id=$3 AND (expires_at=0 OR expires_at>$4) "
          "ORDER BY name",
          contextRow, acc.str(), ns, session, now);
    });
  }

  Status deleteContextProperties(const AccountId& acc, const std::string& ns,
                                 const std::string& session, const std::string& name) override {
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "DELETE FROM context_properties WHERE account=$1 AND ns=$2 AND "
                              "session_id=$3 AND ($4::text='' OR name=$4::text)",
                              acc.str(), ns, session, name));
    });
  }

  // BotStore
  Status createBot(const BotRecord& b) override {
    if (b.id.empty()) return invalid("bot id is required");
    if (b.account.empty()) return invalid("bot account is required");
    BotRecord stored = b;
    if (stored.created_at == 0) stored.created_at = clock_.nowMs();
    if (stored.updated_at == 0) stored.updated_at = stored.created_at;
    return write([&](Conn& c) -> Status {
      auto dup =
          exists(c, "SELECT 1 FROM bots WHERE account=$1 AND id=$2", b.account.str(), b.id.str());
      if (!dup) return asStatus(dup);
      if (*dup)
        return conflict("bot " + b.id.str() + " already exists in account " + b.account.str());
      PARLEY_PG_TRY(checkBotUser(c, b));
      return conflictAs(
          asStatus(execute(
              c, "INSERT INTO bots(" + std::string(kBotCols) + ") VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
              stored.account.str(), stored.id.str(), stored.name, stored.user.str(),
              stored.config_json, botStatusName(stored.status), stored.created_at,
              stored.updated_at)),
          "bot " + b.id.str() + " already exists in account " + b.account.str() + ", or user " +
              b.user.str() + " already has a bot");
    });
  }

  Status updateBot(const BotRecord& b) override {
    return write([&](Conn& c) -> Status {
      auto there =
          exists(c, "SELECT 1 FROM bots WHERE account=$1 AND id=$2", b.account.str(), b.id.str());
      if (!there) return asStatus(there);
      if (!*there) return notFound(botMissing(b.account, b.id));
      PARLEY_PG_TRY(checkBotUser(c, b));
      return asStatus(execute(c,
                              "UPDATE bots SET name=$1, user_id=$2, config_json=$3, status=$4, "
                              "created_at=$5, updated_at=$6 WHERE account=$7 AND id=$8",
                              b.name, b.user.str(), b.config_json, botStatusName(b.status),
                              b.created_at, b.updated_at, b.account.str(), b.id.str()));
    });
  }

  Status deleteBot(const AccountId& acc, const BotId& id) override {
    return write([&](Conn& c) -> Status {
      PARLEY_PG_TRY(changedOrNotFound(
          execute(c, "DELETE FROM bots WHERE account=$1 AND id=$2", acc.str(), id.str()),
          botMissing(acc, id)));
      return asStatus(
          execute(c, "DELETE FROM turns WHERE account=$1 AND bot=$2", acc.str(), id.str()));
    });
  }

  Result<BotRecord> getBot(const AccountId& acc, const BotId& id) override {
    auto r = read([&](Conn& c) {
      return selectOne<BotRecord>(
          c, "SELECT " + std::string(kBotCols) + " FROM bots WHERE account=$1 AND id=$2", botRow,
          acc.str(), id.str());
    });
    return found(std::move(r), botMissing(acc, id));
  }

  Result<std::vector<BotRecord>> listBots(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<BotRecord>(
          c, "SELECT " + std::string(kBotCols) + " FROM bots WHERE account=$1 ORDER BY id", botRow,
          acc.str());
    });
  }

  Result<std::vector<BotRecord>> listAllBots() override {
    return read([&](Conn& c) {
      return selectAll<BotRecord>(
          c, "SELECT " + std::string(kBotCols) + " FROM bots ORDER BY account, id", botRow);
    });
  }

  Status appendTurn(const TurnRecord& t, int keep) override {
    if (t.turn_id.empty()) return invalid("turn id is required");
    return write([&](Conn& c) { return appendTurnTxn(c, t, keep); });
  }

  void appendTurnAsync(TurnRecord t, int keep, std::function<void(Status)> done) override {
    if (t.turn_id.empty()) return done(invalid("turn id is required"));
    writer_.submitAsync([t = std::move(t), keep](Tx& tx) { return appendTurnTxn(tx.c, t, keep); },
                        std::move(done));
  }

  Result<std::vector<TurnRecord>> listTurns(const AccountId& acc, const BotId& id,
                                            int limit) override {
    if (limit <= 0) return std::vector<TurnRecord>{};
    if (writer_.asyncQueued() > 0) {
      // Queued records first: a write queued after them returns once they committed.
      PARLEY_PG_TRY(write([](Conn&) -> Status { return {}; }));
    }
    return read([&](Conn& c) {
      return selectAll<TurnRecord>(c,
                                   "SELECT " + std::string(kTurnCols) +
                                       " FROM turns WHERE account=$1 AND bot=$2 "
                                       "ORDER BY ts DESC, seq DESC LIMIT $3",
                                   turnRow, acc.str(), id.str(), limit);
    });
  }

  Status putPendingTurn(const PendingTurn& p) override {
    if (p.turn_id.empty()) return invalid("turn id is required");
    const TimeMs created = p.created_at ? p.created_at : clock_.nowMs();
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "INSERT INTO pending_turns(turn_id, account, bot, conversation, "
                              "state_json, created_at) VALUES($1,$2,$3,$4,$5,$6) "
                              "ON CONFLICT(turn_id) DO UPDATE SET account=excluded.account, "
                              "bot=excluded.bot, conversation=excluded.conversation, "
                              "state_json=excluded.state_json, created_at=excluded.created_at",
                              p.turn_id, p.account.str(), p.bot.str(), p.conversation.str(),
                              p.state_json, created));
    });
  }

  Status deletePendingTurn(const std::string& turn_id) override {
    return write([&](Conn& c) {
      return asStatus(execute(c, "DELETE FROM pending_turns WHERE turn_id=$1", turn_id));
    });
  }

  Result<std::vector<PendingTurn>> listPendingTurns() override {
    return read([&](Conn& c) {
      return selectAll<PendingTurn>(c,
                                    "SELECT account, bot, conversation, turn_id, state_json, "
                                    "created_at FROM pending_turns ORDER BY created_at, seq",
                                    pendingRow);
    });
  }

  Status putImageAllowlist(const AccountId& acc, const std::vector<std::string>& entries) override {
    if (acc.empty()) return invalid("account is required");
    std::string text = stringsJson(entries);
    return write([&](Conn& c) {
      return asStatus(
          execute(c,
                  "INSERT INTO image_allowlists(account, entries_json) VALUES($1,$2) "
                  "ON CONFLICT(account) DO UPDATE SET entries_json=excluded.entries_json",
                  acc.str(), text));
    });
  }

  Result<std::vector<std::string>> getImageAllowlist(const AccountId& acc) override {
    auto r = read([&](Conn& c) {
      return selectOne<std::vector<std::string>>(
          c, "SELECT entries_json FROM image_allowlists WHERE account=$1",
          [](const Rows& rows, int i) { return parseStringsJson(rows.text(i, 0)); }, acc.str());
    });
    return found(std::move(r), "account " + acc.str() + " has no image allowlist");
  }

  Status deleteImageAllowlist(const AccountId& acc) override {
    return write([&](Conn& c) {
      return changedOrNotFound(
          execute(c, "DELETE FROM image_allowlists WHERE account=$1", acc.str()),
          "account " + acc.str() + " has no image allowlist");
    });
  }

 private:
  static Status checkConversation(const Conversation& c) {
    if (c.id.empty()) return invalid("conversation id is required");
    if (c.account.empty()) return invalid("conversation account is required");
    return {};
  }

  static Status checkAppend(const Conversation& conv, const Message& m) {
    if (auto st = checkConversation(conv); !st) return st;
    if (m.conversation != conv.id)
      return invalid("message conversation " + m.conversation.str() +
                     " differs from conversation " + conv.id.str());
    return internal::checkAppendCounters(conv, m);
  }

  // The conversation's columns as parameters $first.. (17 of them, kConversationCols order).
  static void conversationParams(std::vector<Param>& ps, const Conversation& conv) {
    for (auto&& p :
         params(conv.id.str(), conv.account.str(), conv.consumer.str(), channelName(conv.channel),
                stateName(conv.state), conv.skill.str(), ttrTypeName(conv.ttr_type),
                conv.ttr_value_s, conv.ttr_due_at, conv.start_ts, conv.end_ts, conv.updated_at,
                closeReasonText(conv.close_reason), conv.next_sequence, conv.context_json,
                encodeTurnMark(conv.turn_mark), participantsJson(conv.participants)))
      ps.push_back(std::move(p));
  }

  // "INSERT INTO conversations(...) <source> ON CONFLICT(id) DO UPDATE ... WHERE the stored
  // row is the same account's": nothing changes (0 rows) when the id is another account's.
  static std::string upsertConversationSql(const std::string& source) {
    return "INSERT INTO conversations(" + std::string(kConversationCols) + ") " + source +
           " ON CONFLICT(id) DO UPDATE SET consumer=excluded.consumer, "
           "channel=excluded.channel, state=excluded.state, skill=excluded.skill, "
           "ttr_type=excluded.ttr_type, ttr_value_s=excluded.ttr_value_s, "
           "ttr_due_at=excluded.ttr_due_at, start_ts=excluded.start_ts, end_ts=excluded.end_ts, "
           "updated_at=excluded.updated_at, close_reason=excluded.close_reason, "
           "next_sequence=excluded.next_sequence, context_json=excluded.context_json, "
           "turn=excluded.turn, participants_json=excluded.participants_json "
           "WHERE conversations.account=excluded.account";
  }

  // One statement: the row with its participants, or nothing when the id is another account's.
  // Fails without aborting the transaction (Wrap::kSelf).
  static Result<std::optional<Lease>> leaseIn(Conn& c, const ConversationId& id,
                                              const char* lock = "") {
    return selectOne<Lease>(
        c,
        std::string("SELECT node, epoch, expires_at FROM conversation_leases WHERE "
                    "conversation=$1") +
            lock,
        [&](const Rows& rows, int i) {
          return Lease{id, rows.text(i, 0), rows.i64(i, 1), rows.i64(i, 2)};
        },
        id.str());
  }

  // A fenced write's check, in its transaction: the lease row is read FOR KEY SHARE, so a
  // takeover (which locks the row FOR UPDATE first) waits until this transaction has committed
  // or rolled back, and the new owner reads the conversation with this write in it, while the
  // holder's renewals (FOR NO KEY UPDATE) do not wait for it. Writes nothing.
  static Status checkFence(Conn& c, const Conversation& conv) {
    if (conv.fence.empty()) return {};
    auto l = leaseIn(c, conv.id, " FOR KEY SHARE");
    if (!l) return asStatus(l);
    if (*l && (*l)->fence() == conv.fence) return {};
    return internal::fenceRefused(conv, *l);
  }

  // An update of the stored row, else an insert: one statement for every save but a
  // conversation's first. The insert does nothing (instead of failing, which would abort the
  // group commit's whole transaction) when the id is taken or the consumer already has an open
  // conversation (the unique index conversations_open_consumer: an insert racing another
  // node's waits for it to commit or roll back); which of the two is then read, to say so.
  static Status saveTxn(Conn& c, const Conversation& conv) {
    PARLEY_PG_TRY(checkFence(c, conv));
    static const std::string kUpdate =
        "UPDATE conversations SET consumer=$3, channel=$4, state=$5, skill=$6, ttr_type=$7, "
        "ttr_value_s=$8, ttr_due_at=$9, start_ts=$10, end_ts=$11, updated_at=$12, "
        "close_reason=$13, next_sequence=$14, context_json=$15, turn=$16, participants_json=$17 "
        "WHERE id=$1 AND account=$2";
    static const std::string kInsert =
        "INSERT INTO conversations(" + std::string(kConversationCols) +
        ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) "
        "ON CONFLICT DO NOTHING";
    std::vector<Param> ps;
    conversationParams(ps, conv);
    auto updated = c.query(kUpdate, ps);
    if (!updated) return asStatus(updated);
    if (updated->affected() > 0) return {};
    auto inserted = c.query(kInsert, ps);
    if (!inserted) return asStatus(inserted);
    if (inserted->affected() > 0) return {};
    auto text = [](const Rows& rows, int i) { return rows.text(i, 0); };
    auto owner = selectOne<std::string>(c, "SELECT account FROM conversations WHERE id=$1", text,
                                        conv.id.str());
    if (!owner) return asStatus(owner);
    if (*owner && **owner != conv.account.str())
      return conflict("conversation " + conv.id.str() + " belongs to another account");
    if (*owner) {
      // Inserted by another writer since the update: update it now.
      auto again = c.query(kUpdate, ps);
      if (!again) return asStatus(again);
      if (again->affected() > 0) return {};
    }
    auto open = selectOne<std::string>(
        c,
        "SELECT id FROM conversations WHERE account=$1 AND consumer=$2 AND state='OPEN' AND "
        "id<>$3",
        text, conv.account.str(), conv.consumer.str(), conv.id.str());
    if (!open) return asStatus(open);
    if (*open) return internal::openConversationTaken(conv, **open);
    return makeError(ErrorCode::kUnavailable, "conversation " + conv.id.str() +
                                                  " was not stored: a concurrent write "
                                                  "changed what refused it; try again");
  }

  // One statement: checks the conversation's owner, inserts the message unless its sequence
  // exists, and (only when it was inserted) upserts the conversation. An expected failure
  // (another account's conversation, a taken sequence) writes nothing, so the write needs no
  // savepoint (Wrap::kSelf).
  static Status appendTxn(Tx& tx, const Conversation& conv, const Message& m) {
    PARLEY_PG_TRY(checkFence(tx.c, conv));
    static const std::string kSql =
        "WITH owner AS (SELECT NOT EXISTS (SELECT 1 FROM conversations WHERE id=$1 AND "
        "account<>$2) AS ok), "
        "m AS (INSERT INTO messages(" +
        std::string(kMessageCols) +
        ", idem_key) SELECT $1, $18::bigint, $19::bigint, $20::text, $21::text, $22::text, "
        "$23::text, $24::text, $25::text, $26::text, $27::text FROM owner WHERE owner.ok "
        "ON CONFLICT DO NOTHING RETURNING 1), "
        "c AS (" +
        upsertConversationSql(
            "SELECT $1, $2, $3, $4, $5, $6, $7, $8::bigint, $9::bigint, $10::bigint, "
            "$11::bigint, $12::bigint, $13, $14::bigint, $15, $16, $17 WHERE EXISTS (SELECT 1 "
            "FROM m)") +
        " RETURNING 1) "
        "SELECT (SELECT ok FROM owner), (SELECT count(*) FROM m), (SELECT count(*) FROM c)";
    std::vector<Param> ps;
    conversationParams(ps, conv);
    for (auto&& p :
         params(m.sequence, m.server_ts, m.originator_id, m.originator_pid,
                participantRoleName(m.originator_role), audienceName(m.audience), m.event_json,
                m.metadata_json, encodeTurnMark(m.turn), m.idempotency_key))
      ps.push_back(std::move(p));
    auto r = tx.c.query(kSql, ps);
    if (!r) return asStatus(r);
    if (r->text(0, 0) != "t")
      return conflict("conversation " + conv.id.str() + " belongs to another account");
    if (r->i64(0, 1) == 0) {
      // Not inserted: the sequence is taken, or (messages_idem_key) the originator's key is.
      // ON CONFLICT waited for a racing insert of either to commit, so this read sees it.
      if (!m.idempotency_key.empty()) {
        auto dup = messageByKey(tx.c, conv.id, m.originator_id, m.idempotency_key);
        if (!dup) return asStatus(dup);
        if (*dup) return internal::duplicateKey(conv, m);
      }
      return conflict("message " + std::to_string(m.sequence) + " already exists in conversation " +
                      conv.id.str());
    }
    if (r->i64(0, 2) == 0) {
      // Another account's transaction stored this id since the check: the message is in, the
      // conversation is not theirs. Undo the whole transaction.
      tx.must_roll_back = true;
      return conflict("conversation " + conv.id.str() + " belongs to another account");
    }
    return {};
  }

  // The message of conversation `id` with this originator and idempotency key.
  static Result<std::optional<Message>> messageByKey(Conn& c, const ConversationId& id,
                                                     const std::string& originator_id,
                                                     const std::string& key) {
    auto found =
        selectOne<Message>(c,
                           "SELECT " + std::string(kMessageCols) +
                               " FROM messages WHERE conversation=$1 AND originator_id=$2 AND "
                               "idem_key=$3 AND idem_key<>''",
                           messageRow, id.str(), originator_id, key);
    if (found && *found) (*found)->idempotency_key = key;
    return found;
  }

  static Status appendTurnTxn(Conn& c, const TurnRecord& t, int keep) {
    PARLEY_PG_TRY(execute(c, "DELETE FROM turns WHERE account=$1 AND bot=$2 AND turn_id=$3",
                          t.account.str(), t.bot.str(), t.turn_id));
    // A record of a conversation whose content was erased is stored without texts. This write
    // and an erasure exclude each other by the conversation's erasure lock (shared here,
    // exclusive there): this one waits for an erasure in progress and then reads its mark (in a
    // statement of its own, so with a snapshot taken after the wait); an erasure starting later
    // waits for this transaction, and its UPDATE of the turns then finds this record. Not a lock
    // on the conversation's row: a node paused inside this transaction (SIGSTOP, a stall) would
    // hold it, and the conversation's next owner, whose every write updates that row, would
    // wait for the paused node (integration.js.cluster_faults saw a takeover's first publish
    // wait past 5 s).
    PARLEY_PG_TRY(asStatus(run(c, kErasureLockShared, t.conversation.str())));
    auto erased = selectOne<std::string>(
        c, "SELECT erased FROM conversations WHERE id=$1 AND account=$2",
        [](const Rows& r, int i) { return r.text(i, 0); }, t.conversation.str(), t.account.str());
    if (!erased) return asStatus(erased);
    const bool blank = erased->has_value() && **erased == "t";
    PARLEY_PG_TRY(execute(c,
                          "INSERT INTO turns(" + std::string(kTurnCols) +
                              ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                          t.account.str(), t.bot.str(), t.conversation.str(), t.turn_id, t.ts,
                          t.outcome, blank ? std::string("{}") : t.input_json,
                          blank ? std::string("{}") : t.response_json,
                          blank ? std::string("[]") : t.actions_json, t.timings_json,
                          blank ? std::string() : t.error));
    // Prune to the newest `keep`, by one transaction per bot at a time: nodes record one bot's
    // turns at once, and two transactions deleting the overflow rows in different orders
    // deadlocked (PostgreSQL failed one whole group commit after deadlock_timeout, 1 s). A
    // transaction that can't take the bot's advisory lock at once skips pruning: the one
    // holding it prunes now, and the next turn prunes what is left.
    auto turn_lock =
        run(c, "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
            t.account.str(), t.bot.str());
    if (!turn_lock) return asStatus(turn_lock);
    if (turn_lock->text(0, 0) != "t") return {};
    return asStatus(execute(c,
                            "DELETE FROM turns WHERE seq IN (SELECT seq FROM turns WHERE "
                            "account=$1 AND bot=$2 ORDER BY ts DESC, seq DESC OFFSET $3)",
                            t.account.str(), t.bot.str(), std::max(keep, 0)));
  }

  static Status deleteCredentialsIn(Conn& c, const AccountId& acc, const UserId& user) {
    PARLEY_PG_TRY(asStatus(
        execute(c, "DELETE FROM sessions WHERE account=$1 AND user_id=$2", acc.str(), user.str())));
    return asStatus(
        execute(c, "DELETE FROM api_keys WHERE account=$1 AND user_id=$2", acc.str(), user.str()));
  }

  // As the SQLite store's: `requested` when given (or "" when taken), else the account's next
  // free counter value; the counter moves past numeric ids handed out. The counter row is
  // locked (FOR UPDATE) so nodes creating ids at once take turns.
  static Result<std::string> assignId(Conn& c, const AccountId& acc, const char* kind,
                                      std::int64_t first, const std::string& table,
                                      const std::string& requested) {
    PARLEY_PG_TRY(execute(c,
                          "INSERT INTO id_counters(account, kind, next_id) VALUES($1,$2,$3) "
                          "ON CONFLICT(account, kind) DO NOTHING",
                          acc.str(), kind, first));
    auto counter = selectOne<std::int64_t>(
        c, "SELECT next_id FROM id_counters WHERE account=$1 AND kind=$2 FOR UPDATE",
        [](const Rows& r, int i) { return r.i64(i, 0); }, acc.str(), kind);
    if (!counter) return std::unexpected(counter.error());
    std::int64_t next = counter->value_or(first);
    const std::string exists_sql = "SELECT 1 FROM " + table + " WHERE account=$1 AND id=$2";
    std::string id;
    if (requested.empty()) {
      for (;;) {
        auto taken = exists(c, exists_sql, acc.str(), std::to_string(next));
        if (!taken) return std::unexpected(taken.error());
        if (!*taken) break;
        ++next;
      }
      id = std::to_string(next++);
    } else {
      auto taken = exists(c, exists_sql, acc.str(), requested);
      if (!taken) return std::unexpected(taken.error());
      if (*taken) return std::string();
      id = requested;
      if (auto n = internal::numericId(requested); n && *n >= next) next = *n + 1;
    }
    auto saved = execute(c, "UPDATE id_counters SET next_id=$1 WHERE account=$2 AND kind=$3", next,
                         acc.str(), kind);
    if (!saved) return std::unexpected(saved.error());
    return id;
  }

  static Status checkBotUser(Conn& c, const BotRecord& b) {
    if (b.user.empty()) return {};
    auto other = selectOne<std::string>(
        c, "SELECT id FROM bots WHERE account=$1 AND user_id=$2 AND id<>$3",
        [](const Rows& r, int i) { return r.text(i, 0); }, b.account.str(), b.user.str(),
        b.id.str());
    if (!other) return asStatus(other);
    if (*other) return conflict("user " + b.user.str() + " already has bot " + **other);
    return {};
  }

  static std::string userMissing(const AccountId& acc, const UserId& id) {
    return "user " + id.str() + " does not exist in account " + acc.str();
  }
  static std::string functionNameMessage(const FunctionRecord& f) {
    return "function name '" + f.name + "' is taken in account " + f.account.str();
  }
  static std::string functionMissing(const AccountId& acc, const FunctionId& id) {
    return "function " + id.str() + " does not exist in account " + acc.str();
  }
  static std::string scheduleMissing(const AccountId& acc, const std::string& id) {
    return "schedule " + id + " does not exist in account " + acc.str();
  }
  // After a compare-and-set that changed nothing: Conflict when the schedule exists (claimed,
  // edited or running), NotFound when it is gone.
  static Status scheduleTakenOrMissing(Conn& c, const AccountId& acc, const std::string& id) {
    auto there = exists(c, "SELECT 1 FROM schedules WHERE account=$1 AND id=$2", acc.str(), id);
    if (!there) return std::unexpected(there.error());
    if (!*there) return notFound(scheduleMissing(acc, id));
    return conflict("schedule " + id + " in account " + acc.str() +
                    " was claimed, edited or is running");
  }
  static std::string botMissing(const AccountId& acc, const BotId& id) {
    return "bot " + id.str() + " does not exist in account " + acc.str();
  }

  template <class F>
  Status write(F&& fn) {
    return writer_.submit([&fn](Tx& tx) -> Status { return fn(tx.c); });
  }

  // Runs `fn` on the lease connection (renewals and claims), each statement its own
  // transaction, one caller at a time.
  template <class F>
  Status onLeaseConn(F&& fn) {
    MutexLock lock(lease_mu_);
    try {
      return fn(*lease_conn_);
    } catch (const std::exception& e) {
      return internalError(std::string("postgres store: lease statement failed: ") + e.what());
    }
  }

  template <class F>
  auto read(F&& fn) -> decltype(fn(std::declval<Conn&>())) {
    auto lease = readers_.acquire();
    try {
      return fn(*lease);
    } catch (const std::exception& e) {
      return internalError(std::string("postgres store: read failed: ") + e.what());
    }
  }

  template <class T>
  static Result<T> found(Result<std::optional<T>>&& r, const std::string& message) {
    if (r.has_value()) {
      if (r->has_value()) return std::move(**r);
      return notFound(message);
    }
    return std::unexpected(std::move(r.error()));
  }

  const Clock& clock_;
  const int version_;
  Writer writer_;
  ReaderPool readers_;
  Mutex lease_mu_;
  std::unique_ptr<Conn> lease_conn_ PARLEY_GUARDED_BY(lease_mu_);
};

}  // namespace

bool isPostgresUri(const std::string& spec) {
  return spec.starts_with("postgres://") || spec.starts_with("postgresql://");
}

Status checkPostgresUri(const std::string& uri) { return pg::checkUri(uri); }

int postgresLatestSchemaVersion() { return pg::latestSchemaVersion(); }

const char* postgresLeaseClaimSql() { return PostgresStore::kClaimSql; }

Result<PostgresWriteStats> postgresWriteStats(Store& store) {
  auto* s = dynamic_cast<PostgresStore*>(&store);
  if (!s) return invalid("not a PostgreSQL store");
  return s->writeStats();
}

std::string postgresPrometheusText(Store& store) {
  auto st = postgresWriteStats(store);
  if (!st) return {};
  std::string out;
  prometheus::appendSample(out, "parley_store_transactions_total", "counter",
                           "Transactions the store's writer committed or tried.", st->transactions);
  prometheus::appendSample(out, "parley_store_writes_total", "counter",
                           "Writes run in those transactions.", st->writes);
  prometheus::appendSample(out, "parley_store_largest_batch", "gauge",
                           "Most writes committed in one transaction.", st->largest_batch);
  prometheus::appendSample(out, "parley_store_lost_commits_committed_total", "counter",
                           "COMMITs whose answer was lost and that had committed.",
                           st->lost_commits_committed);
  prometheus::appendSample(out, "parley_store_lost_commits_aborted_total", "counter",
                           "COMMITs whose answer was lost and that had been rolled back.",
                           st->lost_commits_aborted);
  prometheus::appendSample(out, "parley_store_lost_commits_unknown_total", "counter",
                           "COMMITs whose answer was lost and whose outcome was not learnt.",
                           st->lost_commits_unknown);
  return out;
}

Result<std::unique_ptr<Store>> openPostgresStore(const std::string& uri, const Clock& clock,
                                                 const PostgresOptions& options) {
  PARLEY_PG_TRY(pg::checkUri(uri));
  auto writer = Conn::open(uri);
  if (!writer) return std::unexpected(writer.error());
  auto leases = Conn::open(uri);
  if (!leases) return std::unexpected(leases.error());
  auto version = pg::migrate(**writer);
  if (!version) return std::unexpected(version.error());
  std::vector<std::unique_ptr<Conn>> readers;
  for (int i = 0; i < std::max(1, options.readers); ++i) {
    auto r = Conn::open(uri);
    if (!r) return std::unexpected(r.error());
    readers.push_back(std::move(*r));
  }
  return std::unique_ptr<Store>(new PostgresStore(clock, *version, std::move(*writer),
                                                  std::move(readers), std::move(*leases),
                                                  options.max_batch));
}

}  // namespace parley::store
