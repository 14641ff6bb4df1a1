#pragma once

// File-system helpers shared by the components above the runtime. Blocking:
// call them from the blocking pool (async), never on a strand.

#include <string>

#include "actors/error.hpp"

namespace prov::actors::fs {

// Removes `path` and everything below it. Never follows a symbolic link and
// never descends into another mount: a mount point below `path` fails the
// call (ErrorKind::IO, naming the mount point) before anything under it is
// touched, so a bind mount left inside a rootfs cannot take host files with
// it. Returns true when something was removed, false when `path` did not
// exist.
Try<bool> removeTree(const std::string& path);

// Creates `path` and its missing parents (like mkdir -p).
Try<Nothing> makeDirectories(const std::string& path);

bool exists(const std::string& path);  // lstat succeeds

}  // namespace prov::actors::fs
