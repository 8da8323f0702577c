// Held-out evaluation of θ at the coordinator (optional: [data] path and eval.batches > 0):
// the mean next-token cross-entropy (nats/token) of θ over a fixed set of validation windows
// (evenly spaced over the validation stream, the same windows at every call, so losses are
// comparable across rounds). Owns its own model instance, whose parameters are views of the θ
// passed to loss(): no copy of θ.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "inner/corpus.h"
#include "inner/gpt.h"
#include "inner/gpt_config.h"

namespace longhaul::outer {

struct EvalConfig;

class Evaluator {
 public:
  // Loads the validation split of `data`; enabled() is false when there is nothing to evaluate.
  Evaluator(const inner::GptConfig& model, const inner::CorpusSpec& data, int64_t batches,
            int64_t batch_size);
  ~Evaluator();
  bool enabled() const { return !val_tokens_.empty(); }
  // Mean loss of θ (flat, in manifest order); NaN when disabled.
  double loss(std::span<const float> theta);
  // Takes over a model of this config (the one that gave θ0 and the manifest) instead of
  // building one at the first loss(), and makes its parameters views of `theta` at once: its
  // own 4N bytes are freed now, while memory is low (also when disabled: see model_of).
  void adopt(inner::Gpt model, std::span<const float> theta);
  // That model with its parameters views of `theta` (valid while theta is), e.g. to export θ
  // without a copy.
  inner::Gpt model_of(std::span<const float> theta);

 private:
  void bind(std::span<const float> theta);
  struct Model;
  std::unique_ptr<Model> model_;
  inner::GptConfig cfg_;
  std::vector<uint16_t> val_tokens_;
  int64_t batches_, batch_size_;
};

}  // namespace longhaul::outer
