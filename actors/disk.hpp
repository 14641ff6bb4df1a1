#pragma once

// The seam between the library and the kernel for what it does to the file
// system and the mount table (LevelDB's Env is the model). Every such call
// in actors/, store/, backend/, fetcher/ and provisioner/ goes through
// fs::disk(): a Disk whose methods are the system calls of the same name
// (the result, or -1 with errno set) behind one check.
//
// The check is before(call, path): 0 lets the call through to the kernel,
// an errno fails it with that errno, untouched. The kernel's Disk lets
// everything through; a test installs one that fails the N-th call of a
// kind, counts calls, or stops the process at a chosen call
// (tests/support/faulty_disk.hpp). The cost is one virtual call per system
// call.
//
// Blocking, like the calls it stands for: use it off the strands.

#include <fcntl.h>
#include <sys/types.h>

#include <cstddef>
#include <ctime>

namespace prov::actors::fs {

// What a call does, for counting and failing calls by kind.
enum class DiskCall {
  Open,     // openat
  Read,     // read
  Write,    // write, pwrite, copy_file_range, FICLONE
  Sync,     // fsync
  Mkdir,    // mkdirat, mknodat
  Rename,   // renameat
  Remove,   // unlinkat (files and directories)
  Link,     // linkat, symlinkat
  Attr,     // fchown(at), fchmod(at), utimensat, futimens, ftruncate
  Xattr,    // fsetxattr, lsetxattr
  Mount,    // mount, move_mount, fsconfig's create
  Unmount,  // umount2
  Resolve,  // openat2 beneath a root (openBeneath)
};
inline constexpr int kDiskCallKinds = 13;
const char* name(DiskCall call);

class Disk {
 public:
  virtual ~Disk() = default;

  int openat(int dirFd, const char* path, int flags, mode_t mode = 0);
  // openat2 resolved beneath rootFd without following a symlink, magic
  // link or mount crossing (ENOSYS where the kernel lacks openat2).
  int openBeneath(int rootFd, const char* path, int flags);
  ssize_t read(int fd, void* data, std::size_t size);
  ssize_t write(int fd, const void* data, std::size_t size);
  ssize_t pwrite(int fd, const void* data, std::size_t size, off_t offset);
  ssize_t copyFileRange(int in, off_t* inOffset, int out, off_t* outOffset, std::size_t size);
  // ioctl(out, FICLONE, in): `out` shares `in`'s blocks.
  int cloneFile(int out, int in);
  int fsync(int fd);
  int mkdirat(int dirFd, const char* path, mode_t mode);
  int mknodat(int dirFd, const char* path, mode_t mode, dev_t device);
  int renameat(int fromDirFd, const char* from, int toDirFd, const char* to);
  int unlinkat(int dirFd, const char* path, int flags);
  int linkat(int fromDirFd, const char* from, int toDirFd, const char* to, int flags);
  int symlinkat(const char* target, int dirFd, const char* path);
  int fchown(int fd, uid_t uid, gid_t gid);
  int fchownat(int dirFd, const char* path, uid_t uid, gid_t gid, int flags);
  int fchmod(int fd, mode_t mode);
  int fchmodat(int dirFd, const char* path, mode_t mode, int flags);
  int futimens(int fd, const struct timespec times[2]);
  int utimensat(int dirFd, const char* path, const struct timespec times[2], int flags);
  int ftruncate(int fd, off_t size);
  int fsetxattr(int fd, const char* name, const void* value, std::size_t size, int flags);
  int lsetxattr(const char* path, const char* name, const void* value, std::size_t size, int flags);
  int mount(const char* source, const char* target, const char* type, unsigned long flags, const void* data);
  int umount2(const char* target, int flags);
  // move_mount(2): attaches a mount made with the new mount API.
  int moveMount(int fromDirFd, const char* fromPath, int toDirFd, const char* toPath, unsigned flags);
  // fsconfig(2) FSCONFIG_CMD_CREATE: makes the file system of context
  // `fsFd`, to be attached at `target` (named for counting and failing).
  int createFileSystem(int fsFd, const char* target);

 protected:
  // Before each call: 0 lets it through, an errno fails it. `path` is what
  // the call names (relative to its directory fd), or "" for an fd call.
  virtual int before(DiskCall call, const char* path);
};

// The Disk the library uses: the kernel's, unless one was installed.
Disk& disk();

// Makes `replacement` the Disk of the whole process (nullptr: the
// kernel's again) and returns the one it replaces. Install before the work
// that should see it starts, and keep it alive until it is replaced.
Disk* installDisk(Disk* replacement);

}  // namespace prov::actors::fs
