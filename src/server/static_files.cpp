#include "server/static_files.h"

#include <filesystem>

#include "server/tls_files.h"

namespace parley::server {
namespace {
namespace fs = std::filesystem;

constexpr const char* kNotBuilt = R"(<!doctype html>
<html><head><meta charset="utf-8"><title>Parley</title></head>
<body><h1>Parley is running</h1>
<p>The web console was not found. An installed Parley serves it from
<code>PREFIX/share/parley/web</code> (<code>tools/build.sh</code>, then <code>cmake --install</code>); a
build tree's binary serves it with <code>--web web/dist</code> (<code>cd web &amp;&amp; npm run build</code>).</p>
<p>The API is available: <code>/healthz</code>, <code>/metrics</code>, <code>/api/v1/accounts/{acc}/…</code>.</p>
</body></html>
)";
}  // namespace

std::string contentTypeFor(const std::string& name) {
  auto dot = name.rfind('.');
  std::string ext = dot == std::string::npos ? "" : name.substr(dot + 1);
  if (ext == "html" || ext == "htm") return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "json" || ext == "map") return "application/json";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "gif") return "image/gif";
  if (ext == "ico") return "image/x-icon";
  if (ext == "webp") return "image/webp";
  if (ext == "woff") return "font/woff";
  if (ext == "woff2") return "font/woff2";
  if (ext == "ttf") return "font/ttf";
  if (ext == "txt") return "text/plain; charset=utf-8";
  if (ext == "wasm") return "application/wasm";
  return "application/octet-stream";
}

StaticFiles::StaticFiles(std::string root) : root_(std::move(root)) {}

HttpResponse StaticFiles::serve(const std::vector<std::string>& segments) const {
  HttpResponse r;
  r.route = "static";
  fs::path index = fs::path(root_) / "index.html";
  std::error_code ec;
  if (root_.empty() || !fs::exists(index, ec)) {
    r.content_type = "text/html; charset=utf-8";
    r.body = kNotBuilt;
    return r;
  }
  fs::path p = root_;
  bool safe = true;
  for (const auto& s : segments) {
    if (s.empty() || s == "." || s == ".." || s.front() == '.' ||
        s.find('/') != std::string::npos || s.find('\\') != std::string::npos ||
        s.find('\0') != std::string::npos) {
      safe = false;
      break;
    }
    p /= s;
  }
  if (!safe) {
    r.status = 404;
    r.content_type = "text/plain; charset=utf-8";
    r.body = "not found\n";
    return r;
  }
  bool is_file = !segments.empty() && fs::is_regular_file(p, ec);
  bool looks_like_asset = !segments.empty() && segments.back().find('.') != std::string::npos;
  if (!is_file) {
    if (looks_like_asset) {
      r.status = 404;
      r.content_type = "text/plain; charset=utf-8";
      r.body = "not found\n";
      return r;
    }
    p = index;  // SPA fallback
  }
  auto content = readFile(p.string());
  if (!content) {
    r.status = 404;
    r.content_type = "text/plain; charset=utf-8";
    r.body = "not found\n";
    return r;
  }
  r.body = std::move(*content);
  r.content_type = contentTypeFor(p.filename().string());
  if (p.filename() == "index.html") {
    r.headers.emplace_back("Cache-Control", "no-cache");
  } else if (!segments.empty() && segments.front() == "assets") {
    r.headers.emplace_back("Cache-Control", "public, max-age=31536000, immutable");
  }
  return r;
}

}  // namespace parley::server
