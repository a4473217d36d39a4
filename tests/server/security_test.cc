// TLS, mutual TLS and bearer tokens: the right client is served, the wrong
// ones are refused; the health check stays open.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/attention_client.h"
#include "server/server.h"
#include "tests/core/test_util.h"

namespace attention {
namespace {

// Certificates made with openssl for this test run: a CA signing a server
// certificate (localhost, 127.0.0.1) and a client certificate, and an
// unrelated CA with its own client certificate.
class Certificates {
 public:
  static const Certificates& Get() {
    static Certificates* c = new Certificates;
    return *c;
  }
  std::string Pem(const std::string& name) const {
    return client::ReadFileToString(dir_ + "/" + name).value();
  }
  bool ok() const { return ok_; }

 private:
  Certificates() {
    dir_ = testing::TempDir() + "/certs-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
    const std::string d = dir_;
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script = absl::StrCat(
        "set -e; cd ", d, ";",
        "openssl req -x509 ", key, " -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca;",
        "openssl req -x509 ", key, " -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=other-ca;",
        "openssl req ", key, " -keyout server.key -out server.csr -subj /CN=localhost;",
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > server.ext;",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile server.ext -out server.pem;",
        "printf 'extendedKeyUsage=clientAuth\\n' > client.ext;",
        "openssl req ", key, " -keyout client.key -out client.csr -subj /CN=client;",
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile client.ext -out client.pem;",
        "openssl req ", key, " -keyout stranger.key -out stranger.csr -subj /CN=stranger;",
        "openssl x509 -req -in stranger.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial "
        "-days 2 -extfile client.ext -out stranger.pem",
        " >/dev/null 2>&1");
    ok_ = std::system(script.c_str()) == 0;
  }
  std::string dir_;
  bool ok_ = false;
};

std::unique_ptr<server::AttentionServer> StartServer(server::ServerOptions options) {
  options.listen = "127.0.0.1:0";
  options.demo_modules = true;
  options.service.log_calls = false;
  auto s = server::AttentionServer::Start(options);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

absl::Status Call(const server::AttentionServer& s, client::ClientOptions options) {
  options.timeout = absl::Seconds(5);
  auto c = client::AttentionClient::Connect(absl::StrCat("127.0.0.1:", s.port()), options);
  if (!c.ok()) return c.status();
  return (*c)->GetServerInfo().status();
}

TEST(Security, TlsServesClientsThatTrustItsCa) {
  const Certificates& certs = Certificates::Get();
  ASSERT_TRUE(certs.ok()) << "openssl failed";
  server::ServerOptions o;
  o.tls_cert_pem = certs.Pem("server.pem");
  o.tls_key_pem = certs.Pem("server.key");
  auto s = StartServer(o);
  ASSERT_NE(s, nullptr);
  client::ClientOptions trusting;
  trusting.tls_ca_pem = certs.Pem("ca.pem");
  EXPECT_OK(Call(*s, trusting));
  EXPECT_EQ(Call(*s, {}).code(), absl::StatusCode::kUnavailable);  // plaintext client
  client::ClientOptions wrong_ca;
  wrong_ca.tls_ca_pem = certs.Pem("other-ca.pem");
  EXPECT_EQ(Call(*s, wrong_ca).code(), absl::StatusCode::kUnavailable);
}

TEST(Security, MutualTlsRequiresAClientCertificateFromItsCa) {
  const Certificates& certs = Certificates::Get();
  ASSERT_TRUE(certs.ok()) << "openssl failed";
  server::ServerOptions o;
  o.tls_cert_pem = certs.Pem("server.pem");
  o.tls_key_pem = certs.Pem("server.key");
  o.tls_client_ca_pem = certs.Pem("ca.pem");
  auto s = StartServer(o);
  ASSERT_NE(s, nullptr);
  client::ClientOptions good;
  good.tls_ca_pem = certs.Pem("ca.pem");
  good.tls_cert_pem = certs.Pem("client.pem");
  good.tls_key_pem = certs.Pem("client.key");
  EXPECT_OK(Call(*s, good));
  client::ClientOptions no_cert;
  no_cert.tls_ca_pem = certs.Pem("ca.pem");
  EXPECT_FALSE(Call(*s, no_cert).ok());
  client::ClientOptions stranger = good;
  stranger.tls_cert_pem = certs.Pem("stranger.pem");
  stranger.tls_key_pem = certs.Pem("stranger.key");
  EXPECT_FALSE(Call(*s, stranger).ok());
}

TEST(Security, BearerTokensGuardEveryRpcButHealth) {
  server::ServerOptions o;
  o.service.auth_tokens = {"s3cret-token", "second-token"};
  auto s = StartServer(o);
  ASSERT_NE(s, nullptr);
  client::ClientOptions right, wrong, none;
  right.token = "second-token";
  wrong.token = "s3cret-tokeN";
  EXPECT_OK(Call(*s, right));
  const absl::Status missing = Call(*s, none);
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(missing.message(), "got none")) << missing;
  const absl::Status bad = Call(*s, wrong);
  EXPECT_EQ(bad.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_FALSE(absl::StrContains(bad.message(), "s3cret")) << bad;  // never echoed

  auto anonymous = client::AttentionClient::Connect(absl::StrCat("127.0.0.1:", s->port()), none);
  ASSERT_OK(anonymous);
  auto health = (*anonymous)->CheckHealth();
  ASSERT_OK(health);
  EXPECT_EQ(*health, 1);
  const Tensor q = RandomTensor({1, 2, 3, 8}, 1);
  EXPECT_EQ((*anonymous)->Attend(q, q, q).status().code(), absl::StatusCode::kUnauthenticated);
  auto stream = (*anonymous)->StartDecode("demo-gqa", 1);
  ASSERT_OK(stream);
  EXPECT_EQ((*stream)->Step(RandomTensor({1, 1, 512}, 2)).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto authorized = client::AttentionClient::Connect(absl::StrCat("127.0.0.1:", s->port()), right);
  ASSERT_OK(authorized);
  EXPECT_OK((*authorized)->Attend(q, q, q));
}

}  // namespace
}  // namespace attention
