// The store contract suite: every test runs against every implementation (memory/, sqlite/ and
// postgres/), so the fake that other subsystems test against behaves like the real stores. The
// PostgreSQL cases (StoreContract/Postgres.*) run against a server the test binary starts itself
// (store/testing/postgres_server.h), on a database emptied before each test.

#include "store/store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/fake_clock.h"
#include "common/testing/temp_dir.h"
#include "store/memory/memory_store.h"
#include "store/postgres/postgres_store.h"
#include "store/sqlite/sqlite_store.h"
#include "store/testing/postgres_server.h"

namespace parley::store {
namespace {

using parley::testing::FakeClock;
using parley::testing::TempDir;

struct MemoryImpl {
  static std::unique_ptr<Store> make(const Clock& clock, const TempDir&) {
    return makeMemoryStore(clock);
  }
  static int expectedVersion() { return 0; }
};

struct SqliteImpl {
  static std::unique_ptr<Store> make(const Clock& clock, const TempDir& dir) {
    auto s = openSqliteStore(dir.file("parley.db"), clock);
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(*s) : nullptr;
  }
  static int expectedVersion() { return sqliteLatestSchemaVersion(); }
};

struct PostgresImpl {
  static std::unique_ptr<Store> make(const Clock& clock, const TempDir&) {
    auto& server = parley::testing::PostgresServer::shared();
    const std::string uri = server.emptiedDatabase();
    if (uri.empty()) {
      ADD_FAILURE() << "test PostgreSQL server: " << server.error();
      return nullptr;
    }
    auto s = openPostgresStore(uri, clock);
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(*s) : nullptr;
  }
  static int expectedVersion() { return postgresLatestSchemaVersion(); }
};

template <class Impl>
class StoreContract : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = Impl::make(clock_, dir_);
    ASSERT_NE(store_, nullptr);
  }
  AccountStore& acc() { return store_->accounts(); }
  ConversationStore& conv() { return store_->conversations(); }
  FunctionStore& fn() { return store_->functions(); }
  BotStore& bots() { return store_->bots(); }
  OAuthStore& oauth() { return store_->oauth(); }
  ScheduleStore& sched() { return store_->schedules(); }

  FakeClock clock_;
  TempDir dir_;
  std::unique_ptr<Store> store_;
};

using Impls = ::testing::Types<MemoryImpl, SqliteImpl, PostgresImpl>;
class ImplNames {
 public:
  template <class T>
  static std::string GetName(int) {
    if (std::is_same_v<T, MemoryImpl>) return "Memory";
    return std::is_same_v<T, SqliteImpl> ? "Sqlite" : "Postgres";
  }
};
TYPED_TEST_SUITE(StoreContract, Impls, ImplNames);

const AccountId kA("1001");
const AccountId kB("2002");

template <class T>
ErrorCode codeOf(const Result<T>& r) {
  return r ? ErrorCode::kInternal : r.error().code;
}
#define EXPECT_CODE(expr, code_)                             \
  do {                                                       \
    auto r_ = (expr);                                        \
    ASSERT_FALSE(r_.has_value()) << #expr;                   \
    EXPECT_EQ(r_.error().code, code_) << r_.error().message; \
  } while (0)
#define ASSERT_OK(expr)                                                 \
  do {                                                                  \
    auto r_ = (expr);                                                   \
    ASSERT_TRUE(r_.has_value()) << #expr << ": " << r_.error().message; \
  } while (0)

// prefix + n. (Spelled out: GCC 12 at -O3 warns falsely on `"literal" + std::to_string(n)`.)
std::string numbered(const char* prefix, int n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

User makeUser(const AccountId& a, const std::string& login) {
  User u;
  u.account = a;
  u.login_name = login;
  u.pid = "pid-" + login;
  u.password_hash = "$argon2id$fake";
  u.roles = {Role::kAgent};
  return u;
}

Conversation makeConversation(const AccountId& a, const std::string& id, TimeMs start = 1) {
  Conversation c;
  c.id = ConversationId(id);
  c.account = a;
  c.consumer = ConsumerId("consumer-" + id);
  c.start_ts = start;
  return c;
}

Message makeMessage(const ConversationId& c, std::int64_t seq) {
  Message m;
  m.conversation = c;
  m.sequence = seq;
  m.server_ts = 1000 + seq;
  m.originator_id = "consumer";
  m.originator_pid = "consumer-pid";
  m.originator_role = store::ParticipantRole::kConsumer;
  m.event_json = R"({"type":"ContentEvent","message":"m)" + std::to_string(seq) + R"("})";
  return m;
}

// `c` as appending `m` leaves it (the counters appendMessage requires).
Conversation advancedTo(Conversation c, const Message& m) {
  c.next_sequence = m.sequence + 1;
  c.updated_at = m.server_ts;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Store

TYPED_TEST(StoreContract, SchemaVersion) {
  EXPECT_EQ(this->store_->schemaVersion(), TypeParam::expectedVersion());
}

// ---------------------------------------------------------------------------------------------
// Accounts

TYPED_TEST(StoreContract, AccountsCreateGetListAndConflict) {
  Account a{kA, "Acme", 30, 60, 90, 0};
  ASSERT_OK(this->acc().createAccount(a));
  ASSERT_OK(this->acc().createAccount(Account{kB, "Beta"}));
  auto got = this->acc().getAccount(kA);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->name, "Acme");
  EXPECT_EQ(got->ttr_urgent_s, 30);
  EXPECT_EQ(got->ttr_prioritized_s, 60);
  EXPECT_EQ(got->ttr_normal_s, 90);
  EXPECT_EQ(got->created_at, this->clock_.nowMs());  // 0 is filled from the clock
  EXPECT_CODE(this->acc().createAccount(Account{kA, "again"}), ErrorCode::kConflict);
  EXPECT_CODE(this->acc().getAccount(AccountId("404")), ErrorCode::kNotFound);
  EXPECT_CODE(this->acc().createAccount(Account{}), ErrorCode::kInvalid);
  auto all = this->acc().listAccounts();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, kA);
  EXPECT_EQ((*all)[1].id, kB);
  EXPECT_EQ((*all)[0].name, "Acme");  // the failed duplicate changed nothing
}

// ---------------------------------------------------------------------------------------------
// Users

TYPED_TEST(StoreContract, UsersGetIdsFromTheAccountCounter) {
  auto u1 = this->acc().createUser(makeUser(kA, "alice"));
  auto u2 = this->acc().createUser(makeUser(kA, "bob"));
  auto b1 = this->acc().createUser(makeUser(kB, "alice"));  // same login, other account
  ASSERT_TRUE(u1 && u2 && b1);
  EXPECT_EQ(u1->id.str(), std::to_string(kFirstUserId));
  EXPECT_EQ(u2->id.str(), std::to_string(kFirstUserId + 1));
  EXPECT_EQ(b1->id.str(), std::to_string(kFirstUserId));  // counters are per account

  // A caller-chosen numeric id moves the counter past it.
  User chosen = makeUser(kA, "carol");
  chosen.id = UserId("5000");
  auto c = this->acc().createUser(chosen);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->id.str(), "5000");
  auto d = this->acc().createUser(makeUser(kA, "dave"));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->id.str(), "5001");

  // Ids are never reused after a delete.
  ASSERT_OK(this->acc().deleteUser(kA, d->id));
  auto e = this->acc().createUser(makeUser(kA, "erin"));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->id.str(), "5002");

  // A caller-chosen id that exists is a Conflict, as is a taken login name.
  User dup = makeUser(kA, "frank");
  dup.id = UserId("5000");
  EXPECT_CODE(this->acc().createUser(dup), ErrorCode::kConflict);
  EXPECT_CODE(this->acc().createUser(makeUser(kA, "alice")), ErrorCode::kConflict);
  EXPECT_CODE(this->acc().createUser(makeUser(kA, "")), ErrorCode::kInvalid);
  // The failed creates consumed no id.
  auto f = this->acc().createUser(makeUser(kA, "frank"));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->id.str(), "5003");
}

TYPED_TEST(StoreContract, UsersRoundTripUpdateDelete) {
  User u = makeUser(kA, "alice");
  u.roles = {Role::kAdmin, Role::kFaasDeveloper};
  u.type = UserType::kBot;
  u.skills = {SkillId("3"), SkillId("17")};
  u.max_open_conversations = 4;
  u.created_at = 42;
  auto created = this->acc().createUser(u);
  ASSERT_TRUE(created);
  auto got = this->acc().getUser(kA, created->id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->login_name, "alice");
  EXPECT_EQ(got->pid, "pid-alice");
  EXPECT_EQ(got->password_hash, "$argon2id$fake");
  EXPECT_EQ(got->roles, (std::vector<Role>{Role::kAdmin, Role::kFaasDeveloper}));
  EXPECT_EQ(got->type, UserType::kBot);
  EXPECT_EQ(got->skills, (std::vector<SkillId>{SkillId("3"), SkillId("17")}));
  EXPECT_EQ(got->max_open_conversations, 4);
  EXPECT_EQ(got->created_at, 42);
  auto by_login = this->acc().getUserByLogin(kA, "alice");
  ASSERT_TRUE(by_login);
  EXPECT_EQ(by_login->id, created->id);
  EXPECT_CODE(this->acc().getUserByLogin(kA, "nobody"), ErrorCode::kNotFound);
  EXPECT_CODE(this->acc().getUserByLogin(kB, "alice"), ErrorCode::kNotFound);

  auto bob = this->acc().createUser(makeUser(kA, "bob"));
  ASSERT_TRUE(bob);
  User renamed = *got;
  renamed.login_name = "alice2";
  renamed.roles = {Role::kAgentManager};
  ASSERT_OK(this->acc().updateUser(renamed));
  EXPECT_EQ(this->acc().getUser(kA, created->id)->login_name, "alice2");
  EXPECT_EQ(this->acc().getUser(kA, created->id)->roles, std::vector<Role>{Role::kAgentManager});
  EXPECT_CODE(this->acc().getUserByLogin(kA, "alice"), ErrorCode::kNotFound);
  renamed.login_name = "bob";
  EXPECT_CODE(this->acc().updateUser(renamed), ErrorCode::kConflict);
  User ghost = makeUser(kA, "ghost");
  ghost.id = UserId("999999");
  EXPECT_CODE(this->acc().updateUser(ghost), ErrorCode::kNotFound);
  User other_account = *bob;
  other_account.account = kB;
  EXPECT_CODE(this->acc().updateUser(other_account), ErrorCode::kNotFound);

  auto list = this->acc().listUsers(kA);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].login_name, "alice2");
  EXPECT_EQ((*list)[1].login_name, "bob");

  EXPECT_CODE(this->acc().deleteUser(kB, created->id), ErrorCode::kNotFound);
  ASSERT_OK(this->acc().deleteUser(kA, created->id));
  EXPECT_CODE(this->acc().getUser(kA, created->id), ErrorCode::kNotFound);
  EXPECT_CODE(this->acc().deleteUser(kA, created->id), ErrorCode::kNotFound);
  EXPECT_EQ(this->acc().listUsers(kA)->size(), 1u);
}

TYPED_TEST(StoreContract, UsersListInNumericIdOrder) {
  for (const char* id : {"10", "9", "100", "1"}) {
    User u = makeUser(kA, std::string("u") + id);
    u.id = UserId(id);
    ASSERT_OK(this->acc().createUser(u));
  }
  auto list = this->acc().listUsers(kA);
  ASSERT_TRUE(list);
  std::vector<std::string> ids;
  for (const auto& u : *list) ids.push_back(u.id.str());
  EXPECT_EQ(ids, (std::vector<std::string>{"1", "9", "10", "100"}));
}

// ---------------------------------------------------------------------------------------------
// Sessions, API keys

TYPED_TEST(StoreContract, SessionsPutGetDeleteExpire) {
  Session s{"bearer1", "csrf1", kA, UserId("1000"), 10, 100};
  ASSERT_OK(this->acc().putSession(s));
  ASSERT_OK(this->acc().putSession(Session{"bearer2", "csrf2", kB, UserId("7"), 10, 200}));
  auto got = this->acc().getSession("bearer1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->csrf, "csrf1");
  EXPECT_EQ(got->account, kA);
  EXPECT_EQ(got->user, UserId("1000"));
  EXPECT_EQ(got->created_at, 10);
  EXPECT_EQ(got->expires_at, 100);
  // put replaces
  s.expires_at = 150;
  ASSERT_OK(this->acc().putSession(s));
  EXPECT_EQ(this->acc().getSession("bearer1")->expires_at, 150);
  EXPECT_CODE(this->acc().getSession("nope"), ErrorCode::kNotFound);
  EXPECT_CODE(this->acc().putSession(Session{}), ErrorCode::kInvalid);

  ASSERT_OK(this->acc().deleteExpiredSessions(150));  // expires_at <= now is expired
  EXPECT_CODE(this->acc().getSession("bearer1"), ErrorCode::kNotFound);
  EXPECT_TRUE(this->acc().getSession("bearer2"));
  ASSERT_OK(this->acc().deleteSession("bearer2"));
  EXPECT_CODE(this->acc().getSession("bearer2"), ErrorCode::kNotFound);
  ASSERT_OK(this->acc().deleteSession("bearer2"));  // idempotent
}

TYPED_TEST(StoreContract, ApiKeys) {
  ApiKey k{"hash1", kA, UserId("1000"), "ci", 0, "k1", {Role::kAgent}, 5000, UserId("1")};
  ASSERT_OK(this->acc().putApiKey(k));
  auto got = this->acc().getApiKey("hash1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->account, kA);
  EXPECT_EQ(got->user, UserId("1000"));
  EXPECT_EQ(got->name, "ci");
  EXPECT_EQ(got->created_at, this->clock_.nowMs());
  EXPECT_EQ(got->id, "k1");
  EXPECT_EQ(got->scopes, std::vector<Role>{Role::kAgent});
  EXPECT_EQ(got->expires_at, 5000);
  EXPECT_EQ(got->created_by, UserId("1"));
  EXPECT_CODE(this->acc().getApiKey("hash2"), ErrorCode::kNotFound);
  EXPECT_CODE(this->acc().putApiKey(ApiKey{}), ErrorCode::kInvalid);
  ApiKey no_id{"hash3", kA, UserId("1000"), "ci", 0};
  EXPECT_CODE(this->acc().putApiKey(no_id), ErrorCode::kInvalid);
  // The id is unique within the account.
  ApiKey same_id{"hash4", kA, UserId("1001"), "other", 0, "k1"};
  EXPECT_CODE(this->acc().putApiKey(same_id), ErrorCode::kConflict);
  ApiKey other_account{"hash5", kB, UserId("1000"), "b", 0, "k1"};
  ASSERT_OK(this->acc().putApiKey(other_account));
}

TYPED_TEST(StoreContract, ApiKeysListAndDeleteByAccount) {
  this->clock_.advanceMs(1);
  ASSERT_OK(this->acc().putApiKey(ApiKey{"h1", kA, UserId("1000"), "one", 0, "a1"}));
  this->clock_.advanceMs(1);
  ASSERT_OK(this->acc().putApiKey(ApiKey{"h2", kA, UserId("1001"), "two", 0, "a2"}));
  ASSERT_OK(this->acc().putApiKey(ApiKey{"h3", kB, UserId("1000"), "three", 0, "b1"}));
  auto list = this->acc().listApiKeys(kA);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "a1");
  EXPECT_EQ((*list)[1].id, "a2");
  // Another account's id is not found through this account.
  EXPECT_CODE(this->acc().deleteApiKey(kA, "b1"), ErrorCode::kNotFound);
  ASSERT_OK(this->acc().deleteApiKey(kA, "a1"));
  EXPECT_CODE(this->acc().getApiKey("h1"), ErrorCode::kNotFound);
  EXPECT_CODE(this->acc().deleteApiKey(kA, "a1"), ErrorCode::kNotFound);
  EXPECT_TRUE(this->acc().getApiKey("h3"));
}

OAuthApp makeApp(const AccountId& acc, const std::string& client_id, const std::string& name) {
  OAuthApp a;
  a.account = acc;
  a.client_id = client_id;
  a.name = name;
  a.secret_hash = "secret-hash-" + client_id;
  a.scopes = {"faas.lambda.invoke"};
  a.created_by = UserId("1000");
  return a;
}

AccessToken makeToken(const AccountId& acc, const std::string& client_id, const std::string& hash,
                      TimeMs created_at, TimeMs expires_at) {
  return AccessToken{hash, acc, client_id, {"faas.lambda.invoke"}, created_at, expires_at};
}

TYPED_TEST(StoreContract, OAuthAppsByAccount) {
  this->clock_.advanceMs(5);
  ASSERT_OK(this->oauth().createApp(makeApp(kA, "c1", "crm")));
  this->clock_.advanceMs(1);
  ASSERT_OK(this->oauth().createApp(makeApp(kA, "c2", "hooks")));
  // The client id is unique within the account, not across accounts.
  EXPECT_CODE(this->oauth().createApp(makeApp(kA, "c1", "again")), ErrorCode::kConflict);
  ASSERT_OK(this->oauth().createApp(makeApp(kB, "c1", "b's")));
  EXPECT_CODE(this->oauth().createApp(OAuthApp{}), ErrorCode::kInvalid);
  OAuthApp no_secret = makeApp(kA, "c3", "x");
  no_secret.secret_hash.clear();
  EXPECT_CODE(this->oauth().createApp(no_secret), ErrorCode::kInvalid);
  EXPECT_CODE(this->oauth().createApp(makeApp(kA, "", "x")), ErrorCode::kInvalid);

  auto got = this->oauth().getApp(kA, "c1");
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->name, "crm");
  EXPECT_EQ(got->secret_hash, "secret-hash-c1");
  EXPECT_EQ(got->scopes, std::vector<std::string>{"faas.lambda.invoke"});
  EXPECT_EQ(got->created_at, this->clock_.nowMs() - 1);
  EXPECT_EQ(got->created_by, UserId("1000"));
  EXPECT_EQ(this->oauth().getApp(kB, "c1")->name, "b's");
  EXPECT_CODE(this->oauth().getApp(kB, "c2"), ErrorCode::kNotFound);

  auto list = this->oauth().listApps(kA);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].client_id, "c1");
  EXPECT_EQ((*list)[1].client_id, "c2");

  EXPECT_CODE(this->oauth().deleteApp(kB, "c2"), ErrorCode::kNotFound);
  ASSERT_OK(this->oauth().deleteApp(kA, "c1"));
  EXPECT_CODE(this->oauth().getApp(kA, "c1"), ErrorCode::kNotFound);
  EXPECT_CODE(this->oauth().deleteApp(kA, "c1"), ErrorCode::kNotFound);
  EXPECT_TRUE(this->oauth().getApp(kB, "c1"));
  EXPECT_EQ(this->oauth().listApps(kA)->size(), 1u);
}

