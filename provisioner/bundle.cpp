#include "provisioner/bundle.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include "actors/fs.hpp"
#include "store/atomic_file.hpp"

namespace prov::provisioner {

using actors::Error;
using actors::ErrorKind;
using actors::Nothing;
using actors::Try;

namespace {

constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::size_t kMaxAccountFile = 4 << 20;  // an /etc/passwd or /etc/group larger than this is refused
constexpr std::int64_t kMaxId = (std::int64_t{1} << 31) - 1;  // libcontainer/user's range

// containerd's and Docker's default set.
constexpr const char* kCapabilities[] = {"CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
                                         "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
                                         "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
                                         "CAP_KILL",    "CAP_AUDIT_WRITE"};

constexpr const char* kMaskedPaths[] = {"/proc/acpi",
                                        "/proc/asound",
                                        "/proc/kcore",
                                        "/proc/keys",
                                        "/proc/latency_stats",
                                        "/proc/timer_list",
                                        "/proc/timer_stats",
                                        "/proc/sched_debug",
                                        "/proc/scsi",
                                        "/sys/firmware",
                                        "/sys/devices/virtual/powercap"};
constexpr const char* kReadonlyPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};

// A decimal id in libcontainer/user's range; nullopt otherwise.
std::optional<std::uint32_t> parseId(std::string_view text) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  std::int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value > kMaxId) return std::nullopt;
  return static_cast<std::uint32_t>(value);
}

