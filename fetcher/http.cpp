#include "fetcher/http.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <mutex>

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
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "actors/runtime.hpp"

namespace prov::fetcher {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Parser = bhttp::response_parser<bhttp::buffer_body>;
using WireRequest = bhttp::request<bhttp::empty_body>;
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
  virtual void handshake(const std::string& host, std::function<void(error_code)> done) = 0;
  virtual void write(WireRequest& request, Handler done) = 0;
  virtual void readHeader(beast::flat_buffer& buffer, Parser& parser, Handler done) = 0;
  virtual void readSome(beast::flat_buffer& buffer, Parser& parser, Handler done) = 0;

  const std::string& origin() const { return origin_; }
  asio::any_io_executor executor() { return tcp().get_executor(); }
  void close() {
    error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }
  bool reused = false;

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

 protected:
  Stream stream_;
};

class PlainConnection final : public StreamConnection<beast::tcp_stream> {
 public:
  PlainConnection(std::string origin, asio::any_io_executor strand) : StreamConnection(std::move(origin), strand) {}
  void handshake(const std::string&, std::function<void(error_code)> done) override { done({}); }
};

class TlsConnection final : public StreamConnection<beast::ssl_stream<beast::tcp_stream>> {
 public:
  TlsConnection(std::string origin, asio::any_io_executor strand, ssl::context& context)
      : StreamConnection(std::move(origin), strand, context) {}
  void handshake(const std::string& host, std::function<void(error_code)> done) override {
    // SNI, then the peer's chain against our CAs and its name against `host`.
    if (!SSL_set_tlsext_host_name(stream_.native_handle(), host.c_str())) {
      done(error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()));
      return;
    }
    stream_.set_verify_mode(ssl::verify_peer);
    stream_.set_verify_callback(ssl::host_name_verification(host));
    stream_.async_handshake(ssl::stream_base::client, std::move(done));
  }
};

}  // namespace

struct HttpClient::Impl : std::enable_shared_from_this<HttpClient::Impl> {
  actors::Runtime& runtime;
  HttpOptions options;
  ssl::context tls{ssl::context::tls_client};
  std::mutex mutex;
  std::map<std::string, std::vector<std::shared_ptr<Connection>>> idle;
  std::atomic<std::size_t> opened{0};

  Impl(actors::Runtime& r, HttpOptions o) : runtime(r), options(std::move(o)) {}

  std::shared_ptr<Connection> takeIdle(const std::string& origin) {
    std::lock_guard lock(mutex);
    auto it = idle.find(origin);
    if (it == idle.end() || it->second.empty()) return nullptr;
    auto connection = std::move(it->second.back());
    it->second.pop_back();
    connection->reused = true;
    return connection;
  }

  void giveBack(std::shared_ptr<Connection> connection) {
    connection->tcp().expires_never();
    std::lock_guard lock(mutex);
    auto& list = idle[connection->origin()];
    if (list.size() < options.maxIdlePerOrigin) list.push_back(std::move(connection));
  }

  std::shared_ptr<Connection> open(const Url& url) {
    ++opened;
    auto strand = asio::make_strand(runtime.ioContext());
    if (url.scheme == "https") return std::make_shared<TlsConnection>(url.origin(), strand, tls);
    return std::make_shared<PlainConnection>(url.origin(), strand);
  }
};

namespace {

// One request, its redirects included, from the first byte sent to the last
// byte of the response delivered. Runs on the strand of its connection.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(std::shared_ptr<HttpClient::Impl> client, HttpRequest request, std::shared_ptr<BodySink> sink)
      : client_(std::move(client)), request_(std::move(request)), sink_(std::move(sink)),
        url_(request_.url) {
    for (auto& chunk : chunks_) chunk.resize(client_->options.chunkBytes);
  }

  actors::Future<HttpResponse> start() {
    auto self = shared_from_this();
    promise_.future().onDiscard([self] {
      auto connection = self->connectionForDiscard();
      if (connection) asio::post(connection->executor(), [self, connection] { self->discarded(connection); });
    });
    begin();
    return promise_.future();
  }

 private:
  std::shared_ptr<Connection> connectionForDiscard() {
    std::lock_guard lock(mutex_);
    discardRequested_ = true;
    return connection_;
  }

