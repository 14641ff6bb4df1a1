#include "store/trust.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "actors/async.hpp"
#include "actors/fs.hpp"
#include "actors/log.hpp"
#include "fetcher/auth.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/gpg.hpp"
#include "fetcher/json.hpp"
#include "fetcher/reference.hpp"
#include "fetcher/signature.hpp"
#include "fetcher/sigstore.hpp"
#include "fetcher/url.hpp"
#include "store/atomic_file.hpp"
#include "store/paths.hpp"

namespace prov::store {

using actors::Error;
using actors::ErrorKind;
using actors::Nothing;
using fetcher::policy::Applied;
using fetcher::policy::Requirement;
using fetcher::policy::SignedIdentity;

namespace {

constexpr int kMaxSignatures = 128;
constexpr std::size_t kMaxSignatureBytes = 4 << 20;

// One signature as read, and where from (for messages).
struct Signature {
  std::string where;  // "signature-2"
  std::string blob;
};

// A signature file: none when it is not there; at most 4 MiB, a regular
// file (a FIFO or a device is an error, not a wait).
Try<std::optional<std::string>> readSignatureFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return Error(ErrorKind::IO, "Failed to read the signature '" + path + "': " + std::strerror(errno));
  }
  struct stat st {};
  std::string bytes;
  std::string failure;
  if (::fstat(fd, &st) != 0) {
    failure = std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    failure = "not a regular file";
  } else if (st.st_size > static_cast<off_t>(kMaxSignatureBytes)) {
    failure = "over 4 MiB";
  } else {
    bytes.resize(static_cast<std::size_t>(st.st_size));
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        failure = n < 0 ? std::strerror(errno) : "it shrank while read";
        break;
      }
      done += static_cast<std::size_t>(n);
    }
  }
  ::close(fd);
  if (!failure.empty()) return Error(ErrorKind::IO, "Failed to read the signature '" + path + "': " + failure);
  return std::optional<std::string>(std::move(bytes));
}

std::string identityName(const SignedIdentity& identity) {
  using Kind = SignedIdentity::Kind;
  switch (identity.kind) {
    case Kind::MatchRepository: return "matchRepository";
    case Kind::MatchExact: return "matchExact";
    case Kind::ExactReference: return "exactReference " + identity.reference;
    case Kind::ExactRepository: return "exactRepository " + identity.repository;
    case Kind::RemapIdentity: return "remapIdentity " + identity.prefix + " -> " + identity.signedPrefix;
    default: return "matchRepoDigestOrExact";
  }
}

std::string toJson(const std::string& key, const Verification& verdict) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("image");
  w.String(key.c_str());
  w.Key("policy");
  w.String(verdict.policyFile.c_str());
  w.Key("policy_digest");
  w.String(verdict.policyDigest.c_str());
  w.Key("scope");
  w.String(verdict.scope.c_str());
  w.Key("by");
  w.StartArray();
  for (const auto& by : verdict.by) w.String(by.c_str());
  w.EndArray();
  w.Key("signatures");
  w.StartArray();
  for (const auto& s : verdict.signatures) w.String(s.c_str());
  w.EndArray();
  w.Key("at");
  w.Int64(verdict.at);
  w.EndObject();
  return buffer.GetString();
}

std::optional<Verification> fromJson(const std::string& text, std::string* key = nullptr) {
  rapidjson::Document doc;
  auto fail = [](const std::string& why) { return Error(ErrorKind::Corruption, why); };
  if (fetcher::json::parse(doc, text, fail, 1 << 20).isError() || !doc.IsObject()) return std::nullopt;
  Verification verdict;
  auto policy = fetcher::json::string(doc, "policy", true, fail);
  auto scope = fetcher::json::string(doc, "scope", true, fail);
  auto policyDigest = fetcher::json::string(doc, "policy_digest", true, fail);
  auto by = fetcher::json::strings(doc, "by", true, fail);
  auto signatures = fetcher::json::strings(doc, "signatures", false, fail);
  auto at = fetcher::json::integer(doc, "at", true, fail);
  if (policy.isError() || scope.isError() || policyDigest.isError() || by.isError() || signatures.isError() ||
      at.isError()) {
    return std::nullopt;
  }
  verdict.policyDigest = *policyDigest;
  verdict.policyFile = *policy;
  verdict.scope = *scope;
  verdict.by = *by;
  verdict.signatures = *signatures;
  verdict.at = *at;
  if (key != nullptr) {
    auto image = fetcher::json::string(doc, "image", true, fail);
    if (image.isError()) return std::nullopt;
    *key = *image;
  }
  return verdict;
}

}  // namespace

