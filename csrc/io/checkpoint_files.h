// Mirrors how diffusers 0.40 (models/modeling_utils.py ModelMixin.from_pretrained,
// utils/hub_utils.py _add_variant/_get_model_file/_get_checkpoint_shard_files) and transformers
// 5.17 (modeling_utils.py _get_resolved_checkpoint_files) find a component's weight files in a
// local folder, and how DiffusionPipeline reads model_index.json.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/json_config.h"

namespace nd::io {

struct WeightFiles {
  // PickleBin files are loaded by Python (torch.load(weights_only=True)); the engine never
  // unpickles.
  enum Format { Safetensors, PickleBin } format = Safetensors;
  // Full paths; one file, or the shards of an index in sorted order.
  std::vector<std::string> files;
};

// diffusers' _add_variant: "diffusion_pytorch_model.safetensors" + "fp16" ->
// "diffusion_pytorch_model.fp16.safetensors"; an index becomes "*.safetensors.index.fp16.json".
std::string add_variant(const std::string& weights_name, const std::optional<std::string>& variant);

// Finds the weights of one component folder (unet/, vae/, text_encoder/ ...).
//  * use_safetensors unset: safetensors preferred, .bin accepted (diffusers' allow_pickle).
//  * use_safetensors true: only safetensors; a folder with only .bin -> OSError.
//  * use_safetensors false: only .bin, as diffusers and transformers do.
// diffusers names (diffusion_pytorch_model*) are tried before transformers names (model*,
// pytorch_model*). A requested variant that is absent is an OSError, never a silent fallback to
// full-precision files: that is what ModelMixin.from_pretrained and PreTrainedModel do. (The
// per-component fallback in DiffusionPipeline.from_pretrained, _identify_model_variants, belongs
// to the pipeline loader, which passes variant=None to components without variant files.)
WeightFiles find_weight_files(const std::string& component_dir,
                              const std::optional<std::string>& variant,
                              std::optional<bool> use_safetensors);

// Shards named by a *.index.json weight_map, each checked to be a plain file name that exists
// beside the index and carries the format's extension. Returns full paths, unique and sorted.
std::vector<std::string> read_shard_index(const std::string& index_path,
                                          WeightFiles::Format format);

struct ModelIndex {
  std::string class_name;         // "_class_name", e.g. "StableDiffusionPipeline"
  std::string diffusers_version;  // "_diffusers_version", empty when absent
  // name -> (library, class), e.g. "unet" -> ("diffusers", "UNet2DConditionModel").
  std::map<std::string, std::pair<std::string, std::string>> components;
  // Components saved as [null, null] (e.g. a pipeline saved without its safety_checker).
  std::vector<std::string> null_components;
  Json raw;
};

// Reads <checkpoint_dir>/model_index.json. Keys starting with "_" are pipeline attributes;
// other list-valued keys are components; other values (e.g. requires_safety_checker) are config.
ModelIndex read_model_index(const std::string& checkpoint_dir);

// <checkpoint_dir>/<name>, which must be an existing folder (OSError "missing component folder").
std::string component_dir(const std::string& checkpoint_dir, const std::string& name);

}  // namespace nd::io
