#pragma once

// The provisioner's blocking disk steps: listing containers, the work dir
// lock.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "provisioner/provisioner.hpp"

namespace prov::provisioner {

// Every container under <root>/containers (nested ones as "a/b"), parents
// before children, each with its rootfses: those on disk under
// backends/<b>/rootfses/, with the layers and config from its record when
// the record lists them. A missing or unreadable record leaves them empty.
Try<std::vector<ContainerInfo>> scanContainers(const std::string& root);

// An exclusive flock on <work_dir>/lock, which then holds this process's
// pid. While another holds it: waits up to `timeout` (0: not at all),
// telling `onWait` the holder's pid once; then Unavailable naming the
// holder's pid (as the kernel reports it, so it is always known).
Try<int> lockWorkDir(const std::string& workDir, std::chrono::milliseconds timeout = {},
                     const std::function<void(pid_t)>& onWait = {});

}  // namespace prov::provisioner
