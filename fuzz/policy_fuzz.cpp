// libFuzzer target: signature policy parsing (fetcher/policy.hpp) and the
// lookups a parsed policy answers. Any crash is a finding; so is a parsed
// policy whose lookup gives no requirements, or an empty list.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fetcher/policy.hpp"
#include "fetcher/reference.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto policy = prov::fetcher::policy::Policy::parse(text, "fuzz.json");
  if (policy.isError()) return 0;
  for (const char* reference : {"busybox", "reg.example.com:5000/ns/app:v1",
                                "localhost/x@sha256:"
                                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}) {
    auto parsed = prov::fetcher::parseNormalized(reference);
    if (parsed.isError()) std::abort();
    auto applied = policy->forDocker(*parsed);
    if (applied.requirements == nullptr || applied.requirements->empty()) std::abort();
  }
  for (const auto& applied : {policy->forOci("/srv/images/app"), policy->forDockerArchive()}) {
    if (applied.requirements == nullptr || applied.requirements->empty()) std::abort();
  }
  return 0;
}
