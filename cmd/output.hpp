#pragma once

// What the provisioner command prints: text for people, JSON (--json) for
// tools.

#include <string>
#include <string_view>
#include <vector>

#include "provisioner/provisioner.hpp"

namespace prov::cmd {

// `text` fit for a terminal: each control character (ESC, CR, LF, NUL,
// DEL, ...) as \xNN, so that text from a registry or an image cannot move
// the cursor, recolour or retitle the terminal that shows it.
std::string printable(std::string_view text);

// "a,b,,c" -> {"a", "b", "c"}
std::vector<std::string> splitList(const std::string& text);

// What identifies a stored image's content to a person: its manifest digest
// (Docker/OCI) or its image id (AppC, "sha512-<hex>"); shown as
// "manifest_digest" in JSON.
std::string imageDigest(const messages::StoredImage& image);

// {"image": {"reference", "key", "manifest_digest"}, "layers": N, "config": {...}}
std::string imageJson(const messages::StoredImage& image);
// {"rootfs", "backend", "image": {...}, "config": {"env", "entrypoint", "cmd",
//  "working_dir", "user"}, "ephemeral_volumes": [...]}
// With `bundle` (provision --bundle), a "bundle" member too.
std::string provisionJson(const provisioner::ProvisionInfo& info, const std::string& bundle = "");
// One line per container ("ID  N rootfs(es)  BACKEND:ROOTFS_ID ..."), or a JSON array.
std::string containersText(const std::vector<provisioner::ContainerInfo>& containers, bool json);
// One line per image ("KEY  MANIFEST_DIGEST  SIZE  N layers"), or a JSON
// array: the image and "layers", "size_bytes" (its layers on disk, each
// once), "own_bytes" (of those, what no other image shares), "pulled_at"
// and "last_used_at" (unix seconds; the last use to the minute), "in_use".
std::string imagesText(const std::vector<provisioner::ImageUsage>& images, bool json);

// verify: one line per image ("KEY  ok|damaged|recorded  N layers, E
// entries, B read"), then under a damaged one each layer that is not
// whole and each damaged path ("    /etc/passwd: size 0, recorded 1024");
// or a JSON array: per image, the image, "ok" and "layers" (each "path",
// "ok", "adopted", "gone", "entries", "bytes_read", "damage" [{"path",
// "what"}] and "error" when the check could not be made).
std::string verifyText(const std::vector<provisioner::ImageCheck>& checks, bool json);
// verify --repair: each image's check as verify prints it, then what was
// done: "  not repaired, a container uses it: LAYER", the error that kept
// it from being repaired, or "  fetched again: N layers; now " and its new
// check line. JSON: per image, the image, "repaired", "refetched",
// "in_use", "error" (when one), "found" and "after" (each "ok", "layers").
std::string repairText(const std::vector<provisioner::ImageRepair>& repairs, bool json);

}  // namespace prov::cmd
