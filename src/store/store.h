#pragma once

// Store interfaces: the only way any subsystem reads or writes durable state.
// Implementations: sqlite/ (default, WAL, one writer with group commit), postgres/ (cluster mode)
// and memory/ (the fake for unit tests). Every method is thread-safe and may block (it does I/O):
// never call it on a network io thread. Every query that takes an AccountId returns only that
// account's rows. Writes are durable (committed) when the call returns successfully.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/policy.h"
#include "common/result.h"

namespace parley::store {

// ---------------------------------------------------------------------------------------------
// Accounts, users, sessions, skills, agent states

// A disabled account refuses logins, API keys, consumer signups and sockets; its data is kept.
enum class AccountStatus { kActive, kDisabled };

struct Account {
  AccountId id;
  std::string name;
  // Seconds for the named TTR types (Agent Workspace settings). Defaults from LivePerson.
  std::int64_t ttr_urgent_s = 300;
  std::int64_t ttr_prioritized_s = 600;
  std::int64_t ttr_normal_s = 3600;
  TimeMs created_at = 0;
  AccountStatus status = AccountStatus::kActive;
};

// The roles and user types are the policy's (common/policy.h).
using Role = policy::Role;
using UserType = policy::UserType;
// A disabled user cannot log in and has no sessions or API keys; it stays in the account.
enum class UserStatus { kEnabled, kDisabled };

struct User {
  AccountId account;
  UserId id;        // numeric string, unique within the account
  std::string pid;  // public id (UUID), `userPid` in the login response
  std::string login_name;
  std::string password_hash;  // libsodium crypto_pwhash_str (argon2id); never the password
  std::vector<Role> roles;
  UserType type = UserType::kHuman;
  std::vector<SkillId> skills;
  int max_open_conversations = 10;
  TimeMs created_at = 0;
  UserStatus status = UserStatus::kEnabled;
};

// A login session. Its bearer (the LivePerson `bearer` and the REST token) is given to the client
// once and never stored: the store keys the session by the bearer's hash.
struct Session {
  std::string bearer_hash;  // hex SHA-256 of the bearer
  std::string csrf;
  AccountId account;
  UserId user;
  TimeMs created_at = 0;
  TimeMs expires_at = 0;
};

// An API key for automation. Only the hash of the key is stored.
struct ApiKey {
  std::string key_hash;  // hex SHA-256 of the key
  AccountId account;
  UserId user;
  std::string name;
  TimeMs created_at = 0;
  // Public id (lists, revocation); unique in the account; not the key.
  std::string id{};
  // Roles the key acts with, a subset of the user's roles; empty = all of the user's roles.
  std::vector<Role> scopes{};
  TimeMs expires_at = 0;  // 0 = never
  UserId created_by{};    // who made it (the user itself or an admin)
};

// An OAuth 2.0 app installation (client credentials grant) of the functions gateway. Only the
// hash of its client secret is stored.
struct OAuthApp {
  AccountId account;
  // Public, unique in the account; the OAuth client_id.
  std::string client_id;
  std::string name;
  std::string secret_hash;  // hex SHA-256 of the client secret
  // OAuth scopes (policy::oauthScopes names) its access tokens may be given.
  std::vector<std::string> scopes{};
  TimeMs created_at = 0;
  UserId created_by{};
};

// An access token issued to an app. Only the hash of the token is stored.
struct AccessToken {
  std::string token_hash;  // hex SHA-256 of the token
  AccountId account;
  std::string client_id;
  std::vector<std::string> scopes{};
  TimeMs created_at = 0;
  TimeMs expires_at = 0;
};

struct Skill {
  AccountId account;
  SkillId id;  // numeric string
  std::string name;
  TimeMs created_at = 0;
};

enum class Availability { kOnline, kOccupied, kAway, kBackSoon, kOffline };

struct AgentState {
  AccountId account;
  UserId user;
  Availability availability = Availability::kOffline;
  TimeMs updated_at = 0;
};

class AccountStore {
 public:
  virtual ~AccountStore() = default;

  virtual Status createAccount(const Account& a) = 0;  // Conflict if the id exists
  virtual Result<Account> getAccount(const AccountId& id) = 0;
  virtual Result<std::vector<Account>> listAccounts() = 0;
  // NotFound if the account does not exist.
  virtual Status setAccountStatus(const AccountId& id, AccountStatus status) = 0;

  // Creates a user; assigns `id` (next numeric id in the account) when empty. Conflict when the
  // login name is taken in the account. Returns the stored user.
  virtual Result<User> createUser(User u) = 0;
  virtual Status updateUser(const User& u) = 0;  // NotFound if absent
  // Deletes the user and, in the same transaction, its sessions and API keys. NotFound if absent.
  virtual Status deleteUser(const AccountId& acc, const UserId& id) = 0;
  virtual Result<User> getUser(const AccountId& acc, const UserId& id) = 0;
  virtual Result<User> getUserByLogin(const AccountId& acc, const std::string& login_name) = 0;
  virtual Result<std::vector<User>> listUsers(const AccountId& acc) = 0;

