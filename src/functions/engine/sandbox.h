#pragma once

// The layers a function worker process puts between itself and the system, applied in its
// start-up (worker_host.cpp) in this order:
//   1. lockDown(): every descriptor but 0-2 and the channel closed (close_range), parent-death
//      signal SIGKILL, no new privileges, no core dumps, an address-space limit.
//   2. (the worker reads its configuration and starts V8: V8's threads exist from here on)
//   3. applySeccomp(): a seccomp filter on every thread (TSYNC) that allows only what V8, glibc
//      and the worker loop use. Refused with EPERM: open/openat/creat, socket/connect/bind/...,
//      fork (clone without CLONE_THREAD), kill, ioctl and anything not on the list; clone3 gets
//      ENOSYS (glibc then uses clone, whose flags the filter can see). The process is killed
//      (SIGSYS) on execve/execveat, ptrace, process_vm_readv/writev: no legitimate code path of
//      a worker reaches them, so reaching one means an escape attempt.
// Plain C++ (libseccomp); no V8.

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "common/result.h"

namespace parley::functions::engine::sandbox {

// Step 1. `channel_fd` is kept; `address_space_bytes` 0 = no limit. Fails when a step that the
// kernel should allow fails (the worker then exits).
Status lockDown(int channel_fd, pid_t expected_parent, std::size_t address_space_bytes);

// Step 3, on every thread of the process.
Status applySeccomp();

// Test-only: performs `what` from inside the worker and describes the outcome (errno names),
// e.g. "open: EPERM". See Engine::probeWorkerForTest for the list. "execve" does not return
// when the filter works (the process is killed).
std::string probe(const std::string& what, int channel_fd);

}  // namespace parley::functions::engine::sandbox
