#include "tests/support/fake_registry.hpp"
#include <algorithm>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include "fetcher/auth.hpp"
#include "fetcher/digest.hpp"

namespace prov::testing {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 206: return "Partial Content";
    case 307: return "Temporary Redirect";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

struct Reply {
  int status = 200;
  std::map<std::string, std::string> headers;
  std::string body;
  std::size_t stopAfter = std::string::npos;  // close after this many body bytes
  int trickleMs = 0;
  std::string past = {};  // sent after the body, beyond its Content-Length, in the same write
};

std::string errorBody(const std::string& code) {
  return R"({"errors":[{"code":")" + code + R"(","message":"fake registry says )" + code + R"("}]})";
}

}  // namespace

struct FakeRegistry::Impl {
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::thread acceptThread;
  mutable std::mutex mutex;
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<tcp::socket>> sockets;
  bool stopping = false;
  int port = 0;
  std::string address = "127.0.0.1";
  std::string directory;                       // served for GETs nothing else answers
  int headStatus = 0;                          // HEAD answered with this when set
  std::optional<std::string> challengeParams;  // WWW-Authenticate's Bearer params, as given
  std::string tokenField = "token";
  bool forbidAnonymous = false;  // 403 (with the challenge) instead of 401 without credentials
  std::string refreshToken;      // POST /token with grant_type=refresh_token accepts this one

  std::map<std::string, std::string> blobs;
  std::map<std::string, std::string> files;  // target -> body (plain files, no auth)
  struct Manifest {
    std::string body, contentType, claimed;
  };
  std::map<std::string, Manifest> manifests;  // "repo@reference"

  enum class Auth { None, Bearer, Basic } auth = Auth::None;
  std::optional<std::pair<std::string, std::string>> user;
  int tokenUses = 0;
  int expiresIn = 60;
  int tokens = 0;
  std::map<std::string, int> usesLeft;  // "Bearer tok-N" -> remaining (or -1)

  std::deque<Fault> faults;
  std::string redirect;
  std::size_t dropAfter = 0;
  int dropTimes = 0;
  std::vector<std::string> dropOnly;  // targets containing one of these; all when empty

  bool dropping(const std::string& target) {
    if (dropTimes <= 0) return false;
    if (!dropOnly.empty() && std::none_of(dropOnly.begin(), dropOnly.end(),
                                          [&](const std::string& m) { return target.find(m) != std::string::npos; }))
      return false;
    --dropTimes;
    return true;
  }
  struct Hold {
    std::string match, awaited;
    std::size_t since = 0;  // requests of `awaited` before this one in `seen` do not count
  };
  std::vector<Hold> holds;
  std::condition_variable arrived;  // a request was recorded, or stopping

  bool ignoreRange = false;
  int trickleMs = 0;
  std::string pastBlobs;
  bool closeEach = false;

  std::vector<Seen> seen;
  std::size_t accepted = 0;

  void acceptLoop() {
    for (;;) {
      // accept4 with SOCK_CLOEXEC, not Asio's accept (plain accept(2)): a
      // descriptor audit in this process must never see a server socket
      // that is, for a moment, inheritable.
      const int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
      std::lock_guard lock(mutex);
      if (stopping) {
        if (fd >= 0) ::close(fd);
        return;
      }
      if (fd < 0) continue;
      auto socket = std::make_shared<tcp::socket>(ioc);
      boost::system::error_code ec;
      socket->assign(acceptor.local_endpoint().protocol(), fd, ec);
      if (ec) {
        ::close(fd);
        continue;
      }
      ++accepted;
      sockets.push_back(socket);
      threads.emplace_back([this, socket] { serve(*socket); });
    }
  }

  void serve(tcp::socket& socket) {
    boost::beast::flat_buffer buffer;
    for (;;) {
      bhttp::request<bhttp::string_body> request;
      boost::system::error_code ec;
      bhttp::read(socket, buffer, request, ec);
      if (ec && ec != bhttp::error::end_of_stream && ec != asio::error::eof && ec != asio::error::connection_reset) {
        // Not HTTP (a TLS ClientHello, say): answered as Go's and nginx's
        // servers answer it.
        ++notHttp;
        static const std::string kBad = "HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        boost::system::error_code ignored;
        asio::write(socket, asio::buffer(kBad), ignored);
      }
      if (ec) break;
      Reply reply = handle(request);
      if (!send(socket, reply)) break;
      std::lock_guard lock(mutex);
      if (closeEach || stopping) break;
    }
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
  }

  std::atomic<std::size_t> bodyBytesSent{0};
  std::atomic<std::size_t> notHttp{0};