  // Sessions are keyed by Session::bearer_hash.
  virtual Status putSession(const Session& s) = 0;
  virtual Result<Session> getSession(const std::string& bearer_hash) = 0;  // NotFound if absent
  virtual Status deleteSession(const std::string& bearer_hash) = 0;
  virtual Status deleteExpiredSessions(TimeMs now) = 0;

  // Inserts or replaces the key with this key_hash. Invalid without key_hash or id.
  virtual Status putApiKey(const ApiKey& k) = 0;
  virtual Result<ApiKey> getApiKey(const std::string& key_hash) = 0;  // NotFound if absent
  // Every API key of the account, oldest first.
  virtual Result<std::vector<ApiKey>> listApiKeys(const AccountId& acc) = 0;
  // NotFound when the account has no key with this id.
  virtual Status deleteApiKey(const AccountId& acc, const std::string& id) = 0;

  // Deletes every session and API key of the user, in one transaction (revocation after a
  // password, role or status change). Succeeds when there were none.
  virtual Status deleteCredentials(const AccountId& acc, const UserId& user) = 0;

  // Assigns `id` when empty. Conflict when the name exists in the account.
  virtual Result<Skill> createSkill(Skill s) = 0;
  virtual Status deleteSkill(const AccountId& acc, const SkillId& id) = 0;
  virtual Result<std::vector<Skill>> listSkills(const AccountId& acc) = 0;

  virtual Status putAgentState(const AgentState& s) = 0;
  virtual Result<std::vector<AgentState>> listAgentStates(const AccountId& acc) = 0;
};

// OAuth 2.0 app installations and the access tokens issued to them (functions gateway).
class OAuthStore {
 public:
  virtual ~OAuthStore() = default;

  // Invalid without account, client_id or secret_hash; Conflict when the account already has an
  // app with this client_id.
  virtual Status createApp(const OAuthApp& a) = 0;
  virtual Result<OAuthApp> getApp(const AccountId& acc, const std::string& client_id) = 0;
  // The account's apps, oldest first.
  virtual Result<std::vector<OAuthApp>> listApps(const AccountId& acc) = 0;
  // Deletes the app and, in the same transaction, every access token issued to it. NotFound
  // when the account has no such app.
  virtual Status deleteApp(const AccountId& acc, const std::string& client_id) = 0;

