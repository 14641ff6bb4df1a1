#include "bench/latency_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace prov::bench {

using Clock = std::chrono::steady_clock;

namespace {

int connectTo(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool writeAll(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// One direction of one connection: what `from` sends reaches `to` `delay`
// later, the first bytes `first` later still. An empty chunk stands for
// the end of the stream.
class Pipe {
 public:
  Pipe(int from, int to, std::chrono::microseconds delay, std::chrono::microseconds first = {})
      : from_(from), to_(to), delay_(delay), first_(first) {
    reader_ = std::thread([this] { read(); });
    writer_ = std::thread([this] { write(); });
  }
  ~Pipe() {
    reader_.join();
    writer_.join();
  }

 private:
  void read() {
    std::vector<char> buffer(64 * 1024);
    for (;;) {
      const ssize_t n = ::recv(from_, buffer.data(), buffer.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      const auto due = Clock::now() + delay_ + (started_ ? std::chrono::microseconds(0) : first_);
      started_ = true;
      std::lock_guard lock(mutex_);
      chunks_.push_back({due, n > 0 ? std::string(buffer.data(), static_cast<std::size_t>(n)) : std::string()});
      ready_.notify_one();
      if (n <= 0) return;
    }
  }

  void write() {
    for (;;) {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return !chunks_.empty(); });
      auto [due, bytes] = std::move(chunks_.front());
      chunks_.pop_front();
      lock.unlock();
      std::this_thread::sleep_until(due);  // the modelled latency, not a wait for a condition
      if (bytes.empty() || !writeAll(to_, bytes.data(), bytes.size())) {
        ::shutdown(to_, SHUT_WR);
        ::shutdown(from_, SHUT_RD);
        return;
      }
    }
  }

  const int from_, to_;
  const std::chrono::microseconds delay_, first_;
  bool started_ = false;  // the reader's own
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::pair<Clock::time_point, std::string>> chunks_;
  std::thread reader_, writer_;
};

}  // namespace

struct LatencyProxy::Impl {
  int listener = -1;
  int port = 0;
  int upstream = 0;
  std::chrono::microseconds delay{0};
  std::thread acceptor;
  std::mutex mutex;
  bool stopping = false;
  std::vector<int> sockets;
  std::vector<std::thread> connections;

  void accept() {
    for (;;) {
      const int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      std::lock_guard lock(mutex);
      if (stopping) {
        if (client >= 0) ::close(client);
        return;
      }
      if (client < 0) continue;
      const int server = connectTo(upstream);
      if (server < 0) {
        ::close(client);
        continue;
      }
      const int one = 1;
      ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      sockets.push_back(client);
      sockets.push_back(server);
      connections.emplace_back([client, server, delay = delay] {
        // The client's first bytes wait a round trip more: its handshake.
        { Pipe up(client, server, delay, 2 * delay), down(server, client, delay); }
      });
    }
  }
};

LatencyProxy::LatencyProxy(int upstreamPort, std::chrono::microseconds oneWay) : impl_(std::make_unique<Impl>()) {
  impl_->upstream = upstreamPort;
  impl_->delay = oneWay;
  impl_->listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (impl_->listener < 0 || ::bind(impl_->listener, reinterpret_cast<const sockaddr*>(&address), length) != 0 ||
      ::listen(impl_->listener, 64) != 0 ||
      ::getsockname(impl_->listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw std::runtime_error(std::string("latency proxy: cannot listen on 127.0.0.1: ") + std::strerror(errno));
  }
  impl_->port = ntohs(address.sin_port);
  impl_->acceptor = std::thread([impl = impl_.get()] { impl->accept(); });
}

LatencyProxy::~LatencyProxy() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    for (const int fd : impl_->sockets) ::shutdown(fd, SHUT_RDWR);
  }
  // Wake the accept: a connection it closes at once.
  const int wake = connectTo(impl_->port);
  if (wake >= 0) ::close(wake);
  impl_->acceptor.join();
  for (auto& connection : impl_->connections) connection.join();
  for (const int fd : impl_->sockets) ::close(fd);
  ::close(impl_->listener);
}

int LatencyProxy::port() const { return impl_->port; }

}  // namespace prov::bench
