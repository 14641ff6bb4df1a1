#pragma once

// An asynchronous HTTP/1.1 client (Boost.Beast underneath; no Beast type in
// this header, so including it costs nothing).
//
// - Connections are reused per origin (scheme, host, port): a response read
//   to its end on a keep-alive connection puts the connection back in an
//   idle pool. A request on a reused connection that fails before any
//   response byte is sent again on a new connection (the server may have
//   closed an idle connection meanwhile).
// - TLS verifies the peer against the system CAs plus an extra bundle, with
//   SNI and host-name verification, unless `tlsMode` says otherwise for
//   the host. A certificate that fails is an IO error naming the failure.
// - Plain http: a URL that says http is refused unless `allowPlainHttp`
//   says yes for its host and port. A URL that says https goes over plain
//   http only when `tlsMode` allows it for the host and the server does
//   not speak TLS: in AnyCertOrPlain mode when it answers a ClientHello
//   with something else; in VerifyOrPlain mode (loopback, reached
//   directly) a request without credentials or a body goes plain first
//   while the origin is not known to speak TLS, and a 400, a redirect, a
//   broken connection or a timeout sends it to TLS. An origin found plain
//   is remembered (`plainOrigins`, `onPlainFound`) and later requests go
//   there over http directly; one found to speak TLS is, for the process.
//   A remembered origin that answers a plain request with 400 or breaks it
//   is tried over TLS again. Only the first hop of a request is ever moved
//   to plain http.
// - A header value (the authorization, the user agent, any other) with a
//   control character (CR, LF, NUL, ...) is refused before anything is
//   sent: header injection on a pooled connection. Beast does not check.
// - Redirects (301, 302, 303, 307, 308) are followed up to `maxRedirects`:
//   never from https to http; from http to http (the first hop was allowed
//   plain). The request's `authorization` is sent only to the origin of the
//   request URL: a redirect elsewhere loses it (CVE-2020-15157). Neither it
//   nor any URL query appears in an error message.
// - Bodies stream through a BodySink with back-pressure: the next chunk is
//   read from the socket only when the sink's future for the previous one is
//   ready, so a slow consumer slows the socket and memory stays at one chunk.
// - Timeouts: `connectTimeout` covers connect and TLS handshake (a name is
//   resolved within the system resolver's own limits, resolv.conf's);
//   while a request or response is on the wire (not while the sink is
//   working), the transfer must average at least `minBytesPerSecond` over
//   every `stallWindow`, or it fails with Timeout: a trickle is a stall.
// - Proxies (`proxy`, see proxy.hpp; none by default): each hop (redirects
//   included) whose host no_proxy does not list goes through the proxy for
//   its scheme. An http URL is sent to the http proxy in absolute form
//   (GET http://host:port/path); an https URL is tunnelled through the
//   https proxy with CONNECT host:port, and TLS then runs end to end with
//   the target exactly as without a proxy (SNI and verification against the
//   target host), plain fallback included (after it the URL is http and
//   takes the http proxy, or none). Connections are pooled per proxy and
//   origin: a proxied one and a direct one never mix. The proxy's
//   credentials go only to the proxy (Proxy-Authorization) and never into
//   a message. A proxy that refuses a CONNECT, or answers 407, fails the
//   request naming the proxy: Unauthorized for 401 and 407, Forbidden for
//   403, Unavailable otherwise; connectTimeout covers the proxy's connect
//   and its CONNECT answer.
//
// Errors: Unavailable for connection trouble (refused, reset, closed
// early), Timeout for the timeouts, IO for TLS failures (certificate
// verification included; not worth retrying), InvalidArgument for a refused
// URL, ResourceExhausted for a buffered body over its cap, Corruption for
// a malformed response. HTTP statuses are not errors here: the caller reads
// Response::status. Discarding the future closes the connection.

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "actors/future.hpp"
#include "fetcher/proxy.hpp"
#include "fetcher/types.hpp"
#include "fetcher/url.hpp"

namespace prov::actors {
class Runtime;
}

