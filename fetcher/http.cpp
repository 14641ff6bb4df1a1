#include "fetcher/http.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "actors/async.hpp"
#include "actors/runtime.hpp"

namespace prov::fetcher {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Parser = bhttp::response_parser<bhttp::buffer_body>;
using WireRequest = bhttp::request<bhttp::string_body>;
using Handler = std::function<void(error_code, std::size_t)>;

namespace {

constexpr std::size_t kErrorBodyCap = 64 * 1024;

// What may appear in a message: no query (pre-signed URLs carry secrets there).
std::string shown(const Url& url) {
  Url copy = url;
  copy.target = copy.target.substr(0, copy.target.find('?'));
  return copy.toString();
}

// One socket, plain or TLS, on its own strand.
class Connection {
 public:
  explicit Connection(std::string origin) : origin_(std::move(origin)) {}
  virtual ~Connection() = default;
  virtual beast::tcp_stream& tcp() = 0;
  // TLS set-up (nothing for plain); `verify`: the peer's chain and name.
  virtual void handshake(const std::string& host, bool verify, Handler done) = 0;
  virtual void write(WireRequest& request, Handler done) = 0;
  virtual void readHeader(beast::flat_buffer& buffer, Parser& parser, Handler done) = 0;
  virtual void readSome(beast::flat_buffer& buffer, Parser& parser, Handler done) = 0;
  // Up to `into`'s size of the stream's bytes, past any parser: a body of
  // known length once its header is read (Exchange::readRawBody).
  virtual void readRaw(asio::mutable_buffer into, Handler done) = 0;
  // Whether bytes are waiting to be read: in the socket's receive queue,
  // or (TLS) decrypted and held by OpenSSL. After a whole response there
  // should be none.
  virtual bool readable() {
    error_code ec;
    const std::size_t n = tcp().socket().available(ec);
    return !ec && n > 0;
  }

  const std::string& origin() const { return origin_; }
  asio::any_io_executor executor() { return tcp().get_executor(); }

  // Connects to the first of `endpoints` (from the i-th) that answers. Each
  // attempt is on a socket opened close-on-exec here: Asio's own open()
  // calls a plain socket(), and setting the flag afterwards races with an
  // agent's fork, whose child would keep the connection.
  void connect(std::shared_ptr<const std::vector<tcp::endpoint>> endpoints, std::size_t i, Handler done) {
    const tcp::endpoint& endpoint = (*endpoints)[i];
    error_code ec;
    tcp().socket().close(ec);
    const int fd = ::socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) return done(error_code(errno, boost::system::system_category()), 0);
    tcp().socket().assign(endpoint.protocol(), fd, ec);
    if (ec) {
      ::close(fd);
      return done(ec, 0);
    }
    tcp().async_connect(endpoint, [this, endpoints, i, done](error_code ec) {
      if (ec && ec != asio::error::operation_aborted && ec != beast::error::timeout && i + 1 < endpoints->size()) {
        return connect(endpoints, i + 1, done);
      }
      done(ec, 0);
    });
  }
  // CONNECT `hostPort` through the proxy this socket is connected to (the
  // tunnel's TLS handshake follows); the proxy's answer in tunnelStatus.
  void tunnel(const std::string& hostPort, const std::string& authorization, Handler done) {
    struct State {
      bhttp::request<bhttp::empty_body> request;
      bhttp::response_parser<bhttp::empty_body> parser;
      beast::flat_buffer buffer;
    };
    auto state = std::make_shared<State>();
    state->request.method(bhttp::verb::connect);
    state->request.target(hostPort);
    state->request.version(11);
    state->request.set(bhttp::field::host, hostPort);
    if (!authorization.empty()) state->request.set(bhttp::field::proxy_authorization, authorization);
    // The answer to a CONNECT has no body, whatever its headers say: what
    // follows a 200 is the tunnel.
    state->parser.skip(true);
    bhttp::async_write(tcp(), state->request, [this, state, done](error_code ec, std::size_t) {
      if (ec) return done(ec, 0);
      bhttp::async_read_header(tcp(), state->buffer, state->parser, [this, state, done](error_code ec, std::size_t) {
        if (!ec) tunnelStatus = static_cast<int>(state->parser.get().result_int());
        // The server speaks only after our ClientHello: bytes already here
        // would be lost to the TLS stream, which reads the socket afresh.
        if (!ec && tunnelStatus == 200 && state->buffer.size() > 0) ec = bhttp::error::unexpected_body;
        done(ec, 0);
      });
    });
  }
  void close() {
    error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }
  bool reused = false;
  int tunnelStatus = 0;  // the proxy's answer to CONNECT, after tunnel()
  // Why the peer's certificate failed verification, after a failed handshake.
  std::string verifyFailure;

 private:
  std::string origin_;
};

// The HTTP steps are the same over either stream; only set-up differs.
template <typename Stream>
class StreamConnection : public Connection {
 public:
  template <typename... A>
  StreamConnection(std::string origin, A&&... streamArgs)
      : Connection(std::move(origin)), stream_(std::forward<A>(streamArgs)...) {}
  beast::tcp_stream& tcp() override { return beast::get_lowest_layer(stream_); }
  void write(WireRequest& r, Handler done) override { bhttp::async_write(stream_, r, std::move(done)); }
  void readHeader(beast::flat_buffer& b, Parser& p, Handler done) override {
    bhttp::async_read_header(stream_, b, p, std::move(done));
  }
  void readSome(beast::flat_buffer& b, Parser& p, Handler done) override {
    bhttp::async_read_some(stream_, b, p, std::move(done));
  }
  void readRaw(asio::mutable_buffer into, Handler done) override { stream_.async_read_some(into, std::move(done)); }

