#include "store/sqlite/sqlite_store.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/json.h"
#include "common/prometheus.h"
#include "store/sqlite/batched_wal_vfs.h"
#include "store/sqlite/db.h"
#include "store/sqlite/schema.h"
#include "store/store_util.h"

namespace parley::store {
namespace {

using sqlite::Conn;
using sqlite::Query;

#define PARLEY_STORE_TRY(expr)                                \
  do {                                                        \
    if (auto try_status_ = (expr); !try_status_)              \
      return std::unexpected(std::move(try_status_).error()); \
  } while (0)

// A binary parameter (bound as BLOB rather than TEXT).
struct Blob {
  std::string_view bytes;
};

inline void bindOne(Query& q, const Blob& b) { q.blob(b.bytes); }
template <class T>
void bindOne(Query& q, const T& v) {
  q.arg(v);
}

// Prepares (cached) `sql`, binds `args` in order and returns the query, ready to step.
template <class... Args>
Result<Query> prepare(Conn& c, const std::string& sql, const Args&... args) {
  auto q = c.query(sql);
  if (!q) return q;
  (bindOne(*q, args), ...);
  return q;
}

// Runs a statement without result rows; returns the number of rows it changed.
template <class... Args>
Result<int> execute(Conn& c, const std::string& sql, const Args&... args) {
  auto q = prepare(c, sql, args...);
  if (!q) return std::unexpected(q.error());
  PARLEY_STORE_TRY(q->run());
  return q->changes();
}

// All rows of a query, each mapped by `row(Query&)`.
template <class T, class RowFn, class... Args>
Result<std::vector<T>> selectAll(Conn& c, const std::string& sql, RowFn row, const Args&... args) {
  auto q = prepare(c, sql, args...);
  if (!q) return std::unexpected(q.error());
  std::vector<T> out;
  for (;;) {
    auto has = q->next();
    if (!has) return std::unexpected(has.error());
    if (!*has) break;
    out.push_back(row(*q));
  }
  return out;
}

// The first row of a query, or nullopt.
template <class T, class RowFn, class... Args>
Result<std::optional<T>> selectOne(Conn& c, const std::string& sql, RowFn row,
                                   const Args&... args) {
  auto q = prepare(c, sql, args...);
  if (!q) return std::unexpected(q.error());
  auto has = q->next();
  if (!has) return std::unexpected(has.error());
  if (!*has) return std::optional<T>();
  return std::optional<T>(row(*q));
}

template <class... Args>
Result<bool> exists(Conn& c, const std::string& sql, const Args&... args) {
  auto r = selectOne<int>(
      c, sql, [](Query&) { return 1; }, args...);
  if (!r) return std::unexpected(r.error());
  return r->has_value();
}

// Replaces the message of a Conflict error (keeps other errors as they are).
Status conflictAs(Status st, const std::string& message) {
  if (!st && st.error().code == ErrorCode::kConflict) return conflict(message);
  return st;
}
template <class T>
Status asStatus(const Result<T>& r) {
  if (!r) return std::unexpected(r.error());
  return {};
}

// ---- JSON columns for vector fields -------------------------------------------------------

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
std::string skillsJson(const std::vector<SkillId>& skills) {
  boost::json::array a;
  for (const auto& s : skills) a.emplace_back(s.str());
  return json::dump(a);
}
std::vector<SkillId> parseSkillsJson(const std::string& text) {
  std::vector<SkillId> out;
  auto v = json::parse(text);
  if (!v || !v->is_array()) return out;
  for (const auto& e : v->as_array())
    if (e.is_string()) out.emplace_back(std::string(e.as_string()));
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

// ---- Row mappers (column order matches the SELECT lists below) ----------------------------

constexpr const char* kAccountCols =
    "id, name, ttr_urgent_s, ttr_prioritized_s, ttr_normal_s, created_at, status";
Account accountRow(Query& q) {
  Account a;
  a.id = AccountId(q.text(0));
  a.name = q.text(1);
  a.ttr_urgent_s = q.i64(2);
  a.ttr_prioritized_s = q.i64(3);
  a.ttr_normal_s = q.i64(4);
  a.created_at = q.i64(5);
  // An unknown status is read as disabled: refusing is the safe reading.
  a.status = parsedOr(parseAccountStatus(q.text(6)), AccountStatus::kDisabled);
  return a;
}

constexpr const char* kUserCols =
    "account, id, pid, login_name, password_hash, roles_json, type, skills_json, "
    "max_open_conversations, created_at, status";
User userRow(Query& q) {
  User u;
  u.account = AccountId(q.text(0));
  u.id = UserId(q.text(1));
  u.pid = q.text(2);
  u.login_name = q.text(3);
  u.password_hash = q.text(4);
  u.roles = parseRolesJson(q.text(5));
  u.type = parsedOr(parseUserType(q.text(6)), UserType::kHuman);
  u.skills = parseSkillsJson(q.text(7));
  u.max_open_conversations = static_cast<int>(q.i64(8));
  u.created_at = q.i64(9);
  u.status = parsedOr(parseUserStatus(q.text(10)), UserStatus::kDisabled);
  return u;
}

constexpr const char* kSessionCols = "bearer_hash, csrf, account, user_id, created_at, expires_at";
Session sessionRow(Query& q) {
  Session s;
  s.bearer_hash = q.text(0);
  s.csrf = q.text(1);
  s.account = AccountId(q.text(2));
  s.user = UserId(q.text(3));
  s.created_at = q.i64(4);
  s.expires_at = q.i64(5);
  return s;
}

constexpr const char* kApiKeyCols =
    "key_hash, account, user_id, name, created_at, id, scopes_json, expires_at, created_by";
ApiKey apiKeyRow(Query& q) {
  ApiKey k;
  k.key_hash = q.text(0);
  k.account = AccountId(q.text(1));
  k.user = UserId(q.text(2));
  k.name = q.text(3);
  k.created_at = q.i64(4);
  k.id = q.text(5);
  k.scopes = parseRolesJson(q.text(6));
  k.expires_at = q.i64(7);
  k.created_by = UserId(q.text(8));
  return k;
}

Skill skillRow(Query& q) {
  Skill s;
  s.account = AccountId(q.text(0));
  s.id = SkillId(q.text(1));
  s.name = q.text(2);
  s.created_at = q.i64(3);
  return s;
}

AgentState agentStateRow(Query& q) {
  AgentState s;
  s.account = AccountId(q.text(0));
  s.user = UserId(q.text(1));
  s.availability = parsedOr(parseAvailability(q.text(2)), Availability::kOffline);
  s.updated_at = q.i64(3);
  return s;
}

constexpr const char* kConversationCols =
    "id, account, consumer, channel, state, skill, ttr_type, ttr_value_s, ttr_due_at, start_ts, "
    "end_ts, updated_at, close_reason, next_sequence, context_json, turn";
// The same columns for SELECTs over `conversations c`. An append stores only its message (see
// SqliteStore::appendTxn), so `updated_at` and `next_sequence` are read as the larger of the
// stored value and what the conversation's last message implies.
constexpr const char* kConversationSelect =
    "c.id, c.account, c.consumer, c.channel, c.state, c.skill, c.ttr_type, c.ttr_value_s, "
    "c.ttr_due_at, c.start_ts, c.end_ts, "
    "MAX(c.updated_at, IFNULL((SELECT m.server_ts FROM messages m WHERE m.conversation=c.id "
    "ORDER BY m.sequence DESC LIMIT 1), 0)), "
    "c.close_reason, "
    "MAX(c.next_sequence, IFNULL((SELECT m.sequence + 1 FROM messages m WHERE m.conversation=c.id "
    "ORDER BY m.sequence DESC LIMIT 1), 0)), "
    "c.context_json, c.turn";
Conversation conversationRow(Query& q) {
  Conversation c;
  c.id = ConversationId(q.text(0));
  c.account = AccountId(q.text(1));
  c.consumer = ConsumerId(q.text(2));
  c.channel = parsedOr(parseChannel(q.text(3)), Channel::kMessaging);
  c.state = parsedOr(parseConversationState(q.text(4)), ConversationState::kOpen);
  c.skill = SkillId(q.text(5));
  c.ttr_type = parsedOr(parseTtrType(q.text(6)), TtrType::kNormal);
  c.ttr_value_s = q.i64(7);
  c.ttr_due_at = q.i64(8);
  c.start_ts = q.i64(9);
  c.end_ts = q.i64(10);
  c.updated_at = q.i64(11);
  c.close_reason = q.text(12);
  c.next_sequence = q.i64(13);
  c.context_json = q.text(14);
  c.turn_mark = decodeTurnMark(q.text(15));
  return c;
}

Participant participantRow(Query& q) {
  Participant p;
  p.id = q.text(0);
  p.role = q.text(1);
  p.state = q.text(2);
  p.joined_at = q.i64(3);
  return p;
}

constexpr const char* kMessageCols =
    "conversation, sequence, server_ts, originator_id, originator_pid, originator_role, "
    "audience, event_json, metadata_json, turn";
Message messageRow(Query& q) {
  Message m;
  m.conversation = ConversationId(q.text(0));
  m.sequence = q.i64(1);
  m.server_ts = q.i64(2);
  m.originator_id = q.text(3);
  m.originator_pid = q.text(4);
  m.originator_role = q.text(5);
  m.audience = q.text(6);
  m.event_json = q.text(7);
  m.metadata_json = q.text(8);
  m.turn = decodeTurnMark(q.text(9));
  return m;
}

constexpr const char* kFunctionCols =
    "uuid, account, name, description, event_id, code, env_json, state, version, created_by, "
    "updated_by, created_at, updated_at";
FunctionRecord functionRow(Query& q) {
  FunctionRecord f;
  f.uuid = FunctionId(q.text(0));
  f.account = AccountId(q.text(1));
  f.name = q.text(2);
  f.description = q.text(3);
  f.event_id = q.text(4);
  f.code = q.text(5);
  f.env = parseEnvJson(q.text(6));
  f.state = q.text(7);
  f.version = q.i64(8);
  f.created_by = q.text(9);
  f.updated_by = q.text(10);
  f.created_at = q.i64(11);
  f.updated_at = q.i64(12);
  return f;
}

constexpr const char* kDeploymentCols =
    "uuid, function_uuid, account, function_version, code, env_json, state, error_json, "
    "created_by, created_at, deployed_at";
Deployment deploymentRow(Query& q) {
  Deployment d;
  d.uuid = q.text(0);
  d.function = FunctionId(q.text(1));
  d.account = AccountId(q.text(2));
  d.function_version = q.i64(3);
  d.code = q.text(4);
  d.env = parseEnvJson(q.text(5));
  d.state = q.text(6);
  d.error_json = q.text(7);
  d.created_by = q.text(8);
  d.created_at = q.i64(9);
  d.deployed_at = q.i64(10);
  return d;
}

InvocationLog logRow(Query& q) {
  InvocationLog l;
  l.function = FunctionId(q.text(0));
  l.account = AccountId(q.text(1));
  l.request_id = q.text(2);
  l.ts = q.i64(3);
  l.level = q.text(4);
  l.message = q.text(5);
  l.extras_json = q.text(6);
  return l;
}

Secret secretRow(Query& q) {
  Secret s;
  s.account = AccountId(q.text(0));
  s.key = q.text(1);
  s.ciphertext = q.text(2);
  s.updated_at = q.i64(3);
  return s;
}

SecretAuditEntry secretAuditRow(Query& q) {
  SecretAuditEntry e;
  e.account = AccountId(q.text(0));
  e.ts = q.i64(1);
  e.function = FunctionId(q.text(2));
  e.request_id = q.text(3);
  e.invoker = q.text(4);
  e.user = UserId(q.text(5));
  e.login_name = q.text(6);
  e.key = q.text(7);
  e.op = q.text(8);
  e.outcome = q.text(9);
  e.detail = q.text(10);
  return e;
}

ContextProperty contextRow(Query& q) {
  ContextProperty p;
  p.account = AccountId(q.text(0));
  p.ns = q.text(1);
  p.session_id = q.text(2);
  p.name = q.text(3);
  p.value_json = q.text(4);
  p.expires_at = q.i64(5);
  return p;
}

constexpr const char* kBotCols =
    "account, id, name, user_id, config_json, status, created_at, updated_at";
BotRecord botRow(Query& q) {
  BotRecord b;
  b.account = AccountId(q.text(0));
  b.id = BotId(q.text(1));
  b.name = q.text(2);
  b.user = UserId(q.text(3));
  b.config_json = q.text(4);
  b.status = q.text(5);
  b.created_at = q.i64(6);
  b.updated_at = q.i64(7);
  return b;
}

constexpr const char* kTurnCols =
    "account, bot, conversation, turn_id, ts, outcome, input_json, response_json, actions_json, "
    "timings_json, error";
TurnRecord turnRow(Query& q) {
  TurnRecord t;
  t.account = AccountId(q.text(0));
  t.bot = BotId(q.text(1));
  t.conversation = ConversationId(q.text(2));
  t.turn_id = q.text(3);
  t.ts = q.i64(4);
  t.outcome = q.text(5);
  t.input_json = q.text(6);
  t.response_json = q.text(7);
  t.actions_json = q.text(8);
  t.timings_json = q.text(9);
  t.error = q.text(10);
  return t;
}

PendingTurn pendingRow(Query& q) {
  PendingTurn p;
  p.account = AccountId(q.text(0));
  p.bot = BotId(q.text(1));
  p.conversation = ConversationId(q.text(2));
  p.turn_id = q.text(3);
  p.state_json = q.text(4);
  p.created_at = q.i64(5);
  return p;
}

std::string cols(const char* c) { return std::string(c); }

// ---- Checkpointer: copies the WAL into the database file off the write path -----------------

// SQLite's own auto-checkpoint runs inside the COMMIT that crosses the threshold, so one write
// pays for copying every page and for two fsyncs (milliseconds on this kind of disk). Instead
// the writer connection reports its WAL size after each commit (sqlite3_wal_hook) and this
// thread runs PASSIVE checkpoints on its own connection while writes go on. A PASSIVE checkpoint
// cannot let the WAL restart while writes keep arriving, so the writer still checkpoints
// itself, between batches, when the WAL exceeds a hard limit (see Writer::runBatch).
class Checkpointer {
 public:
  // `conn` is a read-write connection used only for checkpoints; `trigger_pages` the WAL size
  // (in frames) that wakes the thread.
  Checkpointer(std::unique_ptr<Conn> conn, int trigger_pages)
      : conn_(std::move(conn)), trigger_pages_(std::max(1, trigger_pages)) {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "store-ckpt");
      loop();
    });
  }
  ~Checkpointer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Called by the writer after a commit with the WAL size in frames.
  void walSize(int frames) {
    if (frames < trigger_pages_) return;
    {
      std::lock_guard lock(mu_);
      requested_ = true;
    }
    cv_.notify_one();
  }

