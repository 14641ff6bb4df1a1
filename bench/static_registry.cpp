#include "bench/static_registry.hpp"

#include <rapidjson/document.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <vector>

#include "fetcher/digest.hpp"
#include "testkit/real_registry.hpp"

namespace prov::bench {

namespace fs = std::filesystem;

std::unique_ptr<StaticRegistry> StaticRegistry::mirror(const fs::path& dir, const std::string& from,
                                                       const std::string& repository, const std::string& tag,
                                                       std::string& error) {
  // Debian puts it in /usr/sbin, which a non-login root shell may not have in PATH.
  std::string nginx = testing::inPath("nginx");
  if (nginx.empty()) nginx = testing::inPath("/usr/sbin/nginx");
  if (nginx.empty()) {
    error = "cannot run nginx (apt-get install nginx-light)";
    return nullptr;
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path copied = dir / "copied";
  // skopeo's dir: transport keeps the manifest's bytes (and so its digest)
  // and names each blob by its hex digest.
  auto copy = testing::runCommand({"skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                                   "docker://" + from + "/" + repository + ":" + tag, "dir:" + copied.string()});
  if (copy.status != 0) {
    error = "skopeo failed to copy " + repository + ":" + tag + " out of " + from + ": " + copy.output;
    return nullptr;
  }
  const std::string manifest = testing::readAll(copied / "manifest.json");
  rapidjson::Document parsed;
  parsed.Parse(manifest.data(), manifest.size());
  if (parsed.HasParseError() || !parsed.IsObject() || !parsed.HasMember("mediaType") ||
      !parsed["mediaType"].IsString()) {
    error = "the manifest of " + repository + ":" + tag + " names no media type";
    return nullptr;
  }
  const std::string mediaType = parsed["mediaType"].GetString();
  const fs::path root = dir / "root" / repository;
  fs::create_directories(root / "manifests");
  fs::create_directories(root / "blobs");
  const std::string digest = fetcher::sha256Digest(manifest);
  for (const std::string& name : {tag, digest}) fs::copy_file(copied / "manifest.json", root / "manifests" / name);
  std::vector<std::string> blobs;
  for (const auto& entry : fs::directory_iterator(copied)) {
    const std::string name = entry.path().filename().string();
    if (name.size() == 64 && name.find_first_not_of("0123456789abcdef") == std::string::npos) blobs.push_back(name);
  }
  for (const auto& name : blobs) fs::rename(copied / name, root / "blobs" / ("sha256:" + name));
  std::unique_ptr<StaticRegistry> registry(new StaticRegistry());
  registry->port_ = testing::freePort();
  // One process (no master): the bench's SIGTERM, or its death, ends it.
  // Paths are quoted: --dir may hold a space.
  auto quoted = [](const fs::path& path) { return "\"" + path.string() + "\""; };
  std::ofstream(dir / "nginx.conf")
      << "daemon off;\nmaster_process off;\nworker_processes 1;\npid " << quoted(dir / "nginx.pid") << ";\nerror_log "
      << quoted(dir / "error.log") << ";\nevents {}\nhttp {\n  access_log off;\n"
      << "  sendfile on;\n  tcp_nopush on;\n  server {\n    listen 127.0.0.1:" << registry->port_ << ";\n"
      << "    root " << quoted(dir / "root") << ";\n"
      << "    location = /v2/ { default_type application/json; return 200 '{}'; }\n"
      << "    location ~ ^/v2/(.+)/manifests/([^/]+)$ {\n      default_type \"" << mediaType << "\";\n"
      << "      add_header Docker-Content-Digest " << digest << ";\n"
      << "      try_files /$1/manifests/$2 =404;\n    }\n"
      << "    location ~ \"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$\" {\n"
      << "      default_type application/octet-stream;\n      try_files /$1/blobs/$2 =404;\n    }\n"
      << "  }\n}\n";
  registry->pid_ = testing::spawnServer(
      {nginx, "-p", dir.string(), "-e", (dir / "error.log").string(), "-c", (dir / "nginx.conf").string()},
      dir / "nginx.log");
  if (registry->pid_ <= 0) {
    error = "cannot start nginx";
    return nullptr;
  }
  for (int i = 0; i < 1000; ++i) {  // 10 s, as for docker-registry: a busy host starts it slowly
    if (testing::accepting(registry->port_)) return registry;
    int status = 0;
    if (::waitpid(registry->pid_, &status, WNOHANG) == registry->pid_) {
      registry->pid_ = -1;
      error = "nginx exited: " + testing::readAll(dir / "error.log") + testing::readAll(dir / "nginx.log");
      return nullptr;
    }
    ::usleep(10'000);
  }
  error = "nginx did not listen on " + registry->hostPort() + ": " + testing::readAll(dir / "error.log");
  return nullptr;
}

StaticRegistry::~StaticRegistry() { testing::stopServer(pid_); }

}  // namespace prov::bench