 protected:
  Stream stream_;
};

class PlainConnection final : public StreamConnection<beast::tcp_stream> {
 public:
  PlainConnection(std::string origin, asio::any_io_executor strand) : StreamConnection(std::move(origin), strand) {}
  void handshake(const std::string&, bool, Handler done) override { done({}, 0); }
};

// A TLS client context whose system CAs are found at the first certificate
// it must verify, and the cheap way first. OpenSSL's hashed directory
// (SSL_CERT_DIR, else its default: Debian's /etc/ssl/certs) reads only the
// certificates a chain names. The bundle (SSL_CERT_FILE, else the default
// cert.pem), whose parsing takes ~20 ms, is read only when a chain does not
// verify without it: a system without the hashed links, or an anchor that
// is only in the bundle. A command that never verifies a certificate (no
// TLS, a loopback registry found to speak plain http, an insecure one)
// reads neither.
struct TrustContext {
  ssl::context context{ssl::context::tls_client};
  std::once_flag lookupsAdded;
  X509_LOOKUP* bundle = nullptr;  // the file lookup, once added (owned by the store)
  std::once_flag bundleRead;
  std::atomic<bool> bundleLoaded{false};
};

class TlsConnection final : public StreamConnection<beast::ssl_stream<beast::tcp_stream>> {
 public:
  // Holds `trust`: its verification callback may run as long as the
  // connection does.
  TlsConnection(std::string origin, asio::any_io_executor strand, std::shared_ptr<TrustContext> trust)
      : StreamConnection(std::move(origin), strand, trust->context), trust_(std::move(trust)) {}
  bool readable() override { return SSL_pending(stream_.native_handle()) > 0 || Connection::readable(); }
  void handshake(const std::string& host, bool verify, Handler done) override {
    // SNI, then the peer's chain against our CAs and its name against `host`.
    if (!SSL_set_tlsext_host_name(stream_.native_handle(), host.c_str())) {
      done(error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()), 0);
      return;
    }
    if (verify) {
      stream_.set_verify_mode(ssl::verify_peer);
      stream_.set_verify_callback(ssl::host_name_verification(host));
    } else {
      stream_.set_verify_mode(ssl::verify_none);
    }
    stream_.async_handshake(ssl::stream_base::client, [this, done = std::move(done)](error_code ec) {
      const long result = SSL_get_verify_result(stream_.native_handle());
      if (ec && result != X509_V_OK) verifyFailure = X509_verify_cert_error_string(result);
      done(ec, 0);
    });
  }

 private:
  std::shared_ptr<TrustContext> trust_;
};

// The context's certificate verification (SSL_CTX_set_cert_verify_callback):
// OpenSSL's own, against the extra CA file, the hashed directory and, when
// those do not make the chain verify, the bundle as well: what
// X509_STORE_set_default_paths trusts, read as needed. A connection that
// does not verify (verify_none) checks nothing and touches no store: OpenSSL
// calls this for it too, and the store may be loading on another thread.
// Reading the bundle holds an I/O thread (and other verifying handshakes)
// for its ~20 ms, at most once per process and context.
int verifyWithSystemCas(X509_STORE_CTX* chain, void* arg) {
  auto* trust = static_cast<TrustContext*>(arg);
  const auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(chain, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (ssl != nullptr && SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE) {
    X509_STORE_CTX_set_error(chain, X509_V_OK);
    return 1;
  }
  X509_STORE* store = SSL_CTX_get_cert_store(trust->context.native_handle());
  // Both lookups before any verification walks the store's list of them
  // (adding one is not safe beside a walk); the file lookup stays empty.
  std::call_once(trust->lookupsAdded, [trust, store] {
    if (X509_LOOKUP* dir = X509_STORE_add_lookup(store, X509_LOOKUP_hash_dir())) {
      X509_LOOKUP_add_dir(dir, nullptr, X509_FILETYPE_DEFAULT);
    }
    // As X509_STORE_set_default_paths: the directory as an OpenSSL store
    // too (it also finds DER files and upper-case hash names), asked only
    // when the hashed lookup finds nothing.
    if (X509_LOOKUP* uri = X509_STORE_add_lookup(store, X509_LOOKUP_store())) {
      X509_LOOKUP_add_store(uri, nullptr);
    }
    trust->bundle = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    ::ERR_clear_error();
  });
  if (!trust->bundleLoaded.load()) {
    // A trial on a context of its own (one context verifies once): does the
    // chain verify without the bundle?
    bool verifies = false;
    if (X509_STORE_CTX* trial = X509_STORE_CTX_new()) {
      if (X509_STORE_CTX_init(trial, store, X509_STORE_CTX_get0_cert(chain), X509_STORE_CTX_get0_untrusted(chain)) ==
          1) {
        verifies = X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(trial), X509_STORE_CTX_get0_param(chain)) == 1 &&
                   X509_verify_cert(trial) == 1;
      }
      X509_STORE_CTX_free(trial);
    }
    if (!verifies) {
      std::call_once(trust->bundleRead, [trust] {
        // One that cannot be read leaves the chain unverified, which names
        // itself. (Certificates go into the store under its lock.)
        if (trust->bundle) X509_LOOKUP_load_file(trust->bundle, nullptr, X509_FILETYPE_DEFAULT);
        trust->bundleLoaded = true;
      });
    }
    ::ERR_clear_error();
  }
  return X509_verify_cert(chain);
}

// The trust context of every client in this process that trusts
// `extraCaFile` ("" for none) beside the system's CAs, made at the first
// TLS connection. Keyed by the file's identity too: a bundle the operator
// replaced is read anew by the clients made after.
Try<std::shared_ptr<TrustContext>> sharedTrustContext(const std::string& extraCaFile) {
  std::string key = extraCaFile;
  if (!extraCaFile.empty()) {
    struct stat st {};
    if (::stat(extraCaFile.c_str(), &st) != 0) {
      return Error(ErrorKind::IO, "Failed to load the CA bundle '" + extraCaFile + "': " + std::strerror(errno));
    }
    key += '\0' + std::to_string(st.st_dev) + ':' + std::to_string(st.st_ino) + ':' + std::to_string(st.st_size) + ':' +
           std::to_string(st.st_mtim.tv_sec) + '.' + std::to_string(st.st_mtim.tv_nsec);
  }
  // Never destroyed: a client may outlive static destruction's order.
  static auto* mutex = new std::mutex;
  static auto* made = new std::map<std::string, std::weak_ptr<TrustContext>>;
  std::lock_guard lock(*mutex);
  if (auto trust = (*made)[key].lock()) return trust;
  auto trust = std::make_shared<TrustContext>();
  if (!extraCaFile.empty()) {
    error_code ec;
    trust->context.load_verify_file(extraCaFile, ec);
    if (ec) return Error(ErrorKind::IO, "Failed to load the CA bundle '" + extraCaFile + "': " + ec.message());
  }
  SSL_CTX_set_cert_verify_callback(trust->context.native_handle(), verifyWithSystemCas, trust.get());
  trust->context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                             ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  (*made)[key] = trust;
  return trust;
}
}  // namespace