std::vector<std::string_view> split(std::string_view text, char by) {
  std::vector<std::string_view> parts;
  for (;;) {
    const auto at = text.find(by);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t' || text.front() == '\r')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
  return text;
}

struct PasswdEntry {
  std::string name;
  std::uint32_t uid, gid;
  std::string home;
};
struct GroupEntry {
  std::string name;
  std::uint32_t gid;
  std::vector<std::string> members;
};

// name:password:uid:gid:gecos:home:shell; lines whose ids do not parse are
// no one's.
std::vector<PasswdEntry> parsePasswd(std::string_view text) {
  std::vector<PasswdEntry> entries;
  for (auto line : split(text, '\n')) {
    line = trim(line);
    if (line.empty()) continue;
    const auto fields = split(line, ':');
    if (fields.size() < 4) continue;
    const auto uid = parseId(fields[2]), gid = parseId(fields[3]);
    if (!uid || !gid) continue;
    entries.push_back({std::string(fields[0]), *uid, *gid, fields.size() > 5 ? std::string(fields[5]) : ""});
  }
  return entries;
}

// name:password:gid:member,member
std::vector<GroupEntry> parseGroup(std::string_view text) {
  std::vector<GroupEntry> entries;
  for (auto line : split(text, '\n')) {
    line = trim(line);
    if (line.empty()) continue;
    const auto fields = split(line, ':');
    if (fields.size() < 3) continue;
    const auto gid = parseId(fields[2]);
    if (!gid) continue;
    GroupEntry entry{std::string(fields[0]), *gid, {}};
    if (fields.size() > 3 && !fields[3].empty()) {
      for (auto member : split(fields[3], ',')) entry.members.emplace_back(trim(member));
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

// `path` (absolute, as the image means it) inside `rootfs`, every symlink
// resolved there; nullopt when it does not exist.
Try<std::optional<std::string>> readInRoot(const std::string& rootfs, const std::string& path) {
  actors::fs::Fd root(::open(rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) {
    return Error(ErrorKind::IO, "Failed to open the rootfs '" + rootfs + "': " + std::strerror(errno));
  }
  // O_PATH first: an image's /etc/passwd may be a device node (the
  // extractor makes them), and opening one for reading acts on the host's
  // device (a watchdog arms, a tape rewinds). Only a regular file is then
  // opened for reading, through the descriptor already resolved.
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, root.get(), path.c_str(), &how, sizeof how));
  if (fd < 0 && (errno == ENOSYS || errno == EPERM)) {
    // No openat2 (before Linux 5.6): without following any symlink.
    fd = actors::fs::openBeneath(root.get(), path.substr(1), O_PATH);
  }
  if (fd < 0 && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)) return std::optional<std::string>();
  if (fd < 0) return Error(ErrorKind::IO, "Failed to open '" + path + "' in the rootfs: " + std::strerror(errno));
  actors::fs::Fd located(fd);
  struct stat st {};
  if (::fstat(located.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Error(ErrorKind::InvalidArgument, "'" + path + "' in the rootfs is not a regular file");
  }
  if (static_cast<std::size_t>(st.st_size) > kMaxAccountFile) {
    return Error(ErrorKind::ResourceExhausted,
                 "'" + path + "' in the rootfs is larger than " + std::to_string(kMaxAccountFile) + " bytes");
  }
  // Read through the descriptor already resolved, never the path again.
  auto text = actors::fs::readFile("/proc/self/fd/" + std::to_string(located.get()));
  if (text.isError())
    return Error(ErrorKind::IO, "Failed to read '" + path + "' in the rootfs: " + text.error().message);
  return std::optional<std::string>(std::move(*text));
}

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

void key(Writer& w, const char* name) { w.Key(name); }
void string(Writer& w, std::string_view value) {
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}
void member(Writer& w, const char* name, std::string_view value) {
  key(w, name);
  string(w, value);
}
template <typename List>
void strings(Writer& w, const char* name, const List& values) {
  key(w, name);
  w.StartArray();
  for (const auto& v : values) string(w, v);
  w.EndArray();
}

void mount(Writer& w, const char* destination, const char* type, const char* source,
           std::initializer_list<const char*> options) {
  w.StartObject();
  member(w, "destination", destination);
  member(w, "type", type);
  member(w, "source", source);
  if (options.size() > 0) strings(w, "options", options);
  w.EndObject();
}

// A host name made of the hostname asked for (the provisioner passes the
// container id's last part, [A-Za-z0-9_.-]+): '_' is not a host name's.
std::string hostnameFor(const BundleOptions& options) {
  std::string name = options.hostname.empty() ? "container" : options.hostname;
  for (char& c : name) {
    if (c == '_') c = '-';
  }
  return name.substr(0, 64);
}

}  // namespace

Try<ExecUser> resolveExecUser(const std::string& user, const std::optional<std::string>& passwd,
                              const std::optional<std::string>& group) {
  const auto colon = user.find(':');
  const std::string userArg = user.substr(0, colon);
  const std::string groupArg = colon == std::string::npos ? "" : user.substr(colon + 1);
  const auto uidArg = parseId(userArg);
  const auto gidArg = parseId(groupArg);
  if (!userArg.empty() && !uidArg && userArg.find_first_not_of("0123456789") == std::string::npos) {
    return Error(ErrorKind::InvalidArgument,
                 "Invalid user '" + user + "': uid out of range 0.." + std::to_string(kMaxId));
  }
  ExecUser out;
  const PasswdEntry* matched = nullptr;
  std::vector<PasswdEntry> users = passwd ? parsePasswd(*passwd) : std::vector<PasswdEntry>{};
  for (const auto& u : users) {
    const bool match = userArg.empty() ? u.uid == 0 : uidArg ? u.uid == *uidArg : u.name == userArg;
    if (match) {
      matched = &u;
      break;
    }
  }
  if (matched) {
    out.uid = matched->uid;
    out.gid = matched->gid;
    if (!matched->home.empty()) out.home = matched->home;
  } else if (!userArg.empty()) {
    if (!uidArg) {
      return Error(ErrorKind::NotFound, "Unable to find user '" + userArg + "': no matching entries in " +
                                            (passwd ? "the image's /etc/passwd" : "the image (it has no /etc/passwd)"));
    }
    out.uid = *uidArg;
  }
  if (groupArg.empty() && !matched) return out;
  std::vector<GroupEntry> groups = group ? parseGroup(*group) : std::vector<GroupEntry>{};
  if (!groupArg.empty()) {
    for (const auto& g : groups) {
      if (gidArg ? g.gid == *gidArg : g.name == groupArg) {
        out.gid = g.gid;
        return out;
      }
    }
    if (!gidArg) {
      if (groupArg.find_first_not_of("0123456789") == std::string::npos) {
        return Error(ErrorKind::InvalidArgument,
                     "Invalid user '" + user + "': gid out of range 0.." + std::to_string(kMaxId));
      }
      return Error(ErrorKind::NotFound, "Unable to find group '" + groupArg + "': no matching entries in " +
                                            (group ? "the image's /etc/group" : "the image (it has no /etc/group)"));
    }
    out.gid = *gidArg;
    return out;
  }
  // No group asked for: the groups that list the user by name.
  for (const auto& g : groups) {
    if (g.gid == out.gid) continue;
    for (const auto& m : g.members) {
      if (m == matched->name) {
        out.additionalGids.push_back(g.gid);
        break;
      }
    }
  }
  return out;
}

Try<ExecUser> resolveExecUser(const std::string& user, const std::string& rootfs) {
  auto passwd = readInRoot(rootfs, "/etc/passwd");
  if (passwd.isError()) return passwd.error();
  auto group = readInRoot(rootfs, "/etc/group");
  if (group.isError()) return group.error();
  return resolveExecUser(user, *passwd, *group);
}

Try<std::string> runtimeConfig(const messages::ImageConfig& image, const std::string& rootfs, const ExecUser& user,
                               const BundleOptions& options) {
  std::vector<std::string> args;
  const bool newEntrypoint = options.entrypoint.has_value();
  if (newEntrypoint) {
    args = *options.entrypoint;
  } else {
    args.assign(image.entrypoint().begin(), image.entrypoint().end());
  }
  // A new entrypoint drops the image's Cmd, as `docker run --entrypoint` does.
  if (options.cmd) {
    args.insert(args.end(), options.cmd->begin(), options.cmd->end());
  } else if (!newEntrypoint) {
    args.insert(args.end(), image.cmd().begin(), image.cmd().end());
  }
  if (args.empty()) {
    return Error(ErrorKind::InvalidArgument,
                 "The image has neither Entrypoint nor Cmd: give the bundle a command to run");
  }
  std::vector<std::string> env(image.env().begin(), image.env().end());
  bool hasPath = false, hasTerm = false;
  for (const auto& e : env) {
    hasPath = hasPath || e.rfind("PATH=", 0) == 0;
    hasTerm = hasTerm || e.rfind("TERM=", 0) == 0;
  }
  if (!hasPath) env.insert(env.begin(), kDefaultPath);
  if (options.terminal && !hasTerm) env.emplace_back("TERM=xterm");
  std::string cwd = image.working_dir().empty() ? "/" : image.working_dir();
  if (cwd.front() != '/') cwd = "/" + cwd;  // the runtime spec wants it absolute; Docker reads it from "/"

  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.SetIndent(' ', 2);
  w.StartObject();
  member(w, "ociVersion", "1.0.2");

  key(w, "process");
  w.StartObject();
  key(w, "terminal");
  w.Bool(options.terminal);
  key(w, "user");
  w.StartObject();
  key(w, "uid");
  w.Uint(user.uid);
  key(w, "gid");
  w.Uint(user.gid);
  if (!user.additionalGids.empty()) {
    key(w, "additionalGids");
    w.StartArray();
    for (auto gid : user.additionalGids) w.Uint(gid);
    w.EndArray();
  }
  w.EndObject();
  strings(w, "args", args);
  strings(w, "env", env);
  member(w, "cwd", cwd);
  key(w, "capabilities");
  w.StartObject();
  // A process that is not root gets no effective or permitted capability,
  // as execve gives one; the bounding set caps what setuid binaries get.
  const std::vector<std::string> all(std::begin(kCapabilities), std::end(kCapabilities));
  const std::vector<std::string> none;
  strings(w, "bounding", all);
  strings(w, "effective", user.uid == 0 ? all : none);
  strings(w, "permitted", user.uid == 0 ? all : none);
  w.EndObject();
  key(w, "rlimits");
  w.StartArray();
  w.StartObject();
  member(w, "type", "RLIMIT_NOFILE");
  key(w, "hard");
  w.Uint(1024);
  key(w, "soft");
  w.Uint(1024);
  w.EndObject();
  w.EndArray();
  key(w, "noNewPrivileges");
  w.Bool(true);
  w.EndObject();

  key(w, "root");
  w.StartObject();
  member(w, "path", rootfs);
  key(w, "readonly");
  w.Bool(false);
  w.EndObject();
  member(w, "hostname", hostnameFor(options));

  key(w, "mounts");
  w.StartArray();
  mount(w, "/proc", "proc", "proc", {});
  mount(w, "/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"});
  mount(w, "/dev/pts", "devpts", "devpts", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"});
  mount(w, "/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"});
  mount(w, "/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"});
  mount(w, "/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"});
  mount(w, "/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"});
  w.EndArray();

  // What the image spec's conversion rules carry, but not the image's
  // labels: runtimes act on some annotations (runc's org.systemd.property.*
  // with systemd cgroups, crun's run.oci.*), and an image must not choose
  // them. Docker and containerd do not copy labels either.
  key(w, "annotations");
  w.StartObject();
  if (!image.os().empty()) member(w, "org.opencontainers.image.os", image.os());
  if (!image.architecture().empty()) member(w, "org.opencontainers.image.architecture", image.architecture());
  if (!image.created().empty()) member(w, "org.opencontainers.image.created", image.created());
  if (!image.stop_signal().empty()) member(w, "org.opencontainers.image.stopSignal", image.stop_signal());
  if (image.exposed_ports_size() > 0) {
    std::string ports;
    for (const auto& p : image.exposed_ports()) ports += (ports.empty() ? "" : ",") + p;
    member(w, "org.opencontainers.image.exposedPorts", ports);
  }
  w.EndObject();

  key(w, "linux");
  w.StartObject();
  key(w, "resources");
  w.StartObject();
  key(w, "devices");
  w.StartArray();
  w.StartObject();
  key(w, "allow");
  w.Bool(false);
  member(w, "access", "rwm");
  w.EndObject();
  w.EndArray();
  w.EndObject();
  key(w, "namespaces");
  w.StartArray();
  for (const char* type : {"pid", "network", "ipc", "uts", "mount"}) {
    w.StartObject();
    member(w, "type", type);
    w.EndObject();
  }
  w.EndArray();
  strings(w, "maskedPaths", std::vector<std::string>(std::begin(kMaskedPaths), std::end(kMaskedPaths)));
  strings(w, "readonlyPaths", std::vector<std::string>(std::begin(kReadonlyPaths), std::end(kReadonlyPaths)));
  w.EndObject();

  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize()) + "\n";
}

