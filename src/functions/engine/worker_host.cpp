#include "functions/engine/worker_host.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/thread_name.h"
#include "functions/engine/sandbox.h"
#include "functions/engine/watchdog.h"
#include "functions/engine/worker.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#include <sanitizer/common_interface_defs.h>
#endif

namespace parley::functions {
namespace engine {

namespace {

// Reads the first frame (kInit) with blocking reads.
Result<WorkerConfig> readInit(int fd) {
  wire::FrameSplitter splitter;
  wire::Frame f;
  char buf[64 * 1024];
  while (!splitter.next(f)) {
    if (splitter.bad()) return internalError("malformed init frame");
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return internalError("the server closed the channel before the init frame");
    splitter.append(buf, static_cast<std::size_t>(n));
  }
  if (f.type != wire::Msg::kInit) return internalError("the first frame is not kInit");
  return proto::parseInit(f.payload);
}

std::string arg(int argc, char** argv, std::string_view name) {
  for (int i = 2; i + 1 < argc; ++i)
    if (argv[i] == name) return argv[i + 1];
  return {};
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// A sanitizer opens its report file (`log_path`) when it writes the first report, which the
// seccomp filter refuses: the sanitizer then exits (TSan with 66) without the report. So the
// worker opens `<log_path>.<pid>` before it locks down, on its stdout (/dev/null, unused, and
// kept by lockDown), and hands that descriptor to the sanitizer. The file is the one the
// sanitizer would have opened itself; it stays empty unless a report is written.
void openSanitizerReportFile() {
  std::string path;
  for (const char* name : {"TSAN_OPTIONS", "ASAN_OPTIONS"}) {
    const char* v = std::getenv(name);
    if (!v) continue;
    std::string opts = v;
    std::size_t at = 0;
    while (at < opts.size()) {
      std::size_t end = opts.find_first_of(": ", at);
      if (end == std::string::npos) end = opts.size();
      std::string_view tok(opts.data() + at, end - at);
      if (tok.starts_with("log_path=")) path = std::string(tok.substr(9));
      at = end + 1;
    }
  }
  if (path.empty() || path == "stderr" || path == "stdout") return;
  path += "." + std::to_string(::getpid());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;  // the sanitizer's own open will fail the same way and say so
  if (fd != 1) {
    ::dup2(fd, 1);
    ::close(fd);
  }
  __sanitizer_set_report_fd(reinterpret_cast<void*>(static_cast<std::uintptr_t>(1)));
}
#endif

// The worker process: sandbox, configuration, V8, seccomp, then the worker loop.
int workerProcessMain(int argc, char** argv) {
  nameThisThread("fn-worker-main");
  pid_t parent = static_cast<pid_t>(std::atoll(arg(argc, argv, "--parent").c_str()));
  std::size_t as_mb =
      static_cast<std::size_t>(std::atoll(arg(argc, argv, "--address-space-mb").c_str()));
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  as_mb = 0;  // the sanitizers reserve terabytes of shadow memory
  openSanitizerReportFile();
#endif
  void* mem = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 4, 0);
  if (mem == MAP_FAILED) {
    std::fprintf(stderr, "parley worker: cannot map the shared page: %s\n", std::strerror(errno));
    return 2;
  }
  auto* shared = static_cast<WorkerShared*>(mem);
  if (auto s = sandbox::lockDown(3, parent, as_mb << 20); !s) {
    std::fprintf(stderr, "parley worker: %s\n", s.error().message.c_str());
    return 2;
  }
  auto config = readInit(3);
  if (!config) {
    std::fprintf(stderr, "parley worker: %s\n", config.error().message.c_str());
    return 2;
  }
  v8Platform();  // starts V8's threads
  reportFatalErrorsTo(3);
  Watchdog watchdog(config->long_task);
  SystemClock clock;
  if (auto s = sandbox::applySeccomp(); !s) {
    std::fprintf(stderr, "parley worker: %s\n", s.error().message.c_str());
    return 2;
  }
  // The loop runs on a thread of its own: V8 finds a non-main thread's stack without reading
  // /proc/self/maps (which the filter refuses).
  Worker worker(3, std::move(*config), watchdog, clock, *shared);
  std::thread loop([&] {
    nameThisThread("fn-worker");
    worker.run();
  });
  loop.join();
  return 0;
}

}  // namespace

Result<pid_t> spawnWorkerProcess(const RuntimeOptions& options, int channel_fd, int shared_fd) {
  // Above 4, so the dup2s to 3 and 4 cannot overwrite each other.
  int ch = ::fcntl(channel_fd, F_DUPFD_CLOEXEC, 10);
  int sh = ::fcntl(shared_fd, F_DUPFD_CLOEXEC, 10);
  if (ch < 0 || sh < 0) {
    if (ch >= 0) ::close(ch);
    if (sh >= 0) ::close(sh);
    return internalError(std::string("fcntl: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, ch, 3);
  posix_spawn_file_actions_adddup2(&fa, sh, 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  // Its own process group: a terminal's Ctrl-C reaches the server, which stops the workers.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
  std::string parent = std::to_string(::getpid());
  std::string as_mb = std::to_string(options.worker_address_space_mb);
  std::vector<std::string> args = {options.worker_executable,
                                   std::string(kWorkerSubcommand),
                                   "--parent",
                                   parent,
                                   "--address-space-mb",
                                   as_mb};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Nothing of the server's environment but the sanitizers' settings.
  std::vector<std::string> env;
  for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"}) {
    if (const char* v = std::getenv(name)) env.push_back(std::string(name) + "=" + v);
  }
#if defined(__SANITIZE_ADDRESS__)
  // LeakSanitizer's exit-time scan stops the process's threads with ptrace, which the worker's
  // seccomp filter and non-dumpable state refuse ("LeakSanitizer has encountered a fatal error",
  // and a non-zero exit the supervisor would take for a crash). Leaks are checked in the server.
  bool has_asan = false;
  for (auto& e : env)
    if (e.starts_with("ASAN_OPTIONS=")) {
      e += ":detect_leaks=0";
      has_asan = true;
    }
  if (!has_asan) env.push_back("ASAN_OPTIONS=detect_leaks=0");
#endif
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc =
      posix_spawn(&pid, options.worker_executable.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(ch);
  ::close(sh);
  if (rc != 0) {
    return internalError("cannot start the function worker " + options.worker_executable + ": " +
                         std::strerror(rc));
  }
  return pid;
}

InProcessWorker::InProcessWorker(int fd, Limits* limits, const Clock& clock, WorkerShared& shared) {
  thread_ = std::thread([fd, limits, &clock, &shared]() mutable {
    nameThisThread("fn-worker");
    auto config = readInit(fd);
    if (config) {
      v8Platform();
      std::unique_ptr<Watchdog> own;
      if (!limits) {
        own = std::make_unique<Watchdog>(config->long_task);
        limits = own.get();
      }
      Worker worker(fd, std::move(*config), *limits, clock, shared);
      worker.run();
    }
    ::close(fd);
  });
}

InProcessWorker::~InProcessWorker() { join(); }

void InProcessWorker::join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace engine

std::optional<int> runFunctionWorkerIfAsked(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) != kWorkerSubcommand) return std::nullopt;
  return engine::workerProcessMain(argc, argv);
}

}  // namespace parley::functions
