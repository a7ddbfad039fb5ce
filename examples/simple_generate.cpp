// The smallest complete use of the kvinfer API: load, generate, stream.
//   ./build/simple_generate models/SmolLM2-135M-Instruct.Q4_1.gguf "Once upon a time"
#include <cstdio>

#include "kvinfer/kvinfer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf PROMPT\n", argv[0]);
    return 2;
  }
  kvinfer::StatusOr<kvinfer::Model> model = kvinfer::Model::Load(argv[1]);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  auto engine = kvinfer::Engine::Create(
      *model, {.kv = {.strategy = kvinfer::KvStrategy::kPaged, .block_size_tokens = 16,
                      .max_seq_len = 512},
               .num_threads = 2});
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }
  auto id = (*engine)->AddRequest(argv[2], {.max_tokens = 64, .temperature = 0.7f, .seed = 1});
  if (!id.ok()) {
    std::fprintf(stderr, "%s\n", id.status().ToString().c_str());
    return 1;
  }
  while ((*engine)->HasWork()) {
    for (const kvinfer::RequestOutput& out : (*engine)->Step()) {
      std::fputs(out.text_delta.c_str(), stdout);
      std::fflush(stdout);
    }
  }
  const kvinfer::KvCacheStats kv = (*engine)->KvStats();
  std::printf("\n[KV peak reserved %.2f MiB]\n", kv.peak_bytes_reserved / 1048576.0);
  return 0;
}
