#pragma once

// Image references: [registry[:port]/]repository[/more][:tag][@digest].
//
// parseImageReference splits a reference as Mesos does (its
// DockerSpecTest.ParseImageReference cases hold) and validates every part
// against the distribution reference grammar: lowercase path components,
// tag charset and length, digest algorithm and hex length, 255 characters
// for the name. normalize() then fills in what Docker assumes:
//   busybox                  -> docker.io/library/busybox:latest
//   index.docker.io/x/y      -> docker.io/x/y:latest
//   registry:5000/a@sha256:… -> registry:5000/a@sha256:…   (no tag added)
// Errors are InvalidArgument and name the reference and the problem.

#include <optional>
#include <string>
#include <string_view>

#include "fetcher/types.hpp"
#include "messages/image.pb.h"

namespace prov::fetcher {

inline constexpr const char* kDockerHub = "docker.io";

Try<messages::ImageReference> parseImageReference(std::string_view text);

// Registry defaulted to docker.io (index.docker.io and registry-1.docker.io
// are docker.io too), "library/" for docker.io's one-component names, tag
// "latest" when there is neither tag nor digest.
messages::ImageReference normalize(const messages::ImageReference& reference);

// As normalize(), but a reference with neither tag nor digest keeps
// neither (what a signature's claim and a policy's repository are).
messages::ImageReference normalizeKeepingTag(const messages::ImageReference& reference);

// parse + normalize.
Try<messages::ImageReference> parseNormalized(std::string_view text);

// "[registry/]repository[:tag][@digest]".
std::string toString(const messages::ImageReference& reference);

// The host:port part of a registry, split as Mesos does (GetRegistrySpec).
// registryPort: none when no port is given; an error when it is not a
// number in 1..65535.
std::string registryHost(std::string_view registry);
Try<std::optional<int>> registryPort(std::string_view registry);

}  // namespace prov::fetcher
