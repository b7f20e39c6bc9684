// Tests that only the SQLite store can pass: persistence, migrations, WAL, crash durability.
// The behavioural contract is in store/store_test.cpp (run against both implementations).

#include "store/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/fake_clock.h"
#include "common/testing/temp_dir.h"
#include "store/memory/memory_store.h"
#include "store/sqlite/schema.h"
#include "store/testing/raw_query.h"

namespace parley::store {
namespace {

using parley::testing::FakeClock;
using parley::testing::rawQuery;
using parley::testing::TempDir;

std::string eventFor(int writer, std::int64_t seq) {
  return R"({"type":"ContentEvent","message":"w)" + std::to_string(writer) + "-" +
         std::to_string(seq) + std::string(200, 'x') + R"("})";
}

Conversation conversationFor(int writer) {
  Conversation c;
  c.id = ConversationId("crash-" + std::to_string(writer));
  c.account = AccountId("1");
  c.consumer = ConsumerId("consumer-" + std::to_string(writer));
  return c;
}

// Writes a conversation row and a message the way a binary of an older schema (1 to 5) did,
// through a raw connection: today's store writes columns those schemas do not have.
void writeOldMessage(const std::string& path, const Conversation& c, const Message& m) {
  auto q = [](const std::string& v) {
    std::string out = "'";
    for (char ch : v) out += ch == '\'' ? std::string("''") : std::string(1, ch);
    return out + "'";
  };
  rawQuery(path,
           "INSERT OR REPLACE INTO conversations(id, account, consumer, channel, state, "
           "skill, ttr_type, ttr_value_s, ttr_due_at, start_ts, end_ts, updated_at, "
           "close_reason, next_sequence, context_json) VALUES(" +
               q(c.id.str()) + "," + q(c.account.str()) + "," + q(c.consumer.str()) +
               ",'MESSAGING','OPEN','-1','NORMAL',3600,0,0,0," + std::to_string(c.updated_at) +
               ",''," + std::to_string(c.next_sequence) + ",'{}')");
  rawQuery(path,
           "INSERT INTO messages(conversation, sequence, server_ts, originator_id, "
           "originator_pid, originator_role, audience, event_json, metadata_json) VALUES(" +
               q(m.conversation.str()) + "," + std::to_string(m.sequence) + "," +
               std::to_string(m.server_ts) + "," + q(m.originator_id) + "," + q(m.originator_pid) +
               "," + q(participantRoleName(m.originator_role)) + "," + q(audienceName(m.audience)) +
               "," + q(m.event_json) + "," + q(m.metadata_json) + ")");
}

TEST(SqliteStore, PersistsAcrossReopenInWalMode) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("p.db");
  {
    auto s = openSqliteStore(path, clock);
    ASSERT_TRUE(s) << s.error().message;
    ASSERT_TRUE((*s)->accounts().createAccount(Account{AccountId("1"), "Acme"}));
    User u;
    u.account = AccountId("1");
    u.login_name = "alice";
    ASSERT_TRUE((*s)->accounts().createUser(u));
    EXPECT_EQ(rawQuery(path, "PRAGMA journal_mode"), "wal");
  }
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s);
  EXPECT_EQ((*s)->accounts().getAccount(AccountId("1"))->name, "Acme");
  EXPECT_EQ((*s)->accounts().getUserByLogin(AccountId("1"), "alice")->id.str(),
            std::to_string(kFirstUserId));
  // The id counter survives the restart too.
  User u2;
  u2.account = AccountId("1");
  u2.login_name = "bob";
  EXPECT_EQ((*s)->accounts().createUser(u2)->id.str(), std::to_string(kFirstUserId + 1));
  EXPECT_EQ((*s)->schemaVersion(), sqliteLatestSchemaVersion());
  EXPECT_EQ(rawQuery(path, "PRAGMA user_version"), std::to_string(sqliteLatestSchemaVersion()));
}

// Participants, messages and the close reason are stored by their protocol names, as before
// they were enums; text that is no name (a damaged or foreign row) reads as the safe side: a
// READER, not ACTIVE, a private note from CONTROLLER, closed by SYSTEM.
TEST(SqliteStore, EnumsAreStoredByTheirNamesAndUnknownTextReadsAsTheSafeDefault) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("names.db");
  Conversation c = conversationFor(0);
  c.state = ConversationState::kClose;
  c.close_reason = CloseReason::kBot;
  c.participants = {{"consumer", ParticipantRole::kConsumer, ParticipantState::kActive, 1},
                    {"1000", ParticipantRole::kAssignedAgent, ParticipantState::kSuggested, 2}};
  c.next_sequence = 1;
  Message m;
  m.conversation = c.id;
  m.originator_role = ParticipantRole::kAssignedAgent;
  m.audience = Audience::kAgentsAndManagers;
  m.event_json = eventFor(0, 0);
  {
    auto s = openSqliteStore(path, clock);
    ASSERT_TRUE(s) << s.error().message;
    ASSERT_TRUE((*s)->conversations().appendMessage(c, m));
  }
  EXPECT_EQ(rawQuery(path,
                     "SELECT group_concat(role || ':' || state, ',') FROM "
                     "(SELECT role, state FROM participants ORDER BY position)"),
            "CONSUMER:ACTIVE,ASSIGNED_AGENT:SUGGESTED");
  EXPECT_EQ(rawQuery(path, "SELECT close_reason FROM conversations"), "BOT");
  EXPECT_EQ(rawQuery(path, "SELECT originator_role || ',' || audience FROM messages"),
            "ASSIGNED_AGENT,AGENTS_AND_MANAGERS");
  {
    auto s = openSqliteStore(path, clock);
    ASSERT_TRUE(s) << s.error().message;
    auto got = (*s)->conversations().getConversation(c.account, c.id);
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_EQ(got->close_reason, CloseReason::kBot);
    ASSERT_EQ(got->participants.size(), 2u);
    EXPECT_EQ(got->participants[1].role, ParticipantRole::kAssignedAgent);
    EXPECT_EQ(got->participants[1].state, ParticipantState::kSuggested);
  }
  rawQuery(path, "UPDATE participants SET role='WIZARD', state='AWAY' WHERE position=0");
  rawQuery(path, "UPDATE messages SET originator_role='ROBOT', audience='EVERYONE'");
  rawQuery(path, "UPDATE conversations SET close_reason='LATER'");
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s) << s.error().message;
  auto got = (*s)->conversations().getConversation(c.account, c.id);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->close_reason, CloseReason::kSystem);
  ASSERT_EQ(got->participants.size(), 2u);
  EXPECT_EQ(got->participants[0].role, ParticipantRole::kReader);
  EXPECT_EQ(got->participants[0].state, ParticipantState::kSuggested);
  auto msgs = (*s)->conversations().listMessages(c.id, 0, 10);
  ASSERT_TRUE(msgs);
  ASSERT_EQ(msgs->size(), 1u);
  EXPECT_EQ(msgs->at(0).originator_role, ParticipantRole::kController);
  EXPECT_EQ(msgs->at(0).audience, Audience::kAgentsAndManagers);
}

