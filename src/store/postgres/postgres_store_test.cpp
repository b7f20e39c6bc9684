// What the PostgreSQL store adds to the contract suite (store_test.cpp): URIs, migrations by
// several nodes at once, durability of acknowledged asynchronous writes as seen by another
// connection, and connection loss. Runs against the test binary's own server
// (store/testing/postgres_server.h).

#include "store/postgres/postgres_store.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/fake_clock.h"
#include "store/postgres/conn.h"
#include "store/testing/postgres_server.h"

namespace parley::store {
namespace {

using parley::testing::FakeClock;
using parley::testing::PostgresServer;

// A fresh database's URI; fails the test when the server is not there.
std::string freshDatabase() {
  auto& server = PostgresServer::shared();
  std::string uri = server.createDatabase();
  EXPECT_FALSE(uri.empty()) << server.error();
  return uri;
}

// The first column of the first row of `sql` on its own connection ("" when none).
std::string rawQuery(const std::string& uri, const std::string& sql) {
  PGconn* c = PQconnectdb(uri.c_str());
  EXPECT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  PGresult* r = PQexec(c, sql.c_str());
  EXPECT_TRUE(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)
      << PQresultErrorMessage(r);
  std::string out;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) out = PQgetvalue(r, 0, 0);
  PQclear(r);
  PQfinish(c);
  return out;
}

// A TCP proxy in front of the test server that can lose a connection around its next COMMIT
// (as a server restart or a network failure would): either after forwarding the COMMIT, dropping
// the server's answer (the transaction commits, the client cannot know), or before it (the
// server sees the client vanish mid-transaction and rolls back). Other connections and later
// ones pass untouched.
class CommitCuttingProxy {
 public:
  enum class Cut { kNone, kAnswer, kCommit };

  explicit CommitCuttingProxy(int upstream_port) : upstream_port_(upstream_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listener_, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }
  ~CommitCuttingProxy() {
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    acceptor_.join();
    std::vector<std::thread> pumps;
    {
      std::lock_guard lock(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
      pumps.swap(pumps_);
    }
    for (auto& t : pumps) t.join();
    for (int fd : fds_) ::close(fd);
  }
  int port() const { return port_; }
  // The next COMMIT any connection sends is cut as `cut` says (once). With kCommit,
  // `before_cut` (if given) runs on the proxy's thread before the connection is cut, while the
  // server still holds the transaction open (e.g. to crash the server then).
  void cutNextCommit(Cut cut, std::function<void()> before_cut = {}) {
    {
      std::lock_guard lock(mu_);
      before_cut_ = std::move(before_cut);
    }
    next_cut_ = cut;
  }
  int cuts() const { return cuts_; }
  // While on, a new connection is closed at once (its client sees the server go away); links
  // already open are not touched.
  void refuseConnections(bool on) { refuse_ = on; }

 private:
  struct Link {
    int client;
    int server;
    std::atomic<bool> drop_answers{false};
  };

  void acceptLoop() {
    for (;;) {
      int client = ::accept(listener_, nullptr, nullptr);
      if (client < 0) return;
      if (refuse_) {
        ::close(client);
        continue;
      }
      int server = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<std::uint16_t>(upstream_port_));
      if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      auto link = std::make_shared<Link>();
      link->client = client;
      link->server = server;
      std::lock_guard lock(mu_);
      fds_.push_back(client);
      fds_.push_back(server);
      pumps_.emplace_back([this, link] { toServer(*link); });
      pumps_.emplace_back([link] { toClient(*link); });
    }
  }

  static void cutLink(Link& l) {
    ::shutdown(l.client, SHUT_RDWR);
    ::shutdown(l.server, SHUT_RDWR);
  }

  void toServer(Link& l) {
    static constexpr char kCommit[] = "COMMIT";  // a simple query's text ends with its NUL
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(l.client, buf, sizeof buf, 0);
      if (n <= 0) break;
      const std::string_view chunk(buf, static_cast<std::size_t>(n));
      const bool commit = chunk.find(std::string_view(kCommit, sizeof kCommit)) != chunk.npos;
      Cut cut = commit ? next_cut_.exchange(Cut::kNone) : Cut::kNone;
      if (cut == Cut::kCommit) {
        std::function<void()> before;
        {
          std::lock_guard lock(mu_);
          before.swap(before_cut_);
        }
        if (before) before();
        ++cuts_;
        cutLink(l);
        break;
      }
      if (cut == Cut::kAnswer) l.drop_answers = true;
      if (::send(l.server, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) break;
      if (cut == Cut::kAnswer) {
        ++cuts_;
        // The server has the COMMIT; its answer is dropped, then the connection is lost.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        cutLink(l);
        break;
      }
    }
    ::shutdown(l.server, SHUT_WR);
  }

  static void toClient(Link& l) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(l.server, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (l.drop_answers) continue;
      if (::send(l.client, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) break;
    }
    ::shutdown(l.client, SHUT_WR);
  }

