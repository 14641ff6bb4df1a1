#!/usr/bin/env bash
# Every benchmark driver with its peers, then one markdown table of ours,
# the peers and the ratios (each driver's own output, ending in its JSON
# line, goes to <dir>/<driver>.log).
#
#   bench/run-all.sh [--quick] [--build-dir=build-bench] [--dir=/tmp/bench-all]
#
# Builds the drivers first (RelWithDebInfo, Ninja, ccache) in --build-dir.
# Needs root; the drivers install their peers' Debian packages when missing
# (skopeo, umoci, containerd, docker-registry, nginx-light, curl). --quick:
# fewer runs and smaller workloads (a few minutes instead of about forty;
# noisier).
# Exits non-zero when a driver failed (its row says so).
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
build=build-bench
dir=/tmp/bench-all
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    --build-dir=*) build=${arg#*=} ;;
    --dir=*) dir=${arg#*=} ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
command -v ninja >/dev/null && command -v cmake >/dev/null || bash scripts/setup.sh
if ! { cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPROV_BUILD_BENCH=ON \
         -DPROV_BUILD_TESTS=OFF >/dev/null && cmake --build "$build" -- -j"$(nproc)" >/dev/null; }; then
  echo "error: building the drivers in $build failed (run: cmake --build $build)" >&2
  exit 1
fi
mkdir -p "$dir"
bin=$build/bin
if [ $quick = 1 ]; then
  cli="--runs=5"; pull="--runs=1 --workloads=medium --peers=skopeo-umoci,containerd,floor"; fetch="--size-mib=256 --runs=3"
  backend="--runs=1 --pairs=200"; provision="--containers=200"; actors="--runs=3 --round_trips=200000"
  growth="--runs=1 --containers=10,1000 --layers=1,10,100 --images=10,100"
  queue="--runs=1 --big_mib=256 --burst=20 --scratch_mib=2048"; dedup="--runs=1 --shared-mib=64"
else
  cli="--runs=10"; pull="--runs=5 --peers=skopeo-umoci,containerd,floor"; fetch="--runs=5"; backend="--runs=3"; provision=""; actors="--runs=5"
  growth=""; queue="--runs=5"; dedup="--runs=5"
fi

status=0
# run NAME ARGS...: the driver's output to its log; its JSON line kept.
run() { run_as "$1" "$@"; }
# run_as LABEL NAME ARGS...: the same, its log and JSON named LABEL.
run_as() {
  local label=$1 name=$2
  shift 2
  echo "== $name $*" >&2
  if "$bin/$name" "$@" >"$dir/$label.log" 2>&1; then
    tail -n 1 "$dir/$label.log" >"$dir/$label.json"
  else
    echo "error: $name failed; see $dir/$label.log" >&2
    echo '{}' >"$dir/$label.json"
    status=1
  fi
}
# shellcheck disable=SC2086  # the option strings split into words
{
  run bench_cli $cli --dir="$dir/cli"
  run_as bench_cli_far bench_cli $cli --rtt_ms=10 --dir="$dir/cli-far"
  run bench_pull $pull --dir="$dir/pull"
  run bench_fetch $fetch --dir="$dir/fetch"
  run bench_backend $backend
  run bench_provision $provision --dir="$dir/provision"
  run bench_growth $growth --dir="$dir/growth"
  run bench_queue $queue --dir="$dir/queue"
  run bench_dedup $dedup --dir="$dir/dedup"
  run bench_actors $actors --workers=2
  if [ -x "$bin/bench_caf" ]; then run bench_caf $actors --workers=2; else echo '{}' >"$dir/bench_caf.json"; fi
}

python3 - "$dir" "$(nproc)" <<'EOF'
import json, sys, os
d, cores = sys.argv[1], sys.argv[2]
def load(name):
    try:
        with open(os.path.join(d, name + ".json")) as f:
            return json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}
