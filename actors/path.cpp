#include "actors/path.hpp"

namespace prov::actors::path {

bool walk(std::vector<std::string_view>& parts, std::string_view path, bool allowDotDot) {
  while (!path.empty()) {
    const auto slash = path.find('/');
    const std::string_view part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!allowDotDot || parts.empty()) return false;
      parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  return true;
}

std::string join(const std::vector<std::string_view>& parts) {
  std::string out;
  for (const auto& part : parts) {
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

Try<std::string> cleanRelative(std::string_view path) {
  if (!path.empty() && path.front() == '/') return Error(ErrorKind::InvalidArgument, "it has an absolute path");
  std::vector<std::string_view> parts;
  if (!walk(parts, path, false)) return Error(ErrorKind::InvalidArgument, "its path has a '..' component");
  return join(parts);
}

}  // namespace prov::actors::path
