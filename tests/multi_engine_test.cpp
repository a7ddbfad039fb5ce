// Engines in one process share no state: each has its own activation
// precision, K/V type, thread pool and kernel scratch (the MatMulContext of
// its model runner). Two of them, set up differently and stepped from two
// threads, in strict alternation or side by side, each give exactly what
// they give alone: the same greedy tokens, and below the engine the same
// logits bit for bit.
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/thread_pool.h"
#include "engine/model_access.h"
#include "kv/kv_cache.h"
#include "kvinfer/kvinfer.h"
#include "model/forward.h"
#include "model/model_impl.h"
#include "test_util.h"

namespace kvinfer {
namespace {

// Hands turns back and forth between two threads: Wait(i) returns when it
// is thread i's turn (or the other thread has finished), Pass(i) gives the
// turn to the other, Finish(i) leaves the alternation.
class Baton {
 public:
  void Wait(int i) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return turn_ == i || done_[1 - i]; });
  }
  void Pass(int i) {
    {
      const std::lock_guard<std::mutex> lock(mu_);
      turn_ = 1 - i;
    }
    cv_.notify_all();
  }
  void Finish(int i) {
    {
      const std::lock_guard<std::mutex> lock(mu_);
      done_[i] = true;
      turn_ = 1 - i;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int turn_ = 0;
  bool done_[2] = {false, false};
};

// How two runs share the process: one after the other (each alone), steps
// in strict alternation from two threads, or both threads free-running.
enum class Schedule { kAlone, kAlternate, kConcurrent };

// Runs step(i) for i in {0, 1} until both return false, as `schedule` says.
void RunBoth(Schedule schedule, const std::function<bool(int)>& step) {
  if (schedule == Schedule::kAlone) {
    for (int i = 0; i < 2; ++i) {
      while (step(i)) {
      }
    }
    return;
  }
  Baton baton;
  auto body = [&](int i) {
    for (bool more = true; more;) {
      if (schedule == Schedule::kAlternate) baton.Wait(i);
      more = step(i);
      if (schedule == Schedule::kAlternate) more ? baton.Pass(i) : baton.Finish(i);
    }
  };
  std::thread t0(body, 0), t1(body, 1);
  t0.join();
  t1.join();
}

const char* kPrompts[] = {"Once upon a time, in a small village by the sea,",
                          "The three primary colors are"};

// ---------------------------------------------------------------- engines

struct EngineRun {
  std::unique_ptr<Engine> engine;
  std::map<RequestId, std::vector<int32_t>> tokens;
};

// Engine a: int8 activations, q8_0 K/V, paged; engine b: f32 activations,
// f16 K/V, contiguous. Each runs both prompts as one batch.
std::vector<EngineRun> StartEngines(const Model& model) {
  const EngineOptions options[2] = {
      {.kv = {.strategy = KvStrategy::kPaged, .precision = KvPrecision::kQ8_0},
       .num_threads = 2,
       .activation_precision = ActivationPrecision::kInt8},
      {.kv = {.strategy = KvStrategy::kContiguous, .precision = KvPrecision::kF16},
       .num_threads = 2,
       .activation_precision = ActivationPrecision::kF32}};
  std::vector<EngineRun> runs(2);
  for (int i = 0; i < 2; ++i) {
    auto engine = Engine::Create(model, options[i]);
    EXPECT_TRUE(engine.ok()) << engine.status().ToString();
    if (!engine.ok()) return {};
    runs[i].engine = std::move(engine).value();
    for (const char* prompt : kPrompts) {
      auto id = runs[i].engine->AddRequest(prompt, {.max_tokens = 12, .ignore_eos = true});
      EXPECT_TRUE(id.ok()) << id.status().ToString();
    }
  }
  return runs;
}

std::vector<EngineRun> RunEngines(const Model& model, Schedule schedule) {
  std::vector<EngineRun> runs = StartEngines(model);
  if (runs.empty()) return runs;
  RunBoth(schedule, [&](int i) {
    EngineRun& r = runs[static_cast<size_t>(i)];
    if (!r.engine->HasWork()) return false;
    for (const RequestOutput& o : r.engine->Step()) {
      r.tokens[o.id].insert(r.tokens[o.id].end(), o.new_tokens.begin(), o.new_tokens.end());
    }
    return r.engine->HasWork();
  });
  return runs;
}

TEST(MultiEngineTest, TwoEnginesSteppedFromTwoThreadsEachGiveTheirOwnOutput) {
  KVINFER_REQUIRE_FILE(testing::DefaultModel());
  StatusOr<Model> model = Model::Load(testing::DefaultModel());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::vector<EngineRun> alone = RunEngines(*model, Schedule::kAlone);
  ASSERT_EQ(alone.size(), 2u);
  for (const EngineRun& r : alone) {
    ASSERT_EQ(r.tokens.size(), 2u);
    for (const auto& [id, tokens] : r.tokens) EXPECT_EQ(tokens.size(), 12u) << id;
  }
  for (Schedule schedule : {Schedule::kAlternate, Schedule::kConcurrent}) {
    SCOPED_TRACE(schedule == Schedule::kAlternate ? "alternate" : "concurrent");
    const std::vector<EngineRun> both = RunEngines(*model, schedule);
    ASSERT_EQ(both.size(), 2u);
    for (size_t i = 0; i < 2; ++i) EXPECT_EQ(both[i].tokens, alone[i].tokens) << "engine " << i;
  }
}

// ---------------------------------------------------------------- runners

// Greedy decoding of one sequence straight on a ModelRunner: the prompt in
// one batch, then one token per step; every step's logits kept.
class GreedyRun {
 public:
  GreedyRun(const ModelImpl& m, ActivationPrecision activations, KvPrecision kv,
            std::vector<int32_t> prompt, int steps)
      : m_(m),
        pool_(2),
        cache_(m.config().kv_shape(), 16, (static_cast<int32_t>(prompt.size()) + steps + 15) / 16,
               kv),
        runner_(m.config(), m.weights(), &pool_, activations),
        tokens_(std::move(prompt)),
        steps_left_(steps) {
    seq_ = cache_.CreateSequence();
    EXPECT_TRUE(cache_.Reserve(seq_, static_cast<int32_t>(tokens_.size()) + steps));
  }

  // One forward pass; false once every step has run.
  bool Step() {
    if (steps_left_ == 0) return false;
    const int32_t begin = cache_.num_tokens(seq_);
    const int32_t end = static_cast<int32_t>(tokens_.size());
    ForwardBatch batch;
    batch.seq_ids = {seq_};
    for (int32_t p = begin; p < end; ++p) {
      batch.tokens.push_back(tokens_[static_cast<size_t>(p)]);
      batch.positions.push_back(p);
      batch.seq_index.push_back(0);
    }
    batch.logit_rows = {end - begin - 1};
    std::vector<float> logits;
    runner_.Forward(batch, cache_, &logits);
    int32_t best = 0;
    for (int32_t v = 1; v < m_.config().vocab_size; ++v) {
      if (logits[static_cast<size_t>(v)] > logits[static_cast<size_t>(best)]) best = v;
    }
    tokens_.push_back(best);
    logits_.push_back(std::move(logits));
    return --steps_left_ > 0;
  }

  const std::vector<std::vector<float>>& logits() const { return logits_; }

 private:
  const ModelImpl& m_;
  ThreadPool pool_;
  KvCache cache_;
  ModelRunner runner_;
  std::vector<int32_t> tokens_;
  int steps_left_;
  int32_t seq_ = -1;
  std::vector<std::vector<float>> logits_;
};

bool BitEqual(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size() ||
        std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

TEST(MultiEngineTest, TwoRunnersSteppedFromTwoThreadsGiveTheirOwnLogitsBitForBit) {
  KVINFER_REQUIRE_FILE(testing::DefaultModel());
  StatusOr<Model> model = Model::Load(testing::DefaultModel());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const ModelImpl& m = ImplOf(*model);
  StatusOr<std::vector<int32_t>> prompt = model->Tokenize(kPrompts[0]);
  ASSERT_TRUE(prompt.ok());
  constexpr int kSteps = 6;
  struct Setup {
    ActivationPrecision activations;
    KvPrecision kv;
  };
  const Setup setups[2] = {{ActivationPrecision::kInt8, KvPrecision::kQ8_0},
                           {ActivationPrecision::kF32, KvPrecision::kF16}};
  auto run = [&](Schedule schedule) {
    std::vector<std::unique_ptr<GreedyRun>> runs;
    for (const Setup& s : setups) {
      runs.push_back(std::make_unique<GreedyRun>(m, s.activations, s.kv, *prompt, kSteps));
    }
    RunBoth(schedule, [&](int i) { return runs[static_cast<size_t>(i)]->Step(); });
    return runs;
  };
  const auto alone = run(Schedule::kAlone);
  ASSERT_EQ(alone[0]->logits().size(), static_cast<size_t>(kSteps));
  // Each runner computes with its own precision: the same K/V type with the
  // other activation precision gives other logits.
  GreedyRun f32_q8(m, ActivationPrecision::kF32, KvPrecision::kQ8_0, *prompt, kSteps);
  while (f32_q8.Step()) {
  }
  EXPECT_FALSE(BitEqual(f32_q8.logits(), alone[0]->logits()));
  for (Schedule schedule : {Schedule::kAlternate, Schedule::kConcurrent}) {
    SCOPED_TRACE(schedule == Schedule::kAlternate ? "alternate" : "concurrent");
    const auto both = run(schedule);
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_TRUE(BitEqual(both[i]->logits(), alone[i]->logits())) << "runner " << i;
    }
  }
}

}  // namespace
}  // namespace kvinfer
