#include "store/sqlite/conn.h"

#include <string>

namespace parley::store::sqlite {

Error sqliteError(int rc, std::string_view what, sqlite3* db) {
  std::string msg = std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xFF) {
    case SQLITE_CONSTRAINT:
      return Error{ErrorCode::kConflict, std::move(msg)};
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
      return Error{ErrorCode::kUnavailable, std::move(msg) + "; check the disk and retry"};
    default:
      return Error{ErrorCode::kInternal, std::move(msg)};
  }
}

Query::~Query() {
  if (stmt_) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
}

Query& Query::arg(std::int64_t v) {
  int rc = sqlite3_bind_int64(stmt_, next_arg_++, v);
  if (rc != SQLITE_OK && rc_ == SQLITE_OK) rc_ = rc;
  return *this;
}

Query& Query::arg(std::string_view text) {
  int rc = sqlite3_bind_text64(stmt_, next_arg_++, text.data(), text.size(), SQLITE_TRANSIENT,
                               SQLITE_UTF8);
  if (rc != SQLITE_OK && rc_ == SQLITE_OK) rc_ = rc;
  return *this;
}

Query& Query::blob(std::string_view bytes) {
  int rc = sqlite3_bind_blob64(stmt_, next_arg_++, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK && rc_ == SQLITE_OK) rc_ = rc;
  return *this;
}

Result<bool> Query::next() {
  if (rc_ != SQLITE_OK) return std::unexpected(sqliteError(rc_, "bind", conn_->raw()));
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return std::unexpected(sqliteError(rc, "step", conn_->raw()));
}

Status Query::run() {
  for (;;) {
    auto r = next();
    if (!r) return std::unexpected(r.error());
    if (!*r) return {};
  }
}

std::string Query::text(int col) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
  int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string(p, static_cast<std::size_t>(n)) : std::string();
}

int Query::changes() const { return sqlite3_changes(conn_->raw()); }

void configureLibrary() {
  static const int rc = [] {
    // SQLITE_MISUSE when SQLite is already initialised: then its defaults stay, harmlessly.
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  }();
  (void)rc;
}

Result<std::unique_ptr<Conn>> Conn::open(const std::string& path, Mode mode, int busy_timeout_ms,
                                         const char* vfs) {
  configureLibrary();
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  flags |=
      mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, vfs);
  if (rc != SQLITE_OK) {
    Error e = sqliteError(rc, "cannot open database " + path, db);
    sqlite3_close_v2(db);
    return std::unexpected(e);
  }
  sqlite3_busy_timeout(db, busy_timeout_ms);
  sqlite3_extended_result_codes(db, 1);
  return std::unique_ptr<Conn>(new Conn(db));
}

Conn::~Conn() {
  for (auto& [_, s] : stmts_) sqlite3_finalize(s);
  sqlite3_close_v2(db_);
}

Status Conn::exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    Error e = sqliteError(rc, "exec", nullptr);
    e.message = "exec: " + msg;
    return std::unexpected(e);
  }
  return {};
}

Result<Query> Conn::query(const std::string& sql) {
  auto it = stmts_.find(sql);
  if (it == stmts_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) return std::unexpected(sqliteError(rc, "prepare", db_));
    it = stmts_.emplace(sql, stmt).first;
  }
  return Query(*this, it->second);
}

Status Conn::run(const std::string& sql) {
  auto q = query(sql);
  if (!q) return std::unexpected(q.error());
  return q->run();
}

}  // namespace parley::store::sqlite
