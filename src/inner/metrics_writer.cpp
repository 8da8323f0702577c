#include "inner/metrics_writer.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "common/atomic_file.h"
#include "common/error.h"

namespace longhaul::inner {

MetricsWriter::MetricsWriter(std::filesystem::path path, int64_t truncate_after_step)
    : path_(std::move(path)) {
  if (truncate_after_step >= 0 && std::filesystem::exists(path_)) {
    std::ifstream in(path_);
    std::string line, kept;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) continue;  // a line torn by a crash
      if (j.value("step", int64_t{0}) > truncate_after_step) continue;
      kept += line + "\n";
    }
    write_file_atomic(path_, kept);
  }
  f_ = std::fopen(path_.c_str(), "a");
  if (!f_) throw UserError(path_.string() + ": cannot open metrics file for appending");
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

void MetricsWriter::write_line(const std::string& line) {
  if (std::fputs(line.c_str(), f_) < 0 || std::fputc('\n', f_) < 0 || std::fflush(f_) != 0)
    throw UserError(path_.string() + ": cannot write metrics (disk full?)");
}

void MetricsWriter::step(const StepMetrics& m) {
  nlohmann::ordered_json j;
  j["event"] = "step";
  j["step"] = m.step;
  j["loss"] = m.loss;
  j["lr"] = m.lr;
  j["tokens"] = m.tokens;
  j["tokens_per_s"] = m.tokens_per_s;
  j["elapsed_s"] = m.elapsed_s;
  if (!m.devices.is_null()) j["devices"] = m.devices;
  write_line(j.dump());
}

void MetricsWriter::eval(int64_t step, double val_loss) {
  nlohmann::ordered_json j;
  j["event"] = "eval";
  j["step"] = step;
  j["val_loss"] = val_loss;
  write_line(j.dump());
}

}  // namespace longhaul::inner
