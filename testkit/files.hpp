#pragma once

// Small file helpers for tests and benchmark drivers. When one fails it
// reports it (naming the path and errno) through reportFailure(): on stderr
// by default; in a test binary tests/support installs a reporter that fails
// the running test (ADD_FAILURE). No GoogleTest here.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace prov::testing {

// Where a helper's failure goes. The reporter may be called from any
// thread; setFailureReporter returns the one it replaces (nullptr: the
// default, which prints "error: <message>" on stderr).
using FailureReporter = void (*)(const std::string& message);
FailureReporter setFailureReporter(FailureReporter reporter);
void reportFailure(const std::string& message);

// Writes `content` to `path`, creating missing parent directories.
void writeFile(const std::filesystem::path& path, const std::string& content);
// The file's content, or "<error: ...>" (and a failure reported) if unreadable.
std::string readFile(const std::filesystem::path& path);
// `size` bytes of xorshift64 from `seed` (mixed first): incompressible
// content, the same on every run.
std::string pseudoRandomBytes(std::size_t size, std::uint64_t seed = 88172645463325252ull);
void makeDirectory(const std::filesystem::path& path);
// An overlay whiteout: a 0/0 character device.
void makeWhiteout(const std::filesystem::path& path);
// Marks `dir` opaque for overlay (trusted.overlay.opaque=y).
void makeOpaque(const std::filesystem::path& dir);
void makeSymlink(const std::string& target, const std::filesystem::path& link);

// Every path below `dir`, relative to it, sorted; what vanishes while it
// reads (a background cleanup) is left out.
std::vector<std::string> treeOf(const std::filesystem::path& dir);

// Mount points at or below `dir`, from /proc/self/mountinfo.
std::vector<std::string> mountsUnder(const std::filesystem::path& dir);

// Whether this kernel mounts an overlay whose layers are reached through a
// detached copy of a mount (open_tree; Linux 6.15 and later): false only
// when it refuses that (EINVAL) where real paths mount, or has no
// open_tree. Tried in a fresh directory under `scratch`, removed again.
bool overlayTakesDetachedLayers(const std::filesystem::path& scratch);

// RFC 4648 base64url without padding (JWS's encoding).
std::string base64Url(const std::string& text);

// A protobuf repeated string field (or any range of strings) as a vector,
// for EXPECT_EQ.
template <typename Range>
std::vector<std::string> strings(const Range& range) {
  return std::vector<std::string>(range.begin(), range.end());
}

}  // namespace prov::testing
