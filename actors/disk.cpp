#include "actors/disk.hpp"

#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

namespace prov::actors::fs {

namespace {

Disk kernel;
std::atomic<Disk*> current{&kernel};

}  // namespace

const char* name(DiskCall call) {
  static constexpr const char* kNames[kDiskCallKinds] = {"open",   "read",    "write",  "sync", "mkdir",
                                                         "rename", "remove",  "link",   "attr", "xattr",
                                                         "mount",  "unmount", "resolve"};
  return kNames[static_cast<int>(call)];
}

Disk& disk() { return *current.load(std::memory_order_acquire); }

Disk* installDisk(Disk* replacement) {
  Disk* before = current.exchange(replacement ? replacement : &kernel, std::memory_order_acq_rel);
  return before == &kernel ? nullptr : before;
}

int Disk::before(DiskCall, const char*) { return 0; }

// Runs `call` unless before() refuses it.
#define PROV_DISK_CALL(kind, path, call)        \
  if (const int refused = before(kind, path)) { \
    errno = refused;                            \
    return -1;                                  \
  }                                             \
  return call

int Disk::openat(int dirFd, const char* path, int flags, mode_t mode) {
  // Close-on-exec always: an agent that forks and execs while we work
  // hands its child none of our descriptors.
  PROV_DISK_CALL(DiskCall::Open, path, ::openat(dirFd, path, flags | O_CLOEXEC, mode));
}

int Disk::openBeneath(int rootFd, const char* path, int flags) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  PROV_DISK_CALL(DiskCall::Resolve, path, static_cast<int>(::syscall(SYS_openat2, rootFd, path, &how, sizeof(how))));
}

ssize_t Disk::read(int fd, void* data, std::size_t size) { PROV_DISK_CALL(DiskCall::Read, "", ::read(fd, data, size)); }

ssize_t Disk::write(int fd, const void* data, std::size_t size) {
  PROV_DISK_CALL(DiskCall::Write, "", ::write(fd, data, size));
}

ssize_t Disk::pwrite(int fd, const void* data, std::size_t size, off_t offset) {
  PROV_DISK_CALL(DiskCall::Write, "", ::pwrite(fd, data, size, offset));
}

ssize_t Disk::copyFileRange(int in, off_t* inOffset, int out, off_t* outOffset, std::size_t size) {
  PROV_DISK_CALL(DiskCall::Write, "", ::copy_file_range(in, inOffset, out, outOffset, size, 0));
}

int Disk::cloneFile(int out, int in) { PROV_DISK_CALL(DiskCall::Write, "", ::ioctl(out, FICLONE, in)); }

int Disk::fsync(int fd) { PROV_DISK_CALL(DiskCall::Sync, "", ::fsync(fd)); }

int Disk::mkdirat(int dirFd, const char* path, mode_t mode) {
  PROV_DISK_CALL(DiskCall::Mkdir, path, ::mkdirat(dirFd, path, mode));
}

int Disk::mknodat(int dirFd, const char* path, mode_t mode, dev_t device) {
  PROV_DISK_CALL(DiskCall::Mkdir, path, ::mknodat(dirFd, path, mode, device));
}

int Disk::renameat(int fromDirFd, const char* from, int toDirFd, const char* to) {
  PROV_DISK_CALL(DiskCall::Rename, to, ::renameat(fromDirFd, from, toDirFd, to));
}

int Disk::unlinkat(int dirFd, const char* path, int flags) {
  PROV_DISK_CALL(DiskCall::Remove, path, ::unlinkat(dirFd, path, flags));
}

int Disk::linkat(int fromDirFd, const char* from, int toDirFd, const char* to, int flags) {
  PROV_DISK_CALL(DiskCall::Link, to, ::linkat(fromDirFd, from, toDirFd, to, flags));
}

int Disk::symlinkat(const char* target, int dirFd, const char* path) {
  PROV_DISK_CALL(DiskCall::Link, path, ::symlinkat(target, dirFd, path));
}

int Disk::fchown(int fd, uid_t uid, gid_t gid) { PROV_DISK_CALL(DiskCall::Attr, "", ::fchown(fd, uid, gid)); }

int Disk::fchownat(int dirFd, const char* path, uid_t uid, gid_t gid, int flags) {
  PROV_DISK_CALL(DiskCall::Attr, path, ::fchownat(dirFd, path, uid, gid, flags));
}

int Disk::fchmod(int fd, mode_t mode) { PROV_DISK_CALL(DiskCall::Attr, "", ::fchmod(fd, mode)); }

int Disk::fchmodat(int dirFd, const char* path, mode_t mode, int flags) {
  PROV_DISK_CALL(DiskCall::Attr, path, ::fchmodat(dirFd, path, mode, flags));
}

int Disk::futimens(int fd, const struct timespec times[2]) {
  PROV_DISK_CALL(DiskCall::Attr, "", ::futimens(fd, times));
}

int Disk::utimensat(int dirFd, const char* path, const struct timespec times[2], int flags) {
  PROV_DISK_CALL(DiskCall::Attr, path, ::utimensat(dirFd, path, times, flags));
}

int Disk::ftruncate(int fd, off_t size) { PROV_DISK_CALL(DiskCall::Attr, "", ::ftruncate(fd, size)); }

int Disk::fsetxattr(int fd, const char* name, const void* value, std::size_t size, int flags) {
  PROV_DISK_CALL(DiskCall::Xattr, "", ::fsetxattr(fd, name, value, size, flags));
}

int Disk::lsetxattr(const char* path, const char* name, const void* value, std::size_t size, int flags) {
  PROV_DISK_CALL(DiskCall::Xattr, path, ::lsetxattr(path, name, value, size, flags));
}

int Disk::mount(const char* source, const char* target, const char* type, unsigned long flags, const void* data) {
  PROV_DISK_CALL(DiskCall::Mount, target, ::mount(source, target, type, flags, data));
}

int Disk::umount2(const char* target, int flags) {
  PROV_DISK_CALL(DiskCall::Unmount, target, ::umount2(target, flags));
}

int Disk::moveMount(int fromDirFd, const char* fromPath, int toDirFd, const char* toPath, unsigned flags) {
  PROV_DISK_CALL(DiskCall::Mount, toPath,
                 static_cast<int>(::syscall(SYS_move_mount, fromDirFd, fromPath, toDirFd, toPath, flags)));
}

int Disk::createFileSystem(int fsFd, const char* target) {
  PROV_DISK_CALL(DiskCall::Mount, target,
                 static_cast<int>(::syscall(SYS_fsconfig, fsFd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0)));
}

#undef PROV_DISK_CALL

}  // namespace prov::actors::fs
