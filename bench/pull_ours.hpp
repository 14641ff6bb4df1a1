#pragma once

// The part of bench_pull that runs this project's own store.
//
// bench_pull re-executes itself as
//   bench_pull --ours --registry=127.0.0.1:PORT
//              --reference=127.0.0.1:PORT/bench/<workload>:latest
//              --store=<scratch mount>/ours-store --rss-report=<file>
// for every timed run, in a fresh process, and times it from spawn to exit;
// the peak RSS reported is this child's VmHWM, read after runOursOnce
// returns. Contract for runOursOnce:
//   - The registry is Debian's docker-registry over plain HTTP on 127.0.0.1,
//     no auth; the image is an OCI manifest (not an index) for linux/amd64
//     with gzip layers (application/vnd.oci.image.layer.v1.tar+gzip).
//   - `storeDir` does not exist when it is called (its parent, the scratch
//     ext4 mount, does): the store is cold. It is removed after the run.
//   - Done means: manifest and config fetched and validated, every layer
//     downloaded with its digest verified, its diff_id verified, and
//     extracted (whiteouts, opaque directories, hardlinks and symlinks
//     applied as the image store keeps layers) under `storeDir`, with the
//     image recorded in the store, so that a provision could follow without
//     the network. Nothing is provisioned (no rootfs, no container).
//   - No data needs to be durable (no fsync needed): `sync` runs before the
//     timer starts, not after.
//   - Returns 0 on success; otherwise prints "ours: Failed to ..." to stderr
//     and returns non-zero. bench_pull then reports the workload's ours_s as
//     null with the error, and keeps measuring the peers.
//   - No helper executables: everything happens in this process (threads are
//     fine); stdout and stderr go to <dir>/logs/ours.log.

#include <string>

namespace prov::bench {

struct OursArgs {
  std::string registryHostPort;  // "127.0.0.1:PORT"
  std::string reference;         // "127.0.0.1:PORT/bench/<workload>:latest"
  std::string storeDir;          // the store's root; absent on entry
};

int runOursOnce(const OursArgs& args);

}  // namespace prov::bench