  // Stores `t` and, in the same transaction, drops the app's tokens that expired by
  // `t.created_at` and then all but its newest `keep` (newest by created_at, ties by insertion
  // order; `t` counts). Invalid without token_hash or client_id; NotFound when the account has
  // no app with t.client_id (so no token outlives the deletion of its app); Conflict when the
  // hash exists.
  virtual Status addAccessToken(const AccessToken& t, int keep) = 0;
  // NotFound if absent (expired tokens are returned too: callers compare expires_at).
  virtual Result<AccessToken> getAccessToken(const std::string& token_hash) = 0;
  // Removes every token with expires_at <= now.
  virtual Status deleteExpiredAccessTokens(TimeMs now) = 0;
};

// ---------------------------------------------------------------------------------------------
// Conversations, participants, messages

enum class Channel { kMessaging, kChat };

// What a bot turn has done, stored with each of its effects: on every message the turn publishes
// (Message::turn) and, for a turn that ends without a message to carry it, on the conversation
// (Conversation::turn_mark), in the same commit as the effect. From these the connector derives,
// after any crash, which consumer messages still need a turn (those after the `through` of the
// last done turn) and which effects of an interrupted turn are already out (its `effect`
// numbers), so that a turn runs to its end exactly once; no row is written per turn besides the
// effects themselves.
struct TurnMark {
  std::string turn_id;  // empty: no mark
  // joined_at of the bot's ACTIVE ASSIGNED_AGENT entry when the turn ran: marks of an earlier
  // assignment of the conversation (to the same bot) do not count.
  TimeMs assigned_at = 0;
  // Consumer messages with a sequence <= through are answered once this turn is done.
  std::int64_t through = -1;
  int effect = 0;     // this effect's number within the turn: 0, 1, ...
  bool done = false;  // the turn's last effect: the turn is done once it has committed
  bool empty() const { return turn_id.empty(); }
  bool operator==(const TurnMark&) const = default;
};
// The stored text of a mark ("" for none) and back; text that is not a mark reads as none.
std::string encodeTurnMark(const TurnMark& m);
TurnMark decodeTurnMark(std::string_view text);
enum class ConversationState { kOpen, kClose };
enum class TtrType { kUrgent, kNormal, kPrioritized, kCustom };

// A participant's role in a conversation (the messaging protocol's role names), which is also
// the role a message's or chat state's originator had. CONTROLLER is the platform acting as
// itself (REST admin calls, escalation).
enum class ParticipantRole { kConsumer, kAssignedAgent, kManager, kReader, kController };
// ACTIVE takes part; SUGGESTED is a named agent a transfer rings, until it accepts.
enum class ParticipantState { kActive, kSuggested };
// Who sees a message: everyone, or agents and managers only (a private note; never sent to
// consumers).
enum class Audience { kAll, kAgentsAndManagers };
// Who closed a conversation.
enum class CloseReason { kConsumer, kAgent, kBot, kSystem };

struct Participant {
  std::string id;  // consumer id, or the agent's UserId
  ParticipantRole role = ParticipantRole::kConsumer;
  ParticipantState state = ParticipantState::kActive;
  TimeMs joined_at = 0;
};

// The credential a node's conversation write carries in cluster mode: the lease it holds on the
// conversation (ClusterStore). Never stored.
struct Fence {
  std::string node;        // empty: an unfenced write (a single node, no leases)
  std::int64_t epoch = 0;  // the lease's epoch when the node took it
  bool empty() const { return node.empty(); }
  bool operator==(const Fence&) const = default;
};

struct Conversation {
  ConversationId id;
  AccountId account;
  ConsumerId consumer;
  Channel channel = Channel::kMessaging;
  ConversationState state = ConversationState::kOpen;
  SkillId skill{"-1"};
  TtrType ttr_type = TtrType::kNormal;
  std::int64_t ttr_value_s = 3600;  // effective seconds
  TimeMs ttr_due_at = 0;            // when it becomes overdue while waiting for an agent
  TimeMs start_ts = 0;
  TimeMs end_ts = 0;
  TimeMs updated_at = 0;
  std::optional<CloseReason> close_reason;  // none while open
  std::int64_t next_sequence = 0;           // sequence the next persisted event gets
  std::vector<Participant> participants;
  std::string context_json = "{}";  // conversationContext from the request (SharkContext, ...)
  // The last bot turn that ended without a message to carry its mark (see TurnMark).
  TurnMark turn_mark;
  // Not stored (reads leave it empty). When set, saveConversation and appendMessage (and their
  // asynchronous forms) write only while `fence.node` holds the conversation's lease at
  // `fence.epoch` (held or expired, as long as no node has taken it since); otherwise they write
  // nothing and fail with Unavailable naming the holder. The store checks this in the write's
  // own transaction, and a takeover waits for writes that passed the check to commit, so a node
  // that lost its lease can no longer change the conversation.
  Fence fence;
};

// One persisted conversation event (ContentEvent, RichContentEvent, AcceptStatusEvent, ...).
struct Message {
  ConversationId conversation;
  std::int64_t sequence = 0;
  TimeMs server_ts = 0;
  std::string originator_id;   // consumer id, or the agent's "{acc}.{userId}"
  std::string originator_pid;  // consumer id, or the agent's PId
  ParticipantRole originator_role = ParticipantRole::kConsumer;
  Audience audience = Audience::kAll;
  std::string event_json;            // the event object as published
  std::string metadata_json = "[]";  // envelope metadata array
  TurnMark turn;                     // on a bot's messages: the turn and effect it belongs to
  // The publisher's idempotency key (empty: none). At most one message of a conversation has a
  // given (originator_id, idempotency_key): appendMessage refuses another one (see there). Kept
  // as long as the message. listMessages leaves it empty; findMessageByKey sets it.
  std::string idempotency_key;
};

struct ConversationQuery {
  std::optional<ConversationState> state;
  std::optional<SkillId> skill;
  std::optional<ConsumerId> consumer;
  int limit = 500;
};

class ConversationStore {
 public:
  virtual ~ConversationStore() = default;

