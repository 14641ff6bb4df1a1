#pragma once

// Simple signing signatures checked with GPGME against a fixed set of
// public keys, and only those: the keys are imported into a keyring of
// their own (a private temporary GNUPGHOME, removed with the object), so
// the user's keyring, its trust settings and its agent play no part.
//
// What a signature must be to pass (as containers/image's GPGME mechanism):
// exactly one signature, valid (no status error: a bad, expired or revoked
// signature or key fails), made by one of the imported keys or a subkey of
// one. Owner trust is not consulted: the policy names the keys.

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fetcher/types.hpp"

namespace prov::fetcher::gpg {

// GPGME set up, once per process; the first Keyring does it when this was
// not called. GPGME then ignores SIGPIPE in the whole process (it writes to
// gpg through pipes), as it documents: call it at start, before anything
// that runs children, and give children SIGPIPE's default back
// (posix_spawnattr_setsigdefault), as fetcher/subprocess.hpp does.
void initialize();

struct Verified {
  std::string payload;  // the signed bytes
  std::string signer;   // the fingerprint of the (primary) key that signed
};

class Keyring {
 public:
  // `keys`: OpenPGP public keys, binary or ASCII-armoured, one key or more
  // each; `what` names them in errors ("the keys of default[0]").
  // InvalidArgument when none imports; IO when gpg cannot be run.
  static Try<std::shared_ptr<Keyring>> create(const std::vector<std::string>& keys, const std::string& what);
  ~Keyring();
  Keyring(const Keyring&) = delete;
  Keyring& operator=(const Keyring&) = delete;

  // Blocking (runs gpg); thread-safe. Unauthenticated, saying why, when the
  // message does not verify or was not made by one of the keys; Corruption
  // when it is not a signed message.
  Try<Verified> verify(std::string_view message) const;

  // The keyring's directory (private to the user, removed with the object).
  const std::string& home() const { return home_; }

  // The primary keys' fingerprints.
  const std::set<std::string>& fingerprints() const { return fingerprints_; }

 private:
  explicit Keyring(std::string home) : home_(std::move(home)) {}
  std::string home_;
  std::set<std::string> fingerprints_;
  mutable std::mutex mutex_;  // one gpg at a time on this home
};

}  // namespace prov::fetcher::gpg
