#pragma once

// Sigstore signatures as containers/image reads them (without Fulcio or
// Rekor): signatures "attached" in the image's own repository, under the
// tag sha256-<manifest hex>.sig, as cosign writes them. That tag names an
// OCI manifest whose every layer is one signature: the layer's blob is the
// signed payload (fetcher/signature.hpp, type "cosign container image
// signature"), its media type application/vnd.dev.cosign.simplesigning.v1+json,
// and its annotation dev.cosignproject.cosign/signature the signature over
// the payload's bytes, base64. Keys are PEM public keys (SubjectPublicKeyInfo
// or PKCS#1 RSA): ECDSA (SHA-256; DER or raw r||s signatures), RSA
// (PKCS#1 v1.5, SHA-256) or Ed25519; checked with OpenSSL's EVP.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/future.hpp"
#include "fetcher/types.hpp"
#include "messages/image.pb.h"

namespace prov::fetcher {
class RegistryClient;
}

namespace prov::fetcher::sigstore {

inline constexpr std::string_view kPayloadMediaType = "application/vnd.dev.cosign.simplesigning.v1+json";
inline constexpr const char* kSignatureAnnotation = "dev.cosignproject.cosign/signature";

// One attached signature.
struct Attachment {
  std::string where;      // "sha256-<hex>.sig layer 2", for messages
  std::string mediaType;  // the layer's
  std::string payload;    // the blob, as signed
  std::string signature;  // decoded from the annotation; "" when absent
};

// The tag a manifest's signatures are attached under.
std::string attachmentTag(const std::string& manifestDigest);

// The layers of an attachment manifest (media type `mediaType`), with
// their annotations. Corruption when it is not an OCI image manifest.
struct Layer {
  messages::Descriptor descriptor;
  std::map<std::string, std::string> annotations;
};
Try<std::vector<Layer>> parseAttachmentManifest(std::string_view body, std::string_view mediaType);

// The signatures attached to `manifestDigest` of `reference` (normalised),
// read from the repositories the client pulls it from, in that order
// (mirrors first, then the registry): the first that has the tag; none
// when none has it. Each blob at most 4 MiB (16 MiB together) and
// verified. Unavailable, naming the image, when they cannot be read (any
// failure but the tag's absence: never an answer of the policy's kind).
actors::Future<std::vector<Attachment>> readAttachments(std::shared_ptr<RegistryClient> client,
                                                        const messages::ImageReference& reference,
                                                        const std::optional<messages::Credentials>& credentials,
                                                        const std::string& manifestDigest);

// A policy requirement's public keys.
class PublicKeys {
 public:
  // `pems`: one key each (its first PEM block). InvalidArgument naming
  // `what` when one is not a public key of a supported type.
  static Try<std::shared_ptr<PublicKeys>> parse(const std::vector<std::string>& pems, const std::string& what);
  ~PublicKeys();
  PublicKeys(const PublicKeys&) = delete;
  PublicKeys& operator=(const PublicKeys&) = delete;

  // The key that made `signature` over `payload`, as "sha256:<hex>" of its
  // DER SubjectPublicKeyInfo; none when no key did.
  std::optional<std::string> verify(std::string_view payload, std::string_view signature) const;

 private:
  PublicKeys() = default;
  struct Key;
  std::vector<std::unique_ptr<Key>> keys_;
};

}  // namespace prov::fetcher::sigstore