  const int upstream_port_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<Cut> next_cut_{Cut::kNone};
  std::atomic<int> cuts_{0};
  std::atomic<bool> refuse_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::function<void()> before_cut_;  // guarded by mu_
  std::vector<int> fds_;              // guarded by mu_
  std::vector<std::thread> pumps_;    // guarded by mu_
};

// `n` stores on one database, as `n` nodes open it; fails the test (and returns fewer) when
// one cannot open.
std::vector<std::unique_ptr<Store>> openNodes(const std::string& uri, const Clock& clock, int n,
                                              const PostgresOptions& options = {}) {
  std::vector<std::unique_ptr<Store>> nodes;
  for (int i = 0; i < n; ++i) {
    auto s = openPostgresStore(uri, clock, options);
    if (!s) {
      ADD_FAILURE() << s.error().message;
      break;
    }
    nodes.push_back(std::move(*s));
  }
  return nodes;
}

Conversation conversation(const std::string& id) {
  Conversation c;
  c.id = ConversationId(id);
  c.account = AccountId("1001");
  c.consumer = ConsumerId("consumer-" + id);
  c.start_ts = 1;
  return c;
}

Message message(const Conversation& c, std::int64_t seq) {
  Message m;
  m.conversation = c.id;
  m.sequence = seq;
  m.server_ts = 100 + seq;
  m.originator_id = "consumer";
  m.event_json = R"({"type":"ContentEvent","message":"m)" + std::to_string(seq) + R"("})";
  return m;
}

Conversation advanced(Conversation c, const Message& m) {
  c.next_sequence = m.sequence + 1;
  c.updated_at = m.server_ts;
  return c;
}

// A node paused inside a turn record's transaction (SIGSTOP, a stall) keeps that transaction
// open; the conversation's next owner must still write the conversation. Here the turn write is
// held open by a raw transaction holding the turn id it inserts (its INSERT waits, after what
// comes before it in the transaction), and another store appends a message to the conversation:
// it must complete, not wait for a lock. It waited while the turn write read the conversation's
// row FOR SHARE (integration.js.cluster_faults: a takeover's first publish waited past 5 s).
TEST(PostgresStore, ATurnWriteHeldOpenDoesNotHoldUpTheConversationsWrites) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  auto paused = openPostgresStore(uri, clock, PostgresOptions{.readers = 1});
  ASSERT_TRUE(paused) << paused.error().message;
  auto owner = openPostgresStore(uri, clock, PostgresOptions{.readers = 1});
  ASSERT_TRUE(owner) << owner.error().message;
  Conversation c = conversation("held");
  ASSERT_TRUE((*owner)->conversations().saveConversation(c));

  PGconn* raw = PQconnectdb(uri.c_str());
  ASSERT_EQ(PQstatus(raw), CONNECTION_OK) << PQerrorMessage(raw);
  PGresult* r = PQexec(raw,
                       "BEGIN; INSERT INTO turns(account, bot, conversation, turn_id, ts, outcome, "
                       "input_json, response_json, actions_json, timings_json, error) VALUES "
                       "('1001', 'bot-1', 'held', 't-1', 1, 'OK', '{}', '{}', '[]', '{}', '')");
  ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  auto lockWaits = [&] {
    return rawQuery(uri, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'");
  };

  TurnRecord t;
  t.account = AccountId("1001");
  t.bot = BotId("bot-1");
  t.conversation = c.id;
  t.turn_id = "t-1";
  t.ts = 2;
  t.outcome = "OK";
  t.input_json = "{}";
  t.response_json = "{}";
  Status turned;
  std::thread turn([&] { turned = (*paused)->bots().appendTurn(t, 10); });
  while (lockWaits() != "1") std::this_thread::sleep_for(std::chrono::milliseconds(10));

  std::atomic<bool> appended_done{false};
  Status appended;
  std::thread append([&] {
    Message m = message(c, 0);
    appended = (*owner)->conversations().appendMessage(advanced(c, m), m);
    appended_done = true;
  });
  bool waited = false;
  while (!appended_done) {
    if (lockWaits() == "2") {
      waited = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(waited) << "the append waited for the held turn write's transaction";
  r = PQexec(raw, "ROLLBACK");
  PQclear(r);
  PQfinish(raw);
  append.join();
  turn.join();
  EXPECT_TRUE(appended) << appended.error().message;
  EXPECT_TRUE(turned) << turned.error().message;
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM messages WHERE conversation = 'held'"), "1");
}

// A node stopped (or cut off) inside a write keeps its transaction open; the server ends it
// after the connection's idle-transaction timeout, so its row locks (a fenced write's lock on a
// lease row, which claims skip) go with it instead of lasting until the node runs again.
TEST(PostgresStore, AnIdleTransactionIsEndedByTheServerWithItsLocks) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  rawQuery(uri, "CREATE TABLE idle_rows(k int PRIMARY KEY); INSERT INTO idle_rows VALUES (1)");
  auto held = store::pg::Conn::open(uri, std::chrono::milliseconds{300});
  ASSERT_TRUE(held) << held.error().message;
  ASSERT_TRUE((*held)->exec("BEGIN; SELECT k FROM idle_rows WHERE k = 1 FOR UPDATE"));
  std::this_thread::sleep_for(std::chrono::milliseconds{1500});
  EXPECT_EQ(rawQuery(uri, "SELECT k FROM idle_rows WHERE k = 1 FOR UPDATE NOWAIT"), "1")
      << "the row is still locked by the idle transaction";
  auto next = (*held)->exec("SELECT 1");
  ASSERT_FALSE(next) << "the idle transaction's session is still open";
  EXPECT_EQ(next.error().code, ErrorCode::kUnavailable) << next.error().message;
  // The next use reconnects, with the same setting.
  ASSERT_TRUE((*held)->ensure()) << "reconnect";
  auto setting = (*held)->execRows("SHOW idle_in_transaction_session_timeout");
  ASSERT_TRUE(setting) << setting.error().message;
  EXPECT_EQ(setting->text(0, 0), "300ms");
}

TEST(PostgresStore, UrisAreCheckedBeforeConnecting) {
  FakeClock clock;
  for (const char* bad : {"sqlite", "mysql://x@y/z", "postgres://host:notaport/db",
                          "postgresql://h/db?nosuchparameter=1", "postgresql://h:70000/db"}) {
    auto s = openPostgresStore(bad, clock);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, ErrorCode::kInvalid) << bad << ": " << s.error().message;
  }
  EXPECT_TRUE(checkPostgresUri("postgresql://u:pw@127.0.0.1:5432/parley?sslmode=disable"));
  EXPECT_TRUE(isPostgresUri("postgres://h/db"));
  EXPECT_FALSE(isPostgresUri("sqlite"));
}

TEST(PostgresStore, UnreachableServerIsUnavailableNamingTheStore) {
  FakeClock clock;
  // Port 1 on loopback: nothing listens there.
  auto s = openPostgresStore("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2", clock);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(s.error().message.find("postgres store"), std::string::npos) << s.error().message;
}

TEST(PostgresStore, NodesStartingAtOnceMigrateAnEmptyDatabaseOnce) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  constexpr int kNodes = 6;
  std::vector<std::thread> nodes;
  std::atomic<int> opened{0};
  std::vector<std::string> errors(kNodes);
  for (int i = 0; i < kNodes; ++i)
    nodes.emplace_back([&, i] {
      auto s = openPostgresStore(uri, clock, PostgresOptions{.readers = 1});
      if (s) {
        ++opened;
        EXPECT_EQ((*s)->schemaVersion(), postgresLatestSchemaVersion());
      } else {
        errors[static_cast<std::size_t>(i)] = s.error().message;
      }
    });
  for (auto& n : nodes) n.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(opened.load(), kNodes);
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM schema_migrations"),
            std::to_string(postgresLatestSchemaVersion()));
  EXPECT_EQ(rawQuery(uri, "SELECT max(version) FROM schema_migrations"),
            std::to_string(postgresLatestSchemaVersion()));
  // Reopening an up-to-date database applies nothing.
  auto again = openPostgresStore(uri, clock);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM schema_migrations"),
            std::to_string(postgresLatestSchemaVersion()));
}

