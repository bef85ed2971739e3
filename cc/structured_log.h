// Structured logging: one line per event on stderr, `key=value` (default) or JSON.
#ifndef TFAD_CC_STRUCTURED_LOG_H_
#define TFAD_CC_STRUCTURED_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

namespace tfad {

enum class LogFormat { kKeyValue, kJson };
enum class LogLevel { kDebug, kInfo, kWarning, kError };

void SetLogFormat(LogFormat format);
void SetMinLogLevel(LogLevel level);

using LogField = std::pair<std::string, std::string>;

// Writes `ts=... level=... event=<event> k=v ...` (values quoted when they contain spaces, quotes or '=').
void LogEvent(LogLevel level, const std::string& event, std::initializer_list<LogField> fields = {});

// Formats one line without writing it (for tests).
std::string FormatLogLine(LogFormat format, LogLevel level, const std::string& event,
                          std::initializer_list<LogField> fields, const std::string& timestamp);

std::string FormatMs(double ms);  // "12.345"

}  // namespace tfad

#endif  // TFAD_CC_STRUCTURED_LOG_H_
