#include "fetcher/sigstore.hpp"

#include <openssl/bn.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>

#include "fetcher/auth.hpp"
#include "fetcher/digest.hpp"
#include "fetcher/json.hpp"
#include "fetcher/manifest.hpp"
#include "fetcher/reference.hpp"
#include "fetcher/registry.hpp"

namespace prov::fetcher::sigstore {

namespace {

constexpr std::size_t kMaxBlobBytes = 4u << 20;
constexpr std::size_t kMaxLayers = 128;

Error bad(const std::string& why) { return Error(ErrorKind::Corruption, "the signature attachment manifest " + why); }

}  // namespace

struct PublicKeys::Key {
  EVP_PKEY* pkey = nullptr;
  std::string fingerprint;  // sha256 of the DER SubjectPublicKeyInfo
  ~Key() { EVP_PKEY_free(pkey); }
};

std::string attachmentTag(const std::string& manifestDigest) {
  std::string tag = manifestDigest;
  if (auto colon = tag.find(':'); colon != std::string::npos) tag[colon] = '-';
  return tag + ".sig";
}

Try<std::vector<Layer>> parseAttachmentManifest(std::string_view body, std::string_view mediaType) {
  if (mediaType != mediatype::kOciManifest) {
    return bad("is of type '" + std::string(mediaType.substr(0, 100)) + "', not an OCI image manifest");
  }
  rapidjson::Document doc;
  auto fail = [](const std::string& why) { return bad(why); };
  if (auto parsed = json::parse(doc, body, fail, kMaxManifestBytes); parsed.isError()) return parsed.error();
  if (!json::repeatedKey(doc, true).empty() || json::nulInKey(doc)) return bad("has a key twice, or one with a NUL");
  if (!doc.IsObject() || !doc.HasMember("layers") || !doc["layers"].IsArray()) return bad("has no layer list");
  if (doc["layers"].Size() > kMaxLayers) return bad("has more than 128 signatures");
  std::vector<Layer> layers;
  for (const auto& entry : doc["layers"].GetArray()) {
    if (!entry.IsObject()) return bad("has a layer that is not a JSON object");
    Layer layer;
    auto media = json::string(entry, "mediaType", true, fail);
    auto digest = json::string(entry, "digest", true, fail);
    auto size = json::integer(entry, "size", true, fail);
    if (media.isError()) return media.error();
    if (digest.isError()) return digest.error();
    if (size.isError()) return size.error();
    layer.descriptor.set_media_type(*media);
    layer.descriptor.set_digest(*digest);
    layer.descriptor.set_size(*size);
    if (entry.HasMember("annotations")) {
      const auto& annotations = entry["annotations"];
      if (!annotations.IsObject()) return bad("has annotations that are not a JSON object");
      for (auto it = annotations.MemberBegin(); it != annotations.MemberEnd(); ++it) {
        if (!it->value.IsString()) return bad("has an annotation that is not a string");
        layer.annotations[it->name.GetString()] = std::string(it->value.GetString(), it->value.GetStringLength());
      }
    }
    layers.push_back(std::move(layer));
  }
  return layers;
}

namespace {

constexpr std::int64_t kMaxTotalBytes = 16 << 20;

// The attachments at `repository`; none when it has no such tag.
actors::Future<std::optional<std::vector<Attachment>>> readAt(const std::shared_ptr<RegistryClient>& client,
                                                              const Repository& repository, const std::string& tag) {
  using Found = std::optional<std::vector<Attachment>>;
  return client->fetchManifest(repository, tag, /*parse=*/false)
      .then([](const FetchedManifest& fetched) { return std::optional<FetchedManifest>(fetched); })
      .repair([](const actors::Future<std::optional<FetchedManifest>>& failed)
                  -> actors::Future<std::optional<FetchedManifest>> {
        // Only the tag's absence means "not signed here".
        if (failed.failure().kind == ErrorKind::NotFound) return std::optional<FetchedManifest>();
        return failed;
      })
      .then([client, repository, tag](const std::optional<FetchedManifest>& fetched) -> actors::Future<Found> {
        if (!fetched) return Found();
        auto layers = parseAttachmentManifest(fetched->body, fetched->mediaType);
        if (layers.isError()) return layers.error().withContext("'" + tag + "'");
        auto found = std::make_shared<std::vector<Attachment>>();
        std::int64_t total = 0;
        for (std::size_t i = 0; i < layers->size(); ++i) {
          const Layer& layer = (*layers)[i];
          Attachment attachment;
          attachment.where = tag + " layer " + std::to_string(i + 1);
          attachment.mediaType = layer.descriptor.media_type();
          if (auto it = layer.annotations.find(kSignatureAnnotation); it != layer.annotations.end()) {
            auto decoded = base64Decode(it->second);
            attachment.signature = decoded.isSome() ? *decoded : std::string();
          }
          if (attachment.mediaType == kPayloadMediaType) total += std::max<std::int64_t>(0, layer.descriptor.size());
          found->push_back(attachment);
        }
        if (total > kMaxTotalBytes) {
          return Error(ErrorKind::ResourceExhausted, "'" + tag + "' holds signatures of more than 16 MiB together");
        }
        // One after another: a handful of small blobs.
        actors::Future<Nothing> chain = Nothing{};
        for (std::size_t i = 0; i < layers->size(); ++i) {
          if ((*found)[i].mediaType != kPayloadMediaType) continue;
          const messages::Descriptor blob = (*layers)[i].descriptor;
          chain = chain.then([client, repository, blob, found, i] {
            return client->readBlob(repository, blob, kMaxBlobBytes).then([found, i](const std::string& bytes) {
              (*found)[i].payload = bytes;
              return Nothing{};
            });
          });
        }
        return chain.then([found] { return Found(*found); });
      });
}

// From repositories[i] on: the first that has the tag.
actors::Future<std::vector<Attachment>> readFrom(std::shared_ptr<RegistryClient> client,
                                                 std::vector<Repository> repositories, std::size_t i,
                                                 const std::string& tag) {
  if (i >= repositories.size()) return std::vector<Attachment>{};
  const Repository repository = repositories[i];
  return readAt(client, repository, tag)
      .then([client, repositories, i,
             tag](const std::optional<std::vector<Attachment>>& found) -> actors::Future<std::vector<Attachment>> {
        if (found) return *found;
        return readFrom(client, repositories, i + 1, tag);
      });
}

}  // namespace

actors::Future<std::vector<Attachment>> readAttachments(std::shared_ptr<RegistryClient> client,
                                                        const messages::ImageReference& reference,
                                                        const std::optional<messages::Credentials>& credentials,
                                                        const std::string& manifestDigest) {
  auto repositories = client->repositories(reference, credentials);
  if (repositories.isError()) return repositories.error();
  const std::string tag = attachmentTag(manifestDigest);
  const std::string what = "Failed to read the sigstore signatures of '" + toString(reference) + "'";
  return readFrom(std::move(client), std::move(*repositories), 0, tag)
      .repair([what](const actors::Future<std::vector<Attachment>>& failed) -> actors::Future<std::vector<Attachment>> {
        // Not the policy's answer: the signatures could not be read.
        if (failed.isDiscarded()) return failed;
        return Error(ErrorKind::Unavailable, what + ": " + failed.failure().message);
      });
}

Try<std::shared_ptr<PublicKeys>> PublicKeys::parse(const std::vector<std::string>& pems, const std::string& what) {
  std::shared_ptr<PublicKeys> keys(new PublicKeys());
  for (const auto& pem : pems) {
    auto key = std::make_unique<Key>();
    OSSL_DECODER_CTX* decoder = OSSL_DECODER_CTX_new_for_pkey(&key->pkey, "PEM", nullptr, nullptr, EVP_PKEY_PUBLIC_KEY,
                                                              nullptr, nullptr);
    const auto* data = reinterpret_cast<const unsigned char*>(pem.data());
    std::size_t size = pem.size();
    const bool decoded = decoder != nullptr && OSSL_DECODER_from_data(decoder, &data, &size) == 1;
    OSSL_DECODER_CTX_free(decoder);
    ERR_clear_error();  // the thread's OpenSSL error queue stays clean for TLS
    if (!decoded || key->pkey == nullptr) {
      return Error(ErrorKind::InvalidArgument, "Failed to read " + what + ": not a PEM public key");
    }
    const int type = EVP_PKEY_get_base_id(key->pkey);
    if (type != EVP_PKEY_EC && type != EVP_PKEY_RSA && type != EVP_PKEY_ED25519) {
      return Error(ErrorKind::InvalidArgument, "Failed to read " + what + ": a " + std::string(OBJ_nid2sn(type)) +
                                                   " key (ECDSA on P-256, P-384 or P-521, RSA of 2048 bits or "
                                                   "more, and Ed25519 are supported)");
    }
    // What Go's crypto (and so containers/image) takes, no less.
    if (type == EVP_PKEY_EC) {
      char group[64] = {};
      std::size_t length = 0;
      const std::string name = EVP_PKEY_get_group_name(key->pkey, group, sizeof group, &length) == 1
                                   ? std::string(group, length)
                                   : "";
      ERR_clear_error();
      if (name != "prime256v1" && name != "secp384r1" && name != "secp521r1") {
        return Error(ErrorKind::InvalidArgument, "Failed to read " + what + ": an ECDSA key on the curve '" + name +
                                                     "' (P-256, P-384 and P-521 are supported)");
      }
    } else if (type == EVP_PKEY_RSA && EVP_PKEY_get_bits(key->pkey) < 2048) {
      return Error(ErrorKind::InvalidArgument, "Failed to read " + what + ": an RSA key of " +
                                                   std::to_string(EVP_PKEY_get_bits(key->pkey)) +
                                                   " bits (2048 or more are supported)");
    }
    unsigned char* der = nullptr;
    const int length = i2d_PUBKEY(key->pkey, &der);
    if (length > 0) key->fingerprint = sha256Digest(std::string_view(reinterpret_cast<char*>(der), length));
    OPENSSL_free(der);
    ERR_clear_error();
    if (key->fingerprint.empty()) {
      return Error(ErrorKind::InvalidArgument, "Failed to read " + what + ": its key cannot be encoded");
    }
    keys->keys_.push_back(std::move(key));
  }
  return keys;
}

PublicKeys::~PublicKeys() = default;

namespace {

// An ECDSA signature as raw r||s (IEEE P1363) in DER, as OpenSSL wants it;
// "" when `raw` is not of the key's size.
std::string derOfRaw(EVP_PKEY* pkey, std::string_view raw) {
  const int bits = EVP_PKEY_get_bits(pkey);
  const std::size_t half = static_cast<std::size_t>((bits + 7) / 8);
  if (raw.size() != 2 * half) return "";
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data() + half), static_cast<int>(half), nullptr);
  std::string der;
  if (sig != nullptr && r != nullptr && s != nullptr && ECDSA_SIG_set0(sig, r, s) == 1) {
    r = s = nullptr;  // owned by sig
    unsigned char* out = nullptr;
    const int length = i2d_ECDSA_SIG(sig, &out);
    if (length > 0) der.assign(reinterpret_cast<char*>(out), static_cast<std::size_t>(length));
    OPENSSL_free(out);
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(sig);
  ERR_clear_error();
  return der;
}

bool verifyWith(EVP_PKEY* pkey, std::string_view payload, std::string_view signature) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return false;
  const bool ed25519 = EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519;
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, ed25519 ? nullptr : EVP_sha256(), nullptr, pkey) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                             reinterpret_cast<const unsigned char*>(payload.data()), payload.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();  // a failed verification leaves errors on the thread's queue
  return ok;
}

}  // namespace

std::optional<std::string> PublicKeys::verify(std::string_view payload, std::string_view signature) const {
  if (signature.empty()) return std::nullopt;
  for (const auto& key : keys_) {
    if (verifyWith(key->pkey, payload, signature)) return key->fingerprint;
    if (EVP_PKEY_get_base_id(key->pkey) == EVP_PKEY_EC) {
      const std::string der = derOfRaw(key->pkey, signature);
      if (!der.empty() && verifyWith(key->pkey, payload, der)) return key->fingerprint;
    }
  }
  return std::nullopt;
}

}  // namespace prov::fetcher::sigstore
