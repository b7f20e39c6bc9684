#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <string>

namespace parley::server {

void Metrics::countRequest(const std::string& route, int status) {
  MutexLock lock(mu_);
  ++requests_[{route, status}];
}

void Metrics::socketOpened(SocketKind kind) {
  if (kind == SocketKind::kWebSocket) {
    ws_open_.fetch_add(1);
    ws_total_.fetch_add(1);
  } else {
    http_open_.fetch_add(1);
  }
}

void Metrics::socketClosed(SocketKind kind) {
  if (kind == SocketKind::kWebSocket) {
    ws_open_.fetch_sub(1);
  } else {
    http_open_.fetch_sub(1);
  }
}

void Metrics::addSource(std::function<std::string()> source) {
  MutexLock lock(mu_);
  sources_.push_back(std::move(source));
}

std::string Metrics::text() const {
  std::string out;
  std::vector<std::function<std::string()>> sources;
  {
    MutexLock lock(mu_);
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

namespace {

constexpr std::string_view kTenantLabels[] = {"account", "bot", "function"};

// Splits `name{a="x",b="y"} value` into name, labels (name, raw quoted value) and the value.
// False when the line is not a sample of that shape.
bool parseSample(std::string_view line, std::string_view& name,
                 std::vector<std::pair<std::string_view, std::string_view>>& labels,
                 std::string_view& value) {
  auto brace = line.find('{');
  if (brace == std::string_view::npos) return false;
  name = line.substr(0, brace);
  std::size_t i = brace + 1;
  while (i < line.size() && line[i] != '}') {
    auto eq = line.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') return false;
    std::size_t j = eq + 2;
    while (j < line.size() && line[j] != '"') j += line[j] == '\\' ? 2 : 1;
    if (j >= line.size()) return false;
    labels.emplace_back(line.substr(i, eq - i), line.substr(eq + 1, j - eq));
    i = j + 1;
    if (i < line.size() && line[i] == ',') ++i;
  }
  if (i >= line.size() || i + 1 >= line.size() || line[i + 1] != ' ') return false;
  value = line.substr(i + 2);
  return true;
}

}  // namespace

std::string sumTenantLabels(std::string_view text) {
  // Output lines in order; a summed sample is one line whose value is updated in place.
  struct Line {
    std::string text;  // comment, unparsed line, or the series key of a sample
    bool sample = false;
    double value = 0;
  };
  std::vector<Line> lines;
  std::map<std::string, std::size_t> series;  // key -> index in lines
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    std::string_view name;
    std::vector<std::pair<std::string_view, std::string_view>> labels;
    std::string_view value;
    bool tenant = false;
    if (!line.starts_with('#') && parseSample(line, name, labels, value)) {
      for (const auto& [k, v] : labels)
        for (auto t : kTenantLabels) tenant = tenant || k == t;
    }
    double number = 0;
    if (tenant) {
      try {
        number = std::stod(std::string(value));
      } catch (...) {
        tenant = false;
      }
    }
    if (!tenant) {
      lines.push_back(Line{std::string(line), false, 0});
      continue;
    }
    std::string key(name);
    std::string kept;
    for (const auto& [k, v] : labels) {
      if (std::ranges::find(kTenantLabels, k) != std::end(kTenantLabels)) continue;
      if (!kept.empty()) kept += ',';
      kept += fmt::format("{}={}", k, v);
    }
    if (!kept.empty()) key += "{" + kept + "}";
    auto [it, fresh] = series.emplace(key, lines.size());
    if (fresh) {
      lines.push_back(Line{key, true, number});
    } else {
      lines[it->second].value += number;
    }
  }
  std::string out;
  out.reserve(text.size());
  for (const auto& l : lines) {
    out += l.text;
    if (l.sample) out += fmt::format(" {}", l.value);
    out += '\n';
  }
  return out;
}

}  // namespace parley::server
