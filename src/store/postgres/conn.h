#pragma once

// A libpq connection with a cache of prepared statements, reconnection with backoff and the
// mapping of PostgreSQL errors to parley errors. Private to store/postgres/: PGconn never leaves
// this folder. Not thread-safe: one thread uses a connection at a time (the pool leases it).

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"

namespace parley::store::pg {

// A parameter as libpq takes it: text, or binary (bytea).
struct Param {
  std::string value;
  bool binary = false;
};

// Owns a PGresult.
class Rows {
 public:
  explicit Rows(PGresult* r) : r_(r, &PQclear) {}
  int size() const { return PQntuples(r_.get()); }
  // Rows changed by an INSERT/UPDATE/DELETE.
  std::int64_t affected() const;
  std::string text(int row, int col) const;
  std::int64_t i64(int row, int col) const;
  bool isNull(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  // A bytea column read in text format ("\x" + hex) as its bytes.
  std::string bytes(int row, int col) const;

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> r_;
};

class Conn {
 public:
  // A transaction left idle this long (its node stopped or cut off between two statements) is
  // ended by the server with its session, releasing its locks: a paused node's open write does
  // not keep a lease row locked (so that claims skip it) for longer than this.
  static constexpr std::chrono::milliseconds kIdleTransactionTimeout{5000};

  // Connects (blocking). Unavailable with libpq's message when the server cannot be reached.
  // Every session (and each one after a reconnect) gets `idle_transaction_timeout` as its
  // idle_in_transaction_session_timeout.
  static Result<std::unique_ptr<Conn>> open(
      const std::string& conninfo,
      std::chrono::milliseconds idle_transaction_timeout = kIdleTransactionTimeout);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Runs SQL without parameters through the simple protocol (may hold several statements).
  Status exec(const std::string& sql);
  // As exec, and returns the rows of the last statement.
  Result<Rows> execRows(const std::string& sql);
  // Runs one statement, prepared on first use on this connection (cached by its text).
  Result<Rows> query(const std::string& sql, const std::vector<Param>& params);

  // Before a use: when the connection was lost, reconnects — at most once per backoff period
  // (100 ms doubling to 5 s); in between, and when reconnecting fails, Unavailable.
  Status ensure();
  bool inFailedTransaction() const { return PQtransactionStatus(c_) == PQTRANS_INERROR; }
  bool broken() const { return PQstatus(c_) != CONNECTION_OK; }
  // While held (inside a transaction), a lost connection is not reconnected: the calls fail with
  // Unavailable, so no statement of a lost transaction runs on a new session in autocommit (and
  // a COMMIT there cannot look like success).
  void holdReconnects(bool hold) { hold_ = hold; }
  // Where it is connected ("host:port/db"), for messages (never the password).
  std::string target() const;

 private:
  Conn(PGconn* c, std::chrono::milliseconds idle_tx) : c_(c), idle_tx_(idle_tx) {}
  // Sets the session's settings (after connecting and after each reconnect).
  Status configure();
  // The error of a failed result (or of the connection when `r` is null).
  Error errorOf(const PGresult* r) const;

  PGconn* c_;
  std::unordered_map<std::string, std::string> prepared_;  // SQL text -> statement name
  int next_name_ = 0;
  std::chrono::steady_clock::time_point next_retry_{};
  std::chrono::milliseconds backoff_{0};
  std::string last_error_;
  bool hold_ = false;
  std::chrono::milliseconds idle_tx_;
};

// Checks that `uri` is a postgres:// or postgresql:// URI libpq accepts (parameters such as
// sslmode included). Invalid with the reason otherwise.
Status checkUri(const std::string& uri);

}  // namespace parley::store::pg