  // Inserts or replaces a conversation with its participants, atomically.
  virtual Status saveConversation(const Conversation& c) = 0;
  // Appends `m` and saves `c` (typically with next_sequence advanced) in one transaction.
  // Conflict if (conversation, sequence) exists. Conflict too, writing nothing (neither the
  // message nor the conversation), when `m` has an idempotency key and the conversation already
  // holds a message with the same originator_id and key: checked in the insert's own
  // transaction (a unique index in SQLite and PostgreSQL), so two writers racing with one key
  // store one message; findMessageByKey then tells which (the engine answers its sequence).
  virtual Status appendMessage(const Conversation& c, const Message& m) = 0;
  // Asynchronous appendMessage: returns at once; `done` runs once the write committed (or
  // failed) with what appendMessage would have returned. Writes queued by any caller commit in
  // queue order, many per transaction (group commit), and their `done`s run in that order on a
  // store thread: `done` must not block and must not call the store (post the work elsewhere).
  // Default: appendMessage inline, then `done`. The store keeps `c` and `m` (shared, never
  // changed) until `done` has run, so a caller can hand over the snapshot it goes on to publish
  // without copying it.
  virtual void appendMessageAsync(std::shared_ptr<const Conversation> c,
                                  std::shared_ptr<const Message> m,
                                  std::function<void(Status)> done) {
    done(appendMessage(*c, *m));
  }
  void appendMessageAsync(Conversation c, Message m, std::function<void(Status)> done) {
    appendMessageAsync(std::make_shared<const Conversation>(std::move(c)),
                       std::make_shared<const Message>(std::move(m)), std::move(done));
  }
  // Asynchronous saveConversation; same rules as appendMessageAsync.
  virtual void saveConversationAsync(Conversation c, std::function<void(Status)> done) {
    done(saveConversation(c));
  }
  virtual Result<Conversation> getConversation(const AccountId& acc, const ConversationId& id) = 0;
  virtual Result<std::vector<Conversation>> listConversations(const AccountId& acc,
                                                              const ConversationQuery& q) = 0;
  // All open conversations of all accounts (for recovery at start).
  virtual Result<std::vector<Conversation>> listOpenConversations() = 0;
  // Messages with sequence >= from_seq, in sequence order, at most `limit`.
  virtual Result<std::vector<Message>> listMessages(const ConversationId& id, std::int64_t from_seq,
                                                    int limit) = 0;
  // The message of conversation `id` with this originator_id and idempotency key (committed),
  // with its idempotency_key set; nullopt when there is none (or `key` is empty).
  virtual Result<std::optional<Message>> findMessageByKey(const ConversationId& id,
                                                          const std::string& originator_id,
                                                          const std::string& key) = 0;
};

// ---------------------------------------------------------------------------------------------
// Functions (LivePerson Functions platform)

struct EnvVar {
  std::string key;
  std::string value;
};

// A function's state as LivePerson names it: Draft (never deployed, or undeployed), Productive
// (its saved code is live), Modified (saved since its live deployment), Build Error (the last
// deployment failed to build), Deploy Error (its deployment could not be loaded at start).
enum class FunctionState { kDraft, kProductive, kModified, kBuildError, kDeployError };
// One deployment's outcome.
enum class DeploymentState { kProductive, kBuildError, kDeployError, kUndeployed };

// A function (lambda) as edited.
struct FunctionRecord {
  FunctionId uuid;
  AccountId account;
  std::string name;  // unique per account
  std::string description;
  std::string event_id;
  std::string code;
  std::vector<EnvVar> env;
  FunctionState state = FunctionState::kDraft;
  std::int64_t version = 1;  // bumped by every saved change
  std::string created_by;
  std::string updated_by;
  TimeMs created_at = 0;
  TimeMs updated_at = 0;
};

// One deployment attempt: the code and env that were deployed, and how it went.
struct Deployment {
  std::string uuid;
  FunctionId function;
  AccountId account;
  std::int64_t function_version = 0;
  std::string code;
  std::vector<EnvVar> env;
  DeploymentState state = DeploymentState::kProductive;
  std::string error_json;  // {errorCode, errorMsg, errorLogs[]} when it failed
  std::string created_by;
  TimeMs created_at = 0;
  TimeMs deployed_at = 0;
};

struct InvocationLog {
  FunctionId function;
  AccountId account;
  std::string request_id;
  TimeMs ts = 0;
  std::string level;  // Debug, Info, Warn, Error
  std::string message;
  std::string extras_json = "[]";
};

struct Secret {
  AccountId account;
  std::string key;
  std::string ciphertext;  // crypto_secretbox of the value, with the nonce prepended
  TimeMs updated_at = 0;
};

struct ContextProperty {
  AccountId account;
  std::string ns;
  std::string session_id;  // "" for the namespace-level session
  std::string name;
  std::string value_json;
  TimeMs expires_at = 0;  // 0 = never
};

// Who invoked the function that read or wrote a secret, which of the two, and whether it was
// allowed (names: "platform"/"user", "read"/"write", "allowed"/"refused").
enum class AuditInvoker { kPlatform, kUser };
enum class AuditOp { kRead, kWrite };
enum class AuditOutcome { kAllowed, kRefused };

// One secret read or write attempted by a function (the secret audit trail).
struct SecretAuditEntry {
  AccountId account;
  TimeMs ts = 0;
  FunctionId function;
  std::string request_id;
  AuditInvoker invoker = AuditInvoker::kPlatform;
  UserId user;  // the invoking user when invoker is kUser
  std::string login_name;
  std::string key;
  AuditOp op = AuditOp::kRead;
  AuditOutcome outcome = AuditOutcome::kAllowed;
  std::string detail;  // why it was refused, or the error of an allowed operation; "" if none
};

class FunctionStore {
 public:
  virtual ~FunctionStore() = default;

  virtual Status createFunction(const FunctionRecord& f) = 0;  // Conflict if the name is taken
  virtual Status updateFunction(const FunctionRecord& f) = 0;  // NotFound if absent
  virtual Status deleteFunction(const AccountId& acc, const FunctionId& id) = 0;
  virtual Result<FunctionRecord> getFunction(const AccountId& acc, const FunctionId& id) = 0;
  virtual Result<std::vector<FunctionRecord>> listFunctions(const AccountId& acc) = 0;

  virtual Status addDeployment(const Deployment& d) = 0;
  // Newest first, at most `limit`.
  virtual Result<std::vector<Deployment>> listDeployments(const AccountId& acc,
                                                          const FunctionId& id, int limit) = 0;
  // Deleting older than the newest `keep` deployments of a function.
  virtual Status pruneDeployments(const AccountId& acc, const FunctionId& id, int keep) = 0;

