#pragma once

// Lexical work on relative paths (no file system involved): the one path
// cleaner that the extractor and the local sources share. Components are
// split on '/'; empty ones and "." are dropped.

#include <string>
#include <string_view>
#include <vector>

#include "actors/error.hpp"

namespace prov::actors::path {

// Appends the components of `path` to `parts`; ".." removes the last one.
// False (parts then undefined) for a ".." when `allowDotDot` is false or
// there is nothing left to remove.
bool walk(std::vector<std::string_view>& parts, std::string_view path, bool allowDotDot);

// "a", "b" -> "a/b".
std::string join(const std::vector<std::string_view>& parts);

// "./a//b/" -> "a/b", "./" -> "". InvalidArgument for an absolute path ("it
// has an absolute path") or a ".." component ("its path has a '..'
// component").
Try<std::string> cleanRelative(std::string_view path);

}  // namespace prov::actors::path