class Trust::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(actors::Runtime& runtime, TrustOptions options, HttpGet httpGet, AttachmentsGet attachmentsGet)
      : runtime_(runtime), options_(std::move(options)), httpGet_(std::move(httpGet)),
        attachmentsGet_(std::move(attachmentsGet)) {}

  Try<Nothing> load() {
    auto policy = fetcher::policy::Policy::load(options_.policyFile);
    if (policy.isError()) return policy.error();
    policy_ = std::move(*policy);
    const std::string dir = options_.registriesDir.empty() ? "/etc/containers/registries.d" : options_.registriesDir;
    auto registries = fetcher::RegistriesD::load(dir);
    if (registries.isError()) return registries.error();
    registries_ = std::move(*registries);
    // The format of what is recorded and how it is judged: a change to
    // either is a new version, so no acceptance from before it counts.
    std::string material = "provisioner trust 1\n" + policy_.digest() + "\n" + registries_.digest() + "\n";
    for (const Applied& list : policy_.all()) {
      for (std::size_t i = 0; i < list.requirements->size(); ++i) {
        const Requirement& r = (*list.requirements)[i];
        if (r.type != Requirement::Type::SignedBy && r.type != Requirement::Type::SigstoreSigned) continue;
        auto keys = std::make_shared<Keys>();
        keys->what = "the keys of " + list.describe() + "[" + std::to_string(i) + "] in '" + options_.policyFile + "'";
        // Read now: a key file that is missing stops the command here.
        for (const auto& path : r.keyPaths) {
          auto bytes = actors::fs::readFile(path);
          if (bytes.isError()) {
            return Error(ErrorKind::InvalidArgument, "Failed to read the key file '" + path + "' that " +
                                                         list.describe() + "[" + std::to_string(i) + "] of '" +
                                                         options_.policyFile + "' names: " + bytes.error().message);
          }
          keys->blobs.push_back(std::move(*bytes));
        }
        keys->blobs.insert(keys->blobs.end(), r.keyData.begin(), r.keyData.end());
        for (const auto& blob : keys->blobs) material += fetcher::sha256Digest(blob) + "\n";
        if (r.type == Requirement::Type::SigstoreSigned) {
          auto parsed = fetcher::sigstore::PublicKeys::parse(keys->blobs, keys->what);
          if (parsed.isError()) return parsed.error();
          keys->publicKeys = std::move(*parsed);
        }
        keys_[&r] = std::move(keys);
      }
    }
    digest_ = fetcher::sha256Digest(material);
    bool gpg = false;
    for (const auto& [requirement, keys] : keys_) gpg = gpg || requirement->type == Requirement::Type::SignedBy;
    if (gpg) fetcher::gpg::initialize();  // at start, not in the middle of a run (gpg.hpp)
    return Nothing{};
  }

  const std::string& digest() const { return digest_; }

  Future<Verification> check(const messages::Image& image, const std::string& key, const std::string& manifestDigest) {
    const std::string cacheKey = fetcher::sha256Digest(digest_ + "\n" + key + "\n" + manifestDigest);
    if (image.type() == messages::Image::DOCKER) {
      // A reference built by hand (not parsed) must still be one: its
      // repository becomes part of a lookaside path.
      if (fetcher::parseImageReference(fetcher::toString(fetcher::normalize(image.reference()))).isError()) {
        return Error(ErrorKind::InvalidArgument, "The image reference of '" + key + "' is not a valid reference");
      }
    }
    const std::int64_t now = unixNow();
    std::optional<Verification> held;  // an acceptance past recheckAfter
    {
      std::lock_guard lock(mutex_);
      if (auto hit = accepted_.find(cacheKey); hit != accepted_.end()) {
        if (fresh(hit->second, now)) return hit->second;
        held = hit->second;
      }
    }
    auto self = shared_from_this();
    const std::string recordPath = options_.recordDir.empty()
                                       ? std::string()
                                       : options_.recordDir + "/" + paths::hexOf(manifestDigest) + "/" +
                                             paths::hexOf(cacheKey);
    // A stored acceptance, then the signatures the policy asks for.
    return actors::async(runtime_,
                         [recordPath]() -> std::optional<Verification> {
                           if (recordPath.empty()) return std::nullopt;
                           auto text = actors::fs::readFile(recordPath);
                           if (text.isError()) return std::nullopt;
                           return fromJson(*text);
                         })
        .then([self, image, key, manifestDigest, cacheKey, recordPath, now,
               held](const std::optional<Verification>& stored) mutable -> Future<Verification> {
          if (stored && self->fresh(*stored, now)) return self->remember(cacheKey, *stored);
          if (stored && (!held || stored->at > held->at)) held = stored;
          const Applied applied = self->applies(image);
          bool simple = false, sigstore = false;
          for (const auto& r : *applied.requirements) {
            simple = simple || r.type == Requirement::Type::SignedBy;
            sigstore = sigstore || r.type == Requirement::Type::SigstoreSigned;
          }
          auto found = std::make_shared<Found>();
          Future<Nothing> read = Nothing{};
          if (image.type() == messages::Image::DOCKER) {
            const auto reference = fetcher::normalize(image.reference());
            if (simple) {
              found->lookaside = self->registries_.lookasideFor(reference);
              read = self->readSignatures(found->lookaside, reference, manifestDigest)
                         .then([found](const std::vector<Signature>& signatures) {
                           found->signatures = signatures;
                           return Nothing{};
                         });
            }
            found->attachmentsOn = sigstore && self->registries_.useSigstoreAttachments(reference);
            if (found->attachmentsOn) {
              if (!self->attachmentsGet_) {
                return Error(ErrorKind::Unsupported, "Failed to read the sigstore signatures of '" + key +
                                                         "': no registry client is set up for it");
              }
              read = read.then([self, found, image, manifestDigest] {
                return self->attachmentsGet_(image, manifestDigest)
                    .then([found](const std::vector<fetcher::sigstore::Attachment>& attachments) {
                      found->attachments = attachments;
                      return Nothing{};
                    });
              });
            }
          }
          return read
              .then([self, image, key, manifestDigest, cacheKey, recordPath, applied, found]() -> Future<Verification> {
                return actors::async(self->runtime_, [=]() -> Try<Verification> {
                  auto verdict = self->evaluate(image, key, manifestDigest, applied, *found);
                  if (verdict.isError()) return verdict.error();
                  if (!recordPath.empty()) {
                    // Best effort: without it the next command checks again.
                    const std::string dir = recordPath.substr(0, recordPath.rfind('/'));
                    if (actors::fs::makeDirectories(dir).isSome()) {
                      (void)writeFileAtomically(recordPath, toJson(key, *verdict), /*sync=*/false);
                    }
                  }
                  return verdict;
                });
              })
              .then([self, cacheKey](const Verification& verdict) { return self->remember(cacheKey, verdict); })
              .repair([key, held](const Future<Verification>& failed) -> Future<Verification> {
                // The signatures cannot be reached: the last acceptance
                // stands until they can (it only ever lets in what was let
                // in); a refusal, or any other failure, does not.
                if (!held || failed.isDiscarded() ||
                    (failed.failure().kind != ErrorKind::Unavailable && failed.failure().kind != ErrorKind::Timeout)) {
                  return failed;
                }
                actors::log(actors::LogLevel::Warn, "trust.stale",
                            {{"image", key}, {"error", failed.failure().message}});
                return *held;
              });
        });
  }

 private:
  // What a check read for the requirements that apply.
  struct Found {
    std::string lookaside;              // the base URL simple signing signatures were read at
    std::vector<Signature> signatures;  // from there
    bool attachmentsOn = false;         // registries.d's use-sigstore-attachments, for the image
    std::vector<fetcher::sigstore::Attachment> attachments;
  };

  struct Keys {
    std::vector<std::string> blobs;
    std::string what;
    std::shared_ptr<fetcher::sigstore::PublicKeys> publicKeys;  // sigstoreSigned
    std::mutex mutex;
    std::shared_ptr<fetcher::gpg::Keyring> ring;  // made at its first use
  };

  static std::int64_t unixNow() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // An acceptance still stands: made less than recheckAfter ago (and not
  // in the future: a clock set back does not make it last).
  bool fresh(const Verification& verdict, std::int64_t now) const {
    return verdict.at <= now && verdict.at > now - options_.recheckAfter.count();
  }

  Verification remember(const std::string& cacheKey, const Verification& verdict) {
    std::lock_guard lock(mutex_);
    accepted_[cacheKey] = verdict;
    return verdict;
  }

  Applied applies(const messages::Image& image) const {
    switch (image.type()) {
      case messages::Image::DOCKER: return policy_.forDocker(fetcher::normalize(image.reference()));
      case messages::Image::OCI_LAYOUT: {
        std::error_code ec;
        auto path = std::filesystem::weakly_canonical(std::filesystem::absolute(image.path()), ec);
        return policy_.forOci(path.string());
      }
      default: return policy_.forDockerArchive();
    }
  }

  // Signature 1, 2, ... until the first that is not there.
  Future<std::vector<Signature>> readSignatures(const std::string& base, const messages::ImageReference& reference,
                                                const std::string& manifestDigest) {
    if (base.starts_with("file://")) {
      // file:///path (or file://localhost/path); the path is not percent-decoded.
      std::string root = base.substr(std::string("file://").size());
      if (root.starts_with("localhost/")) root = root.substr(std::string("localhost").size());
      if (root.empty() || root.front() != '/' || root.find('%') != std::string::npos) {
        return Error(ErrorKind::InvalidArgument, "The signature lookaside '" + base +
                                                     "' is not a file:///absolute/path URL without %-escapes "
                                                     "(registries.d)");
      }
      const std::string fileBase = "file://" + root;
      return actors::async(runtime_, [fileBase, reference, manifestDigest]() -> Try<std::vector<Signature>> {
        std::vector<Signature> found;
        for (int n = 1;; ++n) {
          const std::string url = fetcher::RegistriesD::signatureUrl(fileBase, reference, manifestDigest, n);
          const std::string path = url.substr(std::string("file://").size());
          auto bytes = readSignatureFile(path);
          if (bytes.isError()) return bytes.error();
          if (!*bytes) return found;
          if (n > kMaxSignatures) {
            return Error(ErrorKind::ResourceExhausted,
                         "more than " + std::to_string(kMaxSignatures) + " signatures at '" + fileBase + "'");
          }
          found.push_back({"signature-" + std::to_string(n), std::move(**bytes)});
        }
      });
    }
    if (!base.starts_with("http://") && !base.starts_with("https://")) {
      return Error(ErrorKind::InvalidArgument,
                   "The signature lookaside '" + base + "' is neither a file:// nor an http(s):// URL (registries.d)");
    }
    if (!httpGet_) {
      return Error(ErrorKind::Unsupported, "The signature lookaside '" + base + "' needs HTTP, which is not set up");
    }
    auto found = std::make_shared<std::vector<Signature>>();
    return readOver(base, reference, manifestDigest, 1, found);
  }

  Future<std::vector<Signature>> readOver(const std::string& base, const messages::ImageReference& reference,
                                          const std::string& manifestDigest, int n,
                                          const std::shared_ptr<std::vector<Signature>>& found) {
    const std::string text = fetcher::RegistriesD::signatureUrl(base, reference, manifestDigest, n);
    auto url = fetcher::parseUrl(text);
    if (url.isError()) return Error(ErrorKind::InvalidArgument, "The signature URL '" + text + "' is not a URL");
    fetcher::HttpRequest request;
    request.url = *url;
    request.maxBody = kMaxSignatureBytes;
    auto self = shared_from_this();
    return httpGet_(request).then([self, base, reference, manifestDigest, n, found,
                                   text](const fetcher::HttpResponse& response) -> Future<std::vector<Signature>> {
      if (response.status == 404) return *found;
      if (response.status != 200) {
        return Error(ErrorKind::Unavailable,
                     "Failed to read the signature '" + text + "': HTTP " + std::to_string(response.status));
      }
      if (n > kMaxSignatures) {
        return Error(ErrorKind::ResourceExhausted,
                     "more than " + std::to_string(kMaxSignatures) + " signatures at '" + base + "'");
      }
      found->push_back({"signature-" + std::to_string(n), response.body});
      return self->readOver(base, reference, manifestDigest, n + 1, found);
    });
  }

  Try<Verification> evaluate(const messages::Image& image, const std::string& key, const std::string& manifestDigest,
                             const Applied& applied, const Found& found) {
    const std::string& lookaside = found.lookaside;
    const std::vector<Signature>& signatures = found.signatures;
    Verification verdict;
    verdict.policyFile = options_.policyFile;
    verdict.scope = applied.describe();
    verdict.at = unixNow();
    verdict.policyDigest = digest_;
    auto refuse = [&](const std::string& why) {
      return Error(ErrorKind::Forbidden, "The signature policy '" + options_.policyFile + "' refuses '" + key + "' (" +
                                             applied.describe() + "): " + why);
    };
    std::optional<messages::ImageReference> intended;
    if (image.type() == messages::Image::DOCKER) intended = fetcher::normalize(image.reference());
    for (const Requirement& r : *applied.requirements) {
      switch (r.type) {
        case Requirement::Type::InsecureAcceptAnything: verdict.by.push_back("insecureAcceptAnything"); break;
        case Requirement::Type::Reject: return refuse("the scope says reject");
        case Requirement::Type::SigstoreSigned: {
          if (image.type() != messages::Image::DOCKER) {
            return refuse("it asks for sigstoreSigned, and signatures are read only for registry images");
          }
          if (!found.attachmentsOn) {
            return refuse(
                "it asks for sigstoreSigned and no sigstore signature was looked for: registries.d does not set "
                "use-sigstore-attachments for it");
          }
          if (found.attachments.empty()) {
            return refuse("it asks for sigstoreSigned and the image has no sigstore signature (no " +
                          fetcher::sigstore::attachmentTag(manifestDigest) + " in its repository)");
          }
          auto accepted = sigstoreSigned(r, *intended, manifestDigest, found.attachments);
          if (accepted.isError()) return refuse(accepted.error().message);
          verdict.by.push_back("sigstoreSigned key " + accepted->first);
          verdict.signatures.push_back(accepted->second);
          break;
        }
        case Requirement::Type::SignedBy: {
          if (image.type() != messages::Image::DOCKER) {
            return refuse("it asks for signedBy, and signatures are read only for registry images");
          }
          if (signatures.empty()) {
            return refuse("it asks for signedBy and the image is not signed (no signature at '" +
                          fetcher::RegistriesD::signatureUrl(lookaside, *intended, manifestDigest, 1) + "')");
          }
          auto accepted = signedBy(r, *intended, manifestDigest, signatures);
          if (accepted.isError()) {
            if (accepted.error().kind != ErrorKind::Forbidden) return accepted.error();
            return refuse(accepted.error().message);
          }
          verdict.by.push_back("signedBy key " + accepted->first);
          verdict.signatures.push_back(accepted->second);
          break;
        }
      }
    }
    return verdict;
  }

  // One signature that passes `r`: (its signer, its digest); else
  // Forbidden with every signature's reason.
  Try<std::pair<std::string, std::string>> signedBy(const Requirement& r, const messages::ImageReference& intended,
                                                    const std::string& manifestDigest,
                                                    const std::vector<Signature>& signatures) {
    auto ring = keyringFor(r);
    if (ring.isError()) return ring.error();
    std::vector<std::string> reasons;
    for (const auto& signature : signatures) {
      auto reason = [&](const std::string& why) { reasons.push_back(signature.where + ": " + why); };
      auto message = fetcher::signature::simpleSigningOf(signature.blob);
      if (message.isError()) {
        reason(message.error().message);
        continue;
      }
      auto verified = (*ring)->verify(*message);
      if (verified.isError()) {
        if (verified.error().kind == ErrorKind::IO) return verified.error();
        reason(verified.error().message);
        continue;
      }
      if (const std::string refused = claimsRefused(verified->payload, fetcher::signature::Format::SimpleSigning, r,
                                                    intended, manifestDigest);
          !refused.empty()) {
        reason(refused);
        continue;
      }
      return std::make_pair(verified->signer, fetcher::sha256Digest(signature.blob));
    }
    return noneAccepted("signedBy", reasons);
  }

  // One attachment that passes `r`: (its key's fingerprint, its digest, of
  // payload and signature); else Forbidden with every attachment's reason.
  Try<std::pair<std::string, std::string>> sigstoreSigned(
      const Requirement& r, const messages::ImageReference& intended, const std::string& manifestDigest,
      const std::vector<fetcher::sigstore::Attachment>& attachments) {
    const auto& keys = *keys_.at(&r)->publicKeys;
    std::vector<std::string> reasons;
    for (const auto& attachment : attachments) {
      auto reason = [&](const std::string& why) { reasons.push_back(attachment.where + ": " + why); };
      if (attachment.mediaType != fetcher::sigstore::kPayloadMediaType) {
        reason("it is a " + attachment.mediaType + ", not a signature");
        continue;
      }
      const auto signer = keys.verify(attachment.payload, attachment.signature);
      if (!signer) {
        reason(attachment.signature.empty() ? "it has no signature"
                                            : "its signature was not made by the policy's keys (or was altered)");
        continue;
      }
      if (const std::string refused = claimsRefused(attachment.payload, fetcher::signature::Format::Sigstore, r,
                                                    intended, manifestDigest);
          !refused.empty()) {
        reason(refused);
        continue;
      }
      return std::make_pair(*signer, fetcher::sha256Digest(attachment.payload + "\n" + attachment.signature));
    }
    return noneAccepted("sigstoreSigned", reasons);
  }

  // Why a payload whose signature verified does not stand for this image
  // under `r`: not a payload, another manifest, an identity signedIdentity
  // does not accept; "" when it does.
  static std::string claimsRefused(const std::string& text, fetcher::signature::Format format, const Requirement& r,
                                   const messages::ImageReference& intended, const std::string& manifestDigest) {
    auto payload = fetcher::signature::parsePayload(text, format);
    if (payload.isError()) return payload.error().message;
    if (payload->manifestDigest != manifestDigest) {
      return "it signs manifest " + payload->manifestDigest + ", not this image's " + manifestDigest;
    }
    if (!fetcher::signature::identityMatches(r.identity, intended, payload->dockerReference)) {
      return "it signs \"" + payload->dockerReference + "\", which signedIdentity " + identityName(r.identity) +
             " does not accept for " + fetcher::toString(intended);
    }
    return "";
  }

  // Forbidden: no signature passed `requirement`, with each one's reason
  // (one per signature looked at).
  static Error noneAccepted(const std::string& requirement, const std::vector<std::string>& reasons) {
    std::string why = "it asks for " + requirement + " and ";
    why += reasons.size() == 1 ? "its signature is not accepted: "
                               : "none of its " + std::to_string(reasons.size()) + " signatures is accepted: ";
    for (std::size_t i = 0; i < reasons.size(); ++i) why += (i == 0 ? "" : "; ") + reasons[i];
    return Error(ErrorKind::Forbidden, why);
  }

  Try<std::shared_ptr<fetcher::gpg::Keyring>> keyringFor(const Requirement& r) {
    const std::shared_ptr<Keys>& keys = keys_.at(&r);
    std::lock_guard lock(keys->mutex);
    if (!keys->ring) {
      auto ring = fetcher::gpg::Keyring::create(keys->blobs, keys->what);
      if (ring.isError()) return ring.error();
      keys->ring = std::move(*ring);
    }
    return keys->ring;
  }

  actors::Runtime& runtime_;
  const TrustOptions options_;
  const HttpGet httpGet_;
  const AttachmentsGet attachmentsGet_;
  fetcher::policy::Policy policy_;
  fetcher::RegistriesD registries_;
  std::string digest_;
  std::map<const Requirement*, std::shared_ptr<Keys>> keys_;
  std::mutex mutex_;
  std::map<std::string, Verification> accepted_;
};