TEST(SqliteStore, RejectsInMemoryPaths) {
  FakeClock clock;
  auto s = openSqliteStore(":memory:", clock);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kInvalid);
}

TEST(SqliteStore, MigrationStepsAreNumberedInOrder) {
  int expected = 1;
  for (const auto& m : sqlite::migrations()) EXPECT_EQ(m.version, expected++);
  EXPECT_EQ(sqlite::latestSchemaVersion(), expected - 1);
  EXPECT_GE(sqliteLatestSchemaVersion(), 3);
}

TEST(SqliteStore, MigratesAnOldDatabaseKeepingItsRows) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("old.db");
  {
    SqliteOptions v1;
    v1.schema_version_for_test = 1;
    auto s = openSqliteStore(path, clock, v1);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ((*s)->schemaVersion(), 1);
    // Version 1's accounts table (this binary's createAccount writes later columns too).
    rawQuery(path, "INSERT INTO accounts VALUES('1','Old',300,600,3600,1)");
    Conversation c = conversationFor(0);
    c.next_sequence = 1;
    Message m;
    m.conversation = c.id;
    m.event_json = "{}";
    writeOldMessage(path, c, m);
    // Version 1 has no functions table: the write fails cleanly.
    FunctionRecord f;
    f.uuid = FunctionId("f");
    f.account = AccountId("1");
    f.name = "fn";
    auto r = (*s)->functions().createFunction(f);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kInternal);
  }
  EXPECT_EQ(rawQuery(path, "PRAGMA user_version"), "1");
  EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM sqlite_master WHERE name='functions'"), "0");
  {
    SqliteOptions v2;
    v2.schema_version_for_test = 2;
    auto s = openSqliteStore(path, clock, v2);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ((*s)->schemaVersion(), 2);
  }
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ((*s)->schemaVersion(), sqliteLatestSchemaVersion());
  EXPECT_EQ((*s)->accounts().getAccount(AccountId("1"))->name, "Old");
  EXPECT_EQ((*s)->conversations().listMessages(conversationFor(0).id, 0, 10)->size(), 1u);
  FunctionRecord f;
  f.uuid = FunctionId("f");
  f.account = AccountId("1");
  f.name = "fn";
  EXPECT_TRUE((*s)->functions().createFunction(f));
  BotRecord b;
  b.account = AccountId("1");
  b.id = BotId("b");
  EXPECT_TRUE((*s)->bots().createBot(b));
  // Version 4: the image allowlist.
  EXPECT_EQ((*s)->bots().getImageAllowlist(AccountId("1")).error().code, ErrorCode::kNotFound);
  EXPECT_TRUE((*s)->bots().putImageAllowlist(AccountId("1"), {"img.example"}));
  // Version 6: the secret audit.
  SecretAuditEntry e;
  e.account = AccountId("1");
  e.key = "k";
  EXPECT_TRUE((*s)->functions().appendSecretAudit(e, 10));
  EXPECT_EQ((*s)->functions().listSecretAudit(AccountId("1"), 10)->size(), 1u);
  // Version 9: OAuth apps and access tokens.
  OAuthApp app;
  app.account = AccountId("1");
  app.client_id = "client";
  app.secret_hash = "h";
  EXPECT_TRUE((*s)->oauth().createApp(app));
  EXPECT_TRUE(
      (*s)->oauth().addAccessToken(AccessToken{"t", AccountId("1"), "client", {}, 1, 2}, 5));
  EXPECT_TRUE((*s)->oauth().getAccessToken("t"));
  // Version 11: function schedules.
  Schedule sched;
  sched.account = AccountId("1");
  sched.id = "s";
  sched.function = FunctionId("f");
  sched.cron = "* * * * *";
  EXPECT_TRUE((*s)->schedules().createSchedule(sched));
  EXPECT_EQ((*s)->schedules().listSchedules(AccountId("1"))->size(), 1u);
  // Version 14: idempotency keys. The old message has none; a keyed one is stored once.
  Conversation old_conv = conversationFor(0);
  EXPECT_FALSE((*s)->conversations().findMessageByKey(old_conv.id, "", "")->has_value());
  Message keyed;
  keyed.conversation = old_conv.id;
  keyed.sequence = 1;
  keyed.server_ts = 5;
  keyed.originator_id = "consumer";
  keyed.event_json = "{}";
  keyed.idempotency_key = "k";
  old_conv.next_sequence = 2;
  old_conv.updated_at = 5;
  EXPECT_TRUE((*s)->conversations().appendMessage(old_conv, keyed));
  EXPECT_EQ((*(*s)->conversations().findMessageByKey(old_conv.id, "consumer", "k"))->sequence, 1);
  keyed.sequence = 2;
  old_conv.next_sequence = 3;
  EXPECT_EQ((*s)->conversations().appendMessage(old_conv, keyed).error().code,
            ErrorCode::kConflict);
}

