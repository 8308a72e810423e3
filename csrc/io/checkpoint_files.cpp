#include "io/checkpoint_files.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>

#include "core/errors.h"

namespace nd::io {
namespace fs = std::filesystem;
namespace {

// Ref: diffusers utils/constants.py and transformers utils/__init__.py.
constexpr const char* kDiffusersSafetensors = "diffusion_pytorch_model.safetensors";
constexpr const char* kDiffusersSafetensorsIndex = "diffusion_pytorch_model.safetensors.index.json";
constexpr const char* kDiffusersBin = "diffusion_pytorch_model.bin";
constexpr const char* kDiffusersBinIndex = "diffusion_pytorch_model.bin.index.json";
constexpr const char* kTransformersSafetensors = "model.safetensors";
constexpr const char* kTransformersSafetensorsIndex = "model.safetensors.index.json";
constexpr const char* kTransformersBin = "pytorch_model.bin";
constexpr const char* kTransformersBinIndex = "pytorch_model.bin.index.json";

// Untrusted names are shown JSON-escaped, so a NUL or newline in one cannot cut or forge a message.
std::string shown(const std::string& s) {
  const std::string d = Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
  return "'" + d.substr(1, d.size() - 2) + "'";
}

// read_json_file, with every JSON library error (number overflow is not a parse_error) turned
// into a ValueError naming the file.
Json read_json(const std::string& path) {
  try {
    return read_json_file(path);
  } catch (const Json::exception& e) {
    throw ValueError("invalid JSON in '" + path + "': " + e.what());
  }
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A name that stays inside its folder: no separators, no "." or "..", no NUL (which the OS would
// silently treat as the end of the name).
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

struct Candidate {
  std::string name;
  bool sharded;
  WeightFiles::Format format;
};

// diffusers' _fetch_index_file_legacy: variant indexes written before 0.28 put the variant
// before ".index": "diffusion_pytorch_model.safetensors.fp16.index.json".
std::string legacy_variant_index(const std::string& index_name, const std::string& variant) {
  const std::string suffix = ".index.json";
  return index_name.substr(0, index_name.size() - suffix.size()) + "." + variant + suffix;
}

// The names each library tries, in its own order: diffusers checks for an index first
// (ModelMixin.from_pretrained), transformers for the single file first.
std::vector<Candidate> candidates(WeightFiles::Format format,
                                  const std::optional<std::string>& variant) {
  const bool st = format == WeightFiles::Safetensors;
  const std::string diffusers_index = st ? kDiffusersSafetensorsIndex : kDiffusersBinIndex;
  const std::string diffusers_single = st ? kDiffusersSafetensors : kDiffusersBin;
  const std::string transformers_single = st ? kTransformersSafetensors : kTransformersBin;
  const std::string transformers_index = st ? kTransformersSafetensorsIndex : kTransformersBinIndex;
  std::vector<Candidate> out;
  out.push_back({add_variant(diffusers_index, variant), true, format});
  if (variant) out.push_back({legacy_variant_index(diffusers_index, *variant), true, format});
  out.push_back({add_variant(diffusers_single, variant), false, format});
  out.push_back({add_variant(transformers_single, variant), false, format});
  out.push_back({add_variant(transformers_index, variant), true, format});
  return out;
}

std::string join_names(const std::vector<Candidate>& cands) {
  std::string out;
  for (const Candidate& c : cands) out += (out.empty() ? "" : ", ") + c.name;
  return out;
}

const Candidate* first_present(const fs::path& dir, const std::vector<Candidate>& cands) {
  for (const Candidate& c : cands) {
    if (is_file(dir / c.name)) return &c;
  }
  return nullptr;
}

}  // namespace

std::string add_variant(const std::string& weights_name,
                        const std::optional<std::string>& variant) {
  if (!variant) return weights_name;
  // Ref: diffusers utils/hub_utils.py _add_variant — the variant goes before the last extension.
  const std::size_t dot = weights_name.rfind('.');
  if (dot == std::string::npos) return weights_name + "." + *variant;
  return weights_name.substr(0, dot) + "." + *variant + weights_name.substr(dot);
}

std::vector<std::string> read_shard_index(const std::string& index_path,
                                          WeightFiles::Format format) {
  const Json index = read_json(index_path);
  if (!index.is_object())
    throw ValueError("checkpoint index '" + index_path + "' is not a JSON object");
  const auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    throw ValueError("checkpoint index '" + index_path + "' has no weight_map object");
  }
  if (map_it->empty())
    throw ValueError("checkpoint index '" + index_path + "' has an empty weight_map");
  const std::string extension = format == WeightFiles::Safetensors ? ".safetensors" : ".bin";
  const fs::path folder = fs::path(index_path).parent_path();
  std::set<std::string> shards;
  for (auto it = map_it->begin(); it != map_it->end(); ++it) {
    if (!it.value().is_string()) {
      throw ValueError("checkpoint index '" + index_path + "' maps " + shown(it.key()) +
                       " to a non-string shard name");
    }
    shards.insert(it.value().get<std::string>());
  }
  std::vector<std::string> out;
  for (const std::string& shard : shards) {
    // Ref: diffusers _get_checkpoint_shard_files rejects names that would leave the folder.
    if (!is_plain_file_name(shard)) {
      throw ValueError("the shard filename " + shown(shard) + " in the checkpoint index '" +
                       index_path +
                       "' contains a path separator or a parent-directory reference; shard "
                       "filenames must be plain filenames located in the model directory");
    }
    if (!ends_with(shard, extension)) {
      throw ValueError("the shard filename " + shown(shard) + " in the checkpoint index '" +
                       index_path + "' does not end in " + extension);
    }
    const fs::path path = folder / shard;
    if (!is_file(path)) {
      throw OSError(folder.string() + " does not appear to have a file named " + shard +
                    " which is required according to the checkpoint index " + index_path);
    }
    out.push_back(path.string());
  }
  return out;
}

WeightFiles find_weight_files(const std::string& component_dir,
                              const std::optional<std::string>& variant,
                              std::optional<bool> use_safetensors) {
  const fs::path dir(component_dir);
  if (!is_dir(dir)) throw OSError("no folder named '" + component_dir + "' to load weights from");
  if (variant && !is_plain_file_name(*variant)) {
    throw ValueError("variant " + shown(*variant) + " must be a plain name such as 'fp16'");
  }
  const bool try_safetensors = use_safetensors.value_or(true);
  const bool try_bin = !use_safetensors.value_or(false);
  std::vector<Candidate> looked_for;
  if (try_safetensors) {
    for (Candidate& c : candidates(WeightFiles::Safetensors, variant)) looked_for.push_back(c);
  }
  if (try_bin) {
    for (Candidate& c : candidates(WeightFiles::PickleBin, variant)) looked_for.push_back(c);
  }

  if (const Candidate* found = first_present(dir, looked_for)) {
    WeightFiles out;
    out.format = found->format;
    const std::string path = (dir / found->name).string();
    out.files =
        found->sharded ? read_shard_index(path, found->format) : std::vector<std::string>{path};
    return out;
  }

  // Nothing usable: say why in the terms a diffusers user knows.
  std::string message =
      "Error no file named " + join_names(looked_for) + " found in directory " + component_dir;
  if (use_safetensors.value_or(false)) {
    const std::vector<Candidate> bins = candidates(WeightFiles::PickleBin, variant);
    if (const Candidate* bin = first_present(dir, bins)) {
      throw OSError("no safetensors weights found in " + component_dir + " (looked for " +
                    join_names(looked_for) + "); it only has " + bin->name +
                    ": pass use_safetensors=None to load .bin weights");
    }
  }
  if (variant) {
    std::vector<Candidate> plain = candidates(WeightFiles::Safetensors, std::nullopt);
    for (Candidate& c : candidates(WeightFiles::PickleBin, std::nullopt)) plain.push_back(c);
    if (const Candidate* other = first_present(dir, plain)) {
      throw OSError(message + " for variant='" + *variant + "'; the folder has " + other->name +
                    " without that variant: pass variant=None to load it");
    }
  }
  throw OSError(message + ".");
}

ModelIndex read_model_index(const std::string& checkpoint_dir) {
  const fs::path path = fs::path(checkpoint_dir) / "model_index.json";
  if (!is_file(path)) {
    throw OSError("no file named model_index.json found in directory " + checkpoint_dir);
  }
  ModelIndex out;
  out.raw = read_json(path.string());
  const std::string origin = path.string();
  if (!out.raw.is_object())
    throw ValueError("expected a JSON object at the top of '" + origin + "'");
  const auto class_it = out.raw.find("_class_name");
  if (class_it == out.raw.end() || !class_it->is_string() || class_it->get<std::string>().empty()) {
    throw ValueError("missing required key '_class_name' (a pipeline class name) in " + origin);
  }
  out.class_name = class_it->get<std::string>();
  const auto version_it = out.raw.find("_diffusers_version");
  if (version_it != out.raw.end() && version_it->is_string()) {
    out.diffusers_version = version_it->get<std::string>();
  }
  for (auto it = out.raw.begin(); it != out.raw.end(); ++it) {
    const std::string& name = it.key();
    const Json& value = it.value();
    // "_*" keys are pipeline attributes; scalars such as requires_safety_checker are config.
    if (name.empty() || name[0] == '_' || !value.is_array()) continue;
    const bool pair = value.size() == 2;
    if (pair && value[0].is_null() && value[1].is_null()) {
      out.null_components.push_back(name);
    } else if (pair && value[0].is_string() && value[1].is_string()) {
      out.components.emplace(
          name, std::make_pair(value[0].get<std::string>(), value[1].get<std::string>()));
    } else {
      std::string got = value.dump(-1, ' ', false, Json::error_handler_t::replace);
      if (got.size() > 80) got = got.substr(0, 77) + "...";
      throw ValueError("component " + shown(name) + " in " + origin +
                       " must be [library, class] or [null, null], got " + got);
    }
  }
  return out;
}

std::string component_dir(const std::string& checkpoint_dir, const std::string& name) {
  if (!is_plain_file_name(name)) {
    throw ValueError("component name " + shown(name) + " must be a plain folder name");
  }
  const fs::path dir = fs::path(checkpoint_dir) / name;
  if (!is_dir(dir)) {
    throw OSError("missing component folder " + shown(name) + " in " + checkpoint_dir +
                  " (listed in model_index.json)");
  }
  return dir.string();
}

}  // namespace nd::io
