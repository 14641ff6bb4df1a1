#pragma once

// The floors under bench_provision and bench_backend: the system calls of an
// overlay provision (in the work dir's layout) or of an overlay backend's
// provision+destroy pair, made from plain threads with nothing of ours
// around them (no actors, futures, records' encoding or checks).

#include <cstddef>
#include <string>
#include <vector>

#include "actors/error.hpp"

namespace prov::bench {

using actors::Error;
using actors::ErrorKind;
using actors::Nothing;
using actors::Try;

// `count` provisions of containers `prefix`0.. under the provisioner root
// `root` (provisioner/paths.hpp), `threads` at a time, over `layers` (top
// first): for each, the container's directory and its record (a temporary
// file renamed into place), the rootfs and scratch directories, the overlay
// (fsopen .. move_mount), the mount's propagation (slave, then shared), and
// the record rewritten. Returns provisions per second; the first failed call
// ends the round with its error. What it mounted stays (for a next round);
// the caller unmounts it. With `viewRoot` (BackendOptions::overlayViewRoot),
// the overlay's directories are named through a detached copy of its
// mount, as the overlay backend names them.
Try<double> provisionFloor(const std::string& root, const std::vector<std::string>& layers, const std::string& prefix,
                           std::size_t count, std::size_t threads, const std::string& viewRoot = "");

// `count` provision+destroy pairs over `layers` (uppermost first), under
// `root` (floor-rootfses/ and floor-backend/scratch/), `threads` at a time:
// for each, the rootfs and its scratch's upperdir and workdir made, the
// overlay (fsopen .. move_mount, 'volatile' if asked) and its propagation
// (slave, then shared), then the lazy unmount, the rootfs's rmdir and the
// scratch removed as it is read. Returns pairs per second; the first failed
// call ends the round with its error (a mount it made may stay).
Try<double> pairsFloor(const std::string& root, const std::vector<std::string>& layers, std::size_t count,
                       std::size_t threads, bool isVolatile);

}  // namespace prov::bench