  void discarded(const std::shared_ptr<Connection>& connection) {
    connection->close();
    promise_.discard();
  }

  void setConnection(std::shared_ptr<Connection> connection) {
    bool discard;
    {
      std::lock_guard lock(mutex_);
      connection_ = std::move(connection);
      discard = discardRequested_;
    }
    if (discard) asio::post(connection_->executor(), [self = shared_from_this(), c = connection_] { self->discarded(c); });
  }

  void begin() {
    if (url_.scheme == "http" &&
        !(client_->options.allowPlainHttp && client_->options.allowPlainHttp(url_.host, url_.port))) {
      fail(Error(ErrorKind::InvalidArgument, "Refused plain http to '" + shown(url_) +
                                                 "': the registry is not configured as insecure"));
      return;
    }
    if (auto pooled = client_->takeIdle(url_.origin())) {
      setConnection(std::move(pooled));
      asio::post(connection_->executor(), [self = shared_from_this()] { self->send(); });
      return;
    }
    openFresh();
  }

  void openFresh() {
    setConnection(client_->open(url_));
    resolver_.emplace(connection_->executor());
    connection_->tcp().expires_after(client_->options.connectTimeout);
    auto self = shared_from_this();
    asio::post(connection_->executor(), [self] {
      self->resolver_->async_resolve(self->url_.host, std::to_string(self->url_.port),
                                     [self](error_code ec, tcp::resolver::results_type results) {
                                       self->onResolve(ec, std::move(results));
                                     });
    });
  }

  void onResolve(error_code ec, tcp::resolver::results_type results) {
    if (ec) return failIo(ec, "resolve");
    connection_->tcp().expires_after(client_->options.connectTimeout);
    auto self = shared_from_this();
    connection_->tcp().async_connect(results, [self](error_code e, const tcp::endpoint&) { self->onConnect(e); });
  }

  void onConnect(error_code ec) {
    if (ec) return failIo(ec, "connect to");
    connection_->tcp().expires_after(client_->options.connectTimeout);
    auto self = shared_from_this();
    connection_->handshake(url_.host, [self](error_code e) {
      if (e) return self->failIo(e, "set up TLS with");
      self->send();
    });
  }

  void send() {
    wire_ = WireRequest{};
    wire_.method_string(request_.method);
    wire_.target(url_.target);
    wire_.version(11);
    const bool defaultPort = (url_.scheme == "https" && url_.port == 443) || (url_.scheme == "http" && url_.port == 80);
    wire_.set(bhttp::field::host, defaultPort ? url_.host : url_.host + ":" + std::to_string(url_.port));
    wire_.set(bhttp::field::user_agent, client_->options.userAgent);
    for (const auto& [name, value] : request_.headers) wire_.set(name, value);
    if (request_.authorization && sameOrigin(url_, request_.url)) {
      wire_.set(bhttp::field::authorization, *request_.authorization);
    }
    buffer_.clear();
    // Beast reads as much as the buffer has room for: without room, a read
    // is a few KiB and the transfer crawls.
    buffer_.reserve(client_->options.chunkBytes);
    parser_.emplace();
    parser_->body_limit(boost::none);
    parser_->header_limit(64 * 1024);
    connection_->tcp().expires_after(client_->options.stallWindow);
    auto self = shared_from_this();
    connection_->write(wire_, [self](error_code ec, std::size_t) {
      if (ec) return self->failOrReconnect(ec, "send a request to");
      self->connection_->tcp().expires_after(self->client_->options.stallWindow);
      self->connection_->readHeader(self->buffer_, *self->parser_,
                                    [self](error_code e, std::size_t) { self->onHeader(e); });
    });
  }

  // A reused connection the server closed meanwhile: try once more on a new one.
  void failOrReconnect(error_code ec, const char* what) {
    if (connection_->reused && ec != beast::error::timeout) {
      connection_->close();
      openFresh();
      return;
    }
    failIo(ec, what);
  }

  void onHeader(error_code ec) {
    if (ec) return failOrReconnect(ec, "read a response from");
    const auto& head = parser_->get();
    HttpResponse response;
    response.status = static_cast<int>(head.result_int());
    for (const auto& field : head) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      auto [it, inserted] = response.headers.emplace(name, std::string(field.value()));
      if (!inserted) it->second += ", " + std::string(field.value());
    }
    response.url = url_;
    response.followedRedirect = redirects_ > 0;
    response_ = std::move(response);