  virtual Status appendLogs(const std::vector<InvocationLog>& logs) = 0;
  // Newest first, at most `limit`, optionally since a timestamp.
  virtual Result<std::vector<InvocationLog>> listLogs(const AccountId& acc, const FunctionId& id,
                                                      TimeMs since, int limit) = 0;

  virtual Status putSecret(const Secret& s) = 0;
  virtual Result<Secret> getSecret(const AccountId& acc, const std::string& key) = 0;
  virtual Status deleteSecret(const AccountId& acc, const std::string& key) = 0;
  virtual Result<std::vector<std::string>> listSecretKeys(const AccountId& acc) = 0;

  // Appends one audit entry and keeps only its account's newest `keep` entries. Invalid when
  // the account is empty.
  virtual Status appendSecretAudit(const SecretAuditEntry& e, int keep) = 0;
  // Newest first (insertion order), at most `limit`.
  virtual Result<std::vector<SecretAuditEntry>> listSecretAudit(const AccountId& acc,
                                                                int limit) = 0;

  virtual Status putAllowlist(const AccountId& acc, const std::vector<std::string>& domains) = 0;
  virtual Result<std::vector<std::string>> getAllowlist(const AccountId& acc) = 0;

  virtual Status putContextProperty(const ContextProperty& p) = 0;
  virtual Result<std::vector<ContextProperty>> listContextProperties(
      const AccountId& acc, const std::string& ns, const std::string& session) = 0;
  virtual Status deleteContextProperties(const AccountId& acc, const std::string& ns,
                                         const std::string& session, const std::string& name) = 0;
};

// ---------------------------------------------------------------------------------------------
// Function schedules (cron expressions run by the functions scheduler, src/functions/schedule)

enum class ScheduleState { kActive, kPaused };

// A schedule: run `function` with `payload_json` at every time `cron` names (UTC), plus the
// bookkeeping of its runs. The store keeps the cron text as given; the scheduler computes the
// times.
struct Schedule {
  AccountId account;
  std::string id;  // uuid
  FunctionId function;
  std::string cron;
  ScheduleState state = ScheduleState::kActive;
  std::string payload_json = "{}";
  // When the scheduler runs it next (ms); 0 when paused.
  TimeMs next_run_at = 0;
  // The run in progress: its id and until when its claim holds ("" and 0: none).
  std::string running_id;
  TimeMs running_until = 0;
  // The last run: the time it was due, when it started and ended, its outcome ("" never ran,
  // "OK", or the LivePerson error code) and error message, its duration.
  TimeMs last_due_at = 0;
  TimeMs last_started_at = 0;
  TimeMs last_finished_at = 0;
  std::string last_outcome;
  std::string last_error;
  std::int64_t last_duration_ms = 0;
  std::string created_by;
  TimeMs created_at = 0;
  TimeMs updated_at = 0;
};

// Claims one run of a schedule (ScheduleStore::claimScheduleRun).
struct ScheduleClaim {
  AccountId account;
  std::string id;
  // The next_run_at the caller read: the claim holds only if it is still the stored one.
  TimeMs due_at = 0;
  // The next_run_at stored with the claim (the schedule's next time after now).
  TimeMs next_run_at = 0;
  TimeMs now = 0;
  std::string run_id;
  TimeMs running_until = 0;
};

// The end of a claimed run (ScheduleStore::finishScheduleRun).
struct ScheduleRunEnd {
  AccountId account;
  std::string id;
  std::string run_id;
  TimeMs finished_at = 0;
  std::string outcome;  // "OK" or the error code
  std::string error;
  std::int64_t duration_ms = 0;
};

class ScheduleStore {
 public:
  virtual ~ScheduleStore() = default;

