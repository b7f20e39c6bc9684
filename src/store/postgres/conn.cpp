#include "store/postgres/conn.h"

#include <algorithm>
#include <charconv>

namespace parley::store::pg {
namespace {

constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};

std::string trimmed(const char* s) {
  std::string out = s ? s : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 0;
}

}  // namespace

std::int64_t Rows::affected() const {
  const char* n = PQcmdTuples(r_.get());
  std::int64_t v = 0;
  if (n && *n) std::from_chars(n, n + std::char_traits<char>::length(n), v);
  return v;
}

std::string Rows::text(int row, int col) const {
  return std::string(PQgetvalue(r_.get(), row, col),
                     static_cast<std::size_t>(PQgetlength(r_.get(), row, col)));
}

std::int64_t Rows::i64(int row, int col) const {
  const char* s = PQgetvalue(r_.get(), row, col);
  const int len = PQgetlength(r_.get(), row, col);
  std::int64_t v = 0;
  std::from_chars(s, s + len, v);
  return v;
}

std::string Rows::bytes(int row, int col) const {
  const char* s = PQgetvalue(r_.get(), row, col);
  const int len = PQgetlength(r_.get(), row, col);
  std::string out;
  if (len < 2 || s[0] != '\\' || s[1] != 'x') return out;
  out.reserve(static_cast<std::size_t>(len - 2) / 2);
  for (int i = 2; i + 1 < len; i += 2)
    out.push_back(static_cast<char>(hexValue(s[i]) * 16 + hexValue(s[i + 1])));
  return out;
}

Result<std::unique_ptr<Conn>> Conn::open(const std::string& conninfo,
                                         std::chrono::milliseconds idle_transaction_timeout) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  if (c == nullptr) return makeError(ErrorCode::kUnavailable, "postgres store: out of memory");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = trimmed(PQerrorMessage(c));
    PQfinish(c);
    return makeError(ErrorCode::kUnavailable, "postgres store: cannot connect: " + msg);
  }
  auto conn = std::unique_ptr<Conn>(new Conn(c, idle_transaction_timeout));
  // Quiet NOTICEs (e.g. "relation already exists, skipping") instead of libpq's stderr print.
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  if (auto st = conn->configure(); !st) return std::unexpected(st.error());
  return conn;
}

