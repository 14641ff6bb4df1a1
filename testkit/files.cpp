#include "testkit/files.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

namespace prov::testing {

namespace {
std::atomic<FailureReporter> reporter{nullptr};
}  // namespace

FailureReporter setFailureReporter(FailureReporter next) { return reporter.exchange(next); }

void reportFailure(const std::string& message) {
  if (FailureReporter r = reporter.load()) {
    r(message);
  } else {
    std::cerr << "error: " << message << std::endl;
  }
}

void writeFile(const std::filesystem::path& path, const std::string& content) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) reportFailure(std::string("Failed to write '") + path.string() + "'");
}

std::string pseudoRandomBytes(std::size_t size, std::uint64_t seed) {
  std::string bytes(size, '\0');
  // splitmix64 of the seed: no seed gives all zeros, and nearby seeds give
  // unrelated streams.
  std::uint64_t x = seed + 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  if (x == 0) x = 1;
  for (char& c : bytes) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  return bytes;
}

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    reportFailure(std::string("Failed to read '") + path.string() + "': " + std::strerror(error));
    return "<error: unreadable>";
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void makeDirectory(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) reportFailure(std::string("Failed to create '") + path.string() + "': " + ec.message());
}

void makeWhiteout(const std::filesystem::path& path) {
  makeDirectory(path.parent_path());
  if (::mknod(path.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
    const int error = errno;
    reportFailure(std::string("Failed to make whiteout '") + path.string() + "': " + std::strerror(error));
  }
}

void makeOpaque(const std::filesystem::path& dir) {
  makeDirectory(dir);
  if (::setxattr(dir.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
    const int error = errno;
    reportFailure(std::string("Failed to mark '") + dir.string() + "' opaque: " + std::strerror(error));
  }
}

void makeSymlink(const std::string& target, const std::filesystem::path& link) {
  makeDirectory(link.parent_path());
  if (::symlink(target.c_str(), link.c_str()) != 0) {
    const int error = errno;
    reportFailure(std::string("Failed to link '") + link.string() + "': " + std::strerror(error));
  }
}

std::vector<std::string> treeOf(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> paths;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    paths.push_back(fs::relative(it->path(), dir).string());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

bool overlayTakesDetachedLayers(const std::filesystem::path& scratch) {
  const std::filesystem::path dir = scratch / "detached-layers-probe";
  for (const char* sub : {"lower", "upper", "work", "upper2", "work2", "mnt"}) {
    std::filesystem::create_directories(dir / sub);
  }
  auto mountOnce = [&](const std::string& base, const char* upper, const char* work) {
    const std::string data = "lowerdir=" + base + "/lower,upperdir=" + base + "/" + upper + ",workdir=" + base + "/" +
                             work;
    if (::mount("overlay", (dir / "mnt").c_str(), "overlay", 0, data.c_str()) != 0) return errno;
    ::umount2((dir / "mnt").c_str(), MNT_DETACH);
    return 0;
  };
  // Only a refusal counts: where overlay fails by real paths too, or
  // through the copy for another reason, the checks that depend on the
  // answer should run and say what is wrong.
  bool taken = true;
  if (mountOnce(dir.string(), "upper", "work") == 0) {
    const int tree = ::open_tree(AT_FDCWD, dir.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree >= 0) {
      taken = mountOnce("/proc/self/fd/" + std::to_string(tree), "upper2", "work2") != EINVAL;
      ::close(tree);
    } else {
      taken = false;  // no open_tree: nothing is named through a copy
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return taken;
}

std::vector<std::string> mountsUnder(const std::filesystem::path& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::vector<std::string> found;
  const std::string prefix = dir.string();
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devices, root, target;
    fields >> id >> parent >> devices >> root >> target;
    if (target == prefix || target.rfind(prefix + "/", 0) == 0) found.push_back(target);
  }
  return found;
}

std::string base64Url(const std::string& text) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  unsigned value = 0;
  int bits = 0;
  for (unsigned char c : text) {
    value = (value << 8) | c;
    bits += 8;
    while (bits >= 6) {
      out += kAlphabet[(value >> (bits - 6)) & 63];
      bits -= 6;
    }
  }
  if (bits > 0) out += kAlphabet[(value << (6 - bits)) & 63];
  return out;
}

}  // namespace prov::testing
