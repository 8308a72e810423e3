// Mirrors huggingface_hub's cache layout (constants.py HF_HUB_CACHE, file_download.py
// repo_folder_name / try_to_load_from_cache): <cache>/models--org--name/refs/<revision> holds a
// commit hash and the files live in <cache>/models--org--name/snapshots/<commit>/.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace nd::io {

// The hub cache folder huggingface_hub would use, by its precedence: HF_HUB_CACHE, else
// HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub. Only the first that applies is returned (never a union), so setting
// HF_HUB_CACHE isolates a process from the user's cache exactly as it does for huggingface_hub.
// "~" and $VAR are expanded as huggingface_hub's expanduser/expandvars do. Empty when no home.
std::vector<std::string> hf_cache_roots();

struct CacheLookup {
  std::optional<std::string> snapshot_dir;
  // Every refs file or snapshot folder consulted, for the "looked in" part of an error.
  std::vector<std::string> looked_in;
};

// Throws ValueError when repo_id is not "name" or "org/name" in huggingface_hub's character set
// (validate_repo_id) or revision could leave the cache folder; those can never be in a cache.
void validate_repo_id(const std::string& repo_id);

// Finds the snapshot of repo_id at revision (a branch/tag name under refs/, or a 40-hex commit
// used directly). cache_dir, when given, replaces the default roots as in snapshot_download.
CacheLookup find_in_hf_cache(const std::string& repo_id, const std::string& revision = "main",
                             const std::optional<std::string>& cache_dir = std::nullopt);

}  // namespace nd::io
