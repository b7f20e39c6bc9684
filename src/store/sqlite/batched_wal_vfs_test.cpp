// The batched-WAL VFS under the SQLite store: frames written together, commits visible to other
// connections at once, syncs where synchronous=NORMAL makes them, and a failed write failing the
// commit without losing anything acknowledged.

#include "store/sqlite/batched_wal_vfs.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "common/testing/fake_clock.h"
#include "common/testing/temp_dir.h"
#include "store/sqlite/sqlite_store.h"
#include "store/testing/raw_query.h"

namespace parley::store {
namespace {

using parley::testing::FakeClock;
using parley::testing::rawQuery;
using parley::testing::TempDir;

Conversation conversation(const std::string& id) {
  Conversation c;
  c.id = ConversationId(id);
  c.account = AccountId("1");
  c.consumer = ConsumerId("consumer-" + id);
  return c;
}

// Appends message `seq` (its event ~300 bytes) to `c`.
Status append(Store& s, Conversation& c, std::int64_t seq) {
  Message m;
  m.conversation = c.id;
  m.sequence = seq;
  m.server_ts = seq;
  m.event_json = R"({"type":"ContentEvent","message":")" + std::to_string(seq) +
                 std::string(300, 'x') + R"("})";
  c.next_sequence = seq + 1;
  c.updated_at = seq;
  return s.conversations().appendMessage(c, m);
}

TEST(BatchedWal, TheWriterUsesItAndACommitsFramesLeaveTogether) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("b.db");
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s) << s.error().message;
  Conversation c = conversation("c1");
  ASSERT_TRUE(append(**s, c, 0));
  const auto before = sqlite::batchedWalStats();
  // One transaction of many pages: a turn-record flush or a big batch of appends looks like this.
  ASSERT_TRUE(sqliteExecForTest(**s, {"CREATE TABLE bulk(x TEXT)"}));
  ASSERT_TRUE(sqliteExecForTest(
      **s, {"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) "
            "INSERT INTO bulk SELECT printf('%.1000c', 'y') FROM n"}));
  const auto after = sqlite::batchedWalStats();
  const auto writes = after.writes - before.writes;
  const auto flushes = after.flushes - before.flushes;
  // ~100 pages: two writes each (frame header, page) without the VFS.
  EXPECT_GE(writes, 200u);
  EXPECT_LE(flushes * 20, writes) << flushes << " pwrites for " << writes << " WAL writes";
  EXPECT_GT(after.syncs_skipped, before.syncs_skipped);  // plain commits: no fsync
  const std::string metrics = sqlitePrometheusText(**s);
  EXPECT_NE(metrics.find("parley_store_wal_writes_total "), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("parley_store_wal_pwrites_total "), std::string::npos) << metrics;
  // Another connection (SQLite's default VFS) sees every commit at once.
  EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM bulk"), "400");
  for (std::int64_t i = 1; i <= 50; ++i) ASSERT_TRUE(append(**s, c, i));
  EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM messages"), "51");
  EXPECT_EQ((*s)->conversations().listMessages(c.id, 0, 100)->size(), 51u);
}

TEST(BatchedWal, CheckpointsAndNewWalHeadersAreSynced) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.file("sync.db");
  const auto at_start = sqlite::batchedWalStats();
  {
    auto s = openSqliteStore(path, clock);
    ASSERT_TRUE(s) << s.error().message;
    Conversation c = conversation("c1");
    ASSERT_TRUE(append(**s, c, 0));
    // A new WAL begins with a header: synchronous=NORMAL syncs it, so does the VFS.
    EXPECT_GT(sqlite::batchedWalStats().syncs_made, at_start.syncs_made);
    for (std::int64_t i = 1; i < 20; ++i) ASSERT_TRUE(append(**s, c, i));
  }
  // Closing the writer checkpoints the WAL into the database file, under the checkpoint lock:
  // the WAL is synced before it is copied.
  const auto closed = sqlite::batchedWalStats();
  EXPECT_GE(closed.syncs_made, at_start.syncs_made + 2);
  EXPECT_EQ(rawQuery(path, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM messages"), "20");
}

TEST(BatchedWal, OptionOffAndSyncFullUseTheDefaultVfs) {
  TempDir dir;
  FakeClock clock;
  for (int variant = 0; variant < 2; ++variant) {
    SqliteOptions o;
    if (variant == 0) o.batch_wal_writes = false;
    if (variant == 1) o.sync = SqliteOptions::Sync::kFull;
    const std::string path = dir.file("off" + std::to_string(variant) + ".db");
    auto s = openSqliteStore(path, clock, o);
    ASSERT_TRUE(s) << s.error().message;
    const auto before = sqlite::batchedWalStats();
    Conversation c = conversation("c1");
    for (std::int64_t i = 0; i < 10; ++i) ASSERT_TRUE(append(**s, c, i));
    EXPECT_EQ(sqlite::batchedWalStats().writes, before.writes) << "variant " << variant;
    EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM messages"), "10");
  }
}

// The file-size limit makes the WAL's write fail (EFBIG) part-way through the commit's frames:
// the append must fail with an error (not crash, not report success), and after a restart every
// acknowledged message is there, the failed one is not, and the file is intact.
TEST(BatchedWal, AFailedWriteFailsTheCommitAndLosesNothingAcknowledged) {
  TempDir dir;
  const std::string path = dir.file("full.db");
  {
    FakeClock clock;
    auto s = openSqliteStore(path, clock);  // created (and migrated) without a limit
    ASSERT_TRUE(s) << s.error().message;
  }
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = 2u << 20;  // 2 MiB per file
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(2);
    FakeClock clock;
    SqliteOptions o;
    o.checkpoint_pages = 0;  // nothing copies the WAL away: it must hit the limit
    auto s = openSqliteStore(path, clock, o);
    if (!s) ::_exit(3);
    Conversation c = conversation("c1");
    std::int64_t acked = 0;
    for (; acked < 100000; ++acked)
      if (!append(**s, c, acked)) break;
    if (::write(fds[1], &acked, sizeof acked) != sizeof acked) ::_exit(5);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::int64_t acked = -1;
  ASSERT_EQ(::read(fds[0], &acked, sizeof acked), static_cast<ssize_t>(sizeof acked));
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the writer died of signal " << WTERMSIG(status);
  ASSERT_EQ(WEXITSTATUS(status), 0);
  ASSERT_GT(acked, 100);     // some commits went through
  ASSERT_LT(acked, 100000);  // and then one failed, with an error
  FakeClock clock;
  auto s = openSqliteStore(path, clock);
  ASSERT_TRUE(s) << s.error().message;
  auto msgs = (*s)->conversations().listMessages(ConversationId("c1"), 0, 200000);
  ASSERT_TRUE(msgs) << msgs.error().message;
  ASSERT_EQ(msgs->size(), static_cast<std::size_t>(acked));
  for (std::size_t i = 0; i < msgs->size(); ++i) ASSERT_EQ((*msgs)[i].sequence, i);
  EXPECT_EQ(rawQuery(path, "PRAGMA integrity_check"), "ok");
  // And the store goes on.
  Conversation c = conversation("c1");
  EXPECT_TRUE(append(**s, c, acked));
}

}  // namespace
}  // namespace parley::store
