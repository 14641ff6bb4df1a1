#include "testkit/gpg_key.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "testkit/files.hpp"
#include "testkit/real_registry.hpp"

namespace prov::testing {

namespace fs = std::filesystem;

GpgKey::GpgKey(const std::string& name) {
  char pattern[] = "/tmp/gpg-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) {
    reportFailure(std::string("mkdtemp /tmp/gpg-XXXXXX: ") + std::strerror(errno));
    return;
  }
  home_ = pattern;
  const std::string h = home_.string();
  auto made = runCommand({"gpg", "--homedir", h, "--batch", "--passphrase", "", "--quick-gen-key",
                          name + " <" + name + "@example.com>", "future-default", "default", "never"});
  if (made.status != 0) {
    reportFailure("gpg --quick-gen-key in " + h + ": " + made.output);
    return;
  }
  auto listed = runCommand({"sh", "-c",
                            "gpg --homedir '" + h +
                                "' --list-secret-keys --with-colons 2>/dev/null | awk -F: "
                                "'$1==\"fpr\"{print $10; exit}'"});
  auto exported = runCommand({"sh", "-c", "gpg --homedir '" + h + "' --export > '" + publicKeyFile() + "'"});
  if (listed.status != 0 || exported.status != 0) {
    reportFailure("gpg --list-secret-keys / --export in " + h + ": " + listed.output + exported.output);
    return;
  }
  fingerprint_ = listed.output.substr(0, listed.output.find('\n'));
}

GpgKey::~GpgKey() {
  if (home_.empty()) return;
  runCommand({"gpgconf", "--homedir", home_.string(), "--kill", "all"});
  std::error_code ec;
  fs::remove_all(home_, ec);
}

std::string GpgKey::sign(const fs::path& file) const {
  const fs::path out = file.string() + ".gpg";
  fs::remove(out);
  auto signed_ = runCommand({"gpg", "--homedir", home_.string(), "--batch", "--pinentry-mode", "loopback",
                             "--passphrase", "", "--output", out.string(), "--sign", file.string()});
  if (signed_.status != 0) {
    reportFailure("gpg --sign " + file.string() + ": " + signed_.output);
    return "";
  }
  return readFile(out);
}

}  // namespace prov::testing
