#include "fetcher/gpg.hpp"

#include <fcntl.h>
#include <gpgme.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "actors/fs.hpp"

namespace prov::fetcher::gpg {

void initialize() {
  static const char* const version = [] {
    // gpg where GPGME was built to find it (/usr/bin/gpg), without asking
    // gpgconf first: three process starts fewer at the first check.
    gpgme_set_global_flag("disable-gpgconf", "1");
    return gpgme_check_version(nullptr);  // once, before any other call
  }();
  (void)version;
}

namespace {

std::string why(gpgme_error_t error) { return gpgme_strerror(error); }

// A GPGME context on `home`, released with it.
struct Context {
  gpgme_ctx_t ctx = nullptr;
  ~Context() {
    if (ctx != nullptr) gpgme_release(ctx);
  }
};

struct Data {
  gpgme_data_t data = nullptr;
  ~Data() {
    if (data != nullptr) gpgme_data_release(data);
  }
};

Try<Nothing> open(Context& context, const std::string& home) {
  initialize();
  if (auto error = gpgme_new(&context.ctx); error != 0) {
    return Error(ErrorKind::IO, "Failed to start GPGME: " + why(error));
  }
  if (auto error = gpgme_set_protocol(context.ctx, GPGME_PROTOCOL_OpenPGP); error != 0) {
    return Error(ErrorKind::IO, "Failed to use OpenPGP through GPGME: " + why(error));
  }
  if (auto error = gpgme_ctx_set_engine_info(context.ctx, GPGME_PROTOCOL_OpenPGP, nullptr, home.c_str()); error != 0) {
    return Error(ErrorKind::IO, "Failed to point gpg at its keyring '" + home + "': " + why(error));
  }
  gpgme_set_armor(context.ctx, 0);
  gpgme_set_textmode(context.ctx, 0);
  return Nothing{};
}

Try<Nothing> memory(Data& data, std::string_view bytes) {
  if (auto error = gpgme_data_new_from_mem(&data.data, bytes.data(), bytes.size(), 1); error != 0) {
    return Error(ErrorKind::IO, "Failed to hand data to GPGME: " + why(error));
  }
  return Nothing{};
}

std::string failedSignature(gpgme_signature_t signature) {
  const std::string key = signature->fpr != nullptr ? signature->fpr : "?";
  switch (gpgme_err_code(signature->status)) {
    case GPG_ERR_NO_PUBKEY: return "it was signed by key " + key + ", which the policy does not trust";
    case GPG_ERR_BAD_SIGNATURE: return "its signature does not match what it signs (altered)";
    case GPG_ERR_SIG_EXPIRED: return "its signature has expired";
    case GPG_ERR_KEY_EXPIRED: return "it was signed by key " + key + ", which has expired";
    case GPG_ERR_CERT_REVOKED: return "it was signed by key " + key + ", which is revoked";
    default: return "gpg says: " + why(signature->status);
  }
}

}  // namespace

Try<std::shared_ptr<Keyring>> Keyring::create(const std::vector<std::string>& keys, const std::string& what) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp == '/' ? tmp : "/tmp") + "/provisioner-gpg-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Error(ErrorKind::IO, "Failed to make a keyring directory in '" + pattern + "': " + std::strerror(errno));
  }
  std::shared_ptr<Keyring> keyring(new Keyring(pattern));  // removes the directory from here on
  // Public keys and verification need neither an agent (a daemon that
  // would outlive us) nor a key server.
  {
    const std::string conf = "no-autostart\nno-auto-key-retrieve\n";
    const std::string path = pattern + "/gpg.conf";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    const bool written = fd >= 0 && ::write(fd, conf.data(), conf.size()) == static_cast<ssize_t>(conf.size());
    const int saved = errno;
    if (fd >= 0) ::close(fd);
    if (!written) return Error(ErrorKind::IO, "Failed to write '" + path + "': " + std::strerror(saved));
  }
  Context context;
  if (auto opened = open(context, keyring->home_); opened.isError()) return opened.error();
  for (const auto& key : keys) {
    Data data;
    if (auto made = memory(data, key); made.isError()) return made.error();
    if (auto error = gpgme_op_import(context.ctx, data.data); error != 0) {
      return Error(ErrorKind::IO, "Failed to import " + what + " (gpg could not be run): " + why(error));
    }
    gpgme_import_result_t result = gpgme_op_import_result(context.ctx);
    for (auto status = result != nullptr ? result->imports : nullptr; status != nullptr; status = status->next) {
      if (status->result == 0 && status->fpr != nullptr) keyring->fingerprints_.insert(status->fpr);
    }
  }
  if (keyring->fingerprints_.empty()) {
    return Error(ErrorKind::InvalidArgument, "Failed to import " + what + ": no OpenPGP public key in them");
  }
  return keyring;
}

