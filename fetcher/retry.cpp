#include "fetcher/retry.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <string>

namespace prov::fetcher {

Backoff::Backoff(const RetryPolicy& policy, std::uint64_t seed)
    : policy_(policy), base_(static_cast<double>(policy.initialDelay.count())), random_(seed) {}

Duration Backoff::next() {
  const double capped = std::min(base_, static_cast<double>(policy_.maxDelay.count()));
  base_ = std::min(base_ * policy_.multiplier, static_cast<double>(policy_.maxDelay.count()));
  std::uniform_real_distribution<double> factor(1.0 - policy_.jitter, 1.0 + policy_.jitter);
  return Duration(static_cast<Duration::rep>(capped * factor(random_)));
}

bool retriable(const Error& error) { return error.kind == ErrorKind::Unavailable || error.kind == ErrorKind::Timeout; }

std::optional<Duration> parseRetryAfter(std::string_view value, std::chrono::system_clock::time_point now) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    if (value.size() > 9) return std::nullopt;  // absurd; and keeps the arithmetic small
    return Duration(std::stoll(std::string(value)) * 1000);
  }
  // IMF-fixdate, e.g. "Wed, 21 Oct 2026 07:28:00 GMT".
  std::tm tm{};
  const std::string text(value);
  const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const auto when = std::chrono::system_clock::from_time_t(::timegm(&tm));
  if (when <= now) return std::nullopt;
  return std::chrono::duration_cast<Duration>(when - now);
}

}  // namespace prov::fetcher