struct HttpClient::Impl : std::enable_shared_from_this<HttpClient::Impl> {
  actors::Runtime& runtime;
  HttpOptions options;
  std::mutex mutex;
  std::shared_ptr<TrustContext> trust;  // under `mutex`, from the first TLS connection on
  std::map<std::string, std::vector<std::shared_ptr<Connection>>> idle;
  std::atomic<std::size_t> opened{0};
  std::set<std::string> plainOrigins;  // "host:port", under `mutex`
  std::set<std::string> tlsOrigins;    // found to speak TLS in this process, under `mutex`

  std::atomic<std::uint64_t> sinkBytes{0};  // the lengths of the blob bodies started so far

  Impl(actors::Runtime& r, HttpOptions o) : runtime(r), options(std::move(o)), plainOrigins(options.plainOrigins) {}

  // A blob's body (to a sink) of `length` bytes (none: chunked, unknown)
  // starts. Once the lengths of this client's blob bodies (retries
  // included) add up to bulk, the runtime's held-back workers start
  // (Runtime::Options::startedWorkerThreads): reading sockets and hashing
  // then has a thread per core, while a small pull stays on one.
  void bodyStarting(std::optional<std::uint64_t> length) {
    constexpr std::uint64_t kBulkBytes = 8 << 20;
    if (!length || sinkBytes.fetch_add(*length) + *length >= kBulkBytes) runtime.startAllWorkers();
  }

  // Through a proxy, a loopback host is the proxy's and whoever answers
  // the CONNECT is unknown: verified TLS only, unless the operator listed
  // the host as insecure. So also when only its plain http form would go
  // through one (http_proxy set, https_proxy not): plain http there would
  // reach the proxy's loopback, not ours.
  TlsMode tlsMode(const Url& url) const {
    const TlsMode mode = options.tlsMode ? options.tlsMode(url.host, url.port) : TlsMode::Verify;
    if (mode == TlsMode::VerifyOrPlain) {
      Url plain = url;
      plain.scheme = "http";
      if (proxyFor(url) || proxyFor(plain)) return TlsMode::Verify;
    }
    return mode;
  }
  // How a request to https `url` starts.
  enum class Start { Tls, Remembered, PlainFirst };
  // Remembered: the origin was found not to speak TLS where plain is
  // allowed. PlainFirst: a loopback origin reached directly (VerifyOrPlain)
  // not found to speak TLS yet. Plain first there costs a TLS server one
  // round trip (it answers 400 or a redirect, or closes) and spares a plain
  // one OpenSSL's set-up and a handshake that fails. It accepts nothing TLS
  // first would not: a port speaks one or the other, and plain is taken
  // only from a server that answers plain. A listed insecure registry,
  // which may be across a network, is not tried this way, and a request
  // with credentials or a body never is (see Exchange::begin).
  Start startOf(const Url& url) {
    if (url.scheme != "https") return Start::Tls;
    const TlsMode mode = tlsMode(url);
    if (mode == TlsMode::Verify) return Start::Tls;
    std::lock_guard lock(mutex);
    const std::string origin = url.hostPort();
    if (plainOrigins.count(origin) > 0) return Start::Remembered;
    if (mode == TlsMode::VerifyOrPlain && tlsOrigins.count(origin) == 0) return Start::PlainFirst;
    return Start::Tls;
  }
  // Records what `url`'s origin speaks, and tells the options' callback
  // when that changed.
  void foundPlain(const Url& url, bool plain) {
    const std::string origin = url.hostPort();
    {
      std::lock_guard lock(mutex);
      if (plain) {
        tlsOrigins.erase(origin);
      } else {
        tlsOrigins.insert(origin);
      }
      const bool changed = plain ? plainOrigins.insert(origin).second : plainOrigins.erase(origin) > 0;
      if (!changed) return;
    }
    if (options.onPlainFound) options.onPlainFound(origin, plain);
  }

  // The proxy `url` goes through, or null when it goes direct.
  const Proxy* proxyFor(const Url& url) const {
    const auto& proxy = url.scheme == "https" ? options.proxy.https : options.proxy.http;
    if (!proxy || bypassProxy(options.proxy, url.host, url.port)) return nullptr;
    return &*proxy;
  }
  // Where a connection for `url` is pooled: a proxied one and a direct one
  // never mix.
  std::string poolKey(const Url& url) const {
    const Proxy* proxy = proxyFor(url);
    return proxy ? proxy->shown() + " " + url.origin() : url.origin();
  }

  std::shared_ptr<Connection> takeIdle(const std::string& origin) {
    std::lock_guard lock(mutex);
    auto it = idle.find(origin);
    if (it == idle.end() || it->second.empty()) return nullptr;
    auto connection = std::move(it->second.back());
    it->second.pop_back();
    connection->reused = true;
    connection->verifyFailure.clear();
    return connection;
  }

  // The next user of `connection` posts to its strand after taking it from
  // here, so the timer is reset before anything else runs there.
  void giveBack(std::shared_ptr<Connection> connection) {
    asio::post(connection->executor(), [connection] { connection->tcp().expires_never(); });
    std::lock_guard lock(mutex);
    auto& list = idle[connection->origin()];
    if (list.size() < options.maxIdlePerOrigin) list.push_back(std::move(connection));
  }

  Try<std::shared_ptr<Connection>> open(const Url& url) {
    auto strand = asio::make_strand(runtime.ioContext());
    if (url.scheme != "https") {
      ++opened;
      return std::shared_ptr<Connection>(std::make_shared<PlainConnection>(poolKey(url), strand));
    }
    auto context = trustContext();
    if (context.isError()) return context.error();
    ++opened;
    return std::shared_ptr<Connection>(std::make_shared<TlsConnection>(poolKey(url), strand, std::move(*context)));
  }

  // This client's TLS context, made (or found shared) the first time.
  Try<std::shared_ptr<TrustContext>> trustContext() {
    {
      std::lock_guard lock(mutex);
      if (trust) return trust;
    }
    auto shared = sharedTrustContext(options.extraCaFile);
    if (shared.isError()) return shared.error();
    std::lock_guard lock(mutex);
    if (!trust) trust = std::move(*shared);
    return trust;
  }
};

