#pragma once

// TLS material for the HTTPS listener: a self-signed CA and a leaf certificate generated on
// first start (OpenSSL EVP/X509), reused afterwards. Plain functions; no Asio types.

#include <string>

#include "common/result.h"

namespace parley::server {

struct TlsFiles {
  std::string ca_path;    // DIR/tls/ca.pem (empty when the caller brought its own cert)
  std::string cert_path;  // leaf certificate chain (PEM)
  std::string key_path;   // leaf private key (PEM, mode 0600)
};

// Makes sure DIR/tls/{ca.pem,ca-key.pem,cert.pem,key.pem} exist: generates a P-256 CA and a leaf
// signed by it (SAN DNS:localhost, IP:127.0.0.1) when any is missing, and reuses them otherwise.
// Key files are written with mode 0600. Blocking (file I/O); call before serving.
Result<TlsFiles> ensureTlsFiles(const std::string& data_dir);

// Reads a whole file; NotFound when it cannot be opened.
Result<std::string> readFile(const std::string& path);

}  // namespace parley::server
