#include "testkit/real_registry.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace prov::testing {

namespace fs = std::filesystem;

namespace {

// Runs argv[0] (searched in PATH) with its output to `log`; the child
// inherits what the caller has (a test may look at that).
pid_t spawnLogged(const std::vector<std::string>& argv, const fs::path& log) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

}  // namespace

std::string inPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : std::string();
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

pid_t spawnServer(const std::vector<std::string>& argv, const fs::path& log) {
  // Everything the child needs is made before fork: after it, in a process
  // with threads, only async-signal-safe calls.
  const std::string binary = inPath(argv[0]);
  if (binary.empty()) return -1;
  const std::string out = log.string();
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent ended before the prctl
    const int in = ::open("/dev/null", O_RDONLY);
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || fd < 0) ::_exit(127);
    ::dup2(in, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::close_range(3, ~0U, 0);  // none of the test's sockets or files
    ::execv(binary.c_str(), args.data());
    ::_exit(127);
  }
  return pid;
}

std::string readAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool accepting(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

CommandResult runCommand(const std::vector<std::string>& argv) {
  char name[] = "/tmp/prov-command-XXXXXX";
  const int fd = ::mkstemp(name);
  ::close(fd);
  CommandResult result;
  const pid_t pid = spawnLogged(argv, name);
  if (pid > 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  } else {
    result.output = "cannot run " + argv[0] + "\n";
  }
  result.output += readAll(name);
  ::unlink(name);
  return result;
}

std::unique_ptr<RealRegistry> RealRegistry::start(const fs::path& workDir, Options options, std::string& error) {
  std::unique_ptr<RealRegistry> registry(new RealRegistry());
  registry->tls_ = options.tls;
  registry->user_ = options.user;
  registry->certDir_ = workDir / "certs";
  fs::create_directories(workDir / "storage");
  registry->storageDir_ = workDir / "storage";
  fs::create_directories(registry->certDir_);
  auto must = [&](const std::vector<std::string>& argv) {
    CommandResult r = runCommand(argv);
    if (r.status != 0) error = argv[0] + " failed: " + r.output;
    return r.status == 0;
  };
  std::string config =
      "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
      "    rootdirectory: " +
      (workDir / "storage").string() + "\n  delete:\n    enabled: true\n";
  if (options.user) {
    const fs::path htpasswd = workDir / "htpasswd";
    CommandResult r = runCommand({"htpasswd", "-Bbn", options.user->first, options.user->second});
    if (r.status != 0) {
      error = "htpasswd failed: " + r.output;
      return nullptr;
    }
    std::ofstream(htpasswd) << r.output;
    config += "auth:\n  htpasswd:\n    realm: prov-test\n    path: " + htpasswd.string() + "\n";
  }
  registry->port_ = freePort();
  config += "http:\n  addr: 127.0.0.1:" + std::to_string(registry->port_) + "\n  secret: prov-test-secret\n";
  if (options.tls) {
    const fs::path d = registry->certDir_;
    std::ofstream(workDir / "ext.cnf") << "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n";
    if (!must({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
               "-keyout", (workDir / "ca.key").string(), "-out", (d / "ca.crt").string(), "-days", "2", "-subj",
               "/CN=provisioner test CA"}) ||
        !must({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
               (workDir / "server.key").string(), "-out", (workDir / "server.csr").string(), "-subj",
               "/CN=localhost"}) ||
        !must({"openssl", "x509", "-req", "-in", (workDir / "server.csr").string(), "-CA", (d / "ca.crt").string(),
               "-CAkey", (workDir / "ca.key").string(), "-CAcreateserial", "-out", (workDir / "server.crt").string(),
               "-days", "2", "-extfile", (workDir / "ext.cnf").string()})) {
      return nullptr;
    }
    config += "  tls:\n    certificate: " + (workDir / "server.crt").string() +
              "\n    key: " + (workDir / "server.key").string() + "\n";
  }
  if (options.schema1) config += "compatibility:\n  schema1:\n    enabled: true\n";
  if (!options.redirectBlobsTo.empty()) {
    config += "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: " +
              options.redirectBlobsTo + "\n";
  }
  std::ofstream(workDir / "config.yml") << config;
  const fs::path log = workDir / "registry.log";
  registry->pid_ = spawnServer({"docker-registry", "serve", (workDir / "config.yml").string()}, log);
  if (registry->pid_ <= 0) {
    error = "cannot run docker-registry (apt-get install docker-registry)";
    return nullptr;
  }
  for (int i = 0; i < 200; ++i) {
    if (accepting(registry->port_)) return registry;
    int status = 0;
    if (::waitpid(registry->pid_, &status, WNOHANG) == registry->pid_) {
      registry->pid_ = -1;
      error = "docker-registry exited: " + readAll(log);
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  error = "docker-registry did not listen on " + registry->hostPort() + ": " + readAll(log);
  return nullptr;
}

void stopServer(pid_t pid) {
  if (pid <= 0) return;
  const int exited = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  ::kill(pid, SIGTERM);
  pollfd ended{exited, POLLIN, 0};
  if (exited < 0 || ::poll(&ended, 1, 5000) != 1) ::kill(pid, SIGKILL);
  if (exited >= 0) ::close(exited);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

RealRegistry::~RealRegistry() { stopServer(pid_); }

CommandResult RealRegistry::push(const std::string& source, const std::string& repoTag, const std::string& format,
                                 bool all, const std::vector<std::string>& extra) const {
  std::vector<std::string> argv = {"skopeo", "--insecure-policy", "copy", "--retry-times", "2"};
  if (!format.empty()) argv.insert(argv.end(), {"--format", format});
  if (all) argv.push_back("--all");
  argv.insert(argv.end(), extra.begin(), extra.end());
  if (tls_) {
    argv.push_back("--dest-cert-dir=" + certDir_.string());
  } else {
    argv.push_back("--dest-tls-verify=false");
  }
  if (user_) argv.push_back("--dest-creds=" + user_->first + ":" + user_->second);
  argv.push_back(source);
  argv.push_back("docker://" + hostPort() + "/" + repoTag);
  return runCommand(argv);
}

}  // namespace prov::testing
