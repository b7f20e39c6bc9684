#include "store/sqlite/batched_wal_vfs.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "store/sqlite/conn.h"

namespace parley::store::sqlite {
namespace {

constexpr const char* kVfsName = "parley-batched-wal";
// A buffer this large is written out before it grows further (a transaction of ~2,000 pages).
constexpr std::size_t kMaxBuffered = 8u << 20;
// The wal-index lock slot SQLite takes (exclusively) for a checkpoint: WAL_CKPT_LOCK in wal.c.
constexpr int kCheckpointLockSlot = 1;

std::atomic<std::uint64_t> g_writes{0};
std::atomic<std::uint64_t> g_flushes{0};
std::atomic<std::uint64_t> g_syncs_made{0};
std::atomic<std::uint64_t> g_syncs_skipped{0};

sqlite3_vfs* g_base = nullptr;      // the default VFS this one wraps
sqlite3_io_methods g_methods{};     // for files whose own methods have shared memory (v3)
sqlite3_io_methods g_methods_v1{};  // for the others (no shared memory, no mmap)

bool ours(const sqlite3_file* f) {
  return f->pMethods == &g_methods || f->pMethods == &g_methods_v1;
}

// The object SQLite allocates for a file of this VFS (szOsFile bytes): our state, then the
// wrapped VFS's own file object. `base` must come first (SQLite sees a sqlite3_file*).
struct File {
  sqlite3_file base;
  sqlite3_file* real;
  bool is_wal = false;
  // Main database file: its open WAL (same connection), and whether this connection holds the
  // checkpoint lock now.
  File* wal = nullptr;
  bool checkpoint_locked = false;
  int lock_level = SQLITE_LOCK_NONE;  // this connection's lock on the database file
  // WAL file: its main database file, and the buffered bytes [buffer_offset, + buffer.size()).
  File* db = nullptr;
  std::string* buffer = nullptr;
  sqlite3_int64 buffer_offset = 0;
};

// Where the wrapped VFS's file object starts inside ours (8-byte aligned, as SQLite allocates).
constexpr std::size_t kRealOffset = (sizeof(File) + 7) & ~std::size_t{7};

File* asFile(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
sqlite3_file* realOf(sqlite3_file* f) { return asFile(f)->real; }

int flush(File* f) {
  if (!f->buffer || f->buffer->empty()) return SQLITE_OK;
  // The unix VFS writes at most 128 KiB - 1 bytes per xWrite (it masks larger sizes), so the
  // buffer goes out in chunks of 124 KiB: one pwrite per ~30 pages instead of two per page.
  constexpr std::size_t kChunk = 124u << 10;
  int rc = SQLITE_OK;
  const std::string& b = *f->buffer;
  for (std::size_t done = 0; done < b.size() && rc == SQLITE_OK;) {
    const std::size_t n = std::min(kChunk, b.size() - done);
    g_flushes.fetch_add(1, std::memory_order_relaxed);
    rc = f->real->pMethods->xWrite(f->real, b.data() + done, static_cast<int>(n),
                                   f->buffer_offset + static_cast<sqlite3_int64>(done));
    done += n;
  }
  // Whatever happened, these bytes are not written again: after a failure SQLite rolls the
  // transaction back, and frames past the published end of the WAL are never read.
  f->buffer->clear();
  return rc;
}

// ---- io methods ----------------------------------------------------------------------------

int xClose(sqlite3_file* pf) {
  File* f = asFile(pf);
  int rc = SQLITE_OK;
  if (f->is_wal) {
    rc = flush(f);
    if (f->db) f->db->wal = nullptr;
    delete f->buffer;
    f->buffer = nullptr;
  } else if (f->wal) {
    f->wal->db = nullptr;
  }
  int rc2 = f->real->pMethods->xClose(f->real);
  f->~File();
  return rc != SQLITE_OK ? rc : rc2;
}

int xRead(sqlite3_file* pf, void* out, int amt, sqlite3_int64 off) {
  if (int rc = flush(asFile(pf)); rc != SQLITE_OK) return rc;
  return realOf(pf)->pMethods->xRead(realOf(pf), out, amt, off);
}

int xWrite(sqlite3_file* pf, const void* data, int amt, sqlite3_int64 off) {
  File* f = asFile(pf);
  if (!f->is_wal) return f->real->pMethods->xWrite(f->real, data, amt, off);
  g_writes.fetch_add(1, std::memory_order_relaxed);
  std::string& b = *f->buffer;
  const bool contiguous =
      !b.empty() && off == f->buffer_offset + static_cast<sqlite3_int64>(b.size());
  if (!b.empty() && (!contiguous || b.size() + static_cast<std::size_t>(amt) > kMaxBuffered)) {
    if (int rc = flush(f); rc != SQLITE_OK) return rc;
  }
  if (b.empty()) f->buffer_offset = off;
  b.append(static_cast<const char*>(data), static_cast<std::size_t>(amt));
  return SQLITE_OK;
}

int xTruncate(sqlite3_file* pf, sqlite3_int64 size) {
  if (int rc = flush(asFile(pf)); rc != SQLITE_OK) return rc;
  return realOf(pf)->pMethods->xTruncate(realOf(pf), size);
}

int xSync(sqlite3_file* pf, int flags) {
  File* f = asFile(pf);
  if (!f->is_wal) return f->real->pMethods->xSync(f->real, flags);
  const bool has_header = f->buffer && !f->buffer->empty() && f->buffer_offset == 0;
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  // See the header: sync where synchronous=NORMAL would. A checkpoint is recognised by the
  // wal-index checkpoint lock, or — when the last connection closes, SQLite checkpoints in
  // exclusive mode, without wal-index locks — by a lock on the database file above SHARED (WAL
  // mode's commits hold only SHARED), which also covers locking_mode=EXCLUSIVE.
  const bool checkpointing =
      f->db && (f->db->checkpoint_locked || f->db->lock_level > SQLITE_LOCK_SHARED);
  if (has_header || checkpointing) {
    g_syncs_made.fetch_add(1, std::memory_order_relaxed);
    return f->real->pMethods->xSync(f->real, flags);
  }
  g_syncs_skipped.fetch_add(1, std::memory_order_relaxed);
  return SQLITE_OK;
}

int xFileSize(sqlite3_file* pf, sqlite3_int64* size) {
  if (int rc = flush(asFile(pf)); rc != SQLITE_OK) return rc;
  return realOf(pf)->pMethods->xFileSize(realOf(pf), size);
}

int xLock(sqlite3_file* pf, int level) {
  File* f = asFile(pf);
  int rc = f->real->pMethods->xLock(f->real, level);
  if (rc == SQLITE_OK && level > f->lock_level) f->lock_level = level;
  return rc;
}
int xUnlock(sqlite3_file* pf, int level) {
  File* f = asFile(pf);
  int rc = f->real->pMethods->xUnlock(f->real, level);
  if (rc == SQLITE_OK && level < f->lock_level) f->lock_level = level;
  return rc;
}
int xCheckReservedLock(sqlite3_file* pf, int* out) {
  return realOf(pf)->pMethods->xCheckReservedLock(realOf(pf), out);
}

int xFileControl(sqlite3_file* pf, int op, void* arg) {
  if (int rc = flush(asFile(pf)); rc != SQLITE_OK) return rc;
  return realOf(pf)->pMethods->xFileControl(realOf(pf), op, arg);
}

int xSectorSize(sqlite3_file* pf) { return realOf(pf)->pMethods->xSectorSize(realOf(pf)); }
int xDeviceCharacteristics(sqlite3_file* pf) {
  return realOf(pf)->pMethods->xDeviceCharacteristics(realOf(pf));
}

int xShmMap(sqlite3_file* pf, int region, int size, int extend, void volatile** out) {
  return realOf(pf)->pMethods->xShmMap(realOf(pf), region, size, extend, out);
}

int xShmLock(sqlite3_file* pf, int offset, int n, int flags) {
  File* f = asFile(pf);
  int rc = f->real->pMethods->xShmLock(f->real, offset, n, flags);
  if (rc == SQLITE_OK && offset <= kCheckpointLockSlot && kCheckpointLockSlot < offset + n) {
    if (flags & SQLITE_SHM_UNLOCK) {
      f->checkpoint_locked = false;
    } else if ((flags & SQLITE_SHM_LOCK) && (flags & SQLITE_SHM_EXCLUSIVE)) {
      f->checkpoint_locked = true;
    }
  }
  return rc;
}

void xShmBarrier(sqlite3_file* pf) {
  File* f = asFile(pf);
  // SQLite publishes a commit in the wal-index right after this barrier. With synchronous=FULL
  // the commit's frames were flushed by the WAL sync before; if they were not (the connection
  // was misconfigured), write them now: a commit must never be visible before its frames are in
  // the file, and a failure here cannot be reported, so it stops the process before the commit
  // is published (recovery at the next start drops the unwritten transaction).
  if (f->wal && f->wal->buffer && !f->wal->buffer->empty()) {
    if (int rc = flush(f->wal); rc != SQLITE_OK) {
      spdlog::critical("store: writing WAL frames failed (SQLite error {}); stopping", rc);
      std::abort();
    }
  }
  f->real->pMethods->xShmBarrier(f->real);
}

int xShmUnmap(sqlite3_file* pf, int del) {
  return realOf(pf)->pMethods->xShmUnmap(realOf(pf), del);
}

int xFetch(sqlite3_file* pf, sqlite3_int64 off, int amt, void** out) {
  return realOf(pf)->pMethods->xFetch(realOf(pf), off, amt, out);
}
int xUnfetch(sqlite3_file* pf, sqlite3_int64 off, void* p) {
  return realOf(pf)->pMethods->xUnfetch(realOf(pf), off, p);
}

// ---- vfs methods ---------------------------------------------------------------------------

int vfsOpen(sqlite3_vfs*, const char* name, sqlite3_file* pf, int flags, int* out_flags) {
  File* f = new (pf) File{};
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(pf) + kRealOffset);
  int rc = g_base->xOpen(g_base, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    f->~File();
    pf->pMethods = nullptr;  // SQLite then does not call xClose
    return rc;
  }
  if ((flags & SQLITE_OPEN_WAL) && name) {
    f->is_wal = true;
    f->buffer = new std::string();
    sqlite3_file* main = sqlite3_database_file_object(name);
    if (main && ours(main)) {
      f->db = asFile(main);
      f->db->wal = f;
    }
  }
  const sqlite3_io_methods* m = f->real->pMethods;
  f->base.pMethods = m->iVersion >= 3 && m->xShmMap ? &g_methods : &g_methods_v1;
  return SQLITE_OK;
}

int vfsDelete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_base->xDelete(g_base, name, sync_dir);
}
int vfsAccess(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_base->xAccess(g_base, name, flags, out);
}
int vfsFullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_base->xFullPathname(g_base, name, n, out);
}
void* vfsDlOpen(sqlite3_vfs*, const char* name) { return g_base->xDlOpen(g_base, name); }
void vfsDlError(sqlite3_vfs*, int n, char* out) { g_base->xDlError(g_base, n, out); }
void (*vfsDlSym(sqlite3_vfs*, void* h, const char* sym))(void) {
  return g_base->xDlSym(g_base, h, sym);
}
void vfsDlClose(sqlite3_vfs*, void* h) { g_base->xDlClose(g_base, h); }
int vfsRandomness(sqlite3_vfs*, int n, char* out) { return g_base->xRandomness(g_base, n, out); }
int vfsSleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int vfsCurrentTime(sqlite3_vfs*, double* out) { return g_base->xCurrentTime(g_base, out); }
int vfsGetLastError(sqlite3_vfs*, int n, char* out) {
  return g_base->xGetLastError ? g_base->xGetLastError(g_base, n, out) : 0;
}
int vfsCurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* out) {
  return g_base->xCurrentTimeInt64(g_base, out);
}

