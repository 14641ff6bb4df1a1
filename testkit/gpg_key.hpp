#pragma once

// A throwaway OpenPGP key made by the real gpg, in a GNUPGHOME of its own
// (for signing test images with skopeo --sign-by or gpg --sign). The home
// is a short /tmp/gpg-XXXXXX (gpg-agent's socket lives in it, and a socket
// path has at most 107 bytes); the destructor stops the agent and removes
// the home.

#include <filesystem>
#include <string>

namespace prov::testing {

class GpgKey {
 public:
  // An ed25519 key for `name` with no passphrase; a failure is reported
  // (files.hpp) and leaves fingerprint() empty.
  explicit GpgKey(const std::string& name);
  ~GpgKey();
  GpgKey(const GpgKey&) = delete;
  GpgKey& operator=(const GpgKey&) = delete;

  const std::string& fingerprint() const { return fingerprint_; }
  std::string home() const { return home_.string(); }
  // The public key, binary, as a policy's keyPath takes it.
  std::string publicKeyFile() const { return (home_ / "pub.gpg").string(); }

  // `file` signed (gpg --sign: an OpenPGP message holding it), or "" and a
  // failure reported.
  std::string sign(const std::filesystem::path& file) const;

 private:
  std::filesystem::path home_;
  std::string fingerprint_;
};

}  // namespace prov::testing