// Nodes creating a bot for the same bot user at once (every node starting with --demo creates
// the demo bot if it finds none): exactly one bot is stored, the others get Conflict.
TEST(PostgresStore, NodesCreatingABotForOneUserAtOnceStoreOne) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  constexpr int kNodes = 6;
  auto nodes = openNodes(uri, clock, kNodes, PostgresOptions{.readers = 1});
  ASSERT_EQ(nodes.size(), static_cast<std::size_t>(kNodes));
  ASSERT_TRUE(nodes[0]->accounts().createAccount(Account{AccountId("1001"), "acme"}));
  User bot_user;
  bot_user.account = AccountId("1001");
  bot_user.id = UserId("2001");
  bot_user.login_name = "echo-bot";
  bot_user.type = UserType::kBot;
  ASSERT_TRUE(nodes[0]->accounts().createUser(bot_user));
  for (int round = 0; round < 5; ++round) {
    std::atomic<int> created{0}, conflicts{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kNodes; ++i)
      threads.emplace_back([&, i] {
        BotRecord b;
        b.account = AccountId("1001");
        b.id = BotId("bot-" + std::to_string(round) + "-" + std::to_string(i));
        b.name = "echo";
        b.user = UserId("2001");
        Status st = nodes[static_cast<std::size_t>(i)]->bots().createBot(b);
        if (st)
          ++created;
        else if (st.error().code == ErrorCode::kConflict)
          ++conflicts;
        else
          ADD_FAILURE() << st.error().message;
      });
    for (auto& t : threads) t.join();
    EXPECT_EQ(created.load(), 1) << "round " << round;
    EXPECT_EQ(conflicts.load(), kNodes - 1) << "round " << round;
    EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM bots WHERE user_id = '2001'"), "1");
    rawQuery(uri, "DELETE FROM bots");
  }
}

// Nodes creating an open conversation for one consumer at once (the consumer connected to
// two nodes): exactly one is stored; the others get Conflict naming it.
TEST(PostgresStore, NodesCreatingAConversationForOneConsumerAtOnceStoreOne) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  constexpr int kNodes = 6;
  auto nodes = openNodes(uri, clock, kNodes, PostgresOptions{.readers = 1});
  ASSERT_EQ(nodes.size(), static_cast<std::size_t>(kNodes));
  for (int round = 0; round < 5; ++round) {
    std::atomic<int> created{0};
    std::vector<std::string> refusals(kNodes);
    std::vector<std::thread> threads;
    for (int i = 0; i < kNodes; ++i)
      threads.emplace_back([&, i] {
        Conversation c = conversation("r" + std::to_string(round) + "-" + std::to_string(i));
        c.consumer = ConsumerId("racer");
        Status st = nodes[static_cast<std::size_t>(i)]->conversations().saveConversation(c);
        if (st)
          ++created;
        else if (st.error().code == ErrorCode::kConflict)
          refusals[static_cast<std::size_t>(i)] = st.error().message;
        else
          ADD_FAILURE() << st.error().message;
      });
    for (auto& t : threads) t.join();
    EXPECT_EQ(created.load(), 1) << "round " << round;
    const std::string open =
        rawQuery(uri, "SELECT id FROM conversations WHERE consumer = 'racer' AND state = 'OPEN'");
    EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM conversations WHERE consumer = 'racer'"), "1");
    for (const auto& r : refusals) {
      if (!r.empty()) {
        EXPECT_EQ(r,
                  "consumer racer already has an open conversation " + open + " in account 1001");
      }
    }
    rawQuery(uri, "UPDATE conversations SET state = 'CLOSE' WHERE consumer = 'racer'");
    rawQuery(uri, "DELETE FROM conversations WHERE consumer = 'racer'");
  }
}

