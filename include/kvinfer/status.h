// Status and StatusOr: how errors cross the public API. Nothing in
// include/kvinfer/ throws; internal code may throw kvinfer::Error, which the
// API layer turns into a Status with the same message.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace kvinfer {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,   // a bad flag, request or parameter
  kNotFound,          // a missing file or key
  kDataLoss,          // a malformed file: truncated, out of bounds, inconsistent
  kUnimplemented,     // a valid input this build does not support (e.g. a tensor type)
  kOutOfRange,        // e.g. a prompt longer than the context
  kResourceExhausted, // e.g. no KV blocks left
  kInternal,
  kUnavailable,       // e.g. the engine is shutting down
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: --top-p must be in (0, 1], got 1.5"
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  StatusOr(Status status) : v_(std::move(status)) {}   // NOLINT: must not be ok

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kvinfer
