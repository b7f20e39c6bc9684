#include "functions/engine/sandbox.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>

namespace parley::functions::engine::sandbox {

namespace {

// "The first argument equals v", every field set (libseccomp's SCMP_A0 leaves datum_b to the
// compound literal's zero-fill, which clang's -Wmissing-field-initializers refuses).
scmp_arg_cmp firstArgEquals(scmp_datum_t v) { return scmp_arg_cmp{0, SCMP_CMP_EQ, v, 0}; }

std::string errnoName(int e) {
  const char* n = strerrorname_np(e);
  return n ? n : std::to_string(e);
}

std::string outcome(const char* what, long r) {
  if (r >= 0) return std::string(what) + ": allowed";
  return std::string(what) + ": " + errnoName(errno);
}

}  // namespace

Status lockDown(int channel_fd, pid_t expected_parent, std::size_t address_space_bytes) {
  // Nothing inherited but stdin/stdout/stderr (/dev/null, /dev/null, the server's log) and the
  // channel (the caller put it at 3).
  if (channel_fd != 3) return invalid("the channel must be descriptor 3");
  if (::close_range(4, ~0U, 0) != 0)
    return internalError(std::string("close_range: ") + std::strerror(errno));
  // Die with the server; if it is already gone, do not run.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
    return internalError(std::string("PR_SET_PDEATHSIG: ") + std::strerror(errno));
  if (::getppid() != expected_parent) return internalError("the server is gone");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return internalError(std::string("PR_SET_NO_NEW_PRIVS: ") + std::strerror(errno));
  // Never dumpable: no core file, no ptrace attach by other processes of the same user.
  rlimit zero{0, 0};
  if (::setrlimit(RLIMIT_CORE, &zero) != 0)
    return internalError(std::string("RLIMIT_CORE: ") + std::strerror(errno));
  ::prctl(PR_SET_DUMPABLE, 0);
  if (address_space_bytes > 0) {
    rlimit as{address_space_bytes, address_space_bytes};
    if (::setrlimit(RLIMIT_AS, &as) != 0)
      return internalError(std::string("RLIMIT_AS: ") + std::strerror(errno));
  }
  rlimit files{16, 16};
  ::setrlimit(RLIMIT_NOFILE, &files);
  return {};
}

Status applySeccomp() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (!ctx) return internalError("seccomp_init failed");
  int rc = 0;
  auto allow = [&](std::initializer_list<int> calls) {
    for (int nr : calls) rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
  };
  allow({
      // Memory (V8 heaps, code space, malloc).
      SCMP_SYS(mmap),
      SCMP_SYS(munmap),
      SCMP_SYS(mprotect),
      SCMP_SYS(madvise),
      SCMP_SYS(mremap),
      SCMP_SYS(brk),
      SCMP_SYS(mincore),
      SCMP_SYS(membarrier),
      // Threads and their synchronisation (V8 platform workers, the watchdog).
      SCMP_SYS(futex),
      SCMP_SYS(set_robust_list),
      SCMP_SYS(get_robust_list),
      SCMP_SYS(rseq),
      SCMP_SYS(sched_yield),
      SCMP_SYS(sched_getaffinity),
      SCMP_SYS(sched_getparam),
      SCMP_SYS(sched_getscheduler),
      SCMP_SYS(getpriority),
      SCMP_SYS(gettid),
      SCMP_SYS(getpid),
      SCMP_SYS(getppid),
      SCMP_SYS(exit),
      SCMP_SYS(exit_group),
      SCMP_SYS(set_tid_address),
      // Signals (glibc's abort, thread cancellation).
      SCMP_SYS(rt_sigreturn),
      SCMP_SYS(rt_sigprocmask),
      SCMP_SYS(rt_sigaction),
      SCMP_SYS(sigaltstack),
      SCMP_SYS(restart_syscall),
      // Time.
      SCMP_SYS(clock_gettime),
      SCMP_SYS(clock_getres),
      SCMP_SYS(clock_nanosleep),
      SCMP_SYS(nanosleep),
      SCMP_SYS(gettimeofday),
      SCMP_SYS(time),
      SCMP_SYS(getrusage),
      SCMP_SYS(times),
      // The channel (and stderr for fatal messages); descriptors it already holds only.
      SCMP_SYS(read),
      SCMP_SYS(write),
      SCMP_SYS(readv),
      SCMP_SYS(writev),
      SCMP_SYS(recvfrom),
      SCMP_SYS(recvmsg),
      SCMP_SYS(sendto),
      SCMP_SYS(sendmsg),
      SCMP_SYS(poll),
      SCMP_SYS(ppoll),
      SCMP_SYS(close),
      SCMP_SYS(fstat),
      SCMP_SYS(newfstatat),
      SCMP_SYS(lseek),
      SCMP_SYS(fcntl),
      SCMP_SYS(shutdown),
      SCMP_SYS(getrandom),
      SCMP_SYS(sysinfo),
      SCMP_SYS(uname),
      SCMP_SYS(getrlimit),
      SCMP_SYS(prlimit64),
      SCMP_SYS(getuid),
      SCMP_SYS(geteuid),
      SCMP_SYS(getgid),
      SCMP_SYS(getegid),
  });
  // New threads only: clone must carry CLONE_THREAD (no fork, no new process).
  rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
  // clone3 passes its flags in memory the filter cannot read: make glibc fall back to clone.
  rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  // Signals to its own threads only (abort(), V8's thread interrupts).
  rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                         firstArgEquals(static_cast<scmp_datum_t>(::getpid())));
  // Thread names and reading the process's own settings only.
  for (int option : {PR_SET_NAME, PR_GET_NAME, PR_GET_NO_NEW_PRIVS, PR_GET_SECCOMP,
                     PR_GET_PDEATHSIG, PR_GET_DUMPABLE})
    rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                           firstArgEquals(static_cast<scmp_datum_t>(option)));
  // No legitimate path reaches these: end the process.
  for (int nr : {SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv),
                 SCMP_SYS(process_vm_writev)})
    rc |= seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, nr, 0);
  if (rc != 0) {
    seccomp_release(ctx);
    return internalError("seccomp_rule_add failed");
  }
  // Every thread of the process, including V8's, which already run.
  if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) != 0) {
    seccomp_release(ctx);
    return internalError("seccomp TSYNC is not supported");
  }
  int loaded = seccomp_load(ctx);
  seccomp_release(ctx);
  if (loaded != 0) return internalError("seccomp_load: " + std::string(std::strerror(-loaded)));
  return {};
}