// Migration 7 builds the one-open-conversation index over a database that may hold several
// open conversations of one consumer: the newest stays open, the older are closed by SYSTEM.
TEST(PostgresStore, MigrationToOneOpenConversationPerConsumerClosesTheOlderDuplicates) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  {
    auto s = openPostgresStore(uri, clock, PostgresOptions{.readers = 1});
    ASSERT_TRUE(s) << s.error().message;
    // Back to version 6, then the rows that version allowed.
    rawQuery(uri, "DROP INDEX conversations_open_consumer");
    rawQuery(uri, "ALTER TABLE conversations DROP COLUMN erased");  // version 9
    rawQuery(uri, "DROP INDEX messages_idem_key");                  // version 10
    rawQuery(uri, "ALTER TABLE messages DROP COLUMN idem_key");
    rawQuery(uri, "DELETE FROM schema_migrations WHERE version >= 7");
    auto save = [&](const std::string& id, const std::string& account, const std::string& who,
                    TimeMs start, ConversationState state) {
      Conversation c = conversation(id);
      c.account = AccountId(account);
      c.consumer = ConsumerId(who);
      c.start_ts = c.updated_at = start;
      c.state = state;
      if (state == ConversationState::kClose) c.close_reason = CloseReason::kConsumer;
      ASSERT_TRUE((*s)->conversations().saveConversation(c));
    };
    save("x-old", "1001", "x", 10, ConversationState::kOpen);
    save("x-tie-a", "1001", "x", 20, ConversationState::kOpen);
    save("x-tie-b", "1001", "x", 20, ConversationState::kOpen);
    save("x-closed", "1001", "x", 30, ConversationState::kClose);
    save("y", "1001", "y", 5, ConversationState::kOpen);
    save("x-other-account", "2002", "x", 1, ConversationState::kOpen);
    // Version 8's table, which the saves above needed (this binary's writer), goes too.
    rawQuery(uri, "DROP TABLE commit_markers");
  }
  auto s = openPostgresStore(uri, clock);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(rawQuery(uri,
                     "SELECT string_agg(id || ':' || state || ':' || close_reason, ',' ORDER BY "
                     "id) FROM conversations"),
            "x-closed:CLOSE:CONSUMER,x-old:CLOSE:SYSTEM,x-other-account:OPEN:,"
            "x-tie-a:CLOSE:SYSTEM,x-tie-b:OPEN:,y:OPEN:");
  EXPECT_EQ(rawQuery(uri,
                     "SELECT count(*) FROM conversations WHERE end_ts > 0 AND "
                     "close_reason = 'SYSTEM' AND updated_at >= end_ts"),
            "2");
  Conversation again = conversation("x-new");
  again.consumer = ConsumerId("x");
  auto st = (*s)->conversations().saveConversation(again);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kConflict);
  EXPECT_EQ(st.error().message,
            "consumer x already has an open conversation x-tie-b in account 1001");
}

TEST(PostgresStore, ADatabaseNewerThanTheBinaryIsRefused) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  ASSERT_TRUE(openPostgresStore(uri, clock));
  rawQuery(uri, "INSERT INTO schema_migrations(version) VALUES(999)");
  auto s = openPostgresStore(uri, clock);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(s.error().message.find("newer"), std::string::npos) << s.error().message;
}

// An asynchronous append's callback runs after COMMIT: another connection (another node) sees
// the message and the conversation when it runs; concurrent appends share transactions.
TEST(PostgresStore, AcknowledgedAsyncAppendsAreCommittedForOtherConnections) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  auto store = openPostgresStore(uri, clock);
  ASSERT_TRUE(store) << store.error().message;
  constexpr int kConversations = 20;
  constexpr int kEach = 25;
  std::mutex mu;
  std::condition_variable cv;
  int pending = kConversations * kEach;
  int failed = 0;
  std::vector<Conversation> convs;
  for (int i = 0; i < kConversations; ++i) convs.push_back(conversation("c" + std::to_string(i)));
  for (int seq = 0; seq < kEach; ++seq)
    for (auto& c : convs) {
      Message m = message(c, seq);
      c = advanced(c, m);
      (*store)->conversations().appendMessageAsync(c, m, [&](Status st) {
        std::lock_guard lock(mu);
        if (!st) ++failed;
        --pending;
        cv.notify_all();
      });
    }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return pending == 0; }));
  }
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM messages"), std::to_string(kConversations * kEach));
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM conversations WHERE next_sequence=" +
                              std::to_string(kEach)),
            std::to_string(kConversations));
  auto stats = postgresWriteStats(**store);
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->writes, kConversations * kEach);
  EXPECT_LT(stats->transactions, stats->writes);
}

