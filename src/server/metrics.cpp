#include "server/metrics.h"

#include <fmt/format.h>

namespace parley::server {

void Metrics::countRequest(const std::string& route, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{route, status}];
}

void Metrics::socketOpened(bool websocket) {
  if (websocket) {
    ws_open_.fetch_add(1);
    ws_total_.fetch_add(1);
  } else {
    http_open_.fetch_add(1);
  }
}

void Metrics::socketClosed(bool websocket) {
  if (websocket) {
    ws_open_.fetch_sub(1);
  } else {
    http_open_.fetch_sub(1);
  }
}

void Metrics::addSource(std::function<std::string()> source) {
  std::lock_guard lock(mu_);
  sources_.push_back(std::move(source));
}

std::string Metrics::text() const {
  std::string out;
  std::vector<std::function<std::string()>> sources;
  {
    std::lock_guard lock(mu_);
    out += "# HELP parley_http_requests_total HTTP requests by route and status.\n";
    out += "# TYPE parley_http_requests_total counter\n";
    for (const auto& [key, n] : requests_) {
      out += fmt::format("parley_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first,
                         key.second, n);
    }
    sources = sources_;
  }
  auto gauge = [&](const char* name, const char* help, const char* type, std::int64_t v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  gauge("parley_http_connections_open", "Open HTTP connections.", "gauge", http_open_.load());
  gauge("parley_websockets_open", "Open WebSocket sessions.", "gauge", ws_open_.load());
  gauge("parley_websockets_total", "WebSocket sessions accepted.", "counter", ws_total_.load());
  gauge("parley_ws_frames_in_total", "WebSocket frames received.", "counter", frames_in_.load());
  gauge("parley_ws_frames_out_total", "WebSocket frames sent.", "counter", frames_out_.load());
  gauge("parley_ws_slow_consumer_closes_total", "Sockets closed because the write queue was full.",
        "counter", slow_closes_.load());
  gauge("parley_ws_oversized_frames_total", "Sockets closed for an oversized frame.", "counter",
        oversized_.load());
  gauge("parley_ws_idle_pings_total", "Pings sent to WebSockets silent for half the idle timeout.",
        "counter", idle_pings_.load());
  gauge("parley_ws_idle_closes_total", "WebSockets closed after the idle timeout of silence.",
        "counter", idle_closes_.load());
  gauge("parley_protocol_errors_total", "Protocol requests answered with an error code.", "counter",
        protocol_errors_.load());
  for (const auto& s : sources) {
    std::string part = s();
    if (part.empty()) continue;
    out += part;
    if (out.back() != '\n') out += '\n';
  }
  return out;
}

}  // namespace parley::server