  bool send(tcp::socket& socket, const Reply& reply) {
    std::string head = "HTTP/1.1 " + std::to_string(reply.status) + " " + reason(reply.status) + "\r\n";
    for (const auto& [name, value] : reply.headers) head += name + ": " + value + "\r\n";
    head += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n\r\n";
    boost::system::error_code ec;
    if (!reply.past.empty()) {
      asio::write(socket, asio::buffer(head + reply.body + reply.past), ec);
      if (!ec) bodyBytesSent += reply.body.size();
      return !ec;
    }
    asio::write(socket, asio::buffer(head), ec);
    if (ec) return false;
    const std::size_t n = std::min(reply.stopAfter, reply.body.size());
    if (reply.trickleMs > 0) {
      for (std::size_t i = 0; i < n; ++i) {
        asio::write(socket, asio::buffer(reply.body.data() + i, 1), ec);
        if (ec) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(reply.trickleMs));
      }
    } else {
      for (std::size_t at = 0; at < n && !ec; at += 64 * 1024) {
        const std::size_t piece = std::min<std::size_t>(64 * 1024, n - at);
        asio::write(socket, asio::buffer(reply.body.data() + at, piece), ec);
        if (!ec) bodyBytesSent += piece;
      }
    }
    return !ec && n == reply.body.size();
  }

  Reply challenge() {
    Reply r{401, {}, errorBody("UNAUTHORIZED")};
    r.headers["Content-Type"] = "application/json";
    if (auth == Auth::Bearer) {
      r.headers["WWW-Authenticate"] = "Bearer " + (challengeParams
                                                       ? *challengeParams
                                                       : "realm=\"http://" + hostPort() + "/token\",service=\"fake\"");
    } else {
      r.headers["WWW-Authenticate"] = "Basic realm=\"fake\"";
    }
    return r;
  }

  std::string basicFor(const std::pair<std::string, std::string>& u) {
    messages::Credentials c;
    c.set_username(u.first);
    c.set_password(u.second);
    return "Basic " + fetcher::basicCredentials(c);
  }

  // Called with the mutex held.
  std::optional<Reply> checkAuth(const std::string& authorization) {
    if (auth == Auth::None) return std::nullopt;
    if (forbidAnonymous && authorization.empty()) {
      Reply r = challenge();
      r.status = 403;
      r.body = errorBody("DENIED");
      return r;
    }
    if (auth == Auth::Basic) {
      if (user && authorization == basicFor(*user)) return std::nullopt;
      return challenge();
    }
    auto it = usesLeft.find(authorization);
    if (it == usesLeft.end() || it->second == 0) return challenge();
    if (it->second > 0) --it->second;
    return std::nullopt;
  }

  Reply handle(const bhttp::request<bhttp::string_body>& request) {
    std::unique_lock lock(mutex);
    const std::string target(request.target());
    Seen s{std::string(request.method_string()),
           target,
           std::string(request[bhttp::field::authorization]),
           std::string(request[bhttp::field::range]),
           std::string(request[bhttp::field::accept]),
           std::string(request[bhttp::field::content_type]),
           request.body()};
    seen.push_back(s);
    arrived.notify_all();
    const std::vector<Hold> held = holds;
    for (const auto& hold : held) {
      if (target.find(hold.match) == std::string::npos) continue;
      auto asked = [&] {
        return stopping ||
               std::any_of(seen.begin() + static_cast<std::ptrdiff_t>(hold.since), seen.end(),
                           [&](const Seen& other) { return other.target.find(hold.awaited) != std::string::npos; });
      };
      if (!arrived.wait_for(lock, std::chrono::seconds(10), asked) || stopping) {
        return Reply{504, {}, "held for a request of " + hold.awaited + ", which never came"};
      }
    }
    if (headStatus != 0 && request.method() == bhttp::verb::head) return Reply{headStatus, {}, ""};
    for (auto it = faults.begin(); it != faults.end(); ++it) {
      if (target.find(it->match) == std::string::npos) continue;
      Reply r{it->status, it->headers, it->body};
      if (--it->times <= 0) faults.erase(it);
      return r;
    }
    if (auto file = files.find(target); file != files.end()) {
      Reply r{200, {{"Content-Type", "application/octet-stream"}}, file->second};
      if (dropping(target)) r.stopAfter = dropAfter;
      return r;
    }
    if (target.rfind("/token", 0) == 0) {
      if (s.method == "POST") {
        // OAuth2 refresh (an identity token): the form must carry it.
        const std::string want = "grant_type=refresh_token";
        if (s.contentType != "application/x-www-form-urlencoded" || s.body.find(want) == std::string::npos ||
            refreshToken.empty() || s.body.find("refresh_token=" + refreshToken) == std::string::npos) {
          return Reply{401, {}, "{}"};
        }
      } else if (user && s.authorization != basicFor(*user)) {
        return Reply{401, {}, "{}"};
      } else if (!refreshToken.empty()) {
        return Reply{401, {}, "{}"};  // only the identity token is accepted
      }
      std::string token = "tok-" + std::to_string(++tokens);
      usesLeft["Bearer " + token] = tokenUses > 0 ? tokenUses : -1;
      std::string body = "{\"" + tokenField + "\":\"" + token + "\"";
      if (expiresIn >= 0) body += ",\"expires_in\":" + std::to_string(expiresIn);
      return Reply{200, {{"Content-Type", "application/json"}}, body + "}"};
    }
    if (target.rfind("/v2/", 0) != 0 && directory.empty()) return Reply{404, {}, errorBody("NOT_FOUND")};
    if (target.rfind("/v2/", 0) != 0) return handleFile(target);
    if (auto refused = checkAuth(s.authorization)) return *refused;
    if (target == "/v2/") return Reply{200, {{"Content-Type", "application/json"}}, "{}"};
    if (auto at = target.rfind("/manifests/"); at != std::string::npos) {
      const std::string key = target.substr(4, at - 4) + "@" + target.substr(at + 11);
      auto it = manifests.find(key);
      if (it == manifests.end()) return Reply{404, {}, errorBody("MANIFEST_UNKNOWN")};
      Reply r{200, {{"Content-Type", it->second.contentType}}, it->second.body};
      r.headers["Docker-Content-Digest"] = it->second.claimed;
      return r;
    }
    if (auto at = target.rfind("/blobs/"); at != std::string::npos) {
      if (!redirect.empty()) return Reply{307, {{"Location", redirect + target}}, ""};
      auto it = blobs.find(target.substr(at + 7));
      if (it == blobs.end()) return Reply{404, {}, errorBody("BLOB_UNKNOWN")};
      Reply r{200, {{"Content-Type", "application/octet-stream"}}, it->second};
      if (!s.range.empty() && !ignoreRange && s.range.rfind("bytes=", 0) == 0) {
        const std::size_t from = std::stoull(s.range.substr(6));
        r.status = 206;
        r.headers["Content-Range"] = "bytes " + std::to_string(from) + "-" + std::to_string(it->second.size() - 1) +
                                     "/" + std::to_string(it->second.size());
        r.body = it->second.substr(std::min(from, it->second.size()));
      }
      if (dropping(target)) r.stopAfter = dropAfter;
      r.trickleMs = trickleMs;
      r.past = pastBlobs;
      return r;
    }
    return Reply{404, {}, errorBody("NOT_FOUND")};
  }

  Reply handleFile(const std::string& target) {
    if (target.find("..") == std::string::npos) {
      std::ifstream in(directory + target.substr(0, target.find('?')), std::ios::binary);
      if (in) {
        return Reply{
            200, {{"Content-Type", "application/octet-stream"}}, std::string(std::istreambuf_iterator<char>(in), {})};
      }
    }
    return Reply{404, {}, errorBody("NOT_FOUND")};
  }

  std::string hostPort() const {
    return (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" + std::to_string(port);
  }
};