// Two nodes record turns of one bot at once, each in its own group-commit transactions, and
// each prunes the bot's turns to the newest `keep`: no transaction waits on rows another one is
// pruning (a deadlock there stalled every write of both nodes for PostgreSQL's deadlock_timeout
// and failed the turn), and once both are done the bot keeps exactly `keep` turns.
TEST(PostgresStore, NodesRecordingTurnsOfOneBotAtOnceNeverDeadlock) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  constexpr int kNodes = 3;
  constexpr int kEach = 1500;
  constexpr int kKeep = 200;
  auto nodes = openNodes(uri, clock, kNodes);
  ASSERT_EQ(nodes.size(), static_cast<std::size_t>(kNodes));
  std::mutex mu;
  std::condition_variable cv;
  int pending = kNodes * kEach;
  std::vector<std::string> errors;
  std::atomic<TimeMs> ts{1000};
  auto turn = [&](const std::string& id) {
    TurnRecord t;
    t.account = AccountId("1001");
    t.bot = BotId("bot-1");
    t.conversation = ConversationId("c-" + id);
    t.turn_id = id;
    t.ts = ts.fetch_add(1);
    t.outcome = "OK";
    t.input_json = "{}";
    t.response_json = "{}";
    return t;
  };
  std::vector<std::thread> threads;
  for (int n = 0; n < kNodes; ++n)
    threads.emplace_back([&, n] {
      for (int i = 0; i < kEach; ++i)
        nodes[n]->bots().appendTurnAsync(turn(std::to_string(n) + "-" + std::to_string(i)), kKeep,
                                         [&](Status st) {
                                           std::lock_guard lock(mu);
                                           if (!st) errors.push_back(st.error().message);
                                           --pending;
                                           cv.notify_all();
                                         });
    });
  for (auto& t : threads) t.join();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(120), [&] { return pending == 0; }));
  }
  EXPECT_TRUE(errors.empty()) << errors.size() << " turns failed, the first: " << errors.front();
  // One more, alone: the bot is pruned to exactly the newest `keep`.
  ASSERT_TRUE(nodes[0]->bots().appendTurn(turn("last"), kKeep));
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM turns"), std::to_string(kKeep));
}

