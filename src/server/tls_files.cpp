#include "server/tls_files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

namespace parley::server {
namespace {

namespace fs = std::filesystem;

struct EvpKeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, EvpKeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

KeyPtr makeKey() { return KeyPtr(EVP_EC_gen("P-256")); }

bool addExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

bool setRandomSerial(X509* cert) {
  unsigned char buf[16];
  if (RAND_bytes(buf, sizeof buf) != 1) return false;
  buf[0] &= 0x7F;
  BIGNUM* bn = BN_bin2bn(buf, sizeof buf, nullptr);
  if (!bn) return false;
  bool ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != nullptr;
  BN_free(bn);
  return ok;
}

// Builds a certificate for `key`; self-signed when issuer is null.
X509Ptr makeCert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key, bool is_ca,
                 long days) {
  X509Ptr cert(X509_new());
  if (!cert) return nullptr;
  X509_set_version(cert.get(), 2);
  if (!setRandomSerial(cert.get())) return nullptr;
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Parley"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509* iss = issuer ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(iss));
  bool ok = true;
  if (is_ca) {
    ok = ok && addExt(cert.get(), iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    ok = ok && addExt(cert.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    ok = ok && addExt(cert.get(), iss, NID_subject_key_identifier, "hash");
  } else {
    ok = ok && addExt(cert.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
    ok = ok && addExt(cert.get(), iss, NID_key_usage, "critical,digitalSignature,keyAgreement");
    ok = ok && addExt(cert.get(), iss, NID_ext_key_usage, "serverAuth");
    ok = ok && addExt(cert.get(), iss, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
    ok = ok && addExt(cert.get(), iss, NID_subject_key_identifier, "hash");
    ok = ok && addExt(cert.get(), iss, NID_authority_key_identifier, "keyid:always");
  }
  if (!ok) return nullptr;
  if (X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) == 0) return nullptr;
  return cert;
}

std::string certPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string keyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Status writeFile(const fs::path& path, const std::string& content, mode_t mode) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0)
    return internalError(fmt::format("cannot write {}: check the data directory", tmp.string()));
  ::fchmod(fd, mode);
  std::size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n <= 0) {
      ::close(fd);
      return internalError(fmt::format("cannot write {}", tmp.string()));
    }
    off += static_cast<std::size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return internalError(fmt::format("cannot rename {}: {}", tmp.string(), ec.message()));
  return {};
}

}  // namespace

Result<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return notFound(fmt::format("cannot read {}", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<TlsFiles> ensureTlsFiles(const std::string& data_dir) {
  fs::path dir = fs::path(data_dir) / "tls";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return internalError(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  TlsFiles files{(dir / "ca.pem").string(), (dir / "cert.pem").string(),
                 (dir / "key.pem").string()};
  fs::path ca_key = dir / "ca-key.pem";
  if (fs::exists(files.ca_path) && fs::exists(ca_key) && fs::exists(files.cert_path) &&
      fs::exists(files.key_path)) {
    return files;
  }
  KeyPtr ca_k = makeKey();
  KeyPtr leaf_k = makeKey();
  if (!ca_k || !leaf_k) return internalError("cannot generate TLS keys (OpenSSL EC P-256)");
  X509Ptr ca = makeCert(ca_k.get(), "Parley local CA", nullptr, nullptr, true, 3650);
  if (!ca) return internalError("cannot create the TLS CA certificate");
  X509Ptr leaf = makeCert(leaf_k.get(), "localhost", ca.get(), ca_k.get(), false, 825);
  if (!leaf) return internalError("cannot create the TLS leaf certificate");
  if (auto s = writeFile(ca_key, keyPem(ca_k.get()), 0600); !s) return std::unexpected(s.error());
  if (auto s = writeFile(files.key_path, keyPem(leaf_k.get()), 0600); !s)
    return std::unexpected(s.error());
  if (auto s = writeFile(files.cert_path, certPem(leaf.get()) + certPem(ca.get()), 0644); !s)
    return std::unexpected(s.error());
  if (auto s = writeFile(files.ca_path, certPem(ca.get()), 0644); !s)
    return std::unexpected(s.error());
  return files;
}

}  // namespace parley::server