cli, far, pull, fetch = load("bench_cli"), load("bench_cli_far"), load("bench_pull"), load("bench_fetch")
backend, provision, actors, caf = load("bench_backend"), load("bench_provision"), load("bench_actors"), load("bench_caf")
growth, queue, dedup = load("bench_growth"), load("bench_queue"), load("bench_dedup")
rows = []
def row(figure, ours, unit, peer=None, peer_name="", lower_is_better=True):
    def shown(v):
        return "-" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}")
    ratio = "-"
    if ours and peer:
        ratio = f"{(peer / ours) if lower_is_better else (ours / peer):.2f}x"
    rows.append(f"| {figure} | {shown(ours)} {unit} | {shown(peer)} {unit if peer is not None else ''} {peer_name} | {ratio} |")
row("`images`, empty store", cli.get("images_empty_ms"), "ms")
row("`containers`, empty work dir", cli.get("containers_empty_ms"), "ms")
row("tiny cold pull (busybox), whole command", cli.get("tiny_cold_ms"), "ms", cli.get("tiny_cold_skopeo_umoci_ms"), "skopeo+umoci")
row("the same into a store that exists (image pruned)", cli.get("tiny_cold_known_store_ms"), "ms",
    cli.get("tiny_cold_skopeo_umoci_ms"), "skopeo+umoci")
row("warm re-pull, whole command", cli.get("warm_repull_ms"), "ms", cli.get("warm_repull_skopeo_ms"), "skopeo")
row("3-layer cold pull (busybox + 2 small), whole command", cli.get("three_cold_ms"), "ms",
    cli.get("three_cold_skopeo_umoci_ms"), "skopeo+umoci")
row("tiny cold pull from a registry serving files as they are (nginx)", cli.get("tiny_cold_static_ms"), "ms",
    cli.get("tiny_cold_static_skopeo_umoci_ms"), "skopeo+umoci")
row("tiny cold pull, registry 10 ms away", far.get("tiny_cold_ms"), "ms", far.get("tiny_cold_skopeo_umoci_ms"),
    "skopeo+umoci")
row("3-layer cold pull, registry 10 ms away", far.get("three_cold_ms"), "ms", far.get("three_cold_skopeo_umoci_ms"),
    "skopeo+umoci")
for key, name in (("medium", "medium"), ("many_small", "many-small"), ("big_file", "big-file")):
    w = pull.get(key)
    if not w:
        continue
    peers = [(w.get("containerd_s"), "containerd"), (w.get("skopeo_umoci_s"), "skopeo+umoci")]
    peers = [p for p in peers if p[0]]
    best = min(peers) if peers else (None, "")
    row(f"{name} cold pull", w.get("ours_s"), "s", best[0], best[1])
    if w.get("tar_sync_s"):
        rows.append(f"| {name}: the floor, tar -x + sync of its tars, same run | {w['ours_s']:.2f} s ours "
                    f"| {w['tar_sync_s']:.2f} s floor | ours / floor {w['ours_vs_floor']:.2f} |")
row("one blob, verified, MiB/s", fetch.get("blob_mib_per_s"), "MiB/s", fetch.get("curl_openssl_sha256_mib_per_s"),
    "curl \\| openssl sha256", lower_is_better=False)
row("copy backend, 5 layers", backend.get("copy_s"), "s", backend.get("cp_a_s"), "cp -a")
floor_name = "floor: the same system calls, plain threads"
row("overlay provision+destroy, 64 in flight", backend.get("overlay_provisions_per_s"), "/s",
    backend.get("floor_pairs_per_s"), floor_name, lower_is_better=False)
row("overlay provision+destroy, 2 in flight", backend.get("overlay_provisions_per_s_2"), "/s",
    backend.get("floor_pairs_per_s_2"), floor_name, lower_is_better=False)
row("the same, --overlay_volatile, 64 in flight", backend.get("overlay_volatile_provisions_per_s"), "/s",
    backend.get("floor_volatile_pairs_per_s"), floor_name, lower_is_better=False)
row("the same, --overlay_volatile, 2 in flight", backend.get("overlay_volatile_provisions_per_s_2"), "/s",
    backend.get("floor_volatile_pairs_per_s_2"), floor_name, lower_is_better=False)