TYPED_TEST(StoreContract, OAuthTokensEndWithTheirApp) {
  ASSERT_OK(this->oauth().createApp(makeApp(kA, "c1", "crm")));
  ASSERT_OK(this->oauth().createApp(makeApp(kA, "c2", "hooks")));
  ASSERT_OK(this->oauth().createApp(makeApp(kB, "c1", "b's")));
  // No token without its app (in that account).
  EXPECT_CODE(this->oauth().addAccessToken(makeToken(kA, "gone", "t0", 10, 100), 10),
              ErrorCode::kNotFound);
  EXPECT_CODE(this->oauth().addAccessToken(makeToken(kB, "c2", "t0", 10, 100), 10),
              ErrorCode::kNotFound);
  EXPECT_CODE(this->oauth().addAccessToken(makeToken(kA, "c1", "", 10, 100), 10),
              ErrorCode::kInvalid);
  EXPECT_CODE(this->oauth().addAccessToken(makeToken(kA, "", "t0", 10, 100), 10),
              ErrorCode::kInvalid);
  EXPECT_CODE(this->oauth().getAccessToken("t0"), ErrorCode::kNotFound);

  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c1", "t1", 10, 100), 10));
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c2", "t2", 10, 100), 10));
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kB, "c1", "t3", 10, 100), 10));
  EXPECT_CODE(this->oauth().addAccessToken(makeToken(kA, "c1", "t1", 11, 100), 10),
              ErrorCode::kConflict);
  auto t = this->oauth().getAccessToken("t1");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->account, kA);
  EXPECT_EQ(t->client_id, "c1");
  EXPECT_EQ(t->scopes, std::vector<std::string>{"faas.lambda.invoke"});
  EXPECT_EQ(t->created_at, 10);
  EXPECT_EQ(t->expires_at, 100);

  // Deleting an app revokes its tokens and only its tokens.
  ASSERT_OK(this->oauth().deleteApp(kA, "c1"));
  EXPECT_CODE(this->oauth().getAccessToken("t1"), ErrorCode::kNotFound);
  EXPECT_TRUE(this->oauth().getAccessToken("t2"));
  EXPECT_TRUE(this->oauth().getAccessToken("t3"));
  // An app made again with the same client id does not bring its old tokens back.
  ASSERT_OK(this->oauth().createApp(makeApp(kA, "c1", "crm again")));
  EXPECT_CODE(this->oauth().getAccessToken("t1"), ErrorCode::kNotFound);

  // Expired tokens are returned (callers compare) until deleteExpiredAccessTokens.
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c2", "t4", 20, 50), 10));
  EXPECT_TRUE(this->oauth().getAccessToken("t4"));
  ASSERT_OK(this->oauth().deleteExpiredAccessTokens(50));
  EXPECT_CODE(this->oauth().getAccessToken("t4"), ErrorCode::kNotFound);
  EXPECT_TRUE(this->oauth().getAccessToken("t2"));
}

TYPED_TEST(StoreContract, OAuthTokensKeepTheAppsNewestAndDropItsExpired) {
  ASSERT_OK(this->oauth().createApp(makeApp(kA, "c1", "crm")));
  ASSERT_OK(this->oauth().createApp(makeApp(kA, "c2", "hooks")));
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c2", "other", 1, 15), 3));
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c1", "a", 10, 1000), 3));
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c1", "b", 10, 1000), 3));
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c1", "c", 10, 1000), 3));
  for (const char* h : {"a", "b", "c"}) EXPECT_TRUE(this->oauth().getAccessToken(h)) << h;
  // Past keep=3 the oldest goes; of equal created_at the earlier insertion is the older.
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c1", "d", 11, 1000), 3));
  EXPECT_CODE(this->oauth().getAccessToken("a"), ErrorCode::kNotFound);
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c1", "short", 12, 15), 3));
  EXPECT_CODE(this->oauth().getAccessToken("b"), ErrorCode::kNotFound);
  for (const char* h : {"c", "d", "short"}) EXPECT_TRUE(this->oauth().getAccessToken(h)) << h;
  // At 20 the app's token that expired at 15 goes first (so nothing else does); another app's
  // expired token stays.
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c1", "e", 20, 1000), 3));
  EXPECT_CODE(this->oauth().getAccessToken("short"), ErrorCode::kNotFound);
  for (const char* h : {"c", "d", "e"}) EXPECT_TRUE(this->oauth().getAccessToken(h)) << h;
  EXPECT_TRUE(this->oauth().getAccessToken("other"));
  // keep <= 0 keeps nothing, the new token included.
  ASSERT_OK(this->oauth().addAccessToken(makeToken(kA, "c1", "f", 22, 1000), 0));
  for (const char* h : {"c", "d", "e", "f"}) EXPECT_FALSE(this->oauth().getAccessToken(h)) << h;
  EXPECT_TRUE(this->oauth().getAccessToken("other"));
}

TYPED_TEST(StoreContract, DeleteCredentialsRevokesOnlyThatUsersSessionsAndKeys) {
  ASSERT_OK(this->acc().putSession(Session{"s1", "c", kA, UserId("1000"), 1, 100}));
  ASSERT_OK(this->acc().putSession(Session{"s2", "c", kA, UserId("1000"), 1, 100}));
  ASSERT_OK(this->acc().putSession(Session{"s3", "c", kA, UserId("1001"), 1, 100}));
  ASSERT_OK(this->acc().putSession(Session{"s4", "c", kB, UserId("1000"), 1, 100}));
  ASSERT_OK(this->acc().putApiKey(ApiKey{"h1", kA, UserId("1000"), "one", 0, "a1"}));
  ASSERT_OK(this->acc().putApiKey(ApiKey{"h2", kA, UserId("1001"), "two", 0, "a2"}));
  ASSERT_OK(this->acc().putApiKey(ApiKey{"h3", kB, UserId("1000"), "three", 0, "b1"}));
  ASSERT_OK(this->acc().deleteCredentials(kA, UserId("1000")));
  EXPECT_CODE(this->acc().getSession("s1"), ErrorCode::kNotFound);
  EXPECT_CODE(this->acc().getSession("s2"), ErrorCode::kNotFound);
  EXPECT_CODE(this->acc().getApiKey("h1"), ErrorCode::kNotFound);
  EXPECT_TRUE(this->acc().getSession("s3"));
  EXPECT_TRUE(this->acc().getSession("s4"));
  EXPECT_TRUE(this->acc().getApiKey("h2"));
  EXPECT_TRUE(this->acc().getApiKey("h3"));
  ASSERT_OK(this->acc().deleteCredentials(kA, UserId("1000")));  // none left: still fine
}

TYPED_TEST(StoreContract, DeleteUserDeletesItsCredentials) {
  User ann;
  ann.account = kA;
  ann.pid = "pid";
  ann.login_name = "ann";
  ann.password_hash = "hash";
  auto u = this->acc().createUser(ann);
  ASSERT_TRUE(u);
  ASSERT_OK(this->acc().putSession(Session{"s1", "c", kA, u->id, 1, 100}));
  ASSERT_OK(this->acc().putApiKey(ApiKey{"h1", kA, u->id, "one", 0, "a1"}));
  ASSERT_OK(this->acc().deleteUser(kA, u->id));
  EXPECT_CODE(this->acc().getSession("s1"), ErrorCode::kNotFound);
  EXPECT_CODE(this->acc().getApiKey("h1"), ErrorCode::kNotFound);
}

TYPED_TEST(StoreContract, UserAndAccountStatus) {
  ASSERT_OK(this->acc().createAccount(Account{kA, "a"}));
  EXPECT_EQ(this->acc().getAccount(kA)->status, AccountStatus::kActive);
  ASSERT_OK(this->acc().setAccountStatus(kA, AccountStatus::kDisabled));
  EXPECT_EQ(this->acc().getAccount(kA)->status, AccountStatus::kDisabled);
  EXPECT_EQ(this->acc().listAccounts()->at(0).status, AccountStatus::kDisabled);
  ASSERT_OK(this->acc().setAccountStatus(kA, AccountStatus::kActive));
  EXPECT_EQ(this->acc().getAccount(kA)->status, AccountStatus::kActive);
  EXPECT_CODE(this->acc().setAccountStatus(kB, AccountStatus::kDisabled), ErrorCode::kNotFound);

  User ann;
  ann.account = kA;
  ann.pid = "pid";
  ann.login_name = "ann";
  ann.password_hash = "hash";
  auto u = this->acc().createUser(ann);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->status, UserStatus::kEnabled);
  u->status = UserStatus::kDisabled;
  ASSERT_OK(this->acc().updateUser(*u));
  EXPECT_EQ(this->acc().getUser(kA, u->id)->status, UserStatus::kDisabled);
  EXPECT_EQ(this->acc().getUserByLogin(kA, "ann")->status, UserStatus::kDisabled);
}

// ---------------------------------------------------------------------------------------------
// Skills, agent states

TYPED_TEST(StoreContract, Skills) {
  auto s1 = this->acc().createSkill(Skill{kA, SkillId(), "sales", 0});
  auto s2 = this->acc().createSkill(Skill{kA, SkillId(), "support", 0});
  auto b1 = this->acc().createSkill(Skill{kB, SkillId(), "sales", 0});
  ASSERT_TRUE(s1 && s2 && b1);
  EXPECT_EQ(s1->id.str(), std::to_string(kFirstSkillId));
  EXPECT_EQ(s2->id.str(), std::to_string(kFirstSkillId + 1));
  EXPECT_EQ(b1->id.str(), std::to_string(kFirstSkillId));
  EXPECT_EQ(s1->created_at, this->clock_.nowMs());
  EXPECT_CODE(this->acc().createSkill(Skill{kA, SkillId(), "sales", 0}), ErrorCode::kConflict);
  EXPECT_CODE(this->acc().createSkill(Skill{kA, s1->id, "other", 0}), ErrorCode::kConflict);
  EXPECT_CODE(this->acc().createSkill(Skill{kA, SkillId(), "", 0}), ErrorCode::kInvalid);
  auto s10 = this->acc().createSkill(Skill{kA, SkillId("10"), "ten", 0});
  ASSERT_TRUE(s10);
  auto next = this->acc().createSkill(Skill{kA, SkillId(), "eleven", 0});
  ASSERT_TRUE(next);
  EXPECT_EQ(next->id.str(), "11");
  auto list = this->acc().listSkills(kA);
  ASSERT_TRUE(list);
  std::vector<std::string> names;
  for (const auto& s : *list) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"sales", "support", "ten", "eleven"}));
  EXPECT_CODE(this->acc().deleteSkill(kB, s2->id), ErrorCode::kNotFound);
  ASSERT_OK(this->acc().deleteSkill(kA, s2->id));
  EXPECT_CODE(this->acc().deleteSkill(kA, s2->id), ErrorCode::kNotFound);
  EXPECT_EQ(this->acc().listSkills(kA)->size(), 3u);
  EXPECT_EQ(this->acc().listSkills(kB)->size(), 1u);
}

TYPED_TEST(StoreContract, AgentStatesUpsertPerUser) {
  ASSERT_OK(this->acc().putAgentState(AgentState{kA, UserId("1001"), Availability::kOnline, 5}));
  ASSERT_OK(this->acc().putAgentState(AgentState{kA, UserId("1000"), Availability::kAway, 6}));
  ASSERT_OK(this->acc().putAgentState(AgentState{kB, UserId("1000"), Availability::kOnline, 7}));
  ASSERT_OK(this->acc().putAgentState(AgentState{kA, UserId("1001"), Availability::kBackSoon, 8}));
  auto list = this->acc().listAgentStates(kA);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].user, UserId("1000"));
  EXPECT_EQ((*list)[0].availability, Availability::kAway);
  EXPECT_EQ((*list)[1].user, UserId("1001"));
  EXPECT_EQ((*list)[1].availability, Availability::kBackSoon);
  EXPECT_EQ((*list)[1].updated_at, 8);
  EXPECT_EQ(this->acc().listAgentStates(kB)->size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Conversations and messages

TYPED_TEST(StoreContract, ConversationRoundTripWithParticipants) {
  Conversation c = makeConversation(kA, "c1", 50);
  c.channel = Channel::kChat;
  c.skill = SkillId("17");
  c.ttr_type = TtrType::kUrgent;
  c.ttr_value_s = 300;
  c.ttr_due_at = 350;
  c.updated_at = 60;
  c.next_sequence = 3;
  c.context_json = R"({"type":"SharkContext","lang":"en-US"})";
  c.participants = {
      {"consumer-c1", store::ParticipantRole::kConsumer, store::ParticipantState::kActive, 50},
      {"1000", store::ParticipantRole::kAssignedAgent, store::ParticipantState::kActive, 55},
      {"1001", store::ParticipantRole::kManager, store::ParticipantState::kSuggested, 56}};
  ASSERT_OK(this->conv().saveConversation(c));
  auto got = this->conv().getConversation(kA, c.id);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->consumer, c.consumer);
  EXPECT_EQ(got->channel, Channel::kChat);
  EXPECT_EQ(got->state, ConversationState::kOpen);
  EXPECT_EQ(got->skill, SkillId("17"));
  EXPECT_EQ(got->ttr_type, TtrType::kUrgent);
  EXPECT_EQ(got->ttr_value_s, 300);
  EXPECT_EQ(got->ttr_due_at, 350);
  EXPECT_EQ(got->start_ts, 50);
  EXPECT_EQ(got->updated_at, 60);
  EXPECT_EQ(got->next_sequence, 3);
  EXPECT_EQ(got->context_json, c.context_json);
  ASSERT_EQ(got->participants.size(), 3u);
  EXPECT_EQ(got->participants[1].id, "1000");
  EXPECT_EQ(got->participants[1].role, store::ParticipantRole::kAssignedAgent);
  EXPECT_EQ(got->participants[2].state, store::ParticipantState::kSuggested);
  EXPECT_EQ(got->participants[2].joined_at, 56);

  // Save replaces, participants included.
  c.state = ConversationState::kClose;
  c.close_reason = store::CloseReason::kAgent;
  c.end_ts = 99;
  c.participants.resize(1);
  ASSERT_OK(this->conv().saveConversation(c));
  got = this->conv().getConversation(kA, c.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state, ConversationState::kClose);
  EXPECT_EQ(got->close_reason, store::CloseReason::kAgent);
  EXPECT_EQ(got->end_ts, 99);
  ASSERT_EQ(got->participants.size(), 1u);
  EXPECT_EQ(got->participants[0].role, store::ParticipantRole::kConsumer);

  // Account isolation.
  EXPECT_CODE(this->conv().getConversation(kB, c.id), ErrorCode::kNotFound);
  Conversation hijack = makeConversation(kB, "c1");
  EXPECT_CODE(this->conv().saveConversation(hijack), ErrorCode::kConflict);
  EXPECT_CODE(this->conv().appendMessage(advancedTo(hijack, makeMessage(hijack.id, 9)),
                                         makeMessage(hijack.id, 9)),
              ErrorCode::kConflict);
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->account, kA);
  EXPECT_TRUE(this->conv().listMessages(c.id, 0, 100)->empty());
  EXPECT_CODE(this->conv().getConversation(kA, ConversationId("none")), ErrorCode::kNotFound);
  EXPECT_CODE(this->conv().saveConversation(Conversation{}), ErrorCode::kInvalid);
}

