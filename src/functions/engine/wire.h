#pragma once

// The frames exchanged between the server and a function worker over their socket. A frame is
// [u32 length of what follows][u8 type][payload]; payloads are built with Writer and read with
// Reader (little-endian integers, length-prefixed strings). Plain C++: no V8, no sockets.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace parley::functions::engine::wire {

// Largest frame either side accepts (code is at most 100,000 characters, inputs and results are
// bounded by their producers; lodash and luxon travel once in kInit).
inline constexpr std::size_t kMaxFrameBytes = 64u << 20;

enum class Msg : std::uint8_t {
  // Server -> worker.
  kInit = 1,        // options and the JS library sources; the first frame a worker reads
  kDeployment = 2,  // one deployment (code, env) the worker may be asked to run
  kDrop = 3,        // a key's current deployment changed: drop contexts of the others
  kForget = 4,      // a deployment the worker will not be asked to run again
  kPrepare = 5,     // compile + run a deployment's top level (deploy/check); answered by kPrepared
  kJob = 6,         // start an invocation
  kHostReply = 7,   // the answer to a kHostCall
  kProbe = 8,       // test-only: try a system call inside the sandbox; answered by kProbed
  kUnhome = 9,      // a function's home moved to another worker: its context here is a guest
  // Worker -> server.
  kReady = 32,      // initialised and sandboxed; ready for jobs
  kPrepared = 33,   // the outcome of a kPrepare
  kResult = 34,     // an invocation finished
  kHostCall = 35,   // a Toolbelt call (secrets, context, conversations, HTTP) for an invocation
  kBusy = 36,       // one JS task has been running for a long time; send no jobs until kFree
  kFree = 37,       // the long task ended
  kReturned = 38,   // jobs received but not started (while busy): run them elsewhere
  kRestarted = 39,  // an isolate was retired (termination or out of memory)
  kProbed = 40,     // the outcome of a kProbe
  kFatal = 41,      // the worker is about to end (a fatal V8 error): why
  kWaiting = 42,    // invocations whose first JS task ended without a result: they wait now
};

// Builds one frame.
class Writer {
 public:
  explicit Writer(Msg type) {
    buf_.resize(5);
    buf_[4] = static_cast<char>(type);
  }
  Writer& u8(std::uint8_t v) {
    buf_.push_back(static_cast<char>(v));
    return *this;
  }
  Writer& u32(std::uint32_t v) { return raw(&v, sizeof v); }
  Writer& u64(std::uint64_t v) { return raw(&v, sizeof v); }
  Writer& i64(std::int64_t v) { return raw(&v, sizeof v); }
  Writer& f64(double v) { return raw(&v, sizeof v); }
  Writer& str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    buf_.append(s.data(), s.size());
    return *this;
  }
  // The finished frame (length filled in). The Writer is empty afterwards.
  std::string take() {
    auto n = static_cast<std::uint32_t>(buf_.size() - 4);
    std::memcpy(buf_.data(), &n, 4);
    return std::move(buf_);
  }

 private:
  Writer& raw(const void* p, std::size_t n) {
    buf_.append(static_cast<const char*>(p), n);
    return *this;
  }
  std::string buf_;
};

// Reads one frame's payload. Reading past the end yields zeros/empty strings and clears ok().
class Reader {
 public:
  explicit Reader(std::string_view payload) : data_(payload) {}
  std::uint8_t u8() {
    std::uint8_t v = 0;
    raw(&v, 1);
    return v;
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    raw(&v, sizeof v);
    return v;
  }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    raw(&v, sizeof v);
    return v;
  }
  std::int64_t i64() {
    std::int64_t v = 0;
    raw(&v, sizeof v);
    return v;
  }
  double f64() {
    double v = 0;
    raw(&v, sizeof v);
    return v;
  }
  std::string str() {
    std::uint32_t n = u32();
    if (!ok_ || n > data_.size() - pos_) {
      ok_ = false;
      return {};
    }
    std::string s(data_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  bool ok() const { return ok_; }

 private:
  void raw(void* p, std::size_t n) {
    if (!ok_ || n > data_.size() - pos_) {
      ok_ = false;
      return;
    }
    std::memcpy(p, data_.data() + pos_, n);
    pos_ += n;
  }
  std::string_view data_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// One received frame.
struct Frame {
  Msg type{};
  std::string payload;
};

// Splits a byte stream into frames. Not thread-safe.
class FrameSplitter {
 public:
  // Appends received bytes.
  void append(const char* data, std::size_t n) { buf_.append(data, n); }
  // The next complete frame, if any. Sets bad() (and returns false) on a frame over the limit.
  bool next(Frame& out) {
    if (bad_ || buf_.size() - off_ < 4) return compact(), false;
    std::uint32_t n = 0;
    std::memcpy(&n, buf_.data() + off_, 4);
    if (n < 1 || n > kMaxFrameBytes) {
      bad_ = true;
      return false;
    }
    if (buf_.size() - off_ - 4 < n) return compact(), false;
    out.type = static_cast<Msg>(static_cast<std::uint8_t>(buf_[off_ + 4]));
    out.payload.assign(buf_, off_ + 5, n - 1);
    off_ += 4 + n;
    return true;
  }
  bool bad() const { return bad_; }

 private:
  void compact() {
    if (off_ == 0) return;
    buf_.erase(0, off_);
    off_ = 0;
  }
  std::string buf_;
  std::size_t off_ = 0;
  bool bad_ = false;
};

}  // namespace parley::functions::engine::wire