namespace {

// The part of `request` that holds a control character (a header, named;
// never its value), if one does.
std::optional<std::string> controlCharacterIn(const HttpRequest& request, const std::string& userAgent) {
  auto bad = [](std::string_view text) {
    return std::any_of(text.begin(), text.end(), [](unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; });
  };
  if (request.authorization && bad(*request.authorization)) return std::string("authorization");
  if (bad(userAgent)) return std::string("user agent");
  for (const auto& [name, value] : request.headers) {
    if (bad(name) || bad(value)) return "header '" + std::string(bad(name) ? "?" : name) + "'";
  }
  return std::nullopt;
}

// The request as sent to `url`, one hop of `request`: its authorization
// only to the origin the caller named. Through `proxy` (plain http only) in
// absolute form, with the proxy's credentials.
WireRequest wireRequest(const HttpRequest& request, const Url& url, const std::string& userAgent, const Proxy* proxy) {
  WireRequest wire;
  wire.method_string(request.method);
  wire.target(proxy ? url.toString() : url.target);
  if (proxy && !proxy->authorization.empty()) wire.set(bhttp::field::proxy_authorization, proxy->authorization);
  wire.version(11);
  const bool defaultPort = (url.scheme == "https" && url.port == 443) || (url.scheme == "http" && url.port == 80);
  wire.set(bhttp::field::host, defaultPort ? url.hostForUrl() : url.hostPort());
  wire.set(bhttp::field::user_agent, userAgent);
  for (const auto& [name, value] : request.headers) wire.set(name, value);
  if (request.authorization && sameOrigin(url, request.url)) {
    wire.set(bhttp::field::authorization, *request.authorization);
  }
  if (!request.body.empty() && sameOrigin(url, request.url)) {
    wire.body() = request.body;
    wire.prepare_payload();
  }
  return wire;
}

// Status and headers (names lowercased, repeats joined by ", ").
HttpResponse responseHead(const Parser& parser, const Url& url, bool redirected) {
  HttpResponse response;
  response.status = static_cast<int>(parser.get().result_int());
  for (const auto& field : parser.get()) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    auto [it, inserted] = response.headers.emplace(name, std::string(field.value()));
    if (!inserted) it->second += ", " + std::string(field.value());
  }
  response.url = url;
  response.followedRedirect = redirected;
  return response;
}

bool isRedirect(const HttpResponse& response) {
  const int s = response.status;
  return (s == 301 || s == 302 || s == 303 || s == 307 || s == 308) && !response.header("location").empty();
}

// Whether a failed TLS handshake means the server speaks something else
// (a plain HTTP server answers a ClientHello with an HTTP 400).
bool notTls(error_code ec) {
  if (ec.category() != asio::error::get_ssl_category()) return false;
  const int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
  return reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG || reason == SSL_R_HTTP_REQUEST;
}

// A failed socket operation, as the caller sees it; `verifyFailure`: why
// the peer's certificate was refused, if it was.
Error ioError(error_code ec, const std::string& what, const Url& url, const std::string& verifyFailure = {}) {
  ErrorKind kind = ErrorKind::Unavailable;
  std::string cause = ec.message();
  if (!verifyFailure.empty()) {
    cause = "the server's certificate failed verification: " + verifyFailure +
            " (a private CA is given with --docker_registry_ca)";
  }
  if (ec == beast::error::timeout) {
    kind = ErrorKind::Timeout;
    cause = "timed out";
  }
  if (ec.category() == asio::error::get_ssl_category()) kind = ErrorKind::IO;
  if (ec == bhttp::error::partial_message) cause = "the connection closed before the end of the body";
  return Error(kind, "Failed to " + what + " '" + shown(url) + "': " + cause);
}

// Counts a body's time on the wire: over every `window` of it, the
// transfer must average `minBytesPerSecond` (a trickle is a stall). Time
// the sink spends is not counted.
class StallMeter {
 public:
  StallMeter(std::chrono::milliseconds window, std::size_t minBytesPerSecond)
      : window_(window), minBytesPerSecond_(minBytesPerSecond) {}

  void reset() {
    onWire_ = {};
    bytes_ = 0;
  }
  // Around each read on the socket.
  void reading() { since_ = std::chrono::steady_clock::now(); }
  void stopped() { onWire_ += std::chrono::steady_clock::now() - since_; }
  // `got` bytes came in the last read. Empty while the rate holds, else the
  // rate it fell to ("N bytes in M ms").
  std::optional<std::string> read(std::size_t got) {
    bytes_ += got;
    if (onWire_ < window_) return std::nullopt;
    const double seconds = std::chrono::duration<double>(onWire_).count();
    const bool stalled = static_cast<double>(bytes_) < seconds * static_cast<double>(minBytesPerSecond_);
    std::string rate = std::to_string(bytes_) + " bytes in " + std::to_string(static_cast<long>(seconds * 1000)) +
                       " ms";
    reset();
    if (stalled) return rate;
    return std::nullopt;
  }

 private:
  const std::chrono::steady_clock::duration window_;
  const std::size_t minBytesPerSecond_;
  std::chrono::steady_clock::time_point since_;
  std::chrono::steady_clock::duration onWire_{};
  std::size_t bytes_ = 0;
};

