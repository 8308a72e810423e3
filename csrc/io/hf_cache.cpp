#include "io/hf_cache.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "core/errors.h"

namespace nd::io {
namespace fs = std::filesystem;
namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

// os.path.expanduser for "~" and "~/..." (the only forms huggingface_hub users write).
std::string expand_user(const std::string& path) {
  if (path.empty() || path[0] != '~' || (path.size() > 1 && path[1] != '/')) return path;
  const std::optional<std::string> home = env("HOME");
  if (!home) return path;
  return *home + path.substr(1);
}

// os.path.expandvars: $NAME and ${NAME} with a set variable are replaced; others stay as written.
std::string expand_vars(const std::string& path) {
  std::string out;
  for (std::size_t i = 0; i < path.size();) {
    if (path[i] != '$') {
      out += path[i++];
      continue;
    }
    const bool braced = i + 1 < path.size() && path[i + 1] == '{';
    std::size_t start = i + (braced ? 2 : 1);
    std::size_t stop = start;
    while (stop < path.size() &&
           (std::isalnum(static_cast<unsigned char>(path[stop])) || path[stop] == '_')) {
      ++stop;
    }
    const bool closed = !braced || (stop < path.size() && path[stop] == '}');
    const std::optional<std::string> value =
        stop > start && closed ? env(path.substr(start, stop - start).c_str()) : std::nullopt;
    const std::size_t next = stop + (braced && closed ? 1 : 0);
    if (value) {
      out += *value;
    } else {
      out += path.substr(i, next - i);
    }
    i = next > i ? next : i + 1;
  }
  return out;
}

std::string expand(const std::string& path) { return expand_vars(expand_user(path)); }

bool is_hex40(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c)) ||
        std::isupper(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

// Branch and tag names may contain "/" (refs/pr/1) but no component may climb out of refs/.
void validate_revision(const std::string& revision) {
  bool ok = !revision.empty() && revision.size() <= 256 && revision[0] != '/' &&
            revision.find('\\') == std::string::npos && revision.find('\0') == std::string::npos;
  std::size_t start = 0;
  while (ok && start <= revision.size()) {
    std::size_t slash = revision.find('/', start);
    if (slash == std::string::npos) slash = revision.size();
    const std::string part = revision.substr(start, slash - start);
    ok = !part.empty() && part != "." && part != "..";
    start = slash + 1;
  }
  if (!ok) throw ValueError("invalid revision '" + revision + "' for the Hugging Face cache");
}

bool valid_repo_part(const std::string& part) {
  if (part.empty() || part.size() > 96) return false;
  for (char c : part) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  }
  // REPO_ID_REGEX's word boundaries: the part starts and ends with [A-Za-z0-9_].
  const auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  return word(part.front()) && word(part.back());
}

}  // namespace

std::vector<std::string> hf_cache_roots() {
  // Ref: huggingface_hub constants.py, HF_HOME / HUGGINGFACE_HUB_CACHE / HF_HUB_CACHE.
  if (auto v = env("HF_HUB_CACHE")) return {expand(*v)};
  if (auto v = env("HUGGINGFACE_HUB_CACHE")) return {expand(*v)};
  if (auto v = env("HF_HOME")) return {(fs::path(expand(*v)) / "hub").string()};
  if (auto v = env("XDG_CACHE_HOME")) {
    return {(fs::path(expand(*v)) / "huggingface" / "hub").string()};
  }
  if (auto home = env("HOME"))
    return {(fs::path(*home) / ".cache" / "huggingface" / "hub").string()};
  return {};
}

void validate_repo_id(const std::string& repo_id) {
  // Ref: huggingface_hub utils/_validators.py validate_repo_id.
  const std::size_t slash = repo_id.find('/');
  bool ok = repo_id.find('/', slash == std::string::npos ? repo_id.size() : slash + 1) ==
            std::string::npos;
  if (ok && slash != std::string::npos) {
    ok = valid_repo_part(repo_id.substr(0, slash)) && valid_repo_part(repo_id.substr(slash + 1));
  } else if (ok) {
    ok = valid_repo_part(repo_id);
  }
  ok = ok && repo_id.find("--") == std::string::npos && repo_id.find("..") == std::string::npos &&
       !(repo_id.size() >= 4 && repo_id.compare(repo_id.size() - 4, 4, ".git") == 0);
  if (!ok) {
    throw ValueError("'" + repo_id +
                     "' is not a valid repo id: use 'name' or 'namespace/name' with alphanumeric "
                     "chars, '-', '_' or '.', not starting or ending with '-' or '.', without "
                     "'--' or '..', at most 96 chars each");
  }
}

CacheLookup find_in_hf_cache(const std::string& repo_id, const std::string& revision,
                             const std::optional<std::string>& cache_dir) {
  validate_repo_id(repo_id);
  validate_revision(revision);
  std::string folder_name = "models--" + repo_id;
  const std::size_t slash = folder_name.find('/');
  if (slash != std::string::npos) folder_name.replace(slash, 1, "--");

  CacheLookup out;
  const std::vector<std::string> roots =
      cache_dir ? std::vector<std::string>{expand(*cache_dir)} : hf_cache_roots();
  for (const std::string& root : roots) {
    const fs::path repo = fs::path(root) / folder_name;
    std::string commit;
    if (is_hex40(revision)) {
      commit = revision;
    } else {
      const fs::path ref = repo / "refs" / revision;
      out.looked_in.push_back(ref.string());
      std::error_code ec;
      if (!fs::is_regular_file(ref, ec)) continue;
      std::ifstream in(ref);
      char buf[128] = {};
      in.read(buf, sizeof(buf) - 1);
      commit.assign(buf, static_cast<std::size_t>(in.gcount()));
      while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) {
        commit.pop_back();
      }
      // A refs file is one hash; anything else is corruption and must not steer the path.
      if (!is_hex40(commit)) continue;
    }
    const fs::path snapshot = repo / "snapshots" / commit;
    out.looked_in.push_back(snapshot.string());
    std::error_code ec;
    if (fs::is_directory(snapshot, ec)) {
      out.snapshot_dir = snapshot.string();
      return out;
    }
  }
  return out;
}

}  // namespace nd::io
