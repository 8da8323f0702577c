#include "outer/evaluator.h"

#include "common/error.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "inner/batch_sampler.h"
#include "inner/flat_params.h"
#include "inner/gpt.h"

namespace longhaul::outer {

struct Evaluator::Model {
  inner::Gpt gpt{nullptr};
};

Evaluator::Evaluator(const inner::GptConfig& model, const inner::CorpusSpec& data, int64_t batches,
                     int64_t batch_size)
    : model_(std::make_unique<Model>()), cfg_(model), batches_(batches), batch_size_(batch_size) {
  if (batches <= 0 || data.path.empty()) return;
  inner::CorpusSpec spec = data;
  spec.need_val = true;
  val_tokens_ = inner::load_corpus(spec).val;
}

Evaluator::~Evaluator() = default;

void Evaluator::bind(std::span<const float> theta) {
  // No copy of θ (issue 13 §1): the parameters become views of the caller's θ, in manifest
  // order (named_parameters(), inner/flat_params.h); the model only reads them. The model's
  // own parameter storage is freed by the first bind.
  int64_t off = 0;
  for (auto& p : model_->gpt->named_parameters()) {
    torch::Tensor t = p.value();
    LH_CHECK(off + t.numel() <= static_cast<int64_t>(theta.size()), "θ of ", theta.size(), " elements is too short");
    t.set_data(torch::from_blob(const_cast<float*>(theta.data()) + off, t.sizes(), torch::kFloat32));
    off += t.numel();
  }
  LH_CHECK_EQ(off, static_cast<int64_t>(theta.size()));
}

void Evaluator::adopt(inner::Gpt model, std::span<const float> theta) {
  model_->gpt = std::move(model);
  torch::NoGradGuard ng;
  bind(theta);
}

inner::Gpt Evaluator::model_of(std::span<const float> theta) {
  torch::NoGradGuard ng;
  if (!model_->gpt) model_->gpt = inner::Gpt(cfg_);
  bind(theta);
  return model_->gpt;
}

double Evaluator::loss(std::span<const float> theta) {
  if (!enabled()) return std::nan("");
  torch::NoGradGuard ng;
  model_of(theta)->eval();  // the model is built on first use: no cost when disabled
  const int64_t T = cfg_.block_size;
  auto offs = inner::evenly_spaced_offsets(val_tokens_.size(), T, batches_ * batch_size_);
  double sum = 0;
  int64_t nb = 0;
  for (size_t i = 0; i < offs.size(); i += batch_size_) {
    std::vector<int64_t> o(offs.begin() + i, offs.begin() + std::min(offs.size(), i + batch_size_));
    auto b = inner::make_batch(val_tokens_, o, T);
    // Logits 128 positions at a time (issue 13 §1: at GPT-2 size the full [T, vocab] logits
    // and their log-softmax would be ~0.4 GB beside θ).
    const auto [s, count] = model_->gpt->loss_sum_chunked(b.x, b.y, 128);
    sum += count > 0 ? s / static_cast<double>(count) : 0.0;
    ++nb;
  }
  return nb ? sum / nb : std::nan("");
}

}  // namespace longhaul::outer
