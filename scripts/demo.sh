#!/usr/bin/env bash
# The provisioner in one command, on a fresh Debian 12 machine, as root:
#   installs what is missing, builds, starts a local registry (Debian's
#   docker-registry) on 127.0.0.1, builds a small runnable image from Debian's
#   busybox-static and pushes it with skopeo, provisions three containers from
#   it with the default backend, runs a command inside one with chroot, shows
#   `containers` and `images`, destroys the containers and stops the registry.
#
# Usage: scripts/demo.sh [WORK_DIR]     (default: a fresh directory under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $(id -u) -eq 0 ]] || { echo "error: the demo mounts file systems: run it as root" >&2; exit 1; }
bash scripts/setup.sh
echo "== build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target provisioner >/dev/null

demo=$(mktemp -d /tmp/provisioner-demo.XXXXXX)
work=${1:-$demo/work}
registry_pid=""
# Stops the registry and removes the demo's files; the script's own status
# stays its exit status (the killed registry's 143 is not ours).
cleanup() {
  local rc=$?
  if [[ -n $registry_pid ]]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$demo"
  exit "$rc"
}
trap cleanup EXIT

# A free port for the registry.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$demo/registry"
cat >"$demo/registry/config.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $demo/registry/storage}}
http: {addr: 127.0.0.1:$port}
YAML
echo "== registry on 127.0.0.1:$port"
docker-registry serve "$demo/registry/config.yml" >"$demo/registry/log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break
  sleep 0.1
done

echo "== image: busybox-static as 127.0.0.1:$port/demo/busybox:latest"
rootfs="$demo/image-rootfs"
mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
cp /bin/busybox "$rootfs/bin/busybox"
for tool in sh echo ls cat uname hostname; do ln -s busybox "$rootfs/bin/$tool"; done
chmod 1777 "$rootfs/tmp"
echo "provisioned by provisioner" >"$rootfs/etc/motd"
layout="$demo/layout"
mkdir -p "$layout/blobs/sha256"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . | gzip -n >"$demo/layer.tar.gz"
diff_id=$(tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . | sha256sum | cut -d' ' -f1)
layer=$(sha256sum "$demo/layer.tar.gz" | cut -d' ' -f1)
mv "$demo/layer.tar.gz" "$layout/blobs/sha256/$layer"
arch=$(dpkg --print-architecture)
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/tmp"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$arch" "$diff_id" >"$demo/config.json"
config=$(sha256sum "$demo/config.json" | cut -d' ' -f1)
mv "$demo/config.json" "$layout/blobs/sha256/$config"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
  "$config" "$(stat -c %s "$layout/blobs/sha256/$config")" "$layer" "$(stat -c %s "$layout/blobs/sha256/$layer")" >"$demo/manifest.json"
manifest=$(sha256sum "$demo/manifest.json" | cut -d' ' -f1)
msize=$(stat -c %s "$demo/manifest.json")
mv "$demo/manifest.json" "$layout/blobs/sha256/$manifest"
echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
  "$manifest" "$msize" >"$layout/index.json"
skopeo copy -q --dest-tls-verify=false "oci:$layout:latest" "docker://127.0.0.1:$port/demo/busybox:latest"

p() { echo "\$ provisioner $*" >&2; build/bin/provisioner --work_dir="$work" "$@"; }
image="127.0.0.1:$port/demo/busybox:latest"
echo "== provision three containers (default backend)"
first=$(p provision web-1 "$image")
echo "$first"
p provision web-2 "$image"
p --json provision web-3 "$image"
echo "== run a command in web-1's rootfs"
echo "\$ chroot $first /bin/sh -c 'echo hello from \$(uname -n) in a provisioned rootfs; cat /etc/motd'"
chroot "$first" /bin/sh -c 'echo hello from $(uname -n) in a provisioned rootfs; cat /etc/motd'
echo "== containers and images"
p containers
p images
echo "== destroy"
for c in web-1 web-2 web-3; do p destroy "$c"; done
p containers
p prune
p images
echo "== done: the registry stops now${1:+; work dir $work}"
