#include "output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "cli.h"

namespace kvinfer::cli {
namespace {

namespace fs = std::filesystem;

std::atomic<int> g_stop_signal{0};

void OnStopSignal(int sig) { g_stop_signal.store(sig, std::memory_order_relaxed); }

// Writes all of `data` to fd; false with errno set on the first failure.
bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool SameFile(const std::string& a, std::string_view b) {
  if (b.empty()) return false;
  std::error_code ec;
  return fs::equivalent(a, fs::path(b), ec) && !ec;
}

}  // namespace

std::string JsonText(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void CheckOutputPath(const std::string& path, const char* flag,
                     std::initializer_list<std::string_view> inputs) {
  if (path.empty()) Die(fmt::format("{} needs a file name", flag));
  for (std::string_view input : inputs) {
    if (SameFile(path, input)) {
      Die(fmt::format("{} '{}' is an input of this command; refusing to overwrite it", flag, path));
    }
  }
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) Die(fmt::format("{} '{}' is a folder, not a file", flag, path));
    if (!S_ISREG(st.st_mode)) return;  // a device or pipe: written directly
    if (::access(path.c_str(), W_OK) != 0) {
      Die(fmt::format("{} '{}' cannot be written: {}", flag, path, std::strerror(errno)));
    }
    return;
  }
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (::stat(dir.c_str(), &st) != 0) {
    Die(fmt::format("{} '{}': folder '{}' does not exist", flag, path, dir.string()));
  }
  if (!S_ISDIR(st.st_mode)) {
    Die(fmt::format("{} '{}': '{}' is not a folder", flag, path, dir.string()));
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    Die(fmt::format("{} '{}': folder '{}' cannot be written: {}", flag, path, dir.string(),
                    std::strerror(errno)));
  }
}

void CheckOutputDir(const std::string& dir, const char* flag) {
  if (dir.empty()) Die(fmt::format("{} needs a folder name", flag));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) Die(fmt::format("{} '{}' cannot be created: {}", flag, dir, ec.message()));
  if (!fs::is_directory(dir, ec)) Die(fmt::format("{} '{}' is not a folder", flag, dir));
  if (::access(dir.c_str(), W_OK) != 0) {
    Die(fmt::format("{} '{}' cannot be written: {}", flag, dir, std::strerror(errno)));
  }
}

void WriteOutputFile(const std::string& path, std::string_view contents) {
  struct stat st{};
  const bool special = ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode);
  if (special) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) Die(fmt::format("cannot open '{}' for writing: {}", path, std::strerror(errno)));
    const bool ok = WriteAll(fd, contents);
    const int err = errno;
    ::close(fd);
    if (!ok) Die(fmt::format("cannot write '{}': {}", path, std::strerror(err)));
    return;
  }
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) Die(fmt::format("cannot create a file beside '{}': {}", path, std::strerror(errno)));
  bool ok = WriteAll(fd, contents) && ::fsync(fd) == 0;
  int err = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    Die(fmt::format("cannot write '{}': {}", path, std::strerror(err)));
  }
}

bool WriteStdout(std::string_view text) {
  if (!text.empty()) std::fwrite(text.data(), 1, text.size(), stdout);
  return std::fflush(stdout) == 0 && std::ferror(stdout) == 0;
}

bool StdoutIntact() { return std::fflush(stdout) == 0 && std::ferror(stdout) == 0; }

std::string Printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool valid = len > 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    }
    if (valid && len == 1 && (c < 0x20 || c == 0x7F)) valid = false;
    if (!valid) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

void InstallStopSignals() {
  struct sigaction sa{};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns EINTR
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

int StopSignal() { return g_stop_signal.load(std::memory_order_relaxed); }
void ClearStopSignal() { g_stop_signal.store(0, std::memory_order_relaxed); }

}  // namespace kvinfer::cli
