// The native functions a context's bootstrap receives as `natives`. Each forwards to the
// Worker that owns the isolate; the slot is the callback data.

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
  return hs.Escape(t);
}

}  // namespace parley::functions::engine::bindings
