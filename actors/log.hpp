#pragma once

// Structured log lines: one per notable event (a pull's start and end, a
// retry, a token fetched, a prune, a recovery decision), as an event name and
// key=value fields. Nothing is logged until a sink is installed: the command
// line installs stderrSink() at --log_level; an embedding agent installs its
// own to route records into its logging.
//
// The sink runs on the thread that logs, often a runtime thread: it must not
// block (format, hand off, return). Field values never hold a secret:
// callers log no credential, token or header, and every URL's query string
// (where presigned blob URLs keep their signatures) and user:password@ are
// cut off here, in log(), whatever the caller passed.

#include <chrono>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace prov::actors {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };

struct LogField {
  std::string key;
  std::string value;
};

struct LogRecord {
  std::chrono::system_clock::time_point time;
  LogLevel level = LogLevel::Info;
  std::string event;  // "pull.end", "retry", "recover.destroy", ...
  std::vector<LogField> fields;
};

using LogSink = std::function<void(const LogRecord&)>;

// Installs the process's sink (empty: none) and the most detailed level it
// gets. Thread-safe; records logged meanwhile go to the old or the new sink.
void setLogSink(LogSink sink, LogLevel threshold = LogLevel::Info);

// Whether a record of `level` would reach a sink (cheap: one atomic load).
bool logEnabled(LogLevel level);

// Hands a record to the sink, if one takes `level`.
void log(LogLevel level, std::string event, std::initializer_list<LogField> fields = {});

// "2026-12-02T01:02:03.456Z level=info event=pull.end image=... ms=12":
// logfmt; values with spaces, quotes or '=' are quoted, control characters
// escaped. No newline at the end.
std::string formatLog(const LogRecord& record);

// A sink writing formatLog lines to stderr, one write(2) per line.
LogSink stderrSink();

// "error", "warn", "info", "debug"; nullopt otherwise.
std::optional<LogLevel> parseLogLevel(std::string_view text);
const char* toString(LogLevel level);

// `text` with the query string of every http:// or https:// URL in it (any
// case) cut to "?…" and its user:password@ removed (what log() does to
// every field).
std::string withoutQueries(std::string_view text);

}  // namespace prov::actors
