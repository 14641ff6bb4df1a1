#pragma once

// Debian's tinyproxy, started for a test on a free 127.0.0.1 port with its
// own config and log under `workDir`: an HTTP proxy that forwards requests
// in absolute form and tunnels CONNECT to any port, optionally behind Basic
// auth. Its log (LogLevel Info) names each request ("CONNECT host:port",
// "GET http://host:port/path").

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace prov::testing {

class TinyProxy {
 public:
  struct Options {
    std::optional<std::pair<std::string, std::string>> user{};  // BasicAuth user password
  };

  // Empty with `error` set when tinyproxy cannot be started.
  static std::unique_ptr<TinyProxy> start(const std::filesystem::path& workDir, Options options, std::string& error);
  // SIGTERM, and waits for it.
  ~TinyProxy();

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // "http://127.0.0.1:port", with "user:password@" when given.
  std::string url(const std::optional<std::pair<std::string, std::string>>& user = std::nullopt) const;
  // What it has logged so far.
  std::string log() const;

 private:
  TinyProxy() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  std::filesystem::path log_;
};

}  // namespace prov::testing
