#pragma once

// The SQLite OAuthStore: the functions gateway's OAuth 2.0 app installations and the access
// tokens issued to them. Private to store/sqlite.

#include "store/sqlite/db.h"
#include "store/store.h"

namespace parley::store::sqlite {

// Apps (`oauth_apps`) and access tokens (`oauth_tokens`) on the shared Db. Thread-safe (see
// Db); owned by the SqliteStore.
class SqliteOAuthStore final : public OAuthStore {
 public:
  // REQUIRES: `db` outlives this.
  explicit SqliteOAuthStore(Db& db) : db_(db) {}

  // OAuthStore
  Status createApp(const OAuthApp& a) override;
  Result<OAuthApp> getApp(const AccountId& acc, const std::string& client_id) override;
  Result<std::vector<OAuthApp>> listApps(const AccountId& acc) override;
  Status deleteApp(const AccountId& acc, const std::string& client_id) override;
  Status addAccessToken(const AccessToken& t, int keep) override;
  Result<AccessToken> getAccessToken(const std::string& token_hash) override;
  Status deleteExpiredAccessTokens(TimeMs now) override;

 private:
  Db& db_;
};

}  // namespace parley::store::sqlite
