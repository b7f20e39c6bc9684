#pragma once

// Where rows meet value types: for each table the column list its SELECTs and INSERTs use and
// the reader that maps one row (in that column order) to the value type of store.h, plus the
// JSON text columns that hold vector fields. Private to store/sqlite. Readers run on the
// caller's thread against the row `q` is on; text columns that do not parse read as the safe
// default (an unknown status as disabled, an unknown role dropped).

#include <string>
#include <vector>

#include "store/sqlite/conn.h"
#include "store/store.h"

namespace parley::store::sqlite {

// ---- Column lists (the row readers below read them in this order) ---------------------------

inline constexpr const char* kAccountCols =
    "id, name, ttr_urgent_s, ttr_prioritized_s, ttr_normal_s, created_at, status";
inline constexpr const char* kUserCols =
    "account, id, pid, login_name, password_hash, roles_json, type, skills_json, "
    "max_open_conversations, created_at, status";
inline constexpr const char* kSessionCols =
    "bearer_hash, csrf, account, user_id, created_at, expires_at";
inline constexpr const char* kApiKeyCols =
    "key_hash, account, user_id, name, created_at, id, scopes_json, expires_at, created_by";
inline constexpr const char* kConversationCols =
    "id, account, consumer, channel, state, skill, ttr_type, ttr_value_s, ttr_due_at, start_ts, "
    "end_ts, updated_at, close_reason, next_sequence, context_json, turn";
// The same columns for SELECTs over `conversations c`. An append stores only its message (see
// SqliteConversationStore::appendTxn), so `updated_at` and `next_sequence` are read as the larger
// of the stored value and what the conversation's last message implies.
inline constexpr const char* kConversationSelect =
    "c.id, c.account, c.consumer, c.channel, c.state, c.skill, c.ttr_type, c.ttr_value_s, "
    "c.ttr_due_at, c.start_ts, c.end_ts, "
    "MAX(c.updated_at, IFNULL((SELECT m.server_ts FROM messages m WHERE m.conversation=c.id "
    "ORDER BY m.sequence DESC LIMIT 1), 0)), "
    "c.close_reason, "
    "MAX(c.next_sequence, IFNULL((SELECT m.sequence + 1 FROM messages m WHERE m.conversation=c.id "
    "ORDER BY m.sequence DESC LIMIT 1), 0)), "
    "c.context_json, c.turn";
inline constexpr const char* kMessageCols =
    "conversation, sequence, server_ts, originator_id, originator_pid, originator_role, "
    "audience, event_json, metadata_json, turn";
inline constexpr const char* kFunctionCols =
    "uuid, account, name, description, event_id, code, env_json, state, version, created_by, "
    "updated_by, created_at, updated_at";
inline constexpr const char* kDeploymentCols =
    "uuid, function_uuid, account, function_version, code, env_json, state, error_json, "
    "created_by, created_at, deployed_at";
inline constexpr const char* kBotCols =
    "account, id, name, user_id, config_json, status, created_at, updated_at";
inline constexpr const char* kTurnCols =
    "account, bot, conversation, turn_id, ts, outcome, input_json, response_json, actions_json, "
    "timings_json, error";
inline constexpr const char* kSkillCols = "account, id, name, created_at";
inline constexpr const char* kAgentStateCols = "account, user_id, availability, updated_at";
inline constexpr const char* kParticipantCols = "id, role, state, joined_at";
inline constexpr const char* kLogCols =
    "function_uuid, account, request_id, ts, level, message, extras_json";
inline constexpr const char* kSecretCols = "account, key_name, ciphertext, updated_at";
inline constexpr const char* kSecretAuditCols =
    "account, ts, function_uuid, request_id, invoker, user_id, login_name, key_name, op, outcome, "
    "detail";
inline constexpr const char* kContextCols = "account, ns, session_id, name, value_json, expires_at";
inline constexpr const char* kOAuthAppCols =
    "account, client_id, name, secret_hash, scopes_json, created_at, created_by";
inline constexpr const char* kAccessTokenCols =
    "token_hash, account, client_id, scopes_json, created_at, expires_at";
inline constexpr const char* kPendingTurnCols =
    "account, bot, conversation, turn_id, state_json, created_at";

// A column `list` as a std::string, to build SQL text with.
inline std::string cols(const char* list) { return std::string(list); }

// ---- JSON text columns ------------------------------------------------------------------------

std::string rolesJson(const std::vector<Role>& roles);
std::vector<Role> parseRolesJson(const std::string& text);
std::string skillsJson(const std::vector<SkillId>& skills);
std::vector<SkillId> parseSkillsJson(const std::string& text);
std::string envJson(const std::vector<EnvVar>& env);
std::vector<EnvVar> parseEnvJson(const std::string& text);
// A JSON array of strings; non-string entries of a stored array are skipped.
std::string stringsJson(const std::vector<std::string>& values);
std::vector<std::string> parseStringsJson(const std::string& text);

// ---- Row readers --------------------------------------------------------------------------------

// The first column as text (single-column SELECTs).
std::string textColumn(Query& q);
Account accountRow(Query& q);
User userRow(Query& q);
Session sessionRow(Query& q);
ApiKey apiKeyRow(Query& q);
OAuthApp oauthAppRow(Query& q);
AccessToken accessTokenRow(Query& q);
Skill skillRow(Query& q);
AgentState agentStateRow(Query& q);
Conversation conversationRow(Query& q);
Participant participantRow(Query& q);
Message messageRow(Query& q);
FunctionRecord functionRow(Query& q);
Deployment deploymentRow(Query& q);
InvocationLog logRow(Query& q);
Secret secretRow(Query& q);
SecretAuditEntry secretAuditRow(Query& q);
ContextProperty contextRow(Query& q);
BotRecord botRow(Query& q);
TurnRecord turnRow(Query& q);
PendingTurn pendingRow(Query& q);

}  // namespace parley::store::sqlite
