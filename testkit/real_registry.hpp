#pragma once

// The real registry server from Debian's docker-registry package, started
// for a test on a free 127.0.0.1 port with its own config and storage under
// `workDir`: plain HTTP, or TLS with a CA the fixture generates (openssl)
// and htpasswd (bcrypt) Basic auth. Images are pushed with skopeo.

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace prov::testing {

struct CommandResult {
  int status = -1;     // exit status, or -1 when it did not exit normally
  std::string output;  // stdout and stderr
};

// Runs argv[0] (searched in PATH) with `argv`, waits, captures its output.
CommandResult runCommand(const std::vector<std::string>& argv);

// For test servers: a file's whole content ("" when unreadable), a free
// port on 127.0.0.1 (free when asked), whether something accepts there.
std::string readAll(const std::filesystem::path& path);
int freePort();
bool accepting(int port);
// The path of the executable `name` as execvp would find it in PATH (a
// name with a slash as it is), or "" when there is none.
std::string inPath(const std::string& name);

// Starts a test server: argv[0] found in PATH, stdin /dev/null, stdout and
// stderr to `log`, none of the caller's other descriptors, and killed
// (SIGKILL, PR_SET_PDEATHSIG) when the thread that started it ends, so that
// a test binary that dies does not leave it running under init. -1 when
// argv[0] is not in PATH or fork failed.
pid_t spawnServer(const std::vector<std::string>& argv, const std::filesystem::path& log);

// Stops a test server: SIGTERM, SIGKILL when it has not ended 5 s later
// (one stopped while it starts must not hang a test), then reaps it.
void stopServer(pid_t pid);

class RealRegistry {
 public:
  struct Options {
    bool tls = false;
    std::optional<std::pair<std::string, std::string>> user{};  // htpasswd Basic auth
    bool schema1 = false;           // compatibility.schema1.enabled: accepts and serves signed schema 1
    std::string redirectBlobsTo{};  // a base URL: blob GETs answered 307 to <it>/<storage path of the blob>
  };

  // Empty with `error` set when the server cannot be started.
  static std::unique_ptr<RealRegistry> start(const std::filesystem::path& workDir, Options options, std::string& error);
  ~RealRegistry();

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string hostPort() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string url() const { return (tls_ ? "https://" : "http://") + hostPort(); }
  // The test CA (TLS only), and a directory holding it as ca.crt (for skopeo).
  std::filesystem::path caFile() const { return certDir_ / "ca.crt"; }
  // Where the registry keeps its files (a redirect's target serves these).
  std::filesystem::path storageDir() const { return storageDir_; }

  // skopeo copy `source` (e.g. "oci:/dir:tag") to `repoTag` here;
  // `format` is "v2s2" or "oci"; `all` copies every image of an index;
  // `extra` goes to skopeo copy as is.
  CommandResult push(const std::string& source, const std::string& repoTag, const std::string& format, bool all = false,
                     const std::vector<std::string>& extra = {}) const;

 private:
  RealRegistry() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  bool tls_ = false;
  std::optional<std::pair<std::string, std::string>> user_;
  std::filesystem::path certDir_;
  std::filesystem::path storageDir_;
};

}  // namespace prov::testing
