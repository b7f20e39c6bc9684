#pragma once

// A SQLite VFS that writes a transaction's WAL frames with one pwrite(2) instead of two per frame.
//
// SQLite writes each WAL frame as two writes (the 24-byte frame header, then the page), so a
// commit of N dirty pages costs 2N system calls; on this project's virtual machines a system call
// costs more than the copy it makes. This VFS wraps the default ("unix") VFS and, for WAL files
// only, appends contiguous writes to a buffer that is written out (in writes of 124 KiB) when
// SQLite next syncs, reads, truncates, sizes or closes the WAL (or when the buffer reaches 8 MiB
// or a write is not contiguous).
//
// For the buffer to be written at every commit, the connection must run with
// `PRAGMA synchronous=FULL`: SQLite then syncs the WAL after writing a commit's frames and
// before it publishes the commit in the wal-index, so the commit is in the file (and a failed
// write fails the commit) before any other connection can see it. The sync itself is then only
// made where `synchronous=NORMAL` would make it, which is the durability this VFS provides:
//   - when the flushed bytes include the WAL header (offset 0: a new WAL generation; NORMAL
//     syncs that header);
//   - while the connection holds the wal-index checkpoint lock (a checkpoint syncs the WAL
//     before copying it into the database file);
// and not after a plain commit. So a commit survives a crash of the process (it is in the OS
// when COMMIT returns), and a power loss may lose the last commits but never corrupts the file —
// exactly `synchronous=NORMAL` in WAL mode. Database-file I/O, locks and shared memory pass
// through unchanged. Use it for one writer connection; readers and checkpointers need not.

#include <cstdint>

namespace parley::store::sqlite {

// Registers the VFS on first use (thread-safe) and returns its name for sqlite3_open_v2.
const char* batchedWalVfsName();

struct BatchedWalStats {
  std::uint64_t writes = 0;         // xWrite calls on WAL files (frame headers, pages, headers)
  std::uint64_t flushes = 0;        // pwrite calls made for them (≤ 124 KiB each)
  std::uint64_t syncs_made = 0;     // WAL syncs passed to the OS (header, checkpoint)
  std::uint64_t syncs_skipped = 0;  // commit syncs answered by the flush alone
};
// Process-wide counters of every file opened through the VFS.
BatchedWalStats batchedWalStats();

}  // namespace parley::store::sqlite