namespace {

// `dir` as parent and name; the name neither empty, "." nor "..".
bool splitDir(const std::string& dir, std::string& parent, std::string& name) {
  const auto slash = dir.rfind('/');
  if (slash == std::string::npos) return false;
  parent = slash == 0 ? "/" : dir.substr(0, slash);
  name = dir.substr(slash + 1);
  return !name.empty() && name != "." && name != "..";
}

// A directory opened by a path with no symlink in it (RESOLVE_NO_SYMLINKS):
// whoever owns a directory on the way cannot swap in a link to steer what
// root does next. -1 with errno otherwise.
int openNoSymlinks(const std::string& path) {
  open_how how{};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const int fd = static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof how));
  if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) return fd;
  // Before Linux 5.6: component by component with O_NOFOLLOW.
  actors::fs::Fd root(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (path == "/") return ::dup(root.get());
  return actors::fs::openBeneath(root.get(), path.substr(1), O_RDONLY | O_DIRECTORY);
}

Error ioError(const std::string& what, const std::string& path, int error) {
  return Error(error == ENOENT ? ErrorKind::NotFound : ErrorKind::IO,
               "Failed to " + what + " '" + path + "': " + std::strerror(error));
}

// config.json, whole or not at all, in the directory `dirFd`.
Try<Nothing> writeConfig(int dirFd, const std::string& dir, const std::string& text) {
  const std::string temp = "config.json.tmp-" + std::to_string(::getpid());
  actors::fs::Fd file(::openat(dirFd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!file.valid()) return ioError("create", dir + "/" + temp, errno);
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(file.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ioError("write", dir + "/" + temp, n < 0 ? errno : EIO);
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(file.get()) != 0) return ioError("fsync", dir + "/" + temp, errno);
  if (::renameat(dirFd, temp.c_str(), dirFd, "config.json") != 0) return ioError("rename", dir + "/config.json", errno);
  if (::fsync(dirFd) != 0) return ioError("fsync", dir, errno);
  return Nothing{};
}

}  // namespace

