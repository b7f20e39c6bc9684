#pragma once

// A throwaway `nats-server -js` for tests: a free loopback port, its store in a temporary
// folder, killed (SIGKILL also on the test's own death, PR_SET_PDEATHSIG) and removed when the
// object is destroyed. The binary is $PARLEY_NATS_SERVER, else nats-server on PATH, else
// /usr/sbin/nats-server (Debian's).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

namespace parley::testing {

class NatsServer {
 public:
  NatsServer() {
    char tmpl[] = "/tmp/parley-nats-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    port_ = freePort();
    start();
  }
  ~NatsServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }

  // Kills the server (SIGKILL) and waits for it.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Starts it again on the same port and store.
  void start() {
    const std::string bin = binary();
    const std::string port = std::to_string(port_);
    const std::string log = dir_ + "/server.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (auto* f = std::freopen(log.c_str(), "a", stderr)) (void)f;
      if (auto* f = std::freopen(log.c_str(), "a", stdout)) (void)f;
      ::execl(bin.c_str(), bin.c_str(), "-js", "-a", "127.0.0.1", "-p", port.c_str(), "-sd",
              dir_.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      if (accepts()) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = bin + " exited at start (see " + log + ")";
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    error_ = bin + " did not listen within 5 s";
  }

 private:
  static std::string binary() {
    if (const char* e = ::getenv("PARLEY_NATS_SERVER"); e && *e) return e;
    for (const char* p :
         {"/usr/bin/nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"})
      if (::access(p, X_OK) == 0) return p;
    return "nats-server";
  }
  static int freePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
    ::close(fd);
    return port;
  }
  bool accepts() const {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port_));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  }

  std::string dir_;
  std::string error_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace parley::testing