Try<std::shared_ptr<Trust>> Trust::load(actors::Runtime& runtime, TrustOptions options, HttpGet httpGet,
                                        AttachmentsGet attachmentsGet) {
  auto impl = std::make_shared<Impl>(runtime, std::move(options), std::move(httpGet), std::move(attachmentsGet));
  if (auto loaded = impl->load(); loaded.isError()) return loaded.error();
  return std::shared_ptr<Trust>(new Trust(std::move(impl)));
}

Trust::~Trust() = default;

const std::string& Trust::digest() const { return impl_->digest(); }

Future<Verification> Trust::check(const messages::Image& image, const std::string& key,
                                  const std::string& manifestDigest) {
  return impl_->check(image, key, manifestDigest);
}

std::optional<Verification> Trust::recorded(const std::string& recordDir, const std::string& key,
                                            const std::string& manifestDigest, const std::string& policyDigest) {
  const std::string dir = recordDir + "/" + paths::hexOf(manifestDigest);
  std::optional<Verification> newest;
  for (const auto& name : actors::fs::listDirectory(dir)) {
    auto text = actors::fs::readFile(dir + "/" + name);
    if (text.isError()) continue;
    std::string of;
    auto verdict = fromJson(*text, &of);
    if (!verdict || of != key || (!policyDigest.empty() && verdict->policyDigest != policyDigest)) continue;
    if (!newest || verdict->at >= newest->at) newest = std::move(verdict);
  }
  return newest;
}

void Trust::pruneRecords(const std::string& recordDir, const std::vector<std::string>& keep) {
  std::set<std::string> kept;
  for (const auto& digest : keep) kept.insert(paths::hexOf(digest));
  for (const auto& name : actors::fs::listDirectory(recordDir, /*directoriesOnly=*/true)) {
    if (kept.count(name) == 0) (void)actors::fs::removeTree(recordDir + "/" + name);
  }
}

}  // namespace prov::store
