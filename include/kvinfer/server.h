// An OpenAI-compatible HTTP server over an AsyncEngine.
//
//   kvinfer::StatusOr<std::unique_ptr<kvinfer::Server>> server =
//       kvinfer::Server::Create(model, engine_options, {.port = 8080});
//   (*server)->Start();               // listens on its own threads
//   ...                               // until a signal, say
//   (*server)->Stop(std::chrono::seconds(30));
//
// Threads: one engine thread (the AsyncEngine's) runs continuous batching;
// HTTP threads only parse requests, tokenize, enqueue and stream outputs.
// Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
// GET /health, POST /tokenize, POST /detokenize, GET /metrics (Prometheus
// text), GET / (the chat page). docs/serving.md describes the API.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kvinfer/async_engine.h"
#include "kvinfer/kvinfer.h"
#include "kvinfer/status.h"

namespace kvinfer {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (see Server::port())
  // When non-empty, every /v1/ request must carry "Authorization: Bearer <key>".
  std::string api_key;
  // The model's name in /v1/models and the "model" field requests must
  // name; empty = the model file's base name.
  std::string served_model_name;
  int64_t max_body_bytes = 8 << 20;  // larger bodies get 413
  int http_threads = 128;            // concurrent connections served
  int read_timeout_s = 30;           // a request's headers and body must arrive within this
  int write_timeout_s = 30;          // a client must take streamed bytes within this
  int keep_alive_timeout_s = 5;      // idle keep-alive connections are closed after this
  // Requests waiting for admission at most; more get 429.
  int max_waiting = 256;
  // One line per finished request to this sink (stderr when empty).
  std::function<void(const std::string&)> log;
};

class ServerImpl;

class Server {
 public:
  // Creates the engine (errors as AsyncEngine::Create) and binds the
  // listening socket (kUnavailable naming host:port when it cannot).
  static StatusOr<std::unique_ptr<Server>> Create(const Model& model, const EngineOptions& options,
                                                  const ServerOptions& server_options);
  ~Server();  // Stop(0)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The port bound (the chosen one when ServerOptions::port was 0).
  int port() const;
  // The name requests must use.
  const std::string& model_name() const;
  // Starts accepting connections on background threads; returns at once.
  void Start();
  // Stops accepting new requests (they get 503), lets running requests
  // finish for up to `drain`, aborts the rest (their streams end with
  // finish_reason "abort"), then closes the listener and joins every thread.
  // Idempotent.
  void Stop(std::chrono::milliseconds drain);

  EngineStats Stats() const;
  KvCacheStats KvStats() const;

 private:
  explicit Server(std::unique_ptr<ServerImpl> impl);
  std::unique_ptr<ServerImpl> impl_;
};

}  // namespace kvinfer