std::string probe(const std::string& what, int channel_fd) {
  errno = 0;
  if (what == "open") return outcome("open", ::open("/etc/hostname", O_RDONLY));
  if (what == "openat") return outcome("openat", ::openat(AT_FDCWD, "/etc/hostname", O_RDONLY));
  if (what == "socket") return outcome("socket", ::socket(AF_INET, SOCK_STREAM, 0));
  if (what == "connect") {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(80);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return outcome("connect", ::connect(channel_fd, reinterpret_cast<sockaddr*>(&a), sizeof a));
  }
  if (what == "fork") {
    pid_t p = ::fork();
    if (p == 0) ::_exit(0);
    return outcome("fork", p);
  }
  if (what == "kill") return outcome("kill", ::kill(::getppid(), 0));
  if (what == "execve") {
    char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
    char* const envp[] = {nullptr};
    return outcome("execve", ::execve("/bin/true", argv, envp));
  }
  if (what == "ptrace") return outcome("ptrace", ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr));
  if (what == "abort") ::abort();
  if (what == "rlimits") {
    rlimit as{}, core{}, nofile{};
    ::getrlimit(RLIMIT_AS, &as);
    ::getrlimit(RLIMIT_CORE, &core);
    ::getrlimit(RLIMIT_NOFILE, &nofile);
    auto v = [](rlim_t x) {
      return x == RLIM_INFINITY ? std::string("unlimited") : std::to_string(x);
    };
    return "as=" + v(as.rlim_cur) + " core=" + v(core.rlim_cur) + " nofile=" + v(nofile.rlim_cur);
  }
  if (what == "fds") {
    std::string open_fds;
    for (int fd = 0; fd < 1024; ++fd) {
      if (::fcntl(fd, F_GETFD) != -1)
        open_fds += (open_fds.empty() ? "" : ",") + std::to_string(fd);
    }
    return "fds=" + open_fds;
  }
  if (what == "nnp") return "nnp=" + std::to_string(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
  if (what == "seccomp") return "seccomp=" + std::to_string(::prctl(PR_GET_SECCOMP, 0, 0, 0, 0));
  if (what == "pdeathsig") {
    int sig = 0;
    ::prctl(PR_GET_PDEATHSIG, &sig);
    return "pdeathsig=" + std::to_string(sig);
  }
  return "unknown probe '" + what + "'";
}

}  // namespace parley::functions::engine::sandbox
