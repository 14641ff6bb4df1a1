// libFuzzer target: WWW-Authenticate challenges and Docker config files.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fetcher/auth.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto challenges = prov::fetcher::parseWwwAuthenticate(text);
  if (challenges.isSome()) {
    if (challenges->empty()) std::abort();
    for (const auto& c : *challenges) {
      if (c.scheme.empty()) std::abort();
    }
  }
  (void)prov::fetcher::parseDockerConfig(text);
  (void)prov::fetcher::parseAuthUrl(text);
  return 0;
}
