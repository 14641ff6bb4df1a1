#pragma once

// A fake registry for fault injection: an HTTP/1.1 server on
// 127.0.0.1:<free port> that speaks enough of the distribution API
// (/v2/, manifests, blobs, a /token endpoint) and misbehaves on request.
// One thread per connection; every request is recorded for assertions.

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace prov::testing {

class FakeRegistry {
 public:
  // Listens on `address` (127.0.0.2, ::1, ...) at a free port.
  explicit FakeRegistry(const std::string& address = "127.0.0.1");
  ~FakeRegistry();

  int port() const;
  std::string hostPort() const;  // "127.0.0.1:PORT", "[::1]:PORT"
  std::string url() const;       // "http://" + hostPort()

  // Content. addBlob returns "sha256:<hex>"; putBlob serves `content` under
  // any digest (a lying registry).
  std::string addBlob(const std::string& content);
  void putBlob(const std::string& digest, const std::string& content);
  // A plain file served for GET `target` ("/dir/name.aci"), without auth;
  // faults and dropBlobsAfter apply to it too.
  void putFile(const std::string& target, const std::string& content);
  // Served for GET /v2/<repo>/manifests/<reference>; also under its own
  // digest. Returns that digest.
  std::string putManifest(const std::string& repo, const std::string& reference, const std::string& body,
                          const std::string& contentType);
  // A Docker-Content-Digest header to send for `reference` (default: the true one).
  void claimDigest(const std::string& repo, const std::string& reference, const std::string& digest);

  // Auth. Bearer: a 401 with `Bearer realm="<url>/token",service="fake"`;
  // /token hands out tokens, each good for `tokenUses` requests (0: no limit),
  // with `expiresIn` seconds (absent when < 0); with a user, /token wants
  // Basic credentials. Basic: a 401 with `Basic realm="fake"`.
  void requireBearer(std::optional<std::pair<std::string, std::string>> user = {}, int tokenUses = 0,
                     int expiresIn = 60);
  void requireBasic(const std::string& user, const std::string& password);

  // Faults, consumed in order by the first request whose target contains
  // `match`: answer `status` with `headers` and `body`, `times` times.
  struct Fault {
    std::string match;
    int status = 500;
    std::map<std::string, std::string> headers;
    std::string body;
    int times = 1;
  };
  void fail(Fault fault);
  // Blob GETs answered with 307 to `baseUrl` + the same target.
  void redirectBlobsTo(const std::string& baseUrl);
  // The next `times` blob bodies (only those whose target contains one of
  // `only`, when given) stop after `bytes` bytes (full Content-Length
  // sent), and the connection closes.
  void dropBlobsAfter(std::size_t bytes, int times = 1, std::vector<std::string> only = {});
  // Files under `root` served for GETs outside /v2/ (a blob store that a
  // registry redirects to), without auth.
  void serveDirectory(const std::string& root);
  // Every HEAD answered with `status` (ECR's 405).
  void answerHead(int status);
  // The Bearer challenge's parameters as given (e.g. only a realm).
  void challengeWith(const std::string& params);
  // The token answer's field: "token" (default) or "access_token".
  void tokenFieldName(const std::string& name);
  // A request without credentials gets 403 (with the challenge), not 401.
  void forbidAnonymous(bool forbid = true);
  // /token accepts only an OAuth2 refresh: a POST with
  // grant_type=refresh_token&refresh_token=<token>.
  void acceptRefreshToken(const std::string& token);
  // Range requests answered with 200 and the whole blob.
  void ignoreRange(bool ignore = true);
  // A request whose target contains `match` is answered only once one
  // whose target contains `awaited` has come after this call (a 504 after
  // 10 s without).
  void holdUntilAsked(const std::string& match, const std::string& awaited);
  // Blob bodies sent one byte every `intervalMs`.
  void trickle(int intervalMs);
  // Blob answers followed by `extra`, past their Content-Length, in the
  // same write as their header and body (so neither dropBlobsAfter nor
  // trickle applies to them). "" turns it off.
  void sendPastBlobs(const std::string& extra);
  // Close the connection after each response (no keep-alive).
  void closeAfterEachResponse(bool close = true);

  struct Seen {
    std::string method;
    std::string target;
    std::string authorization;
    std::string range;
    std::string accept;
    std::string contentType;
    std::string body;
  };
  std::vector<Seen> requests() const;
  std::size_t connectionsAccepted() const;
  // Connections that opened with something other than HTTP (a TLS
  // ClientHello): each got a 400.
  std::size_t notHttpConnections() const;
  // Body bytes written to sockets so far (not counting trickled ones).
  std::size_t bodyBytesSent() const;
  // Requests whose target contains `match`.
  std::size_t count(const std::string& match) const;
  // Whether any request carried an Authorization header.
  bool sawAuthorization() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace prov::testing