// Version 12 holds one open conversation per consumer with a unique index. A database of an
// earlier version may hold several (the engine checked it per node only): the newest of each
// consumer stays open, the older ones are closed by SYSTEM; other consumers, other accounts and
// closed conversations are left as they were.
TEST(SqliteStore, MigrationToOneOpenConversationPerConsumerClosesTheOlderDuplicates) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("duplicates.db");
  auto conv = [](const std::string& id, const std::string& account, const std::string& consumer,
                 TimeMs start) {
    Conversation c;
    c.id = ConversationId(id);
    c.account = AccountId(account);
    c.consumer = ConsumerId(consumer);
    c.start_ts = c.updated_at = start;
    return c;
  };
  {
    SqliteOptions v11;
    v11.schema_version_for_test = 11;
    auto s = openSqliteStore(path, clock, v11);
    ASSERT_TRUE(s) << s.error().message;
    for (const Conversation& c :
         {conv("x-old", "1", "x", 10), conv("x-tie-a", "1", "x", 20), conv("x-tie-b", "1", "x", 20),
          conv("y", "1", "y", 5), conv("x-other-account", "2", "x", 1)})
      ASSERT_TRUE((*s)->conversations().saveConversation(c));
    Conversation closed = conv("x-closed", "1", "x", 30);
    closed.state = ConversationState::kClose;
    closed.close_reason = CloseReason::kConsumer;
    closed.end_ts = 31;
    ASSERT_TRUE((*s)->conversations().saveConversation(closed));
  }
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(rawQuery(path,
                     "SELECT group_concat(id || ':' || state || ':' || close_reason, ',') FROM "
                     "(SELECT id, state, close_reason FROM conversations ORDER BY id)"),
            "x-closed:CLOSE:CONSUMER,x-old:CLOSE:SYSTEM,x-other-account:OPEN:,"
            "x-tie-a:CLOSE:SYSTEM,x-tie-b:OPEN:,y:OPEN:");
  auto old = (*s)->conversations().getConversation(AccountId("1"), ConversationId("x-old"));
  ASSERT_TRUE(old);
  EXPECT_GT(old->end_ts, 0);
  EXPECT_GE(old->updated_at, old->end_ts);
  // The index holds from now on.
  auto again = (*s)->conversations().saveConversation(conv("x-new", "1", "x", 40));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_EQ(again.error().message,
            "consumer x already has an open conversation x-tie-b in account 1");
}

// Version 6: plaintext session bearers are dropped (every login is made again), existing API
// keys keep working with a public id, and users and accounts become enabled/active.
TEST(SqliteStore, MigratesIdentityDroppingPlaintextSessionsAndKeepingApiKeys) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("v5.db");
  const std::string key_hash(64, 'a');
  {
    SqliteOptions v5;
    v5.schema_version_for_test = 5;
    auto s = openSqliteStore(path, clock, v5);
    ASSERT_TRUE(s) << s.error().message;
  }
  rawQuery(path, "INSERT INTO accounts VALUES('1','Acme',300,600,3600,1)");
  rawQuery(
      path,
      "INSERT INTO users VALUES('1','1000','pid','ann','hash','[\"AGENT\"]','HUMAN','[]',10,1)");
  rawQuery(path, "INSERT INTO sessions VALUES('plainbearer','csrf','1','1000',1,9999999999999)");
  rawQuery(path, "INSERT INTO api_keys VALUES('" + key_hash + "','1','1000','ci',1)");
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ((*s)->schemaVersion(), sqliteLatestSchemaVersion());
  EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM sessions"), "0");
  EXPECT_EQ((*s)->accounts().getSession("plainbearer").error().code, ErrorCode::kNotFound);
  auto k = (*s)->accounts().getApiKey(key_hash);
  ASSERT_TRUE(k) << k.error().message;
  EXPECT_EQ(k->id, key_hash.substr(0, 16));
  EXPECT_TRUE(k->scopes.empty());
  EXPECT_EQ(k->expires_at, 0);
  EXPECT_EQ((*s)->accounts().getUser(AccountId("1"), UserId("1000"))->status, UserStatus::kEnabled);
  EXPECT_EQ((*s)->accounts().getAccount(AccountId("1"))->status, AccountStatus::kActive);
  ASSERT_TRUE((*s)->accounts().deleteApiKey(AccountId("1"), key_hash.substr(0, 16)));
}

TEST(SqliteStore, ImageAllowlistSurvivesAReopen) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("allow.db");
  {
    SqliteOptions v3;
    v3.schema_version_for_test = 3;
    auto s = openSqliteStore(path, clock, v3);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM sqlite_master WHERE name='image_allowlists'"),
              "0");
  }
  {
    auto s = openSqliteStore(path, clock);
    ASSERT_TRUE(s) << s.error().message;
    ASSERT_TRUE(
        (*s)->bots().putImageAllowlist(AccountId("1"), {"a.example", "https://b.example/x/"}));
  }
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(*(*s)->bots().getImageAllowlist(AccountId("1")),
            (std::vector<std::string>{"a.example", "https://b.example/x/"}));
}

