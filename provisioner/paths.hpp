#pragma once

// The provisioner's part of the work dir, drawn once:
//
//   <work_dir>/
//     lock                                      one process per work dir (flock)
//     store/docker/                             the Docker/OCI image store (store/paths.hpp)
//     store/appc/                               the AppC image store (store/paths.hpp)
//     provisioner/containers/<id>/
//       layers                                  ContainerRecord (what its rootfses use)
//       backends/<backend>/rootfses/<uuid>/     a rootfs handed out
//       backends/<backend>/scratch/<uuid>/      the backend's state (overlay upper/work)
//       containers/<child>/...                  nested containers ("parent/child")

#include <string>
#include <vector>

namespace prov::provisioner::paths {

inline std::string lockFile(const std::string& workDir) { return workDir + "/lock"; }
inline std::string dockerStore(const std::string& workDir) { return workDir + "/store/docker"; }
inline std::string appcStore(const std::string& workDir) { return workDir + "/store/appc"; }
inline std::string root(const std::string& workDir) { return workDir + "/provisioner"; }

// The directory holding the containers under `parent` (the root, or a
// container's directory for its nested ones), and one of them.
inline std::string children(const std::string& parent) { return parent + "/containers"; }
inline std::string child(const std::string& parent, const std::string& name) { return children(parent) + "/" + name; }

// "a/b" -> <root>/containers/a/containers/b
inline std::string container(const std::string& root, const std::string& id) {
  std::string dir = root;
  std::size_t start = 0;
  while (start <= id.size()) {
    const std::size_t slash = id.find('/', start);
    dir = child(dir, id.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return dir;
}
inline std::string record(const std::string& containerDir) { return containerDir + "/layers"; }
inline std::string backendsDir(const std::string& containerDir) { return containerDir + "/backends"; }
inline std::string backendDir(const std::string& containerDir, const std::string& backend) {
  return backendsDir(containerDir) + "/" + backend;
}
inline std::string rootfses(const std::string& containerDir, const std::string& backend) {
  return backendDir(containerDir, backend) + "/rootfses";
}
inline std::string rootfs(const std::string& containerDir, const std::string& backend, const std::string& id) {
  return rootfses(containerDir, backend) + "/" + id;
}
// rootfs(dir, backend, id) -> id.
inline std::string rootfsIdOf(const std::string& rootfsPath) { return rootfsPath.substr(rootfsPath.rfind('/') + 1); }

}  // namespace prov::provisioner::paths
