#pragma once

// A registry that serves an image's files as they are: nginx (Debian's
// nginx-light) on a free 127.0.0.1 port, plain HTTP, one process, with the
// pull side of the distribution API over a directory: GET /v2/,
// /v2/<name>/manifests/<tag or digest> and /v2/<name>/blobs/<digest>. It
// stands for a registry whose answers cost it next to nothing (blobs from a
// CDN or object storage, as the large public registries serve them), beside
// Debian's docker-registry, which spends milliseconds of CPU on each answer:
// a driver timing both shows how much of a pull is the registry's.

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

namespace prov::bench {

class StaticRegistry {
 public:
  // Copies `repository`:`tag` (a v2 schema 2 or OCI manifest) from the
  // registry at `from` ("127.0.0.1:PORT", plain http) with skopeo into
  // dir/root and starts nginx over it; null with `error` set when it cannot.
  static std::unique_ptr<StaticRegistry> mirror(const std::filesystem::path& dir, const std::string& from,
                                                const std::string& repository, const std::string& tag,
                                                std::string& error);
  ~StaticRegistry();
  StaticRegistry(const StaticRegistry&) = delete;
  StaticRegistry& operator=(const StaticRegistry&) = delete;

  int port() const { return port_; }
  std::string hostPort() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  StaticRegistry() = default;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace prov::bench
