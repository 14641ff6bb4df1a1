// libFuzzer target: image reference parsing and normalisation. Any crash,
// or a reference that parses but does not round-trip, is a finding.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fetcher/reference.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = prov::fetcher::parseImageReference(text);
  if (parsed.isError()) return 0;
  // What parses must print back to something that parses to the same.
  auto again = prov::fetcher::parseImageReference(prov::fetcher::toString(*parsed));
  if (again.isError() || again->SerializeAsString() != parsed->SerializeAsString()) std::abort();
  auto normal = prov::fetcher::normalize(*parsed);
  if (normal.registry().empty() || (normal.tag().empty() && normal.digest().empty())) std::abort();
  (void)prov::fetcher::registryPort(normal.registry());
  return 0;
}
