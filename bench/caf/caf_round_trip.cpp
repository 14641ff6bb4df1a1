// bench_caf: request/response round trips in CAF 0.17, for comparison with
// bench_actors (this project's runtime).
//
//   bench_caf [--round_trips=1000000] [--requesters=8] [--runs=5] [--workers=2]
//
// Shape: one server actor that replies to an int with the same int; R
// requester actors, each doing its share of the N round trips one after the
// other (request(...).then(...), the next request sent from the reply
// handler); the CAF scheduler is limited to --workers threads. A run is timed
// (steady_clock) from spawning the requesters until all of them reported done.
// Each run's round trips/s goes to stderr; the last stdout line is one JSON
// object with the median, min and max over the runs.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "caf/all.hpp"

namespace {

using done_atom = caf::atom_constant<caf::atom("done")>;
using SteadyClock = std::chrono::steady_clock;

caf::behavior server(caf::event_based_actor*) {
  return {[](int x) { return x; }};
}

struct requester_state {
  long left = 0;
  int next = 0;
};

using requester_actor = caf::stateful_actor<requester_state>;

// Sends one request; its reply handler sends the next, until `left` is 0.
void step(requester_actor* self, const caf::actor& srv, const caf::actor& done_to) {
  if (self->state.left == 0) {
    self->send(done_to, done_atom::value, true);
    self->quit();
    return;
  }
  const int sent = self->state.next++;
  self->request(srv, caf::infinite, sent)
      .then(
          [=](int reply) {
            if (reply != sent) {
              std::fprintf(stderr, "bench_caf: wrong reply %d for %d\n", reply, sent);
              self->send(done_to, done_atom::value, false);
              self->quit();
              return;
            }
            --self->state.left;
            step(self, srv, done_to);
          },
          [=](caf::error& err) {
            std::fprintf(stderr, "bench_caf: request failed: %s\n", caf::to_string(err).c_str());
            self->send(done_to, done_atom::value, false);
            self->quit();
          });
}

caf::behavior requester(requester_actor* self, caf::actor srv, long rounds, caf::actor done_to) {
  self->state.left = rounds;
  step(self, srv, done_to);
  return {[](int) {}};  // Keeps the actor alive; it quits itself when done.
}

// One run: returns round trips per second, or a negative value on failure.
double run_once(caf::actor_system& sys, long round_trips, int requesters) {
  caf::scoped_actor self{sys};
  caf::actor srv = sys.spawn(server);
  const auto start = SteadyClock::now();
  for (int r = 0; r < requesters; ++r) {
    const long share = round_trips / requesters + (r < round_trips % requesters ? 1 : 0);
    sys.spawn(requester, srv, share, caf::actor{self});
  }
  bool ok = true;
  for (int r = 0; r < requesters && ok; ++r) {
    self->receive([&](done_atom, bool fine) { ok = ok && fine; },
                  caf::after(std::chrono::minutes(5)) >>
                      [&] {
                        std::fprintf(stderr, "bench_caf: timed out waiting for requesters\n");
                        ok = false;
                      });
  }
  const double elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
  self->send_exit(srv, caf::exit_reason::user_shutdown);
  return ok ? round_trips / elapsed : -1.0;
}

bool parse_long(const char* arg, const char* name, long& out) {
  const std::size_t len = std::strlen(name);
  if (std::strncmp(arg, name, len) != 0 || arg[len] != '=') return false;
  char* end = nullptr;
  out = std::strtol(arg + len + 1, &end, 10);
  if (end == arg + len + 1 || *end != '\0') {
    std::fprintf(stderr, "error: bad value in %s\n", arg);
    std::exit(1);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long round_trips = 1000000, requesters = 8, runs = 5, max_workers = 2;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::printf("usage: %s [--round_trips=1000000] [--requesters=8] [--runs=5] [--workers=2]\n", argv[0]);
      return 0;
    }
    if (parse_long(argv[i], "--round_trips", round_trips) || parse_long(argv[i], "--requesters", requesters) ||
        parse_long(argv[i], "--runs", runs) || parse_long(argv[i], "--workers", max_workers))
      continue;
    std::fprintf(stderr, "error: unknown argument %s\n", argv[i]);
    return 1;
  }
  if (round_trips < 1 || requesters < 1 || runs < 1 || max_workers < 1 || round_trips > 2147483647L) {
    std::fprintf(stderr, "error: --round_trips, --requesters, --runs and --workers must be at least 1\n");
    return 1;
  }

  // argv is not handed to CAF (its parser would reject our options).
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", static_cast<size_t>(max_workers));
  caf::actor_system sys{cfg};
  const std::size_t workers = sys.scheduler().num_workers();

  std::vector<double> values;
  for (long k = 0; k < runs; ++k) {
    const double rate = run_once(sys, round_trips, static_cast<int>(requesters));
    if (rate < 0) return 1;
    std::fprintf(stderr, "bench_caf: run %ld: %.0f round trips/s\n", k + 1, rate);
    values.push_back(rate);
  }
  std::sort(values.begin(), values.end());
  std::printf(
      "{\"impl\":\"caf-0.17\",\"requesters\":%ld,\"round_trips\":%ld,\"workers\":%zu,"
      "\"round_trip_per_s_median\":%.0f,\"round_trip_per_s_min\":%.0f,\"round_trip_per_s_max\":%.0f,"
      "\"runs\":%ld}\n",
      requesters, round_trips, workers, values[values.size() / 2], values.front(), values.back(), runs);
  std::fflush(stdout);
  return 0;
}
