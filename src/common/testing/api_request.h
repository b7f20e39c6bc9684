#pragma once

// Fills an api::Request's path segments and query from an origin-form target such as
// "/functions/f1/schedules?limit=2", as the server's router does, for tests that call an
// api::Handler directly. Query values are taken as they are (no percent-decoding).

#include <sstream>
#include <string>

#include "common/api.h"

namespace parley::testing {

inline void fillTarget(api::Request& req, const std::string& target) {
  std::string path = target;
  if (auto q = target.find('?'); q != std::string::npos) {
    path = target.substr(0, q);
    std::stringstream qs(target.substr(q + 1));
    std::string kv;
    while (std::getline(qs, kv, '&')) {
      auto eq = kv.find('=');
      req.query[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
    }
  }
  std::stringstream ps(path);
  std::string seg;
  while (std::getline(ps, seg, '/'))
    if (!seg.empty()) req.path.push_back(seg);
}

}  // namespace parley::testing