row("provisions, warm", provision.get("warm_per_s"), "/s", provision.get("floor_warm_per_s"),
    "floor: the same system calls, no actors", lower_is_better=False)
row("provisions, warm, p1 (the first containers of the burst)", provision.get("warm_p1_ms"), "ms")
row("provisions, warm, p50", provision.get("warm_p50_ms"), "ms")
row("provisions, warm, p99", provision.get("warm_p99_ms"), "ms")
row("provisions, warm, under a signedBy policy", provision.get("warm_policy_per_s"), "/s",
    provision.get("warm_plain_per_s"), "no policy, same run", lower_is_better=False)
row("round trips, 8 requesters x 1 server", actors.get("roundtrip_8x1_per_s"), "/s", caf.get("round_trip_per_s_median"), "CAF 0.17",
    lower_is_better=False)
if queue:
    rows.append(f"| small image during a {queue.get('big_alone_s', 0):.1f} s big pull, priority / FIFO "
                f"| {queue.get('small_prio_ms', 0):.0f} ms ({queue.get('prio_vs_alone', 0):.2f}x alone) "
                f"| {queue.get('small_fifo_ms', 0):.0f} ms FIFO | {queue.get('fifo_vs_prio', 0):.2f}x |")
    rows.append(f"| burst of {queue.get('burst')} provisions, one uncached image, p99 time-to-rootfs "
                f"| {queue.get('burst_p99_s', 0):.2f} s ({queue.get('burst_p99_vs_single', 0):.2f}x one alone, "
                f"{queue.get('burst_blobs_fetched')} blobs fetched) | {queue.get('burst_single_s', 0):.2f} s one alone | - |")
if dedup:
    rows.append(f"| second of two images sharing a {dedup.get('shared_mib')} MiB layer on other bases "
                f"| {dedup.get('second_pull_s', 0):.2f} s, {dedup.get('second_written_mib', 0):.0f} MiB written "
                f"({dedup.get('second_base_mib', 0):.0f} MiB its own base) "
                f"| {dedup.get('first_pull_s', 0):.2f} s the first, cold | - |")
# How cost grows: each figure at its largest count beside its smallest,
# with the ratio of the two per-item costs (1.00: linear), or, for one more
# item beside N (per_item=False), of the two costs (1.00: flat).
def growth_row(name, what, per_item=True):
    sizes = sorted(int(k[len(name) + 1:-3]) for k in growth if k.startswith(name + "_") and k.endswith("_ms"))
    if len(sizes) < 2:
        return
    lo, hi = sizes[0], sizes[-1]
    a, b = growth[f"{name}_{lo}_ms"], growth[f"{name}_{hi}_ms"]
    if per_item:
        ratio = f"per item, large / small: {(b / hi) / (a / lo):.2f}" if a > 0 else "-"
        rows.append(f"| {what}: {lo} -> {hi} | {a:.1f} -> {b:.1f} ms | {ratio} | - |")
    else:
        ratio = f"large / small: {b / a:.2f}" if a > 0 else "-"
        rows.append(f"| {what}: beside {lo} -> {hi} | {a:.2f} -> {b:.2f} ms | {ratio} | - |")
growth_row("recover", "recover, containers")
growth_row("containers", "`containers()`, containers")
growth_row("provision_one", "one more container provisioned", per_item=False)
growth_row("destroy_one", "one more container destroyed", per_item=False)
growth_row("provision_layers", "overlay provision, layers")
growth_row("images", "`images()`, images")
growth_row("prune", "prune, images")
if "heap_mib_added" in growth:
    rows.append(f"| memory with {growth.get('resident_containers')} containers | {growth['heap_mib_added']:.1f} MiB heap, "
                f"{growth['resident_mib_added']:.1f} MiB resident | - | - |")
print(f"\n{cores} cores; medians; ratio above 1: ours better. Logs and JSON: {d}\n")
print("| figure | ours | peer | ratio |")
print("|---|---|---|---|")
print("\n".join(rows))
EOF
exit $status
