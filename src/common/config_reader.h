// Typed, validated access to one TOML config file plus `--set section.key=value` overrides.
//
// Contract: every key a role understands is read through a get_* call that states its
// default and valid range; finish() then rejects any key in the file that nobody read.
// Every failure throws ConfigError with the file, the dotted key, the offending value and
// what was expected, e.g.
//   configs/train.toml: key 'optim.lr' = -1: expected a number in (0, 10]
// effective_toml() returns every key read (defaults included) as TOML, for the run dir.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace toml {
inline namespace v3 {
class table;
class node;
}  // namespace v3
}  // namespace toml

namespace longhaul {

class ConfigReader {
 public:
  // Parses `path` (ConfigError on a missing file or TOML syntax error, with line:column),
  // then applies overrides "section.key=value" (value parsed as TOML, else taken as a string).
  static ConfigReader from_file(const std::filesystem::path& path,
                                const std::vector<std::string>& overrides = {});
  // For tests and built-in defaults: parse TOML text; `origin` names it in errors.
  static ConfigReader from_string(std::string_view toml_text, std::string origin,
                                  const std::vector<std::string>& overrides = {});

  ConfigReader(ConfigReader&&) noexcept;
  ConfigReader& operator=(ConfigReader&&) noexcept;
  ~ConfigReader();

  // Ranges are inclusive unless stated; `key` is dotted ("optim.lr").
  int64_t get_int(std::string_view key, int64_t def, int64_t lo, int64_t hi);
  double get_double(std::string_view key, double def, double lo, double hi);
  // Like get_double, but the lower bound is exclusive: value in (lo, hi].
  double get_positive(std::string_view key, double def, double hi);
  bool get_bool(std::string_view key, bool def);
  std::string get_string(std::string_view key, std::string def);
  // Value must be one of `allowed`.
  std::string get_enum(std::string_view key, std::string def, const std::vector<std::string>& allowed);
  std::vector<std::string> get_string_list(std::string_view key, std::vector<std::string> def);
  // A path, resolved relative to the config file's directory when relative.
  std::filesystem::path get_path(std::string_view key, std::filesystem::path def);
  bool has(std::string_view key) const;

  // Escape hatch for structured values (arrays of tables): marks `key` and everything under
  // it as known and returns the raw node, or nullptr when absent.
  const toml::node* raw(std::string_view key);
  // Throws ConfigError about `key` with `expected` — for checks that span several keys.
  [[noreturn]] void fail(std::string_view key, std::string_view expected) const;

  // Rejects every key present in the file/overrides that no get_* call read.
  void finish() const;
  std::string effective_toml() const;
  const std::string& origin() const;
  std::filesystem::path base_dir() const;

 private:
  struct Impl;
  explicit ConfigReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace longhaul
