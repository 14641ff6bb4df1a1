#include "cmd/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

namespace prov::cmd {

namespace {

using Clock = std::chrono::steady_clock;
using Phase = store::LayerProgress::Phase;

constexpr auto kTick = std::chrono::milliseconds(100);
constexpr auto kRateWindow = std::chrono::seconds(1);

const char* phaseName(Phase phase) {
  switch (phase) {
    case Phase::Waiting: return "waiting";
    case Phase::Downloading: return "downloading";
    case Phase::Extracting: return "extracting";
    case Phase::Done: return "done";
    case Phase::Cached: return "cached";
    case Phase::Failed: return "failed";
  }
  return "?";
}

std::string shortDigest(const std::string& digest) {
  const auto colon = digest.find(':');
  return digest.substr(colon == std::string::npos ? 0 : colon + 1, 12);
}

std::string rateText(double bytesPerSecond) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB/s", bytesPerSecond / (1024.0 * 1024.0));
  return text;
}

void writeAll(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a terminal that went away: nothing to show it on
    done += static_cast<std::size_t>(n);
  }
}

struct Layer {
  std::string digest;
  int position = -1;  // LayerProgress::position
  Phase phase = Phase::Waiting;
  std::int64_t total = 0;
  std::int64_t done = 0;
  std::optional<Clock::time_point> started;                        // first Downloading
  std::optional<Clock::time_point> downloaded;                     // first phase after Downloading
  std::deque<std::pair<Clock::time_point, std::int64_t>> samples;  // (when, done), drawer's own
};

}  // namespace

struct ProgressDisplay::State {
  int fd = -1;
  std::size_t columns = 0;  // 0: unknown

  std::mutex mutex;
  std::condition_variable wake;
  // Guarded by mutex.
  bool stopping = false;
  bool dirty = false;
  std::vector<Layer> layers;  // a few, one image's: found by a walk

  std::size_t linesDrawn = 0;  // the drawer's (then finish()'s) own

  void record(const store::LayerProgress& event) {
    const auto now = Clock::now();
    std::lock_guard lock(mutex);
    if (stopping) return;
    auto found = std::find_if(layers.begin(), layers.end(),
                              [&](const Layer& other) { return other.digest == event.layer; });
    if (found == layers.end()) {
      // In the image's order, base first, whichever reported first; one of
      // unknown place goes last.
      auto at = event.position < 0 ? layers.end() : std::find_if(layers.begin(), layers.end(), [&](const Layer& other) {
        return other.position < 0 || other.position > event.position;
      });
      found = layers.emplace(at);
      found->digest = event.layer;
      found->position = event.position;
    }
    Layer& layer = *found;
    if (event.phase == Phase::Downloading && !layer.started) layer.started = now;
    if (layer.phase == Phase::Downloading && event.phase != Phase::Downloading && !layer.downloaded) {
      layer.downloaded = now;
    }
    layer.phase = event.phase;
    layer.total = event.totalBytes;
    layer.done = event.bytesDone;
    dirty = true;
  }

  std::string line(Layer& layer, Clock::time_point now) const {
    char text[160];
    const std::string digest = shortDigest(layer.digest);
    if (layer.phase == Phase::Cached) {
      std::snprintf(text, sizeof text, "%-12s  %-11s  %21s", digest.c_str(), phaseName(layer.phase),
                    humanBytes(layer.total).c_str());
      return text;
    }
    std::string rate;
    if (layer.phase == Phase::Downloading) {
      layer.samples.emplace_back(now, layer.done);
      while (layer.samples.size() > 2 && layer.samples[1].first <= now - kRateWindow) layer.samples.pop_front();
      const auto& [since, from] = layer.samples.size() > 1 ? layer.samples.front()
                                                           : std::make_pair(*layer.started, std::int64_t{0});
      const double seconds = std::chrono::duration<double>(now - since).count();
      if (seconds > 0) rate = rateText(static_cast<double>(layer.done - from) / seconds);
    } else if (layer.started && layer.downloaded) {
      const double seconds = std::chrono::duration<double>(*layer.downloaded - *layer.started).count();
      if (seconds > 0) rate = rateText(static_cast<double>(layer.done) / seconds);
    }
    std::snprintf(text, sizeof text, "%-12s  %-11s  %9s / %-9s  %s", digest.c_str(), phaseName(layer.phase),
                  humanBytes(layer.done).c_str(), humanBytes(layer.total).c_str(), rate.c_str());
    std::string out = text;
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
  }

  // The block, drawn over the last one. Called with mutex held.
  std::string frame() {
    const auto now = Clock::now();
    std::string out;
    if (linesDrawn > 0) out += "\x1b[" + std::to_string(linesDrawn) + "A";
    for (auto& layer : layers) {
      std::string text = line(layer, now);
      if (columns > 1 && text.size() > columns - 1) text.resize(columns - 1);
      out += "\r\x1b[2K" + text + "\n";
    }
    linesDrawn = layers.size();
    dirty = false;
    return out;
  }

  void drawLoop() {
    std::unique_lock lock(mutex);
    while (!stopping) {
      wake.wait_for(lock, kTick, [this] { return stopping; });
      if (stopping) break;
      bool moving = false;
      for (const auto& layer : layers) moving = moving || layer.phase == Phase::Downloading;
      if (!dirty && !moving) continue;
      const std::string text = frame();
      lock.unlock();
      writeAll(fd, text);
      lock.lock();
    }
  }
};

ProgressDisplay::ProgressDisplay(int fd) : state_(std::make_shared<State>()) {
  state_->fd = fd;
  winsize size{};
  if (::ioctl(fd, TIOCGWINSZ, &size) == 0) state_->columns = size.ws_col;
  drawer_ = std::thread([state = state_] { state->drawLoop(); });
}

ProgressDisplay::~ProgressDisplay() { finish(); }

std::function<void(const store::LayerProgress&)> ProgressDisplay::callback() {
  return [weak = std::weak_ptr<State>(state_)](const store::LayerProgress& event) {
    if (auto state = weak.lock()) state->record(event);
  };
}

void ProgressDisplay::finish() {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->stopping) return;
    state_->stopping = true;
  }
  state_->wake.notify_all();
  drawer_.join();
  std::string text;
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->layers.empty()) text = state_->frame();
  }
  writeAll(state_->fd, text);
}

std::string humanBytes(std::int64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  while (value >= 1023.95 && unit + 1 < std::size(units)) {  // not "1024.0 KiB"
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.1f %s", value, units[unit]);
  return text;
}

}  // namespace prov::cmd