TYPED_TEST(StoreContract, ListConversationsFiltersOrdersAndLimits) {
  auto save = [&](const AccountId& a, const std::string& id, TimeMs start, ConversationState st,
                  const std::string& skill, const std::string& consumer) {
    Conversation c = makeConversation(a, id, start);
    c.state = st;
    c.skill = SkillId(skill);
    c.consumer = ConsumerId(consumer);
    c.participants = {
        {consumer, store::ParticipantRole::kConsumer, store::ParticipantState::kActive, start}};
    ASSERT_OK(this->conv().saveConversation(c));
  };
  save(kA, "a3", 30, ConversationState::kOpen, "1", "x");
  save(kA, "a1", 10, ConversationState::kOpen, "2", "y");
  save(kA, "a2", 20, ConversationState::kClose, "1", "x");
  save(kA, "a4", 30, ConversationState::kOpen, "1", "z");
  save(kB, "b1", 5, ConversationState::kOpen, "1", "x");

  auto ids = [](const Result<std::vector<Conversation>>& r) {
    std::vector<std::string> out;
    if (r)
      for (const auto& c : *r) out.push_back(c.id.str());
    return out;
  };
  EXPECT_EQ(ids(this->conv().listConversations(kA, {})),
            (std::vector<std::string>{"a1", "a2", "a3", "a4"}));
  ConversationQuery open;
  open.state = ConversationState::kOpen;
  EXPECT_EQ(ids(this->conv().listConversations(kA, open)),
            (std::vector<std::string>{"a1", "a3", "a4"}));
  ConversationQuery skill1;
  skill1.skill = SkillId("1");
  EXPECT_EQ(ids(this->conv().listConversations(kA, skill1)),
            (std::vector<std::string>{"a2", "a3", "a4"}));
  ConversationQuery cx;
  cx.consumer = ConsumerId("x");
  cx.state = ConversationState::kOpen;
  EXPECT_EQ(ids(this->conv().listConversations(kA, cx)), (std::vector<std::string>{"a3"}));
  ConversationQuery lim;
  lim.limit = 2;
  EXPECT_EQ(ids(this->conv().listConversations(kA, lim)), (std::vector<std::string>{"a1", "a2"}));
  lim.limit = 0;
  EXPECT_TRUE(ids(this->conv().listConversations(kA, lim)).empty());
  EXPECT_EQ(ids(this->conv().listConversations(kB, {})), (std::vector<std::string>{"b1"}));
  auto listed = this->conv().listConversations(kA, cx);
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->at(0).participants.size(), 1u);  // participants come with the list

  auto open_all = this->conv().listOpenConversations();
  EXPECT_EQ(ids(open_all), (std::vector<std::string>{"b1", "a1", "a3", "a4"}));
  ASSERT_TRUE(open_all);
  EXPECT_EQ(open_all->at(0).participants.size(), 1u);
}

TYPED_TEST(StoreContract, TwoCreatesOfAnOpenConversationForOneConsumerTheSecondIsRefused) {
  auto forConsumer = [](const AccountId& a, const std::string& id, const std::string& consumer) {
    Conversation c = makeConversation(a, id);
    c.consumer = ConsumerId(consumer);
    return c;
  };
  Conversation first = forConsumer(kA, "first", "x");
  ASSERT_OK(this->conv().saveConversation(first));
  Conversation second = forConsumer(kA, "second", "x");
  auto refused = this->conv().saveConversation(second);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  EXPECT_EQ(refused.error().message,
            "consumer x already has an open conversation first in account " + kA.str());
  EXPECT_CODE(this->conv().getConversation(kA, second.id), ErrorCode::kNotFound);
  // Nor through an append that would create it.
  Message m = makeMessage(second.id, 0);
  EXPECT_CODE(this->conv().appendMessage(advancedTo(second, m), m), ErrorCode::kConflict);
  EXPECT_CODE(this->conv().getConversation(kA, second.id), ErrorCode::kNotFound);

  // Saving the open one again (any change), another consumer, the same consumer in another
  // account and a closed conversation of the consumer are all fine.
  first.skill = SkillId("7");
  ASSERT_OK(this->conv().saveConversation(first));
  Message fm = makeMessage(first.id, 0);
  ASSERT_OK(this->conv().appendMessage(advancedTo(first, fm), fm));
  ASSERT_OK(this->conv().saveConversation(forConsumer(kA, "other-consumer", "y")));
  ASSERT_OK(this->conv().saveConversation(forConsumer(kB, "other-account", "x")));
  Conversation closed = forConsumer(kA, "closed", "x");
  closed.state = ConversationState::kClose;
  closed.close_reason = store::CloseReason::kConsumer;
  ASSERT_OK(this->conv().saveConversation(closed));

  // Once the first is closed, the consumer may open another.
  first = advancedTo(first, fm);
  first.state = ConversationState::kClose;
  first.close_reason = store::CloseReason::kConsumer;
  ASSERT_OK(this->conv().saveConversation(first));
  ASSERT_OK(this->conv().saveConversation(second));
  ConversationQuery open;
  open.consumer = ConsumerId("x");
  open.state = ConversationState::kOpen;
  auto listed = this->conv().listConversations(kA, open);
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->at(0).id, second.id);
}

// Writers creating an open conversation for one consumer at once, among other writes (group
// commits): one create is stored, the others are refused alone, every other write commits.
TYPED_TEST(StoreContract, RacingCreatesForOneConsumerStoreOne) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 20;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  std::vector<std::atomic<int>> created(kRounds);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Conversation own = makeConversation(kA, numbered("own-", t));
      for (int round = 0; round < kRounds; ++round) {
        Conversation c = makeConversation(kA, numbered("race-", round) + numbered("-", t));
        c.consumer = ConsumerId(numbered("racer-", round));
        auto r = this->conv().saveConversation(c);
        if (r) {
          ++created[static_cast<std::size_t>(round)];
        } else if (r.error().code != ErrorCode::kConflict) {
          ++failures;
        }
        Message m = makeMessage(own.id, round);
        own = advancedTo(own, m);
        if (!this->conv().appendMessage(own, m)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int round = 0; round < kRounds; ++round) {
    EXPECT_EQ(created[static_cast<std::size_t>(round)].load(), 1) << "round " << round;
    ConversationQuery q;
    q.consumer = ConsumerId(numbered("racer-", round));
    auto stored = this->conv().listConversations(kA, q);
    ASSERT_TRUE(stored);
    EXPECT_EQ(stored->size(), 1u) << "round " << round;
  }
}

// A message whose (conversation, originator, idempotency key) is stored is refused with
// Conflict and writes nothing, the conversation included; findMessageByKey names the first.
// The same key from another originator, or in another conversation, is another message.
TYPED_TEST(StoreContract, AMessageWithAStoredIdempotencyKeyIsRefusedAndWritesNothing) {
  Conversation c = makeConversation(kA, "keyed");
  ASSERT_OK(this->conv().saveConversation(c));
  Message first = makeMessage(c.id, 0);
  first.idempotency_key = "key-1";
  c = advancedTo(c, first);
  ASSERT_OK(this->conv().appendMessage(c, first));

  // The resend: the next sequence, the same key, and a conversation changed otherwise too (so
  // that the SQLite writer stores the row, not only the message).
  Message again = makeMessage(c.id, 1);
  again.idempotency_key = "key-1";
  Conversation changed = advancedTo(c, again);
  changed.skill = SkillId("77");
  auto refused = this->conv().appendMessage(changed, again);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  EXPECT_NE(refused.error().message.find("idempotency key 'key-1'"), std::string::npos)
      << refused.error().message;
  auto stored = this->conv().getConversation(kA, c.id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->next_sequence, 1);
  EXPECT_EQ(stored->skill.str(), "-1");
  auto all = this->conv().listMessages(c.id, 0, 10);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_TRUE((*all)[0].idempotency_key.empty());  // reads leave it out

  auto found = this->conv().findMessageByKey(c.id, "consumer", "key-1");
  ASSERT_TRUE(found) << found.error().message;
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->sequence, 0);
  EXPECT_EQ((*found)->server_ts, first.server_ts);
  EXPECT_EQ((*found)->idempotency_key, "key-1");
  EXPECT_FALSE(this->conv().findMessageByKey(c.id, "agent", "key-1")->has_value());
  EXPECT_FALSE(this->conv().findMessageByKey(c.id, "consumer", "key-2")->has_value());
  EXPECT_FALSE(this->conv().findMessageByKey(c.id, "consumer", "")->has_value());

  // Another originator's key-1, another key, and messages without a key are all stored.
  Message agents = makeMessage(c.id, 1);
  agents.originator_id = "1001.agent";
  agents.idempotency_key = "key-1";
  c = advancedTo(c, agents);
  ASSERT_OK(this->conv().appendMessage(c, agents));
  Message other_key = makeMessage(c.id, 2);
  other_key.idempotency_key = "key-2";
  c = advancedTo(c, other_key);
  ASSERT_OK(this->conv().appendMessage(c, other_key));
  for (std::int64_t seq : {3, 4}) {
    c = advancedTo(c, makeMessage(c.id, seq));
    ASSERT_OK(this->conv().appendMessage(c, makeMessage(c.id, seq)));
  }
  EXPECT_EQ((*this->conv().findMessageByKey(c.id, "1001.agent", "key-1"))->sequence, 1);

  Conversation other = makeConversation(kA, "keyed-too");
  ASSERT_OK(this->conv().saveConversation(other));
  Message elsewhere = makeMessage(other.id, 0);
  elsewhere.idempotency_key = "key-1";
  other = advancedTo(other, elsewhere);
  ASSERT_OK(this->conv().appendMessage(other, elsewhere));
  EXPECT_EQ(this->conv().listMessages(c.id, 0, 10)->size(), 5u);
}

// Writers racing with one key (each at its own sequence, as writers that each believed they
// held the conversation) store one message; the keyless writes committed with them (the
// PostgreSQL writer commits them in one transaction) are all stored.
TYPED_TEST(StoreContract, RacingAppendsWithOneIdempotencyKeyStoreOne) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 10;
  std::vector<Conversation> shared;
  for (int round = 0; round < kRounds; ++round) {
    shared.push_back(makeConversation(kA, numbered("shared-", round)));
    ASSERT_OK(this->conv().saveConversation(shared.back()));
  }
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  std::vector<std::atomic<int>> stored(kRounds);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Conversation own = makeConversation(kA, numbered("own-", t));
      if (!this->conv().saveConversation(own)) ++failures;
      for (int round = 0; round < kRounds; ++round) {
        Message m = makeMessage(shared[static_cast<std::size_t>(round)].id, t);
        m.idempotency_key = "resent";
        auto r =
            this->conv().appendMessage(advancedTo(shared[static_cast<std::size_t>(round)], m), m);
        if (r) {
          ++stored[static_cast<std::size_t>(round)];
        } else if (r.error().code != ErrorCode::kConflict) {
          ++failures;
        }
        Message plain = makeMessage(own.id, round);
        own = advancedTo(own, plain);
        if (!this->conv().appendMessage(own, plain)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int round = 0; round < kRounds; ++round) {
    EXPECT_EQ(stored[static_cast<std::size_t>(round)].load(), 1) << "round " << round;
    auto msgs = this->conv().listMessages(shared[static_cast<std::size_t>(round)].id, 0, 100);
    ASSERT_TRUE(msgs);
    EXPECT_EQ(msgs->size(), 1u) << "round " << round;
  }
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(this->conv().listMessages(ConversationId(numbered("own-", t)), 0, 100)->size(),
              static_cast<std::size_t>(kRounds));
}

// A bot turn's mark is stored with the message it came with and with the conversation, and a
// later append (the writer's fast path) keeps the conversation's mark.
TYPED_TEST(StoreContract, TurnMarksRoundTripOnMessagesAndConversations) {
  Conversation c = makeConversation(kA, "marked");
  ASSERT_OK(this->conv().saveConversation(c));
  Message plain = makeMessage(c.id, 0);
  c = advancedTo(c, plain);
  ASSERT_OK(this->conv().appendMessage(c, plain));
  Message reply = makeMessage(c.id, 1);
  reply.turn = TurnMark{"turn-1 with space", 1234, 0, 2, true};
  c = advancedTo(c, reply);
  ASSERT_OK(this->conv().appendMessage(c, reply));
  auto all = this->conv().listMessages(c.id, 0, 10);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_TRUE((*all)[0].turn.empty());
  EXPECT_EQ((*all)[1].turn, reply.turn);

  c.turn_mark = TurnMark{"turn-2", 1234, 1, 0, true};
  ASSERT_OK(this->conv().saveConversation(c));
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->turn_mark, c.turn_mark);
  Message next = makeMessage(c.id, 2);
  c = advancedTo(c, next);
  ASSERT_OK(this->conv().appendMessage(c, next));
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->turn_mark, c.turn_mark);
  c.turn_mark = TurnMark{};
  c = advancedTo(c, makeMessage(c.id, 3));
  ASSERT_OK(this->conv().appendMessage(c, makeMessage(c.id, 3)));
  EXPECT_TRUE(this->conv().getConversation(kA, c.id)->turn_mark.empty());
}

TEST(StoreTurnMark, EncodesAndDecodes) {
  TurnMark m{"id", -5, 7, 3, false};
  EXPECT_EQ(decodeTurnMark(encodeTurnMark(m)), m);
  EXPECT_EQ(encodeTurnMark(TurnMark{}), "");
  EXPECT_TRUE(decodeTurnMark("").empty());
  EXPECT_TRUE(decodeTurnMark("garbage").empty());
  EXPECT_TRUE(decodeTurnMark("1 2 x 0 id").empty());
}

