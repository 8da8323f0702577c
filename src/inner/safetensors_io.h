// safetensors files (https://github.com/huggingface/safetensors): 8-byte little-endian header
// length N, N bytes of JSON header {"name": {"dtype", "shape", "data_offsets": [begin, end]},
// "__metadata__": {str: str}}, then the raw little-endian tensor bytes (offsets relative to the
// start of the data). Hand-written with nlohmann_json; readable by Python's safetensors and
// torch (load_state_dict). Used for model export (fp32, nanoGPT names) and checkpoints.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "inner/gpt.h"

namespace longhaul::inner {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes tensors (any device; stored as their dtype: F32, F64, F16, BF16, I64, I32, I16, I8,
// U8, BOOL) in the given order, atomically (AtomicFileWriter). metadata: a JSON object; string
// values are stored as-is, others as their JSON dump (safetensors metadata is str -> str).
// Throws UserError on a duplicate or empty name, an unsupported dtype or an I/O failure.
void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                      const nlohmann::json& metadata = {});

// Reads every tensor (host, contiguous) in file data order. Validates the whole layout:
// header size (cap 100 MiB), JSON, dtype, shape, offsets inside the file, matching byte sizes,
// no overlap or gap. Any violation throws DataError naming the file and tensor.
NamedTensors load_safetensors(const std::filesystem::path& path);
// The "__metadata__" object of a file (empty object when absent); same validation.
nlohmann::json load_safetensors_metadata(const std::filesystem::path& path);

// Export for nanoGPT: dir/model.safetensors (fp32, host, every parameter under its nanoGPT name,
// plus lm_head.weight = transformer.wte.weight, as nanoGPT's state_dict) and dir/model.json
// (GptConfig::to_json). Creates dir. Both files are written atomically.
void export_model(Gpt& model, const std::filesystem::path& dir);

// Copies named tensors into m's parameters (shape-checked, converted to each parameter's device
// and dtype, under NoGradGuard). Every parameter must be present; a name that is not a
// parameter is an error except "lm_head.weight" (must equal the tied wte). `source` names the
// file in errors (DataError).
void load_params(torch::nn::Module& m, const NamedTensors& tensors, const std::string& source);

// Reads dir/model.json and dir/model.safetensors back into a new Gpt (on CPU).
Gpt load_exported_model(const std::filesystem::path& dir);

}  // namespace longhaul::inner
