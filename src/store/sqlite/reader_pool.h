#pragma once

// The read side: a pool of read-only connections and the read transaction. Private to
// store/sqlite.

#include <condition_variable>
#include <memory>
#include <vector>

#include "common/result.h"
#include "common/thread_annotations.h"
#include "store/sqlite/conn.h"

namespace parley::store::sqlite {

// Read-only connections leased one caller at a time. In WAL mode a reader never waits for the
// writer (it reads the last committed snapshot). Thread-safe; owned by the Db.
class ReaderPool {
 public:
  // REQUIRES: `conns` not empty.
  explicit ReaderPool(std::vector<std::unique_ptr<Conn>> conns) : free_(std::move(conns)) {}

  // A leased connection, used by the thread that holds the lease; returned to the pool on
  // destruction. REQUIRES: the pool outlives the lease.
  class Lease {
   public:
    Lease(ReaderPool& pool, std::unique_ptr<Conn> c) : pool_(pool), conn_(std::move(c)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_.release(std::move(conn_)); }
    Conn& operator*() { return *conn_; }

   private:
    ReaderPool& pool_;
    std::unique_ptr<Conn> conn_;
  };

  // Blocks until a connection is free.
  Lease acquire();

 private:
  void release(std::unique_ptr<Conn> c);

  Mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> free_ PARLEY_GUARDED_BY(mu_);
};

// A read transaction on a leased connection: statements in it see one snapshot. Ends (COMMIT)
// on destruction. REQUIRES: `c` outlives it.
class ReadTxn {
 public:
  explicit ReadTxn(Conn& c) : c_(c), ok_(c.run("BEGIN")) {}
  ~ReadTxn() {
    if (ok_) (void)c_.run("COMMIT");
  }
  ReadTxn(const ReadTxn&) = delete;
  ReadTxn& operator=(const ReadTxn&) = delete;
  const Status& status() const { return ok_; }

 private:
  Conn& c_;
  Status ok_;
};

}  // namespace parley::store::sqlite
