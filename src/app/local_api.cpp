#include "app/local_api.h"

#include <future>
#include <mutex>
#include <utility>

namespace parley::app {

std::pair<std::shared_ptr<LocalApiGate>, functions::service::LocalApi> LocalApiGate::make() {
  auto gate = std::make_shared<LocalApiGate>();
  functions::service::LocalApi api =
      [gate](
          functions::service::LocalApiRequest req) -> Result<functions::service::LocalApiResponse> {
    server::HttpRequest http;
    http.method = std::move(req.method);
    http.target = std::move(req.target);
    for (auto& [k, v] : req.headers) http.headers[k] = std::move(v);
    http.body = std::move(req.body);
    http.remote_address = std::move(req.remote_address);
    auto answer = std::make_shared<std::promise<server::HttpResponse>>();
    auto ready = answer->get_future();
    {
      ReaderMutexLock lock(gate->mu_);
      if (!gate->server_)
        return makeError(ErrorCode::kUnavailable, "LpClient: the server is not serving");
      gate->server_->handleLocal(
          std::move(http), [answer](server::HttpResponse r) { answer->set_value(std::move(r)); });
    }
    if (ready.wait_for(kLocalApiTimeout) != std::future_status::ready)
      return makeError(ErrorCode::kTimeout, "LpClient: the server did not answer within 10 s");
    server::HttpResponse r = ready.get();
    return functions::service::LocalApiResponse{r.status, r.content_type, std::move(r.body)};
  };
  return {gate, std::move(api)};
}

void LocalApiGate::open(server::Server& server) {
  WriterMutexLock lock(mu_);
  server_ = &server;
}

void LocalApiGate::close() {
  WriterMutexLock lock(mu_);
  server_ = nullptr;
}

}  // namespace parley::app