// A group commit that takes long must not stop the node's lease renewals and claims. Here the
// writer's transaction is stuck (a table another connection locked) after a fenced append
// checked the lease it carries, as under load when one batch of a thousand writes takes
// seconds. The renewal of that very lease and a claim both complete while the batch is stuck:
// they waited for the batch in progress and for their own batch's commit, and under saturation
// every renewal came later than the lease, so other nodes took all of a node's live
// conversations. A takeover still waits for the fenced write in flight (the fence), and the new
// owner then sees that write.
TEST(PostgresStore, LeaseRenewalsAndClaimsDoNotWaitForTheWritersTransaction) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  clock.setMs(1000);
  auto store = openPostgresStore(uri, clock);
  ASSERT_TRUE(store) << store.error().message;
  auto other = openPostgresStore(uri, clock);
  ASSERT_TRUE(other) << other.error().message;
  ClusterStore* cluster = (*store)->cluster();
  ASSERT_NE(cluster, nullptr);
  Conversation leased = conversation("leased");
  auto lease = cluster->acquireLease(leased.id, "node-a", 3000);
  ASSERT_TRUE(lease) << lease.error().message;
  leased.fence = lease->fence();
  ASSERT_TRUE((*store)->conversations().saveConversation(leased));

  PGconn* locker = PQconnectdb(uri.c_str());
  ASSERT_EQ(PQstatus(locker), CONNECTION_OK);
  PQclear(PQexec(locker, "BEGIN"));
  PGresult* locked = PQexec(locker, "LOCK TABLE messages IN ACCESS EXCLUSIVE MODE");
  ASSERT_EQ(PQresultStatus(locked), PGRES_COMMAND_OK) << PQresultErrorMessage(locked);
  PQclear(locked);
  auto unlock = [&] {
    if (!locker) return;
    PQclear(PQexec(locker, "COMMIT"));
    PQfinish(locker);
    locker = nullptr;
  };

  std::promise<Status> appended;
  auto append_result = appended.get_future();
  Message m = message(leased, 0);
  (*store)->conversations().appendMessageAsync(
      advanced(leased, m), m, [&](Status st) { appended.set_value(std::move(st)); });
  // The append's batch checked the fence (its lease row is share-locked) and waits for the table.
  for (int i = 0; i < 200; ++i) {
    if (rawQuery(uri,
                 "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                 "'messages'::regclass") != "0")
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  clock.advanceMs(1000);
  auto renewal = std::async(std::launch::async,
                            [&] { return cluster->renewLeases("node-a", {*lease}, 3000); });
  const bool renewed_in_time =
      renewal.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  auto claim =
      std::async(std::launch::async, [&] { return cluster->claimLeases("node-a", 3000, 10); });
  const bool claimed_in_time = claim.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  if (!renewed_in_time || !claimed_in_time) {  // let the calls end before failing
    unlock();
    append_result.wait();
  }
  ASSERT_TRUE(renewed_in_time) << "the renewal waited for the writer's transaction";
  ASSERT_TRUE(claimed_in_time) << "the claim waited for the writer's transaction";
  auto renewed = renewal.get();
  ASSERT_TRUE(renewed) << renewed.error().message;
  ASSERT_EQ(renewed->size(), 1u);
  EXPECT_EQ(renewed->front().expires_at, 2000 + 3000);
  ASSERT_TRUE(claim.get());

  // Expired now, with the append still in flight: another node's claim skips the row its
  // holder is writing under, and a takeover by acquire waits for that write to commit.
  clock.advanceMs(3000);
  auto skipped = (*other)->cluster()->claimLeases("node-b", 3000, 10);
  ASSERT_TRUE(skipped) << skipped.error().message;
  EXPECT_TRUE(skipped->empty());
  auto takeover = std::async(std::launch::async, [&] {
    return (*other)->cluster()->acquireLease(leased.id, "node-b", 3000);
  });
  const bool waited =
      takeover.wait_for(std::chrono::milliseconds(500)) == std::future_status::timeout;
  unlock();
  EXPECT_TRUE(waited) << "the takeover did not wait for the fenced write in flight";
  auto st = append_result.get();
  EXPECT_TRUE(st) << st.error().message;
  auto taken = takeover.get();
  ASSERT_TRUE(taken) << taken.error().message;
  EXPECT_EQ(taken->node, "node-b");
  EXPECT_EQ(taken->epoch, 2);
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM messages WHERE conversation = 'leased'"), "1");
  // The old owner's next write is refused.
  Message late = message(leased, 1);
  auto refused = (*store)->conversations().appendMessage(advanced(leased, late), late);
  EXPECT_FALSE(refused);
}

// The claim finds free leases through the index on their expiry, not by scanning the open
// conversations: with 5,000 open conversations leased and unexpired, its plan is an index scan
// of conversation_leases_expiry (schema version 5). Open conversations saved without a lease get
// a placeholder row, which the claim takes like an expired lease.
TEST(PostgresStore, ClaimsFindFreeLeasesByTheExpiryIndex) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  clock.setMs(1000);
  auto store = openPostgresStore(uri, clock);
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_TRUE((*store)->conversations().saveConversation(conversation("never-leased")));
  EXPECT_EQ(rawQuery(uri,
                     "SELECT epoch FROM conversation_leases WHERE conversation = "
                     "'never-leased'"),
            "0");
  rawQuery(uri,
           "INSERT INTO conversations(id, account, consumer, channel, state, skill, ttr_type, "
           "ttr_value_s, ttr_due_at, start_ts, end_ts, updated_at, close_reason, next_sequence, "
           "context_json, turn, participants_json) SELECT 'bulk-' || i, '1001', 'consumer-' || i, "
           "'MESSAGING', 'OPEN', '-1', 'NORMAL', 0, 0, i, 0, i, '', 0, '{}', '', '[]' FROM "
           "generate_series(1, 5000) i");
  rawQuery(uri,
           "UPDATE conversation_leases SET node = 'node-a', epoch = 1, expires_at = 100000 "
           "WHERE conversation LIKE 'bulk-%'");
  rawQuery(uri, "ANALYZE");
  PGconn* c = PQconnectdb(uri.c_str());
  ASSERT_EQ(PQstatus(c), CONNECTION_OK);
  PGresult* prepared = PQprepare(c, "claim", postgresLeaseClaimSql(), 0, nullptr);
  ASSERT_EQ(PQresultStatus(prepared), PGRES_COMMAND_OK) << PQresultErrorMessage(prepared);
  PQclear(prepared);
  PGresult* plan = PQexec(c, "EXPLAIN EXECUTE claim('node-b', 4000, 1000, 500)");
  ASSERT_EQ(PQresultStatus(plan), PGRES_TUPLES_OK) << PQresultErrorMessage(plan);
  std::string text;
  for (int i = 0; i < PQntuples(plan); ++i) text += std::string(PQgetvalue(plan, i, 0)) + "\n";
  PQclear(plan);
  PQfinish(c);
  EXPECT_NE(text.find("Index Scan using conversation_leases_expiry"), std::string::npos) << text;
  EXPECT_EQ(text.find("Seq Scan on conversations"), std::string::npos) << text;
  EXPECT_EQ(text.find("Seq Scan on conversation_leases"), std::string::npos) << text;

  // A closed conversation's expired lease is not taken but deleted, so expired rows do not pile
  // up in the range the claim scans.
  Conversation closed = conversation("closed");
  auto closed_lease = (*store)->cluster()->acquireLease(closed.id, "node-a", 1);
  ASSERT_TRUE(closed_lease) << closed_lease.error().message;
  closed.fence = closed_lease->fence();
  closed.state = ConversationState::kClose;
  ASSERT_TRUE((*store)->conversations().saveConversation(closed));
  // So is the lease of a conversation never stored (its create was refused, its lease released).
  auto refused = (*store)->cluster()->acquireLease(ConversationId("refused"), "node-a", 3000);
  ASSERT_TRUE(refused) << refused.error().message;
  ASSERT_TRUE((*store)->cluster()->releaseLease(refused->conversation, "node-a", refused->epoch));
  clock.setMs(2000);
  auto taken = (*store)->cluster()->claimLeases("node-b", 3000, 500);
  ASSERT_TRUE(taken) << taken.error().message;
  EXPECT_EQ(rawQuery(uri,
                     "SELECT count(*) FROM conversation_leases WHERE conversation IN "
                     "('closed', 'refused')"),
            "0");
  ASSERT_EQ(taken->size(), 1u);
  EXPECT_EQ(taken->front().conversation.str(), "never-leased");
  EXPECT_EQ(taken->front().epoch, 1);
}

// The server ends the store's connections (as a restart or failover would): the next call
// fails with Unavailable naming the store, nothing of it is half-written, and the store
// reconnects by itself.
TEST(PostgresStore, LostConnectionsFailClearlyAndReconnect) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  auto store = openPostgresStore(uri, clock, PostgresOptions{.readers = 1});
  ASSERT_TRUE(store) << store.error().message;
  auto& conv = (*store)->conversations();
  Conversation c = conversation("lost");
  Message m0 = message(c, 0);
  c = advanced(c, m0);
  ASSERT_TRUE(conv.appendMessage(c, m0));
  ASSERT_TRUE(conv.getConversation(c.account, c.id));

  const std::string db = uri.substr(uri.rfind('/') + 1);
  rawQuery(
      PostgresServer::shared().uri("postgres"),
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname='" + db + "'");

  Message m1 = message(c, 1);
  Conversation c1 = advanced(c, m1);
  auto w = conv.appendMessage(c1, m1);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(w.error().message.find("postgres store"), std::string::npos) << w.error().message;
  auto r = conv.getConversation(c.account, c.id);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("postgres store"), std::string::npos) << r.error().message;
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM messages"), "1");

  // The next calls reconnect.
  ASSERT_TRUE(conv.appendMessage(c1, m1));
  auto back = conv.getConversation(c.account, c.id);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->next_sequence, 2);
  EXPECT_EQ(conv.listMessages(c.id, 0, 10)->size(), 2u);
}