  // Invalid without account, id, function or cron; NotFound when the account has no function
  // s.function (checked in the same transaction, so no schedule outlives its function: deleting
  // a function deletes its schedules); Conflict when the id exists.
  virtual Status createSchedule(const Schedule& s) = 0;
  // Replaces the definition (cron, state, payload_json, next_run_at, updated_at) and leaves the
  // run bookkeeping alone. NotFound when absent.
  virtual Status updateSchedule(const Schedule& s) = 0;
  virtual Status deleteSchedule(const AccountId& acc, const std::string& id) = 0;
  virtual Result<Schedule> getSchedule(const AccountId& acc, const std::string& id) = 0;
  // The account's schedules, oldest first.
  virtual Result<std::vector<Schedule>> listSchedules(const AccountId& acc) = 0;
  // Every account's active schedules with 0 < next_run_at <= now and no claim unexpired at
  // `now` (running_until <= now), earliest next_run_at first, at most `limit`.
  virtual Result<std::vector<Schedule>> listDueSchedules(TimeMs now, int limit) = 0;
  // In one transaction, when the schedule is active, its next_run_at is still c.due_at and no
  // claim is unexpired at c.now: stores the claim (running_id, running_until), last_due_at =
  // due_at, last_started_at = now and next_run_at = c.next_run_at. Of callers racing for one
  // run (threads or nodes) exactly one succeeds; the others get Conflict. NotFound when absent.
  virtual Status claimScheduleRun(const ScheduleClaim& c) = 0;
  // Moves next_run_at from `due_at` to `next_run_at` without a run (missed runs skipped), under
  // the same conditions as a claim. Conflict when they do not hold; NotFound when absent.
  virtual Status skipScheduleRuns(const AccountId& acc, const std::string& id, TimeMs due_at,
                                  TimeMs next_run_at, TimeMs now) = 0;
  // When the schedule's running_id is e.run_id: clears the claim and records the outcome.
  // Conflict when the claim is no longer this run's; NotFound when the schedule is gone.
  virtual Status finishScheduleRun(const ScheduleRunEnd& e) = 0;
};

// ---------------------------------------------------------------------------------------------
// Bots (Third-Party Bots, vendor Custom Integration) and their turns

// A bot's status (README of src/connector, "Bot health"): OFFLINE bots do not run; the others
// are running bots, ONLINE or in one of the two interruptions.
enum class BotStatus { kOnline, kOffline, kVendorInterruption, kServiceInterruption };

struct BotRecord {
  AccountId account;
  BotId id;
  std::string name;
  UserId user;              // the bot user (type BOT) that owns conversations
  std::string config_json;  // vendor, functionUuid, conversationTypes, escalation, ...
  BotStatus status = BotStatus::kOffline;
  TimeMs created_at = 0;
  TimeMs updated_at = 0;
};

// One recorded bot turn: input, response, actions taken or refused, timings per stage.
struct TurnRecord {
  AccountId account;
  BotId bot;
  ConversationId conversation;
  std::string turn_id;
  TimeMs ts = 0;
  std::string outcome;  // OK, ERROR, DISCARDED, ...
  std::string input_json;
  std::string response_json;
  std::string actions_json = "[]";
  std::string timings_json = "{}";
  std::string error;
};

// A turn that was started but whose effects were not all applied (resumed after a restart).
struct PendingTurn {
  AccountId account;
  BotId bot;
  ConversationId conversation;
  std::string turn_id;
  std::string state_json;
  TimeMs created_at = 0;
};

class BotStore {
 public:
  virtual ~BotStore() = default;

  virtual Status createBot(const BotRecord& b) = 0;  // Conflict if the bot user already has a bot
  virtual Status updateBot(const BotRecord& b) = 0;
  virtual Status deleteBot(const AccountId& acc, const BotId& id) = 0;
  virtual Result<BotRecord> getBot(const AccountId& acc, const BotId& id) = 0;
  virtual Result<std::vector<BotRecord>> listBots(const AccountId& acc) = 0;
  virtual Result<std::vector<BotRecord>> listAllBots() = 0;

  // Keeps at most `keep` newest turns per bot. A record of a conversation whose content was
  // erased (Store::eraseConversationContent) before this write is stored as the erasure leaves
  // records: input_json and response_json `{}`, actions_json `[]`, error `` (checked in the
  // write's own transaction).
  virtual Status appendTurn(const TurnRecord& t, int keep) = 0;
  // Asynchronous appendTurn; same rules as ConversationStore::appendMessageAsync.
  virtual void appendTurnAsync(TurnRecord t, int keep, std::function<void(Status)> done) {
    done(appendTurn(t, keep));
  }
  virtual Result<std::vector<TurnRecord>> listTurns(const AccountId& acc, const BotId& id,
                                                    int limit) = 0;

  virtual Status putPendingTurn(const PendingTurn& p) = 0;
  virtual Status deletePendingTurn(const std::string& turn_id) = 0;
  virtual Result<std::vector<PendingTurn>> listPendingTurns() = 0;

  // The account's rich-content image allowlist (LivePerson `messaging.rich.content.valid.urls`):
  // entries in order, replaced as a whole. The store keeps them as given (the connector
  // validates). NotFound when the account has none configured; an empty list is configured
  // (no image host allowed).
  virtual Status putImageAllowlist(const AccountId& acc,
                                   const std::vector<std::string>& entries) = 0;
  virtual Result<std::vector<std::string>> getImageAllowlist(const AccountId& acc) = 0;
  // Back to "none configured". NotFound when there was none.
  virtual Status deleteImageAllowlist(const AccountId& acc) = 0;
};

// ---------------------------------------------------------------------------------------------
// Cluster material: small values every node of a cluster shares (the TLS CA and leaf, the consumer
// JWT key, the secrets key, the demo credentials), so that what one node makes the others use.

// A node's ownership of one conversation: a lease until `expires_at` (the store's clock), with a
// fencing epoch that grows by one each time the lease changes hands.
struct Lease {
  ConversationId conversation;
  std::string node;
  std::int64_t epoch = 0;
  TimeMs expires_at = 0;
  Fence fence() const { return Fence{node, epoch}; }
};

class ClusterStore {
 public:
  virtual ~ClusterStore() = default;

