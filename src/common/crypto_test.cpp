#include "common/crypto.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/testing/temp_dir.h"

namespace parley::crypto {
namespace {

namespace fs = std::filesystem;

using parley::testing::TempDir;

TEST(Password, HashVerifiesOnlyTheRightPassword) {
  auto h = hashPassword("correct horse", PasswordCost::kMinimumForTest);
  ASSERT_TRUE(h) << h.error().message;
  EXPECT_TRUE(h->starts_with("$argon2id$"));
  EXPECT_TRUE(verifyPassword(*h, "correct horse"));
  EXPECT_FALSE(verifyPassword(*h, "correct horsE"));
  EXPECT_FALSE(verifyPassword(*h, ""));
  EXPECT_FALSE(verifyPassword("not a hash", "correct horse"));
  EXPECT_FALSE(verifyPassword("", ""));
  // Salted: the same password hashes differently each time.
  auto h2 = hashPassword("correct horse", PasswordCost::kMinimumForTest);
  ASSERT_TRUE(h2);
  EXPECT_NE(*h, *h2);
}

TEST(Password, InteractiveCostIsRecordedInTheHash) {
  auto h = hashPassword("pw", PasswordCost::kInteractive);
  ASSERT_TRUE(h);
  EXPECT_NE(h->find("m=65536"), std::string::npos) << *h;
  EXPECT_TRUE(verifyPassword(*h, "pw"));
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(SecretBox, SealOpenRoundTripWithBinaryData) {
  auto box = SecretBox::randomForTest();
  std::string plain("s3cr\0t value", 12);
  auto sealed = box.seal(plain);
  ASSERT_TRUE(sealed);
  EXPECT_EQ(sealed->size(), SecretBox::kNonceBytes + SecretBox::kMacBytes + plain.size());
  EXPECT_EQ(sealed->find("s3cr"), std::string::npos);
  auto opened = box.open(*sealed);
  ASSERT_TRUE(opened);
  EXPECT_EQ(*opened, plain);
  // A fresh nonce every time.
  EXPECT_NE(*box.seal(plain), *sealed);
  auto empty = box.seal("");
  ASSERT_TRUE(empty);
  EXPECT_EQ(*box.open(*empty), "");
}

TEST(SecretBox, RejectsTamperingWrongKeyAndShortInput) {
  auto box = SecretBox::randomForTest();
  auto sealed = *box.seal("value");
  std::string tampered = sealed;
  tampered.back() ^= 1;
  EXPECT_EQ(box.open(tampered).error().code, ErrorCode::kInvalid);
  EXPECT_EQ(SecretBox::randomForTest().open(sealed).error().code, ErrorCode::kInvalid);
  EXPECT_EQ(box.open("short").error().code, ErrorCode::kInvalid);
}

TEST(SecretBox, KeyFileIsCreatedPrivateAndReloaded) {
  TempDir dir;
  const std::string path = dir.file("secret.key");
  auto a = SecretBox::loadOrCreate(path);
  ASSERT_TRUE(a) << a.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto sealed = *a->seal("across restarts");
  auto b = SecretBox::loadOrCreate(path);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(*b->open(sealed), "across restarts");
  // No temporary files are left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(SecretBox, CreatesAMissingPrivateKeyDirectory) {
  TempDir dir;
  const std::string path = dir.file("keys/secrets.key");
  auto box = SecretBox::loadOrCreate(path);
  ASSERT_TRUE(box) << box.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("keys").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(*SecretBox::loadOrCreate(path)->open(*box->seal("k")), "k");
}

TEST(SecretBox, ConcurrentCreatorsAgreeOnOneKey) {
  TempDir dir;
  const std::string path = dir.file("race.key");
  std::vector<std::string> sealed(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      auto box = SecretBox::loadOrCreate(path);
      if (box) sealed[static_cast<std::size_t>(i)] = *box->seal("x");
    });
  for (auto& t : threads) t.join();
  auto box = SecretBox::loadOrCreate(path);
  ASSERT_TRUE(box);
  for (const auto& s : sealed) EXPECT_EQ(*box->open(s), "x");
}

TEST(SecretBox, RejectsLooseModeAndMalformedKeyFiles) {
  TempDir dir;
  const std::string path = dir.file("loose.key");
  ASSERT_TRUE(SecretBox::loadOrCreate(path));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto loose = SecretBox::loadOrCreate(path);
  ASSERT_FALSE(loose);
  EXPECT_EQ(loose.error().code, ErrorCode::kInvalid);
  EXPECT_NE(loose.error().message.find("chmod 600"), std::string::npos);

  const std::string bad = dir.file("bad.key");
  std::ofstream(bad) << "zz-not-hex\n";
  ASSERT_EQ(::chmod(bad.c_str(), 0600), 0);
  auto malformed = SecretBox::loadOrCreate(bad);
  ASSERT_FALSE(malformed);
  EXPECT_EQ(malformed.error().code, ErrorCode::kInvalid);
}

}  // namespace
}  // namespace parley::crypto
