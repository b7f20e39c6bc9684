#include "app/cluster_material.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "common/crypto.h"
#include "common/testing/fake_clock.h"
#include "common/testing/temp_dir.h"
#include "server/jwt.h"
#include "store/memory/memory_store.h"

namespace parley::app {
namespace {

namespace fs = std::filesystem;
using parley::testing::FakeClock;
using parley::testing::TempDir;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* const kFiles[] = {"tls/ca.pem",  "tls/ca-key.pem", "tls/cert.pem",
                              "tls/key.pem", "keys/jwt.key",   "keys/secrets.key"};

TEST(ClusterMaterial, TheFirstNodesMaterialBecomesEveryNodes) {
  FakeClock clock;
  auto store = store::makeMemoryStore(clock);
  TempDir a, b;
  // Node b had material of its own before joining: the cluster's replaces it.
  ASSERT_TRUE(server::loadOrCreateJwtKey(b.path()));
  const std::string b_own_key = slurp(fs::path(b.path()) / "keys/jwt.key");
  ASSERT_TRUE(shareClusterMaterial(*store->cluster(), a.path(), SharedTls::kShared));
  ASSERT_TRUE(shareClusterMaterial(*store->cluster(), b.path(), SharedTls::kShared));
  for (const char* f : kFiles) {
    const std::string in_a = slurp(fs::path(a.path()) / f);
    EXPECT_FALSE(in_a.empty()) << f;
    EXPECT_EQ(in_a, slurp(fs::path(b.path()) / f)) << f;
  }
  EXPECT_NE(slurp(fs::path(b.path()) / "keys/jwt.key"), b_own_key);
  EXPECT_EQ(fs::status(fs::path(b.path()) / "keys/jwt.key").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(fs::path(b.path()) / "tls/ca-key.pem").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  // A consumer JWT signed by node a verifies with node b's key; a secret sealed by a opens on b.
  auto key_a = server::loadOrCreateJwtKey(a.path());
  auto key_b = server::loadOrCreateJwtKey(b.path());
  ASSERT_TRUE(key_a && key_b);
  server::JwtClaims claims{"consumer-1", "acc:123", "parley", 1, 4'000'000'000};
  auto verified = server::verifyJwt(server::signJwt(claims, *key_a), *key_b, 1000);
  ASSERT_TRUE(verified) << verified.error().message;
  EXPECT_EQ(verified->sub, "consumer-1");
  auto box_a = crypto::SecretBox::loadOrCreate((fs::path(a.path()) / "keys/secrets.key").string());
  auto box_b = crypto::SecretBox::loadOrCreate((fs::path(b.path()) / "keys/secrets.key").string());
  ASSERT_TRUE(box_a && box_b);
  EXPECT_EQ(box_b->open(box_a->seal("s3cret").value()).value(), "s3cret");
}

TEST(ClusterMaterial, NodesStartingAtOnceEndWithTheSameMaterial) {
  FakeClock clock;
  auto store = store::makeMemoryStore(clock);
  std::vector<TempDir> dirs(4);
  std::vector<std::thread> threads;
  std::vector<Status> results(dirs.size());
  for (std::size_t i = 0; i < dirs.size(); ++i)
    threads.emplace_back([&, i] {
      results[i] = shareClusterMaterial(*store->cluster(), dirs[i].path(), SharedTls::kShared);
    });
  for (auto& t : threads) t.join();
  for (const auto& r : results) ASSERT_TRUE(r) << r.error().message;
  for (const char* f : kFiles)
    for (std::size_t i = 1; i < dirs.size(); ++i)
      EXPECT_EQ(slurp(fs::path(dirs[0].path()) / f), slurp(fs::path(dirs[i].path()) / f)) << f;
}

TEST(ClusterMaterial, BroughtTlsIsLeftAlone) {
  FakeClock clock;
  auto store = store::makeMemoryStore(clock);
  TempDir a;
  ASSERT_TRUE(shareClusterMaterial(*store->cluster(), a.path(), SharedTls::kBrought));
  EXPECT_FALSE(fs::exists(fs::path(a.path()) / "tls"));
  EXPECT_FALSE(store->cluster()->getMaterial("tls"));
  EXPECT_TRUE(store->cluster()->getMaterial("jwt.key"));
}

}  // namespace
}  // namespace parley::app