// One request, its redirects included, from the first byte sent to the last
// byte of the response delivered.
//
// Threads: the exchange's state lives on its own strand (strand_). Each
// operation on a connection (a Beast read or write with its timeout, a
// close, giving it back) runs on that connection's strand, and its result
// comes back here as a named step (onConnection). A discard and a sink's
// completed write reach the exchange by posting here too. So the exchange
// shares nothing between threads and takes no lock; the idle pool in
// HttpClient::Impl is the one shared thing.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(std::shared_ptr<HttpClient::Impl> client, HttpRequest request, std::shared_ptr<BodySink> sink)
      : client_(std::move(client)), options_(client_->options), request_(std::move(request)), sink_(std::move(sink)),
        url_(request_.url), strand_(asio::make_strand(client_->runtime.ioContext())), resolver_(strand_),
        stall_(options_.stallWindow, options_.minBytesPerSecond) {
    // Left uninitialized: zeroing 2 x 256 KiB per request (and faulting
    // in every page) cost more than a small manifest's whole exchange.
    for (auto& chunk : chunks_) chunk = std::make_unique_for_overwrite<char[]>(options_.chunkBytes);
  }

  actors::Future<HttpResponse> start() {
    std::weak_ptr<Exchange> weak = shared_from_this();
    promise_.future().onDiscard([weak] {
      if (auto self = weak.lock()) asio::post(self->strand_, [self] { self->discarded(); });
    });
    auto future = promise_.future();
    asio::post(strand_, [self = shared_from_this()] { self->begin(); });
    return future;
  }

 private:
  using Step = void (Exchange::*)(error_code, std::size_t);

  // `operation` on the connection's strand within `timeout`, then `step` on
  // this one unless the exchange is over meanwhile. The operation may use
  // the members it is given: nothing here touches them until the step runs.
  void onConnection(std::chrono::milliseconds timeout, std::function<void(Connection&, Handler)> operation, Step step) {
    asio::post(connection_->executor(), [self = shared_from_this(), c = connection_, timeout, operation, step] {
      c->tcp().expires_after(timeout);
      operation(*c, [self, c, step](error_code ec, std::size_t n) {
        asio::post(self->strand_, [self, step, ec, n] {
          if (!self->over()) (self.get()->*step)(ec, n);
        });
      });
    });
  }

  // Discarded, failed (or failing once the sink's write is back), or done.
  bool over() const { return discarded_ || deferred_ || !promise_.future().isPending(); }

  void closeConnection() {
    if (!connection_) return;
    auto executor = connection_->executor();
    asio::post(executor, [c = std::move(connection_)] { c->close(); });
  }

  // The caller gave up: DISCARDED at once, even with a sink write in flight
  // (nobody retries into the sink then); what is in flight ends unheard.
  void discarded() {
    discarded_ = true;
    resolver_.cancel();
    closeConnection();
    if (promise_.future().isPending()) promise_.discard();
  }

  void begin() {
    if (discarded_) return;
    if (redirects_ == 0) {
      if (url_.scheme == "http" && !(options_.allowPlainHttp && options_.allowPlainHttp(url_.host, url_.port))) {
        return fail(Error(ErrorKind::InvalidArgument,
                          "Refused plain http to '" + shown(url_) + "': the registry is not configured as insecure"));
      }
      // An origin found before not to speak TLS, where that is allowed, or
      // a loopback one not known to speak it: over plain http first. Not a
      // request with credentials or a body (a token request to a realm)
      // while the origin is not known: those try TLS first, as before.
      const auto start = client_->startOf(url_);
      const bool bare = !request_.authorization && request_.body.empty();
      if (start == HttpClient::Impl::Start::Remembered || (start == HttpClient::Impl::Start::PlainFirst && bare)) {
        toPlain();
        viaMemory_ = true;
        firstTry_ = start == HttpClient::Impl::Start::PlainFirst;
      }
    }
    if (auto part = controlCharacterIn(request_, options_.userAgent)) {
      return fail(Error(ErrorKind::InvalidArgument,
                        "Refused the request to '" + shown(url_) + "': its " + *part + " holds a control character"));
    }
    connection_ = client_->takeIdle(client_->poolKey(url_));
    connection_ ? send() : openFresh();
  }

  // A new connection to url_'s origin, or to the proxy it goes through.
  void openFresh() {
    auto opened = client_->open(url_);
    if (opened.isError()) return fail(opened.error());
    connection_ = std::move(*opened);
    auto step = [self = shared_from_this()](error_code ec, tcp::resolver::results_type results) {
      if (self->over()) return;
      if (ec) return self->failIo(ec, self->via("resolve"));
      std::vector<tcp::endpoint> endpoints;
      for (const auto& entry : results) endpoints.push_back(entry.endpoint());
      self->connect(std::move(endpoints));
    };
    const Proxy* proxy = client_->proxyFor(url_);
    const std::string& host = proxy ? proxy->host : url_.host;
    const int port = proxy ? proxy->port : url_.port;
    // An address needs no resolving: getaddrinfo would only hand it back,
    // from the resolver's own thread (started for it, in a short run).
    error_code notAnAddress;
    const auto address = asio::ip::make_address(host, notAnAddress);
    if (!notAnAddress) return connect({tcp::endpoint(address, static_cast<unsigned short>(port))});
    resolver_.async_resolve(host, std::to_string(port), asio::bind_executor(strand_, std::move(step)));
  }

  // `what` ("connect to") for a message about url_: through its proxy, the
  // proxy is named too ("connect to the proxy 'http://p:3128' for").
  std::string via(const std::string& what) const {
    const Proxy* proxy = client_->proxyFor(url_);
    return proxy ? what + " the proxy '" + proxy->shown() + "' for" : what;
  }

  void connect(std::vector<tcp::endpoint> resolved) {
    onConnection(
        options_.connectTimeout,
        [endpoints = std::make_shared<std::vector<tcp::endpoint>>(std::move(resolved))](Connection& c, Handler done) {
          if (endpoints->empty()) return done(asio::error::host_not_found, 0);
          c.connect(endpoints, 0, std::move(done));
        },
        &Exchange::connected);
  }

  void connected(error_code ec, std::size_t) {
    if (ec) return failIo(ec, via("connect to"));
    const Proxy* proxy = client_->proxyFor(url_);
    if (proxy && url_.scheme == "https") {
      return onConnection(
          options_.connectTimeout,
          [target = url_.hostPort(), authorization = proxy->authorization](Connection& c, Handler done) {
            c.tunnel(target, authorization, std::move(done));
          },
          &Exchange::tunneled);
    }
    handshake();
  }

  // Through a proxy, the CONNECT answered: TLS with the target from here.
  void tunneled(error_code ec, std::size_t) {
    const Proxy* proxy = client_->proxyFor(url_);
    const std::string what = "open a tunnel through the proxy '" + proxy->shown() + "' to";
    if (ec) return failIo(ec, what);
    const int status = connection_->tunnelStatus;
    if (status != 200) {
      closeConnection();
      return fail(proxyRefused(*proxy, status, what));
    }
    handshake();
  }

  // A proxy's answer other than a tunnel or a response: 401 (tinyproxy's
  // for wrong credentials) and 407 are Unauthorized, 403 Forbidden,
  // anything else Unavailable. The credentials are not named.
  Error proxyRefused(const Proxy& proxy, int status, const std::string& what) const {
    ErrorKind kind = ErrorKind::Unavailable;
    std::string hint;
    if (status == 401 || status == 407) {
      kind = ErrorKind::Unauthorized;
      hint = proxy.authorization.empty() ? " (it wants credentials: http://user:password@host:port)"
                                         : " (it refused the credentials in the proxy URL)";
    }
    if (status == 403) kind = ErrorKind::Forbidden;
    const std::string reason(bhttp::obsolete_reason(static_cast<bhttp::status>(status)));
    return Error(kind, "Failed to " + what + " '" + shown(url_) + "': the proxy answered " + std::to_string(status) +
                           (reason.empty() || reason == "<unknown-status>" ? "" : " " + reason) + hint);
  }

  void handshake() {
    onConnection(
        options_.connectTimeout,
        [host = url_.host, verify = client_->tlsMode(url_) != TlsMode::AnyCertOrPlain](Connection& c, Handler done) {
          c.handshake(host, verify, done);
        },
        &Exchange::secured);
  }

  void secured(error_code ec, std::size_t) {
    if (ec && redirects_ == 0 && notTls(ec) && client_->tlsMode(url_) != TlsMode::Verify) {
      // The server speaks plain http, where the rule allows it.
      client_->foundPlain(url_, true);
      closeConnection();
      toPlain();
      return openFresh();
    }
    if (ec) {
      const std::string why = connection_->verifyFailure;
      closeConnection();
      if (notTls(ec)) {
        return fail(Error(ErrorKind::IO, "Failed to set up TLS with '" + shown(url_) +
                                             "': the server does not speak TLS (plain http is used only for a "
                                             "loopback registry reached directly, or one listed as insecure)"));
      }
      return fail(ioError(ec, "set up TLS with", url_, why));
    }
    // Over TLS where plain http would be allowed: later requests skip the
    // plain try. (A plain connection passes here too, as a handshake of
    // nothing.)
    if (url_.scheme == "https" && redirects_ == 0 && client_->tlsMode(url_) != TlsMode::Verify) {
      client_->foundPlain(url_, false);
    }
    send();
  }

  // The first hop over plain http to the same host and port: the caller's
  // authorization goes with it (the same server, asked for the same thing).
  void toPlain() {
    url_.scheme = "http";
    request_.url.scheme = "http";
  }

  // A remembered plain origin that no longer is one, or a loopback one
  // tried plain first that speaks TLS: over TLS again.
  bool backToTls() {
    if (!viaMemory_ || redirects_ > 0) return false;
    viaMemory_ = false;
    firstTry_ = false;
    client_->foundPlain(url_, false);
    closeConnection();
    url_.scheme = "https";
    request_.url.scheme = "https";
    openFresh();
    return true;
  }

  void send() {
    // Only plain http goes to a proxy as a request; https went through
    // the tunnel.
    wire_ = wireRequest(request_, url_, options_.userAgent, url_.scheme == "http" ? client_->proxyFor(url_) : nullptr);
    buffer_.clear();
    // Beast reads as much as the buffer has room for: without room, a read
    // is a few KiB and the transfer crawls.
    buffer_.reserve(options_.chunkBytes);
    parser_.emplace();
    parser_->body_limit(boost::none);
    parser_->header_limit(64 * 1024);
    onConnection(
        options_.stallWindow, [this](Connection& c, Handler done) { c.write(wire_, std::move(done)); },
        &Exchange::sent);
  }

  void sent(error_code ec, std::size_t) {
    if (ec) return retryOrFail(ec, "send a request to");
    onConnection(
        options_.stallWindow, [this](Connection& c, Handler done) { c.readHeader(buffer_, *parser_, std::move(done)); },
        &Exchange::headRead);
  }

  // A reused connection the server closed meanwhile: once more on a new one.
  // A remembered plain origin that breaks a fresh connection: TLS again; a
  // first try also when it timed out (a TLS server waiting for the rest of
  // what it took for a record).
  void retryOrFail(error_code ec, const char* what) {
    if (!connection_->reused && (ec != beast::error::timeout || firstTry_) && backToTls()) return;
    if (!connection_->reused || ec == beast::error::timeout) return failIo(ec, what);
    closeConnection();
    openFresh();
  }

  void headRead(error_code ec, std::size_t) {
    if (ec) return retryOrFail(ec, "read a response from");
    response_ = responseHead(*parser_, url_, redirects_ > 0);
    // Only a proxy asks for proxy credentials: never the caller's answer.
    const Proxy* proxy = url_.scheme == "http" ? client_->proxyFor(url_) : nullptr;
    if (response_.status == 407 && proxy) {
      closeConnection();
      return fail(proxyRefused(*proxy, 407, "send a request through the proxy '" + proxy->shown() + "' to"));
    }
    // A TLS server answers a plain request with 400 (Go's says "Client sent
    // an HTTP request to an HTTPS server"), or, set up so, with a redirect
    // to https (nginx's error_page 497): a first try takes a redirect as
    // that too. (A plain registry whose blobs redirect costs one TLS
    // attempt, then is known plain.)
    if (response_.status == 400 && backToTls()) return;
    if (firstTry_ && isRedirect(response_) && backToTls()) return;
    // Any other answer over plain http: the origin speaks it (remembered,
    // and told once, when this was a first try).
    if (viaMemory_ && redirects_ == 0) client_->foundPlain(url_, true);
    if (isRedirect(response_)) {
      mode_ = Mode::Discard;
    } else if (sink_ && response_.status >= 200 && response_.status < 300) {
      if (auto started = sink_->start(response_); started.isError()) {
        closeConnection();
        return fail(started.error());
      }
      mode_ = Mode::Sink;
      const auto length = parser_->content_length();
      client_->bodyStarting(length ? std::optional<std::uint64_t>(*length) : std::nullopt);
    } else {
      // An error's body is kept only in part, as its explanation.
      const bool success = response_.status >= 200 && response_.status < 300;
      mode_ = Mode::Buffer;
      cap_ = success ? request_.maxBody : kErrorBodyCap;
      truncate_ = !success;
    }
    stall_.reset();
    reading_ = 0;
    filled_ = 0;
    startRawBody();
    readBody();
  }

  // A sink's body of known length is read straight into the chunks, past
  // Beast's parser, which reads at most 64 KiB at a time into buffer_ and
  // then copies it out (issue #18: for a 1 GiB layer, 16,000 reads, each
  // with its timer and hand-offs, and a copy of every byte). What came in
  // with the header is taken from buffer_ first (readRawBody). A chunked
  // body (or one that ends with the connection) stays with the parser.
  void startRawBody() {
    rawLeft_.reset();
    const auto length = parser_->content_length();
    if (mode_ != Mode::Sink || parser_->is_done() || parser_->chunked() || !length) return;
    rawLeft_ = *length;
  }

  void readBody() {
    if (rawLeft_) return readRawBody();
    if (parser_->is_done()) return deliver(true);
    onConnection(
        options_.stallWindow,
        [this](Connection& c, Handler done) {
          auto& body = parser_->get().body();
          body.data = chunks_[reading_].get() + filled_;
          body.size = options_.chunkBytes - filled_;
          stall_.reading();
          c.readSome(buffer_, *parser_, [this, done](error_code ec, std::size_t n) {
            stall_.stopped();
            done(ec, n);
          });
        },
        &Exchange::bodyRead);
  }

  void bodyRead(error_code ec, std::size_t) {
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) return failIo(ec, "read the body from");
    const std::size_t got = options_.chunkBytes - filled_ - parser_->get().body().size;
    filled_ += got;
    if (auto rate = stall_.read(got)) {
      closeConnection();
      return fail(
          Error(ErrorKind::Timeout, "Failed to download '" + shown(url_) + "': the transfer stalled (" + *rate + ")"));
    }
    if (filled_ == options_.chunkBytes || parser_->is_done()) return deliver(parser_->is_done());
    readBody();
  }

  void readRawBody() {
    if (*rawLeft_ == 0 || filled_ == options_.chunkBytes) return deliver(*rawLeft_ == 0);
    // Bytes that came with the header.
    if (buffer_.size() > 0) {
      const std::size_t n = std::min({buffer_.size(), options_.chunkBytes - filled_,
                                      static_cast<std::size_t>(std::min<std::uint64_t>(*rawLeft_, SIZE_MAX))});
      std::memcpy(chunks_[reading_].get() + filled_, buffer_.data().data(), n);
      buffer_.consume(n);
      return rawRead({}, n);
    }
    onConnection(
        options_.stallWindow,
        [this](Connection& c, Handler done) {
          const std::size_t room = static_cast<std::size_t>(
              std::min<std::uint64_t>(options_.chunkBytes - filled_, *rawLeft_));
          stall_.reading();
          c.readRaw(asio::buffer(chunks_[reading_].get() + filled_, room), [this, done](error_code ec, std::size_t n) {
            stall_.stopped();
            done(ec, n);
          });
        },
        &Exchange::rawRead);
  }

  void rawRead(error_code ec, std::size_t n) {
    filled_ += n;
    *rawLeft_ -= n;
    // The peer closed before the length it announced: as the parser says it.
    if (ec == asio::error::eof || ec == ssl::error::stream_truncated) ec = bhttp::error::partial_message;
    if (ec) return failIo(ec, "read the body from");
    if (auto rate = stall_.read(n)) {
      closeConnection();
      return fail(
          Error(ErrorKind::Timeout, "Failed to download '" + shown(url_) + "': the transfer stalled (" + *rate + ")"));
    }
    readBody();
  }

  // Hands the filled part of the chunk on; continues reading or finishes.
  // To a sink: two chunks alternate, so the socket is read into one while
  // the sink works on the other; at most one sink write is in flight, and a
  // chunk is read into again only after its write completed.
  void deliver(bool last) {
    const std::size_t n = std::exchange(filled_, 0);
    if (mode_ == Mode::Discard && !last) {
      // A redirect's body is not read past a chunk or so: a server may
      // send one without end.
      skipped_ += n;
      if (skipped_ > kErrorBodyCap) {
        closeConnection();
        return redirect();
      }
    }
    if (mode_ == Mode::Sink) {
      const Handed handed{reading_, n, last};
      reading_ ^= 1;
      if (writing_) {
        pending_ = handed;  // both chunks busy: reading waits for the write
        return;
      }
      startWrite(handed);
      if (!last) readBody();
      return;
    }
    if (mode_ == Mode::Buffer) {
      const std::size_t room = cap_ - std::min(cap_, response_.body.size());
      if (n > room && !truncate_) {
        closeConnection();
        return fail(Error(ErrorKind::ResourceExhausted, "Failed to fetch '" + shown(url_) +
                                                            "': the response is larger than " + std::to_string(cap_) +
                                                            " bytes"));
      }
      response_.body.append(chunks_[0].get(), std::min(n, room));
      if (n > room) {  // an error body we keep only the start of
        closeConnection();
        promise_.set(std::move(response_));
        return;
      }
    }
    last ? finish() : readBody();
  }

  struct Handed {
    int chunk;
    std::size_t bytes;
    bool last;
  };

  void startWrite(const Handed& handed) {
    writing_ = true;
    actors::Future<Nothing> written = handed.bytes == 0
                                          ? actors::Future<Nothing>(Nothing{})
                                          : sink_->write(std::string_view(chunks_[handed.chunk].get(), handed.bytes));
    // A sink that discards or abandons its future went away.
    auto back = [self = shared_from_this(), handed](std::optional<Error> failure) {
      asio::post(self->strand_, [self, handed, failure] { self->written(handed, failure); });
    };
    const Error gone(ErrorKind::Cancelled, "The body consumer went away");
    written.onAny([back, gone](const actors::Future<Nothing>& w) {
      if (w.isReady()) return back(std::nullopt);
      back(w.isFailed() ? w.failure() : gone);
    });
    written.onAbandoned([back, gone] { back(gone); });
  }

  void written(const Handed& handed, const std::optional<Error>& failure) {
    writing_ = false;
    if (deferred_) return fail(*deferred_);
    if (!promise_.future().isPending()) return;  // discarded meanwhile
    if (failure) {
      closeConnection();
      return fail(*failure);
    }
    if (handed.last) return finish();
    if (pending_) {
      const Handed next = *std::exchange(pending_, std::nullopt);
      startWrite(next);
      if (!next.last) readBody();  // into the chunk whose write just completed
    }
  }

  void finish() {
    // Bytes past the response's end (read already, or waiting in the
    // socket): the server sent more than it said, and what is still to
    // come would be read as the answer to the next request on this
    // connection. It is closed instead.
    // (Nothing runs on the connection now: its last read's completion
    // came here through the strands, so asking it from here is safe.)
    if (parser_->keep_alive() && buffer_.size() == 0 && !connection_->readable()) {
      client_->giveBack(std::move(connection_));
    } else {
      closeConnection();
    }
    if (mode_ == Mode::Discard) return redirect();
    promise_.set(std::move(response_));
  }

  void redirect() {
    if (++redirects_ > options_.maxRedirects) {
      return fail(Error(ErrorKind::Unavailable, "Failed to fetch '" + shown(request_.url) + "': more than " +
                                                    std::to_string(options_.maxRedirects) + " redirects"));
    }
    auto next = resolveRedirect(url_, response_.header("location"));
    if (next.isError()) return fail(next.error().withContext("Failed to follow a redirect from '" + shown(url_) + "'"));
    // https never becomes http; http stays http (the first hop was allowed).
    if (url_.scheme == "https" && next->scheme == "http") {
      return fail(Error(ErrorKind::InvalidArgument,
                        "Refused a redirect from '" + shown(url_) + "' to plain http '" + shown(*next) + "'"));
    }
    url_ = std::move(*next);
    begin();
  }

  void failIo(error_code ec, const std::string& what) {
    closeConnection();
    fail(ioError(ec, what, url_));
  }

  // Never completes while a sink write is in flight: the caller may retry
  // into the same sink, which must not see two writers.
  void fail(const Error& error) {
    if (writing_) {
      if (!deferred_) deferred_ = error;
      return;
    }
    if (!promise_.future().isPending()) return;
    if (promise_.future().hasDiscard()) {
      promise_.discard();
    } else {
      promise_.fail(error);
    }
  }

  enum class Mode { Sink, Buffer, Discard };

  // The request, and where it stands.
  const std::shared_ptr<HttpClient::Impl> client_;
  const HttpOptions& options_;
  HttpRequest request_;  // its url's scheme changes only with toPlain() and backToTls()
  const std::shared_ptr<BodySink> sink_;
  Url url_;
  int redirects_ = 0;
  bool discarded_ = false;
  bool viaMemory_ = false;  // plain http tried first: the origin remembered as plain, or loopback
  bool firstTry_ = false;   // that loopback first try, its origin not known to speak plain
  actors::Promise<HttpResponse> promise_;
  asio::strand<asio::io_context::executor_type> strand_;
  // The connection and what goes over it: its strand uses these while an
  // operation runs, this one in between.
  std::shared_ptr<Connection> connection_;
  tcp::resolver resolver_;
  WireRequest wire_;
  beast::flat_buffer buffer_;
  std::optional<Parser> parser_;
  // The response, and its body on its way.
  HttpResponse response_;
  Mode mode_ = Mode::Buffer;
  std::size_t cap_ = 0;
  bool truncate_ = false;
  std::size_t skipped_ = 0;            // body bytes of redirects read and dropped
  std::unique_ptr<char[]> chunks_[2];  // options_.chunkBytes each
  int reading_ = 0;                    // the chunk the socket is read into
  std::size_t filled_ = 0;
  std::optional<std::uint64_t> rawLeft_;  // a body read raw: its bytes still to come
  bool writing_ = false;
  std::optional<Handed> pending_;
  std::optional<Error> deferred_;  // a failure waiting for the write in flight
  StallMeter stall_;
};

}  // namespace