// Version 5 moves messages from a table clustered by conversation to one in write order with a
// (conversation, sequence) index: every message survives, in order, with all its fields, and
// the uniqueness of (conversation, sequence) still holds.
TEST(SqliteStore, MigratesMessagesToWriteOrderKeepingEveryMessage) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("v4.db");
  constexpr int kConversations = 3;
  constexpr int kPerConversation = 40;
  {
    SqliteOptions v4;
    v4.schema_version_for_test = 4;
    auto s = openSqliteStore(path, clock, v4);
    ASSERT_TRUE(s) << s.error().message;
    rawQuery(path, "INSERT INTO accounts VALUES('1','Acme',300,600,3600,1)");
    // Interleaved across conversations, as a live server writes them.
    std::vector<Conversation> convs;
    for (int w = 0; w < kConversations; ++w) convs.push_back(conversationFor(w));
    for (int i = 0; i < kPerConversation; ++i)
      for (int w = 0; w < kConversations; ++w) {
        clock.advanceMs(1);
        Message m;
        m.conversation = convs[w].id;
        m.sequence = i;
        m.server_ts = clock.nowMs();
        m.originator_id = "o" + std::to_string(w);
        m.originator_pid = "p" + std::to_string(w);
        m.originator_role =
            w == 0 ? store::ParticipantRole::kConsumer : store::ParticipantRole::kAssignedAgent;
        m.audience = i % 2 ? Audience::kAll : Audience::kAgentsAndManagers;
        m.event_json = eventFor(w, i);
        m.metadata_json = R"([{"type":"ExternalId","id":")" + std::to_string(i) + R"("}])";
        convs[w].next_sequence = i + 1;
        convs[w].updated_at = m.server_ts;
        writeOldMessage(path, convs[w], m);
      }
  }
  EXPECT_NE(
      rawQuery(path, "SELECT sql FROM sqlite_master WHERE name='messages'").find("WITHOUT ROWID"),
      std::string::npos);
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ((*s)->schemaVersion(), sqliteLatestSchemaVersion());
  EXPECT_EQ(
      rawQuery(path, "SELECT sql FROM sqlite_master WHERE name='messages'").find("WITHOUT ROWID"),
      std::string::npos);
  EXPECT_EQ(rawQuery(path,
                     "SELECT count(*) FROM sqlite_master WHERE type='index' AND "
                     "name='messages_by_conversation'"),
            "1");
  EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM messages"),
            std::to_string(kConversations * kPerConversation));
  for (int w = 0; w < kConversations; ++w) {
    auto msgs = (*s)->conversations().listMessages(conversationFor(w).id, 5, 1000);
    ASSERT_TRUE(msgs) << msgs.error().message;
    ASSERT_EQ(msgs->size(), static_cast<std::size_t>(kPerConversation - 5));
    for (std::size_t k = 0; k < msgs->size(); ++k) {
      const Message& m = (*msgs)[k];
      const int i = static_cast<int>(k) + 5;
      EXPECT_EQ(m.sequence, i);
      EXPECT_EQ(m.event_json, eventFor(w, i));
      EXPECT_EQ(m.originator_id, "o" + std::to_string(w));
      EXPECT_EQ(m.originator_pid, "p" + std::to_string(w));
      EXPECT_EQ(m.originator_role, w == 0 ? store::ParticipantRole::kConsumer
                                          : store::ParticipantRole::kAssignedAgent);
      EXPECT_EQ(m.audience, i % 2 ? Audience::kAll : Audience::kAgentsAndManagers);
      EXPECT_EQ(m.metadata_json, R"([{"type":"ExternalId","id":")" + std::to_string(i) + R"("}])");
    }
  }
  // (conversation, sequence) is still unique, and appends go on after the last message.
  Conversation c = conversationFor(1);
  c.next_sequence = kPerConversation;
  Message dup;
  dup.conversation = c.id;
  dup.sequence = kPerConversation - 1;
  dup.event_json = "{}";
  auto r = (*s)->conversations().appendMessage(c, dup);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
  Message next = dup;
  next.sequence = kPerConversation;
  c.next_sequence = kPerConversation + 1;
  EXPECT_TRUE((*s)->conversations().appendMessage(c, next));
  EXPECT_EQ((*s)->conversations().listMessages(c.id, kPerConversation, 10)->size(), 1u);
}

TEST(SqliteStore, RefusesADatabaseNewerThanTheBinary) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("new.db");
  { ASSERT_TRUE(openSqliteStore(path, clock)); }
  rawQuery(path, "PRAGMA user_version = 999");
  auto s = openSqliteStore(path, clock);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(s.error().message.find("newer"), std::string::npos) << s.error().message;
}

TEST(SqliteStore, FullSyncAndOneReaderWork) {
  TempDir dir;
  FakeClock clock;
  SqliteOptions o;
  o.sync = SqliteOptions::Sync::kFull;
  o.readers = 1;
  o.max_batch = 2;
  auto s = openSqliteStore(dir.file("full.db"), clock, o);
  ASSERT_TRUE(s) << s.error().message;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      Conversation c = conversationFor(t);
      for (int i = 0; i < 20; ++i) {
        Message m;
        m.conversation = c.id;
        m.sequence = i;
        m.event_json = eventFor(t, i);
        c.next_sequence = i + 1;
        EXPECT_TRUE((*s)->conversations().appendMessage(c, m));
        EXPECT_TRUE((*s)->conversations().listMessages(c.id, 0, 100));
      }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t)
    EXPECT_EQ((*s)->conversations().listMessages(conversationFor(t).id, 0, 100)->size(), 20u);
}

