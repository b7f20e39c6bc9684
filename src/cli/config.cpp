#include "cli/config.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/json.h"

namespace parley::cli {

namespace fs = std::filesystem;

Result<std::string> defaultConfigPath() {
  if (const char* p = std::getenv("PARLEY_CONFIG"); p && *p) return std::string(p);
  if (const char* h = std::getenv("HOME"); h && *h)
    return (fs::path(h) / ".config" / "parley" / "cli.json").string();
  return invalid("cannot find the CLI config: set PARLEY_CONFIG or HOME");
}

Result<CliConfig> loadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return notFound(fmt::format("no login saved in {}: run 'parley login' first", path));
  std::stringstream ss;
  ss << in.rdbuf();
  auto obj = json::parseObject(ss.str());
  if (!obj)
    return invalid(fmt::format("{} is not a valid CLI config ({}); run 'parley login' again", path,
                               obj.error().message));
  CliConfig c;
  auto server = json::requireString(*obj, "server");
  auto account = json::requireString(*obj, "account");
  auto bearer = json::requireString(*obj, "bearer");
  if (!server || !account || !bearer)
    return invalid(
        fmt::format("{} lacks server, account or bearer; run 'parley login' again", path));
  c.server = *server;
  c.account = *account;
  c.bearer = *bearer;
  c.ca = json::getString(*obj, "ca");
  return c;
}

Status saveConfig(const std::string& path, const CliConfig& config) {
  fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  if (ec)
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("cannot create {}: {}", p.parent_path().string(), ec.message()));
  json::bj::object o;
  o["server"] = config.server;
  o["account"] = config.account;
  o["bearer"] = config.bearer;
  o["ca"] = config.ca;
  std::string text = json::dump(o) + "\n";
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
  ::fchmod(fd, 0600);  // in case the temp file existed with wider permissions
  std::size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return makeError(ErrorCode::kUnavailable,
                       fmt::format("cannot write {}: {}", tmp, std::strerror(err)));
    }
    off += static_cast<std::size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return makeError(ErrorCode::kUnavailable,
                     fmt::format("cannot rename {} to {}: {}", tmp, path, std::strerror(errno)));
  return {};
}

}  // namespace parley::cli