std::string HttpResponse::header(const std::string& lowercaseName) const {
  auto it = headers.find(lowercaseName);
  return it == headers.end() ? std::string() : it->second;
}

Try<std::shared_ptr<HttpClient>> HttpClient::create(actors::Runtime& runtime, HttpOptions options) {
  auto impl = std::make_shared<Impl>(runtime, std::move(options));
  // The CAs are parsed at the first TLS connection; a bundle that cannot
  // be read is named now.
  if (!impl->options.extraCaFile.empty() &&
      ::faccessat(AT_FDCWD, impl->options.extraCaFile.c_str(), R_OK, AT_EACCESS) != 0) {
    return Error(ErrorKind::IO,
                 "Failed to load the CA bundle '" + impl->options.extraCaFile + "': " + std::strerror(errno));
  }
  for (const auto* proxy : {&impl->options.proxy.http, &impl->options.proxy.https}) {
    if (!*proxy) continue;
    const auto& p = **proxy;
    if (p.host.empty() || p.port <= 0 || p.port > 65535) {
      return Error(ErrorKind::InvalidArgument, "Invalid proxy '" + p.shown() + "': it needs a host and a port");
    }
    const bool control = std::any_of(p.authorization.begin(), p.authorization.end(),
                                     [](unsigned char c) { return c < 0x20 || c == 0x7f; });
    if (control) {
      return Error(ErrorKind::InvalidArgument,
                   "Invalid proxy '" + p.shown() + "': its credentials hold a control character");
    }
  }
  return std::shared_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

HttpClient::HttpClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpClient::~HttpClient() {
  std::lock_guard lock(impl_->mutex);
  for (auto& [origin, list] : impl_->idle) {
    for (auto& connection : list) asio::post(connection->executor(), [connection] { connection->close(); });
  }
  impl_->idle.clear();
}

actors::Future<HttpResponse> HttpClient::fetch(HttpRequest request) {
  return std::make_shared<Exchange>(impl_, std::move(request), nullptr)->start();
}

actors::Future<HttpResponse> HttpClient::stream(HttpRequest request, std::shared_ptr<BodySink> sink) {
  return std::make_shared<Exchange>(impl_, std::move(request), std::move(sink))->start();
}

void HttpClient::prepareTls() {
  (void)actors::async(impl_->runtime, [impl = impl_] { (void)impl->trustContext(); });
}

bool HttpClient::reachesPlain(const Url& url) const {
  return url.scheme == "http" || impl_->startOf(url) != Impl::Start::Tls;
}

std::size_t HttpClient::connectionsOpened() const { return impl_->opened.load(); }

}  // namespace prov::fetcher
