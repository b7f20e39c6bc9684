#pragma once

// Statement helpers over Conn/Query: prepare-bind-step in one call, rows mapped by a row
// reader (rows.h), and the error shaping every store room shares. Private to store/sqlite.
// Each helper runs on the connection it is given, on the calling thread; a Query it returns
// borrows that connection and must not outlive it.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "store/sqlite/conn.h"

// Returns the error of a Status/Result expression from the enclosing function.
#define PARLEY_STORE_TRY(expr)                                \
  do {                                                        \
    if (auto try_status_ = (expr); !try_status_)              \
      return std::unexpected(std::move(try_status_).error()); \
  } while (0)

namespace parley::store::sqlite {

// A binary parameter (bound as BLOB rather than TEXT).
struct Blob {
  std::string_view bytes;
};

inline void bindOne(Query& q, const Blob& b) { q.blob(b.bytes); }
template <class T>
void bindOne(Query& q, const T& v) {
  q.arg(v);
}

// Prepares (cached) `sql`, binds `args` in order and returns the query, ready to step.
template <class... Args>
Result<Query> prepare(Conn& c, const std::string& sql, const Args&... args) {
  auto q = c.query(sql);
  if (!q) return q;
  (bindOne(*q, args), ...);
  return q;
}

// Runs a statement without result rows; returns the number of rows it changed.
template <class... Args>
Result<int> execute(Conn& c, const std::string& sql, const Args&... args) {
  auto q = prepare(c, sql, args...);
  if (!q) return std::unexpected(q.error());
  PARLEY_STORE_TRY(q->run());
  return q->changes();
}

// Steps `q` to the end, mapping every row with `row(Query&)`.
template <class T, class RowFn>
Result<std::vector<T>> collect(Query& q, RowFn row) {
  std::vector<T> out;
  for (;;) {
    auto has = q.next();
    if (!has) return std::unexpected(has.error());
    if (!*has) break;
    out.push_back(row(q));
  }
  return out;
}

// All rows of a query, each mapped by `row(Query&)`.
template <class T, class RowFn, class... Args>
Result<std::vector<T>> selectAll(Conn& c, const std::string& sql, RowFn row, const Args&... args) {
  auto q = prepare(c, sql, args...);
  if (!q) return std::unexpected(q.error());
  return collect<T>(*q, row);
}

// The first row of a query, or nullopt.
template <class T, class RowFn, class... Args>
Result<std::optional<T>> selectOne(Conn& c, const std::string& sql, RowFn row,
                                   const Args&... args) {
  auto q = prepare(c, sql, args...);
  if (!q) return std::unexpected(q.error());
  auto has = q->next();
  if (!has) return std::unexpected(has.error());
  if (!*has) return std::optional<T>();
  return std::optional<T>(row(*q));
}

// Whether a query returns a row.
template <class... Args>
Result<bool> exists(Conn& c, const std::string& sql, const Args&... args) {
  auto r = selectOne<int>(
      c, sql, [](Query&) { return 1; }, args...);
  if (!r) return std::unexpected(r.error());
  return r->has_value();
}

// Replaces the message of a Conflict error (keeps other errors as they are).
inline Status conflictAs(Status st, const std::string& message) {
  if (!st && st.error().code == ErrorCode::kConflict) return conflict(message);
  return st;
}

template <class T>
Status asStatus(const Result<T>& r) {
  if (!r) return std::unexpected(r.error());
  return {};
}

// Turns "no row" into NotFound(message).
template <class T>
Result<T> found(Result<std::optional<T>>&& r, const std::string& message) {
  if (r.has_value()) {
    if (r->has_value()) return std::move(**r);
    return notFound(message);
  }
  return std::unexpected(std::move(r.error()));
}

// Turns "no row changed" into NotFound(message).
inline Status changedOrNotFound(const Result<int>& n, const std::string& message) {
  if (!n) return std::unexpected(n.error());
  if (*n == 0) return notFound(message);
  return {};
}

}  // namespace parley::store::sqlite