// The server ends the store's connections while asynchronous appends stream through shared
// transactions: every append whose callback reported success is in the database (a batch that
// lost its connection fails whole), and the store goes on writing after it.
TEST(PostgresStore, AcknowledgedAppendsSurviveLostConnectionsMidStream) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  auto store = openPostgresStore(uri, clock, PostgresOptions{.readers = 1});
  ASSERT_TRUE(store) << store.error().message;
  const std::string db = uri.substr(uri.rfind('/') + 1);
  constexpr int kConversations = 10;
  constexpr int kEach = 200;
  std::mutex mu;
  std::condition_variable cv;
  int pending = kConversations * kEach;
  std::vector<std::pair<std::string, std::int64_t>> acknowledged;
  int failed = 0;
  std::vector<Conversation> convs;
  for (int i = 0; i < kConversations; ++i) convs.push_back(conversation("s" + std::to_string(i)));
  for (int seq = 0; seq < kEach; ++seq) {
    if (seq == kEach / 4 || seq == kEach / 2)
      rawQuery(PostgresServer::shared().uri("postgres"),
               "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname='" +
                   db + "'");
    for (auto& c : convs) {
      Message m = message(c, seq);
      c = advanced(c, m);
      (*store)->conversations().appendMessageAsync(c, m, [&, id = c.id.str(), seq](Status st) {
        std::lock_guard lock(mu);
        if (st)
          acknowledged.emplace_back(id, seq);
        else
          ++failed;
        --pending;
        cv.notify_all();
      });
    }
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return pending == 0; }));
  }
  // Everything acknowledged is there (one query: the acknowledged pairs missing from messages).
  std::string values;
  for (const auto& [id, seq] : acknowledged) {
    if (!values.empty()) values += ",";
    values += "('" + id + "'," + std::to_string(seq) + ")";
  }
  ASSERT_FALSE(values.empty());
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM (VALUES " + values +
                              ") AS a(c, s) WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE "
                              "m.conversation=a.c AND m.sequence=a.s)"),
            "0");
  EXPECT_GE(std::stoll(rawQuery(uri, "SELECT count(*) FROM messages")),
            static_cast<long long>(acknowledged.size()));
  // Whole batches fail (up to max_batch appends each), so how many depends on timing; some
  // were acknowledged, and none of them is missing.
  EXPECT_GT(acknowledged.size(), 0u);
  // And the store still writes.
  Conversation extra = conversation("after");
  Message m0 = message(extra, 0);
  EXPECT_TRUE((*store)->conversations().appendMessage(advanced(extra, m0), m0));
}

// The connection is lost after COMMIT reached the server and before its answer came back: the
// transaction committed. The store asks the server (on a new connection) and reports what
// happened — the append succeeded — rather than an error for a stored message (after which the
// caller would take the message's sequence as free and every later append would conflict).
TEST(PostgresStore, ACommitWhoseAnswerIsLostIsReportedAsItsOutcome) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  CommitCuttingProxy proxy(PostgresServer::shared().port());
  const std::string db = uri.substr(uri.rfind('/') + 1);
  const std::string via = "postgresql://postgres@127.0.0.1:" + std::to_string(proxy.port()) + "/" +
                          db + "?sslmode=disable";
  FakeClock clock;
  auto store = openPostgresStore(via, clock, PostgresOptions{.readers = 1});
  ASSERT_TRUE(store) << store.error().message;
  auto& conv = (*store)->conversations();
  Conversation c = conversation("lost-answer");
  Message m0 = message(c, 0);
  c = advanced(c, m0);
  ASSERT_TRUE(conv.appendMessage(c, m0));

  // Committed, answer lost: success, and the message is there once.
  proxy.cutNextCommit(CommitCuttingProxy::Cut::kAnswer);
  Message m1 = message(c, 1);
  Conversation c1 = advanced(c, m1);
  auto w1 = conv.appendMessage(c1, m1);
  EXPECT_EQ(proxy.cuts(), 1);
  EXPECT_TRUE(w1) << w1.error().message;
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM messages"), "2");

  // The COMMIT never reached the server: rolled back there, and the append fails.
  proxy.cutNextCommit(CommitCuttingProxy::Cut::kCommit);
  Message m2 = message(c1, 2);
  Conversation c2 = advanced(c1, m2);
  auto w2 = conv.appendMessage(c2, m2);
  EXPECT_EQ(proxy.cuts(), 2);
  ASSERT_FALSE(w2);
  EXPECT_EQ(w2.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(w2.error().message.find("rolled back"), std::string::npos) << w2.error().message;
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM messages"), "2");

  // An asynchronous append whose answer is lost: its callback says it committed.
  proxy.cutNextCommit(CommitCuttingProxy::Cut::kAnswer);
  std::promise<Status> async_done;
  conv.appendMessageAsync(c2, m2, [&](Status st) { async_done.set_value(std::move(st)); });
  auto st = async_done.get_future().get();
  EXPECT_TRUE(st) << st.error().message;
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM messages"), "3");

  auto stats = postgresWriteStats(**store);
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->lost_commits_committed, 2);
  EXPECT_EQ(stats->lost_commits_aborted, 1);
  EXPECT_EQ(stats->lost_commits_unknown, 0);
  EXPECT_NE(postgresPrometheusText(**store).find("parley_store_lost_commits_committed_total 2"),
            std::string::npos);
  // And the store goes on.
  Message m3 = message(c2, 3);
  EXPECT_TRUE(conv.appendMessage(advanced(c2, m3), m3));
}

