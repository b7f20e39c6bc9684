#pragma once

// A throwaway PostgreSQL server for tests: initdb into a temporary folder, `postgres` on a free
// loopback port (and a Unix socket in that folder), fresh databases (createDatabase) or one
// database emptied for each test (emptiedDatabase), stopped and removed when the test binary
// exits. Run as root, the server runs as the `postgres` user
// (PostgreSQL refuses root) and the folder is handed to it. The binaries are looked for in
// $PARLEY_PG_BIN, else the newest /usr/lib/postgresql/<version>/bin (Debian's layout).
// fsync is off: the tests check what a committed transaction holds, not power-loss safety.
// A test that crashes its server (crash(): PostgreSQL's immediate stop, crash recovery on
// restart()) starts one of its own (startOwn) instead of the shared one.

#include <arpa/inet.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace parley::testing {

class PostgresServer {
 public:
  // The server of this process, started on first use. Check ok() (and error()) before use.
  static PostgresServer& shared() {
    static PostgresServer server;
    return server;
  }

  // A server of the caller's own, with extra `-c name=value` settings, stopped and removed when
  // the returned object is destroyed. Check ok() (and error()) before use.
  static std::unique_ptr<PostgresServer> startOwn(std::vector<std::string> settings = {}) {
    return std::unique_ptr<PostgresServer>(new PostgresServer(std::move(settings)));
  }