Keyring::~Keyring() {
  std::error_code ec;
  std::filesystem::remove_all(home_, ec);
}

Try<Verified> Keyring::verify(std::string_view message) const {
  std::lock_guard lock(mutex_);
  Context context;
  if (auto opened = open(context, home_); opened.isError()) return opened.error();
  Data signed_, plain;
  if (auto made = memory(signed_, message); made.isError()) return made.error();
  if (auto error = gpgme_data_new(&plain.data); error != 0) {
    return Error(ErrorKind::IO, "Failed to hand data to GPGME: " + why(error));
  }
  if (auto error = gpgme_op_verify(context.ctx, signed_.data, nullptr, plain.data); error != 0) {
    // gpg that could not run (no engine, a system error) is this
    // machine's trouble; anything else is about this message alone.
    const auto code = gpgme_err_code(error);
    if (code == GPG_ERR_INV_ENGINE || code == GPG_ERR_ENOMEM || gpgme_err_code_to_errno(code) != 0) {
      return Error(ErrorKind::IO, "Failed to check a signature with gpg: " + why(error));
    }
    return Error(ErrorKind::Corruption, "it is not a signed OpenPGP message (gpg says: " + why(error) + ")");
  }
  gpgme_verify_result_t result = gpgme_op_verify_result(context.ctx);
  int count = 0;
  for (auto s = result != nullptr ? result->signatures : nullptr; s != nullptr; s = s->next) ++count;
  if (count != 1) {
    return Error(ErrorKind::Corruption, "it holds " + std::to_string(count) + " signatures, not one");
  }
  gpgme_signature_t signature = result->signatures;
  if (gpgme_err_code(signature->status) != GPG_ERR_NO_ERROR) {
    return Error(ErrorKind::Forbidden, failedSignature(signature));
  }
  if (signature->validity == GPGME_VALIDITY_NEVER || signature->validity_reason != 0 || signature->wrong_key_usage) {
    return Error(ErrorKind::Forbidden, "gpg does not accept its signature (key " +
                                           std::string(signature->fpr != nullptr ? signature->fpr : "?") + ")");
  }
  // A subkey signs for its primary key: the policy names primary keys.
  std::string signer = signature->fpr != nullptr ? signature->fpr : "";
  gpgme_key_t key = nullptr;
  if (!signer.empty() && gpgme_get_key(context.ctx, signer.c_str(), &key, 0) == 0 && key != nullptr) {
    if (key->fpr != nullptr) signer = key->fpr;
    gpgme_key_unref(key);
  }
  if (fingerprints_.count(signer) == 0) {
    return Error(ErrorKind::Forbidden, "it was signed by key " + signer + ", which the policy does not trust");
  }
  std::size_t size = 0;
  char* bytes = gpgme_data_release_and_get_mem(plain.data, &size);
  plain.data = nullptr;
  std::string payload(bytes != nullptr ? bytes : "", size);
  gpgme_free(bytes);
  return Verified{std::move(payload), signer};
}

}  // namespace prov::fetcher::gpg