Status Conn::configure() {
  PGresult* r = PQexec(
      c_,
      ("SET idle_in_transaction_session_timeout = " + std::to_string(idle_tx_.count())).c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  Error e = ok ? Error{} : errorOf(r);
  PQclear(r);
  if (!ok) return std::unexpected(e);
  return {};
}

Conn::~Conn() { PQfinish(c_); }

std::string Conn::target() const {
  std::string host = PQhost(c_) ? PQhost(c_) : "";
  std::string port = PQport(c_) ? PQport(c_) : "";
  std::string db = PQdb(c_) ? PQdb(c_) : "";
  return host + ":" + port + "/" + db;
}

Error Conn::errorOf(const PGresult* r) const {
  if (PQstatus(c_) == CONNECTION_BAD)
    return Error{ErrorCode::kUnavailable, "postgres store: the connection to " + target() +
                                              " was lost: " + trimmed(PQerrorMessage(c_))};
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  std::string msg = trimmed(r ? PQresultErrorMessage(r) : PQerrorMessage(c_));
  std::string_view s = state ? state : "";
  if (s == "23505") return Error{ErrorCode::kConflict, "postgres store: " + msg};
  // Text PostgreSQL cannot hold (a NUL byte, invalid UTF-8 in a UTF8 database).
  if (s == "22021" || s == "22P05") return Error{ErrorCode::kInvalid, "postgres store: " + msg};
  // Serialization failures, deadlocks, a server shutting down or out of resources.
  if (s == "40001" || s == "40P01" || s.starts_with("57") || s.starts_with("53") ||
      s.starts_with("08"))
    return Error{ErrorCode::kUnavailable, "postgres store: " + msg};
  return Error{ErrorCode::kInternal, "postgres store: " + msg};
}

Status Conn::ensure() {
  if (PQstatus(c_) == CONNECTION_OK) return {};
  if (hold_)
    return makeError(ErrorCode::kUnavailable, "postgres store: the connection to " + target() +
                                                  " was lost during a transaction (rolled back)");
  const auto now = std::chrono::steady_clock::now();
  if (now < next_retry_)
    return makeError(ErrorCode::kUnavailable, "postgres store: the connection to " + target() +
                                                  " is lost (" + last_error_ +
                                                  "); reconnecting with backoff");
  PQreset(c_);
  prepared_.clear();
  if (PQstatus(c_) == CONNECTION_OK) {
    backoff_ = std::chrono::milliseconds{0};
    return configure();
  }
  last_error_ = trimmed(PQerrorMessage(c_));
  backoff_ = backoff_.count() == 0 ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
  next_retry_ = now + backoff_;
  return makeError(ErrorCode::kUnavailable,
                   "postgres store: cannot reconnect to " + target() + ": " + last_error_);
}

Status Conn::exec(const std::string& sql) {
  auto rows = execRows(sql);
  if (!rows) return std::unexpected(std::move(rows.error()));
  return {};
}

Result<Rows> Conn::execRows(const std::string& sql) {
  if (auto st = ensure(); !st) return std::unexpected(st.error());
  PGresult* r = PQexec(c_, sql.c_str());
  Rows rows(r);
  const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return std::unexpected(errorOf(r));
  return rows;
}

Result<Rows> Conn::query(const std::string& sql, const std::vector<Param>& params) {
  if (auto st = ensure(); !st) return std::unexpected(st.error());
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = "s" + std::to_string(next_name_++);
    PGresult* pr = PQprepare(c_, name.c_str(), sql.c_str(), 0, nullptr);
    Rows prep(pr);
    if (pr == nullptr || PQresultStatus(pr) != PGRES_COMMAND_OK)
      return std::unexpected(errorOf(pr));
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size());
  std::vector<int> formats(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    values[i] = params[i].value.data();
    lengths[i] = static_cast<int>(params[i].value.size());
    formats[i] = params[i].binary ? 1 : 0;
  }
  PGresult* r = PQexecPrepared(c_, it->second.c_str(), static_cast<int>(params.size()),
                               values.data(), lengths.data(), formats.data(), 0);
  Rows rows(r);
  const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return std::unexpected(errorOf(r));
  }
  return rows;
}

Status checkUri(const std::string& uri) {
  if (!uri.starts_with("postgres://") && !uri.starts_with("postgresql://"))
    return invalid("a PostgreSQL store is given as postgres://USER[:PASSWORD]@HOST:PORT/DB or " +
                   std::string("postgresql://..., not '") + uri + "'");
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(uri.c_str(), &err);
  if (opts == nullptr) {
    std::string msg = trimmed(err ? err : "out of memory");
    if (err) PQfreemem(err);
    return invalid("bad PostgreSQL URI: " + msg);
  }
  // libpq checks the port only when it connects: check it here, so a typo is a usage error.
  std::string bad_port;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) != "port" || o->val == nullptr) continue;
    std::string_view ports(o->val);
    while (!ports.empty()) {
      const auto comma = ports.find(',');
      std::string_view one = ports.substr(0, comma);
      int v = 0;
      auto [p, ec] = std::from_chars(one.data(), one.data() + one.size(), v);
      if (ec != std::errc() || p != one.data() + one.size() || v < 1 || v > 65535)
        bad_port = std::string(one);
      ports = comma == std::string_view::npos ? std::string_view() : ports.substr(comma + 1);
    }
  }
  PQconninfoFree(opts);
  if (!bad_port.empty())
    return invalid("bad PostgreSQL URI: port '" + bad_port + "' is not 1-65535");
  return {};
}

}  // namespace parley::store::pg