  std::int64_t checkpoints() const {
    std::lock_guard lock(mu_);
    return done_;
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || requested_; });
      if (stop_) return;
      requested_ = false;
      lock.unlock();
      int log = 0;
      int copied = 0;
      (void)sqlite3_wal_checkpoint_v2(conn_->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log,
                                      &copied);
      lock.lock();
      ++done_;
    }
  }

  std::unique_ptr<Conn> conn_;
  const int trigger_pages_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool requested_ = false;  // guarded by mu_
  bool stop_ = false;       // guarded by mu_
  std::int64_t done_ = 0;   // guarded by mu_
  std::thread thread_;
};
// ---- Writer: one connection, one writer at a time, group commit -----------------------------

// Owns the only read-write connection. Callers submit a write (a function run against the
// connection inside a transaction), either blocking until the transaction that holds it has
// committed (submit) or with a completion callback (submitAsync). All writes share one FIFO
// queue. Whoever leads takes every queued write (up to max_batch), runs each inside its own
// SAVEPOINT so a failing write is rolled back alone (a batch of one needs none: the transaction
// is its savepoint), and commits them all at once: many writes share one commit (and, with
// synchronous=FULL, one fsync). A blocking caller that finds nobody writing or waiting leads at
// once (no thread hand-off); otherwise it waits to be batched or to be handed the lead as the
// oldest waiting write. Asynchronous writes are led by the writer thread, which sleeps while
// the queue is empty, so callers never block on them and, under load, hundreds of
// conversations' appends share each commit. Completion callbacks run on the leader's thread,
// after the commit, in queue order, before the lead is handed on (so callbacks of a later batch
// never overtake those of an earlier one). Only one thread uses the connection at a time.
class Writer {
 public:
  using WriteFn = std::function<Status(Conn&)>;
  using DoneFn = std::function<void(Status)>;

