#include "inner/device_spec.h"

#include <sstream>

#include <toml++/toml.h>

#include "common/config_reader.h"

namespace longhaul::inner {
namespace {

bool valid_device_string(const std::string& s) {
  if (s == "cpu" || s == "cuda") return true;
  if (s.rfind("cuda:", 0) != 0 || s.size() == 5 || s.size() > 8) return false;
  for (size_t i = 5; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

}  // namespace

std::vector<DeviceSpec> read_device_specs(ConfigReader& cfg, std::string_view key,
                                          std::vector<DeviceSpec> def,
                                          int64_t default_max_micro_batch) {
  const toml::node* node = cfg.raw(key);
  if (!node) return def;
  const auto* arr = node->as_array();
  if (!arr) cfg.fail(key, "an array of tables like [{ device = \"cpu\", threads = 1 }]");
  if (arr->empty()) cfg.fail(key, "at least one device");
  if (arr->size() > 64) cfg.fail(key, "at most 64 devices");
  std::vector<DeviceSpec> out;
  for (size_t i = 0; i < arr->size(); ++i) {
    const std::string at = std::string(key) + "[" + std::to_string(i) + "]";
    const auto* tbl = (*arr)[i].as_table();
    if (!tbl) cfg.fail(at, "a table like { device = \"cpu\" }");
    DeviceSpec spec;
    spec.max_micro_batch = default_max_micro_batch;
    for (const auto& [k, v] : *tbl) {
      const std::string field = at + "." + std::string(k.str());
      if (k == "device") {
        auto s = v.value<std::string>();
        if (!s || !valid_device_string(*s)) cfg.fail(field, "\"cpu\", \"cuda\" or \"cuda:N\"");
        spec.device = *s;
      } else if (k == "threads") {
        auto t = v.value<int64_t>();
        if (!v.is_integer() || !t || *t < 1 || *t > 256) cfg.fail(field, "an integer in [1, 256]");
        spec.threads = static_cast<int>(*t);
      } else if (k == "slowdown") {
        auto s = v.value<double>();
        if (!v.is_number() || !s || !(*s >= 1.0 && *s <= 1000.0))
          cfg.fail(field, "a number in [1, 1000] (1 = full speed)");
        spec.slowdown = *s;
      } else if (k == "max_micro_batch") {
        auto m = v.value<int64_t>();
        if (!v.is_integer() || !m || *m < 1 || *m > 65536) cfg.fail(field, "an integer in [1, 65536]");
        spec.max_micro_batch = *m;
      } else {
        cfg.fail(field, "one of device, threads, slowdown, max_micro_batch (unknown field)");
      }
    }
    out.push_back(spec);
  }
  return out;
}

std::string device_label(const DeviceSpec& spec, size_t index) {
  std::ostringstream os;
  os << index << ":" << spec.device;
  if (spec.device == "cpu") os << "x" << spec.threads;
  if (spec.slowdown != 1.0) os << "/slow" << spec.slowdown;
  return os.str();
}

}  // namespace longhaul::inner