namespace prov::fetcher {

// How a URL that says https is reached.
enum class TlsMode {
  Verify,          // TLS, the peer's certificate and name verified; nothing else
  VerifyOrPlain,   // as Verify; plain http when the server does not speak TLS (tried first by a
                   // request without credentials or a body)
  AnyCertOrPlain,  // TLS without verification; plain http when the server does not speak TLS
};

struct HttpOptions {
  std::chrono::milliseconds connectTimeout{30'000};
  std::chrono::milliseconds stallWindow{30'000};
  std::size_t minBytesPerSecond = 1024;
  int maxRedirects = 5;
  std::size_t chunkBytes = 256 * 1024;  // one sink call delivers at most this
  std::size_t maxIdlePerOrigin = 8;
  std::string extraCaFile;  // PEM bundle trusted beside the system CAs
  std::string userAgent = "provisioner/0.1";
  // Whether a URL that says http may be requested at host:port (first hop
  // only; see the redirect rule). Default: never.
  std::function<bool(const std::string& host, int port)> allowPlainHttp;
  // How a URL that says https reaches host:port. Default: Verify.
  std::function<TlsMode(const std::string& host, int port)> tlsMode;
  // "host:port"s known not to speak TLS (found by an earlier run).
  std::set<std::string> plainOrigins;
  // Told "host:port" each time an origin is found not to speak TLS, or
  // found to speak it again ("plain" false). Called on a network thread.
  std::function<void(const std::string& hostPort, bool plain)> onPlainFound;
  // The proxies to go through (proxyFromEnvironment() reads the usual
  // variables). Default: none, every request goes direct.
  ProxySettings proxy;
};

struct HttpRequest {
  std::string method = "GET";
  Url url;
  std::vector<std::pair<std::string, std::string>> headers;  // sent to every hop
  std::optional<std::string> authorization;                  // only to url's origin
  std::string body;                                          // only to url's origin
  std::size_t maxBody = 1u << 20;                            // cap for a buffered body (see fetch())
};

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lowercased; repeats joined by ", "
  Url url;                                     // after redirects
  std::string body;                            // buffered bodies only
  bool followedRedirect = false;

  // The header's value, or "" when absent.
  std::string header(const std::string& lowercaseName) const;
};

// Where a streamed body goes.
class BodySink {
 public:
  virtual ~BodySink() = default;
  // Once per response whose body comes here, with its status and headers,
  // before any body byte. An error aborts the transfer with that error.
  virtual Try<Nothing> start(const HttpResponse& head) = 0;
  // `chunk` stays valid until the returned future completes; a failed
  // future aborts the transfer with its error.
  virtual actors::Future<Nothing> write(std::string_view chunk) = 0;
};

class HttpClient {
 public:
  // Fails (IO) when the extra CA file cannot be loaded; InvalidArgument for
  // a proxy without a host or port, or whose credentials hold a control
  // character.
  static Try<std::shared_ptr<HttpClient>> create(actors::Runtime& runtime, HttpOptions options);
  ~HttpClient();

  // The whole body in HttpResponse::body (at most request.maxBody bytes,
  // else ResourceExhausted).
  actors::Future<HttpResponse> fetch(HttpRequest request);

  // A 2xx body goes to `sink` (unbounded size: the sink decides); any other
  // status's body is buffered into HttpResponse::body, capped at 64 KiB.
  // READY once the body has been read to its end and the sink accepted it.
  actors::Future<HttpResponse> stream(HttpRequest request, std::shared_ptr<BodySink> sink);

  // Starts making the TLS context (OpenSSL's set-up, ~4 ms here) on a
  // blocking thread, for a process about to connect: the first TLS
  // connection then finds it made, or waits for the rest. Not the system
  // CAs, which are read at the first certificate to verify. A context that
  // cannot be made (a bad extra CA file) is left for that connection to
  // report.
  void prepareTls();

  // Whether a request to `url` now starts without TLS: a plain http URL, an
  // https one whose origin is known not to speak TLS where plain is
  // allowed, or one in VerifyOrPlain mode not known to speak TLS (plain is
  // tried first there by a request without credentials or a body). A new
  // connection there costs one round trip, no handshake.
  bool reachesPlain(const Url& url) const;

  // Connections made so far (reuse shows as requests > connections).
  std::size_t connectionsOpened() const;

  struct Impl;

 private:
  explicit HttpClient(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace prov::fetcher