  // `checkpointer` (may be null: SQLite's own auto-checkpoint then stays on) is told the WAL
  // size after every commit; past `wal_max_pages` frames the writer checkpoints itself.
  Writer(std::unique_ptr<Conn> conn, int max_batch, std::unique_ptr<Checkpointer> checkpointer,
         int wal_max_pages)
      : conn_(std::move(conn)),
        max_batch_(std::max(1, max_batch)),
        checkpointer_(std::move(checkpointer)),
        wal_max_pages_(std::max(1, wal_max_pages)) {
    if (checkpointer_) sqlite3_wal_hook(conn_->raw(), &Writer::walHook, this);
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "store-writer");
      asyncLoop();
    });
  }

  // REQUIRES: no submit() in progress (every caller has returned). Queued asynchronous writes
  // are committed (and their callbacks run) first. The checkpointer stops next; the writer
  // connection closes last, which checkpoints the whole WAL.
  ~Writer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    async_cv_.notify_one();
    thread_.join();
    if (checkpointer_) sqlite3_wal_hook(conn_->raw(), nullptr, nullptr);
    checkpointer_.reset();
  }

  // Runs `fn` on the writer connection; returns once its transaction committed (or failed).
  Status submit(WriteFn fn) {
    Op op;
    op.fn = std::move(fn);
    std::unique_lock lock(mu_);
    // Lead at once only when nobody is writing or waiting; otherwise wait to be batched (or to
    // be handed the lead as the oldest waiting write).
    const bool idle = !leading_ && queue_.empty();
    queue_.push_back(&op);
    if (!idle) {
      op.cv.wait(lock, [&] { return op.done || (!leading_ && queue_.front() == &op); });
      if (op.done) return std::move(op.result);
    }
    lead(lock, [&] { return op.done; });
    return std::move(op.result);
  }

  // How a write is made atomic inside a batch of many.
  enum class Wrap {
    kSavepoint,  // the writer runs it inside its own SAVEPOINT (default)
    // The write is atomic by itself (one statement, or it opens its own savepoint when it needs
    // more): no savepoint around it, which saves two statements per write.
    kSelf,
  };

  // Queues `fn`; `done(result)` runs once its transaction committed (or failed), on a writer
  // thread. Never blocks.
  // With lead_when_idle (SqliteOptions::lead_idle_async_writes), a write submitted while
  // nobody writes or waits is committed at once on the caller's thread — `done` then runs
  // before submitAsync returns — instead of waking the writer thread and then the caller's
  // again: two thread hand-offs fewer for the write that starts a quiet period. Writes that
  // arrive meanwhile queue up and the writer thread commits them in groups, as always.
  void submitAsync(WriteFn fn, DoneFn done, Wrap wrap = Wrap::kSavepoint) {
    auto* op = new Op;
    op->fn = std::move(fn);
    op->on_done = std::move(done);
    op->wrap = wrap;
    bool wake = false;
    {
      std::unique_lock lock(mu_);
      // Idle, and quiet for a while: under load batches follow each other closely, and a
      // caller that committed alone each time the queue ran dry would undo the group commit.
      const bool idle = !leading_ && queue_.empty() && !stop_ &&
                        std::chrono::steady_clock::now() - last_batch_end_ >= kInlineQuiet;
      queue_.push_back(op);
      if (idle && lead_when_idle_ && std::this_thread::get_id() != thread_.get_id()) {
        int batches = 0;
        lead(lock, [&batches] { return batches++ > 0; });  // one batch: this write
        return;
      }
      wake = !leading_ && queue_.size() == 1;
    }
    if (wake) async_cv_.notify_one();
  }

  // REQUIRES: called before the first write.
  void setLeadWhenIdle(bool on) { lead_when_idle_ = on; }

  SqliteWriteStats stats() const {
    SqliteWriteStats st;
    {
      std::lock_guard lock(mu_);
      st = stats_;
    }
    if (checkpointer_) st.background_checkpoints = checkpointer_->checkpoints();
    st.inline_checkpoints = inline_checkpoints_.load(std::memory_order_relaxed);
    st.wal_restarts = wal_restarts_.load(std::memory_order_relaxed);
    st.wal_frames_written = wal_frames_written_.load(std::memory_order_relaxed);
    st.wal_high_water_frames = wal_high_water_.load(std::memory_order_relaxed);
    return st;
  }

  // `hook` runs on the leader's thread whenever a write fails or a transaction does not commit
  // (what the writes of the batch did may then be partly or wholly rolled back), so state kept
  // beside the connection can be dropped. REQUIRES: called before the first write.
  void setRollbackHook(std::function<void()> hook) { rollback_hook_ = std::move(hook); }

  // `flush` runs on the writer thread, without the writer's lock, when a deadline set by
  // flushAfter() passes (typically it queues a write with submitAsync). REQUIRES: called before
  // the first flushAfter().
  void setDeferredFlush(std::function<void()> flush) { deferred_flush_ = std::move(flush); }

  // Makes the writer thread call the deferred flush `delay` from now, unless a call is already
  // due earlier. Never blocks on a write. Pending deadlines are dropped when the writer stops
  // (the owner flushes what it deferred before destroying the writer).
  void flushAfter(std::chrono::milliseconds delay) {
    const auto at = std::chrono::steady_clock::now() + delay;
    bool wake = false;
    {
      std::lock_guard lock(mu_);
      if (!flush_at_ || at < *flush_at_) {
        flush_at_ = at;
        wake = true;
      }
    }
    if (wake) async_cv_.notify_one();
  }

 private:
  // Runs on the leader's thread inside COMMIT: `frames` is the WAL size after it.
  static int walHook(void* self, sqlite3*, const char*, int frames) {
    auto* w = static_cast<Writer*>(self);
    // The WAL restarted from its beginning when it is shorter than after the last commit.
    const int before = w->hook_frames_;
    w->hook_frames_ = frames;
    if (frames < before) {
      w->wal_restarts_.fetch_add(1, std::memory_order_relaxed);
      w->wal_frames_written_.fetch_add(frames, std::memory_order_relaxed);
    } else {
      w->wal_frames_written_.fetch_add(frames - before, std::memory_order_relaxed);
    }
    if (frames > w->wal_high_water_.load(std::memory_order_relaxed))
      w->wal_high_water_.store(frames, std::memory_order_relaxed);
    w->wal_frames_ = frames;
    // Past the hard limit the writer checkpoints itself; a background checkpoint running then
    // would make it fail (busy), so none is started.
    if (frames < w->wal_max_pages_) w->checkpointer_->walSize(frames);
    return SQLITE_OK;
  }

  struct Op {
    WriteFn fn;
    DoneFn on_done;  // set: asynchronous (heap-allocated, deleted after on_done ran)
    Wrap wrap = Wrap::kSavepoint;
    Status result;
    bool done = false;           // guarded by mu_ (blocking ops only)
    std::condition_variable cv;  // blocking ops: signalled when done, or when this op may lead
  };

  // Runs batches while `until()` is false and writes are queued. REQUIRES: `lock` holds mu_ and
  // nobody leads. Hands the lead on when it returns.
  template <class Until>
  void lead(std::unique_lock<std::mutex>& lock, Until until) {
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
      lock.unlock();
      runBatch(batch);
      // Callbacks of asynchronous writes, in queue order, still as the leader.
      for (Op*& o : batch) {
        if (!o->on_done) continue;
        try {
          o->on_done(std::move(o->result));
        } catch (const std::exception& e) {
          spdlog::error("store write callback threw: {}", e.what());
        } catch (...) {
          spdlog::error("store write callback threw a non-exception");
        }
        delete o;
        o = nullptr;
      }
      lock.lock();
      last_batch_end_ = std::chrono::steady_clock::now();
      for (Op* o : batch) {
        if (o == nullptr) continue;
        o->done = true;
        o->cv.notify_one();
      }
      batch.clear();
    }
    leading_ = false;
    // Hand the lead to the oldest waiting write: a blocking caller, or the writer thread.
    if (!queue_.empty()) {
      if (queue_.front()->on_done)
        async_cv_.notify_one();
      else
        queue_.front()->cv.notify_one();
    }
  }

  // The writer thread: leads whenever the oldest queued write is asynchronous and nobody leads.
  // Also calls the deferred flush when its deadline passes.
  void asyncLoop() {
    std::unique_lock lock(mu_);
    for (;;) {
      // The deadline this wait was started with: a new (earlier, or first) one set meanwhile
      // must end the wait so that it is waited for.
      const auto waited_for = flush_at_;
      auto ready = [&] {
        return (!leading_ && !queue_.empty() && queue_.front()->on_done) ||
               (stop_ && !leading_ && queue_.empty()) || (!stop_ && flush_at_ != waited_for) ||
               (!stop_ && flush_at_ && std::chrono::steady_clock::now() >= *flush_at_);
      };
      if (flush_at_ && !stop_)
        async_cv_.wait_until(lock, *flush_at_, ready);
      else
        async_cv_.wait(lock, ready);
      if (!stop_ && flush_at_ && std::chrono::steady_clock::now() >= *flush_at_) {
        flush_at_.reset();
        lock.unlock();
        if (deferred_flush_) deferred_flush_();
        lock.lock();
        continue;
      }
      if (leading_ || queue_.empty() || !queue_.front()->on_done) {
        if (stop_ && !leading_ && queue_.empty()) return;  // stopping, nothing left
        continue;  // woken for a deadline that moved, or a blocking caller leads
      }
      lead(lock, [] { return false; });
    }
  }

  void rolledBack() {
    if (rollback_hook_) rollback_hook_();
  }

  static Status runOne(Op& op, Conn& c) {
    try {
      return op.fn(c);
    } catch (const std::exception& e) {
      return internalError(std::string("store write failed: ") + e.what());
    }
  }

  // Runs on the leader's thread without mu_ held; only the leader touches conn_.
  void runBatch(const std::vector<Op*>& batch) {
    Conn& c = *conn_;
    if (auto st = c.run("BEGIN IMMEDIATE"); !st) {
      for (Op* op : batch) op->result = st;
      return;
    }
    if (batch.size() == 1) {
      // The transaction is the savepoint: on failure roll it all back.
      Op& op = *batch.front();
      op.result = runOne(op, c);
      if (!op.result) {
        (void)c.exec("ROLLBACK");
        rolledBack();
        return;
      }
    } else {
      for (std::size_t i = 0; i < batch.size(); ++i) {
        Op* op = batch[i];
        if (sqlite3_get_autocommit(c.raw()) != 0) {
          // An earlier write's error (I/O, disk full) made SQLite roll the transaction back:
          // running the rest would commit them one by one outside it. Fail them all instead.
          Status lost = internalError("store write failed: the transaction was rolled back");
          for (std::size_t j = 0; j < batch.size(); ++j)
            if (j >= i || batch[j]->result) batch[j]->result = lost;
          rolledBack();
          return;
        }
        if (op->wrap == Wrap::kSelf) {
          op->result = runOne(*op, c);
          if (!op->result) rolledBack();
          continue;
        }
        if (auto st = c.run("SAVEPOINT w"); !st) {
          op->result = st;
          continue;
        }
        Status st = runOne(*op, c);
        if (st) {
          st = c.run("RELEASE w");
        } else {
          (void)c.run("ROLLBACK TO w");
          (void)c.run("RELEASE w");
          rolledBack();
        }
        op->result = std::move(st);
      }
    }
    Status commit = c.run("COMMIT");
    if (!commit) {
      (void)c.exec("ROLLBACK");
      rolledBack();
      for (Op* op : batch)
        if (op->result) op->result = commit;
    }
    // The background checkpoints copy most of the WAL, but only a checkpoint that completes
    // while no write is running lets the next write restart the WAL from its beginning.
    if (checkpointer_ && wal_frames_ >= wal_max_pages_) {
      int log = 0;
      int copied = 0;
      if (sqlite3_wal_checkpoint_v2(c.raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied) ==
          SQLITE_OK) {
        inline_checkpoints_.fetch_add(1, std::memory_order_relaxed);
        wal_frames_ = 0;
      }
    }
  }

  std::unique_ptr<Conn> conn_;
  const int max_batch_;
  std::unique_ptr<Checkpointer> checkpointer_;
  const int wal_max_pages_;
  int wal_frames_ = 0;   // touched only by the leader
  int hook_frames_ = 0;  // the WAL size after the last commit (leader only)
  std::atomic<std::int64_t> wal_restarts_{0};
  std::atomic<std::int64_t> wal_frames_written_{0};
  std::atomic<std::int64_t> wal_high_water_{0};
  std::atomic<std::int64_t> inline_checkpoints_{0};
  mutable std::mutex mu_;
  SqliteWriteStats stats_;  // guarded by mu_
  std::deque<Op*> queue_;   // guarded by mu_
  bool leading_ = false;    // guarded by mu_: a thread is running batches on conn_
  bool stop_ = false;       // guarded by mu_
  std::optional<std::chrono::steady_clock::time_point> flush_at_;  // guarded by mu_
  bool lead_when_idle_ = false;                                    // set before the first write
  // How long after the last batch an asynchronous write may still lead on its caller's thread.
  static constexpr std::chrono::microseconds kInlineQuiet{300};
  std::chrono::steady_clock::time_point last_batch_end_{};  // guarded by mu_
  std::function<void()> rollback_hook_;   // set before the first write; run by the leader
  std::function<void()> deferred_flush_;  // set before the first flushAfter()
  std::condition_variable async_cv_;      // wakes the writer thread
  std::thread thread_;                    // last: started after everything above
};

// ---- Readers: a pool of read-only connections ----------------------------------------------

class ReaderPool {
 public:
  explicit ReaderPool(std::vector<std::unique_ptr<Conn>> conns) : free_(std::move(conns)) {}

  // A leased connection; returned to the pool on destruction.
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

  // Blocks until a connection is free.
  Lease acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty(); });
    auto c = std::move(free_.back());
    free_.pop_back();
    return Lease(*this, std::move(c));
  }

 private:
  void release(std::unique_ptr<Conn> c) {
    {
      std::lock_guard lock(mu_);
      free_.push_back(std::move(c));
    }
    cv_.notify_one();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> free_;  // guarded by mu_
};

// A read transaction: statements in it see one snapshot. Ends (COMMIT) on destruction.
class ReadTxn {
 public:
  explicit ReadTxn(Conn& c) : c_(c), ok_(c.run("BEGIN")) {}
  ~ReadTxn() {
    if (ok_) (void)c_.run("COMMIT");
  }
  const Status& status() const { return ok_; }

 private:
  Conn& c_;
  Status ok_;
};

// ---- The store ------------------------------------------------------------------------------

