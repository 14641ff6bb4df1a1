#pragma once

// Where signatures are kept, in the containers-registries.d(5) format that
// podman and skopeo read from /etc/containers/registries.d: YAML files
// (*.yaml, merged) that give a lookaside base URL per registry scope.
//
//   default-docker:
//     lookaside: file:///var/lib/containers/sigstore
//   docker:
//     registry.example.com/team:
//       lookaside: https://sigs.example.com/team
//
// For an image, the first scope (the same order as a policy's docker
// scopes: the reference, its repository and namespaces, host:port, the
// host's wildcard domains; then default-docker) that gives `lookaside`
// (or its old name `sigstore`) wins. None: the built-in default,
// file:///var/lib/containers/sigstore for root, as containers/image.
// `use-sigstore-attachments: true` makes sigstore signatures attached in the
// registry (fetcher/sigstore.hpp) be read too; per setting, the first scope
// that sets it wins, and it is off by default.
// Signature N (1, 2, ...) of a manifest is then at
//   <base>/<repository path, without the host>@sha256=<hex>/signature-N
// and the first one missing ends the list. Keys that only writers use
// (lookaside-staging, sigstore-staging) and unknown keys are ignored;
// `default-docker` twice, or one scope in two files, is an error.

#include <map>
#include <optional>
#include <string>

#include "fetcher/types.hpp"
#include "messages/image.pb.h"

namespace prov::fetcher {

class RegistriesD {
 public:
  // Every *.yaml in `dir`, in name order; a missing `dir` is an empty
  // configuration. InvalidArgument naming the file and the problem.
  static Try<RegistriesD> load(const std::string& dir);

  // The lookaside base URL for a normalised reference.
  std::string lookasideFor(const messages::ImageReference& reference) const;

  bool useSigstoreAttachments(const messages::ImageReference& reference) const;

  // The URL of signature `n` (from 1) of `manifestDigest` ("sha256:<hex>").
  static std::string signatureUrl(const std::string& base, const messages::ImageReference& reference,
                                  const std::string& manifestDigest, int n);

  // sha256 of what was read: a verification cached under it held.
  const std::string& digest() const { return digest_; }

 private:
  struct Namespace {
    std::string lookaside;            // "" when it names none
    std::optional<bool> attachments;  // use-sigstore-attachments, when set
  };
  Namespace defaultDocker_;
  std::map<std::string, Namespace> docker_;
  std::string digest_;
};

}  // namespace prov::fetcher
