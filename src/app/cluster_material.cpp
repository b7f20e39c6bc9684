#include "app/cluster_material.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/crypto.h"
#include "common/json.h"
#include "server/jwt.h"
#include "server/tls_files.h"

namespace parley::app {
namespace {

namespace bj = boost::json;
namespace fs = std::filesystem;

Result<std::string> readAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return notFound(fmt::format("cannot read {}", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Replaces `path` with `content` atomically (a temporary file renamed over it), with `mode`.
Status writeAtomically(const fs::path& path, const std::string& content, mode_t mode) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return internalError(fmt::format("cannot write {}", tmp.string()));
  bool ok = ::fchmod(fd, mode) == 0 &&
            ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return internalError(fmt::format("cannot write {}", tmp.string()));
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return internalError(fmt::format("cannot write {}: {}", path.string(), ec.message()));
  return {};
}

// Offers the local files (one material value: a JSON object of file name → content) and writes
// the stored value's files over them when it is another node's.
Status shareFiles(store::ClusterStore& cluster, const std::string& key, const fs::path& dir,
                  const std::vector<std::pair<std::string, mode_t>>& files) {
  bj::object local;
  for (const auto& [name, mode] : files) {
    auto content = readAll(dir / name);
    if (!content) return std::unexpected(content.error());
    local[name] = *content;
  }
  const std::string offered = bj::serialize(local);
  auto stored = cluster.putMaterialIfAbsent(key, offered);
  if (!stored) {
    return makeError(stored.error().code,
                     fmt::format("cannot share the cluster's {}: {}", key, stored.error().message));
  }
  if (*stored == offered) return {};
  auto o = json::parseObject(*stored);
  if (!o) return internalError(fmt::format("the cluster's {} in the store is corrupt", key));
  for (const auto& [name, mode] : files) {
    auto it = o->find(name);
    if (it == o->end() || !it->value().is_string())
      return internalError(fmt::format("the cluster's {} in the store lacks {}", key, name));
    const auto& content = it->value().as_string();
    if (auto st = writeAtomically(dir / name, std::string(content.data(), content.size()), mode);
        !st)
      return st;
  }
  return {};
}

}  // namespace

Status shareClusterMaterial(store::ClusterStore& cluster, const std::string& data_dir,
                            SharedTls tls) {
  const fs::path dir(data_dir);
  if (tls == SharedTls::kShared) {
    if (auto t = server::ensureTlsFiles(data_dir); !t) return std::unexpected(t.error());
    if (auto st = shareFiles(
            cluster, "tls", dir / "tls",
            {{"ca.pem", 0644}, {"ca-key.pem", 0600}, {"cert.pem", 0644}, {"key.pem", 0600}});
        !st)
      return st;
  }
  if (auto k = server::loadOrCreateJwtKey(data_dir); !k) return std::unexpected(k.error());
  if (auto st = shareFiles(cluster, "jwt.key", dir / "keys", {{"jwt.key", 0600}}); !st) return st;
  if (auto b = crypto::SecretBox::loadOrCreate((dir / "keys" / "secrets.key").string()); !b)
    return std::unexpected(b.error());
  return shareFiles(cluster, "secrets.key", dir / "keys", {{"secrets.key", 0600}});
}

}  // namespace parley::app
