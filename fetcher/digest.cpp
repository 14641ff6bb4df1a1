// OpenSSL's own SHA-2 functions, not EVP: the first EVP fetch reads
// OpenSSL's configuration, starts its default provider and fills its name
// tables, 1.5-2 ms of CPU in every command that hashes (and more at exit),
// measured against these in a C program (issue #18). These are the same
// code (SHA-NI where the CPU has it) without the machinery. OpenSSL 3
// marks them deprecated; TLS and signatures still use EVP. (Defined before
// any header: one of them might include OpenSSL's.)
#define OPENSSL_SUPPRESS_DEPRECATED

#include "fetcher/digest.hpp"

#include <openssl/sha.h>

#include <variant>

namespace prov::fetcher {

namespace {

bool isLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

Try<Nothing> validateDigest(std::string_view digest) {
  const auto colon = digest.find(':');
  auto invalid = [&](const std::string& why) {
    return Error(ErrorKind::InvalidArgument, "Invalid digest '" + std::string(digest.substr(0, 160)) + "': " + why);
  };
  if (colon == std::string_view::npos) return invalid("expected '<algorithm>:<hex>'");
  const std::string_view algorithm = digest.substr(0, colon);
  const std::string_view hex = digest.substr(colon + 1);
  std::size_t expected;
  if (algorithm == "sha256") {
    expected = 64;
  } else if (algorithm == "sha512") {
    expected = 128;
  } else {
    return invalid("unsupported algorithm (expected sha256 or sha512)");
  }
  if (hex.size() != expected) {
    return invalid("expected " + std::to_string(expected) + " hex digits, got " + std::to_string(hex.size()));
  }
  if (!isLowerHex(hex)) return invalid("the hex part has characters other than 0-9 and a-f");
  return Nothing{};
}

struct Hasher::State {
  std::variant<SHA256_CTX, SHA512_CTX> ctx;
  std::string algorithm;
};

Hasher::Hasher(std::unique_ptr<State> state) : state_(std::move(state)) {}
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;
Hasher::~Hasher() = default;

Try<Hasher> Hasher::create(std::string_view algorithm) {
  if (algorithm != "sha256" && algorithm != "sha512") {
    return Error(ErrorKind::Unsupported, "Unsupported digest algorithm '" + std::string(algorithm) + "'");
  }
  auto state = std::make_unique<State>();
  state->algorithm = std::string(algorithm);
  const int ok = algorithm == "sha256" ? SHA256_Init(&state->ctx.emplace<SHA256_CTX>())
                                       : SHA512_Init(&state->ctx.emplace<SHA512_CTX>());
  if (ok != 1) return Error(ErrorKind::Internal, "Failed to initialise a " + state->algorithm + " hasher");
  return Hasher(std::move(state));
}

Try<Hasher> Hasher::forDigest(std::string_view digest) {
  if (auto valid = validateDigest(digest); valid.isError()) return valid.error();
  return create(digest.substr(0, digest.find(':')));
}

void Hasher::update(const void* data, std::size_t size) {
  if (auto* sha256 = std::get_if<SHA256_CTX>(&state_->ctx)) {
    SHA256_Update(sha256, data, size);
  } else {
    SHA512_Update(&std::get<SHA512_CTX>(state_->ctx), data, size);
  }
}

std::string Hasher::finish() {
  unsigned char md[SHA512_DIGEST_LENGTH];
  unsigned int length = SHA256_DIGEST_LENGTH;
  if (auto* sha256 = std::get_if<SHA256_CTX>(&state_->ctx)) {
    SHA256_Final(md, sha256);
  } else {
    SHA512_Final(md, &std::get<SHA512_CTX>(state_->ctx));
    length = SHA512_DIGEST_LENGTH;
  }
  static const char* kHex = "0123456789abcdef";
  std::string out = state_->algorithm + ":";
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

std::string sha256Digest(std::string_view data) {
  Hasher hasher = std::move(*Hasher::create("sha256"));
  hasher.update(data);
  return hasher.finish();
}

Try<Nothing> verifyDigest(std::string_view data, std::string_view digest, std::string_view what) {
  auto hasher = Hasher::forDigest(digest);
  if (hasher.isError()) return hasher.error();
  hasher->update(data);
  const std::string actual = hasher->finish();
  if (actual != digest) {
    return Error(ErrorKind::DigestMismatch,
                 "Digest mismatch for " + std::string(what) + ": expected " + std::string(digest) + ", got " + actual);
  }
  return Nothing{};
}

Try<BlobCheck> BlobCheck::create(std::string_view digest, std::int64_t size, std::string what,
                                 std::uint64_t maxUnsized) {
  auto hasher = Hasher::forDigest(digest);
  if (hasher.isError()) return hasher.error().withContext(what);
  return BlobCheck(std::move(*hasher), std::string(digest), size, std::move(what), maxUnsized);
}

BlobCheck::BlobCheck(Hasher hasher, std::string digest, std::int64_t size, std::string what, std::uint64_t maxUnsized)
    : hasher_(std::move(hasher)), digest_(std::move(digest)), size_(size), maxUnsized_(maxUnsized),
      what_(std::move(what)) {}

Try<Nothing> BlobCheck::admit(std::size_t bytes) {
  if (size_ < 0 && delivered_ + bytes > maxUnsized_) {
    return Error(ErrorKind::ResourceExhausted, what_ + ": a blob without a size sent more than " +
                                                   std::to_string(maxUnsized_) +
                                                   " bytes (the layer size limit, --max_layer_bytes)");
  }
  if (size_ >= 0 && delivered_ + bytes > static_cast<std::uint64_t>(size_)) {
    return Error(ErrorKind::DigestMismatch,
                 what_ + ": more bytes than the descriptor's size of " + std::to_string(size_));
  }
  delivered_ += bytes;
  return Nothing{};
}

Try<Nothing> BlobCheck::finish() {
  if (size_ >= 0 && delivered_ != static_cast<std::uint64_t>(size_)) {
    return Error(ErrorKind::DigestMismatch, what_ + ": got " + std::to_string(delivered_) +
                                                " bytes, the descriptor says " + std::to_string(size_));
  }
  const std::string actual = hasher_.finish();
  if (actual != digest_) {
    return Error(ErrorKind::DigestMismatch, what_ + ": the content hashes to " + actual + ", not " + digest_);
  }
  return Nothing{};
}

}  // namespace prov::fetcher
