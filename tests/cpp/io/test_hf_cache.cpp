#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/errors.h"
#include "io/hf_cache.h"

namespace nd::io {
namespace {
namespace fs = std::filesystem;

constexpr const char* kCacheVars[] = {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME",
                                      "XDG_CACHE_HOME", "HOME"};

// Saves and restores the variables hf_cache_roots reads, and gives each test a fake cache.
class HfCache : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kCacheVars) {
      if (const char* v = std::getenv(name)) saved_[name] = v;
      ::unsetenv(name);
    }
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(::testing::TempDir()) / (std::string("hfcache_") + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    for (const char* name : kCacheVars) ::unsetenv(name);
    for (const auto& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
    fs::remove_all(root_);
  }

  // models--org--name/refs/<ref> -> commit, and an existing snapshots/<commit>/ folder.
  fs::path add_snapshot(const fs::path& cache, const std::string& folder, const std::string& ref,
                        const std::string& commit) {
    const fs::path repo = cache / folder;
    fs::create_directories(repo / "snapshots" / commit);
    if (!ref.empty()) {
      fs::create_directories((repo / "refs" / ref).parent_path());
      std::ofstream(repo / "refs" / ref) << commit;
    }
    return repo / "snapshots" / commit;
  }

  fs::path root_;
  std::map<std::string, std::string> saved_;
};

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";

TEST_F(HfCache, RootsFollowHuggingfaceHubPrecedence) {
  EXPECT_TRUE(hf_cache_roots().empty());
  ::setenv("HOME", "/home/u", 1);
  EXPECT_EQ(hf_cache_roots(), std::vector<std::string>{"/home/u/.cache/huggingface/hub"});
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(hf_cache_roots(), std::vector<std::string>{"/xdg/huggingface/hub"});
  ::setenv("HF_HOME", "~/hf", 1);
  EXPECT_EQ(hf_cache_roots(), std::vector<std::string>{"/home/u/hf/hub"});
  ::setenv("HUGGINGFACE_HUB_CACHE", "/legacy", 1);
  EXPECT_EQ(hf_cache_roots(), std::vector<std::string>{"/legacy"});
  ::setenv("HF_HUB_CACHE", "${HOME}/c/$HOME/$UNSET_VAR_ND", 1);
  EXPECT_EQ(hf_cache_roots(), std::vector<std::string>{"/home/u/c//home/u/$UNSET_VAR_ND"});
}

TEST_F(HfCache, ResolvesRefsToSnapshot) {
  ::setenv("HF_HUB_CACHE", root_.c_str(), 1);
  const fs::path snap = add_snapshot(root_, "models--org--tiny-sd", "main", kCommit);
  const CacheLookup found = find_in_hf_cache("org/tiny-sd");
  ASSERT_TRUE(found.snapshot_dir.has_value());
  EXPECT_EQ(*found.snapshot_dir, snap.string());
  EXPECT_EQ(found.looked_in.front(), (root_ / "models--org--tiny-sd" / "refs" / "main").string());
}

TEST_F(HfCache, CommitHashIsUsedDirectlyAndBranchesMayHaveSlashes) {
  const fs::path snap = add_snapshot(root_, "models--single", "", kCommit);
  EXPECT_EQ(find_in_hf_cache("single", kCommit, root_.string()).snapshot_dir, snap.string());
  const std::string other = std::string(40, 'b');
  const fs::path pr = add_snapshot(root_, "models--org--m", "refs/pr/1", other);
  EXPECT_EQ(find_in_hf_cache("org/m", "refs/pr/1", root_.string()).snapshot_dir, pr.string());
}

TEST_F(HfCache, MissingRepoRefOrSnapshotIsNotFoundWithPlacesLookedIn) {
  const CacheLookup none = find_in_hf_cache("org/absent", "main", root_.string());
  EXPECT_FALSE(none.snapshot_dir.has_value());
  ASSERT_EQ(none.looked_in.size(), 1u);
  EXPECT_EQ(none.looked_in[0], (root_ / "models--org--absent" / "refs" / "main").string());
  // refs/main points at a snapshot that was deleted.
  add_snapshot(root_, "models--org--gone", "main", kCommit);
  fs::remove_all(root_ / "models--org--gone" / "snapshots");
  const CacheLookup gone = find_in_hf_cache("org/gone", "main", root_.string());
  EXPECT_FALSE(gone.snapshot_dir.has_value());
  EXPECT_EQ(gone.looked_in.size(), 2u);
  // A corrupt refs file must not steer the lookup anywhere.
  fs::create_directories(root_ / "models--org--bad" / "refs");
  std::ofstream(root_ / "models--org--bad" / "refs" / "main") << "../../../etc";
  EXPECT_FALSE(find_in_hf_cache("org/bad", "main", root_.string()).snapshot_dir.has_value());
  // No cache root at all (no HOME): nothing looked in, nothing found.
  EXPECT_FALSE(find_in_hf_cache("org/x").snapshot_dir.has_value());
}

TEST_F(HfCache, RejectsRepoIdsAndRevisionsThatCouldEscapeTheCache) {
  for (const char* id : {"", "..", "../x", "a/../b", "/abs", "a/b/c", "a--b", "a..b", "-a", "a.",
                         "org/name.git", "a b", "a\\b", "org/"}) {
    EXPECT_THROW(find_in_hf_cache(id, "main", root_.string()), ValueError) << id;
  }
  for (const char* rev : {"", "..", "../main", "a/../../b", "/abs", "a\\b", "a//b"}) {
    EXPECT_THROW(find_in_hf_cache("org/m", rev, root_.string()), ValueError) << rev;
  }
  EXPECT_NO_THROW(validate_repo_id("stable-diffusion-v1-5/stable-diffusion-v1-5"));
  EXPECT_NO_THROW(validate_repo_id("gpt2"));
  EXPECT_NO_THROW(validate_repo_id("Org_1/Foo-BAR_foo.bar123"));
}

}  // namespace
}  // namespace nd::io