// Reads never wait for the writer: while another process-level connection holds the write lock
// (so the writer thread is stuck in its busy timeout), reads still return.
TEST(SqliteStore, ReadsAreServedWhileTheWriterWaits) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("locked.db");
  SqliteOptions o;
  o.busy_timeout_ms = 20'000;
  auto s = openSqliteStore(path, clock, o);
  ASSERT_TRUE(s) << s.error().message;
  Conversation c = conversationFor(0);
  Message m;
  m.conversation = c.id;
  m.event_json = "{}";
  c.next_sequence = 1;
  ASSERT_TRUE((*s)->conversations().appendMessage(c, m));

  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::atomic<bool> appended{false};
  const auto before = sqliteWriteStats(**s)->transactions;
  std::thread writer([&] {
    Message m2 = m;
    m2.sequence = 1;
    c.next_sequence = 2;
    EXPECT_TRUE((*s)->conversations().appendMessage(c, m2));
    appended = true;
  });
  // Wait until the writer thread has taken the write and is blocked on the lock.
  while (sqliteWriteStats(**s)->transactions == before) std::this_thread::yield();
  for (int i = 0; i < 20; ++i) {
    auto msgs = (*s)->conversations().listMessages(c.id, 0, 10);
    ASSERT_TRUE(msgs) << msgs.error().message;
    EXPECT_EQ(msgs->size(), 1u);
    EXPECT_TRUE((*s)->conversations().getConversation(AccountId("1"), c.id));
  }
  EXPECT_FALSE(appended.load());  // the write is still waiting for the lock
  ASSERT_EQ(sqlite3_exec(blocker, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  writer.join();
  EXPECT_TRUE(appended.load());
  EXPECT_EQ((*s)->conversations().listMessages(c.id, 0, 10)->size(), 2u);
}

// A write that fails after some of its statements succeeded is rolled back to its own savepoint:
// its partial effects vanish while the writes batched with it commit.
TEST(SqliteStore, AFailedWriteRollsBackAloneInsideABatch) {
  TempDir dir;
  FakeClock clock;
  auto s = openSqliteStore(dir.file("batch.db"), clock);
  ASSERT_TRUE(s) << s.error().message;
  Store& store = **s;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 60;
  std::atomic<int> unexpected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string tag = std::to_string(t) + "-" + std::to_string(i);
        if (!store.accounts().createAccount(Account{AccountId("good-" + tag), "g"})) ++unexpected;
        auto bad = sqliteExecForTest(
            store, {"INSERT INTO accounts(id, name, ttr_urgent_s, ttr_prioritized_s, "
                    "ttr_normal_s, created_at) VALUES('bad-" +
                        tag + "', 'b', 1, 1, 1, 1)",
                    "INSERT INTO no_such_table VALUES(1)"});
        if (bad || bad.error().code != ErrorCode::kInternal) ++unexpected;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(unexpected.load(), 0);
  auto all = store.accounts().listAccounts();
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), static_cast<std::size_t>(kThreads * kPerThread));
  for (const auto& a : *all) EXPECT_TRUE(a.id.str().starts_with("good-")) << a.id.str();
  auto stats = sqliteWriteStats(store);
  ASSERT_TRUE(stats);
  EXPECT_GT(stats->largest_batch, 1);  // failures and successes did share transactions
}

// Asynchronous appends from many conversations share commits (nobody blocks on them, so the
// writer thread takes everything queued), interleave with blocking writes in queue order, and
// destroying the store commits what is still queued before it closes.
TEST(SqliteStore, AsyncAppendsShareCommitsAndAreDrainedOnClose) {
  TempDir dir;
  FakeClock clock;
  constexpr int kConversations = 200;
  constexpr int kPerConversation = 10;
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  {
    SqliteOptions o;
    o.lead_idle_async_writes = false;  // the writer thread leads every asynchronous write
    auto s = openSqliteStore(dir.file("async.db"), clock, o);
    ASSERT_TRUE(s) << s.error().message;
    Store& store = **s;
    std::vector<Conversation> convs;
    for (int i = 0; i < kConversations; ++i) convs.push_back(conversationFor(i));
    for (int seq = 0; seq < kPerConversation; ++seq) {
      for (auto& c : convs) {
        c.next_sequence = seq + 1;
        Message m;
        m.conversation = c.id;
        m.sequence = seq;
        m.event_json = eventFor(0, seq);
        store.conversations().appendMessageAsync(c, m, [&](Status st) { ++(st ? ok : failed); });
      }
      // A blocking write in the middle commits after everything queued before it.
      ASSERT_TRUE(
          store.accounts().createAccount(Account{AccountId("a" + std::to_string(seq)), "n"}));
      EXPECT_EQ(ok.load() + failed.load(), (seq + 1) * kConversations);
    }
    // The last batch may still be queued: the store's destructor must commit it.
    for (auto& c : convs) {
      c.next_sequence = kPerConversation + 1;
      Message m;
      m.conversation = c.id;
      m.sequence = kPerConversation;
      m.event_json = eventFor(0, kPerConversation);
      store.conversations().appendMessageAsync(c, m, [&](Status st) { ++(st ? ok : failed); });
    }
    auto stats = sqliteWriteStats(store);
    ASSERT_TRUE(stats);
    EXPECT_GT(stats->largest_batch, 10);
    EXPECT_LT(stats->transactions, stats->writes / 5);
    const std::string text = sqlitePrometheusText(store);
    EXPECT_NE(text.find("\nparley_store_largest_batch "), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE parley_store_writes_total counter"), std::string::npos);
  }
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(ok.load(), kConversations * (kPerConversation + 1));
  auto s = openSqliteStore(dir.file("async.db"), clock);
  ASSERT_TRUE(s);
  for (int i = 0; i < kConversations; i += 37) {
    auto msgs = (*s)->conversations().listMessages(conversationFor(i).id, 0, 100);
    ASSERT_TRUE(msgs);
    EXPECT_EQ(msgs->size(), static_cast<std::size_t>(kPerConversation + 1));
  }
  EXPECT_EQ(rawQuery(dir.file("async.db"), "SELECT count(*) FROM messages"),
            std::to_string(kConversations * (kPerConversation + 1)));
}

// Background checkpoints copy the WAL while writers keep going; past wal_max_pages the writer
// checkpoints itself so the WAL restarts and stays bounded. Nothing is lost, and an append that
// changes only the counters leaves the rest of the conversation (participants included) intact.
TEST(SqliteStore, CheckpointsKeepTheWalBoundedWithoutLosingWrites) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("ckpt.db");
  SqliteOptions o;
  o.checkpoint_pages = 20;
  o.wal_max_pages = 200;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1000;
  {
    auto s = openSqliteStore(path, clock, o);
    ASSERT_TRUE(s) << s.error().message;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        Conversation c = conversationFor(t);
        c.participants = {
            {"consumer", store::ParticipantRole::kConsumer, store::ParticipantState::kActive, 1},
            {"1000", store::ParticipantRole::kAssignedAgent, store::ParticipantState::kActive, 2}};
        for (int i = 0; i < kPerThread; ++i) {
          Message m;
          m.conversation = c.id;
          m.sequence = i;
          m.event_json = eventFor(t, i);
          m.server_ts = 1000 + i;
          c.next_sequence = i + 1;
          c.updated_at = 1000 + i;
          if (!(*s)->conversations().appendMessage(c, m)) ++failures;
        }
      });
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    auto stats = sqliteWriteStats(**s);
    ASSERT_TRUE(stats);
    EXPECT_GT(stats->background_checkpoints, 0);
    EXPECT_GT(stats->inline_checkpoints, 0);
    // The WAL restarted, so it never held all that was written to it. How far it overshoots
    // wal_max_pages depends on how long a background checkpoint's fsyncs hold it (timing, not a
    // fixed bound: on a loaded host a stretch held half of the frames written), so the bound
    // here is only that it restarted. The file is as long as its longest stretch.
    EXPECT_GT(stats->wal_restarts, 0);
    EXPECT_GE(stats->wal_frames_written, kThreads * kPerThread / 4);  // >= 1 frame a commit
    EXPECT_LT(stats->wal_high_water_frames, stats->wal_frames_written);
    EXPECT_LE(std::filesystem::file_size(path + "-wal"),
              32u + static_cast<std::uintmax_t>(stats->wal_high_water_frames) * (4096u + 24u));
    for (int t = 0; t < kThreads; ++t) {
      auto c = (*s)->conversations().getConversation(AccountId("1"), conversationFor(t).id);
      ASSERT_TRUE(c) << c.error().message;
      EXPECT_EQ(c->next_sequence, kPerThread);
      EXPECT_EQ(c->updated_at, 1000 + kPerThread - 1);
      ASSERT_EQ(c->participants.size(), 2u);
      EXPECT_EQ(c->participants[1].id, "1000");
      EXPECT_EQ(c->participants[1].joined_at, 2);
    }
  }
  auto s = openSqliteStore(path, clock, o);
  ASSERT_TRUE(s) << s.error().message;
  for (int t = 0; t < kThreads; ++t) {
    auto msgs = (*s)->conversations().listMessages(conversationFor(t).id, 0, 1000);
    ASSERT_TRUE(msgs);
    ASSERT_EQ(msgs->size(), static_cast<std::size_t>(kPerThread));
    EXPECT_EQ(msgs->back().event_json, eventFor(t, kPerThread - 1));
  }
}

