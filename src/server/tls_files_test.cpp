#include "server/tls_files.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/testing/temp_dir.h"

namespace parley::server {
namespace {

namespace fs = std::filesystem;

TEST(TlsFiles, GeneratesOnceWithSanAndPrivateKeys) {
  parley::testing::TempDir tmp;
  const fs::path dir = tmp.path();
  auto a = ensureTlsFiles(dir.string());
  ASSERT_TRUE(a) << a.error().message;
  auto ca1 = readFile(a->ca_path);
  ASSERT_TRUE(ca1);
  struct stat st {};
  ASSERT_EQ(::stat(a->key_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir / "tls" / "ca-key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // The leaf lists IP:127.0.0.1 and DNS:localhost and is signed by the CA.
  FILE* f = std::fopen(a->cert_path.c_str(), "r");
  ASSERT_NE(f, nullptr);
  X509* leaf = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  ASSERT_NE(leaf, nullptr);
  EXPECT_EQ(X509_check_ip_asc(leaf, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_host(leaf, "localhost", 0, 0, nullptr), 1);
  f = std::fopen(a->ca_path.c_str(), "r");
  X509* ca = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  ASSERT_NE(ca, nullptr);
  EVP_PKEY* ca_key = X509_get_pubkey(ca);
  EXPECT_EQ(X509_verify(leaf, ca_key), 1);
  EVP_PKEY_free(ca_key);
  X509_free(ca);
  X509_free(leaf);

  // Second call reuses the files.
  auto b = ensureTlsFiles(dir.string());
  ASSERT_TRUE(b);
  EXPECT_EQ(*readFile(b->ca_path), *ca1);
}

}  // namespace
}  // namespace parley::server
