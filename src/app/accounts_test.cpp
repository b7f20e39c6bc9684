#include "app/accounts.h"

#include <gtest/gtest.h>

#include <string>

#include "common/testing/fake_clock.h"
#include "store/memory/memory_store.h"

namespace parley::app {
namespace {

using namespace std::string_literals;

class AccountsTest : public ::testing::Test {
 protected:
  AccountRequest request(std::string name) {
    AccountRequest r;
    r.name = std::move(name);
    r.password_cost = crypto::PasswordCost::kMinimumForTest;
    return r;
  }
  testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_ = store::makeMemoryStore(clock_);
};

TEST_F(AccountsTest, CreatesAnAccountWithItsFirstAdmin) {
  auto a = createAccount(*store_, clock_, request("Acme"));
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->account.id.str().size(), 8u);
  EXPECT_EQ(a->admin_password.size(), 20u);
  auto stored = store_->accounts().getAccount(a->account.id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->name, "Acme");
  EXPECT_EQ(stored->status, store::AccountStatus::kActive);
  auto admin = store_->accounts().getUserByLogin(a->account.id, "admin");
  ASSERT_TRUE(admin);
  EXPECT_TRUE(crypto::verifyPassword(admin->password_hash, a->admin_password));
  EXPECT_EQ(admin->password_hash.find(a->admin_password), std::string::npos);
  EXPECT_EQ(admin->roles,
            (std::vector<store::Role>{store::Role::kAdmin, store::Role::kAgentManager,
                                      store::Role::kFaasAdmin, store::Role::kFaasDeveloper}));
}

TEST_F(AccountsTest, GivenIdLoginAndPassword) {
  auto r = request("Beta");
  r.id = "beta-1";
  r.admin_login = "root";
  r.admin_password = "s3cret-pw";
  auto a = createAccount(*store_, clock_, r);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->account.id.str(), "beta-1");
  EXPECT_EQ(a->admin_password, "s3cret-pw");
  EXPECT_TRUE(store_->accounts().getUserByLogin(AccountId("beta-1"), "root"));
  auto again = createAccount(*store_, clock_, r);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
}

TEST_F(AccountsTest, RefusesBadIdsNamesAndPasswords) {
  auto r = request("Acme");
  r.id = "a/b";
  EXPECT_EQ(createAccount(*store_, clock_, r).error().code, ErrorCode::kInvalid);
  r.id = std::string(65, 'a');
  EXPECT_EQ(createAccount(*store_, clock_, r).error().code, ErrorCode::kInvalid);
  r = request("Ac\0me"s);
  auto nul = createAccount(*store_, clock_, r);
  ASSERT_FALSE(nul);
  EXPECT_NE(nul.error().message.find("control character"), std::string::npos);
  r = request("Acme");
  r.admin_login = "ad\nmin";
  EXPECT_EQ(createAccount(*store_, clock_, r).error().code, ErrorCode::kInvalid);
  r = request("Acme");
  r.admin_password = "12345";
  EXPECT_EQ(createAccount(*store_, clock_, r).error().code, ErrorCode::kInvalid);
  EXPECT_TRUE(store_->accounts().listAccounts()->empty()) << "nothing half-created";
}

TEST_F(AccountsTest, ListDisableEnable) {
  auto a = createAccount(*store_, clock_, request("One"));
  auto b = createAccount(*store_, clock_, request("Two"));
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(setAccountStatus(*store_, a->account.id.str(), store::AccountStatus::kDisabled));
  auto list = listAccounts(*store_);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  for (const auto& s : *list) {
    EXPECT_EQ(s.users, 1u);
    EXPECT_EQ(s.account.status, s.account.id == a->account.id ? store::AccountStatus::kDisabled
                                                              : store::AccountStatus::kActive);
  }
  ASSERT_TRUE(setAccountStatus(*store_, a->account.id.str(), store::AccountStatus::kActive));
  EXPECT_EQ(store_->accounts().getAccount(a->account.id)->status, store::AccountStatus::kActive);
  EXPECT_EQ(setAccountStatus(*store_, "nope", store::AccountStatus::kDisabled).error().code,
            ErrorCode::kNotFound);
}

}  // namespace
}  // namespace parley::app
