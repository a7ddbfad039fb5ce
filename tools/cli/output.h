// What the command line does with its output and with signals: JSON that
// never fails on bytes that are not UTF-8, files that are either written
// whole or reported as lost, paths checked before the work starts, text
// made safe for a terminal, and SIGINT/SIGTERM turned into a flag that the
// long-running loops poll.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kvinfer::cli {

// j as text; strings that are not valid UTF-8 (file names, model metadata)
// have each invalid byte replaced by U+FFFD instead of throwing.
std::string JsonText(const nlohmann::json& j, int indent = 2);

// Fails (Die) before any work is done when `path` cannot be written: its
// folder is missing or not writable, it is a folder, or it is the model file
// itself (or any of `inputs`). `flag` names the option in the message.
void CheckOutputPath(const std::string& path, const char* flag,
                     std::initializer_list<std::string_view> inputs = {});
// Creates folder `dir` (and its parents) now, or Dies naming it.
void CheckOutputDir(const std::string& dir, const char* flag);

// Writes `contents` to `path` whole: a regular file is written beside its
// destination and renamed over it once every byte is on disk, so a full disk
// leaves the previous file (or none), never a truncated one; a device or
// pipe (/dev/stdout, /dev/full) is written directly. Dies naming the path
// and the system's reason when anything was not written.
void WriteOutputFile(const std::string& path, std::string_view contents);

// Writes to stdout and flushes, so streamed text appears as it is made;
// false when the stream has failed (full disk, closed pipe).
bool WriteStdout(std::string_view text);
// Flushes stdout and reports whether everything written to it arrived; main
// exits non-zero with a message when it did not.
bool StdoutIntact();

// `s` with control characters and invalid UTF-8 shown as \xNN escapes, for
// printing metadata read from a file to a terminal.
std::string Printable(std::string_view s);

// SIGINT / SIGTERM set a flag instead of killing the process, so a command
// can stop admitting work, keep what finished and exit non-zero. Installed
// by commands that run the engine; idempotent.
void InstallStopSignals();
// The signal received since the last ClearStopSignal(), or 0.
int StopSignal();
void ClearStopSignal();
// The exit status for a command stopped by `sig`: 128 + sig, as shells report.
inline int ExitStatusForSignal(int sig) { return 128 + sig; }

}  // namespace kvinfer::cli