  // Takes or renews `node`'s lease on the conversation, until now + ttl_ms. When nobody holds it
  // or its holder's lease has expired (expires_at <= now), `node` takes it with the next epoch
  // (1 for a conversation never leased), even if it was `node`'s own; when `node` holds it
  // unexpired it is extended with the same epoch. Conflict, naming the holder, while another
  // node holds it unexpired. Invalid for an empty node or conversation id or ttl_ms <= 0.
  // Nodes racing for one lease: one gets it, the others get Conflict.
  virtual Result<Lease> acquireLease(const ConversationId& id, const std::string& node,
                                     TimeMs ttl_ms) = 0;
  // Extends the lease `node` holds at `epoch` to now + ttl_ms, expired or not, as long as nobody
  // took it since. Conflict when another node or epoch holds it, or it was never taken.
  virtual Result<Lease> renewLease(const ConversationId& id, const std::string& node,
                                   std::int64_t epoch, TimeMs ttl_ms) = 0;
  // Gives up the lease `node` holds at `epoch` (it expires now; the next taker bumps the epoch).
  // Succeeds, doing nothing, when `node` does not hold it at `epoch`.
  virtual Status releaseLease(const ConversationId& id, const std::string& node,
                              std::int64_t epoch) = 0;
  // The conversation's lease, held or expired. NotFound when it was never leased.
  virtual Result<Lease> getLease(const ConversationId& id) = 0;
  // Extends, in one write, every lease of `held` that `node` still holds at the lease's epoch
  // (expired or not, as long as nobody took it since) to now + ttl_ms, and returns the leases
  // extended; a lease of `held` missing from the answer was taken by another node (or never
  // existed). Invalid for an empty node or ttl_ms <= 0. The default renews them one by one;
  // PostgreSQL does it in one statement.
  virtual Result<std::vector<Lease>> renewLeases(const std::string& node,
                                                 const std::vector<Lease>& held, TimeMs ttl_ms);
  // Gives up, in one write, every lease of `held` that `node` still holds at the lease's epoch
  // (as releaseLease, each: it expires now, the next taker bumps the epoch); the others are left
  // as they are. Invalid for an empty node. The default releases them one by one; SQLite and
  // PostgreSQL do it in one statement.
  virtual Status releaseLeases(const std::string& node, const std::vector<Lease>& held);
  // Takes for `node`, until now + ttl_ms, the leases of open conversations that nobody holds:
  // conversations never leased (epoch 1) and leases expired (expires_at <= now, epoch + 1), at
  // most `limit` (> 0), oldest conversations first; returns the leases taken. Of nodes racing,
  // each lease goes to one of them. Invalid for an empty node, ttl_ms <= 0 or limit <= 0.
  virtual Result<std::vector<Lease>> claimLeases(const std::string& node, TimeMs ttl_ms,
                                                 int limit) = 0;

  // Stores `value` under `key` unless the key already has a value, and returns the value the key
  // holds afterwards: `value` when this call stored it, else the one stored first. Of any number
  // of callers racing on one key (threads or nodes), exactly one value is stored and every caller
  // gets it. A stored value is never replaced. Invalid for an empty key.
  virtual Result<std::string> putMaterialIfAbsent(const std::string& key,
                                                  const std::string& value) = 0;
  // NotFound when the key has no value.
  virtual Result<std::string> getMaterial(const std::string& key) = 0;
};

// ---------------------------------------------------------------------------------------------

// What Store::eraseConversationContent changed: rows changed by this call (all 0 when a
// repeated call found nothing left to erase).
struct ErasureResult {
  std::int64_t messages = 0;       // messages whose event became a tombstone or lost metadata
  bool context = false;            // the conversation's context_json was cleared
  std::int64_t turns = 0;          // turn records whose texts were cleared
  std::int64_t pending_turns = 0;  // pending-turn rows deleted
  std::int64_t properties = 0;     // context properties deleted
};

// The event a message keeps once its conversation's content is erased: an AcceptStatusEvent
// (a receipt: status and sequence numbers, no content) is kept as it is; any other event
// (ContentEvent, RichContentEvent, text that is not an event) becomes kErasedEventJson.
inline constexpr const char* kErasedEventJson =
    R"({"type":"ContentEvent","contentType":"text/plain","message":"","erased":true})";
std::string erasedEventJson(std::string_view event_json);

// The whole store. Owned by main; outlives every user.
class Store {
 public:
  virtual ~Store() = default;
  virtual AccountStore& accounts() = 0;
  virtual ConversationStore& conversations() = 0;
  virtual FunctionStore& functions() = 0;
  virtual BotStore& bots() = 0;
  virtual OAuthStore& oauth() = 0;
  virtual ScheduleStore& schedules() = 0;
  // Schema version after migrations.
  virtual int schemaVersion() const = 0;
  // The cluster material and conversation leases. Every store of this library has them; a
  // decorating test store may answer nullptr (none).
  virtual ClusterStore* cluster() { return nullptr; }

