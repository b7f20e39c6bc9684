#include "server/net_state.h"

#include <spdlog/spdlog.h>

namespace parley::server::net {

void logException(std::exception_ptr e, const char* where) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("{}: unexpected exception: {}", where, ex.what());
  } catch (...) {
    spdlog::error("{}: unexpected exception", where);
  }
}

}  // namespace parley::server::net
