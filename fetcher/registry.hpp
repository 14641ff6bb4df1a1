#pragma once

// The Docker Registry HTTP API v2 / OCI distribution protocol, client side.
//
// - Endpoints: a registry's references go to https://<registry>/ and
//   docker.io's to `hubUrl`. How https is reached (registryTlsMode): a
//   registry listed in `insecure` with TLS unverified, or plain http when it
//   does not speak TLS; a loopback one (127.0.0.0/8, ::1, localhost) with
//   TLS verified, or plain http when it does not speak TLS; any other with
//   TLS verified only. The plain ones found go to `http.onPlainFound`. References of the `mirrored`
//   registry try each of `mirrors` first, in order, and fall through to the
//   upstream on any error; when all fail the upstream's error is reported.
// - Credentials, in the order consulted: the image's own; the Docker
//   config's credential helper for the registry (credHelpers, else
//   credsStore), run only once a registry asks for credentials, its answer
//   cached for 5 minutes; the config's auths.
// - Auth: a 401 (or GCR's 403 on an anonymous request) with a Bearer
//   challenge gets a token from the challenge's realm (anonymously, with
//   Basic credentials, or for an identity token with an OAuth2 refresh
//   POST), cached per (origin, scope) until `expires_in` (default
//   60 s) runs out on the runtime's clock; a 401 with a cached token (expired
//   mid-pull) gets a new one once. A Basic challenge is answered with the
//   credentials, if any. A second 401 is Unauthorized.
// - Statuses: 401 Unauthorized, 403 Forbidden, 404 NotFound (with the
//   registry's error code), 429 and 5xx Unavailable (retried, Retry-After
//   honoured), other 4xx InvalidArgument.
// - Verification: a manifest fetched by digest must hash to it; one fetched
//   by tag must match Docker-Content-Digest when the registry sends it.
//   Blobs are hashed while they stream and their size is checked against
//   the descriptor; the result fails with DigestMismatch otherwise.
// - Retries (RegistryOptions::retry) on Unavailable and Timeout. A blob whose
//   transfer breaks resumes with `Range: bytes=N-` from the last byte handed
//   on; the hash continues; a server that answers 200 instead of 206 is
//   handled by skipping the bytes already handed on.
//
// Thread-safe; no call blocks. Credentials never appear in a message.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "actors/future.hpp"
#include "fetcher/auth.hpp"
#include "fetcher/byte_sink.hpp"
#include "fetcher/http.hpp"
#include "fetcher/manifest.hpp"
#include "fetcher/retry.hpp"
#include "messages/image.pb.h"

namespace prov::actors {
class Runtime;
}

namespace prov::fetcher {

struct RegistryOptions {
  std::string hubUrl = "https://registry-1.docker.io";  // where docker.io references go
  std::set<std::string> insecure;                       // "host:port" allowed over plain http
  std::vector<std::string> mirrors;                     // base URLs, tried in order
  std::string mirrored = "docker.io";                   // the registry the mirrors stand in for
  DockerAuths auths;
  // Helpers run (docker-credential-<name> get) when a registry needs
  // credentials and the image brings none; before `auths`, as Docker does.
  CredentialHelpers helpers;
  std::chrono::milliseconds helperTimeout{30'000};
  RetryPolicy retry;
  HttpOptions http;  // allowPlainHttp and tlsMode are set from `insecure` and the loopback rule
  // A blob whose descriptor has no size (schema 1) may be this long.
  std::uint64_t maxUnsizedBlobBytes = 64ull << 30;
};

// A repository at one endpoint, with the credentials to use there.
struct Repository {
  Url endpoint;          // base URL: scheme, host, port
  std::string registry;  // canonical name, for messages ("docker.io")
  std::string name;      // "library/busybox"
  std::optional<messages::Credentials> credentials;
  // When the image brings no credentials and the Docker config names a
  // helper for this endpoint: its name and the server it is asked for.
  // Its answer wins over `credentials` (from the config's auths), which
  // stay the fallback when it has none.
  std::string credentialHelper{};
  std::string helperServer{};
};

struct FetchedManifest {
  Document document;
  std::string digest;  // verified
  std::string mediaType;
  std::string body;
};

class RegistryClient : public std::enable_shared_from_this<RegistryClient> {
 public:
  static Try<std::shared_ptr<RegistryClient>> create(actors::Runtime& runtime, RegistryOptions options);
  ~RegistryClient();

  // The repositories `reference` (normalised) is tried at, in order; the
  // image's own credentials win over the Docker config's.
  Try<std::vector<Repository>> repositories(const messages::ImageReference& reference,
                                            const std::optional<messages::Credentials>& credentials = {}) const;

  // GET /v2/: Ok when the endpoint speaks the protocol (200, or 401).
  actors::Future<Nothing> ping(const Url& endpoint);

  // `tagOrDigest` names the manifest; retried. With `parse` false the body
  // is only checked against its digest and `document` stays empty: for
  // manifests no image is made of (signature attachments).
  actors::Future<FetchedManifest> fetchManifest(const Repository& repository, const std::string& tagOrDigest,
                                                bool parse = true);

  // The whole blob (at most `limit` bytes), verified; retried.
  actors::Future<std::string> readBlob(const Repository& repository, const messages::Descriptor& blob,
                                       std::size_t limit);

  // Streams a blob into `sink`: retried and resumed; READY only when every
  // byte went to the sink and the digest and size matched.
  actors::Future<Nothing> streamBlob(const Repository& repository, const messages::Descriptor& blob,
                                     std::shared_ptr<ByteSink> sink);

  // Reference -> platform manifest, config and layers, trying each of
  // repositories() in turn. `manifestSeen`, if set, gets each platform
  // manifest read, before its config is fetched (Puller::resolveNotifying).
  actors::Future<messages::ResolvedImage> resolve(
      const messages::ImageReference& reference, const messages::Platform& platform,
      const std::optional<messages::Credentials>& credentials = {},
      std::function<void(const messages::ResolvedImage&)> manifestSeen = nullptr);

  HttpClient& http();

  struct Impl;

 private:
  explicit RegistryClient(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// 127.0.0.0/8, ::1 (bracketed or not) and "localhost".
bool isLoopback(const std::string& host);
// Whether a URL that says http (a mirror, a token realm) may be used: a
// loopback host, or one listed in `insecure` ("host:port", or "host" for
// ports 80 and 443).
bool plainHttpAllowed(const std::set<std::string>& insecure, const std::string& host, int port);
// How a URL that says https reaches host:port (the rule above).
TlsMode registryTlsMode(const std::set<std::string>& insecure, const std::string& host, int port);

}  // namespace prov::fetcher
