#pragma once

// Registry credentials and challenges.
//
// Docker config files: `config.json` ({"auths": {KEY: {...}}}) and the
// legacy `.dockercfg` ({KEY: {...}}), from a file or inline JSON (what
// --docker_config takes). An entry's `auth` is base64("user:password");
// `identitytoken` is a refresh token; `username`/`password` may also be
// given as such. Keys are matched by registry host as Docker does:
// "https://index.docker.io/v1/", "index.docker.io" and "registry-1.docker.io"
// all mean docker.io. Secrets never appear in an error message.
//
// WWW-Authenticate (RFC 7235): one or more challenges, each a scheme with
// auth-params (token or quoted-string values).

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fetcher/types.hpp"
#include "messages/image.pb.h"

namespace prov::fetcher {

// Canonical registry key -> credentials.
using DockerAuths = std::map<std::string, messages::Credentials>;

Try<DockerAuths> parseDockerConfig(std::string_view json);
// `fileOrJson` starting with '{' is JSON, otherwise a path to read.
Try<DockerAuths> loadDockerConfig(const std::string& fileOrJson);

// "https://registry.example.com/v1/" -> "registry.example.com" (Mesos's
// parseAuthUrl): the scheme and any path are dropped.
std::string parseAuthUrl(std::string_view key);
// docker.io for Docker Hub's aliases; the host[:port] otherwise.
std::string canonicalRegistry(std::string_view registry);

std::optional<messages::Credentials> findCredentials(const DockerAuths& auths, std::string_view registry);

// The credential helpers a Docker config names (the protocol of
// docker-credential-helpers): `credHelpers` maps a registry to a helper,
// `credsStore` is the helper for every other registry. A helper's name is
// what follows "docker-credential-" in its program's name; one with a
// character outside [A-Za-z0-9._-] is refused (it names a program to run).
struct CredentialHelpers {
  std::map<std::string, std::string> byRegistry;  // canonical registry -> name
  std::string store;
  // The helper for `registry`; "" when none.
  std::string forRegistry(std::string_view registry) const;
};

Try<CredentialHelpers> parseCredentialHelpers(std::string_view json);
// As loadDockerConfig.
Try<CredentialHelpers> loadCredentialHelpers(const std::string& fileOrJson);

// What a helper is asked for `registry`, as Docker asks it: Docker Hub is
// "https://index.docker.io/v1/", any other registry its host[:port].
std::string helperServerUrl(std::string_view registry);

// A helper's answer to `get` (exit status and stdout): the credentials, or
// none when it has none for the server (exit 1 with "credentials not found
// in native keychain", or, from older helpers, exit 0 with an empty
// Username and Secret). A Username of "<token>" makes the Secret an
// identity token. Another failure is Unavailable with the helper's first
// line of output (a helper's error message, never a secret).
Try<std::optional<messages::Credentials>> parseHelperAnswer(const std::string& helper, int status,
                                                            std::string_view output);

struct Challenge {
  std::string scheme;                         // lowercased: "bearer", "basic"
  std::map<std::string, std::string> params;  // names lowercased
};

Try<std::vector<Challenge>> parseWwwAuthenticate(std::string_view header);

// Standard base64 (RFC 4648, padded); InvalidArgument when it is not.
Try<std::string> base64Decode(std::string_view text);

// base64 of "user:password", for a Basic Authorization header.
std::string basicCredentials(const messages::Credentials& credentials);

}  // namespace prov::fetcher