class SqliteStore final : public Store,
                          public AccountStore,
                          public ConversationStore,
                          public FunctionStore,
                          public BotStore {
 public:
  SqliteStore(const Clock& clock, int version, std::unique_ptr<Conn> writer,
              std::vector<std::unique_ptr<Conn>> readers, int max_batch,
              std::unique_ptr<Checkpointer> checkpointer, int wal_max_pages, int turn_flush_ms,
              bool lead_idle_async_writes)
      : clock_(clock),
        version_(version),
        turn_flush_ms_(turn_flush_ms),
        writer_(std::move(writer), max_batch, std::move(checkpointer), wal_max_pages),
        readers_(std::move(readers)) {
    writer_.setRollbackHook([this] { row_prints_.clear(); });
    writer_.setLeadWhenIdle(lead_idle_async_writes);
    writer_.setDeferredFlush([this] { queueBufferedTurns(); });
  }

  // Buffered turn records are queued; the writer commits them before it closes.
  ~SqliteStore() override {
    std::lock_guard lock(turns_mu_);
    submitTurnsLocked();
    turns_closed_ = true;
  }

  // Store
  AccountStore& accounts() override { return *this; }
  ConversationStore& conversations() override { return *this; }
  FunctionStore& functions() override { return *this; }
  BotStore& bots() override { return *this; }
  int schemaVersion() const override { return version_; }

  SqliteWriteStats writeStats() const { return writer_.stats(); }

  // Runs `statements` in order as one write; stops at the first failure.
  Status execForTest(const std::vector<std::string>& statements) {
    return write([&](Conn& c) -> Status {
      row_prints_.clear();  // raw SQL may change any row
      for (const auto& sql : statements) PARLEY_STORE_TRY(c.exec(sql));
      return {};
    });
  }

  // AccountStore
  Status createAccount(const Account& a) override {
    if (a.id.empty()) return invalid("account id is required");
    const TimeMs created = a.created_at ? a.created_at : clock_.nowMs();
    return write([&](Conn& c) {
      return conflictAs(
          asStatus(execute(c,
                           "INSERT INTO accounts(" + cols(kAccountCols) + ") VALUES(?,?,?,?,?,?,?)",
                           a.id.str(), a.name, a.ttr_urgent_s, a.ttr_prioritized_s, a.ttr_normal_s,
                           created, accountStatusName(a.status))),
          "account " + a.id.str() + " already exists");
    });
  }

  Result<Account> getAccount(const AccountId& id) override {
    auto r = read([&](Conn& c) {
      return selectOne<Account>(c, "SELECT " + cols(kAccountCols) + " FROM accounts WHERE id=?",
                                accountRow, id.str());
    });
    return found(std::move(r), "account " + id.str() + " does not exist");
  }

  Result<std::vector<Account>> listAccounts() override {
    return read([&](Conn& c) {
      return selectAll<Account>(c, "SELECT " + cols(kAccountCols) + " FROM accounts ORDER BY id",
                                accountRow);
    });
  }

  Status setAccountStatus(const AccountId& id, AccountStatus status) override {
    return write([&](Conn& c) {
      return changedOrNotFound(execute(c, "UPDATE accounts SET status=? WHERE id=?",
                                       accountStatusName(status), id.str()),
                               "account " + id.str() + " does not exist");
    });
  }

  Result<User> createUser(User u) override {
    if (u.account.empty()) return invalid("user account is required");
    if (u.login_name.empty()) return invalid("user loginName is required");
    if (u.created_at == 0) u.created_at = clock_.nowMs();
    Status st = write([&](Conn& c) -> Status {
      auto taken = exists(c, "SELECT 1 FROM users WHERE account=? AND login_name=?",
                          u.account.str(), u.login_name);
      if (!taken) return asStatus(taken);
      if (*taken)
        return conflict("login name '" + u.login_name + "' is taken in account " + u.account.str());
      auto id = assignId(c, u.account, "user", kFirstUserId, "users", u.id.str());
      if (!id) return asStatus(id);
      if (id->empty())
        return conflict("user " + u.id.str() + " already exists in account " + u.account.str());
      u.id = UserId(*id);
      return asStatus(
          execute(c, "INSERT INTO users(" + cols(kUserCols) + ") VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                  u.account.str(), u.id.str(), u.pid, u.login_name, u.password_hash,
                  rolesJson(u.roles), userTypeName(u.type), skillsJson(u.skills),
                  u.max_open_conversations, u.created_at, userStatusName(u.status)));
    });
    if (!st) return std::unexpected(st.error());
    return u;
  }

  Status updateUser(const User& u) override {
    return write([&](Conn& c) -> Status {
      auto other = selectOne<std::string>(
          c, "SELECT id FROM users WHERE account=? AND login_name=?",
          [](Query& q) { return q.text(0); }, u.account.str(), u.login_name);
      if (!other) return asStatus(other);
      if (*other && **other != u.id.str())
        return conflict("login name '" + u.login_name + "' is taken in account " + u.account.str());
      auto n = execute(c,
                       "UPDATE users SET pid=?, login_name=?, password_hash=?, roles_json=?, "
                       "type=?, skills_json=?, max_open_conversations=?, created_at=?, status=? "
                       "WHERE account=? AND id=?",
                       u.pid, u.login_name, u.password_hash, rolesJson(u.roles),
                       userTypeName(u.type), skillsJson(u.skills), u.max_open_conversations,
                       u.created_at, userStatusName(u.status), u.account.str(), u.id.str());
      return changedOrNotFound(n, userMissing(u.account, u.id));
    });
  }

  Status deleteUser(const AccountId& acc, const UserId& id) override {
    return write([&](Conn& c) -> Status {
      PARLEY_STORE_TRY(changedOrNotFound(
          execute(c, "DELETE FROM users WHERE account=? AND id=?", acc.str(), id.str()),
          userMissing(acc, id)));
      return deleteCredentialsIn(c, acc, id);
    });
  }

  Result<User> getUser(const AccountId& acc, const UserId& id) override {
    auto r = read([&](Conn& c) {
      return selectOne<User>(c,
                             "SELECT " + cols(kUserCols) + " FROM users WHERE account=? AND id=?",
                             userRow, acc.str(), id.str());
    });
    return found(std::move(r), userMissing(acc, id));
  }

  Result<User> getUserByLogin(const AccountId& acc, const std::string& login_name) override {
    auto r = read([&](Conn& c) {
      return selectOne<User>(
          c, "SELECT " + cols(kUserCols) + " FROM users WHERE account=? AND login_name=?", userRow,
          acc.str(), login_name);
    });
    return found(std::move(r),
                 "no user with login name '" + login_name + "' in account " + acc.str());
  }

  Result<std::vector<User>> listUsers(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<User>(
          c,
          "SELECT " + cols(kUserCols) +
              " FROM users WHERE account=? ORDER BY length(CAST(id AS BLOB)), id",
          userRow, acc.str());
    });
  }

  Status putSession(const Session& s) override {
    if (s.bearer_hash.empty()) return invalid("session bearer hash is required");
    return write([&](Conn& c) {
      return asStatus(execute(
          c, "INSERT OR REPLACE INTO sessions(" + cols(kSessionCols) + ") VALUES(?,?,?,?,?,?)",
          s.bearer_hash, s.csrf, s.account.str(), s.user.str(), s.created_at, s.expires_at));
    });
  }

  Result<Session> getSession(const std::string& bearer_hash) override {
    auto r = read([&](Conn& c) {
      return selectOne<Session>(
          c, "SELECT " + cols(kSessionCols) + " FROM sessions WHERE bearer_hash=?", sessionRow,
          bearer_hash);
    });
    return found(std::move(r), "session does not exist");
  }

  Status deleteSession(const std::string& bearer_hash) override {
    return write([&](Conn& c) {
      return asStatus(execute(c, "DELETE FROM sessions WHERE bearer_hash=?", bearer_hash));
    });
  }

  Status deleteExpiredSessions(TimeMs now) override {
    return write([&](Conn& c) {
      return asStatus(execute(c, "DELETE FROM sessions WHERE expires_at<=?", now));
    });
  }

  Status putApiKey(const ApiKey& k) override {
    if (k.key_hash.empty()) return invalid("api key hash is required");
    if (k.id.empty()) return invalid("api key id is required");
    const TimeMs created = k.created_at ? k.created_at : clock_.nowMs();
    return write([&](Conn& c) {
      // Not OR REPLACE: that would delete another key that has the same id.
      return conflictAs(
          asStatus(execute(c,
                           "INSERT INTO api_keys(" + cols(kApiKeyCols) +
                               ") VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(key_hash) DO UPDATE SET "
                               "account=excluded.account, user_id=excluded.user_id, "
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
      return selectOne<ApiKey>(c, "SELECT " + cols(kApiKeyCols) + " FROM api_keys WHERE key_hash=?",
                               apiKeyRow, key_hash);
    });
    return found(std::move(r), "api key does not exist");
  }

  Result<std::vector<ApiKey>> listApiKeys(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<ApiKey>(
          c,
          "SELECT " + cols(kApiKeyCols) + " FROM api_keys WHERE account=? ORDER BY created_at, id",
          apiKeyRow, acc.str());
    });
  }

  Status deleteApiKey(const AccountId& acc, const std::string& id) override {
    return write([&](Conn& c) {
      return changedOrNotFound(
          execute(c, "DELETE FROM api_keys WHERE account=? AND id=?", acc.str(), id),
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
    Status st = write([&](Conn& c) -> Status {
      auto taken =
          exists(c, "SELECT 1 FROM skills WHERE account=? AND name=?", s.account.str(), s.name);
      if (!taken) return asStatus(taken);
      if (*taken)
        return conflict("skill '" + s.name + "' already exists in account " + s.account.str());
      auto id = assignId(c, s.account, "skill", kFirstSkillId, "skills", s.id.str());
      if (!id) return asStatus(id);
      if (id->empty())
        return conflict("skill " + s.id.str() + " already exists in account " + s.account.str());
      s.id = SkillId(*id);
      return asStatus(execute(c,
                              "INSERT INTO skills(account, id, name, created_at) VALUES(?,?,?,?)",
                              s.account.str(), s.id.str(), s.name, s.created_at));
    });
    if (!st) return std::unexpected(st.error());
    return s;
  }

  Status deleteSkill(const AccountId& acc, const SkillId& id) override {
    return write([&](Conn& c) {
      return changedOrNotFound(
          execute(c, "DELETE FROM skills WHERE account=? AND id=?", acc.str(), id.str()),
          "skill " + id.str() + " does not exist in account " + acc.str());
    });
  }

  Result<std::vector<Skill>> listSkills(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<Skill>(c,
                              "SELECT account, id, name, created_at FROM skills WHERE account=? "
                              "ORDER BY length(CAST(id AS BLOB)), id",
                              skillRow, acc.str());
    });
  }

  Status putAgentState(const AgentState& s) override {
    const TimeMs updated = s.updated_at ? s.updated_at : clock_.nowMs();
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "INSERT OR REPLACE INTO agent_states(account, user_id, "
                              "availability, updated_at) VALUES(?,?,?,?)",
                              s.account.str(), s.user.str(), availabilityName(s.availability),
                              updated));
    });
  }

  Result<std::vector<AgentState>> listAgentStates(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<AgentState>(
          c,
          "SELECT account, user_id, availability, updated_at FROM agent_states WHERE account=? "
          "ORDER BY length(CAST(user_id AS BLOB)), user_id",
          agentStateRow, acc.str());
    });
  }

  // ConversationStore
  Status saveConversation(const Conversation& conv) override {
    if (auto st = checkConversation(conv); !st) return st;
    return write([&](Conn& c) -> Status { return saveTxn(c, conv); });
  }

  void saveConversationAsync(Conversation conv, std::function<void(Status)> done) override {
    if (auto st = checkConversation(conv); !st) return done(st);
    writer_.submitAsync(
        [this, conv = std::move(conv)](Conn& c) -> Status { return saveTxn(c, conv); },
        std::move(done));
  }

  Status appendMessage(const Conversation& conv, const Message& m) override {
    if (auto st = checkAppend(conv, m); !st) return st;
    return write([&](Conn& c) -> Status { return appendTxn(c, conv, m); });
  }

  void appendMessageAsync(std::shared_ptr<const Conversation> conv,
                          std::shared_ptr<const Message> m,
                          std::function<void(Status)> done) override {
    if (auto st = checkAppend(*conv, *m); !st) return done(st);
    writer_.submitAsync([this, conv = std::move(conv),
                         m = std::move(m)](Conn& c) -> Status { return appendTxn(c, *conv, *m); },
                        std::move(done), Writer::Wrap::kSelf);
  }

  Result<Conversation> getConversation(const AccountId& acc, const ConversationId& id) override {
    auto r = read([&](Conn& c) -> Result<std::optional<Conversation>> {
      ReadTxn txn(c);
      PARLEY_STORE_TRY(txn.status());
      auto conv = selectOne<Conversation>(
          c,
          "SELECT " + cols(kConversationSelect) + " FROM conversations c WHERE id=? AND account=?",
          conversationRow, id.str(), acc.str());
      if (!conv || !*conv) return conv;
      PARLEY_STORE_TRY(loadParticipants(c, **conv));
      return conv;
    });
    return found(std::move(r),
                 "conversation " + id.str() + " does not exist in account " + acc.str());
  }

  Result<std::vector<Conversation>> listConversations(const AccountId& acc,
                                                      const ConversationQuery& q) override {
    if (q.limit <= 0) return std::vector<Conversation>{};
    std::string sql =
        "SELECT " + cols(kConversationSelect) + " FROM conversations c WHERE account=?";
    if (q.state) sql += " AND state=?";
    if (q.skill) sql += " AND skill=?";
    if (q.consumer) sql += " AND consumer=?";
    sql += " ORDER BY start_ts, id LIMIT ?";
    return read([&](Conn& c) -> Result<std::vector<Conversation>> {
      ReadTxn txn(c);
      PARLEY_STORE_TRY(txn.status());
      auto query = c.query(sql);
      if (!query) return std::unexpected(query.error());
      query->arg(acc.str());
      if (q.state) query->arg(stateName(*q.state));
      if (q.skill) query->arg(q.skill->str());
      if (q.consumer) query->arg(q.consumer->str());
      query->arg(q.limit);
      std::vector<Conversation> out;
      for (;;) {
        auto has = query->next();
        if (!has) return std::unexpected(has.error());
        if (!*has) break;
        out.push_back(conversationRow(*query));
      }
      for (auto& conv : out) PARLEY_STORE_TRY(loadParticipants(c, conv));
      return out;
    });
  }

  Result<std::vector<Conversation>> listOpenConversations() override {
    return read([&](Conn& c) -> Result<std::vector<Conversation>> {
      ReadTxn txn(c);
      PARLEY_STORE_TRY(txn.status());
      auto out = selectAll<Conversation>(c,
                                         "SELECT " + cols(kConversationSelect) +
                                             " FROM conversations c WHERE state=? ORDER BY "
                                             "start_ts, id",
                                         conversationRow, stateName(ConversationState::kOpen));
      if (!out) return out;
      for (auto& conv : *out) PARLEY_STORE_TRY(loadParticipants(c, conv));
      return out;
    });
  }

  Result<std::vector<Message>> listMessages(const ConversationId& id, std::int64_t from_seq,
                                            int limit) override {
    if (limit <= 0) return std::vector<Message>{};
    return read([&](Conn& c) {
      return selectAll<Message>(c,
                                "SELECT " + cols(kMessageCols) +
                                    " FROM messages WHERE conversation=? AND sequence>=? ORDER BY "
                                    "sequence LIMIT ?",
                                messageRow, id.str(), from_seq, limit);
    });
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
      auto dup = exists(c, "SELECT 1 FROM functions WHERE uuid=?", f.uuid.str());
      if (!dup) return asStatus(dup);
      if (*dup) return conflict("function " + f.uuid.str() + " already exists");
      return conflictAs(
          asStatus(execute(c,
                           "INSERT INTO functions(" + cols(kFunctionCols) +
                               ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           stored.uuid.str(), stored.account.str(), stored.name, stored.description,
                           stored.event_id, stored.code, envJson(stored.env), stored.state,
                           stored.version, stored.created_by, stored.updated_by, stored.created_at,
                           stored.updated_at)),
          functionNameMessage(f));
    });
  }

  Status updateFunction(const FunctionRecord& f) override {
    return write([&](Conn& c) -> Status {
      auto n = execute(c,
                       "UPDATE functions SET name=?, description=?, event_id=?, code=?, "
                       "env_json=?, state=?, version=?, created_by=?, updated_by=?, "
                       "created_at=?, updated_at=? WHERE uuid=? AND account=?",
                       f.name, f.description, f.event_id, f.code, envJson(f.env), f.state,
                       f.version, f.created_by, f.updated_by, f.created_at, f.updated_at,
                       f.uuid.str(), f.account.str());
      if (!n) return conflictAs(asStatus(n), functionNameMessage(f));
      if (*n == 0) return notFound(functionMissing(f.account, f.uuid));
      return {};
    });
  }

  Status deleteFunction(const AccountId& acc, const FunctionId& id) override {
    return write([&](Conn& c) -> Status {
      PARLEY_STORE_TRY(changedOrNotFound(
          execute(c, "DELETE FROM functions WHERE uuid=? AND account=?", id.str(), acc.str()),
          functionMissing(acc, id)));
      PARLEY_STORE_TRY(execute(c, "DELETE FROM deployments WHERE account=? AND function_uuid=?",
                               acc.str(), id.str()));
      return asStatus(execute(c, "DELETE FROM invocation_logs WHERE account=? AND function_uuid=?",
                              acc.str(), id.str()));
    });
  }

  Result<FunctionRecord> getFunction(const AccountId& acc, const FunctionId& id) override {
    auto r = read([&](Conn& c) {
      return selectOne<FunctionRecord>(
          c, "SELECT " + cols(kFunctionCols) + " FROM functions WHERE uuid=? AND account=?",
          functionRow, id.str(), acc.str());
    });
    return found(std::move(r), functionMissing(acc, id));
  }

  Result<std::vector<FunctionRecord>> listFunctions(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<FunctionRecord>(
          c,
          "SELECT " + cols(kFunctionCols) + " FROM functions WHERE account=? ORDER BY name, uuid",
          functionRow, acc.str());
    });
  }

  Status addDeployment(const Deployment& d) override {
    if (d.uuid.empty()) return invalid("deployment uuid is required");
    const TimeMs created = d.created_at ? d.created_at : clock_.nowMs();
    return write([&](Conn& c) {
      return conflictAs(asStatus(execute(c,
                                         "INSERT INTO deployments(" + cols(kDeploymentCols) +
                                             ") VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                                         d.uuid, d.function.str(), d.account.str(),
                                         d.function_version, d.code, envJson(d.env), d.state,
                                         d.error_json, d.created_by, created, d.deployed_at)),
                        "deployment " + d.uuid + " already exists");
    });
  }

  Result<std::vector<Deployment>> listDeployments(const AccountId& acc, const FunctionId& id,
                                                  int limit) override {
    if (limit <= 0) return std::vector<Deployment>{};
    return read([&](Conn& c) {
      return selectAll<Deployment>(c,
                                   "SELECT " + cols(kDeploymentCols) +
                                       " FROM deployments WHERE account=? AND function_uuid=? "
                                       "ORDER BY created_at DESC, seq DESC LIMIT ?",
                                   deploymentRow, acc.str(), id.str(), limit);
    });
  }

  Status pruneDeployments(const AccountId& acc, const FunctionId& id, int keep) override {
    return write([&](Conn& c) {
      return asStatus(
          execute(c,
                  "DELETE FROM deployments WHERE account=?1 AND function_uuid=?2 AND seq NOT IN "
                  "(SELECT seq FROM deployments WHERE account=?1 AND function_uuid=?2 "
                  "ORDER BY created_at DESC, seq DESC LIMIT ?3)",
                  acc.str(), id.str(), std::max(keep, 0)));
    });
  }

  Status appendLogs(const std::vector<InvocationLog>& logs) override {
    if (logs.empty()) return {};
    return write([&](Conn& c) -> Status {
      for (const auto& l : logs)
        PARLEY_STORE_TRY(execute(c,
                                 "INSERT INTO invocation_logs(function_uuid, account, request_id, "
                                 "ts, level, message, extras_json) VALUES(?,?,?,?,?,?,?)",
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
          "invocation_logs WHERE account=? AND function_uuid=? AND ts>=? "
          "ORDER BY ts DESC, seq DESC LIMIT ?",
          logRow, acc.str(), id.str(), since, limit);
    });
  }

  Status putSecret(const Secret& s) override {
    if (s.key.empty()) return invalid("secret key is required");
    const TimeMs updated = s.updated_at ? s.updated_at : clock_.nowMs();
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "INSERT OR REPLACE INTO secrets(account, key_name, ciphertext, "
                              "updated_at) VALUES(?,?,?,?)",
                              s.account.str(), s.key, Blob{s.ciphertext}, updated));
    });
  }

  Result<Secret> getSecret(const AccountId& acc, const std::string& key) override {
    auto r = read([&](Conn& c) {
      return selectOne<Secret>(c,
                               "SELECT account, key_name, ciphertext, updated_at FROM secrets "
                               "WHERE account=? AND key_name=?",
                               secretRow, acc.str(), key);
    });
    return found(std::move(r), "secret '" + key + "' does not exist in account " + acc.str());
  }

  Status deleteSecret(const AccountId& acc, const std::string& key) override {
    return write([&](Conn& c) {
      return changedOrNotFound(
          execute(c, "DELETE FROM secrets WHERE account=? AND key_name=?", acc.str(), key),
          "secret '" + key + "' does not exist in account " + acc.str());
    });
  }

  Result<std::vector<std::string>> listSecretKeys(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<std::string>(
          c, "SELECT key_name FROM secrets WHERE account=? ORDER BY key_name",
          [](Query& q) { return q.text(0); }, acc.str());
    });
  }

  Status appendSecretAudit(const SecretAuditEntry& e, int keep) override {
    if (e.account.empty()) return invalid("account id is required");
    const TimeMs ts = e.ts ? e.ts : clock_.nowMs();
    return write([&](Conn& c) -> Status {
      PARLEY_STORE_TRY(execute(c,
                               "INSERT INTO secret_audit(account, ts, function_uuid, request_id, "
                               "invoker, user_id, login_name, key_name, op, outcome, detail) "
                               "VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                               e.account.str(), ts, e.function.str(), e.request_id, e.invoker,
                               e.user.str(), e.login_name, e.key, e.op, e.outcome, e.detail));
      return asStatus(execute(c,
                              "DELETE FROM secret_audit WHERE account=?1 AND seq <= "
                              "(SELECT seq FROM secret_audit WHERE account=?1 "
                              "ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                              e.account.str(), std::max(keep, 0)));
    });
  }

  Result<std::vector<SecretAuditEntry>> listSecretAudit(const AccountId& acc, int limit) override {
    if (limit <= 0) return std::vector<SecretAuditEntry>{};
    return read([&](Conn& c) {
      return selectAll<SecretAuditEntry>(
          c,
          "SELECT account, ts, function_uuid, request_id, invoker, user_id, login_name, "
          "key_name, op, outcome, detail FROM secret_audit WHERE account=? "
          "ORDER BY seq DESC LIMIT ?",
          secretAuditRow, acc.str(), limit);
    });
  }

  Status putAllowlist(const AccountId& acc, const std::vector<std::string>& domains) override {
    return write([&](Conn& c) -> Status {
      PARLEY_STORE_TRY(execute(c, "DELETE FROM allowlist WHERE account=?", acc.str()));
      std::int64_t pos = 0;
      for (const auto& d : domains)
        PARLEY_STORE_TRY(execute(c,
                                 "INSERT INTO allowlist(account, position, domain) VALUES(?,?,?)",
                                 acc.str(), pos++, d));
      return {};
    });
  }

  Result<std::vector<std::string>> getAllowlist(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<std::string>(
          c, "SELECT domain FROM allowlist WHERE account=? ORDER BY position",
          [](Query& q) { return q.text(0); }, acc.str());
    });
  }

  Status putContextProperty(const ContextProperty& p) override {
    if (p.ns.empty()) return invalid("context namespace is required");
    if (p.name.empty()) return invalid("context property name is required");
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "INSERT OR REPLACE INTO context_properties(account, ns, session_id, "
                              "name, value_json, expires_at) VALUES(?,?,?,?,?,?)",
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
          "WHERE account=? AND ns=? AND session_id=? AND (expires_at=0 OR expires_at>?) "
          "ORDER BY name",
          contextRow, acc.str(), ns, session, now);
    });
  }

  Status deleteContextProperties(const AccountId& acc, const std::string& ns,
                                 const std::string& session, const std::string& name) override {
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "DELETE FROM context_properties WHERE account=?1 AND ns=?2 AND "
                              "session_id=?3 AND (?4='' OR name=?4)",
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
          exists(c, "SELECT 1 FROM bots WHERE account=? AND id=?", b.account.str(), b.id.str());
      if (!dup) return asStatus(dup);
      if (*dup)
        return conflict("bot " + b.id.str() + " already exists in account " + b.account.str());
      PARLEY_STORE_TRY(checkBotUser(c, b));
      return asStatus(execute(c, "INSERT INTO bots(" + cols(kBotCols) + ") VALUES(?,?,?,?,?,?,?,?)",
                              stored.account.str(), stored.id.str(), stored.name, stored.user.str(),
                              stored.config_json, stored.status, stored.created_at,
                              stored.updated_at));
    });
  }

  Status updateBot(const BotRecord& b) override {
    return write([&](Conn& c) -> Status {
      auto there =
          exists(c, "SELECT 1 FROM bots WHERE account=? AND id=?", b.account.str(), b.id.str());
      if (!there) return asStatus(there);
      if (!*there) return notFound(botMissing(b.account, b.id));
      PARLEY_STORE_TRY(checkBotUser(c, b));
      return asStatus(execute(c,
                              "UPDATE bots SET name=?, user_id=?, config_json=?, status=?, "
                              "created_at=?, updated_at=? WHERE account=? AND id=?",
                              b.name, b.user.str(), b.config_json, b.status, b.created_at,
                              b.updated_at, b.account.str(), b.id.str()));
    });
  }

  Status deleteBot(const AccountId& acc, const BotId& id) override {
    queueBufferedTurns();  // committed before the delete, in order
    return write([&](Conn& c) -> Status {
      PARLEY_STORE_TRY(changedOrNotFound(
          execute(c, "DELETE FROM bots WHERE account=? AND id=?", acc.str(), id.str()),
          botMissing(acc, id)));
      return asStatus(
          execute(c, "DELETE FROM turns WHERE account=? AND bot=?", acc.str(), id.str()));
    });
  }

  Result<BotRecord> getBot(const AccountId& acc, const BotId& id) override {
    auto r = read([&](Conn& c) {
      return selectOne<BotRecord>(
          c, "SELECT " + cols(kBotCols) + " FROM bots WHERE account=? AND id=?", botRow, acc.str(),
          id.str());
    });
    return found(std::move(r), botMissing(acc, id));
  }

  Result<std::vector<BotRecord>> listBots(const AccountId& acc) override {
    return read([&](Conn& c) {
      return selectAll<BotRecord>(
          c, "SELECT " + cols(kBotCols) + " FROM bots WHERE account=? ORDER BY id", botRow,
          acc.str());
    });
  }

  Result<std::vector<BotRecord>> listAllBots() override {
    return read([&](Conn& c) {
      return selectAll<BotRecord>(c, "SELECT " + cols(kBotCols) + " FROM bots ORDER BY account, id",
                                  botRow);
    });
  }

  Status appendTurn(const TurnRecord& t, int keep) override {
    if (t.turn_id.empty()) return invalid("turn id is required");
    queueBufferedTurns();  // earlier asynchronous records first
    return write([&](Conn& c) -> Status { return appendTurnTxn(c, t, keep); });
  }

  // Turn records are observability data written at every bot turn, and a bot keeps only its
  // newest `keep`: they are buffered for up to turn_flush_ms and written together, and of a
  // bot's buffered records only those that would survive the pruning are written at all (the
  // result is the same as appending them one by one). `done` runs after that commit.
  void appendTurnAsync(TurnRecord t, int keep, std::function<void(Status)> done) override {
    if (t.turn_id.empty()) return done(invalid("turn id is required"));
    std::lock_guard lock(turns_mu_);
    turn_buffer_.push_back(BufferedTurn{std::move(t), keep, std::move(done)});
    if (turn_flush_ms_ <= 0 || turn_buffer_.size() >= kTurnBufferMax || turns_closed_) {
      submitTurnsLocked();
    } else if (turn_buffer_.size() == 1) {
      writer_.flushAfter(std::chrono::milliseconds(turn_flush_ms_));
    }
  }

  Result<std::vector<TurnRecord>> listTurns(const AccountId& acc, const BotId& id,
                                            int limit) override {
    if (limit <= 0) return std::vector<TurnRecord>{};
    queueBufferedTurns();
    if (turns_in_flight_.load() > 0) {
      // Wait for the queued records: a write queued after them returns once they committed.
      PARLEY_STORE_TRY(write([](Conn&) -> Status { return {}; }));
    }
    return read([&](Conn& c) {
      return selectAll<TurnRecord>(c,
                                   "SELECT " + cols(kTurnCols) +
                                       " FROM turns WHERE account=? AND bot=? "
                                       "ORDER BY ts DESC, seq DESC LIMIT ?",
                                   turnRow, acc.str(), id.str(), limit);
    });
  }

  Status putPendingTurn(const PendingTurn& p) override {
    if (p.turn_id.empty()) return invalid("turn id is required");
    const TimeMs created = p.created_at ? p.created_at : clock_.nowMs();
    return write([&](Conn& c) {
      return asStatus(execute(c,
                              "INSERT INTO pending_turns(turn_id, account, bot, conversation, "
                              "state_json, created_at) VALUES(?,?,?,?,?,?) "
                              "ON CONFLICT(turn_id) DO UPDATE SET account=excluded.account, "
                              "bot=excluded.bot, conversation=excluded.conversation, "
                              "state_json=excluded.state_json, created_at=excluded.created_at",
                              p.turn_id, p.account.str(), p.bot.str(), p.conversation.str(),
                              p.state_json, created));
    });
  }

  Status deletePendingTurn(const std::string& turn_id) override {
    return write([&](Conn& c) {
      return asStatus(execute(c, "DELETE FROM pending_turns WHERE turn_id=?", turn_id));
    });
  }

  Status putImageAllowlist(const AccountId& acc, const std::vector<std::string>& entries) override {
    if (acc.empty()) return invalid("account is required");
    boost::json::array a;
    for (const auto& e : entries) a.emplace_back(e);
    std::string text = json::dump(a);
    return write([&](Conn& c) {
      return asStatus(
          execute(c,
                  "INSERT INTO image_allowlists(account, entries_json) VALUES(?,?) "
                  "ON CONFLICT(account) DO UPDATE SET entries_json=excluded.entries_json",
                  acc.str(), text));
    });
  }

  Result<std::vector<std::string>> getImageAllowlist(const AccountId& acc) override {
    auto r = read([&](Conn& c) {
      return selectOne<std::vector<std::string>>(
          c, "SELECT entries_json FROM image_allowlists WHERE account=?",
          [](Query& q) {
            std::vector<std::string> out;
            auto v = json::parse(q.text(0));
            if (v && v->is_array())
              for (const auto& e : v->as_array())
                if (e.is_string()) out.emplace_back(e.as_string());
            return out;
          },
          acc.str());
    });
    return found(std::move(r), "account " + acc.str() + " has no image allowlist");
  }

  Status deleteImageAllowlist(const AccountId& acc) override {
    return write([&](Conn& c) -> Status {
      PARLEY_STORE_TRY(
          changedOrNotFound(execute(c, "DELETE FROM image_allowlists WHERE account=?", acc.str()),
                            "account " + acc.str() + " has no image allowlist"));
      return {};
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

 private:
  Status checkAppend(const Conversation& conv, const Message& m) const {
    if (auto st = checkConversation(conv); !st) return st;
    if (m.conversation != conv.id)
      return invalid("message conversation " + m.conversation.str() +
                     " differs from conversation " + conv.id.str());
    if (auto st = internal::checkAppendCounters(conv, m); !st) return st;
    return {};
  }

  // ---- Conversation rows the writer has stored (only the leader touches these) -------------

  // What a conversation row holds besides its counters, as two 64-bit hashes: the columns and
  // the participants. Equal prints mean the stored row differs at most in `updated_at` and
  // `next_sequence`, which reads derive from the messages (kConversationSelect).
  struct RowPrint {
    std::size_t fields = 0;
    std::size_t people = 0;
    bool operator==(const RowPrint&) const = default;
  };

  static RowPrint printOf(const Conversation& c) {
    std::string f;
    f.reserve(128 + c.context_json.size());
    auto add = [&f](std::string_view v) {
      f.append(v);
      f.push_back('\x1f');
    };
    add(c.account.str());
    add(c.consumer.str());
    add(channelName(c.channel));
    add(stateName(c.state));
    add(c.skill.str());
    add(ttrTypeName(c.ttr_type));
    add(std::to_string(c.ttr_value_s));
    add(std::to_string(c.ttr_due_at));
    add(std::to_string(c.start_ts));
    add(std::to_string(c.end_ts));
    add(c.close_reason);
    add(c.context_json);
    add(encodeTurnMark(c.turn_mark));
    std::string p;
    for (const auto& x : c.participants) {
      p.append(x.id).push_back('\x1f');
      p.append(x.role).push_back('\x1f');
      p.append(x.state).push_back('\x1f');
      p.append(std::to_string(x.joined_at)).push_back('\x1e');
    }
    return RowPrint{std::hash<std::string_view>{}(f), std::hash<std::string_view>{}(p)};
  }

  // After `conv` was stored: remember its print while it is open (closed conversations rarely
  // get more messages; forgetting them keeps the map as large as the open conversations).
  void remember(const Conversation& conv) {
    if (conv.state == ConversationState::kClose) {
      row_prints_.erase(conv.id.str());
      return;
    }
    row_prints_.insert_or_assign(conv.id.str(), printOf(conv));
  }

  Status saveTxn(Conn& c, const Conversation& conv) {
    row_prints_.erase(conv.id.str());
    PARLEY_STORE_TRY(storeConversation(c, conv));
    remember(conv);
    return {};
  }

  // Appends `m`. When the writer stored this conversation's row before and nothing but its
  // counters changed since, that is one INSERT (atomic by itself: no savepoint, no conversation
  // row read or rewritten). Otherwise the conversation is stored first (it also checks the
  // owner) inside a savepoint, so a conflicting message rolls it back with it.
  // Runs as Writer::Wrap::kSelf.
  Status appendTxn(Conn& c, const Conversation& conv, const Message& m) {
    auto it = row_prints_.find(conv.id.str());
    if (it != row_prints_.end() && it->second == printOf(conv)) return insertMessage(c, conv, m);
    row_prints_.erase(conv.id.str());
    PARLEY_STORE_TRY(c.run("SAVEPOINT a"));
    Status st = storeConversation(c, conv);
    if (st) st = insertMessage(c, conv, m);
    if (!st) {
      (void)c.run("ROLLBACK TO a");
      (void)c.run("RELEASE a");
      return st;
    }
    PARLEY_STORE_TRY(c.run("RELEASE a"));
    remember(conv);
    return {};
  }

  static Status insertMessage(Conn& c, const Conversation& conv, const Message& m) {
    static const std::string kInsert =
        "INSERT INTO messages(" + cols(kMessageCols) + ") VALUES(?,?,?,?,?,?,?,?,?,?)";
    auto inserted = execute(c, kInsert, m.conversation.str(), m.sequence, m.server_ts,
                            m.originator_id, m.originator_pid, m.originator_role, m.audience,
                            m.event_json, m.metadata_json, encodeTurnMark(m.turn));
    if (!inserted && inserted.error().code == ErrorCode::kConflict)
      return conflict("message " + std::to_string(m.sequence) + " already exists in conversation " +
                      conv.id.str());
    return asStatus(inserted);
  }

  // ---- Buffered turn records ------------------------------------------------------------------

  struct BufferedTurn {
    TurnRecord t;
    int keep = 0;
    std::function<void(Status)> done;
  };
  // A full buffer is written at once.
  static constexpr std::size_t kTurnBufferMax = 4096;

  // Queues the buffered records as one asynchronous write (before anything queued later).
  void queueBufferedTurns() {
    std::lock_guard lock(turns_mu_);
    submitTurnsLocked();
  }

  // REQUIRES: turns_mu_ held (so writes of the buffer are queued in the order it was filled).
  void submitTurnsLocked() {
    if (turn_buffer_.empty()) return;
    auto batch = std::make_shared<std::vector<BufferedTurn>>(std::move(turn_buffer_));
    turn_buffer_.clear();
    turns_in_flight_.fetch_add(1);
    writer_.submitAsync([batch](Conn& c) -> Status { return writeTurns(c, *batch); },
                        [this, batch](Status st) {
                          for (auto& b : *batch) {
                            if (!b.done) continue;
                            try {
                              b.done(st);
                            } catch (const std::exception& e) {
                              spdlog::error("turn record callback threw: {}", e.what());
                            }
                          }
                          turns_in_flight_.fetch_sub(1);
                        });
  }

  // Writes buffered records as appending them one by one would leave the table: per bot, a
  // record replaces an earlier one with its turn id; of the rest only the newest `keep` (by
  // ts, then arrival: the pruning order) can survive, so only those are inserted, in arrival
  // order, before one prune to the bot's newest `keep` (the last record's `keep`).
  static Status writeTurns(Conn& c, const std::vector<BufferedTurn>& buf) {
    std::map<std::pair<std::string_view, std::string_view>, std::vector<std::size_t>> bots;
    for (std::size_t i = 0; i < buf.size(); ++i)
      bots[{buf[i].t.account.str(), buf[i].t.bot.str()}].push_back(i);
    for (auto& [key, idx] : bots) {
      const int keep = std::max(buf[idx.back()].keep, 0);
      std::unordered_map<std::string_view, std::size_t> last;
      for (std::size_t i : idx) last[buf[i].t.turn_id] = i;
      std::vector<std::size_t> live;
      for (std::size_t i : idx)
        if (last[buf[i].t.turn_id] == i) live.push_back(i);
      if (live.size() > static_cast<std::size_t>(keep)) {
        std::vector<std::size_t> ranked = live;
        std::sort(ranked.begin(), ranked.end(), [&](std::size_t a, std::size_t b) {
          if (buf[a].t.ts != buf[b].t.ts) return buf[a].t.ts > buf[b].t.ts;
          return a > b;
        });
        ranked.resize(static_cast<std::size_t>(keep));
        std::sort(ranked.begin(), ranked.end());
        live = std::move(ranked);
      }
      for (std::size_t i : live) PARLEY_STORE_TRY(insertTurn(c, buf[i].t));
      PARLEY_STORE_TRY(pruneTurns(c, buf[idx.back()].t, keep));
    }
    return {};
  }

  // Replaces a record with the same turn id, inserts, and prunes the bot's turns to the newest
  // `keep`: the index walk skips `keep` entries and deletes what is left (rows past the newest
  // `keep`), instead of testing every row against a `keep`-row subquery.
  static Status appendTurnTxn(Conn& c, const TurnRecord& t, int keep) {
    PARLEY_STORE_TRY(insertTurn(c, t));
    return pruneTurns(c, t, keep);
  }

  static Status insertTurn(Conn& c, const TurnRecord& t) {
    static const std::string kDelete = "DELETE FROM turns WHERE account=? AND bot=? AND turn_id=?";
    static const std::string kInsert =
        "INSERT INTO turns(" + cols(kTurnCols) + ") VALUES(?,?,?,?,?,?,?,?,?,?,?)";
    PARLEY_STORE_TRY(execute(c, kDelete, t.account.str(), t.bot.str(), t.turn_id));
    return asStatus(execute(c, kInsert, t.account.str(), t.bot.str(), t.conversation.str(),
                            t.turn_id, t.ts, t.outcome, t.input_json, t.response_json,
                            t.actions_json, t.timings_json, t.error));
  }

  // Keeps the bot of `t`'s newest `keep` turns.
  static Status pruneTurns(Conn& c, const TurnRecord& t, int keep) {
    static const std::string kPrune =
        "DELETE FROM turns WHERE seq IN "
        "(SELECT seq FROM turns WHERE account=?1 AND bot=?2 "
        "ORDER BY ts DESC, seq DESC LIMIT -1 OFFSET ?3)";
    return asStatus(execute(c, kPrune, t.account.str(), t.bot.str(), std::max(keep, 0)));
  }

  template <class F>
  Status write(F&& fn) {
    return writer_.submit(std::forward<F>(fn));
  }

  template <class F>
  auto read(F&& fn) -> decltype(fn(std::declval<Conn&>())) {
    auto lease = readers_.acquire();
    try {
      return fn(*lease);
    } catch (const std::exception& e) {
      return internalError(std::string("store read failed: ") + e.what());
    }
  }

  // Turns "no row" into NotFound(message).
  template <class T>
  static Result<T> found(Result<std::optional<T>>&& r, const std::string& message) {
    if (r.has_value()) {
      if (r->has_value()) return std::move(**r);
      return notFound(message);
    }
    return std::unexpected(std::move(r.error()));
  }

  static Status changedOrNotFound(const Result<int>& n, const std::string& message) {
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return notFound(message);
    return {};
  }

  // Deletes the user's sessions and API keys (inside the caller's write).
  static Status deleteCredentialsIn(Conn& c, const AccountId& acc, const UserId& user) {
    PARLEY_STORE_TRY(asStatus(
        execute(c, "DELETE FROM sessions WHERE account=? AND user_id=?", acc.str(), user.str())));
    return asStatus(
        execute(c, "DELETE FROM api_keys WHERE account=? AND user_id=?", acc.str(), user.str()));
  }

  // The id for a new row of `table`: `requested` when given (or "" when it is taken), else the
  // account's next counter value that is free. Moves the counter past numeric ids it hands out.
  static Result<std::string> assignId(Conn& c, const AccountId& acc, const char* kind,
                                      std::int64_t first, const std::string& table,
                                      const std::string& requested) {
    auto counter = selectOne<std::int64_t>(
        c, "SELECT next_id FROM id_counters WHERE account=? AND kind=?",
        [](Query& q) { return q.i64(0); }, acc.str(), kind);
    if (!counter) return std::unexpected(counter.error());
    std::int64_t next = counter->value_or(first);
    const std::string exists_sql = "SELECT 1 FROM " + table + " WHERE account=? AND id=?";
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
    auto saved =
        execute(c, "INSERT OR REPLACE INTO id_counters(account, kind, next_id) VALUES(?,?,?)",
                acc.str(), kind, next);
    if (!saved) return std::unexpected(saved.error());
    return id;
  }

  static Status checkConversation(const Conversation& c) {
    if (c.id.empty()) return invalid("conversation id is required");
    if (c.account.empty()) return invalid("conversation account is required");
    return {};
  }

  // How a conversation to save differs from its stored row.
  enum class RowChange { kNew, kNone, kCounters, kAll };

  // Compares `conv` with its stored row. Conflict when the id belongs to another account.
  static Result<RowChange> rowChange(Conn& c, const Conversation& conv) {
    static const std::string kSelect =
        "SELECT account, consumer, channel, state, skill, ttr_type, ttr_value_s, ttr_due_at, "
        "start_ts, end_ts, close_reason, context_json, updated_at, next_sequence, turn "
        "FROM conversations WHERE id=?";
    auto q = prepare(c, kSelect, conv.id.str());
    if (!q) return std::unexpected(q.error());
    auto has = q->next();
    if (!has) return std::unexpected(has.error());
    if (!*has) return RowChange::kNew;
    if (q->text(0) != conv.account.str())
      return conflict("conversation " + conv.id.str() + " belongs to another account");
    const bool same_fixed =
        q->text(1) == conv.consumer.str() && q->text(2) == channelName(conv.channel) &&
        q->text(3) == stateName(conv.state) && q->text(4) == conv.skill.str() &&
        q->text(5) == ttrTypeName(conv.ttr_type) && q->i64(6) == conv.ttr_value_s &&
        q->i64(7) == conv.ttr_due_at && q->i64(8) == conv.start_ts && q->i64(9) == conv.end_ts &&
        q->text(10) == conv.close_reason && q->text(11) == conv.context_json &&
        q->text(14) == encodeTurnMark(conv.turn_mark);
    if (!same_fixed) return RowChange::kAll;
    if (q->i64(12) == conv.updated_at && q->i64(13) == conv.next_sequence) return RowChange::kNone;
    return RowChange::kCounters;
  }

  // Upserts the conversation row and its participants, writing only what changed: an appended
  // message usually changes only updated_at and next_sequence, which no index covers, so the
  // commit dirties one table page instead of the row's index pages as well. Conflict when the id
  // belongs to another account (nothing is written then).
  static Status storeConversation(Conn& c, const Conversation& conv) {
    auto change = rowChange(c, conv);
    if (!change) return asStatus(change);
    switch (*change) {
      case RowChange::kNone:
        break;
      case RowChange::kCounters: {
        static const std::string kSql =
            "UPDATE conversations SET updated_at=?, next_sequence=? WHERE id=?";
        PARLEY_STORE_TRY(execute(c, kSql, conv.updated_at, conv.next_sequence, conv.id.str()));
        break;
      }
      case RowChange::kNew:
      case RowChange::kAll: {
        static const std::string kSql = "INSERT OR REPLACE INTO conversations(" +
                                        cols(kConversationCols) +
                                        ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
        PARLEY_STORE_TRY(execute(c, kSql, conv.id.str(), conv.account.str(), conv.consumer.str(),
                                 channelName(conv.channel), stateName(conv.state), conv.skill.str(),
                                 ttrTypeName(conv.ttr_type), conv.ttr_value_s, conv.ttr_due_at,
                                 conv.start_ts, conv.end_ts, conv.updated_at, conv.close_reason,
                                 conv.next_sequence, conv.context_json,
                                 encodeTurnMark(conv.turn_mark)));
        break;
      }
    }
    if (*change != RowChange::kNew) {
      // Most saves (every appended message) leave the participants as they were: compare
      // first, since reading two rows is cheaper than deleting and inserting them.
      Conversation stored;
      stored.id = conv.id;
      PARLEY_STORE_TRY(loadParticipants(c, stored));
      auto same = [](const Participant& a, const Participant& b) {
        return a.id == b.id && a.role == b.role && a.state == b.state && a.joined_at == b.joined_at;
      };
      if (std::ranges::equal(stored.participants, conv.participants, same)) return {};
      static const std::string kDelete = "DELETE FROM participants WHERE conversation=?";
      PARLEY_STORE_TRY(execute(c, kDelete, conv.id.str()));
    }
    static const std::string kInsert =
        "INSERT INTO participants(conversation, position, id, role, state, joined_at) "
        "VALUES(?,?,?,?,?,?)";
    std::int64_t pos = 0;
    for (const auto& p : conv.participants)
      PARLEY_STORE_TRY(
          execute(c, kInsert, conv.id.str(), pos++, p.id, p.role, p.state, p.joined_at));
    return {};
  }

  static Status loadParticipants(Conn& c, Conversation& conv) {
    static const std::string kSql =
        "SELECT id, role, state, joined_at FROM participants WHERE conversation=? ORDER BY "
        "position";
    auto ps = selectAll<Participant>(c, kSql, participantRow, conv.id.str());
    if (!ps) return asStatus(ps);
    conv.participants = std::move(*ps);
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
  static std::string botMissing(const AccountId& acc, const BotId& id) {
    return "bot " + id.str() + " does not exist in account " + acc.str();
  }

  static Status checkBotUser(Conn& c, const BotRecord& b) {
    if (b.user.empty()) return {};
    auto other = selectOne<std::string>(
        c, "SELECT id FROM bots WHERE account=? AND user_id=? AND id<>?",
        [](Query& q) { return q.text(0); }, b.account.str(), b.user.str(), b.id.str());
    if (!other) return asStatus(other);
    if (*other) return conflict("user " + b.user.str() + " already has bot " + **other);
    return {};
  }

  const Clock& clock_;
  const int version_;
  // Buffered turn records (appendTurnAsync), in arrival order; declared before the writer,
  // whose thread runs the deferred flush until it stops.
  const int turn_flush_ms_;
  std::mutex turns_mu_;
  std::vector<BufferedTurn> turn_buffer_;  // guarded by turns_mu_
  bool turns_closed_ = false;              // guarded by turns_mu_: the store is closing
  std::atomic<int> turns_in_flight_{0};    // queued buffer writes not yet completed
  // Conversation id → print of the row as the writer last stored it (open conversations).
  // Touched only by the writer's leader; dropped whole when a write rolls back.
  std::unordered_map<std::string, RowPrint> row_prints_;
  // The writer outlives the readers: the readers close first, so the writer's connection is
  // the last one and its close checkpoints the WAL into the database file.
  Writer writer_;
  ReaderPool readers_;
};

}  // namespace

int sqliteLatestSchemaVersion() { return sqlite::latestSchemaVersion(); }

Status sqliteExecForTest(Store& store, const std::vector<std::string>& statements) {
  auto* s = dynamic_cast<SqliteStore*>(&store);
  if (!s) return invalid("not a SQLite store");
  return s->execForTest(statements);
}

Result<SqliteWriteStats> sqliteWriteStats(Store& store) {
  auto* s = dynamic_cast<SqliteStore*>(&store);
  if (!s) return invalid("not a SQLite store");
  return s->writeStats();
}

std::string sqlitePrometheusText(Store& store) {
  auto st = sqliteWriteStats(store);
  if (!st) return {};
  std::string out;
  prometheus::appendSample(
      out, "parley_store_transactions_total", "counter",
      "SQLite write transactions committed or failed (each holds a batch of writes).",
      st->transactions);
  prometheus::appendSample(out, "parley_store_writes_total", "counter",
                           "Writes run in those transactions.", st->writes);
  prometheus::appendSample(out, "parley_store_largest_batch", "gauge",
                           "Most writes committed in one transaction.", st->largest_batch);
  prometheus::appendSample(out, "parley_store_checkpoints_total", "counter",
                           "WAL checkpoints run by the background checkpoint thread.",
                           st->background_checkpoints);
  prometheus::appendSample(out, "parley_store_inline_checkpoints_total", "counter",
                           "WAL checkpoints the writer ran itself (WAL past its hard limit).",
                           st->inline_checkpoints);
  const auto wal = sqlite::batchedWalStats();
  prometheus::appendSample(out, "parley_store_wal_writes_total", "counter",
                           "WAL writes SQLite made through the batched-WAL VFS.", wal.writes);
  prometheus::appendSample(out, "parley_store_wal_pwrites_total", "counter",
                           "pwrite calls the batched-WAL VFS made for them.", wal.flushes);
  prometheus::appendSample(out, "parley_store_wal_syncs_total", "counter",
                           "WAL fsyncs made (new WAL headers, checkpoints).", wal.syncs_made);
  return out;
}

Result<std::unique_ptr<Store>> openSqliteStore(const std::string& path, const Clock& clock) {
  return openSqliteStore(path, clock, SqliteOptions{});
}

Result<std::unique_ptr<Store>> openSqliteStore(const std::string& path, const Clock& clock,
                                               const SqliteOptions& options) {
  if (path.empty() || path == ":memory:" || path.starts_with("file::memory:"))
    return invalid("the SQLite store needs a file path, not '" + path + "'");
  // The batched-WAL VFS flushes a commit's frames when SQLite syncs the WAL after the commit,
  // which it does only under synchronous=FULL; the VFS then syncs only where NORMAL would (see
  // batched_wal_vfs.h), so the durability is still kNormal's.
  const char* writer_vfs = options.sync == SqliteOptions::Sync::kNormal && options.batch_wal_writes
                               ? sqlite::batchedWalVfsName()
                               : nullptr;
  auto writer = Conn::open(path, Conn::Mode::kReadWrite, options.busy_timeout_ms, writer_vfs);
  if (!writer) return std::unexpected(writer.error());
  Conn& w = **writer;
  // WAL: readers never block the writer nor each other. synchronous=NORMAL in WAL mode syncs
  // only at checkpoints: a commit is in the OS once COMMIT returns (safe against process
  // crashes); FULL also fsyncs the WAL per commit (safe against power loss).
  {
    auto mode = w.query("PRAGMA journal_mode=WAL");
    if (!mode) return std::unexpected(mode.error());
    auto row = mode->next();
    if (!row) return std::unexpected(row.error());
    if (!*row || mode->text(0) != "wal")
      return makeError(ErrorCode::kUnavailable,
                       "cannot switch " + path + " to WAL mode; put it on a local file system");
  }
  const char* sync = options.sync == SqliteOptions::Sync::kFull ? "FULL" : "NORMAL";
  PARLEY_STORE_TRY(w.exec(std::string("PRAGMA synchronous=") + (writer_vfs ? "FULL" : sync)));
  // After a checkpoint the WAL is truncated back to at most 64 MiB.
  PARLEY_STORE_TRY(
      w.exec("PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY; "
             "PRAGMA journal_size_limit=67108864"));
  auto version = sqlite::migrate(w, options.schema_version_for_test);
  if (!version) return std::unexpected(version.error());
  // The writer revisits the pages of every open conversation; keep them in its cache (32 MiB,
  // allocated as used) rather than re-reading them from the OS.
  PARLEY_STORE_TRY(w.exec("PRAGMA cache_size=-32768"));

  std::unique_ptr<Checkpointer> checkpointer;
  if (options.checkpoint_pages > 0) {
    auto cc = Conn::open(path, Conn::Mode::kReadWrite, options.busy_timeout_ms);
    if (!cc) return std::unexpected(cc.error());
    // A checkpoint syncs as its connection's synchronous setting says.
    PARLEY_STORE_TRY((*cc)->exec(std::string("PRAGMA synchronous=") + sync));
    checkpointer = std::make_unique<Checkpointer>(std::move(*cc), options.checkpoint_pages);
  }

  std::vector<std::unique_ptr<Conn>> readers;
  for (int i = 0; i < std::max(1, options.readers); ++i) {
    auto r = Conn::open(path, Conn::Mode::kReadOnly, options.busy_timeout_ms);
    if (!r) return std::unexpected(r.error());
    readers.push_back(std::move(*r));
  }
  return std::unique_ptr<Store>(
      new SqliteStore(clock, *version, std::move(*writer), std::move(readers), options.max_batch,
                      std::move(checkpointer), options.wal_max_pages, options.turn_flush_ms,
                      options.lead_idle_async_writes));
}

}  // namespace parley::store
