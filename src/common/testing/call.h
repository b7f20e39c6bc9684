#pragma once

// Runs an asynchronous call and waits for its completion, for tests only. `f` is given a
// callback; the helper blocks until it runs and returns what it was given. When it has not run
// within `timeout` the test fails and the result is an error (call) or a default value (await).
//
//   auto r = call<Conversation>([&](auto done) { engine.requestConversation(req, done); });
//   auto v = await<InvokeResult>([&](auto done) { runtime.invoke(req, mode, done); });

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <utility>

#include "common/result.h"

namespace parley::testing {

namespace detail {

template <class T, class F>
std::optional<T> waitForCompletion(F&& f, std::chrono::milliseconds timeout) {
  auto p = std::make_shared<std::promise<T>>();
  auto fut = p->get_future();
  std::forward<F>(f)([p](T v) { p->set_value(std::move(v)); });
  if (fut.wait_for(timeout) != std::future_status::ready) {
    ADD_FAILURE() << "the completion was not called within " << timeout.count() << " ms";
    return std::nullopt;
  }
  return fut.get();
}

}  // namespace detail

// For a completion that takes a Result<T>; an internal error on timeout.
template <class T, class F>
Result<T> call(F&& f, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto r = detail::waitForCompletion<Result<T>>(std::forward<F>(f), timeout);
  if (!r) return internalError("timeout");
  return std::move(*r);
}

// For a completion that takes a plain value; T{} on timeout.
template <class T, class F>
T await(F&& f, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto r = detail::waitForCompletion<T>(std::forward<F>(f), timeout);
  return r ? std::move(*r) : T{};
}

}  // namespace parley::testing
