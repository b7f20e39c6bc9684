#pragma once

// Runs an asynchronous call and waits for its completion: `f` is given a callback that takes a
// Result<T>; call<T> blocks until it runs. When it has not run within `timeout` the test fails
// and the result is an internal error. For tests only.

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>

#include "common/result.h"

namespace parley::testing {

template <class T, class F>
Result<T> call(F&& f, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto p = std::make_shared<std::promise<Result<T>>>();
  auto fut = p->get_future();
  f([p](Result<T> r) { p->set_value(std::move(r)); });
  if (fut.wait_for(timeout) != std::future_status::ready) {
    ADD_FAILURE() << "the completion was not called within " << timeout.count() << " ms";
    return internalError("timeout");
  }
  return fut.get();
}

}  // namespace parley::testing
