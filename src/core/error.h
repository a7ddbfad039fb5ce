// Internal error model.
//
// - kvinfer::Error is thrown for bad input (malformed files, bad requests).
//   It carries a StatusCode and a message that says what, where and what was
//   expected. The public API catches it and returns a Status.
// - KVINFER_CHECK is for programmer errors: cheap invariants that stay on in
//   release builds and abort with file:line.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "kvinfer/status.h"

namespace kvinfer {

class Error : public std::runtime_error {
 public:
  Error(StatusCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  StatusCode code() const { return code_; }
  Status ToStatus() const { return Status(code_, what()); }

 private:
  StatusCode code_;
};

template <typename... Args>
[[noreturn]] void Fail(StatusCode code, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(code, fmt::format(f, std::forward<Args>(args)...));
}

// Renders untrusted bytes (a key or name read from a file) for an error
// message: printable ASCII as is, the rest as \xNN, at most 64 bytes.
std::string Printable(std::string_view untrusted);

[[noreturn]] void CheckFailed(const char* file, int line, const char* expr, const std::string& msg);

// Runs `fn` and turns a thrown kvinfer::Error (or std::exception) into a Status.
template <typename Fn>
Status CatchToStatus(Fn&& fn) {
  try {
    fn();
    return Status::Ok();
  } catch (const Error& e) {
    return e.ToStatus();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kResourceExhausted, "out of memory");
  } catch (const std::exception& e) {
    return Status(StatusCode::kInternal, e.what());
  }
}

}  // namespace kvinfer

#define KVINFER_CHECK(cond)                                                \
  do {                                                                     \
    if (!(cond)) [[unlikely]] {                                            \
      ::kvinfer::CheckFailed(__FILE__, __LINE__, #cond, std::string());    \
    }                                                                      \
  } while (0)

#define KVINFER_CHECK_MSG(cond, ...)                                                   \
  do {                                                                                 \
    if (!(cond)) [[unlikely]] {                                                        \
      ::kvinfer::CheckFailed(__FILE__, __LINE__, #cond, ::fmt::format(__VA_ARGS__));  \
    }                                                                                  \
  } while (0)
