#!/usr/bin/env bash
# Installs, with apt-get, every Debian package that the build, the tests, the
# benchmarks and the demo need. Idempotent: packages already present are not
# touched, and nothing is printed when nothing is missing.
#
# Usage: scripts/setup.sh            (as root, or with sudo available)
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git clang libclang-rt-14-dev clang-format
  # libraries
  libboost1.81-dev libboost-url1.81-dev libboost-program-options1.81-dev
  protobuf-compiler libprotobuf-dev rapidjson-dev libarchive-dev libssl-dev
  zlib1g-dev libbz2-dev liblzma-dev libzstd-dev libisal-dev libxml2-dev nettle-dev libxxhash-dev
  libgtest-dev libgmock-dev libgpgme-dev libyaml-cpp-dev
  # real servers and tools used by integration tests and the demo
  docker-registry skopeo busybox-static apache2-utils openssl curl tinyproxy runc python3
  # a real credential helper (docker-credential-pass over pass and gpg)
  golang-docker-credential-helpers pass gnupg
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Some service packages (docker-registry) try to start their daemon on install;
# forbid that: tests start their own servers on free ports.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
  $SUDO chmod +x $policy
  created_policy=1
fi
trap '[[ $created_policy -eq 1 ]] && $SUDO rm -f '"$policy" EXIT
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
