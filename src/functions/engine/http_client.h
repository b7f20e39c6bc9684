#pragma once

// Outbound HTTP/HTTPS for the Toolbelt HTTPClient: Boost.Beast on a small io thread pool,
// OpenSSL with the system CA store and peer + host name verification. It enforces what holds
// for every request whoever asks: the request rules (checkOutboundRequest) and the address
// policy — the host is resolved once, every resolved address is checked against the
// AddressPolicy, and the connection goes only to those checked addresses (no second lookup
// that a short-TTL DNS answer could change). The allowlist and the rate limit are applied by
// the caller. Beast/Asio types stay in the .cpp.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "functions/engine/outbound.h"

namespace parley::functions::engine {

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // http:// or https:// absolute URL
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds timeout{30'000};
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Owns its io threads; the destructor cancels outstanding requests (their callbacks may still
// run, with an error, before it returns) and joins. Thread-safe.
class HttpClient {
 public:
  // `max_body_bytes` bounds both the request body a caller may send and the response body read.
  HttpClient(int threads, std::size_t max_body_bytes, AddressPolicy policy);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Host part of an http(s) URL, or Invalid when it is not an absolute http(s) URL.
  static Result<std::string> hostOf(const std::string& url);

  // Performs the request. `done` is called exactly once on an io thread: the response (any
  // status), or Unavailable/Timeout/Invalid/TooLarge with a readable message, or Forbidden when
  // the host resolves to an address the policy refuses (then no connection is made).
  void fetch(HttpRequest request, std::function<void(Result<HttpResponse>)> done);

 public:
  struct Impl;  // Beast/Asio state, defined in the .cpp

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace parley::functions::engine
