#pragma once

// Image trust: whether the signature policy (containers-policy.json(5),
// fetcher/policy.hpp) lets an image in, checked before any of its layers is
// fetched and again each time a stored image is handed out (the policy may
// have changed since it was pulled).
//
// A check finds the policy's requirements for the image (by transport and
// scope) and asks each in turn; all must allow:
//   insecureAcceptAnything  allows;
//   reject                  refuses;
//   signedBy (GPGKeys)      needs one simple signing signature of the
//                           manifest, read from the lookaside that
//                           registries.d gives for the image, that gpg
//                           verifies with one of the requirement's keys
//                           (a keyring of their own, fetcher/gpg.hpp) and
//                           whose payload names the manifest's digest and
//                           an identity the requirement's signedIdentity
//                           accepts for the reference pulled;
//   sigstoreSigned          needs one sigstore signature attached in the
//                           registry (fetcher/sigstore.hpp; read only where
//                           registries.d sets use-sigstore-attachments)
//                           made by one of the requirement's public keys,
//                           whose payload names the manifest and an
//                           identity signedIdentity accepts.
// Signatures are looked for only for registry images: a signature
// requirement on an OCI layout or a docker-archive refuses it.
//
// The policy, its key files and registries.d are read once, by load(): a
// change to them applies to a Trust loaded after it (the next command; an
// embedder makes a new Provisioner).
//
// An acceptance stands for an hour (TrustOptions::recheckAfter); after
// that the image is checked again, and while its signatures cannot be
// reached (Unavailable, Timeout: a registry or lookaside down) the last
// acceptance keeps standing, with a warning logged. It is
// recorded, keyed by the policy's digest (its file, the key files it names
// and registries.d), the reference and the manifest digest, in memory and in <store>/trust/<manifest hex>/<key hex>
// (JSON: the scope, what accepted it, the accepted signatures' digests), so a stored image under an unchanged policy is
// handed out with no gpg run and no fetch. A refusal is not recorded. The records are an addition to the store's
// layout: a store without them has simply verified nothing yet.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "actors/future.hpp"
#include "fetcher/http.hpp"
#include "fetcher/policy.hpp"
#include "fetcher/registries_d.hpp"
#include "fetcher/sigstore.hpp"
#include "messages/image.pb.h"
#include "store/store.hpp"

namespace prov::actors {
class Runtime;
}

namespace prov::fetcher::gpg {
class Keyring;
}

namespace prov::store {

using actors::Future;
using actors::Try;

struct TrustOptions {
  std::string policyFile;     // containers-policy.json(5)
  std::string registriesDir;  // containers-registries.d(5); empty: /etc/containers/registries.d
  std::string recordDir;      // where acceptances are kept (<store>/trust); empty: memory only
  // How long an acceptance stands before the image is checked again (its
  // signatures read and verified anew): what a signature removed from the
  // lookaside, or a key that expired, takes to be noticed.
  std::chrono::seconds recheckAfter{3600};
};

class Trust {
 public:
  // Lookaside GETs over http(s) (404 ends the list); none: such a
  // lookaside is an error.
  using HttpGet = std::function<Future<fetcher::HttpResponse>(fetcher::HttpRequest)>;

  // The sigstore signatures attached to an image's manifest (none when
  // there are none); none: such a requirement refuses every image.
  using AttachmentsGet = std::function<Future<std::vector<fetcher::sigstore::Attachment>>(
      const messages::Image& image, const std::string& manifestDigest)>;

  // Reads the policy, the key files it names and registries.d:
  // InvalidArgument naming the file and what is wrong, so a bad policy
  // stops a command at its start, not at its first pull.
  static Try<std::shared_ptr<Trust>> load(actors::Runtime& runtime, TrustOptions options, HttpGet httpGet,
                                          AttachmentsGet attachmentsGet = nullptr);
  ~Trust();

  // Whether `image` (its normalised key `key`) at `manifestDigest` may be
  // used. Forbidden naming the image, the scope and why when the policy
  // refuses it; Unavailable or IO when the signatures could not be read.
  Future<Verification> check(const messages::Image& image, const std::string& key, const std::string& manifestDigest);

  // The newest acceptance recorded in `recordDir` for `key` at
  // `manifestDigest` (under `policyDigest` when not empty), if any;
  // blocking.
  static std::optional<Verification> recorded(const std::string& recordDir, const std::string& key,
                                              const std::string& manifestDigest, const std::string& policyDigest);

  // Of the policy, the key files it names and registries.d.
  const std::string& digest() const;

  // The records of manifests not in `keep` (digests) removed; blocking.
  static void pruneRecords(const std::string& recordDir, const std::vector<std::string>& keep);

 private:
  class Impl;
  explicit Trust(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace prov::store
