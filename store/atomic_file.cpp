#include "store/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "actors/disk.hpp"
#include "actors/fs.hpp"
#include "actors/random.hpp"

namespace prov::store {

using actors::Error;
using actors::ErrorKind;
using actors::Nothing;
using actors::Try;
using actors::fs::disk;

namespace {
Error ioError(const std::string& doing, const std::string& path) {
  return Error(ErrorKind::IO, "Failed to " + doing + " '" + path + "': " + std::strerror(errno));
}
}  // namespace

Try<Nothing> syncDirectory(const std::string& path) {
  const int fd = disk().openat(AT_FDCWD, path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ioError("open", path);
  const int rc = disk().fsync(fd);
  ::close(fd);
  if (rc != 0) return ioError("fsync", path);
  return Nothing{};
}

Try<Nothing> removeStaleTemporaries(const std::string& dir) {
  for (const auto& name : actors::fs::listDirectory(dir)) {
    if (name.find(".tmp-") == std::string::npos) continue;
    const std::string path = dir + "/" + name;
    if (disk().unlinkat(AT_FDCWD, path.c_str(), 0) != 0 && errno != ENOENT) return ioError("remove", path);
  }
  return Nothing{};
}

Try<Nothing> writeFileAtomically(const std::string& path, std::string_view content, bool sync) {
  const std::string temp = path + ".tmp-" + actors::randomName();
  const int fd = disk().openat(AT_FDCWD, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ioError("create", temp);
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = disk().write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      auto error = ioError("write", temp);
      ::close(fd);
      disk().unlinkat(AT_FDCWD, temp.c_str(), 0);
      return error;
    }
    done += static_cast<std::size_t>(n);
  }
  if (sync && disk().fsync(fd) != 0) {
    auto error = ioError("fsync", temp);
    ::close(fd);
    disk().unlinkat(AT_FDCWD, temp.c_str(), 0);
    return error;
  }
  ::close(fd);
  if (disk().renameat(AT_FDCWD, temp.c_str(), AT_FDCWD, path.c_str()) != 0) {
    auto error = ioError("rename into place", path);
    disk().unlinkat(AT_FDCWD, temp.c_str(), 0);
    return error;
  }
  if (!sync) return Nothing{};
  const auto slash = path.rfind('/');
  auto synced = syncDirectory(slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash)));
  if (synced.isError()) return synced.error().withContext("Replaced '" + path + "' but not durably");
  return synced;
}

}  // namespace prov::store