// A batch's COMMIT never reaches the server, which crashes (immediate stop) while the batch's
// transaction is open: the transaction's WAL was still in the server's memory, so after crash
// recovery nothing of it exists, and the server hands its transaction id out again. Another
// transaction takes that id and commits. The writer, resolving the lost COMMIT, must not take
// that for its own batch having committed: the append fails and nothing of it is stored.
TEST(PostgresStore, ALostCommitIsNotFooledByItsTransactionIdReusedAfterACrash) {
  // Nothing else writes or flushes WAL meanwhile (autovacuum, the background writer flushing it
  // before a data page, the WAL writer writing it out every 200 ms by default), so the open
  // transaction's WAL is lost with the crash.
  auto server = PostgresServer::startOwn(
      {"autovacuum=off", "bgwriter_lru_maxpages=0", "wal_writer_delay=10000"});
  ASSERT_TRUE(server->ok()) << server->error();
  const std::string uri = server->createDatabase();
  ASSERT_FALSE(uri.empty()) << server->error();
  const std::string db = uri.substr(uri.rfind('/') + 1);
  CommitCuttingProxy proxy(server->port());
  const std::string via = "postgresql://postgres@127.0.0.1:" + std::to_string(proxy.port()) + "/" +
                          db + "?sslmode=disable&connect_timeout=2";
  FakeClock clock;
  auto store = openPostgresStore(via, clock, PostgresOptions{.readers = 1});
  ASSERT_TRUE(store) << store.error().message;
  auto& conv = (*store)->conversations();
  Conversation c = conversation("crash");
  Message m0 = message(c, 0);
  c = advanced(c, m0);
  ASSERT_TRUE(conv.appendMessage(c, m0));

  // At the COMMIT of the next append: note its transaction id (the writer's open transaction),
  // then crash the server.
  long long lost_xid = 0;
  proxy.cutNextCommit(CommitCuttingProxy::Cut::kCommit, [&] {
    lost_xid = std::stoll(
        rawQuery(uri,
                 "SELECT backend_xid::text FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND "
                 "state = 'idle in transaction' AND datname = '" +
                     db + "'"));
    // The store reconnects only once the id was handed out again below: its own first
    // transaction after the restart (resolving the lost COMMIT) would take it otherwise.
    proxy.refuseConnections(true);
    server->crash();
  });
  Message m1 = message(c, 1);
  Conversation c1 = advanced(c, m1);
  auto w1 = std::async(std::launch::async, [&] { return conv.appendMessage(c1, m1); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (proxy.cuts() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(proxy.cuts(), 1);
  ASSERT_GT(lost_xid, 0);
  ASSERT_TRUE(server->restart()) << server->error();

  // Transactions of another client take ids until the lost one is handed out again (and
  // commits): each statement in autocommit takes one.
  long long taken = 0;
  bool reused = false;
  for (int i = 0; i < 100000 && taken < lost_xid; ++i) {
    taken = std::stoll(rawQuery(uri, "SELECT pg_current_xact_id()::text"));
    reused = reused || taken == lost_xid;
  }
  EXPECT_TRUE(reused) << "transaction id " << lost_xid << " was not handed out again (first id "
                      << "after the crash was past it): the crash did not lose its WAL";
  proxy.refuseConnections(false);

  auto st = w1.get();
  ASSERT_FALSE(st) << "an append that was never stored was acknowledged";
  EXPECT_EQ(st.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM messages"), "1");
  auto stats = postgresWriteStats(**store);
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->lost_commits_committed, 0);
  EXPECT_EQ(stats->lost_commits_aborted, 1);

  // Its sequence is free: the append goes in now.
  EXPECT_TRUE(conv.appendMessage(c1, m1));
  EXPECT_EQ(rawQuery(uri, "SELECT count(*) FROM messages"), "2");
}

// Every transaction of the writer leaves a commit marker; markers older than an hour are
// deleted by the writer's first batch and then once a minute, the others kept.
TEST(PostgresStore, CommitMarkersAreWrittenAndOldOnesPruned) {
  const std::string uri = freshDatabase();
  ASSERT_FALSE(uri.empty());
  FakeClock clock;
  {
    auto store = openPostgresStore(uri, clock, PostgresOptions{.readers = 1});
    ASSERT_TRUE(store) << store.error().message;
  }
  rawQuery(uri,
           "INSERT INTO commit_markers(token, created_at) VALUES "
           "('00000000-0000-4000-8000-000000000001', now() - interval '61 minutes'), "
           "('00000000-0000-4000-8000-000000000002', now() - interval '59 minutes')");
  auto store = openPostgresStore(uri, clock, PostgresOptions{.readers = 1});
  ASSERT_TRUE(store) << store.error().message;
  auto& conv = (*store)->conversations();
  Conversation c = conversation("markers");
  for (int seq = 0; seq < 3; ++seq) {
    Message m = message(c, seq);
    c = advanced(c, m);
    ASSERT_TRUE(conv.appendMessage(c, m));
  }
  EXPECT_EQ(rawQuery(uri,
                     "SELECT string_agg(token::text, ',') FROM commit_markers WHERE token::text "
                     "LIKE '00000000-%'"),
            "00000000-0000-4000-8000-000000000002");
  EXPECT_EQ(rawQuery(uri,
                     "SELECT count(*) FROM commit_markers WHERE token::text NOT LIKE "
                     "'00000000-%'"),
            "3");
}

}  // namespace
}  // namespace parley::store