FakeRegistry::FakeRegistry(const std::string& address) : impl_(std::make_unique<Impl>()) {
  impl_->address = address;
  tcp::endpoint endpoint(asio::ip::make_address(address), 0);
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen();
  impl_->port = impl_->acceptor.local_endpoint().port();
  impl_->acceptThread = std::thread([this] { impl_->acceptLoop(); });
}

FakeRegistry::~FakeRegistry() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    impl_->arrived.notify_all();
    for (auto& socket : impl_->sockets) ::shutdown(socket->native_handle(), SHUT_RDWR);
  }
  {
    // Wake the blocking accept().
    asio::io_context ioc;
    tcp::socket wake(ioc);
    boost::system::error_code ec;
    wake.connect(tcp::endpoint(asio::ip::make_address(impl_->address), static_cast<unsigned short>(impl_->port)), ec);
  }
  impl_->acceptThread.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(impl_->mutex);
    for (auto& socket : impl_->sockets) ::shutdown(socket->native_handle(), SHUT_RDWR);
    threads.swap(impl_->threads);
  }
  for (auto& t : threads) t.join();
}

int FakeRegistry::port() const { return impl_->port; }
std::string FakeRegistry::hostPort() const { return impl_->hostPort(); }
std::string FakeRegistry::url() const { return "http://" + hostPort(); }

std::string FakeRegistry::addBlob(const std::string& content) {
  std::string digest = fetcher::sha256Digest(content);
  putBlob(digest, content);
  return digest;
}

void FakeRegistry::putFile(const std::string& target, const std::string& content) {
  std::lock_guard lock(impl_->mutex);
  impl_->files[target] = content;
}