    const int status = response_.status;
    const bool redirect = status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
    if (redirect && !response_.header("location").empty()) {
      mode_ = Mode::Discard;
    } else if (sink_ && status >= 200 && status < 300) {
      if (auto started = sink_->start(response_); started.isError()) {
        connection_->close();
        return fail(started.error());
      }
      mode_ = Mode::Sink;
    } else {
      mode_ = Mode::Buffer;
      cap_ = sink_ ? kErrorBodyCap : request_.maxBody;
      truncate_ = sink_ != nullptr;
    }
    socketTime_ = {};
    windowBytes_ = 0;
    filled_ = 0;
    readBody();
  }

  void readBody() {
    if (parser_->is_done()) return deliver(true);
    auto& body = parser_->get().body();
    body.data = chunks_[reading_].data() + filled_;
    body.size = chunks_[reading_].size() - filled_;
    connection_->tcp().expires_after(client_->options.stallWindow);
    readStart_ = std::chrono::steady_clock::now();
    auto self = shared_from_this();
    connection_->readSome(buffer_, *parser_, [self](error_code ec, std::size_t) { self->onBody(ec); });
  }

  void onBody(error_code ec) {
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) return failIo(ec, "read the body from");
    const std::size_t got = chunks_[reading_].size() - filled_ - parser_->get().body().size;
    filled_ += got;
    socketTime_ += std::chrono::steady_clock::now() - readStart_;
    windowBytes_ += got;
    const auto window = client_->options.stallWindow;
    if (socketTime_ >= window) {
      const double seconds = std::chrono::duration<double>(socketTime_).count();
      if (static_cast<double>(windowBytes_) < seconds * static_cast<double>(client_->options.minBytesPerSecond)) {
        connection_->close();
        return fail(Error(ErrorKind::Timeout, "Failed to download '" + shown(url_) + "': the transfer stalled (" +
                                                  std::to_string(windowBytes_) + " bytes in " +
                                                  std::to_string(static_cast<long>(seconds * 1000)) + " ms)"));
      }
      socketTime_ = {};
      windowBytes_ = 0;
    }
    if (filled_ == chunks_[reading_].size() || parser_->is_done()) return deliver(parser_->is_done());
    readBody();
  }

  // Hands the filled part of the chunk on; continues reading or finishes.
  // To a sink: two chunks alternate, so the socket is read into one while
  // the sink works on the other; at most one sink write is in flight, and a
  // chunk is read into again only after its write completed.
  void deliver(bool last) {
    const std::size_t n = filled_;
    filled_ = 0;
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
        connection_->close();
        return fail(Error(ErrorKind::ResourceExhausted, "Failed to fetch '" + shown(url_) +
                                                            "': the response is larger than " +
                                                            std::to_string(cap_) + " bytes"));
      }
      response_.body.append(chunks_[0].data(), std::min(n, room));
      reading_ = 0;
      if (n > room) {  // an error body we keep only the start of
        connection_->close();
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
    auto self = shared_from_this();
    actors::Future<Nothing> written =
        handed.bytes == 0 ? actors::Future<Nothing>(Nothing{})
                          : sink_->write(std::string_view(chunks_[handed.chunk].data(), handed.bytes));
    written.onAny([self, handed](const actors::Future<Nothing>& w) {
      asio::post(self->connection_->executor(), [self, handed, w] { self->onWritten(handed, w); });
    });
  }

  void onWritten(const Handed& handed, const actors::Future<Nothing>& written) {
    writing_ = false;
    if (deferred_) return fail(*deferred_);
    if (!promise_.future().isPending()) return;  // discarded meanwhile
    if (!written.isReady()) {
      connection_->close();
      return fail(written.isFailed() ? written.failure() : Error(ErrorKind::Cancelled, "The body consumer went away"));
    }
    if (handed.last) return finish();
    if (pending_) {
      const Handed next = *pending_;
      pending_.reset();
      startWrite(next);
      if (!next.last) readBody();  // into the chunk whose write just completed
    }
  }

  void finish() {
    if (parser_->keep_alive()) {
      client_->giveBack(connection_);
    } else {
      connection_->close();
    }
    if (mode_ == Mode::Discard) return redirect();
    promise_.set(std::move(response_));
  }

  void redirect() {
    if (++redirects_ > client_->options.maxRedirects) {
      return fail(Error(ErrorKind::Unavailable, "Failed to fetch '" + shown(request_.url) + "': more than " +
                                                    std::to_string(client_->options.maxRedirects) + " redirects"));
    }
    auto next = resolveRedirect(url_, response_.header("location"));
    if (next.isError()) return fail(next.error().withContext("Failed to follow a redirect from '" + shown(url_) + "'"));
    if (url_.scheme == "https" && next->scheme == "http" &&
        !(client_->options.allowPlainHttp && client_->options.allowPlainHttp(next->host, next->port))) {
      return fail(Error(ErrorKind::InvalidArgument,
                        "Refused a redirect from '" + shown(url_) + "' to plain http '" + shown(*next) + "'"));
    }
    url_ = std::move(*next);
    begin();
  }

  void failIo(error_code ec, const std::string& what) {
    if (connection_) connection_->close();
    ErrorKind kind = ErrorKind::Unavailable;
    if (ec == beast::error::timeout) kind = ErrorKind::Timeout;
    if (ec.category() == asio::error::get_ssl_category()) kind = ErrorKind::IO;
    std::string cause = ec.message();
    if (ec == beast::error::timeout) cause = "timed out";
    if (ec == bhttp::error::partial_message) cause = "the connection closed before the end of the body";
    fail(Error(kind, "Failed to " + what + " '" + shown(url_) + "': " + cause));
  }

  // Never completes while a sink write is in flight: the caller may retry
  // into the same sink, which must not see two writers.
  void fail(const Error& error) {
    if (writing_) {
      if (!deferred_) deferred_ = error;
      return;
    }
    if (promise_.future().hasDiscard()) {
      promise_.discard();
      return;
    }
    promise_.fail(error);
  }

  enum class Mode { Sink, Buffer, Discard };

  std::shared_ptr<HttpClient::Impl> client_;
  HttpRequest request_;
  std::shared_ptr<BodySink> sink_;
  Url url_;
  actors::Promise<HttpResponse> promise_;
  std::mutex mutex_;
  bool discardRequested_ = false;
  std::shared_ptr<Connection> connection_;
  std::optional<tcp::resolver> resolver_;
  WireRequest wire_;
  beast::flat_buffer buffer_;
  std::optional<Parser> parser_;
  std::vector<char> chunks_[2];
  int reading_ = 0;  // the chunk the socket is read into
  std::size_t filled_ = 0;
  bool writing_ = false;
  std::optional<Handed> pending_;
  std::optional<Error> deferred_;  // a failure waiting for the write in flight
  HttpResponse response_;
  Mode mode_ = Mode::Buffer;
  std::size_t cap_ = 0;
  bool truncate_ = false;
  int redirects_ = 0;
  std::chrono::steady_clock::time_point readStart_;
  std::chrono::steady_clock::duration socketTime_{};
  std::size_t windowBytes_ = 0;
};

}  // namespace

std::string HttpResponse::header(const std::string& lowercaseName) const {
  auto it = headers.find(lowercaseName);
  return it == headers.end() ? std::string() : it->second;
}

Try<std::shared_ptr<HttpClient>> HttpClient::create(actors::Runtime& runtime, HttpOptions options) {
  auto impl = std::make_shared<Impl>(runtime, std::move(options));
  error_code ec;
  impl->tls.set_default_verify_paths(ec);
  if (ec) return Error(ErrorKind::IO, "Failed to load the system CA certificates: " + ec.message());
  if (!impl->options.extraCaFile.empty()) {
    impl->tls.load_verify_file(impl->options.extraCaFile, ec);
    if (ec) {
      return Error(ErrorKind::IO, "Failed to load the CA bundle '" + impl->options.extraCaFile + "': " + ec.message());
    }
  }
  impl->tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
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

std::size_t HttpClient::connectionsOpened() const { return impl_->opened.load(); }

}  // namespace prov::fetcher
