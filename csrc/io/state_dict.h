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

// Whether loading copies every tensor out of the memory map: process-wide, off by default,
// ND_COPY_WEIGHTS_ON_LOAD=1 in the environment turns it on at start. Zero-copy tensors read the
// file's pages when used, so a file truncated on disk after loading makes those reads fault (SIGBUS),
// as with safetensors' own memory-mapped loading in torch; copying costs the weights' size in host
// memory and one read at load, and leaves the model independent of the file. Weights cast to another
// dtype or moved to a GPU are copies anyway.
bool copy_weights_on_load();
void set_copy_weights_on_load(bool enabled);

// Loads every tensor of one safetensors file.
StateDict load_safetensors(const std::string& path);

// Loads several files (the shards of one checkpoint); a key present in two shards is an error.
StateDict load_safetensors(const std::vector<std::string>& paths);

}  // namespace nd::io