// A child process appends messages from several threads and reports every acknowledged
// (writer, sequence) through a pipe; the parent SIGKILLs it mid-stream, reopens the database and
// checks that every acknowledged message is present and intact, with no gaps before it.
TEST(SqliteStore, AcknowledgedMessagesSurviveSigkill) {
  TempDir dir;
  const std::string path = dir.file("crash.db");
  constexpr int kWriters = 4;
  struct Ack {
    std::int32_t writer;
    std::int32_t pad;
    std::int64_t seq;
  };
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    SystemClock clock;
    auto s = openSqliteStore(path, clock);
    if (!s) ::_exit(3);
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w)
      threads.emplace_back([&, w] {
        Conversation c = conversationFor(w);
        for (std::int64_t seq = 0;; ++seq) {
          Message m;
          m.conversation = c.id;
          m.sequence = seq;
          m.server_ts = seq;
          m.event_json = eventFor(w, seq);
          c.next_sequence = seq + 1;
          c.updated_at = seq;
          if (!(*s)->conversations().appendMessage(c, m)) ::_exit(4);
          Ack a{w, 0, seq};
          if (::write(fds[1], &a, sizeof a) != sizeof a) ::_exit(5);
        }
      });
    for (auto& t : threads) t.join();
    ::_exit(0);
  }
  ::close(fds[1]);
  std::map<int, std::int64_t> max_acked;
  int acks = 0;
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  Ack a{};
  for (;;) {
    ssize_t n = ::read(fds[0], &a, sizeof a);
    if (n == 0) break;  // the child is gone and the pipe is drained
    ASSERT_EQ(n, static_cast<ssize_t>(sizeof a));
    ASSERT_GE(a.writer, 0);
    ASSERT_LT(a.writer, kWriters);
    max_acked[a.writer] = std::max(max_acked[a.writer], a.seq);
    ++acks;
    if (!killed && (acks >= 3000 || std::chrono::steady_clock::now() > deadline)) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
  }
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "child exited on its own with status " << status;
  ASSERT_GE(acks, 100);

  FakeClock clock;
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s) << s.error().message;
  for (int w = 0; w < kWriters; ++w) {
    if (!max_acked.contains(w)) continue;
    Conversation c = conversationFor(w);
    auto msgs = (*s)->conversations().listMessages(c.id, 0, 1'000'000);
    ASSERT_TRUE(msgs);
    ASSERT_GE(static_cast<std::int64_t>(msgs->size()), max_acked[w] + 1) << "writer " << w;
    for (std::int64_t seq = 0; seq <= max_acked[w]; ++seq) {
      const Message& m = (*msgs)[static_cast<std::size_t>(seq)];
      ASSERT_EQ(m.sequence, seq);
      ASSERT_EQ(m.event_json, eventFor(w, seq));
    }
    auto conv = (*s)->conversations().getConversation(AccountId("1"), c.id);
    ASSERT_TRUE(conv);
    EXPECT_GE(conv->next_sequence, max_acked[w] + 1);
    EXPECT_EQ(conv->next_sequence, static_cast<std::int64_t>(msgs->size()));
  }
  EXPECT_EQ(rawQuery(path, "PRAGMA integrity_check"), "ok");
}

// ---- Buffered turn records --------------------------------------------------------------------

TurnRecord turnFor(const std::string& bot, const std::string& id, TimeMs ts) {
  TurnRecord t;
  t.account = AccountId("1");
  t.bot = BotId(bot);
  t.conversation = ConversationId("c-" + id);
  t.turn_id = id;
  t.ts = ts;
  t.outcome = "OK";
  t.input_json = R"({"turn":")" + id + R"("})";
  return t;
}