sqlite3_vfs g_vfs{};

const char* registerVfs() {
  configureLibrary();
  g_base = sqlite3_vfs_find(nullptr);
  if (!g_base || g_base->iVersion < 2 || !g_base->xCurrentTimeInt64) {
    spdlog::warn(
        "store: the default SQLite VFS is not one this build can wrap; WAL writes are "
        "not batched");
    return nullptr;
  }
  g_methods.iVersion = 3;
  g_methods.xClose = xClose;
  g_methods.xRead = xRead;
  g_methods.xWrite = xWrite;
  g_methods.xTruncate = xTruncate;
  g_methods.xSync = xSync;
  g_methods.xFileSize = xFileSize;
  g_methods.xLock = xLock;
  g_methods.xUnlock = xUnlock;
  g_methods.xCheckReservedLock = xCheckReservedLock;
  g_methods.xFileControl = xFileControl;
  g_methods.xSectorSize = xSectorSize;
  g_methods.xDeviceCharacteristics = xDeviceCharacteristics;
  g_methods.xShmMap = xShmMap;
  g_methods.xShmLock = xShmLock;
  g_methods.xShmBarrier = xShmBarrier;
  g_methods.xShmUnmap = xShmUnmap;
  g_methods.xFetch = xFetch;
  g_methods.xUnfetch = xUnfetch;
  g_methods_v1 = g_methods;
  g_methods_v1.iVersion = 1;
  g_methods_v1.xShmMap = nullptr;
  g_methods_v1.xShmLock = nullptr;
  g_methods_v1.xShmBarrier = nullptr;
  g_methods_v1.xShmUnmap = nullptr;
  g_methods_v1.xFetch = nullptr;
  g_methods_v1.xUnfetch = nullptr;

  g_vfs.iVersion = 2;
  g_vfs.szOsFile = static_cast<int>(kRealOffset + static_cast<std::size_t>(g_base->szOsFile));
  g_vfs.mxPathname = g_base->mxPathname;
  g_vfs.zName = kVfsName;
  g_vfs.xOpen = vfsOpen;
  g_vfs.xDelete = vfsDelete;
  g_vfs.xAccess = vfsAccess;
  g_vfs.xFullPathname = vfsFullPathname;
  g_vfs.xDlOpen = vfsDlOpen;
  g_vfs.xDlError = vfsDlError;
  g_vfs.xDlSym = vfsDlSym;
  g_vfs.xDlClose = vfsDlClose;
  g_vfs.xRandomness = vfsRandomness;
  g_vfs.xSleep = vfsSleep;
  g_vfs.xCurrentTime = vfsCurrentTime;
  g_vfs.xGetLastError = vfsGetLastError;
  g_vfs.xCurrentTimeInt64 = vfsCurrentTimeInt64;
  if (sqlite3_vfs_register(&g_vfs, /*makeDflt=*/0) != SQLITE_OK) return nullptr;
  return kVfsName;
}

}  // namespace

const char* batchedWalVfsName() {
  static const char* name = registerVfs();
  return name;
}

BatchedWalStats batchedWalStats() {
  return {g_writes.load(), g_flushes.load(), g_syncs_made.load(), g_syncs_skipped.load()};
}

}  // namespace parley::store::sqlite
