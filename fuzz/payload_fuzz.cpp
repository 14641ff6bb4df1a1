// libFuzzer target: what a signature claims (fetcher/signature.hpp) and
// the identities it may stand for. Any crash is a finding; so is a payload
// accepted in one format whose digest is not a digest.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fetcher/digest.hpp"
#include "fetcher/reference.hpp"
#include "fetcher/signature.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace prov::fetcher;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)signature::simpleSigningOf(text);
  for (auto format : {signature::Format::SimpleSigning, signature::Format::Sigstore}) {
    auto payload = signature::parsePayload(text, format);
    if (payload.isError()) continue;
    if (validateDigest(payload->manifestDigest).isError()) std::abort();
    auto intended = parseNormalized("reg.example.com:5000/ns/app:v1");
    if (intended.isError()) std::abort();
    for (auto kind :
         {policy::SignedIdentity::Kind::MatchRepoDigestOrExact, policy::SignedIdentity::Kind::MatchRepository,
          policy::SignedIdentity::Kind::MatchExact, policy::SignedIdentity::Kind::RemapIdentity}) {
      policy::SignedIdentity identity;
      identity.kind = kind;
      identity.prefix = "reg.example.com:5000/ns";
      identity.signedPrefix = "docker.io/library";
      (void)signature::identityMatches(identity, *intended, payload->dockerReference);
    }
  }
  return 0;
}
