#pragma once

// Thin RAII wrappers over one SQLite connection and its prepared statements. Private to
// store/sqlite: sqlite3* never leaves this folder.
// A Conn is used by one thread at a time (the writer thread, or a reader while it is leased).

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/result.h"

namespace parley::store::sqlite {

// An Error for SQLite result code `rc`: constraint violations are Conflict, busy/locked/full/I/O
// are Unavailable, everything else Internal. `what` says which operation failed.
Error sqliteError(int rc, std::string_view what, sqlite3* db);

class Conn;

// One execution of a cached prepared statement. Binds parameters in order with arg(), steps
// with next()/run(), and resets the statement (ending its implicit read transaction) on
// destruction. Borrowed from a Conn; must not outlive it or be used from another thread.
class Query {
 public:
  Query(Conn& conn, sqlite3_stmt* stmt) : conn_(&conn), stmt_(stmt) {}
  Query(Query&& o) noexcept : conn_(o.conn_), stmt_(o.stmt_), next_arg_(o.next_arg_), rc_(o.rc_) {
    o.stmt_ = nullptr;
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  Query& operator=(Query&&) = delete;
  ~Query();

  Query& arg(std::int64_t v);
  Query& arg(int v) { return arg(static_cast<std::int64_t>(v)); }
  Query& arg(std::string_view text);
  Query& arg(const std::string& text) { return arg(std::string_view(text)); }
  Query& arg(const char* text) { return arg(std::string_view(text)); }
  Query& blob(std::string_view bytes);

  // Steps once: true when a row is available, false when done.
  Result<bool> next();
  // Steps to completion (statements without result rows).
  Status run();

  std::int64_t i64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string text(int col) const;
  // Rows changed by the last run() on this connection.
  int changes() const;

 private:
  Conn* conn_;
  sqlite3_stmt* stmt_;
  int next_arg_ = 1;
  int rc_ = SQLITE_OK;  // first bind error, reported by next()/run()
};

// Sets SQLite's process-wide options once, before SQLite's first use in this process (later
// calls do nothing): memory statistics off, so that SQLite's allocations do not all take one
// global mutex (nothing here reads sqlite3_memory_used). Conn::open and the VFS registration
// call it; if something else initialised SQLite first, the defaults stay.
void configureLibrary();

// One open connection with a cache of prepared statements keyed by SQL text.
class Conn {
 public:
  enum class Mode { kReadWrite, kReadOnly };

  // Opens `path` (creating it in kReadWrite mode) with a busy timeout, through the named SQLite
  // VFS (nullptr: the default).
  static Result<std::unique_ptr<Conn>> open(const std::string& path, Mode mode, int busy_timeout_ms,
                                            const char* vfs = nullptr);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Runs one or more statements without parameters or cached plans (DDL, pragmas).
  Status exec(const std::string& sql);
  // A query on the cached prepared statement for `sql` (prepared on first use).
  Result<Query> query(const std::string& sql);
  // Runs a parameterless cached statement such as "SAVEPOINT w" or "COMMIT".
  Status run(const std::string& sql);

  sqlite3* raw() const { return db_; }

 private:
  explicit Conn(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> stmts_;
};

}  // namespace parley::store::sqlite
