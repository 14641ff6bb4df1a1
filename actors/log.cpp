#include "actors/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <ctime>
#include <memory>
#include <mutex>

namespace prov::actors {

namespace {

// -1: no sink.
std::atomic<int> threshold{-1};
std::mutex sinkMutex;
std::shared_ptr<const LogSink> installed;

bool needsQuotes(std::string_view value) {
  if (value.empty()) return true;
  for (unsigned char c : value) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) return true;
  }
  return false;
}

void appendValue(std::string& out, std::string_view value) {
  if (!needsQuotes(value)) {
    out += value;
    return;
  }
  out += '"';
  static const char* kHex = "0123456789abcdef";
  for (unsigned char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < ' ' || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

}  // namespace

void setLogSink(LogSink sink, LogLevel level) {
  std::lock_guard lock(sinkMutex);
  if (!sink) {
    threshold.store(-1);
    installed.reset();
    return;
  }
  installed = std::make_shared<const LogSink>(std::move(sink));
  threshold.store(static_cast<int>(level));
}

bool logEnabled(LogLevel level) { return static_cast<int>(level) <= threshold.load(std::memory_order_relaxed); }

void log(LogLevel level, std::string event, std::initializer_list<LogField> fields) {
  if (!logEnabled(level)) return;
  std::shared_ptr<const LogSink> sink;
  {
    std::lock_guard lock(sinkMutex);
    sink = installed;
  }
  if (!sink) return;
  LogRecord record{std::chrono::system_clock::now(), level, std::move(event), {}};
  record.fields.reserve(fields.size());
  for (const auto& f : fields) record.fields.push_back({f.key, withoutQueries(f.value)});
  (*sink)(record);
}

std::string formatLog(const LogRecord& record) {
  const auto since = record.time.time_since_epoch();
  const std::time_t seconds = std::chrono::duration_cast<std::chrono::seconds>(since).count();
  const long millis = static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(since).count() % 1000);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char stamp[80];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
  std::string out = stamp;
  out += " level=";
  out += toString(record.level);
  out += " event=";
  appendValue(out, record.event);
  for (const auto& f : record.fields) {
    out += ' ';
    out += f.key;
    out += '=';
    appendValue(out, f.value);
  }
  return out;
}

LogSink stderrSink() {
  return [](const LogRecord& record) {
    std::string line = formatLog(record) + "\n";
    const char* at = line.data();
    std::size_t left = line.size();
    while (left > 0) {
      const ssize_t n = ::write(STDERR_FILENO, at, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      at += n;
      left -= static_cast<std::size_t>(n);
    }
  };
}

std::optional<LogLevel> parseLogLevel(std::string_view text) {
  if (text == "error") return LogLevel::Error;
  if (text == "warn") return LogLevel::Warn;
  if (text == "info") return LogLevel::Info;
  if (text == "debug") return LogLevel::Debug;
  return std::nullopt;
}

const char* toString(LogLevel level) {
  switch (level) {
    case LogLevel::Error: return "error";
    case LogLevel::Warn: return "warn";
    case LogLevel::Info: return "info";
    case LogLevel::Debug: return "debug";
  }
  return "info";
}

std::string withoutQueries(std::string_view text) {
  // Each "scheme://" whose scheme is http or https, in any case: the URL
  // runs to whitespace or a quote; its user:password@ and its query go.
  auto lower = [](char c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c); };
  std::string out;
  out.reserve(text.size());
  std::size_t copied = 0, at = 0;
  while ((at = text.find("://", at)) != std::string_view::npos) {
    std::size_t start = at;
    while (start > 0 && std::isalpha(static_cast<unsigned char>(text[start - 1]))) --start;
    std::string scheme;
    for (std::size_t k = start; k < at; ++k) scheme += lower(text[k]);
    if (scheme != "http" && scheme != "https") {
      at += 3;
      continue;
    }
    std::size_t end = at + 3;
    while (end < text.size() && static_cast<unsigned char>(text[end]) > ' ' && text[end] != '\'' && text[end] != '"') {
      ++end;
    }
    const std::string_view url = text.substr(at + 3, end - at - 3);
    const std::size_t slash = url.find('/');
    const std::size_t userinfo = url.substr(0, slash).rfind('@');
    const std::size_t query = url.find('?');
    out += text.substr(copied, at + 3 - copied);
    std::string_view rest = url;
    if (userinfo != std::string_view::npos) rest.remove_prefix(userinfo + 1);
    const std::size_t cut = rest.find('?');
    out += rest.substr(0, cut);
    if (query != std::string_view::npos) out += "?…";
    copied = at = end;
  }
  out += text.substr(copied);
  return out;
}

}  // namespace prov::actors