// Counts completions and waits for them.
struct Completions {
  std::mutex mu;
  std::condition_variable cv;
  int ok = 0;
  int failed = 0;
  std::function<void(Status)> track() {
    return [this](Status st) {
      std::lock_guard l(mu);
      ++(st ? ok : failed);
      cv.notify_all();
    };
  }
  bool waitFor(int n, std::chrono::milliseconds d = std::chrono::seconds(10)) {
    std::unique_lock l(mu);
    return cv.wait_for(l, d, [&] { return ok + failed >= n; });
  }
};

std::vector<std::string> turnIds(Result<std::vector<TurnRecord>> r) {
  std::vector<std::string> out;
  if (r)
    for (const auto& t : *r) out.push_back(t.turn_id + "@" + std::to_string(t.ts));
  return out;
}

// Buffered records leave the turns table exactly as appending them one by one does (the memory
// store is the reference): replacement by turn id, pruning by (ts, arrival) with timestamps out
// of order, two bots — while writing only the records that survive.
TEST(SqliteStore, BufferedTurnRecordsEndAsIfAppendedOneByOne) {
  TempDir dir;
  FakeClock clock;
  SqliteOptions o;
  o.turn_flush_ms = 60'000;  // flushed only by the read below
  auto s = openSqliteStore(dir.file("turns.db"), clock, o);
  ASSERT_TRUE(s) << s.error().message;
  auto ref = makeMemoryStore(clock);
  std::mt19937 rng(7);
  Completions done;
  constexpr int kTurns = 600;
  constexpr int kKeep = 25;
  for (const char* bot : {"b1", "b2"})
    for (int i = 0; i < 10; ++i) {  // some already stored before the buffered ones
      auto t = turnFor(bot, "old" + std::to_string(i), 100 + i);
      ASSERT_TRUE((*s)->bots().appendTurn(t, kKeep));
      ASSERT_TRUE(ref->bots().appendTurn(t, kKeep));
    }
  auto before = sqliteWriteStats(**s);
  ASSERT_TRUE(before);
  for (int i = 0; i < kTurns; ++i) {
    const std::string bot = rng() % 3 == 0 ? "b2" : "b1";
    // Mostly rising timestamps with jitter and ties; some ids recur (a resumed turn).
    const std::string id =
        rng() % 10 == 0 ? "old" + std::to_string(rng() % 10) : "t" + std::to_string(rng() % 400);
    auto t = turnFor(bot, id, 1000 + i - static_cast<TimeMs>(rng() % 30));
    t.outcome = "OK" + std::to_string(i);
    ASSERT_TRUE(ref->bots().appendTurn(t, kKeep));
    (*s)->bots().appendTurnAsync(t, kKeep, done.track());
  }
  for (const char* bot : {"b1", "b2"}) {
    auto got = (*s)->bots().listTurns(AccountId("1"), BotId(bot), 1000);
    auto want = ref->bots().listTurns(AccountId("1"), BotId(bot), 1000);
    ASSERT_TRUE(got && want);
    EXPECT_EQ(turnIds(got), turnIds(want)) << bot;
    ASSERT_EQ(got->size(), want->size());
    for (std::size_t i = 0; i < got->size(); ++i)
      EXPECT_EQ((*got)[i].outcome, (*want)[i].outcome) << bot << " #" << i;
  }
  ASSERT_TRUE(done.waitFor(kTurns));
  EXPECT_EQ(done.ok, kTurns);
  auto after = sqliteWriteStats(**s);
  ASSERT_TRUE(after);
  // The 600 records were one write (plus the read's barrier), not 600.
  EXPECT_LE(after->writes - before->writes, 3);
}

// Without any read, the buffer is written once turn_flush_ms has passed; and closing the store
// writes what is still buffered.
TEST(SqliteStore, BufferedTurnRecordsAreWrittenAfterTheDelayAndOnClose) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("turns.db");
  {
    SqliteOptions o;
    o.turn_flush_ms = 50;
    auto s = openSqliteStore(path, clock, o);
    ASSERT_TRUE(s) << s.error().message;
    Completions done;
    const auto t0 = std::chrono::steady_clock::now();
    (*s)->bots().appendTurnAsync(turnFor("b1", "t1", 1), 10, done.track());
    ASSERT_TRUE(done.waitFor(1));
    EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(40));
    EXPECT_EQ(done.ok, 1);
    EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM turns"), "1");
  }
  Completions done;
  {
    SqliteOptions o;
    o.turn_flush_ms = 600'000;
    auto s = openSqliteStore(path, clock, o);
    ASSERT_TRUE(s) << s.error().message;
    for (int i = 2; i <= 4; ++i)
      (*s)->bots().appendTurnAsync(turnFor("b1", "t" + std::to_string(i), i), 10, done.track());
    EXPECT_EQ(done.ok + done.failed, 0);  // still buffered
  }
  EXPECT_EQ(done.ok, 3);  // completed while the store closed
  EXPECT_EQ(
      rawQuery(path, "SELECT group_concat(turn_id) FROM (SELECT turn_id FROM turns ORDER BY seq)"),
      "t1,t2,t3,t4");
}

// deleteBot and the synchronous appendTurn keep their order with buffered records.
TEST(SqliteStore, BufferedTurnRecordsKeepOrderWithSynchronousTurnWrites) {
  TempDir dir;
  FakeClock clock;
  SqliteOptions o;
  o.turn_flush_ms = 600'000;
  auto s = openSqliteStore(dir.file("turns.db"), clock, o);
  ASSERT_TRUE(s) << s.error().message;
  BotRecord b;
  b.account = AccountId("1");
  b.id = BotId("b1");
  b.name = "bot";
  b.user = UserId("2000");
  ASSERT_TRUE((*s)->bots().createBot(b));
  Completions done;
  (*s)->bots().appendTurnAsync(turnFor("b1", "t1", 1), 10, done.track());
  // The same turn id recorded synchronously later replaces the buffered one.
  auto later = turnFor("b1", "t1", 2);
  later.outcome = "LATER";
  ASSERT_TRUE((*s)->bots().appendTurn(later, 10));
  auto list = (*s)->bots().listTurns(AccountId("1"), BotId("b1"), 10);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().outcome, "LATER");
  // A record buffered before the bot is deleted is written first and deleted with it.
  (*s)->bots().appendTurnAsync(turnFor("b1", "t2", 3), 10, done.track());
  ASSERT_TRUE((*s)->bots().deleteBot(AccountId("1"), BotId("b1")));
  EXPECT_TRUE((*s)->bots().listTurns(AccountId("1"), BotId("b1"), 10)->empty());
  ASSERT_TRUE(done.waitFor(2));
  EXPECT_EQ(done.ok, 2);
}

