#!/usr/bin/env bash
# The example agent, built against the installed package, as an operator
# would see it: its tasks run in runc and are reported; killed with -9
# while one runs, and started again, it waits for that one, destroys what it
# did not know, and leaves nothing behind (no mount, no container, no
# bundle, no runc state).
#
# Usage: scripts/agent_test.sh AGENT PROVISIONER   (both built binaries)
set -euo pipefail
agent=$1
provisioner=$2
tmp=$(mktemp -d /tmp/agent-test.XXXXXX)
agent_pid=""
cleanup() {
  local rc=$?
  [[ -n $agent_pid ]] && kill -9 "$agent_pid" 2>/dev/null || true
  runc --root "$tmp/work/agent/runc" list -q 2>/dev/null | xargs -r -n1 runc --root "$tmp/work/agent/runc" delete -f || true
  findmnt -rn -o TARGET | grep "^$tmp" | sort -r | xargs -r -n1 umount -l || true
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "agent test: $*" >&2; exit 1; }

# A runnable image: busybox-static in an OCI layout.
rootfs=$tmp/image-rootfs layout=$tmp/layout
mkdir -p "$rootfs/bin" "$rootfs/tmp" "$layout/blobs/sha256"
cp /bin/busybox "$rootfs/bin/busybox"
for tool in sh echo sleep; do ln -s busybox "$rootfs/bin/$tool"; done
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf "$tmp/layer.tar" .
diff_id=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
gzip -n "$tmp/layer.tar"
layer=$(sha256sum "$tmp/layer.tar.gz" | cut -d' ' -f1)
mv "$tmp/layer.tar.gz" "$layout/blobs/sha256/$layer"
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/echo","from the image"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$(dpkg --print-architecture)" "$diff_id" >"$tmp/config.json"
config=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
mv "$tmp/config.json" "$layout/blobs/sha256/$config"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
  "$config" "$(stat -c %s "$layout/blobs/sha256/$config")" "$layer" "$(stat -c %s "$layout/blobs/sha256/$layer")" >"$tmp/manifest.json"
manifest=$(sha256sum "$tmp/manifest.json" | cut -d' ' -f1)
mv "$tmp/manifest.json" "$layout/blobs/sha256/$manifest"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
  "$manifest" "$(stat -c %s "$layout/blobs/sha256/$manifest")" >"$layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
image="oci:$layout:v1"
work=$tmp/work

# 1. Two tasks; the agent is killed with -9 while the slow one runs.
cat >"$tmp/tasks.json" <<JSON
[{"id": "quick", "image": "$image"},
 {"id": "slow", "image": "$image", "command": ["/bin/sh", "-c", "sleep 3; echo slow done"]}]
JSON
"$agent" --work_dir="$work" --tasks="$tmp/tasks.json" >"$tmp/first.out" 2>"$tmp/first.err" &
agent_pid=$!
for _ in $(seq 300); do
  grep -q '"id":"slow"[^}]*"phase":"running"' "$work/agent/state.json" 2>/dev/null && break
  sleep 0.1
done
grep -q '"id":"slow"[^}]*"phase":"running"' "$work/agent/state.json" || fail "slow never ran: $(cat "$tmp/first.err")"
kill -9 "$agent_pid"
wait "$agent_pid" 2>/dev/null || true
agent_pid=""

# A container the agent never knew (made by the command line meanwhile):
# the agent's recover destroys it.
"$provisioner" --work_dir="$work" provision stray "$image" >/dev/null

# 2. Started again: it waits for "slow" (still running in runc), reports
# both, and destroys "stray".
"$agent" --work_dir="$work" --tasks="$tmp/tasks.json" >"$tmp/second.out" 2>"$tmp/second.err" ||
  fail "the second run failed: $(cat "$tmp/second.err")"
# "quick" finished before the kill (its report kept) or while the agent was away.
grep -Eq '"id":"quick","status":(0,"output":"from the image\\n"|-2,)' "$tmp/second.out" ||
  fail "quick: $(cat "$tmp/second.out")"
grep -q '"id":"slow","status":-2' "$tmp/second.out" || fail "slow: $(cat "$tmp/second.out")"
grep -q 'event=recover.destroy container=stray' "$tmp/second.err" || fail "stray not destroyed: $(cat "$tmp/second.err")"

# Nothing left: no container, no bundle, no mount, no runc state.
[[ -z $("$provisioner" --work_dir="$work" containers) ]] || fail "containers left: $("$provisioner" --work_dir="$work" containers)"
[[ -z $(ls -A "$work/agent/bundles") ]] || fail "bundles left: $(ls -A "$work/agent/bundles")"
[[ -z $(findmnt -rn -o TARGET | grep "^$tmp" || true) ]] || fail "mounts left: $(findmnt -rn -o TARGET | grep "^$tmp")"
[[ -z $(runc --root "$work/agent/runc" list -q 2>/dev/null) ]] || fail "runc containers left"

# 3. A fresh task with a command, and the metrics.
cat >"$tmp/tasks2.json" <<JSON
[{"id": "third", "image": "$image", "command": ["/bin/echo", "third", "task"]},
 {"id": "fourth", "image": "$image"}]
JSON
"$agent" --work_dir="$work" --tasks="$tmp/tasks2.json" --metrics >"$tmp/third.out" 2>"$tmp/third.err" ||
  fail "the third run failed: $(cat "$tmp/third.err")"
grep -q '"id":"third","status":0,"output":"third task\\n"' "$tmp/third.out" || fail "third: $(cat "$tmp/third.out")"
grep -q '"id":"fourth","status":0,"output":"from the image\\n"' "$tmp/third.out" ||
  fail "fourth: $(cat "$tmp/third.out")"
grep -q '^provisioner_provisions 2$' "$tmp/third.out" || fail "metrics: $(cat "$tmp/third.out")"
echo "agent: tasks ran in runc; after kill -9 the running one was waited for, the unknown one destroyed, nothing left"
