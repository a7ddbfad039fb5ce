// A thread-safe front for an Engine: one thread owns the engine and steps it;
// any thread adds requests, aborts them and reads their outputs.
//
//   auto async = kvinfer::AsyncEngine::Create(model, {.max_seqs = 8}, {.max_waiting = 64});
//   auto stream = (*async)->Add("Once upon a time", {.max_tokens = 64});
//   while (std::optional<kvinfer::RequestOutput> out = stream->Next()) {
//     /* out->text_delta ... ; the last one has request_finished */
//   }
//
// Nothing here throws; failures come back as Status.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvinfer/kvinfer.h"
#include "kvinfer/status.h"

namespace kvinfer {

struct AsyncEngineOptions {
  // Requests waiting for admission at most (added but not yet running in
  // the engine, plus those being handed to it). Add refuses more with
  // kResourceExhausted.
  int max_waiting = 256;
};

class StreamState;
class AsyncEngineImpl;

// The outputs of one request, in order, ending with exactly one output
// whose request_finished is true: the request's own last output, or on
// Abort or Shutdown an output with finish_reason kAborted for every sample
// that had not finished. A handle: copies share the stream. Safe to use
// from any thread; meant for one reader.
class RequestStream {
 public:
  RequestId id() const;
  // The caller's RequestOptions::request_id.
  const std::string& request_id() const;

  // The next output, waiting for it (without a timeout: until it comes).
  // nullopt when the timeout passes first, or when the final output was
  // already returned (then done() is true).
  std::optional<RequestOutput> Next(std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  // The final output has been returned by Next.
  bool done() const;

 private:
  friend class AsyncEngineImpl;
  explicit RequestStream(std::shared_ptr<StreamState> state) : state_(std::move(state)) {}
  std::shared_ptr<StreamState> state_;
};

class AsyncEngine {
 public:
  // Creates the engine (errors as Engine::Create) and starts its thread.
  static StatusOr<std::unique_ptr<AsyncEngine>> Create(const Model& model,
                                                       const EngineOptions& options,
                                                       const AsyncEngineOptions& async_options = {});
  // Shuts down: every stream still open ends with kAborted.
  ~AsyncEngine();
  AsyncEngine(const AsyncEngine&) = delete;
  AsyncEngine& operator=(const AsyncEngine&) = delete;

  // Hands a request to the engine thread and waits until the engine has
  // taken it (at most about one step). Errors: Engine::AddRequest's, a full
  // waiting queue (kResourceExhausted) and a shut-down engine (kUnavailable).
  StatusOr<RequestStream> Add(std::string_view prompt,
                                               const SamplingParams& params,
                                               const RequestOptions& options = {});
  StatusOr<RequestStream> AddTokens(std::vector<int32_t> prompt_tokens,
                                                     const SamplingParams& params,
                                                     const RequestOptions& options = {});
  // Asks the engine thread to abort a request (all its samples); its stream
  // then ends with kAborted. False if the request is unknown or its final
  // output was already produced.
  bool Abort(RequestId id);
  // Aborts every request, ends every stream and stops the engine thread;
  // later Adds fail with kUnavailable. Idempotent.
  void Shutdown();

  // Snapshots taken by the engine thread after its latest step.
  EngineStats Stats() const;
  KvCacheStats KvStats() const;
  const EngineOptions& options() const;

 private:
  explicit AsyncEngine(std::unique_ptr<AsyncEngineImpl> impl);
  std::unique_ptr<AsyncEngineImpl> impl_;
};

}  // namespace kvinfer