TYPED_TEST(StoreContract, MessagesAreOrderedAndSequencesUnique) {
  Conversation c = makeConversation(kA, "conv");
  ASSERT_OK(this->conv().saveConversation(c));
  // Appended out of order; listed in sequence order.
  for (std::int64_t seq : {0, 2, 1, 4, 3}) {
    c = advancedTo(c, makeMessage(c.id, seq));
    ASSERT_OK(this->conv().appendMessage(c, makeMessage(c.id, seq)));
  }
  auto all = this->conv().listMessages(c.id, 0, 100);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 5u);
  for (std::int64_t i = 0; i < 5; ++i) {
    EXPECT_EQ((*all)[static_cast<std::size_t>(i)].sequence, i);
    EXPECT_EQ((*all)[static_cast<std::size_t>(i)].event_json, makeMessage(c.id, i).event_json);
  }
  const Message& m0 = (*all)[0];
  EXPECT_EQ(m0.conversation, c.id);
  EXPECT_EQ(m0.server_ts, 1000);
  EXPECT_EQ(m0.originator_id, "consumer");
  EXPECT_EQ(m0.originator_pid, "consumer-pid");
  EXPECT_EQ(m0.originator_role, store::ParticipantRole::kConsumer);
  EXPECT_EQ(m0.audience, store::Audience::kAll);
  EXPECT_EQ(m0.metadata_json, "[]");
  // The counters follow the highest sequence, whatever order the appends came in.
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->next_sequence, 5);
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->updated_at, 1004);

  auto tail = this->conv().listMessages(c.id, 2, 2);
  ASSERT_TRUE(tail);
  ASSERT_EQ(tail->size(), 2u);
  EXPECT_EQ((*tail)[0].sequence, 2);
  EXPECT_EQ((*tail)[1].sequence, 3);
  EXPECT_TRUE(this->conv().listMessages(c.id, 5, 10)->empty());
  EXPECT_TRUE(this->conv().listMessages(c.id, 0, 0)->empty());
  EXPECT_TRUE(this->conv().listMessages(ConversationId("other"), 0, 10)->empty());

  // A duplicate sequence is a Conflict and changes neither the message nor the conversation.
  Message dup = makeMessage(c.id, 3);
  dup.event_json = R"({"replaced":true})";
  Conversation advanced = advancedTo(c, dup);
  advanced.skill = SkillId("77");
  EXPECT_CODE(this->conv().appendMessage(advanced, dup), ErrorCode::kConflict);
  EXPECT_EQ(this->conv().listMessages(c.id, 3, 1)->at(0).event_json,
            makeMessage(c.id, 3).event_json);
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->next_sequence, 5);
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->skill, c.skill);

  // The conversation must come with the counters the message gives it; otherwise Invalid and
  // nothing is stored.
  Message m5 = makeMessage(c.id, 5);
  Conversation stale = c;  // as the last append (sequence 3) left it
  auto r = this->conv().appendMessage(stale, m5);
  EXPECT_CODE(r, ErrorCode::kInvalid);
  EXPECT_NE(r.error().message.find("next_sequence must be 6, not 4"), std::string::npos)
      << r.error().message;
  Conversation wrong_ts = advancedTo(c, m5);
  wrong_ts.updated_at = 1;
  r = this->conv().appendMessage(wrong_ts, m5);
  EXPECT_CODE(r, ErrorCode::kInvalid);
  EXPECT_NE(r.error().message.find("updated_at must be the message's server_ts"), std::string::npos)
      << r.error().message;
  EXPECT_TRUE(this->conv().listMessages(c.id, 5, 10)->empty());

  // A later save with lower counters cannot take them below what the messages imply.
  Conversation lower = c;
  lower.next_sequence = 2;
  lower.updated_at = 3;
  ASSERT_OK(this->conv().saveConversation(lower));
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->next_sequence, 5);
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->updated_at, 1004);

  // appendMessage creates the conversation when it is new, and checks the message belongs to it.
  Conversation fresh = advancedTo(makeConversation(kA, "fresh"), makeMessage(ConversationId(), 0));
  ASSERT_OK(this->conv().appendMessage(fresh, makeMessage(fresh.id, 0)));
  EXPECT_EQ(this->conv().getConversation(kA, fresh.id)->next_sequence, 1);
  EXPECT_EQ(this->conv().getConversation(kA, fresh.id)->updated_at, 1000);
  EXPECT_CODE(this->conv().appendMessage(fresh, makeMessage(c.id, 0)), ErrorCode::kInvalid);
}

// ---------------------------------------------------------------------------------------------
// Functions, deployments, logs

FunctionRecord makeFunction(const AccountId& a, const std::string& uuid, const std::string& name) {
  FunctionRecord f;
  f.uuid = FunctionId(uuid);
  f.account = a;
  f.name = name;
  f.description = "desc";
  f.event_id = "conversation_start";
  f.code = "function lambda(input, callback) { callback(null, input); }";
  f.env = {{"A", "1"}, {"B", "two \"quoted\""}};
  f.created_by = "alice";
  f.updated_by = "alice";
  return f;
}

Schedule makeSchedule(const AccountId& acc, const std::string& id, const std::string& fn,
                      TimeMs next) {
  Schedule s;
  s.account = acc;
  s.id = id;
  s.function = FunctionId(fn);
  s.cron = "*/5 * * * *";
  s.payload_json = R"({"k":1})";
  s.next_run_at = next;
  s.created_by = "u1";
  return s;
}

TYPED_TEST(StoreContract, SchedulesCrudPerAccountAndOnlyForExistingFunctions) {
  ASSERT_OK(this->fn().createFunction(makeFunction(kA, "f1", "one")));
  ASSERT_OK(this->fn().createFunction(makeFunction(kB, "f2", "two")));
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kA, "s1", "f1", 1000)));
  this->clock_.advanceMs(5);
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kA, "s2", "f1", 2000)));
  EXPECT_CODE(this->sched().createSchedule(makeSchedule(kA, "s1", "f1", 1)), ErrorCode::kConflict);
  // The function must exist in the schedule's account.
  EXPECT_CODE(this->sched().createSchedule(makeSchedule(kA, "s3", "f2", 1)), ErrorCode::kNotFound);
  EXPECT_CODE(this->sched().createSchedule(makeSchedule(kA, "s3", "nope", 1)),
              ErrorCode::kNotFound);
  EXPECT_CODE(this->sched().createSchedule(makeSchedule(kA, "", "f1", 1)), ErrorCode::kInvalid);
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kB, "s1", "f2", 1000)));  // same id, B

  auto got = this->sched().getSchedule(kA, "s1");
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->function, FunctionId("f1"));
  EXPECT_EQ(got->cron, "*/5 * * * *");
  EXPECT_EQ(got->payload_json, R"({"k":1})");
  EXPECT_EQ(got->state, ScheduleState::kActive);
  EXPECT_EQ(got->next_run_at, 1000);
  EXPECT_EQ(got->created_by, "u1");
  EXPECT_GT(got->created_at, 0);
  EXPECT_EQ(got->last_outcome, "");
  auto list = this->sched().listSchedules(kA);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "s1");
  EXPECT_EQ((*list)[1].id, "s2");

  Schedule upd = *got;
  upd.cron = "0 * * * *";
  upd.state = ScheduleState::kPaused;
  upd.next_run_at = 0;
  upd.payload_json = "null";
  upd.running_id = "ignored";  // run bookkeeping is not part of an update
  ASSERT_OK(this->sched().updateSchedule(upd));
  got = this->sched().getSchedule(kA, "s1");
  EXPECT_EQ(got->cron, "0 * * * *");
  EXPECT_EQ(got->state, ScheduleState::kPaused);
  EXPECT_EQ(got->payload_json, "null");
  EXPECT_EQ(got->running_id, "");
  Schedule foreign = upd;
  foreign.id = "s2";
  foreign.account = AccountId("3003");
  EXPECT_CODE(this->sched().updateSchedule(foreign), ErrorCode::kNotFound);

  ASSERT_OK(this->sched().deleteSchedule(kA, "s1"));
  EXPECT_CODE(this->sched().deleteSchedule(kA, "s1"), ErrorCode::kNotFound);
  EXPECT_CODE(this->sched().getSchedule(kA, "s1"), ErrorCode::kNotFound);
  EXPECT_TRUE(this->sched().getSchedule(kB, "s1"));
}

TYPED_TEST(StoreContract, DeletingAFunctionDeletesItsSchedules) {
  ASSERT_OK(this->fn().createFunction(makeFunction(kA, "f1", "one")));
  ASSERT_OK(this->fn().createFunction(makeFunction(kA, "f2", "two")));
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kA, "s1", "f1", 1000)));
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kA, "s2", "f1", 1000)));
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kA, "s3", "f2", 1000)));
  ASSERT_OK(this->fn().deleteFunction(kA, FunctionId("f1")));
  auto list = this->sched().listSchedules(kA);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, "s3");
  EXPECT_TRUE(this->sched().listDueSchedules(5000, 10)->size() == 1u);
}

TYPED_TEST(StoreContract, ScheduleRunsAreClaimedOnceAndFinishedByTheirClaim) {
  ASSERT_OK(this->fn().createFunction(makeFunction(kA, "f1", "one")));
  ASSERT_OK(this->fn().createFunction(makeFunction(kB, "f2", "two")));
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kA, "late", "f1", 3000)));
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kB, "early", "f2", 1000)));
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kA, "future", "f1", 9000)));
  Schedule paused = makeSchedule(kA, "paused", "f1", 1000);
  paused.state = ScheduleState::kPaused;
  ASSERT_OK(this->sched().createSchedule(paused));
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kA, "never", "f1", 0)));

  // Due at 5000: the two active ones whose time came, earliest first, across accounts.
  auto due = this->sched().listDueSchedules(5000, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].id, "early");
  EXPECT_EQ((*due)[1].id, "late");
  EXPECT_EQ(this->sched().listDueSchedules(5000, 1)->size(), 1u);

  ScheduleClaim c{kA, "late", 3000, 6000, 5000, "run-1", 40000};
  ScheduleClaim stale = c;
  stale.run_id = "run-2";
  ASSERT_OK(this->sched().claimScheduleRun(c));
  // A second claim of the same run (another thread or node) loses.
  EXPECT_CODE(this->sched().claimScheduleRun(stale), ErrorCode::kConflict);
  // While the claim holds, the schedule is not due, even once its next time came.
  due = this->sched().listDueSchedules(7000, 10);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].id, "early");
  ScheduleClaim next{kA, "late", 6000, 9000, 7000, "run-3", 50000};
  EXPECT_CODE(this->sched().claimScheduleRun(next), ErrorCode::kConflict);
  auto got = this->sched().getSchedule(kA, "late");
  EXPECT_EQ(got->running_id, "run-1");
  EXPECT_EQ(got->running_until, 40000);
  EXPECT_EQ(got->last_due_at, 3000);
  EXPECT_EQ(got->last_started_at, 5000);
  EXPECT_EQ(got->next_run_at, 6000);

  // Only the claim's own run finishes it.
  EXPECT_CODE(
      this->sched().finishScheduleRun(ScheduleRunEnd{kA, "late", "run-2", 7100, "OK", "", 0}),
      ErrorCode::kConflict);
  ASSERT_OK(this->sched().finishScheduleRun(
      ScheduleRunEnd{kA, "late", "run-1", 7200, "com.liveperson.faas.es.notdeployed", "gone", 12}));
  got = this->sched().getSchedule(kA, "late");
  EXPECT_EQ(got->running_id, "");
  EXPECT_EQ(got->running_until, 0);
  EXPECT_EQ(got->last_finished_at, 7200);
  EXPECT_EQ(got->last_outcome, "com.liveperson.faas.es.notdeployed");
  EXPECT_EQ(got->last_error, "gone");
  EXPECT_EQ(got->last_duration_ms, 12);
  EXPECT_CODE(
      this->sched().finishScheduleRun(ScheduleRunEnd{kA, "late", "run-1", 7300, "OK", "", 0}),
      ErrorCode::kConflict);
  ASSERT_OK(this->sched().claimScheduleRun(next));

  // An expired claim (its node died) can be taken over; the old run's end is then refused.
  ScheduleClaim takeover{kA, "late", 9000, 12000, 60000, "run-4", 90000};
  ASSERT_OK(this->sched().claimScheduleRun(takeover));
  EXPECT_CODE(
      this->sched().finishScheduleRun(ScheduleRunEnd{kA, "late", "run-3", 60001, "OK", "", 0}),
      ErrorCode::kConflict);

  // Skipping missed runs moves next_run_at under the same conditions.
  EXPECT_CODE(this->sched().skipScheduleRuns(kB, "early", 999, 20000, 5000), ErrorCode::kConflict);
  ASSERT_OK(this->sched().skipScheduleRuns(kB, "early", 1000, 20000, 5000));
  EXPECT_EQ(this->sched().getSchedule(kB, "early")->next_run_at, 20000);
  EXPECT_CODE(this->sched().skipScheduleRuns(kB, "gone", 1000, 20000, 5000), ErrorCode::kNotFound);
  EXPECT_CODE(this->sched().claimScheduleRun(ScheduleClaim{kA, "gone", 1, 2, 3, "r", 4}),
              ErrorCode::kNotFound);
  // A paused schedule is never claimed.
  EXPECT_CODE(
      this->sched().claimScheduleRun(ScheduleClaim{kA, "paused", 1000, 2000, 5000, "r", 9000}),
      ErrorCode::kConflict);
}

TYPED_TEST(StoreContract, RacingClaimersOfOneRunGetOneWinner) {
  ASSERT_OK(this->fn().createFunction(makeFunction(kA, "f1", "one")));
  ASSERT_OK(this->sched().createSchedule(makeSchedule(kA, "s", "f1", 1000)));
  std::atomic<int> won{0};
  std::atomic<int> lost{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      auto r = this->sched().claimScheduleRun(
          ScheduleClaim{kA, "s", 1000, 2000, 1500, numbered("run-", i), 9000});
      (r ? won : lost)++;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(lost.load(), 3);
}

TYPED_TEST(StoreContract, FunctionsCrud) {
  ASSERT_OK(this->fn().createFunction(makeFunction(kA, "f1", "greeter")));
  ASSERT_OK(this->fn().createFunction(makeFunction(kA, "f2", "another")));
  ASSERT_OK(this->fn().createFunction(makeFunction(kB, "f3", "greeter")));  // other account
  EXPECT_CODE(this->fn().createFunction(makeFunction(kA, "f9", "greeter")), ErrorCode::kConflict);
  EXPECT_CODE(this->fn().createFunction(makeFunction(kA, "f1", "fresh")), ErrorCode::kConflict);
  EXPECT_CODE(this->fn().createFunction(makeFunction(kA, "", "x")), ErrorCode::kInvalid);
  EXPECT_CODE(this->fn().createFunction(makeFunction(kA, "f8", "")), ErrorCode::kInvalid);

  auto got = this->fn().getFunction(kA, FunctionId("f1"));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->name, "greeter");
  EXPECT_EQ(got->code, makeFunction(kA, "f1", "greeter").code);
  ASSERT_EQ(got->env.size(), 2u);
  EXPECT_EQ(got->env[1].key, "B");
  EXPECT_EQ(got->env[1].value, "two \"quoted\"");
  EXPECT_EQ(got->state, FunctionState::kDraft);
  EXPECT_EQ(got->version, 1);
  EXPECT_EQ(got->created_at, this->clock_.nowMs());
  EXPECT_EQ(got->updated_at, this->clock_.nowMs());
  EXPECT_CODE(this->fn().getFunction(kB, FunctionId("f1")), ErrorCode::kNotFound);

  FunctionRecord upd = *got;
  upd.code = "// v2";
  upd.version = 2;
  upd.state = FunctionState::kModified;
  upd.env.clear();
  ASSERT_OK(this->fn().updateFunction(upd));
  got = this->fn().getFunction(kA, FunctionId("f1"));
  EXPECT_EQ(got->code, "// v2");
  EXPECT_EQ(got->version, 2);
  EXPECT_EQ(got->state, FunctionState::kModified);
  EXPECT_TRUE(got->env.empty());
  upd.name = "another";
  EXPECT_CODE(this->fn().updateFunction(upd), ErrorCode::kConflict);
  FunctionRecord foreign = upd;
  foreign.account = kB;
  foreign.name = "zzz";
  EXPECT_CODE(this->fn().updateFunction(foreign), ErrorCode::kNotFound);
  EXPECT_CODE(this->fn().updateFunction(makeFunction(kA, "nope", "nope")), ErrorCode::kNotFound);

  auto list = this->fn().listFunctions(kA);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "another");
  EXPECT_EQ((*list)[1].name, "greeter");

  EXPECT_CODE(this->fn().deleteFunction(kB, FunctionId("f1")), ErrorCode::kNotFound);
  ASSERT_OK(this->fn().deleteFunction(kA, FunctionId("f1")));
  EXPECT_CODE(this->fn().getFunction(kA, FunctionId("f1")), ErrorCode::kNotFound);
  EXPECT_CODE(this->fn().deleteFunction(kA, FunctionId("f1")), ErrorCode::kNotFound);
  // The name is free again.
  ASSERT_OK(this->fn().createFunction(makeFunction(kA, "f5", "greeter")));
}

Deployment makeDeployment(const AccountId& a, const std::string& fn, const std::string& uuid,
                          TimeMs at) {
  Deployment d;
  d.uuid = uuid;
  d.function = FunctionId(fn);
  d.account = a;
  d.function_version = at;
  d.code = "code " + uuid;
  d.env = {{"K", uuid}};
  d.state = DeploymentState::kProductive;
  d.error_json = "";
  d.created_by = "alice";
  d.created_at = at;
  d.deployed_at = at + 1;
  return d;
}