  // Erases the content of a CLOSED conversation (a GDPR erasure request), in one transaction:
  // - every message's event becomes erasedEventJson(event) and its metadata `[]`; its sequence,
  //   server_ts, originator (id, pid, role), audience and turn mark are kept, so sequences stay
  //   dense and receipts still point at existing messages;
  // - the conversation's context_json (conversationContext: visitor ids, SDEs) becomes `{}`;
  //   the row is otherwise kept (ids, consumer id, channel, skill, TTR, start/end times, close
  //   reason, participants, next_sequence, turn mark);
  // - the conversation's turn records (TurnRecord with this account and conversation) keep ids,
  //   ts, outcome and timings; input_json and response_json become `{}`, actions_json `[]`,
  //   error ``;
  // - its pending-turn rows are deleted;
  // - the account's context properties whose session id is the conversation id, in every
  //   namespace (among them the SDEs functions added, namespace `__parley.sdes`), are deleted.
  // Turn records still buffered (SQLite) are written first, so they are erased too; the
  // conversation is marked erased, so a turn record written later (a bot turn's asynchronous
  // record that lost the race) is stored without texts (appendTurn).
  // NotFound when the account has no such conversation; Conflict, naming it, while it is open
  // (checked in the same transaction). Idempotent: erasing again changes nothing.
  // The default (decorating test stores) is Unavailable.
  virtual Result<ErasureResult> eraseConversationContent(const AccountId& acc,
                                                         const ConversationId& id);
};

// Names used in JSON and in the database for the enums above.
// roleName: "ADMIN", "AGENT_MANAGER", "AGENT", "FAAS_ADMIN", "FAAS_DEVELOPER", "FAAS_INVOCATION".
// parseRole: the constant or LivePerson's spelling ("Agent Manager"). See common/policy.h.
using policy::parseRole;
using policy::roleName;
const char* availabilityName(
    Availability a);  // "ONLINE", "OCCUPIED", "AWAY", "BACK_SOON", "OFFLINE"
Result<Availability> parseAvailability(std::string_view s);
const char* channelName(Channel c);  // "MESSAGING", "CHAT"
Result<Channel> parseChannel(std::string_view s);
const char* ttrTypeName(TtrType t);  // "URGENT", "NORMAL", "PRIORITIZED", "CUSTOM"
Result<TtrType> parseTtrType(std::string_view s);
const char* stateName(ConversationState s);  // "OPEN", "CLOSE"
Result<ConversationState> parseConversationState(std::string_view s);
const char* userTypeName(UserType t);  // "HUMAN", "BOT"
Result<UserType> parseUserType(std::string_view s);
const char* userStatusName(UserStatus s);  // "ENABLED", "DISABLED"
Result<UserStatus> parseUserStatus(std::string_view s);
const char* accountStatusName(AccountStatus s);  // "ACTIVE", "DISABLED"
Result<AccountStatus> parseAccountStatus(std::string_view s);
// "ONLINE", "OFFLINE", "VENDOR_INTERRUPTION", "SERVICE_INTERRUPTION"
const char* botStatusName(BotStatus s);
Result<BotStatus> parseBotStatus(std::string_view s);
const char* auditInvokerName(AuditInvoker i);  // "platform", "user"
Result<AuditInvoker> parseAuditInvoker(std::string_view s);
const char* auditOpName(AuditOp o);  // "read", "write"
Result<AuditOp> parseAuditOp(std::string_view s);
const char* auditOutcomeName(AuditOutcome o);  // "allowed", "refused"
Result<AuditOutcome> parseAuditOutcome(std::string_view s);
// "Draft", "Productive", "Modified", "Build Error", "Deploy Error"
const char* functionStateName(FunctionState s);
Result<FunctionState> parseFunctionState(std::string_view s);
// "Productive", "Build Error", "Deploy Error", "Undeployed"
const char* deploymentStateName(DeploymentState s);
Result<DeploymentState> parseDeploymentState(std::string_view s);
const char* scheduleStateName(ScheduleState s);  // "ACTIVE", "PAUSED"
Result<ScheduleState> parseScheduleState(std::string_view s);
// "CONSUMER", "ASSIGNED_AGENT", "MANAGER", "READER", "CONTROLLER"
const char* participantRoleName(ParticipantRole r);
Result<ParticipantRole> parseParticipantRole(std::string_view s);
const char* participantStateName(ParticipantState s);  // "ACTIVE", "SUGGESTED"
Result<ParticipantState> parseParticipantState(std::string_view s);
const char* audienceName(Audience a);  // "ALL", "AGENTS_AND_MANAGERS"
Result<Audience> parseAudience(std::string_view s);
const char* closeReasonName(CloseReason r);  // "CONSUMER", "AGENT", "BOT", "SYSTEM"
Result<CloseReason> parseCloseReason(std::string_view s);
// Conversation::close_reason as stored and sent (closeReason): its name, "" for none; and back
// ("" reads as none).
const char* closeReasonText(const std::optional<CloseReason>& r);
Result<std::optional<CloseReason>> parseCloseReasonText(std::string_view s);
// Every parse* above refuses any other text (case-sensitive) with Invalid naming the text and
// the names it accepts.

// The first id that createUser / createSkill assign in an account when the caller leaves `id`
// empty. Assigned ids grow by one and are never reused within an account, even after deletes;
// a caller-chosen numeric id at or above the counter moves the counter past it.
inline constexpr std::int64_t kFirstUserId = 1000;
inline constexpr std::int64_t kFirstSkillId = 1;

}  // namespace parley::store
