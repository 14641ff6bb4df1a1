// bench_actors: costs of the runtime's basic operations.
//
//   build/bin/bench_actors [--runs=5] [--workers=N] [--requesters=8] [--round_trips=1000000]
//
// Each figure is the median of --runs runs (min and max are printed too, as a
// noise gauge). The last line printed is one JSON object.
//   dispatch_oneway_per_s   void dispatches from one thread into one process
//   dispatch_roundtrip_per_s  process A dispatches to B and continues on A
//                             when B's reply arrives (A -> B -> A), in a loop
//   roundtrip_8x1_per_s     the same with --requesters (8) processes against
//                           one server, --round_trips (1,000,000) in all: the
//                           shape of CAF's request/response benchmark, which
//                           bench_caf (bench/caf/) runs on CAF itself. Run both
//                           with --workers=2 to compare.
//   then_link_ns            cost per link of then chains (1,000 x 1,000 links)
//                           built on a pending promise and then run
//   collect_10k_ms          collect() over 10,000 pending futures, completed
//                           from the main thread

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <vector>

#include <boost/program_options.hpp>

#include "actors/actors.hpp"
#include "bench/options.hpp"

namespace {

using namespace prov::actors;
using SteadyClock = std::chrono::steady_clock;

double seconds(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

class Sink : public Process<Sink> {
 public:
  void add(long n) { total_ += n; }
  long total() const { return total_; }
  long echo(long n) { return n; }

 private:
  long total_ = 0;
};

class Pinger : public Process<Pinger> {
 public:
  explicit Pinger(PID<Sink> sink) : sink_(std::move(sink)) {}
  Future<long> run(long rounds) {
    i_ = 0;
    return loop(
        self(), [this] { return dispatch(sink_, &Sink::echo, i_); },
        [this, rounds](long) -> ControlFlow<long> {
          if (++i_ == rounds) return Break(i_);
          return Continue();
        });
  }

 private:
  PID<Sink> sink_;
  long i_ = 0;
};

double onewayPerSecond(Runtime& runtime, long count) {
  Sink sink;
  PID<Sink> pid = spawn(runtime, sink);
  const auto start = SteadyClock::now();
  for (long i = 0; i < count; ++i) dispatch(pid, &Sink::add, 1L);
  Future<long> total = dispatch(pid, &Sink::total);
  total.waitFor(std::chrono::minutes(5));
  const double elapsed = seconds(start);
  if (!total.isReady() || total.get() != count) {
    std::fprintf(stderr, "bench_actors: one-way dispatch lost events\n");
    std::exit(1);
  }
  terminate(pid);
  wait(pid);
  return count / elapsed;
}

double roundtripPerSecond(Runtime& runtime, long rounds) {
  Sink sink;
  PID<Sink> sinkPid = spawn(runtime, sink);
  Pinger pinger(sinkPid);
  PID<Pinger> pingerPid = spawn(runtime, pinger);
  const auto start = SteadyClock::now();
  Future<long> done = dispatch(pingerPid, &Pinger::run, rounds);
  done.waitFor(std::chrono::minutes(5));
  const double elapsed = seconds(start);
  if (!done.isReady() || done.get() != rounds) {
    std::fprintf(stderr, "bench_actors: round trips did not complete\n");
    std::exit(1);
  }
  terminate(pingerPid);
  wait(pingerPid);
  terminate(sinkPid);
  wait(sinkPid);
  return rounds / elapsed;
}

// `requesters` Pingers, each running its share of `total` round trips to one
// Sink at once; the time until the last one is done.
double manyToOnePerSecond(Runtime& runtime, long requesters, long total) {
  Sink sink;
  PID<Sink> sinkPid = spawn(runtime, sink);
  std::vector<std::unique_ptr<Pinger>> pingers;
  std::vector<PID<Pinger>> pids;
  for (long r = 0; r < requesters; ++r) {
    pingers.push_back(std::make_unique<Pinger>(sinkPid));
    pids.push_back(spawn(runtime, *pingers.back()));
  }
  const auto start = SteadyClock::now();
  std::vector<Future<long>> runs;
  for (long r = 0; r < requesters; ++r) {
    runs.push_back(dispatch(pids[static_cast<std::size_t>(r)], &Pinger::run,
                            total / requesters + (r < total % requesters ? 1 : 0)));
  }
  Future<std::vector<long>> all = collect(runs);
  all.waitFor(std::chrono::minutes(5));
  const double elapsed = seconds(start);
  long done = 0;
  if (all.isReady()) {
    for (long n : all.get()) done += n;
  }
  if (done != total) {
    std::fprintf(stderr, "bench_actors: %ld of %ld round trips completed\n", done, total);
    std::exit(1);
  }
  for (const auto& pid : pids) {
    terminate(pid);
    wait(pid);
  }
  terminate(sinkPid);
  wait(sinkPid);
  return total / elapsed;
}

// Completing a pending chain runs its links recursively on the completing
// thread, so the million links are 1,000 chains of 1,000.
double thenLinkNanoseconds(long chains, long links) {
  const auto start = SteadyClock::now();
  for (long c = 0; c < chains; ++c) {
    Promise<long> promise;
    Future<long> f = promise.future();
    for (long i = 0; i < links; ++i) f = f.then([](long v) { return v + 1; });
    promise.set(0);
    if (!f.isReady() || f.get() != links) {
      std::fprintf(stderr, "bench_actors: then chain gave the wrong value\n");
      std::exit(1);
    }
  }
  return seconds(start) * 1e9 / (chains * links);
}

double collectMilliseconds(long count) {
  std::vector<Promise<long>> promises(count);
  std::vector<Future<long>> futures;
  futures.reserve(count);
  const auto start = SteadyClock::now();
  for (auto& p : promises) futures.push_back(p.future());
  Future<std::vector<long>> all = collect(futures);
  for (long i = 0; i < count; ++i) promises[i].set(i);
  const double elapsed = seconds(start);
  if (!all.isReady() || static_cast<long>(all.get().size()) != count) {
    std::fprintf(stderr, "bench_actors: collect did not complete\n");
    std::exit(1);
  }
  return elapsed * 1e3;
}

struct Stat {
  double median, min, max;
};

template <typename F>
Stat measure(int runs, F f) {
  std::vector<double> values;
  for (int i = 0; i < runs; ++i) values.push_back(f());
  std::sort(values.begin(), values.end());
  return {values[values.size() / 2], values.front(), values.back()};
}

void print(const char* name, const Stat& s, const char* unit) {
  std::printf("%-26s %14.1f %-6s (min %.1f, max %.1f)\n", name, s.median, unit, s.min, s.max);
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  int runs = 5;
  std::size_t workers = 0;
  long requesters = 8, roundTrips = 1000000;
  po::options_description options("bench_actors: runtime operation costs; last line is JSON");
  options.add_options()("runs", po::value<int>(&runs)->default_value(5), "runs per figure (the median is reported)")(
      "workers", po::value<std::size_t>(&workers)->default_value(0), "runtime worker threads (0: one per core)")(
      "requesters", po::value<long>(&requesters)->default_value(8), "requesters of the many-to-one round trip")(
      "round_trips", po::value<long>(&roundTrips)->default_value(1000000), "round trips of the many-to-one figure");
  po::variables_map vm;
  if (auto exit = prov::bench::parseOptions(argc, argv, options, vm)) return *exit;
  if (runs < 1) {
    std::cerr << "error: --runs must be at least 1\n";
    return 1;
  }
  if (requesters < 1 || roundTrips < requesters) {
    std::cerr << "error: --requesters must be at least 1 and --round_trips at least --requesters\n";
    return 1;
  }

  Runtime runtime(Runtime::Options{.workerThreads = workers, .blockingThreads = 0});
  std::printf("bench_actors: %zu worker threads, %d runs per figure (median, min, max)\n", runtime.workerThreads(),
              runs);
  const Stat oneway = measure(runs, [&] { return onewayPerSecond(runtime, 2000000); });
  print("dispatch one-way", oneway, "/s");
  const Stat roundtrip = measure(runs, [&] { return roundtripPerSecond(runtime, 200000); });
  print("dispatch round trip", roundtrip, "/s");
  const Stat manyToOne = measure(runs, [&] { return manyToOnePerSecond(runtime, requesters, roundTrips); });
  char label[64];
  std::snprintf(label, sizeof label, "round trip, %ld to 1", requesters);
  print(label, manyToOne, "/s");
  const Stat link = measure(runs, [] { return thenLinkNanoseconds(1000, 1000); });
  print("then link", link, "ns");
  const Stat coll = measure(runs, [] { return collectMilliseconds(10000); });
  print("collect 10,000 futures", coll, "ms");

  std::printf(
      "{\"dispatch_oneway_per_s\": %.0f, \"dispatch_roundtrip_per_s\": %.0f, \"roundtrip_8x1_per_s\": %.0f, "
      "\"requesters\": %ld, \"round_trips\": %ld, \"then_link_ns\": %.1f, \"collect_10k_ms\": %.3f, \"runs\": %d, "
      "\"workers\": %zu}\n",
      oneway.median, roundtrip.median, manyToOne.median, requesters, roundTrips, link.median, coll.median, runs,
      runtime.workerThreads());
  return 0;
}