TYPED_TEST(StoreContract, DeploymentsNewestFirstAndPrune) {
  ASSERT_OK(this->fn().createFunction(makeFunction(kA, "f1", "one")));
  for (int i = 1; i <= 5; ++i)
    ASSERT_OK(this->fn().addDeployment(makeDeployment(kA, "f1", numbered("d", i), i * 10)));
  ASSERT_OK(this->fn().addDeployment(makeDeployment(kB, "f1", "other", 99)));
  EXPECT_CODE(this->fn().addDeployment(makeDeployment(kA, "f1", "d1", 5)), ErrorCode::kConflict);
  auto list = this->fn().listDeployments(kA, FunctionId("f1"), 3);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].uuid, "d5");
  EXPECT_EQ((*list)[1].uuid, "d4");
  EXPECT_EQ((*list)[2].uuid, "d3");
  EXPECT_EQ((*list)[0].code, "code d5");
  EXPECT_EQ((*list)[0].env.at(0).value, "d5");
  EXPECT_EQ((*list)[0].deployed_at, 51);
  EXPECT_EQ((*list)[0].function_version, 50);

  ASSERT_OK(this->fn().pruneDeployments(kA, FunctionId("f1"), 2));
  list = this->fn().listDeployments(kA, FunctionId("f1"), 10);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].uuid, "d5");
  EXPECT_EQ((*list)[1].uuid, "d4");
  EXPECT_EQ(this->fn().listDeployments(kB, FunctionId("f1"), 10)->size(), 1u);  // untouched

  // Equal timestamps: the later insert is newer.
  ASSERT_OK(this->fn().addDeployment(makeDeployment(kA, "f1", "d6", 50)));
  EXPECT_EQ(this->fn().listDeployments(kA, FunctionId("f1"), 1)->at(0).uuid, "d6");

  // Deleting the function removes its deployments.
  ASSERT_OK(this->fn().deleteFunction(kA, FunctionId("f1")));
  EXPECT_TRUE(this->fn().listDeployments(kA, FunctionId("f1"), 10)->empty());
}

TYPED_TEST(StoreContract, InvocationLogs) {
  std::vector<InvocationLog> logs;
  for (int i = 0; i < 6; ++i)
    logs.push_back(InvocationLog{FunctionId("f1"), kA, "req" + std::to_string(i), 100 + i / 2,
                                 i % 2 ? "Info" : "Error", "line " + std::to_string(i),
                                 R"(["x"])"});
  logs.push_back(InvocationLog{FunctionId("f1"), kB, "reqB", 200, "Info", "b", "[]"});
  ASSERT_OK(this->fn().appendLogs(logs));
  ASSERT_OK(this->fn().appendLogs({}));
  auto list = this->fn().listLogs(kA, FunctionId("f1"), 0, 100);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 6u);
  // Newest first; equal timestamps in reverse insertion order.
  EXPECT_EQ((*list)[0].message, "line 5");
  EXPECT_EQ((*list)[1].message, "line 4");
  EXPECT_EQ((*list)[5].message, "line 0");
  EXPECT_EQ((*list)[0].level, "Info");
  EXPECT_EQ((*list)[0].request_id, "req5");
  EXPECT_EQ((*list)[0].extras_json, R"(["x"])");
  auto since = this->fn().listLogs(kA, FunctionId("f1"), 101, 100);
  ASSERT_EQ(since->size(), 4u);
  EXPECT_EQ(this->fn().listLogs(kA, FunctionId("f1"), 0, 2)->size(), 2u);
  EXPECT_EQ(this->fn().listLogs(kB, FunctionId("f1"), 0, 100)->size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Secrets, allowlist, context

TYPED_TEST(StoreContract, SecretsKeepBinaryCiphertext) {
  const std::string blob("\x00\x01\xff nonce\x00tail", 14);
  ASSERT_OK(this->fn().putSecret(Secret{kA, "token", blob, 0}));
  ASSERT_OK(this->fn().putSecret(Secret{kA, "apiKey", "v", 5}));
  ASSERT_OK(this->fn().putSecret(Secret{kB, "token", "b", 5}));
  auto got = this->fn().getSecret(kA, "token");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->ciphertext, blob);
  EXPECT_EQ(got->updated_at, this->clock_.nowMs());
  ASSERT_OK(this->fn().putSecret(Secret{kA, "token", "new", 9}));
  EXPECT_EQ(this->fn().getSecret(kA, "token")->ciphertext, "new");
  EXPECT_EQ(*this->fn().listSecretKeys(kA), (std::vector<std::string>{"apiKey", "token"}));
  EXPECT_CODE(this->fn().getSecret(kA, "missing"), ErrorCode::kNotFound);
  EXPECT_CODE(this->fn().putSecret(Secret{kA, "", "x", 0}), ErrorCode::kInvalid);
  ASSERT_OK(this->fn().deleteSecret(kA, "token"));
  EXPECT_CODE(this->fn().deleteSecret(kA, "token"), ErrorCode::kNotFound);
  EXPECT_EQ(this->fn().getSecret(kB, "token")->ciphertext, "b");
}

TYPED_TEST(StoreContract, SecretAuditNewestFirstKeepsNewestPerAccount) {
  auto entry = [](const AccountId& a, const std::string& key, TimeMs ts) {
    SecretAuditEntry e;
    e.account = a;
    e.ts = ts;
    e.function = FunctionId("f1");
    e.request_id = "r-" + key;
    e.invoker = AuditInvoker::kUser;
    e.user = UserId("1001");
    e.login_name = "dev";
    e.key = key;
    e.op = AuditOp::kWrite;
    e.outcome = AuditOutcome::kRefused;
    e.detail = "needs FAAS_ADMIN";
    return e;
  };
  EXPECT_TRUE(this->fn().listSecretAudit(kA, 10)->empty());
  for (int i = 0; i < 5; ++i)
    ASSERT_OK(this->fn().appendSecretAudit(entry(kA, "k" + std::to_string(i), 100), 3));
  ASSERT_OK(this->fn().appendSecretAudit(entry(kB, "b", 0), 3));
  auto a = this->fn().listSecretAudit(kA, 10);
  ASSERT_TRUE(a);
  ASSERT_EQ(a->size(), 3u);      // only the newest 3 of the account are kept
  EXPECT_EQ((*a)[0].key, "k4");  // newest first, by insertion (equal timestamps)
  EXPECT_EQ((*a)[1].key, "k3");
  EXPECT_EQ((*a)[2].key, "k2");
  const auto& e = (*a)[0];
  EXPECT_EQ(e.account, kA);
  EXPECT_EQ(e.ts, 100);
  EXPECT_EQ(e.function, FunctionId("f1"));
  EXPECT_EQ(e.request_id, "r-k4");
  EXPECT_EQ(e.invoker, AuditInvoker::kUser);
  EXPECT_EQ(e.user, UserId("1001"));
  EXPECT_EQ(e.login_name, "dev");
  EXPECT_EQ(e.op, AuditOp::kWrite);
  EXPECT_EQ(e.outcome, AuditOutcome::kRefused);
  EXPECT_EQ(e.detail, "needs FAAS_ADMIN");
  EXPECT_EQ(this->fn().listSecretAudit(kA, 2)->size(), 2u);
  EXPECT_TRUE(this->fn().listSecretAudit(kA, 0)->empty());
  auto b = this->fn().listSecretAudit(kB, 10);
  ASSERT_EQ(b->size(), 1u);                     // pruning one account leaves the other alone
  EXPECT_EQ((*b)[0].ts, this->clock_.nowMs());  // ts 0 = now
  ASSERT_OK(this->fn().appendSecretAudit(entry(kB, "b2", 1), 0));
  EXPECT_TRUE(this->fn().listSecretAudit(kB, 10)->empty());  // keep 0 keeps nothing
  EXPECT_CODE(this->fn().appendSecretAudit(entry(AccountId(""), "x", 1), 3), ErrorCode::kInvalid);
}

TYPED_TEST(StoreContract, AllowlistReplacesInOrder) {
  EXPECT_TRUE(this->fn().getAllowlist(kA)->empty());
  ASSERT_OK(this->fn().putAllowlist(kA, {"zeta.example", "alpha.example", "*.mid.example"}));
  ASSERT_OK(this->fn().putAllowlist(kB, {"b.example"}));
  EXPECT_EQ(*this->fn().getAllowlist(kA),
            (std::vector<std::string>{"zeta.example", "alpha.example", "*.mid.example"}));
  ASSERT_OK(this->fn().putAllowlist(kA, {"only.example"}));
  EXPECT_EQ(*this->fn().getAllowlist(kA), std::vector<std::string>{"only.example"});
  ASSERT_OK(this->fn().putAllowlist(kA, {}));
  EXPECT_TRUE(this->fn().getAllowlist(kA)->empty());
  EXPECT_EQ(*this->fn().getAllowlist(kB), std::vector<std::string>{"b.example"});
}

TYPED_TEST(StoreContract, ContextPropertiesExpireAndDelete) {
  const TimeMs now = this->clock_.nowMs();
  auto put = [&](const AccountId& a, const std::string& ns, const std::string& session,
                 const std::string& name, const std::string& value, TimeMs expires) {
    ASSERT_OK(this->fn().putContextProperty(ContextProperty{a, ns, session, name, value, expires}));
  };
  put(kA, "ns1", "", "b", "2", 0);
  put(kA, "ns1", "", "a", R"({"x":1})", now + 1000);
  put(kA, "ns1", "s1", "a", "10", 0);
  put(kA, "ns1", "s1", "c", "30", 0);
  put(kA, "ns2", "", "a", "99", 0);
  put(kB, "ns1", "", "a", "b-account", 0);
  EXPECT_CODE(this->fn().putContextProperty(ContextProperty{kA, "", "", "a", "1", 0}),
              ErrorCode::kInvalid);

  auto names = [&](const AccountId& a, const std::string& ns, const std::string& s) {
    std::vector<std::string> out;
    auto r = this->fn().listContextProperties(a, ns, s);
    if (r)
      for (const auto& p : *r) out.push_back(p.name + "=" + p.value_json);
    return out;
  };
  EXPECT_EQ(names(kA, "ns1", ""), (std::vector<std::string>{"a={\"x\":1}", "b=2"}));
  EXPECT_EQ(names(kA, "ns1", "s1"), (std::vector<std::string>{"a=10", "c=30"}));
  EXPECT_EQ(names(kB, "ns1", ""), (std::vector<std::string>{"a=b-account"}));
  // Upsert.
  put(kA, "ns1", "", "b", "3", 0);
  EXPECT_EQ(names(kA, "ns1", ""), (std::vector<std::string>{"a={\"x\":1}", "b=3"}));
  // Expiry follows the clock.
  this->clock_.advanceMs(1000);
  EXPECT_EQ(names(kA, "ns1", ""), (std::vector<std::string>{"b=3"}));
  // Delete one, then a whole session.
  ASSERT_OK(this->fn().deleteContextProperties(kA, "ns1", "s1", "a"));
  EXPECT_EQ(names(kA, "ns1", "s1"), (std::vector<std::string>{"c=30"}));
  ASSERT_OK(this->fn().deleteContextProperties(kA, "ns1", "", ""));
  EXPECT_TRUE(names(kA, "ns1", "").empty());
  EXPECT_EQ(names(kA, "ns1", "s1"), (std::vector<std::string>{"c=30"}));
  EXPECT_EQ(names(kA, "ns2", ""), (std::vector<std::string>{"a=99"}));
  EXPECT_EQ(names(kB, "ns1", ""), (std::vector<std::string>{"a=b-account"}));
}

// ---------------------------------------------------------------------------------------------
// Bots, turns, pending turns

BotRecord makeBot(const AccountId& a, const std::string& id, const std::string& user) {
  BotRecord b;
  b.account = a;
  b.id = BotId(id);
  b.name = "bot " + id;
  b.user = UserId(user);
  b.config_json = R"({"vendor":"CustomIntegration","functionUuid":"f1"})";
  return b;
}

TYPED_TEST(StoreContract, BotsCrudAndOneBotPerUser) {
  ASSERT_OK(this->bots().createBot(makeBot(kA, "b2", "2000")));
  ASSERT_OK(this->bots().createBot(makeBot(kA, "b1", "2001")));
  ASSERT_OK(this->bots().createBot(makeBot(kB, "b1", "2000")));
  EXPECT_CODE(this->bots().createBot(makeBot(kA, "b3", "2000")), ErrorCode::kConflict);
  EXPECT_CODE(this->bots().createBot(makeBot(kA, "b1", "2009")), ErrorCode::kConflict);
  EXPECT_CODE(this->bots().createBot(makeBot(kA, "", "2009")), ErrorCode::kInvalid);
  auto got = this->bots().getBot(kA, BotId("b1"));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->user, UserId("2001"));
  EXPECT_EQ(got->config_json, makeBot(kA, "b1", "2001").config_json);
  EXPECT_EQ(got->status, BotStatus::kOffline);
  EXPECT_EQ(got->created_at, this->clock_.nowMs());
  EXPECT_CODE(this->bots().getBot(kA, BotId("zz")), ErrorCode::kNotFound);

  BotRecord upd = *got;
  upd.status = BotStatus::kOnline;
  upd.updated_at = 77;
  ASSERT_OK(this->bots().updateBot(upd));
  EXPECT_EQ(this->bots().getBot(kA, BotId("b1"))->status, BotStatus::kOnline);
  EXPECT_EQ(this->bots().getBot(kA, BotId("b1"))->updated_at, 77);
  upd.user = UserId("2000");  // owned by b2
  EXPECT_CODE(this->bots().updateBot(upd), ErrorCode::kConflict);
  EXPECT_CODE(this->bots().updateBot(makeBot(kA, "nope", "1")), ErrorCode::kNotFound);
  EXPECT_CODE(this->bots().updateBot(makeBot(kB, "b2", "1")), ErrorCode::kNotFound);

  auto list = this->bots().listBots(kA);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, BotId("b1"));
  EXPECT_EQ((*list)[1].id, BotId("b2"));
  auto all = this->bots().listAllBots();
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 3u);

  EXPECT_CODE(this->bots().deleteBot(kB, BotId("b2")), ErrorCode::kNotFound);
  ASSERT_OK(this->bots().deleteBot(kA, BotId("b2")));
  EXPECT_CODE(this->bots().deleteBot(kA, BotId("b2")), ErrorCode::kNotFound);
  // The user is free for another bot now.
  ASSERT_OK(this->bots().createBot(makeBot(kA, "b3", "2000")));
}

TurnRecord makeTurn(const AccountId& a, const std::string& bot, const std::string& id, TimeMs ts) {
  TurnRecord t;
  t.account = a;
  t.bot = BotId(bot);
  t.conversation = ConversationId("c1");
  t.turn_id = id;
  t.ts = ts;
  t.outcome = "OK";
  t.input_json = R"({"in":")" + id + R"("})";
  t.response_json = "{}";
  t.error = "";
  return t;
}

TYPED_TEST(StoreContract, TurnsKeepNewestAndReplaceSameId) {
  for (int i = 1; i <= 5; ++i)
    ASSERT_OK(this->bots().appendTurn(makeTurn(kA, "b1", numbered("t", i), i), 3));
  ASSERT_OK(this->bots().appendTurn(makeTurn(kA, "b2", "t1", 1), 3));
  ASSERT_OK(this->bots().appendTurn(makeTurn(kB, "b1", "t1", 1), 3));
  auto list = this->bots().listTurns(kA, BotId("b1"), 10);
  ASSERT_TRUE(list);
  std::vector<std::string> ids;
  for (const auto& t : *list) ids.push_back(t.turn_id);
  EXPECT_EQ(ids, (std::vector<std::string>{"t5", "t4", "t3"}));
  EXPECT_EQ((*list)[0].input_json, R"({"in":"t5"})");
  EXPECT_EQ((*list)[0].actions_json, "[]");
  EXPECT_EQ((*list)[0].timings_json, "{}");
  EXPECT_EQ(this->bots().listTurns(kA, BotId("b1"), 1)->size(), 1u);
  EXPECT_EQ(this->bots().listTurns(kA, BotId("b2"), 10)->size(), 1u);
  EXPECT_EQ(this->bots().listTurns(kB, BotId("b1"), 10)->size(), 1u);

  // Re-recording a turn id replaces the record.
  TurnRecord again = makeTurn(kA, "b1", "t4", 4);
  again.outcome = "DISCARDED";
  ASSERT_OK(this->bots().appendTurn(again, 3));
  list = this->bots().listTurns(kA, BotId("b1"), 10);
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[1].turn_id, "t4");
  EXPECT_EQ((*list)[1].outcome, "DISCARDED");
  EXPECT_CODE(this->bots().appendTurn(makeTurn(kA, "b1", "", 9), 3), ErrorCode::kInvalid);
}

