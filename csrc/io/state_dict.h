// Parameters by their diffusers/transformers state-dict key, as at::Tensors. Safetensors files
// become CPU tensors that point straight into the memory map (no copy) when the stored bytes are
// suitably aligned; the map lives as long as any tensor viewing it.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

namespace nd::io {

using StateDict = std::map<std::string, at::Tensor>;

// Loads every tensor of one safetensors file.
StateDict load_safetensors(const std::string& path);

// Loads several files (the shards of one checkpoint); a key present in two shards is an error.
StateDict load_safetensors(const std::vector<std::string>& paths);

}  // namespace nd::io
