#pragma once

// Signature policies in the containers-policy.json(5) format, the one
// podman, CRI-O and skopeo read from /etc/containers/policy.json: which
// images a pull may take, by transport and scope. This file parses a policy
// (strictly, as containers/image does: a policy that would be read
// differently by another tool is refused at start) and finds the
// requirements that apply to an image. Checking the signatures they ask for
// is not here.
//
// The shape:
//   {"default": [REQUIREMENT, ...],
//    "transports": {"docker": {SCOPE: [REQUIREMENT, ...], "": [...]},
//                   "oci": {...}, "docker-archive": {"": [...]}}}
// Every requirement of the list that applies must allow the image. The
// list that applies is the most specific scope's (never merged):
//   docker: "host[:port]/repo:tag" (or "@sha256:..."), "host[:port]/repo",
//     each namespace "host[:port]/a", then "host[:port]", then the
//     wildcards of the host without its port ("*.example.com", "*.com"),
//     then the transport's "", then `default`;
//   oci: the layout's absolute path, then each parent directory (not "/"),
//     then "", then `default`;
//   docker-archive: "" only, then `default`.
// Requirement types: insecureAcceptAnything, reject, signedBy (keyType
// GPGKeys; exactly one of keyPath, keyPaths, keyData (base64)) and
// sigstoreSigned (exactly one of keyPath, keyPaths, keyData, keyDatas);
// both with an optional signedIdentity: matchRepoDigestOrExact (the
// default), matchRepository, matchExact, exactReference{dockerReference},
// exactRepository{dockerRepository}, remapIdentity{prefix, signedPrefix}.
// What containers/image parses but cannot check (keyType
// X509Certificates, signedBaseLayer, sigstore's fulcio, pki and rekor
// keys) is refused here, named, rather than failing every pull later.
// Unknown transports are ignored, as there.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "actors/error.hpp"
#include "messages/image.pb.h"

namespace prov::fetcher::policy {

using actors::Try;

struct SignedIdentity {
  enum class Kind {
    MatchRepoDigestOrExact,
    MatchRepository,
    MatchExact,
    ExactReference,
    ExactRepository,
    RemapIdentity
  };
  Kind kind = Kind::MatchRepoDigestOrExact;
  std::string reference;     // exactReference: normalised, with a tag or digest
  std::string repository;    // exactRepository: normalised
  std::string prefix;        // remapIdentity
  std::string signedPrefix;  // remapIdentity
};

struct Requirement {
  enum class Type { InsecureAcceptAnything, Reject, SignedBy, SigstoreSigned };
  Type type = Type::Reject;
  std::vector<std::string> keyPaths;  // keyPath, keyPaths
  std::vector<std::string> keyData;   // keyData, keyDatas: the key bytes (decoded from base64)
  SignedIdentity identity;
};

// The requirements that apply to an image, and where they come from.
struct Applied {
  std::string transport;  // "docker", "oci", "docker-archive"
  std::string scope;      // the scope that matched; "" the transport's default; "default" the policy's
  const std::vector<Requirement>* requirements = nullptr;
  // "transports.docker[\"docker.io/library\"]", "default": for messages.
  std::string describe() const;
};

class Policy {
 public:
  // InvalidArgument naming `file` and what is wrong ("invalid policy in
  // 'p.json': unknown key \"x\" in ...").
  static Try<Policy> parse(std::string_view json, const std::string& file);
  static Try<Policy> load(const std::string& file);

  // For a registry image: `reference` normalised, with a tag or a digest.
  Applied forDocker(const messages::ImageReference& reference) const;
  // For an OCI layout: its absolute path, without its tag.
  Applied forOci(const std::string& path) const;
  Applied forDockerArchive() const;

  // Every requirement list, with where it is ("default",
  // "transports.docker[\"host\"]").
  std::vector<Applied> all() const;

  // sha256 of the file's bytes: what a verification cached under it held.
  const std::string& digest() const { return digest_; }

 private:
  Applied lookUp(const std::string& transport, const std::vector<std::string>& scopes) const;

  std::vector<Requirement> default_;
  std::map<std::string, std::map<std::string, std::vector<Requirement>>> transports_;
  std::string digest_;
};

// The docker scopes for `reference` (normalised), most specific first,
// without "" and `default`.
std::vector<std::string> dockerScopes(const messages::ImageReference& reference);

}  // namespace prov::fetcher::policy
