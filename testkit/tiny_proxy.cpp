#include "testkit/tiny_proxy.hpp"

#include "testkit/real_registry.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace prov::testing {

namespace fs = std::filesystem;

std::unique_ptr<TinyProxy> TinyProxy::start(const fs::path& workDir, Options options, std::string& error) {
  const std::string binary = inPath("tinyproxy");
  if (binary.empty()) {
    error = "cannot find tinyproxy (apt-get install tinyproxy)";
    return nullptr;
  }
  fs::create_directories(workDir);
  std::unique_ptr<TinyProxy> proxy(new TinyProxy());
  proxy->port_ = freePort();
  proxy->log_ = workDir / "tinyproxy.log";
  // No ConnectPort line: CONNECT goes to any port (the registries' are
  // random). No User: it runs as we do, so it can write its log.
  std::ofstream config(workDir / "tinyproxy.conf");
  config << "Port " << proxy->port_ << "\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\nAllow 127.0.0.1\n"
         << "LogFile \"" << proxy->log_.string() << "\"\nLogLevel Info\nDisableViaHeader Yes\n";
  if (options.user) config << "BasicAuth " << options.user->first << " " << options.user->second << "\n";
  config.close();

  const pid_t pid = spawnServer({binary, "-d", "-c", (workDir / "tinyproxy.conf").string()}, workDir / "tinyproxy.out");
  if (pid < 0) {
    error = "cannot start tinyproxy";
    return nullptr;
  }
  proxy->pid_ = pid;
  for (int i = 0; i < 200; ++i) {
    if (readAll(proxy->log_).find("listening on fd") != std::string::npos && accepting(proxy->port_)) return proxy;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      proxy->pid_ = -1;
      error = "tinyproxy exited: " + readAll(workDir / "tinyproxy.out") + readAll(proxy->log_);
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  error = "tinyproxy did not listen on port " + std::to_string(proxy->port_) + ": " + readAll(proxy->log_);
  return nullptr;
}

// Bounded (a fresh CI run once waited for a tinyproxy stopped while it
// started until ctest's timeout).
TinyProxy::~TinyProxy() { stopServer(pid_); }

std::string TinyProxy::url(const std::optional<std::pair<std::string, std::string>>& user) const {
  const std::string credentials = user ? user->first + ":" + user->second + "@" : "";
  return "http://" + credentials + "127.0.0.1:" + std::to_string(port_);
}

std::string TinyProxy::log() const { return readAll(log_); }

}  // namespace prov::testing
