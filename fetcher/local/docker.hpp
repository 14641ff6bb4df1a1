#pragma once

// Internals of DockerArchivePuller (local.hpp): the JSON of `docker save`
// archives, read and written. Errors are Corruption naming the file, with
// `what` in front.

#include <string>
#include <vector>

#include "fetcher/types.hpp"
#include "messages/image.pb.h"

namespace prov::fetcher::local {

// One image of an archive.
struct ArchiveImage {
  std::vector<std::string> repoTags;  // "busybox:latest", as written
  // manifest.json: the config's and the layers' entries (normalised), base first.
  std::string config;
  std::vector<std::string> layers;
  // Legacy `repositories`: the top layer's id.
  std::string topId;
};

// manifest.json: [{"Config": ..., "RepoTags": [...], "Layers": [...]}, ...];
// entry paths must be relative and free of "..".
Try<std::vector<ArchiveImage>> parseManifestJson(const std::string& body, const std::string& what);

// repositories: {"repo": {"tag": "<id>"}}; one image per distinct id.
Try<std::vector<ArchiveImage>> parseRepositories(const std::string& body, const std::string& what);

// A layer id usable as a directory name: non-empty, no '/', not "." or "..".
bool validLayerId(const std::string& id);

// The "parent" of a layer's v1 json ("" for the base layer).
Try<std::string> v1Parent(const std::string& json, const std::string& name, const std::string& what);

// An image config made from the top layer's v1 json the way Docker converts
// v1 images: id, parent, Size, parent_id, layer_id, throwaway dropped, and
// rootfs {type: layers, diff_ids} set.
Try<std::string> configFromV1(const std::string& json, const std::vector<std::string>& diffIds,
                              const std::string& what);

// An OCI image manifest for this config and these layers (each layer's
// media type, digest, size and annotations are used).
std::string synthesizeManifest(const messages::Descriptor& config, const std::vector<messages::Descriptor>& layers);

}  // namespace prov::fetcher::local
