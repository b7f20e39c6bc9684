#include "app/demo.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "common/crypto.h"
#include "common/testing/fake_clock.h"
#include "common/testing/temp_dir.h"
#include "store/memory/memory_store.h"

namespace parley::app {
namespace {

using parley::testing::FakeClock;
using parley::testing::TempDir;

// Nodes with their own data directories starting at once on one store: one account, each skill
// and user once, and every node holds the same credentials, which log in.
TEST(Demo, NodesStartingAtOnceCreateTheDemoOnce) {
  FakeClock clock;
  auto store = store::makeMemoryStore(clock);
  constexpr int kNodes = 3;
  std::vector<TempDir> dirs(kNodes);
  std::vector<Result<Demo>> got(kNodes, internalError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kNodes; ++i)
    threads.emplace_back([&, i] { got[i] = ensureDemo(*store, clock, dirs[i].path()); });
  for (auto& t : threads) t.join();
  for (const auto& g : got) ASSERT_TRUE(g) << g.error().message;
  for (int i = 1; i < kNodes; ++i) {
    EXPECT_EQ(got[i]->admin.password, got[0]->admin.password);
    EXPECT_EQ(got[i]->agent.password, got[0]->agent.password);
    EXPECT_EQ(got[i]->bot.user_id, got[0]->bot.user_id);
    EXPECT_EQ(got[i]->skill_general, got[0]->skill_general);
  }
  const AccountId acc(got[0]->account);
  EXPECT_EQ(store->accounts().listAccounts()->size(), 1u);
  EXPECT_EQ(store->accounts().listSkills(acc)->size(), 3u);
  auto users = store->accounts().listUsers(acc);
  ASSERT_TRUE(users);
  EXPECT_EQ(users->size(), 3u);
  auto admin = store->accounts().getUserByLogin(acc, "admin");
  ASSERT_TRUE(admin);
  EXPECT_TRUE(crypto::verifyPassword(admin->password_hash, got[kNodes - 1]->admin.password));

  // A later start of any node prints the same credentials again.
  auto again = ensureDemo(*store, clock, dirs[1].path());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->admin.password, got[0]->admin.password);
}

}  // namespace
}  // namespace parley::app
