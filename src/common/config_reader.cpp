#include "common/config_reader.h"

#include <toml++/toml.h>

#include <cmath>
#include <set>
#include <sstream>

#include "common/atomic_file.h"
#include "common/error.h"

namespace longhaul {

struct ConfigReader::Impl {
  toml::table root;
  toml::table effective;
  std::string origin;
  std::filesystem::path base_dir;
  std::set<std::string> used;  // dotted keys read (and prefixes marked by raw())
};

namespace {

std::vector<std::string> split_key(std::string_view key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    parts.emplace_back(key.substr(start, dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string render(const toml::node& n) {
  std::ostringstream os;
  n.visit([&](const auto& v) {
    using T = std::remove_cvref_t<decltype(v)>;
    if constexpr (std::is_same_v<T, toml::table>) os << "{table}";
    else if constexpr (std::is_same_v<T, toml::value<std::string>>) os << '"' << v.get() << '"';
    else os << v;
  });
  return os.str();
}

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

// Sets root[key] = value (value: a toml::table, toml::array or toml::value<T>),
// creating intermediate tables.
template <typename V>
void set_path(toml::table& root, std::string_view key, V&& value) {
  auto parts = split_key(key);
  toml::table* t = &root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    auto* child = t->get(parts[i]);
    if (!child || !child->is_table()) {
      t->insert_or_assign(parts[i], toml::table{});
      child = t->get(parts[i]);
    }
    t = child->as_table();
  }
  t->insert_or_assign(parts.back(), std::forward<V>(value));
}

void collect_keys(const toml::table& t, const std::string& prefix, std::vector<std::string>& out) {
  for (auto&& [k, v] : t) {
    std::string full = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (auto sub = v.as_table()) collect_keys(*sub, full, out);
    else out.push_back(full);
  }
}

}  // namespace

ConfigReader::ConfigReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ConfigReader::ConfigReader(ConfigReader&&) noexcept = default;
ConfigReader& ConfigReader::operator=(ConfigReader&&) noexcept = default;
ConfigReader::~ConfigReader() = default;

ConfigReader ConfigReader::from_file(const std::filesystem::path& path,
                                     const std::vector<std::string>& overrides) {
  if (!std::filesystem::exists(path))
    throw ConfigError(path.string() + ": config file not found");
  std::string text;
  try {
    text = read_file(path);
  } catch (const UserError& e) {
    throw ConfigError(e.what());
  }
  auto r = from_string(text, path.string(), overrides);
  r.impl_->base_dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  return r;
}

ConfigReader ConfigReader::from_string(std::string_view toml_text, std::string origin,
                                       const std::vector<std::string>& overrides) {
  auto impl = std::make_unique<Impl>();
  impl->origin = std::move(origin);
  impl->base_dir = ".";
  try {
    impl->root = toml::parse(toml_text, impl->origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << impl->origin << ":" << e.source().begin.line << ":" << e.source().begin.column
       << ": TOML syntax error: " << e.description();
    throw ConfigError(os.str());
  }
  for (const auto& ov : overrides) {
    auto eq = ov.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError("--set '" + ov + "': expected section.key=value");
    std::string key = ov.substr(0, eq);
    std::string value = ov.substr(eq + 1);
    toml::table parsed;
    try {
      parsed = toml::parse("v = " + value);
    } catch (const toml::parse_error&) {
      parsed = toml::table{{"v", value}};  // bare word: a string
    }
    parsed.get("v")->visit([&](auto& v) {
      auto copy = v;
      set_path(impl->root, key, std::move(copy));
    });
  }
  return ConfigReader(std::move(impl));
}

namespace {
const toml::node* find(const toml::table& root, std::string_view key) {
  return root.at_path(key).node();
}
}  // namespace

bool ConfigReader::has(std::string_view key) const { return find(impl_->root, key) != nullptr; }

void ConfigReader::fail(std::string_view key, std::string_view expected) const {
  std::ostringstream os;
  os << impl_->origin << ": key '" << key << "'";
  if (auto n = find(impl_->root, key)) os << " = " << render(*n);
  os << ": expected " << expected;
  throw ConfigError(os.str());
}

int64_t ConfigReader::get_int(std::string_view key, int64_t def, int64_t lo, int64_t hi) {
  impl_->used.insert(std::string(key));
  int64_t v = def;
  std::ostringstream exp;
  exp << "an integer in [" << lo << ", " << hi << "]";
  if (auto n = find(impl_->root, key)) {
    auto i = n->value<int64_t>();
    if (!n->is_integer() || !i) fail(key, exp.str() + ", got " + type_name(*n));
    v = *i;
  }
  if (v < lo || v > hi) fail(key, exp.str());
  set_path(impl_->effective, key, toml::value<int64_t>(v));
  return v;
}

double ConfigReader::get_double(std::string_view key, double def, double lo, double hi) {
  impl_->used.insert(std::string(key));
  double v = def;
  std::ostringstream exp;
  exp << "a number in [" << lo << ", " << hi << "]";
  if (auto n = find(impl_->root, key)) {
    if (!n->is_number()) fail(key, exp.str() + ", got " + type_name(*n));
    v = *n->value<double>();
  }
  if (!std::isfinite(v) || v < lo || v > hi) fail(key, exp.str());
  set_path(impl_->effective, key, toml::value<double>(v));
  return v;
}

double ConfigReader::get_positive(std::string_view key, double def, double hi) {
  impl_->used.insert(std::string(key));
  double v = def;
  std::ostringstream exp;
  exp << "a number in (0, " << hi << "]";
  if (auto n = find(impl_->root, key)) {
    if (!n->is_number()) fail(key, exp.str() + ", got " + type_name(*n));
    v = *n->value<double>();
  }
  if (!std::isfinite(v) || v <= 0 || v > hi) fail(key, exp.str());
  set_path(impl_->effective, key, toml::value<double>(v));
  return v;
}

bool ConfigReader::get_bool(std::string_view key, bool def) {
  impl_->used.insert(std::string(key));
  bool v = def;
  if (auto n = find(impl_->root, key)) {
    if (!n->is_boolean()) fail(key, std::string("true or false, got ") + type_name(*n));
    v = *n->value<bool>();
  }
  set_path(impl_->effective, key, toml::value<bool>(v));
  return v;
}

std::string ConfigReader::get_string(std::string_view key, std::string def) {
  impl_->used.insert(std::string(key));
  std::string v = std::move(def);
  if (auto n = find(impl_->root, key)) {
    if (!n->is_string()) fail(key, std::string("a string, got ") + type_name(*n));
    v = *n->value<std::string>();
  }
  set_path(impl_->effective, key, toml::value<std::string>(v));
  return v;
}

std::string ConfigReader::get_enum(std::string_view key, std::string def,
                                   const std::vector<std::string>& allowed) {
  std::string v = get_string(key, std::move(def));
  for (const auto& a : allowed)
    if (a == v) return v;
  std::string exp = "one of";
  for (size_t i = 0; i < allowed.size(); ++i) exp += (i ? ", \"" : " \"") + allowed[i] + "\"";
  fail(key, exp);
}

std::vector<std::string> ConfigReader::get_string_list(std::string_view key,
                                                       std::vector<std::string> def) {
  impl_->used.insert(std::string(key));
  std::vector<std::string> v = std::move(def);
  if (auto n = find(impl_->root, key)) {
    auto arr = n->as_array();
    if (!arr) fail(key, std::string("an array of strings, got ") + type_name(*n));
    v.clear();
    for (auto&& e : *arr) {
      if (!e.is_string()) fail(key, "an array of strings");
      v.push_back(*e.value<std::string>());
    }
  }
  toml::array out;
  for (auto& s : v) out.push_back(s);
  set_path(impl_->effective, key, std::move(out));
  return v;
}

std::filesystem::path ConfigReader::get_path(std::string_view key, std::filesystem::path def) {
  bool present = has(key);
  std::filesystem::path p = get_string(key, def.string());
  if (present && p.is_relative() && !p.empty()) p = impl_->base_dir / p;
  return p;
}

const toml::node* ConfigReader::raw(std::string_view key) {
  impl_->used.insert(std::string(key));
  auto n = find(impl_->root, key);
  if (n) n->visit([&](const auto& v) {
    auto copy = v;
    set_path(impl_->effective, key, std::move(copy));
  });
  return n;
}

void ConfigReader::finish() const {
  std::vector<std::string> keys;
  collect_keys(impl_->root, "", keys);
  for (const auto& k : keys) {
    bool known = impl_->used.count(k) > 0;
    // raw("a.b") marks everything below a.b as known.
    for (size_t dot = k.rfind('.'); !known && dot != std::string::npos; dot = k.rfind('.', dot - 1)) {
      if (impl_->used.count(k.substr(0, dot))) known = true;
      if (dot == 0) break;
    }
    if (!known) {
      std::string sect = k.substr(0, k.find('.'));
      std::string hint;
      for (const auto& u : impl_->used)
        if (u.rfind(sect + ".", 0) == 0) {
          hint = " (keys read in [" + sect + "] include '" + u + "')";
          break;
        }
      throw ConfigError(impl_->origin + ": unknown key '" + k + "'" + hint);
    }
  }
}

std::string ConfigReader::effective_toml() const {
  std::ostringstream os;
  os << toml::toml_formatter(impl_->effective);
  return os.str() + "\n";
}

const std::string& ConfigReader::origin() const { return impl_->origin; }
std::filesystem::path ConfigReader::base_dir() const { return impl_->base_dir; }

}  // namespace longhaul
