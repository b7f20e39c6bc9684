#pragma once

// Serves the built console (web/dist, installed as share/parley/web) at `/` with content types
// and an SPA fallback to index.html; a plain page says where to find it when it is missing.
// Blocking (file reads): call on the blocking executor. Thread-safe (immutable after construction).

#include <string>
#include <vector>

#include "server/http_types.h"

namespace parley::server {

class StaticFiles {
 public:
  // `root` is the dist directory; it may not exist.
  explicit StaticFiles(std::string root);

  // GET/HEAD of `segments` (decoded path). Never escapes the root (.. and hidden files → 404).
  HttpResponse serve(const std::vector<std::string>& segments) const;

  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

// The content type for a file name (by extension).
std::string contentTypeFor(const std::string& name);

}  // namespace parley::server