// ---- Appends that write only the message ------------------------------------------------------

// An append whose conversation changed only its counters writes just the message; anything
// else that changed with it (participants, skill) is still stored, including after a failed
// append in the same transaction rolled back what the writer remembered.
TEST(SqliteStore, AppendsStoreConversationChangesAfterFastAppendsAndRollbacks) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("fast.db");
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s) << s.error().message;
  auto& conv = (*s)->conversations();
  Conversation c = conversationFor(0);
  c.participants = {
      {"consumer", store::ParticipantRole::kConsumer, store::ParticipantState::kActive, 1}};
  std::int64_t seq = 0;
  auto next = [&](Conversation& cv) {
    Message m;
    m.conversation = cv.id;
    m.sequence = seq++;
    m.server_ts = 5000 + m.sequence;
    m.event_json = eventFor(0, m.sequence);
    cv.next_sequence = m.sequence + 1;
    cv.updated_at = m.server_ts;
    return m;
  };
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(conv.appendMessage(c, next(c)));
  // Only the message was written by the fast appends: the row keeps the counters of the
  // first (slow) append, and reads derive them from the messages.
  EXPECT_EQ(rawQuery(path, "SELECT next_sequence FROM conversations"), "1");
  EXPECT_EQ(conv.getConversation(c.account, c.id)->next_sequence, 5);
  EXPECT_EQ(conv.getConversation(c.account, c.id)->updated_at, 5004);
  EXPECT_EQ(conv.listOpenConversations()->at(0).next_sequence, 5);
  EXPECT_EQ(conv.listConversations(c.account, {})->at(0).updated_at, 5004);

  // A participant joins with a message.
  c.participants.push_back(
      {"1000", store::ParticipantRole::kAssignedAgent, store::ParticipantState::kActive, 7});
  ASSERT_TRUE(conv.appendMessage(c, next(c)));
  ASSERT_EQ(conv.getConversation(c.account, c.id)->participants.size(), 2u);

  // Asynchronous appends in one batch: a duplicate fails (rolled back) between two that
  // change the skill; the last change is stored.
  Completions done;
  Conversation dup = c;
  Message dm;
  dm.conversation = c.id;
  dm.sequence = 2;
  dm.server_ts = 1;
  dup.next_sequence = 3;
  dup.updated_at = 1;
  c.skill = SkillId("5");
  conv.appendMessageAsync(c, next(c), done.track());
  conv.appendMessageAsync(dup, dm, done.track());
  c.skill = SkillId("6");
  conv.appendMessageAsync(c, next(c), done.track());
  ASSERT_TRUE(done.waitFor(3));
  EXPECT_EQ(done.ok, 2);
  EXPECT_EQ(done.failed, 1);
  auto got = conv.getConversation(c.account, c.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->skill, SkillId("6"));
  EXPECT_EQ(got->next_sequence, 8);
  EXPECT_EQ(conv.listMessages(c.id, 0, 100)->size(), 8u);

  // Raw SQL behind the writer's back (tests only) is noticed by the next append.
  ASSERT_TRUE(sqliteExecForTest(**s, {"UPDATE conversations SET skill='9'"}));
  ASSERT_TRUE(conv.appendMessage(c, next(c)));
  EXPECT_EQ(conv.getConversation(c.account, c.id)->skill, SkillId("6"));
}

// An asynchronous write that finds the writer idle is committed on the caller's thread before
// the call returns (no hand-off to the writer thread and back); writes from threads that
// arrive while one is being written still share commits.
TEST(SqliteStore, AnAsyncWriteOnAnIdleWriterCommitsOnTheCallersThread) {
  TempDir dir;
  FakeClock clock;
  auto s = openSqliteStore(dir.file("inline.db"), clock);
  ASSERT_TRUE(s) << s.error().message;
  auto& conv = (*s)->conversations();
  Conversation c = conversationFor(0);
  Message m;
  m.conversation = c.id;
  m.sequence = 0;
  m.event_json = eventFor(0, 0);
  c.next_sequence = 1;
  std::thread::id ran_on;
  bool done = false;
  conv.appendMessageAsync(c, m, [&](Status st) {
    EXPECT_TRUE(st);
    ran_on = std::this_thread::get_id();
    done = true;
  });
  EXPECT_TRUE(done);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_EQ(conv.listMessages(c.id, 0, 10)->size(), 1u);

  constexpr int kThreads = 4;
  constexpr int kPer = 300;
  Completions all;
  std::vector<std::thread> producers;
  for (int t = 1; t <= kThreads; ++t)
    producers.emplace_back([&, t] {
      Conversation own = conversationFor(t);
      for (int i = 0; i < kPer; ++i) {
        Message x;
        x.conversation = own.id;
        x.sequence = i;
        x.event_json = eventFor(t, i);
        own.next_sequence = i + 1;
        conv.appendMessageAsync(own, x, all.track());
      }
    });
  for (auto& p : producers) p.join();
  ASSERT_TRUE(all.waitFor(kThreads * kPer));
  EXPECT_EQ(all.ok, kThreads * kPer);
  auto stats = sqliteWriteStats(**s);
  ASSERT_TRUE(stats);
  EXPECT_GT(stats->largest_batch, 1);
  for (int t = 1; t <= kThreads; ++t)
    EXPECT_EQ(conv.listMessages(conversationFor(t).id, 0, 1000)->size(),
              static_cast<std::size_t>(kPer));
}

}  // namespace
}  // namespace parley::store
