// The native functions a context's bootstrap receives as `natives`. Most forward to the Worker
// that owns the isolate (the slot is the callback data); the byte helpers behind the Node
// built-ins (`crypto`, `Buffer`, `TextEncoder`/`TextDecoder`) run here on the calling thread:
// digests and HMACs with OpenSSL's EVP (no file, no socket), random bytes from getrandom(2) (the
// sandbox allows it), UTF-8 through V8's own conversions.

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

#include "functions/engine/worker.h"

namespace parley::functions::engine::bindings {
namespace {

IsolateSlot& slotOf(const v8::FunctionCallbackInfo<v8::Value>& info) {
  return *static_cast<IsolateSlot*>(info.Data().As<v8::External>()->Value());
}

std::string arg(const v8::FunctionCallbackInfo<v8::Value>& info, int i) {
  if (info.Length() <= i) return {};
  v8::String::Utf8Value s(info.GetIsolate(), info[i]);
  return *s ? std::string(*s, s.length()) : std::string();
}

double num(const v8::FunctionCallbackInfo<v8::Value>& info, int i) {
  if (info.Length() <= i || !info[i]->IsNumber()) return 0;
  return info[i].As<v8::Number>()->Value();
}

void throwError(v8::Isolate* iso, const std::string& message) {
  iso->ThrowException(
      v8::Exception::Error(v8::String::NewFromUtf8(iso, message.c_str()).ToLocalChecked()));
}

// log(level, message, extrasJson)
void log(const v8::FunctionCallbackInfo<v8::Value>& info) {
  slotOf(info).worker->nativeLog(static_cast<int>(num(info, 0)), arg(info, 1), arg(info, 2));
}

// timer(ms, repeat) -> id
void timer(const v8::FunctionCallbackInfo<v8::Value>& info) {
  bool repeat = info.Length() > 1 && info[1]->BooleanValue(info.GetIsolate());
  auto id = slotOf(info).worker->nativeTimer(num(info, 0), repeat);
  if (!id) return throwError(info.GetIsolate(), id.error().message);
  info.GetReturnValue().Set(static_cast<double>(*id));
}

// clearTimer(id)
void clearTimer(const v8::FunctionCallbackInfo<v8::Value>& info) {
  slotOf(info).worker->nativeClearTimer(static_cast<std::uint64_t>(num(info, 0)));
}

// done(invocationId, kind, source, message, resultJson)
void done(const v8::FunctionCallbackInfo<v8::Value>& info) {
  slotOf(info).worker->nativeDone(static_cast<std::uint64_t>(num(info, 0)),
                                  static_cast<int>(num(info, 1)), static_cast<int>(num(info, 2)),
                                  arg(info, 3), arg(info, 4));
}

// call(op, argsJson) -> Promise<string json>
void call(const v8::FunctionCallbackInfo<v8::Value>& info) {
  auto& slot = slotOf(info);
  v8::Local<v8::Promise> p;
  if (slot.worker
          ->nativeCall(slot, info.GetIsolate()->GetCurrentContext(), arg(info, 0), arg(info, 1))
          .ToLocal(&p)) {
    info.GetReturnValue().Set(p);
  }
}

// loadModule(name) -> function
void loadModule(const v8::FunctionCallbackInfo<v8::Value>& info) {
  auto& slot = slotOf(info);
  v8::Local<v8::Value> v;
  if (slot.worker->loadModule(slot, info.GetIsolate()->GetCurrentContext(), arg(info, 0))
          .ToLocal(&v)) {
    info.GetReturnValue().Set(v);
  }
}

// ---- bytes ----------------------------------------------------------------------------------

// The most one randomBytes call returns (Node's limit is 2 GiB; functions need keys and nonces).
constexpr std::size_t kMaxRandomBytes = 65'536;

// The bytes of a Uint8Array (or any ArrayBufferView) argument; empty when it is not one.
std::string_view bytesArg(const v8::FunctionCallbackInfo<v8::Value>& info, int i) {
  if (info.Length() <= i || !info[i]->IsArrayBufferView()) return {};
  auto view = info[i].As<v8::ArrayBufferView>();
  auto store = view->Buffer()->GetBackingStore();
  if (!store->Data()) return {};
  return {static_cast<const char*>(store->Data()) + view->ByteOffset(), view->ByteLength()};
}

// A new ArrayBuffer holding `n` bytes from `data` (through the isolate's capped allocator).
void returnBytes(const v8::FunctionCallbackInfo<v8::Value>& info, const unsigned char* data,
                 std::size_t n) {
  v8::Isolate* iso = info.GetIsolate();
  auto ab = v8::ArrayBuffer::New(iso, n);
  if (n) std::memcpy(ab->GetBackingStore()->Data(), data, n);
  info.GetReturnValue().Set(ab);
}

const EVP_MD* digestNamed(std::string_view name) {
  if (name == "md5") return EVP_md5();
  if (name == "sha1") return EVP_sha1();
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  if (name == "sha512") return EVP_sha512();
  return nullptr;
}

// digest(algorithm, bytes) -> ArrayBuffer
void digest(const v8::FunctionCallbackInfo<v8::Value>& info) {
  const EVP_MD* md = digestNamed(arg(info, 0));
  if (!md) return throwError(info.GetIsolate(), "Digest method not supported");
  auto data = bytesArg(info, 1);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1)
    return throwError(info.GetIsolate(), "digest failed");
  returnBytes(info, out, len);
}

// hmac(algorithm, keyBytes, bytes) -> ArrayBuffer
void hmac(const v8::FunctionCallbackInfo<v8::Value>& info) {
  const EVP_MD* md = digestNamed(arg(info, 0));
  if (!md) return throwError(info.GetIsolate(), "Invalid digest");
  auto key = bytesArg(info, 1);
  auto data = bytesArg(info, 2);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  static const char kEmpty = 0;
  if (!HMAC(md, key.empty() ? &kEmpty : key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len))
    return throwError(info.GetIsolate(), "hmac failed");
  returnBytes(info, out, len);
}

// randomBytes(n) -> ArrayBuffer, 0 <= n <= kMaxRandomBytes
void randomBytes(const v8::FunctionCallbackInfo<v8::Value>& info) {
  double n = num(info, 0);
  if (!(n >= 0 && n <= static_cast<double>(kMaxRandomBytes)))
    return throwError(info.GetIsolate(),
                      "randomBytes size must be between 0 and " + std::to_string(kMaxRandomBytes));
  auto size = static_cast<std::size_t>(n);
  std::string buf(size, '\0');
  std::size_t got = 0;
  while (got < size) {
    ssize_t r = getrandom(buf.data() + got, size - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return throwError(info.GetIsolate(), "no random bytes available");
    }
    got += static_cast<std::size_t>(r);
  }
  returnBytes(info, reinterpret_cast<const unsigned char*>(buf.data()), size);
}

// equal(bytesA, bytesB) -> bool in time independent of where they differ; lengths must match.
void equal(const v8::FunctionCallbackInfo<v8::Value>& info) {
  auto a = bytesArg(info, 0);
  auto b = bytesArg(info, 1);
  if (a.size() != b.size())
    return throwError(info.GetIsolate(), "Input buffers must have the same byte length");
  info.GetReturnValue().Set(a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0);
}

// utf8Length(string) -> number of bytes of its UTF-8 form (lone surrogates count as U+FFFD).
// The caller allocates the Uint8Array in JS (where the ArrayBuffer cap is a RangeError, not a
// fatal out-of-memory) and fills it with utf8Write.
void utf8Length(const v8::FunctionCallbackInfo<v8::Value>& info) {
  v8::Isolate* iso = info.GetIsolate();
  v8::Local<v8::String> s;
  if (info.Length() < 1 || !info[0]->ToString(iso->GetCurrentContext()).ToLocal(&s)) return;
  info.GetReturnValue().Set(s->Utf8Length(iso));
}

// utf8Write(string, Uint8Array) -> bytes written (at most the array's length)
void utf8Write(const v8::FunctionCallbackInfo<v8::Value>& info) {
  v8::Isolate* iso = info.GetIsolate();
  v8::Local<v8::String> s;
  if (info.Length() < 2 || !info[1]->IsUint8Array() ||
      !info[0]->ToString(iso->GetCurrentContext()).ToLocal(&s))
    return throwError(iso, "utf8Write(string, Uint8Array)");
  auto out = bytesArg(info, 1);
  if (out.empty()) return info.GetReturnValue().Set(0);
  int n = s->WriteUtf8(iso, const_cast<char*>(out.data()), static_cast<int>(out.size()), nullptr,
                       v8::String::NO_NULL_TERMINATION | v8::String::REPLACE_INVALID_UTF8);
  info.GetReturnValue().Set(n);
}

// utf8Decode(bytes) -> string (invalid sequences become U+FFFD, as TextDecoder does)
void utf8Decode(const v8::FunctionCallbackInfo<v8::Value>& info) {
  v8::Isolate* iso = info.GetIsolate();
  auto data = bytesArg(info, 0);
  if (data.size() > static_cast<std::size_t>(v8::String::kMaxLength))
    return throwError(iso, "the bytes are too long for one string");
  v8::Local<v8::String> s;
  if (!v8::String::NewFromUtf8(iso, data.data(), v8::NewStringType::kNormal,
                               static_cast<int>(data.size()))
           .ToLocal(&s))
    return throwError(iso, "cannot decode the bytes");
  info.GetReturnValue().Set(s);
}

}  // namespace

v8::Local<v8::ObjectTemplate> nativesTemplate(IsolateSlot& slot) {
  v8::Isolate* iso = slot.isolate;
  v8::EscapableHandleScope hs(iso);
  auto data = v8::External::New(iso, &slot);
  auto t = v8::ObjectTemplate::New(iso);
  auto add = [&](const char* name, v8::FunctionCallback cb) {
    t->Set(v8::String::NewFromUtf8(iso, name).ToLocalChecked(),
           v8::FunctionTemplate::New(iso, cb, data));
  };
  add("log", log);
  add("timer", timer);
  add("clearTimer", clearTimer);
  add("done", done);
  add("call", call);
  add("loadModule", loadModule);
  add("digest", digest);
  add("hmac", hmac);
  add("randomBytes", randomBytes);
  add("equal", equal);
  add("utf8Length", utf8Length);
  add("utf8Write", utf8Write);
  add("utf8Decode", utf8Decode);
  return hs.Escape(t);
}

}  // namespace parley::functions::engine::bindings