TYPED_TEST(StoreContract, PendingTurns) {
  ASSERT_OK(this->bots().putPendingTurn(
      PendingTurn{kA, BotId("b1"), ConversationId("c1"), "turn-2", R"({"step":1})", 20}));
  ASSERT_OK(this->bots().putPendingTurn(
      PendingTurn{kB, BotId("b9"), ConversationId("c9"), "turn-1", "{}", 10}));
  ASSERT_OK(this->bots().putPendingTurn(
      PendingTurn{kA, BotId("b1"), ConversationId("c1"), "turn-2", R"({"step":2})", 20}));
  auto list = this->bots().listPendingTurns();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].turn_id, "turn-1");
  EXPECT_EQ((*list)[0].account, kB);
  EXPECT_EQ((*list)[1].turn_id, "turn-2");
  EXPECT_EQ((*list)[1].state_json, R"({"step":2})");
  EXPECT_EQ((*list)[1].conversation, ConversationId("c1"));
  ASSERT_OK(this->bots().deletePendingTurn("turn-2"));
  ASSERT_OK(this->bots().deletePendingTurn("turn-2"));
  EXPECT_EQ(this->bots().listPendingTurns()->size(), 1u);
  EXPECT_CODE(this->bots().putPendingTurn(PendingTurn{}), ErrorCode::kInvalid);
}

TYPED_TEST(StoreContract, ImageAllowlistConfiguredOrNot) {
  EXPECT_CODE(this->bots().getImageAllowlist(kA), ErrorCode::kNotFound);
  EXPECT_CODE(this->bots().deleteImageAllowlist(kA), ErrorCode::kNotFound);
  ASSERT_OK(this->bots().putImageAllowlist(kA, {"img.example", "https://cdn.example/pub/"}));
  ASSERT_OK(this->bots().putImageAllowlist(kB, {"b.example"}));
  EXPECT_EQ(*this->bots().getImageAllowlist(kA),
            (std::vector<std::string>{"img.example", "https://cdn.example/pub/"}));
  // Replaced as a whole; an empty list is still configured.
  ASSERT_OK(this->bots().putImageAllowlist(kA, {}));
  auto empty = this->bots().getImageAllowlist(kA);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
  ASSERT_OK(this->bots().deleteImageAllowlist(kA));
  EXPECT_CODE(this->bots().getImageAllowlist(kA), ErrorCode::kNotFound);
  EXPECT_EQ(*this->bots().getImageAllowlist(kB), std::vector<std::string>{"b.example"});
  EXPECT_CODE(this->bots().putImageAllowlist(AccountId(), {"x.example"}), ErrorCode::kInvalid);
}

