#include "store/sqlite/oauth_store.h"

#include <algorithm>
#include <string>
#include <vector>

#include "store/sqlite/query.h"
#include "store/sqlite/rows.h"

namespace parley::store::sqlite {
namespace {

std::string appMissing(const AccountId& acc, const std::string& client_id) {
  return "app " + client_id + " does not exist in account " + acc.str();
}

}  // namespace

Status SqliteOAuthStore::createApp(const OAuthApp& a) {
  if (a.account.empty()) return invalid("app account is required");
  if (a.client_id.empty()) return invalid("app client id is required");
  if (a.secret_hash.empty()) return invalid("app secret hash is required");
  const TimeMs created = a.created_at ? a.created_at : db_.now();
  return db_.write([&](Conn& c) {
    return conflictAs(
        asStatus(
            execute(c, "INSERT INTO oauth_apps(" + cols(kOAuthAppCols) + ") VALUES(?,?,?,?,?,?,?)",
                    a.account.str(), a.client_id, a.name, a.secret_hash, stringsJson(a.scopes),
                    created, a.created_by.str())),
        "app " + a.client_id + " already exists in account " + a.account.str());
  });
}

Result<OAuthApp> SqliteOAuthStore::getApp(const AccountId& acc, const std::string& client_id) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<OAuthApp>(
        c, "SELECT " + cols(kOAuthAppCols) + " FROM oauth_apps WHERE account=? AND client_id=?",
        oauthAppRow, acc.str(), client_id);
  });
  return found(std::move(r), appMissing(acc, client_id));
}

Result<std::vector<OAuthApp>> SqliteOAuthStore::listApps(const AccountId& acc) {
  return db_.read([&](Conn& c) {
    return selectAll<OAuthApp>(c,
                               "SELECT " + cols(kOAuthAppCols) +
                                   " FROM oauth_apps WHERE account=? ORDER BY created_at, rowid",
                               oauthAppRow, acc.str());
  });
}

Status SqliteOAuthStore::deleteApp(const AccountId& acc, const std::string& client_id) {
  return db_.write([&](Conn& c) -> Status {
    PARLEY_STORE_TRY(changedOrNotFound(
        execute(c, "DELETE FROM oauth_apps WHERE account=? AND client_id=?", acc.str(), client_id),
        appMissing(acc, client_id)));
    return asStatus(execute(c, "DELETE FROM oauth_tokens WHERE account=? AND client_id=?",
                            acc.str(), client_id));
  });
}

Status SqliteOAuthStore::addAccessToken(const AccessToken& t, int keep) {
  if (t.token_hash.empty()) return invalid("access token hash is required");
  if (t.client_id.empty()) return invalid("access token client id is required");
  const TimeMs created = t.created_at ? t.created_at : db_.now();
  return db_.write([&](Conn& c) -> Status {
    auto app = exists(c, "SELECT 1 FROM oauth_apps WHERE account=? AND client_id=?",
                      t.account.str(), t.client_id);
    if (!app) return std::unexpected(app.error());
    if (!*app) return notFound(appMissing(t.account, t.client_id));
    PARLEY_STORE_TRY(conflictAs(
        asStatus(execute(
            c, "INSERT INTO oauth_tokens(" + cols(kAccessTokenCols) + ") VALUES(?,?,?,?,?,?)",
            t.token_hash, t.account.str(), t.client_id, stringsJson(t.scopes), created,
            t.expires_at)),
        "access token already exists"));
    PARLEY_STORE_TRY(asStatus(
        execute(c, "DELETE FROM oauth_tokens WHERE account=? AND client_id=? AND expires_at<=?",
                t.account.str(), t.client_id, created)));
    return asStatus(execute(c,
                            "DELETE FROM oauth_tokens WHERE rowid IN (SELECT rowid FROM "
                            "oauth_tokens WHERE account=? AND client_id=? "
                            "ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)",
                            t.account.str(), t.client_id, std::max(keep, 0)));
  });
}

Result<AccessToken> SqliteOAuthStore::getAccessToken(const std::string& token_hash) {
  auto r = db_.read([&](Conn& c) {
    return selectOne<AccessToken>(
        c, "SELECT " + cols(kAccessTokenCols) + " FROM oauth_tokens WHERE token_hash=?",
        accessTokenRow, token_hash);
  });
  return found(std::move(r), "access token does not exist");
}

Status SqliteOAuthStore::deleteExpiredAccessTokens(TimeMs now) {
  return db_.write([&](Conn& c) {
    return asStatus(execute(c, "DELETE FROM oauth_tokens WHERE expires_at<=?", now));
  });
}

}  // namespace parley::store::sqlite
