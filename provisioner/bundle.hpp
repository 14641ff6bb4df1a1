#pragma once

// OCI runtime bundles: what runc (or crun) runs after a provision. A bundle
// is a directory holding config.json (runtime spec 1.0.2) and a `rootfs`
// symbolic link to the provisioned rootfs, which config.json names by its
// absolute path (`root.path`; runc refuses a symlinked root, so the link is
// for people and tools, not for the runtime). Nothing is mounted for a
// bundle: destroying it leaves nothing behind.
//
// config.json is made from the image config the way Docker and containerd
// make theirs:
//   process.args   Entrypoint + Cmd; BundleOptions may replace either, as
//                  `docker run --entrypoint X IMAGE ARGS...` does;
//   process.env    the image's Env, with PATH added when it has none (and
//                  TERM=xterm with a terminal);
//   process.cwd    WorkingDir, "/" when empty;
//   process.user   User resolved against the rootfs's own /etc/passwd and
//                  /etc/group, as runc's libcontainer/user resolves it
//                  (resolveExecUser below);
// and the defaults every runtime expects: pid, network, ipc, uts and mount
// namespaces; /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys and
// /sys/fs/cgroup; the capability set containerd and Docker give a container
// (bounding always; effective and permitted for uid 0 only); no new
// privileges; RLIMIT_NOFILE 1024; runc's masked and read-only paths; every
// device denied but the ones runc always creates. The README compares it,
// field by field, with what `umoci unpack` writes.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "actors/error.hpp"
#include "messages/image.pb.h"

namespace prov::provisioner {

struct BundleOptions {
  // Created with mode 0700 (it shows image content, as the store does); it
  // must not exist yet, and its parent must. Absolute.
  std::string dir;
  // Replace the image's Entrypoint (an empty vector clears it; Cmd is then
  // cleared too unless `cmd` is given) and Cmd.
  std::optional<std::vector<std::string>> entrypoint;
  std::optional<std::vector<std::string>> cmd;
  // process.terminal: runc refuses a terminal without a tty (--console-socket).
  bool terminal = false;
  // Provisioner::writeBundle fills it with the container id's last part
  // when empty ('_' becomes '-').
  std::string hostname;
};

// The user a process runs as, resolved.
struct ExecUser {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::vector<std::uint32_t> additionalGids;
  std::string home = "/";
};

// `user` ("", NAME, UID, NAME:GROUP, UID:GID, ...) against the text of an
// /etc/passwd and an /etc/group (nullopt: the file does not exist), as runc's
// libcontainer/user.GetExecUser does: a name must be found (NotFound
// otherwise, naming it and the file), a number passes through when not
// found (gid 0 then); without a group, the passwd entry's gid and, as
// additional gids, the groups listing the user by name.
actors::Try<ExecUser> resolveExecUser(const std::string& user, const std::optional<std::string>& passwd,
                                      const std::optional<std::string>& group);

// The same against `rootfs`/etc/passwd and /etc/group, each opened with every
// symlink resolved inside `rootfs` (an image's /etc/passwd may be a link to
// anything; it is never followed out of the rootfs).
actors::Try<ExecUser> resolveExecUser(const std::string& user, const std::string& rootfs);

// config.json's text for a process of `image` in `rootfs` (absolute).
// InvalidArgument when there is nothing to run (neither Entrypoint nor Cmd,
// and no override).
actors::Try<std::string> runtimeConfig(const messages::ImageConfig& image, const std::string& rootfs,
                                       const ExecUser& user, const BundleOptions& options);

// The bundle directory `dir` will be: absolute, its parent resolved to a
// path without symlinks (realpath), the name kept. InvalidArgument when it
// is not absolute or names no new entry; AlreadyExists when it exists.
// Blocking.
actors::Try<std::string> bundleDirectory(const std::string& dir);

// Makes options.dir (as bundleDirectory() gives it; mode 0700) with
// config.json and the rootfs link. Everything below the parent is made
// relative to descriptors, the parent opened without following any
// symlink: whoever owns a directory on the path cannot steer root's mkdir,
// chmod or writes elsewhere. Checks first and makes nothing on an error;
// what it made is removed again when a later step fails. Blocking.
actors::Try<actors::Nothing> writeBundle(const messages::ImageConfig& image, const std::string& rootfs,
                                         const BundleOptions& options);

// Removes what writeBundle made in `dir` for `rootfs` (config.json, its
// temporaries, the rootfs link), then `dir` when that leaves it empty.
// Only a directory that is ours: reached without a symlink, with a rootfs
// link or a config.json naming `rootfs` (or empty, 0700 and root's: a
// writeBundle killed after its mkdir). Anything else somebody put there
// stays, with `dir`. False when there was nothing of ours. Blocking.
actors::Try<bool> removeBundle(const std::string& dir, const std::string& rootfs);

}  // namespace prov::provisioner