Try<std::string> bundleDirectory(const std::string& dir) {
  std::string parent, name;
  if (dir.empty() || dir.front() != '/' || !splitDir(dir, parent, name)) {
    return Error(ErrorKind::InvalidArgument, "The bundle directory '" + dir +
                                                 "' is not an absolute path to a new "
                                                 "directory");
  }
  char resolved[PATH_MAX];
  if (::realpath(parent.c_str(), resolved) == nullptr) return ioError("resolve the bundle's parent", parent, errno);
  const std::string canonical = (std::string(resolved) == "/" ? "" : std::string(resolved)) + "/" + name;
  struct stat st {};
  if (::lstat(canonical.c_str(), &st) == 0) {
    return Error(ErrorKind::AlreadyExists, "The bundle directory '" + canonical + "' already exists");
  }
  return canonical;
}

Try<Nothing> writeBundle(const messages::ImageConfig& image, const std::string& rootfs, const BundleOptions& options) {
  const std::string& dir = options.dir;
  std::string parent, name;
  if (dir.empty() || dir.front() != '/' || !splitDir(dir, parent, name)) {
    return Error(ErrorKind::InvalidArgument, "The bundle directory '" + dir + "' is not an absolute path");
  }
  auto user = resolveExecUser(image.user(), rootfs);
  if (user.isError()) {
    return Error(user.error().kind,
                 "Failed to resolve the image's user '" + image.user() + "': " + user.error().message);
  }
  auto config = runtimeConfig(image, rootfs, *user, options);
  if (config.isError()) return config.error();
  actors::fs::Fd parentFd(openNoSymlinks(parent));
  if (!parentFd.valid()) {
    return ioError("open the bundle's parent (a path without symlinks, as bundleDirectory() gives)", parent, errno);
  }
  if (::mkdirat(parentFd.get(), name.c_str(), 0700) != 0) {
    const int error = errno;
    if (error == EEXIST) return Error(ErrorKind::AlreadyExists, "The bundle directory '" + dir + "' already exists");
    return ioError("create the bundle directory", dir, error);
  }
  auto made = [&]() -> Try<Nothing> {
    actors::fs::Fd dirFd(::openat(parentFd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dirFd.valid()) return ioError("open", dir, errno);
    if (::fchmod(dirFd.get(), 0700) != 0) return ioError("chmod", dir, errno);
    if (::symlinkat(rootfs.c_str(), dirFd.get(), "rootfs") != 0) return ioError("link", dir + "/rootfs", errno);
    return writeConfig(dirFd.get(), dir, *config);
  }();
  if (made.isError()) {
    (void)removeBundle(dir, rootfs);
    return Error(made.error().kind, "Failed to write the bundle '" + dir + "': " + made.error().message);
  }
  return Nothing{};
}

Try<bool> removeBundle(const std::string& dir, const std::string& rootfs) {
  std::string parent, name;
  if (!splitDir(dir, parent, name)) return false;
  actors::fs::Fd parentFd(openNoSymlinks(parent));
  // Gone, or no longer reachable without a symlink: not ours to touch.
  if (!parentFd.valid()) return false;
  actors::fs::Fd dirFd(::openat(parentFd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dirFd.valid()) return false;
  // Ours: its rootfs link names our rootfs, or its config.json does.
  char target[PATH_MAX];
  const ssize_t length = ::readlinkat(dirFd.get(), "rootfs", target, sizeof target - 1);
  bool ours = length > 0 && std::string(target, static_cast<std::size_t>(length)) == rootfs;
  if (!ours) {
    actors::fs::Fd config(::openat(dirFd.get(), "config.json", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat st {};
    if (config.valid() && ::fstat(config.get(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size < (1 << 20)) {
      std::string text(static_cast<std::size_t>(st.st_size), '\0');
      const ssize_t n = ::read(config.get(), text.data(), text.size());
      rapidjson::Document doc;
      if (n > 0) doc.Parse(text.data(), static_cast<std::size_t>(n));
      ours = !doc.HasParseError() && doc.IsObject() && doc.HasMember("root") && doc["root"].IsObject() &&
             doc["root"].HasMember("path") && doc["root"]["path"].IsString() &&
             rootfs == doc["root"]["path"].GetString();
    }
  }
  struct stat self {};
  const std::vector<std::string> entries = actors::fs::listDirectory("/proc/self/fd/" + std::to_string(dirFd.get()));
  const bool empty = entries.empty();
  if (!ours) {
    // Killed between mkdir and the link: an empty 0700 directory of root's
    // is what it left; anything else is somebody else's.
    if (!empty || ::fstat(dirFd.get(), &self) != 0 || self.st_uid != ::geteuid() || (self.st_mode & 07777) != 0700) {
      return false;
    }
  } else {
    for (const auto& entry : entries) {
      const bool mine = entry == "config.json" || entry == "rootfs" || entry.rfind("config.json.tmp-", 0) == 0;
      if (mine && ::unlinkat(dirFd.get(), entry.c_str(), 0) != 0 && errno != ENOENT) {
        return ioError("remove", dir + "/" + entry, errno);
      }
    }
  }
  if (::unlinkat(parentFd.get(), name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOTEMPTY && errno != EEXIST &&
      errno != ENOENT) {
    return ioError("remove the bundle", dir, errno);
  }
  return true;
}

}  // namespace prov::provisioner
