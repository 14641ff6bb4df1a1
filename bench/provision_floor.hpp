#pragma once

// The floor under bench_provision: the system calls of an overlay provision,
// in the work dir's layout, made from plain threads with nothing of ours
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

}  // namespace prov::bench
