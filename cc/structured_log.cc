#include "cc/structured_log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace tfad {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kKeyValue};
std::atomic<LogLevel> g_min_level{LogLevel::kInfo};
std::mutex g_write_mu;

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", ch);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out;
}

std::string KvValue(const std::string& v) {
  bool needs_quotes = v.empty();
  for (char ch : v) needs_quotes |= (ch == ' ' || ch == '"' || ch == '=' || static_cast<unsigned char>(ch) < 0x20);
  return needs_quotes ? "\"" + JsonEscape(v) + "\"" : v;
}

std::string NowUtc() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

void SetLogFormat(LogFormat format) { g_format = format; }
void SetMinLogLevel(LogLevel level) { g_min_level = level; }

std::string FormatMs(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", ms);
  return buf;
}

std::string FormatLogLine(LogFormat format, LogLevel level, const std::string& event,
                          std::initializer_list<LogField> fields, const std::string& timestamp) {
  std::string line;
  if (format == LogFormat::kJson) {
    line = "{\"ts\":\"" + timestamp + "\",\"level\":\"" + LevelName(level) + "\",\"event\":\"" + JsonEscape(event) + "\"";
    for (const auto& [k, v] : fields) line += ",\"" + JsonEscape(k) + "\":\"" + JsonEscape(v) + "\"";
    line += "}";
  } else {
    line = "ts=" + timestamp + " level=" + LevelName(level) + " event=" + KvValue(event);
    for (const auto& [k, v] : fields) line += " " + k + "=" + KvValue(v);
  }
  return line;
}

void LogEvent(LogLevel level, const std::string& event, std::initializer_list<LogField> fields) {
  if (level < g_min_level.load()) return;
  const std::string line = FormatLogLine(g_format.load(), level, event, fields, NowUtc()) + "\n";
  std::lock_guard<std::mutex> lock(g_write_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace tfad
