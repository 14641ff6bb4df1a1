#pragma once

// The provisioner's blocking disk steps: listing containers, the work dir
// lock.

#include <string>
#include <vector>

#include "provisioner/provisioner.hpp"

namespace prov::provisioner {

// Every container under <root>/containers (nested ones as "a/b"), parents
// before children, each with its rootfses: those on disk under
// backends/<b>/rootfses/, with the layers and config from its record when
// the record lists them. A missing or unreadable record leaves them empty.
Try<std::vector<ContainerInfo>> scanContainers(const std::string& root);

// An exclusive, non-blocking flock on <work_dir>/lock, which then holds this
// process's pid. Unavailable naming the holder's pid when taken.
Try<int> lockWorkDir(const std::string& workDir);

}  // namespace prov::provisioner
