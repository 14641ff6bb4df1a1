#pragma once

// Image signatures as containers-signature(5) defines them: what a
// signature claims (its payload), how a signature file is framed, and
// whether the identity it claims satisfies a policy's signedIdentity.
// Checking the cryptography is elsewhere (gpg.hpp, trust.cpp).
//
// A payload is a small JSON document, signed whole:
//   {"critical": {"type": "atomic container signature",
//                 "image": {"docker-manifest-digest": "sha256:<hex>"},
//                 "identity": {"docker-reference": "host/repo:tag"}},
//    "optional": {"creator": "...", "timestamp": 1700000000}}
// Parsed strictly, as containers/image does: in `critical` and below, an
// unknown or missing key refuses the payload (a claim one reader skipped
// must not be trusted by another); in `optional`, unknown keys are ignored.
// Sigstore payloads have type "cosign container image signature" and may
// have "optional": null.

#include <optional>
#include <string>
#include <string_view>

#include "fetcher/policy.hpp"
#include "fetcher/types.hpp"
#include "messages/image.pb.h"

namespace prov::fetcher::signature {

enum class Format {
  SimpleSigning,  // an OpenPGP message that holds the payload
  Sigstore,       // a payload with its signature beside it (an annotation)
};

inline constexpr std::string_view kSimpleSigningType = "atomic container signature";
inline constexpr std::string_view kSigstoreType = "cosign container image signature";

struct Payload {
  std::string manifestDigest;   // "sha256:<hex>", as signed
  std::string dockerReference;  // as signed, not normalised
};

// Corruption, saying what is wrong, when `json` is not a payload of
// `format`.
Try<Payload> parsePayload(std::string_view json, Format format);

// One signature as a lookaside server keeps it: a bare OpenPGP message
// (simple signing), or "\0<format>\n<data>" with format "simple-signing".
// A sigstore-json blob, an ASCII-armoured message or anything else is
// Corruption (containers/image reads these the same way).
Try<std::string> simpleSigningOf(std::string_view blob);

// Whether a signature claiming `signedReference` may stand for `intended`
// (the normalised reference being pulled; none for a local source) under
// `identity`, as containers-policy.json(5) defines the kinds. A claim that
// is not a reference matches nothing.
bool identityMatches(const policy::SignedIdentity& identity, const std::optional<messages::ImageReference>& intended,
                     const std::string& signedReference);

}  // namespace prov::fetcher::signature