  // PostgreSQL's immediate stop (SIGQUIT to the postmaster): every backend exits at once
  // without writing what it holds in memory (WAL buffers included), as if the server crashed;
  // the next start runs crash recovery. Returns when the server is gone.
  void crash() {
    std::lock_guard lock(mu_);
    if (pid_ <= 0) return;
    ::kill(pid_, SIGQUIT);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Starts the server again on its folder and port (after crash()): true once it answers.
  bool restart() {
    std::lock_guard lock(mu_);
    if (pid_ > 0) return true;
    return startServer();
  }

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  int port() const { return port_; }

  // Creates an empty database and returns its URI (postgresql://postgres@127.0.0.1:PORT/NAME).
  // "" (and error() says why) on failure.
  std::string createDatabase() {
    std::lock_guard lock(mu_);
    if (!ok()) return "";
    const std::string name = "t" + std::to_string(++databases_);
    return run("postgres", "CREATE DATABASE " + name) ? uri(name) : "";
  }

  // The URI of a database that is emptied for each caller: every row of every table but
  // schema_migrations is deleted, so a store opened on it starts as on a new database whose
  // schema is already migrated (bigserial counters go on: only their order matters). Much faster
  // than CREATE DATABASE (which copies a template) or TRUNCATE (new files for every table) for
  // suites that open a store per test. "" (and error()) on failure.
  std::string emptiedDatabase() {
    std::lock_guard lock(mu_);
    if (!ok()) return "";
    const std::string db = "contract";
    if (!contract_created_) {
      if (!run("postgres", "CREATE DATABASE " + db)) return "";
      contract_created_ = true;
    }
    if (!run(db,
             "DO $$ DECLARE t text; BEGIN FOR t IN SELECT quote_ident(tablename) FROM pg_tables "
             "WHERE schemaname = 'public' AND tablename <> 'schema_migrations' LOOP "
             "EXECUTE 'DELETE FROM ' || t; END LOOP; END $$"))
      return "";
    return uri(db);
  }

  std::string uri(const std::string& db) const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }

  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  ~PostgresServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGINT);  // fast shutdown
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

 private:
  explicit PostgresServer(std::vector<std::string> settings = {}) : settings_(std::move(settings)) {
    const std::string bin = binDir();
    if (bin.empty()) {
      error_ = "no PostgreSQL server binaries (set PARLEY_PG_BIN or install postgresql)";
      return;
    }
    std::string tmpl = (std::filesystem::temp_directory_path() / "parley-pg-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) {
        error_ = "running as root needs a `postgres` user to run the server as";
        return;
      }
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
      if (::chown(dir_.c_str(), uid_, gid_) != 0) {
        error_ = "cannot hand " + dir_ + " to the postgres user";
        return;
      }
    }
    const std::string data = dir_ + "/data";
    pid_t init = spawn({bin + "/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--no-locale", "--no-sync", "--no-instructions"},
                       dir_ + "/initdb.log");
    int status = 0;
    if (init < 0 || ::waitpid(init, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
      error_ = "initdb failed (see " + dir_ + "/initdb.log)";
      return;
    }
    port_ = freePort();
    bin_ = bin;
    startServer();
  }

  // Starts `postgres` on dir_/data and port_ and waits until it answers; false (error_ set)
  // when it does not within 30 s.
  bool startServer() {
    std::vector<std::string> argv = {bin_ + "/postgres",
                                     "-D",
                                     dir_ + "/data",
                                     "-k",
                                     dir_,
                                     "-p",
                                     std::to_string(port_),
                                     "-c",
                                     "listen_addresses=127.0.0.1",
                                     "-c",
                                     "fsync=off",
                                     "-c",
                                     "full_page_writes=off",
                                     "-c",
                                     "max_connections=200",
                                     "-c",
                                     "shared_buffers=32MB"};
    for (const auto& s : settings_) {
      argv.push_back("-c");
      argv.push_back(s);
    }
    pid_ = spawn(argv, dir_ + "/server." + std::to_string(++starts_) + ".log");
    if (pid_ < 0) {
      error_ = "cannot start postgres";
      return false;
    }
    const std::string ping = uri("postgres");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    int status = 0;
    while (PQping(ping.c_str()) != PQPING_OK) {
      if (std::chrono::steady_clock::now() > deadline || ::waitpid(pid_, &status, WNOHANG) != 0) {
        error_ = "postgres did not become ready (see " + dir_ + "/server.*.log)";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  // Runs `sql` on database `db`; false (error_ set) on failure. REQUIRES: mu_ held.
  bool run(const std::string& db, const std::string& sql) {
    PGconn* c = PQconnectdb(uri(db).c_str());
    bool ok = false;
    if (PQstatus(c) == CONNECTION_OK) {
      PGresult* r = PQexec(c, sql.c_str());
      ok = PQresultStatus(r) == PGRES_COMMAND_OK;
      if (!ok) error_ = "test server: " + sql + ": " + PQresultErrorMessage(r);
      PQclear(r);
    } else {
      error_ = std::string("cannot connect to the test server: ") + PQerrorMessage(c);
    }
    PQfinish(c);
    return ok;
  }

  static std::string binDir() {
    if (const char* env = ::getenv("PARLEY_PG_BIN"); env && *env) return env;
    std::error_code ec;
    std::vector<std::filesystem::path> found;
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec))
      if (std::filesystem::exists(e.path() / "bin" / "postgres")) found.push_back(e.path());
    if (found.empty()) return "";
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
      return std::stoi(a.filename().string()) < std::stoi(b.filename().string());
    });
    return (found.back() / "bin").string();
  }

  static int freePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
    ::close(fd);
    return port;
  }

  // Runs `argv` as the server's user with stdout and stderr into `log`. The child gets SIGINT
  // (PostgreSQL's fast shutdown) if this process dies first.
  pid_t spawn(const std::vector<std::string>& argv, const std::string& log) const {
    pid_t pid = ::fork();
    if (pid != 0) return pid;
    if (::geteuid() == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0) ::_exit(126);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGINT);
    if (FILE* f = ::fopen(log.c_str(), "w")) {
      ::dup2(::fileno(f), 1);
      ::dup2(::fileno(f), 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }

  std::mutex mu_;
  const std::vector<std::string> settings_;
  std::string bin_;
  int starts_ = 0;
  std::string error_;
  std::string dir_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  int port_ = 0;
  pid_t pid_ = -1;
  int databases_ = 0;              // guarded by mu_
  bool contract_created_ = false;  // guarded by mu_
};

}  // namespace parley::testing