// The asynchronous forms: each `done` gets what the blocking call would have returned, the
// writes are visible once `done` ran, and completions come in submission order.
TYPED_TEST(StoreContract, AsyncWritesCompleteInOrderWithTheBlockingResults) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<std::string, ErrorCode>> results;  // tag, code (kInternal = ok)
  int pending = 0;
  auto track = [&](std::string tag) {
    {
      std::lock_guard lock(mu);
      ++pending;
    }
    return [&, tag = std::move(tag)](Status st) {
      std::lock_guard lock(mu);
      results.emplace_back(tag, st ? ErrorCode::kInternal : st.error().code);
      --pending;
      cv.notify_all();
    };
  };
  Conversation c = makeConversation(kA, "async");
  this->conv().saveConversationAsync(c, track("save"));
  for (std::int64_t seq = 0; seq < 20; ++seq) {
    c = advancedTo(c, makeMessage(c.id, seq));
    this->conv().appendMessageAsync(c, makeMessage(c.id, seq),
                                    track(numbered("m", static_cast<int>(seq))));
  }
  // A duplicate sequence fails alone; a message of another conversation is Invalid at once.
  this->conv().appendMessageAsync(advancedTo(c, makeMessage(c.id, 7)), makeMessage(c.id, 7),
                                  track("dup"));
  this->conv().appendMessageAsync(c, makeMessage(ConversationId("other"), 0), track("wrong"));
  Conversation hijack = makeConversation(kB, "async");
  this->conv().saveConversationAsync(hijack, track("hijack"));
  this->bots().appendTurnAsync(makeTurn(kA, "b1", "t1", 1), 5, track("turn"));
  this->bots().appendTurnAsync(makeTurn(kA, "b1", "", 2), 5, track("turn-noid"));
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return pending == 0; }));
  }
  // Invalid input is refused before queueing, so its `done` may run first; the queued writes
  // complete in submission order.
  std::vector<std::string> queued;
  std::map<std::string, ErrorCode> code;
  for (const auto& [tag, ec] : results) {
    code[tag] = ec;
    if (tag != "wrong" && tag != "turn-noid") queued.push_back(tag);
  }
  std::vector<std::string> expected{"save"};
  for (int i = 0; i < 20; ++i) expected.push_back(numbered("m", i));
  expected.insert(expected.end(), {"dup", "hijack", "turn"});
  EXPECT_EQ(queued, expected);
  EXPECT_EQ(code["save"], ErrorCode::kInternal);
  EXPECT_EQ(code["m19"], ErrorCode::kInternal);
  EXPECT_EQ(code["dup"], ErrorCode::kConflict);
  EXPECT_EQ(code["wrong"], ErrorCode::kInvalid);
  EXPECT_EQ(code["hijack"], ErrorCode::kConflict);
  EXPECT_EQ(code["turn"], ErrorCode::kInternal);
  EXPECT_EQ(code["turn-noid"], ErrorCode::kInvalid);
  auto all = this->conv().listMessages(c.id, 0, 100);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 20u);
  EXPECT_EQ((*all)[7].event_json, makeMessage(c.id, 7).event_json);
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->next_sequence, 20);
  EXPECT_EQ(this->bots().listTurns(kA, BotId("b1"), 10)->size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Concurrency

TYPED_TEST(StoreContract, ConcurrentWritersAllCommitExactly) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 150;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  std::atomic<int> conflicts{0};
  std::atomic<int> shared_ok{0};
  Conversation shared = makeConversation(kA, "shared");
  ASSERT_OK(this->conv().saveConversation(shared));
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Conversation own = makeConversation(kA, "own-" + std::to_string(t));
      for (int i = 0; i < kPerThread; ++i) {
        own = advancedTo(own, makeMessage(own.id, i));
        if (!this->conv().appendMessage(own, makeMessage(own.id, i))) ++failures;
        // Every thread tries every shared sequence: exactly one wins each, the rest Conflict,
        // and a losing write fails alone inside a batch of winners.
        auto r = this->conv().appendMessage(advancedTo(shared, makeMessage(shared.id, i)),
                                            makeMessage(shared.id, i));
        if (r) {
          ++shared_ok;
        } else if (r.error().code == ErrorCode::kConflict) {
          ++conflicts;
        } else {
          ++failures;
        }
        if (i % 50 == 0) {
          if (!this->acc().createUser(makeUser(kA, numbered("u", t) + numbered("-", i))))
            ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(shared_ok.load(), kPerThread);
  EXPECT_EQ(conflicts.load(), kPerThread * (kThreads - 1));
  for (int t = 0; t < kThreads; ++t) {
    ConversationId id("own-" + std::to_string(t));
    auto msgs = this->conv().listMessages(id, 0, 10'000);
    ASSERT_TRUE(msgs);
    ASSERT_EQ(msgs->size(), static_cast<std::size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) {
      EXPECT_EQ((*msgs)[static_cast<std::size_t>(i)].sequence, i);
      EXPECT_EQ((*msgs)[static_cast<std::size_t>(i)].event_json, makeMessage(id, i).event_json);
    }
    EXPECT_EQ(this->conv().getConversation(kA, id)->next_sequence, kPerThread);
  }
  EXPECT_EQ(this->conv().listMessages(shared.id, 0, 10'000)->size(),
            static_cast<std::size_t>(kPerThread));
  // Users created concurrently got distinct ids.
  auto users = this->acc().listUsers(kA);
  ASSERT_TRUE(users);
  std::set<std::string> ids;
  for (const auto& u : *users) ids.insert(u.id.str());
  EXPECT_EQ(users->size(), static_cast<std::size_t>(kThreads * 3));
  EXPECT_EQ(ids.size(), users->size());
  if constexpr (std::is_same_v<TypeParam, SqliteImpl>) {
    // Group commit: concurrent writers shared transactions.
    auto stats = sqliteWriteStats(*this->store_);
    ASSERT_TRUE(stats);
    EXPECT_GE(stats->writes, kThreads * kPerThread * 2);
    EXPECT_LT(stats->transactions, stats->writes);
    EXPECT_GT(stats->largest_batch, 1);
  }
  if constexpr (std::is_same_v<TypeParam, PostgresImpl>) {
    auto stats = postgresWriteStats(*this->store_);
    ASSERT_TRUE(stats);
    EXPECT_GE(stats->writes, kThreads * kPerThread * 2);
    EXPECT_LT(stats->transactions, stats->writes);
    EXPECT_GT(stats->largest_batch, 1);
  }
}

TYPED_TEST(StoreContract, ReadsRunWhileOthersWrite) {
  Conversation c = makeConversation(kA, "busy");
  // The readers' own copy: the writer reassigns `c` as it goes.
  const auto id = c.id;
  std::atomic<bool> stop{false};
  std::atomic<int> bad_reads{0};
  std::thread writer([&] {
    for (int i = 0; i < 300; ++i) {
      c = advancedTo(c, makeMessage(c.id, i));
      (void)this->conv().appendMessage(c, makeMessage(c.id, i));
    }
    stop = true;
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r)
    readers.emplace_back([&] {
      std::size_t last = 0;
      while (!stop) {
        auto msgs = this->conv().listMessages(id, 0, 1000);
        if (!msgs || msgs->size() < last) ++bad_reads;  // committed rows never disappear
        if (msgs) {
          last = msgs->size();
          for (std::size_t i = 0; i < msgs->size(); ++i)
            if ((*msgs)[i].sequence != static_cast<std::int64_t>(i)) ++bad_reads;
        }
      }
    });
  writer.join();
  for (auto& r : readers) r.join();
  EXPECT_EQ(bad_reads.load(), 0);
  EXPECT_EQ(this->conv().listMessages(c.id, 0, 1000)->size(), 300u);
}

// ---------------------------------------------------------------------------------------------
// Enum names

TEST(StoreNames, RoundTrip) {
  for (Role r : {Role::kAdmin, Role::kAgentManager, Role::kAgent, Role::kFaasAdmin,
                 Role::kFaasDeveloper, Role::kFaasInvocation})
    EXPECT_EQ(*parseRole(roleName(r)), r);
  EXPECT_EQ(*parseRole("Agent Manager"), Role::kAgentManager);
  EXPECT_STREQ(roleName(Role::kFaasDeveloper), "FAAS_DEVELOPER");
  EXPECT_STREQ(availabilityName(Availability::kBackSoon), "BACK_SOON");
  EXPECT_EQ(*parseAvailability("OCCUPIED"), Availability::kOccupied);
  EXPECT_EQ(*parseChannel("CHAT"), Channel::kChat);
  EXPECT_STREQ(channelName(Channel::kMessaging), "MESSAGING");
  EXPECT_EQ(*parseTtrType("PRIORITIZED"), TtrType::kPrioritized);
  EXPECT_STREQ(ttrTypeName(TtrType::kCustom), "CUSTOM");
  EXPECT_STREQ(stateName(ConversationState::kClose), "CLOSE");
  EXPECT_EQ(*parseConversationState("OPEN"), ConversationState::kOpen);
  EXPECT_EQ(*parseUserType("BOT"), UserType::kBot);
  auto bad = parseRole("root");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalid);
  EXPECT_NE(bad.error().message.find("ADMIN"), std::string::npos);
  for (BotStatus b : {BotStatus::kOnline, BotStatus::kOffline, BotStatus::kVendorInterruption,
                      BotStatus::kServiceInterruption})
    EXPECT_EQ(*parseBotStatus(botStatusName(b)), b);
  EXPECT_STREQ(botStatusName(BotStatus::kVendorInterruption), "VENDOR_INTERRUPTION");
  auto bad_status = parseBotStatus("online");
  ASSERT_FALSE(bad_status);
  EXPECT_EQ(bad_status.error().code, ErrorCode::kInvalid);
  EXPECT_NE(bad_status.error().message.find("SERVICE_INTERRUPTION"), std::string::npos);
}

// Every value of every enum store.h names round-trips through its wire (and stored) name, and
// the parser refuses any other text with Invalid naming the text.
template <class E, class NameFn, class ParseFn>
void expectNames(NameFn name, ParseFn parse, std::initializer_list<std::pair<E, const char*>> all,
                 std::initializer_list<const char*> unknown) {
  for (auto [value, text] : all) {
    EXPECT_STREQ(name(value), text);
    auto back = parse(text);
    ASSERT_TRUE(back) << text;
    EXPECT_EQ(*back, value) << text;
  }
  for (const char* bad : unknown) {
    auto r = parse(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
    EXPECT_NE(r.error().message.find(std::string("'") + bad + "'"), std::string::npos)
        << r.error().message;
  }
}

TEST(StoreNames, EveryEnumValueRoundTripsAndUnknownTextIsRefused) {
  using PR = ParticipantRole;
  expectNames<PR>(participantRoleName, parseParticipantRole,
                  {{PR::kConsumer, "CONSUMER"},
                   {PR::kAssignedAgent, "ASSIGNED_AGENT"},
                   {PR::kManager, "MANAGER"},
                   {PR::kReader, "READER"},
                   {PR::kController, "CONTROLLER"}},
                  {"AGENT", "assigned_agent", "ASSISTANT", ""});
  expectNames<ParticipantState>(
      participantStateName, parseParticipantState,
      {{ParticipantState::kActive, "ACTIVE"}, {ParticipantState::kSuggested, "SUGGESTED"}},
      {"SUSPENDED", "active", ""});
  expectNames<Audience>(
      audienceName, parseAudience,
      {{Audience::kAll, "ALL"}, {Audience::kAgentsAndManagers, "AGENTS_AND_MANAGERS"}},
      {"AGENTS", "all", ""});
  expectNames<CloseReason>(closeReasonName, parseCloseReason,
                           {{CloseReason::kConsumer, "CONSUMER"},
                            {CloseReason::kAgent, "AGENT"},
                            {CloseReason::kBot, "BOT"},
                            {CloseReason::kSystem, "SYSTEM"}},
                           {"BECAUSE", "bot", ""});
  expectNames<BotStatus>(botStatusName, parseBotStatus,
                         {{BotStatus::kOnline, "ONLINE"},
                          {BotStatus::kOffline, "OFFLINE"},
                          {BotStatus::kVendorInterruption, "VENDOR_INTERRUPTION"},
                          {BotStatus::kServiceInterruption, "SERVICE_INTERRUPTION"}},
                         {"online", "STOPPED", ""});
  expectNames<ConversationState>(
      stateName, parseConversationState,
      {{ConversationState::kOpen, "OPEN"}, {ConversationState::kClose, "CLOSE"}},
      {"CLOSED", "open", ""});
  expectNames<Availability>(availabilityName, parseAvailability,
                            {{Availability::kOnline, "ONLINE"},
                             {Availability::kOccupied, "OCCUPIED"},
                             {Availability::kAway, "AWAY"},
                             {Availability::kBackSoon, "BACK_SOON"},
                             {Availability::kOffline, "OFFLINE"}},
                            {"BUSY", ""});
  expectNames<Channel>(channelName, parseChannel,
                       {{Channel::kMessaging, "MESSAGING"}, {Channel::kChat, "CHAT"}}, {"SMS", ""});
  expectNames<TtrType>(ttrTypeName, parseTtrType,
                       {{TtrType::kUrgent, "URGENT"},
                        {TtrType::kNormal, "NORMAL"},
                        {TtrType::kPrioritized, "PRIORITIZED"},
                        {TtrType::kCustom, "CUSTOM"}},
                       {"LOW", ""});
  expectNames<UserType>(userTypeName, parseUserType,
                        {{UserType::kHuman, "HUMAN"}, {UserType::kBot, "BOT"}}, {"ROBOT", ""});
  expectNames<UserStatus>(userStatusName, parseUserStatus,
                          {{UserStatus::kEnabled, "ENABLED"}, {UserStatus::kDisabled, "DISABLED"}},
                          {"LOCKED", ""});
  expectNames<AccountStatus>(
      accountStatusName, parseAccountStatus,
      {{AccountStatus::kActive, "ACTIVE"}, {AccountStatus::kDisabled, "DISABLED"}},
      {"SUSPENDED", ""});
  expectNames<ScheduleState>(
      scheduleStateName, parseScheduleState,
      {{ScheduleState::kActive, "ACTIVE"}, {ScheduleState::kPaused, "PAUSED"}}, {"STOPPED", ""});
  expectNames<AuditInvoker>(auditInvokerName, parseAuditInvoker,
                            {{AuditInvoker::kPlatform, "platform"}, {AuditInvoker::kUser, "user"}},
                            {"USER", ""});
  expectNames<AuditOp>(auditOpName, parseAuditOp,
                       {{AuditOp::kRead, "read"}, {AuditOp::kWrite, "write"}}, {"delete", ""});
  expectNames<AuditOutcome>(
      auditOutcomeName, parseAuditOutcome,
      {{AuditOutcome::kAllowed, "allowed"}, {AuditOutcome::kRefused, "refused"}}, {"denied", ""});
  expectNames<FunctionState>(functionStateName, parseFunctionState,
                             {{FunctionState::kDraft, "Draft"},
                              {FunctionState::kProductive, "Productive"},
                              {FunctionState::kModified, "Modified"},
                              {FunctionState::kBuildError, "Build Error"},
                              {FunctionState::kDeployError, "Deploy Error"}},
                             {"productive", "Undeployed", ""});
  expectNames<DeploymentState>(deploymentStateName, parseDeploymentState,
                               {{DeploymentState::kProductive, "Productive"},
                                {DeploymentState::kBuildError, "Build Error"},
                                {DeploymentState::kDeployError, "Deploy Error"},
                                {DeploymentState::kUndeployed, "Undeployed"}},
                               {"Draft", "BuildError", ""});
}

// Conversation::close_reason as stored: "" is none, a name is that reason, other text Invalid.
TEST(StoreNames, CloseReasonTextHasNoneAsEmpty) {
  EXPECT_STREQ(closeReasonText(std::nullopt), "");
  EXPECT_STREQ(closeReasonText(CloseReason::kBot), "BOT");
  auto none = parseCloseReasonText("");
  ASSERT_TRUE(none);
  EXPECT_EQ(*none, std::nullopt);
  auto bot = parseCloseReasonText("BOT");
  ASSERT_TRUE(bot);
  EXPECT_EQ(*bot, CloseReason::kBot);
  auto bad = parseCloseReasonText("LATER");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("'LATER'"), std::string::npos) << bad.error().message;
}

// ---------------------------------------------------------------------------------------------
// Cluster material

TYPED_TEST(StoreContract, ClusterMaterialKeepsTheFirstValue) {
  ClusterStore* cl = this->store_->cluster();
  ASSERT_NE(cl, nullptr);
  EXPECT_CODE(cl->getMaterial("jwt.key"), ErrorCode::kNotFound);
  EXPECT_CODE(cl->putMaterialIfAbsent("", "x"), ErrorCode::kInvalid);
  auto first = cl->putMaterialIfAbsent("jwt.key", "first");
  ASSERT_OK(first);
  EXPECT_EQ(*first, "first");
  auto second = cl->putMaterialIfAbsent("jwt.key", "second");
  ASSERT_OK(second);
  EXPECT_EQ(*second, "first");
  EXPECT_EQ(cl->getMaterial("jwt.key").value(), "first");
  // Values are kept byte for byte (PEM text with newlines).
  const std::string pem = "-----BEGIN X-----\nAAAA\n-----END X-----\n";
  EXPECT_EQ(cl->putMaterialIfAbsent("tls", pem).value(), pem);
  EXPECT_EQ(cl->getMaterial("tls").value(), pem);
}

TYPED_TEST(StoreContract, ClusterMaterialRaceHasOneWinner) {
  ClusterStore* cl = this->store_->cluster();
  ASSERT_NE(cl, nullptr);
  constexpr int kThreads = 8;
  std::vector<std::string> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      auto r = cl->putMaterialIfAbsent("ca", numbered("node-", i));
      got[i] = r ? *r : "error: " + r.error().message;
    });
  for (auto& t : threads) t.join();
  EXPECT_TRUE(got[0].starts_with("node-")) << got[0];
  for (const auto& g : got) EXPECT_EQ(g, got[0]);
  EXPECT_EQ(cl->getMaterial("ca").value(), got[0]);
}

// ---------------------------------------------------------------------------------------------
// Conversation leases (two store handles on one database play two nodes; the memory store has
// one handle, so there "two nodes" are two names on it)

template <class Impl>
std::unique_ptr<Store> secondHandle(Store& first, const Clock& clock, const TempDir& dir) {
  if constexpr (std::is_same_v<Impl, MemoryImpl>) {
    (void)clock, (void)dir;
    return nullptr;  // the caller uses `first`
  } else if constexpr (std::is_same_v<Impl, SqliteImpl>) {
    (void)first;
    auto s = openSqliteStore(dir.file("parley.db"), clock);
    return s ? std::move(*s) : nullptr;
  } else {
    (void)first, (void)dir;
    auto s = openPostgresStore(parley::testing::PostgresServer::shared().uri("contract"), clock);
    return s ? std::move(*s) : nullptr;
  }
}

TYPED_TEST(StoreContract, LeaseTakeoverBumpsTheEpochAndFencesTheOldOwner) {
  auto other = secondHandle<TypeParam>(*this->store_, this->clock_, this->dir_);
  Store& node_b_store = other ? *other : *this->store_;
  ClusterStore& a = *this->store_->cluster();
  ClusterStore& b = *node_b_store.cluster();
  const ConversationId id("c-lease");
  EXPECT_CODE(a.getLease(id), ErrorCode::kNotFound);
  EXPECT_CODE(a.acquireLease(id, "", 3000), ErrorCode::kInvalid);
  EXPECT_CODE(a.acquireLease(id, "node-a", 0), ErrorCode::kInvalid);

  this->clock_.setMs(10'000);
  auto la = a.acquireLease(id, "node-a", 3000);
  ASSERT_OK(la);
  EXPECT_EQ(la->node, "node-a");
  EXPECT_EQ(la->epoch, 1);
  EXPECT_EQ(la->expires_at, 13'000);
  // Node a writes with its fence.
  Conversation c = makeConversation(kA, "c-lease");
  c.fence = la->fence();
  ASSERT_OK(this->conv().saveConversation(c));
  Message m0 = makeMessage(c.id, 0);
  ASSERT_OK(this->conv().appendMessage(advancedTo(c, m0), m0));
  EXPECT_TRUE(this->conv().getConversation(kA, c.id)->fence.empty());  // never stored

  // Node b cannot take an unexpired lease.
  this->clock_.setMs(12'999);
  EXPECT_CODE(b.acquireLease(id, "node-b", 3000), ErrorCode::kConflict);
  // After expiry it can: a takeover bumps the epoch.
  this->clock_.setMs(13'000);
  auto lb = b.acquireLease(id, "node-b", 3000);
  ASSERT_OK(lb);
  EXPECT_EQ(lb->node, "node-b");
  EXPECT_EQ(lb->epoch, 2);
  EXPECT_EQ(a.getLease(id)->node, "node-b");

  // The old owner's writes are refused and change nothing; its renewal too.
  Message m1 = makeMessage(c.id, 1);
  EXPECT_CODE(this->conv().appendMessage(advancedTo(c, m1), m1), ErrorCode::kUnavailable);
  Conversation closed = c;
  closed.state = ConversationState::kClose;
  EXPECT_CODE(this->conv().saveConversation(closed), ErrorCode::kUnavailable);
  std::promise<Status> async_done;
  this->conv().appendMessageAsync(advancedTo(c, m1), m1,
                                  [&](Status st) { async_done.set_value(std::move(st)); });
  EXPECT_CODE(async_done.get_future().get(), ErrorCode::kUnavailable);
  EXPECT_CODE(a.renewLease(id, "node-a", 1, 3000), ErrorCode::kConflict);
  EXPECT_EQ(this->conv().listMessages(c.id, 0, 10)->size(), 1u);
  EXPECT_EQ(this->conv().getConversation(kA, c.id)->state, ConversationState::kOpen);
  // An unfenced write or a write without a lease: the first is a single node's, the second refused.
  Conversation no_lease = makeConversation(kA, "c-unleased");
  no_lease.fence = Fence{"node-a", 1};
  EXPECT_CODE(this->conv().saveConversation(no_lease), ErrorCode::kUnavailable);

  // The new owner writes with its fence.
  Conversation cb = c;
  cb.fence = lb->fence();
  ASSERT_OK(node_b_store.conversations().appendMessage(advancedTo(cb, m1), m1));
  EXPECT_EQ(this->conv().listMessages(c.id, 0, 10)->size(), 2u);
}

TYPED_TEST(StoreContract, LeaseRenewalKeepsItAndExpiryFreesIt) {
  ClusterStore& cl = *this->store_->cluster();
  const ConversationId id("c-renew");
  this->clock_.setMs(1000);
  auto l = cl.acquireLease(id, "node-a", 3000);
  ASSERT_OK(l);
  // Renewed every second for ten seconds: nobody can take it, the epoch stays.
  for (int i = 1; i <= 10; ++i) {
    this->clock_.setMs(1000 + i * 1000);
    auto r = cl.renewLease(id, "node-a", l->epoch, 3000);
    ASSERT_OK(r);
    EXPECT_EQ(r->epoch, 1);
    EXPECT_EQ(r->expires_at, 4000 + i * 1000);
    EXPECT_CODE(cl.acquireLease(id, "node-b", 3000), ErrorCode::kConflict);
  }
  // Acquiring its own unexpired lease renews it too.
  EXPECT_EQ(cl.acquireLease(id, "node-a", 3000)->epoch, 1);
  // Expired but not taken: the owner may still renew (epoch kept).
  this->clock_.setMs(20'000);
  auto late = cl.renewLease(id, "node-a", 1, 3000);
  ASSERT_OK(late);
  EXPECT_EQ(late->epoch, 1);
  // Released: another node takes it at once, with the next epoch.
  ASSERT_OK(cl.releaseLease(id, "node-a", 1));
  auto taken = cl.acquireLease(id, "node-b", 3000);
  ASSERT_OK(taken);
  EXPECT_EQ(taken->epoch, 2);
  // Releasing a lease one does not hold does nothing.
  ASSERT_OK(cl.releaseLease(id, "node-a", 1));
  EXPECT_CODE(cl.acquireLease(id, "node-a", 3000), ErrorCode::kConflict);
  // A node that let its own lease expire takes it back with a new epoch.
  this->clock_.setMs(23'000);
  EXPECT_EQ(cl.acquireLease(id, "node-b", 3000)->epoch, 3);
}

TYPED_TEST(StoreContract, LeaseRaceHasOneWinner) {
  ClusterStore& cl = *this->store_->cluster();
  const ConversationId id("c-race");
  constexpr int kNodes = 6;
  std::atomic<int> won{0}, refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kNodes; ++i)
    threads.emplace_back([&, i] {
      auto r = cl.acquireLease(id, numbered("node-", i), 3000);
      if (r) {
        ++won;
      } else if (r.error().code == ErrorCode::kConflict) {
        ++refused;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(refused.load(), kNodes - 1);
  EXPECT_EQ(cl.getLease(id)->epoch, 1);
}

TYPED_TEST(StoreContract, LeasesRenewInOneCallAndTakenOnesAreLeftOut) {
  ClusterStore& cl = *this->store_->cluster();
  this->clock_.setMs(1000);
  std::vector<Lease> held;
  for (const char* id : {"c-r1", "c-r2", "c-r3"}) {
    auto l = cl.acquireLease(ConversationId(id), "node-a", 3000);
    ASSERT_OK(l);
    held.push_back(*l);
  }
  EXPECT_CODE(cl.renewLeases("", held, 3000), ErrorCode::kInvalid);
  EXPECT_CODE(cl.renewLeases("node-a", held, 0), ErrorCode::kInvalid);
  EXPECT_TRUE(cl.renewLeases("node-a", {}, 3000)->empty());
  // c-r3 expires and node-b takes it; c-r2 expired too but nobody took it.
  this->clock_.setMs(4000);
  ASSERT_OK(cl.acquireLease(ConversationId("c-r3"), "node-b", 3000));
  auto renewed = cl.renewLeases("node-a", held, 3000);
  ASSERT_OK(renewed);
  std::vector<std::string> ids;
  for (const auto& l : *renewed) {
    ids.push_back(l.conversation.str());
    EXPECT_EQ(l.node, "node-a");
    EXPECT_EQ(l.epoch, 1);
    EXPECT_EQ(l.expires_at, 7000);
  }
  std::ranges::sort(ids);
  EXPECT_EQ(ids, (std::vector<std::string>{"c-r1", "c-r2"}));
  EXPECT_EQ(cl.getLease(ConversationId("c-r2"))->expires_at, 7000);
  EXPECT_EQ(cl.getLease(ConversationId("c-r3"))->node, "node-b");
  // A stale epoch renews nothing.
  held[0].epoch = 7;
  EXPECT_TRUE(cl.renewLeases("node-a", {held[0]}, 3000)->empty());
}

// A node giving its conversations up releases them in one call: each lease it still holds at
// the given epoch expires now (the next taker bumps the epoch), whatever else is left alone.
TYPED_TEST(StoreContract, LeasesReleaseInOneCallAndOnlyTheHeldOnes) {
  ClusterStore& cl = *this->store_->cluster();
  this->clock_.setMs(1000);
  std::vector<Lease> held;
  for (const char* id : {"c-g1", "c-g2", "c-g3", "c-g4"}) {
    auto l = cl.acquireLease(ConversationId(id), "node-a", 3000);
    ASSERT_OK(l);
    held.push_back(*l);
  }
  ASSERT_OK(cl.acquireLease(ConversationId("c-g5"), "node-a", 3000));  // not in the batch
  EXPECT_CODE(cl.releaseLeases("", held), ErrorCode::kInvalid);
  ASSERT_OK(cl.releaseLeases("node-a", {}));
  // c-g3 expired and node-b took it; c-g4 is named with a stale epoch.
  this->clock_.setMs(4000);
  ASSERT_OK(cl.acquireLease(ConversationId("c-g3"), "node-b", 3000));
  ASSERT_OK(cl.renewLease(ConversationId("c-g1"), "node-a", 1, 3000));
  ASSERT_OK(cl.renewLease(ConversationId("c-g4"), "node-a", 1, 3000));
  ASSERT_OK(cl.renewLease(ConversationId("c-g5"), "node-a", 1, 3000));
  held[3].epoch = 9;
  this->clock_.setMs(5000);
  ASSERT_OK(cl.releaseLeases("node-a", held));
  EXPECT_EQ(cl.getLease(ConversationId("c-g1"))->expires_at, 5000);  // released now
  EXPECT_EQ(cl.getLease(ConversationId("c-g2"))->expires_at, 4000);  // expired before: kept
  EXPECT_EQ(cl.getLease(ConversationId("c-g3"))->node, "node-b");
  EXPECT_EQ(cl.getLease(ConversationId("c-g3"))->expires_at, 7000);
  EXPECT_EQ(cl.getLease(ConversationId("c-g4"))->expires_at, 7000);  // stale epoch: untouched
  EXPECT_EQ(cl.getLease(ConversationId("c-g5"))->expires_at, 7000);
  // Another node takes a released lease at once, with the next epoch.
  auto taken = cl.acquireLease(ConversationId("c-g1"), "node-b", 3000);
  ASSERT_OK(taken);
  EXPECT_EQ(taken->epoch, 2);
  // Releasing again (nothing held any more at those epochs) changes nothing.
  ASSERT_OK(cl.releaseLeases("node-a", held));
  EXPECT_EQ(cl.getLease(ConversationId("c-g1"))->node, "node-b");
  EXPECT_EQ(cl.getLease(ConversationId("c-g1"))->expires_at, 8000);
}

TYPED_TEST(StoreContract, ClaimTakesOpenConversationsThatNobodyHolds) {
  ClusterStore& cl = *this->store_->cluster();
  this->clock_.setMs(1000);
  for (int i = 0; i < 4; ++i) {
    Conversation c = makeConversation(kA, numbered("c-claim-", i));
    c.start_ts = 100 + i;
    if (i == 3) c.state = ConversationState::kClose;
    ASSERT_OK(this->conv().saveConversation(c));
  }
  EXPECT_CODE(cl.claimLeases("", 3000, 10), ErrorCode::kInvalid);
  EXPECT_CODE(cl.claimLeases("node-b", 0, 10), ErrorCode::kInvalid);
  EXPECT_CODE(cl.claimLeases("node-b", 3000, 0), ErrorCode::kInvalid);
  ASSERT_OK(cl.acquireLease(ConversationId("c-claim-0"), "node-a", 3000));
  // The held one and the closed one are not taken; the limit takes the oldest first.
  auto first = cl.claimLeases("node-b", 3000, 1);
  ASSERT_OK(first);
  ASSERT_EQ(first->size(), 1u);
  EXPECT_EQ((*first)[0].conversation.str(), "c-claim-1");
  EXPECT_EQ((*first)[0].node, "node-b");
  EXPECT_EQ((*first)[0].epoch, 1);
  EXPECT_EQ((*first)[0].expires_at, 4000);
  auto rest = cl.claimLeases("node-b", 3000, 10);
  ASSERT_OK(rest);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].conversation.str(), "c-claim-2");
  EXPECT_TRUE(cl.claimLeases("node-c", 3000, 10)->empty());
  // node-a stops renewing: its lease is taken with the next epoch, and its fence is refused.
  this->clock_.setMs(4000);
  auto taken = cl.claimLeases("node-c", 3000, 10);
  ASSERT_OK(taken);
  ASSERT_EQ(taken->size(), 3u);
  EXPECT_EQ((*taken)[0].conversation.str(), "c-claim-0");
  EXPECT_EQ((*taken)[0].epoch, 2);
  EXPECT_EQ(cl.getLease(ConversationId("c-claim-0"))->node, "node-c");
  Conversation stale = makeConversation(kA, "c-claim-0");
  stale.fence = Fence{"node-a", 1};
  EXPECT_CODE(this->conv().saveConversation(stale), ErrorCode::kUnavailable);
  EXPECT_TRUE(cl.getLease(ConversationId("c-claim-3")).error().code == ErrorCode::kNotFound);
}

TYPED_TEST(StoreContract, RacingClaimersSplitTheLeases) {
  auto other = secondHandle<TypeParam>(*this->store_, this->clock_, this->dir_);
  Store& second = other ? *other : *this->store_;
  this->clock_.setMs(1000);
  constexpr int kConversations = 40;
  for (int i = 0; i < kConversations; ++i)
    ASSERT_OK(this->conv().saveConversation(makeConversation(kA, numbered("c-split-", i))));
  std::vector<Lease> got[2];
  std::thread ta([&] {
    for (int i = 0; i < 20; ++i)
      if (auto r = this->store_->cluster()->claimLeases("node-a", 3000, 3))
        got[0].insert(got[0].end(), r->begin(), r->end());
  });
  std::thread tb([&] {
    for (int i = 0; i < 20; ++i)
      if (auto r = second.cluster()->claimLeases("node-b", 3000, 3))
        got[1].insert(got[1].end(), r->begin(), r->end());
  });
  ta.join();
  tb.join();
  std::set<std::string> ids;
  for (int n = 0; n < 2; ++n)
    for (const auto& l : got[n]) {
      EXPECT_TRUE(ids.insert(l.conversation.str()).second) << l.conversation.str();
      EXPECT_EQ(this->store_->cluster()->getLease(l.conversation)->node, l.node);
    }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kConversations));
}

// ---------------------------------------------------------------------------------------------
// Erasure of a conversation's content (Store::eraseConversationContent)

// A closed conversation with content everywhere erasure reaches: messages (content, rich
// content, a receipt, metadata), conversationContext, turn records (one still buffered in
// SQLite: appended asynchronously), a pending turn, context properties keyed by it.
Conversation fillForErasure(Store& s, const AccountId& a, const std::string& id, bool close) {
  Conversation c = makeConversation(a, id);
  c.context_json = R"({"visitorId":"v-1","sessionId":"s-1","sdes":[{"type":"ctmrinfo"}]})";
  c.participants = {
      Participant{"consumer-" + id, ParticipantRole::kConsumer, ParticipantState::kActive, 1}};
  EXPECT_TRUE(s.conversations().saveConversation(c));
  Message m0 = makeMessage(c.id, 0);
  m0.metadata_json = R"([{"type":"ActionReason","reason":"my card is 4111"}])";
  Message m1 = makeMessage(c.id, 1);
  m1.event_json = R"({"type":"RichContentEvent","content":{"type":"text","text":"home"}})";
  m1.originator_role = ParticipantRole::kAssignedAgent;
  m1.originator_id = a.str() + ".2000";
  m1.turn = TurnMark{"turn-1", 5, 0, 0, true};
  Message m2 = makeMessage(c.id, 2);
  m2.event_json = R"({"type":"AcceptStatusEvent","status":"READ","sequenceList":[1]})";
  for (const Message& m : {m0, m1, m2}) {
    c = advancedTo(c, m);
    EXPECT_TRUE(s.conversations().appendMessage(c, m));
  }
  if (close) {
    c.state = ConversationState::kClose;
    c.end_ts = 2000;
    c.close_reason = CloseReason::kConsumer;
    EXPECT_TRUE(s.conversations().saveConversation(c));
  }
  TurnRecord done = makeTurn(a, "b1", "turn-" + id, 10);
  done.conversation = c.id;
  done.response_json = R"({"messages":["hello Ann"]})";
  done.actions_json = R"([{"kind":"SDES","message":"Ann"}])";
  done.error = "Ann said no";
  EXPECT_TRUE(s.bots().appendTurn(done, 10));
  TurnRecord buffered = makeTurn(a, "b1", "turn-late-" + id, 11);
  buffered.conversation = c.id;
  s.bots().appendTurnAsync(buffered, 10, [](Status) {});
  EXPECT_TRUE(s.bots().putPendingTurn(PendingTurn{a, BotId("b1"), c.id, "pending-" + id, "{}", 1}));
  EXPECT_TRUE(s.functions().putContextProperty(
      ContextProperty{a, "__parley.sdes", c.id.str(), "sdes", R"([{"type":"personal"}])", 0}));
  EXPECT_TRUE(s.functions().putContextProperty(
      ContextProperty{a, "mine", c.id.str(), "name", R"("Ann")", 0}));
  EXPECT_TRUE(
      s.functions().putContextProperty(ContextProperty{a, "mine", "other", "name", R"("Bob")", 0}));
  return c;
}

TYPED_TEST(StoreContract, ErasureOfAClosedConversationKeepsOnlyItsMetadata) {
  // "gone" last, so that its asynchronously appended turn record is still buffered (SQLite):
  // another synchronous appendTurn would write the buffer first.
  Conversation other = fillForErasure(*this->store_, kA, "kept", true);
  Conversation c = fillForErasure(*this->store_, kA, "gone", true);

  auto r = this->store_->eraseConversationContent(kA, c.id);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->messages, 2);  // the receipt had no metadata and is kept as it was
  EXPECT_TRUE(r->context);
  EXPECT_EQ(r->turns, 2);  // the buffered one too
  EXPECT_EQ(r->pending_turns, 1);
  EXPECT_EQ(r->properties, 2);

  // The row keeps everything but conversationContext.
  auto got = this->conv().getConversation(kA, c.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->context_json, "{}");
  EXPECT_EQ(got->consumer, c.consumer);
  EXPECT_EQ(got->state, ConversationState::kClose);
  EXPECT_EQ(got->close_reason, CloseReason::kConsumer);
  EXPECT_EQ(got->start_ts, c.start_ts);
  EXPECT_EQ(got->end_ts, 2000);
  EXPECT_EQ(got->next_sequence, 3);
  ASSERT_EQ(got->participants.size(), 1u);
  // Messages: same sequences, times and originators; content and metadata gone; the receipt
  // is kept.
  auto ms = this->conv().listMessages(c.id, 0, 10);
  ASSERT_TRUE(ms);
  ASSERT_EQ(ms->size(), 3u);
  for (std::int64_t i = 0; i < 3; ++i) {
    const Message& m = (*ms)[static_cast<std::size_t>(i)];
    EXPECT_EQ(m.sequence, i);
    EXPECT_EQ(m.server_ts, 1000 + i);
    EXPECT_EQ(m.metadata_json, "[]");
  }
  EXPECT_EQ((*ms)[0].event_json, kErasedEventJson);
  EXPECT_EQ((*ms)[1].event_json, kErasedEventJson);
  EXPECT_EQ((*ms)[1].originator_role, ParticipantRole::kAssignedAgent);
  EXPECT_EQ((*ms)[1].turn, (TurnMark{"turn-1", 5, 0, 0, true}));
  EXPECT_EQ((*ms)[2].event_json,
            R"({"type":"AcceptStatusEvent","status":"READ","sequenceList":[1]})");
  // Turn records keep ids, time and outcome; their texts are gone.
  auto turns = this->bots().listTurns(kA, BotId("b1"), 10);
  ASSERT_TRUE(turns);
  ASSERT_EQ(turns->size(), 4u);
  for (const TurnRecord& t : *turns) {
    if (t.conversation == c.id) {
      EXPECT_EQ(t.input_json, "{}") << t.turn_id;
      EXPECT_EQ(t.response_json, "{}") << t.turn_id;
      EXPECT_EQ(t.actions_json, "[]") << t.turn_id;
      EXPECT_EQ(t.error, "") << t.turn_id;
      EXPECT_EQ(t.outcome, "OK") << t.turn_id;
    } else {
      EXPECT_NE(t.input_json, "{}") << t.turn_id;
    }
  }
  auto pending = this->bots().listPendingTurns();
  ASSERT_TRUE(pending);
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].conversation, other.id);
  EXPECT_TRUE(this->fn().listContextProperties(kA, "__parley.sdes", c.id.str())->empty());
  EXPECT_TRUE(this->fn().listContextProperties(kA, "mine", c.id.str())->empty());
  EXPECT_EQ(this->fn().listContextProperties(kA, "mine", "other")->size(), 1u);

  // The other conversation is untouched.
  EXPECT_EQ(this->conv().getConversation(kA, other.id)->context_json, other.context_json);
  auto kept = this->conv().listMessages(other.id, 0, 10);
  ASSERT_TRUE(kept);
  ASSERT_EQ(kept->size(), 3u);
  EXPECT_EQ((*kept)[0].event_json, makeMessage(other.id, 0).event_json);
  EXPECT_NE((*kept)[0].metadata_json, "[]");
  EXPECT_EQ(this->fn().listContextProperties(kA, "mine", other.id.str())->size(), 1u);

  // Idempotent: a second erasure finds nothing left and changes nothing.
  auto again = this->store_->eraseConversationContent(kA, c.id);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->messages, 0);
  EXPECT_FALSE(again->context);
  EXPECT_EQ(again->turns, 0);
  EXPECT_EQ(again->pending_turns, 0);
  EXPECT_EQ(again->properties, 0);
  EXPECT_EQ((*this->conv().listMessages(c.id, 0, 10))[0].event_json, kErasedEventJson);
}

// A bot turn's record is written asynchronously: one that reaches the store after the erasure
// of its conversation (the erasure landed between the turn and its record) is stored without
// texts, both through appendTurn and appendTurnAsync; the same conversation id in another
// account, and other conversations, keep theirs.
TYPED_TEST(StoreContract, ATurnRecordWrittenAfterTheErasureCarriesNoTexts) {
  Conversation c = fillForErasure(*this->store_, kA, "erased-first", true);
  ASSERT_TRUE(this->store_->eraseConversationContent(kA, c.id));
  auto late = [&](const std::string& id, const AccountId& a, const ConversationId& conv) {
    TurnRecord t = makeTurn(a, "b1", id, 20);
    t.conversation = conv;
    t.response_json = R"({"messages":["your card 4111"]})";
    t.actions_json = R"([{"kind":"TEXT","text":"4111"}])";
    t.error = "4111 refused";
    return t;
  };
  ASSERT_TRUE(this->bots().appendTurn(late("late-sync", kA, c.id), 10));
  std::promise<Status> written;
  this->bots().appendTurnAsync(late("late-async", kA, c.id), 10,
                               [&](Status st) { written.set_value(st); });
  ASSERT_TRUE(written.get_future().get());
  ASSERT_TRUE(this->bots().appendTurn(late("elsewhere", kA, ConversationId("c-open")), 10));
  ASSERT_TRUE(this->bots().appendTurn(late("other-account", kB, c.id), 10));
  auto turns = this->bots().listTurns(kA, BotId("b1"), 10);
  ASSERT_TRUE(turns);
  int erased = 0;
  for (const TurnRecord& t : *turns) {
    if (t.turn_id != "late-sync" && t.turn_id != "late-async") continue;
    ++erased;
    EXPECT_EQ(t.input_json, "{}") << t.turn_id;
    EXPECT_EQ(t.response_json, "{}") << t.turn_id;
    EXPECT_EQ(t.actions_json, "[]") << t.turn_id;
    EXPECT_EQ(t.error, "") << t.turn_id;
    EXPECT_EQ(t.outcome, "OK") << t.turn_id;
    EXPECT_EQ(t.ts, 20) << t.turn_id;
  }
  EXPECT_EQ(erased, 2);
  for (const auto& [acc, id] : {std::pair{kA, "elsewhere"}, std::pair{kB, "other-account"}}) {
    auto kept = this->bots().listTurns(acc, BotId("b1"), 10);
    ASSERT_TRUE(kept);
    auto it = std::ranges::find_if(*kept, [&](const TurnRecord& t) { return t.turn_id == id; });
    ASSERT_NE(it, kept->end()) << id;
    EXPECT_EQ(it->response_json, R"({"messages":["your card 4111"]})") << id;
    EXPECT_EQ(it->error, "4111 refused") << id;
  }
}

TYPED_TEST(StoreContract, ErasureRefusesAnOpenConversationAndAnotherAccounts) {
  Conversation open = fillForErasure(*this->store_, kA, "open", false);
  auto r = this->store_->eraseConversationContent(kA, open.id);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
  EXPECT_NE(r.error().message.find("open"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(open.id.str()), std::string::npos) << r.error().message;
  // Nothing changed.
  EXPECT_EQ(this->conv().getConversation(kA, open.id)->context_json, open.context_json);
  EXPECT_EQ((*this->conv().listMessages(open.id, 0, 10))[0].event_json,
            makeMessage(open.id, 0).event_json);
  EXPECT_EQ(this->fn().listContextProperties(kA, "mine", open.id.str())->size(), 1u);

  Conversation closed = fillForErasure(*this->store_, kA, "closed", true);
  EXPECT_CODE(this->store_->eraseConversationContent(kB, closed.id), ErrorCode::kNotFound);
  EXPECT_CODE(this->store_->eraseConversationContent(kA, ConversationId("never")),
              ErrorCode::kNotFound);
  EXPECT_EQ((*this->conv().listMessages(closed.id, 0, 10))[0].event_json,
            makeMessage(closed.id, 0).event_json);
}

TEST(StoreErasure, TombstonesEverythingButReceipts) {
  EXPECT_EQ(erasedEventJson(R"({"type":"ContentEvent","message":"hi"})"), kErasedEventJson);
  EXPECT_EQ(erasedEventJson(R"({"type":"RichContentEvent","content":{}})"), kErasedEventJson);
  EXPECT_EQ(erasedEventJson("not json"), kErasedEventJson);
  const std::string receipt =
      R"({"type":"AcceptStatusEvent","status":"ACCEPT","sequenceList":[0]})";
  EXPECT_EQ(erasedEventJson(receipt), receipt);
  EXPECT_EQ(erasedEventJson(kErasedEventJson), kErasedEventJson);
}

}  // namespace
}  // namespace parley::store
