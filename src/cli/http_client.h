#pragma once

// A small synchronous HTTP/1.1 client for the CLI (Boost.Beast + OpenSSL). One connection per
// request. HTTPS verifies the server's certificate chain and host name against `ca_file` (PEM)
// or, when empty, the system roots. Not thread-safe; one request at a time.

#include <chrono>
#include <map>
#include <string>

#include "common/result.h"

namespace parley::cli {

struct HttpResponse {
  int status = 0;
  std::string body;
};

class HttpClient {
 public:
  // `base_url` is "http(s)://host[:port]" (a trailing path is ignored). `bearer` may be empty.
  HttpClient(std::string base_url, std::string ca_file, std::string bearer,
             std::chrono::seconds timeout = std::chrono::seconds(60));

  // Sends `method target` (target starts with '/') with a JSON `body` (omitted when empty).
  // Unavailable when the server cannot be reached or TLS verification fails (the message says
  // which); any HTTP status is a successful HttpResponse.
  Result<HttpResponse> request(const std::string& method, const std::string& target,
                               const std::string& body = "");

 private:
  std::string base_url_;
  std::string ca_file_;
  std::string bearer_;
  std::chrono::seconds timeout_;
};

// The message of an API error body {"error":{"code","message"}}, else the body itself.
std::string apiErrorMessage(const HttpResponse& r);

}  // namespace parley::cli