void FakeRegistry::putBlob(const std::string& digest, const std::string& content) {
  std::lock_guard lock(impl_->mutex);
  impl_->blobs[digest] = content;
}

std::string FakeRegistry::putManifest(const std::string& repo, const std::string& reference, const std::string& body,
                                      const std::string& contentType) {
  std::string digest = fetcher::sha256Digest(body);
  std::lock_guard lock(impl_->mutex);
  impl_->manifests[repo + "@" + reference] = Impl::Manifest{body, contentType, digest};
  impl_->manifests[repo + "@" + digest] = Impl::Manifest{body, contentType, digest};
  return digest;
}

void FakeRegistry::claimDigest(const std::string& repo, const std::string& reference, const std::string& digest) {
  std::lock_guard lock(impl_->mutex);
  impl_->manifests.at(repo + "@" + reference).claimed = digest;
}

void FakeRegistry::requireBearer(std::optional<std::pair<std::string, std::string>> user, int tokenUses,
                                 int expiresIn) {
  std::lock_guard lock(impl_->mutex);
  impl_->auth = Impl::Auth::Bearer;
  impl_->user = std::move(user);
  impl_->tokenUses = tokenUses;
  impl_->expiresIn = expiresIn;
}

void FakeRegistry::requireBasic(const std::string& user, const std::string& password) {
  std::lock_guard lock(impl_->mutex);
  impl_->auth = Impl::Auth::Basic;
  impl_->user = std::make_pair(user, password);
}

void FakeRegistry::fail(Fault fault) {
  std::lock_guard lock(impl_->mutex);
  impl_->faults.push_back(std::move(fault));
}

void FakeRegistry::redirectBlobsTo(const std::string& baseUrl) {
  std::lock_guard lock(impl_->mutex);
  impl_->redirect = baseUrl;
}

void FakeRegistry::dropBlobsAfter(std::size_t bytes, int times, std::vector<std::string> only) {
  std::lock_guard lock(impl_->mutex);
  impl_->dropAfter = bytes;
  impl_->dropTimes = times;
  impl_->dropOnly = std::move(only);
}

void FakeRegistry::serveDirectory(const std::string& root) {
  std::lock_guard lock(impl_->mutex);
  impl_->directory = root;
}

void FakeRegistry::answerHead(int status) {
  std::lock_guard lock(impl_->mutex);
  impl_->headStatus = status;
}

void FakeRegistry::challengeWith(const std::string& params) {
  std::lock_guard lock(impl_->mutex);
  impl_->challengeParams = params;
}

void FakeRegistry::tokenFieldName(const std::string& name) {
  std::lock_guard lock(impl_->mutex);
  impl_->tokenField = name;
}

void FakeRegistry::forbidAnonymous(bool forbid) {
  std::lock_guard lock(impl_->mutex);
  impl_->forbidAnonymous = forbid;
}

void FakeRegistry::acceptRefreshToken(const std::string& token) {
  std::lock_guard lock(impl_->mutex);
  impl_->refreshToken = token;
}

void FakeRegistry::ignoreRange(bool ignore) {
  std::lock_guard lock(impl_->mutex);
  impl_->ignoreRange = ignore;
}

void FakeRegistry::holdUntilAsked(const std::string& match, const std::string& awaited) {
  std::lock_guard lock(impl_->mutex);
  impl_->holds.push_back(Impl::Hold{match, awaited, impl_->seen.size()});
}

void FakeRegistry::trickle(int intervalMs) {
  std::lock_guard lock(impl_->mutex);
  impl_->trickleMs = intervalMs;
}

void FakeRegistry::sendPastBlobs(const std::string& extra) {
  std::lock_guard lock(impl_->mutex);
  impl_->pastBlobs = extra;
}

void FakeRegistry::closeAfterEachResponse(bool close) {
  std::lock_guard lock(impl_->mutex);
  impl_->closeEach = close;
}

std::vector<FakeRegistry::Seen> FakeRegistry::requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->seen;
}

std::size_t FakeRegistry::bodyBytesSent() const { return impl_->bodyBytesSent.load(); }

std::size_t FakeRegistry::notHttpConnections() const { return impl_->notHttp.load(); }

std::size_t FakeRegistry::connectionsAccepted() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->accepted;
}

std::size_t FakeRegistry::count(const std::string& match) const {
  std::lock_guard lock(impl_->mutex);
  std::size_t n = 0;
  for (const auto& s : impl_->seen) n += s.target.find(match) != std::string::npos;
  return n;
}

bool FakeRegistry::sawAuthorization() const {
  std::lock_guard lock(impl_->mutex);
  for (const auto& s : impl_->seen) {
    if (!s.authorization.empty()) return true;
  }
  return false;
}

}  // namespace prov::testing
