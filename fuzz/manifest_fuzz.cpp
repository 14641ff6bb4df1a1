// libFuzzer target: manifest, index and image config parsing. The first
// byte picks the Content-Type the document is said to have.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fetcher/digest.hpp"
#include "fetcher/manifest.hpp"

namespace mt = prov::fetcher::mediatype;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const char* kTypes[] = {"",
                                 mt::kOciManifest,
                                 mt::kOciIndex,
                                 mt::kDockerSchema2,
                                 mt::kDockerList,
                                 mt::kDockerSchema1Signed,
                                 "application/json"};
  const char* contentType = kTypes[data[0] % (sizeof(kTypes) / sizeof(kTypes[0]))];
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto doc = prov::fetcher::parseManifestDocument(body, contentType);
  if (doc.isSome()) {
    // Every digest that got through must be valid.
    auto check = [](const prov::messages::Descriptor& d) {
      if (prov::fetcher::validateDigest(d.digest()).isError()) std::abort();
    };
    if (auto* m = std::get_if<prov::messages::Manifest>(&*doc)) {
      for (const auto& l : m->layers()) check(l);
      if (m->kind() != prov::messages::Manifest::DOCKER_SCHEMA1) check(m->config());
      if (m->kind() == prov::messages::Manifest::DOCKER_SCHEMA1) (void)prov::fetcher::schema1Config(*m);
    } else {
      const auto& index = std::get<prov::messages::Index>(*doc);
      for (const auto& d : index.manifests()) check(d);
      (void)prov::fetcher::selectManifest(index, prov::fetcher::hostPlatform());
    }
  }
  auto config = prov::fetcher::parseImageConfig(body);
  if (config.isSome()) {
    for (const auto& id : config->diff_ids()) {
      if (prov::fetcher::validateDigest(id).isError()) std::abort();
    }
  }
  return 0;
}
