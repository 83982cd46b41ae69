// Helpers shared by the shared-memory store tests: unique segment names, a fixture that
// unlinks every segment it opened, byte/string conversions and a raw view of a segment.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/codec.hpp"
#include "core/shm/geometry.hpp"
#include "core/shm/layout.hpp"
#include "core/shm/segment.hpp"
#include "core/shm/shm_store.hpp"
#include "core/store.hpp"
#include "store_test_util.hpp"

namespace nctest {

using nativecache::shm::SegmentOptions;
using nativecache::shm::ShmStore;

// A name no other test process uses: ctest runs each test in its own process.
inline std::string unique_name() {
  static std::atomic<int> counter{0};
  return "dnc-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Runs fn in a forked child and returns its exit code, or -1 when it is still running after
// timeout_ms (it is then killed): a check that might hang cannot stall the test binary.
template <class Fn>
int run_in_child(Fn fn, int timeout_ms) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(fn());
  if (pid < 0) return -2;
  for (int waited = 0;; waited += 5) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (waited >= timeout_ms) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    ::usleep(5000);
  }
}

// Opens stores on unique segments and unlinks them all at the end of the test.
class ShmTest : public ::testing::Test {
 protected:
  void TearDown() override {
    stores_.clear();
    for (const std::string& n : names_) {
      std::string detail;
      nativecache::shm::Segment::unlink(n, detail);
    }
  }

  SegmentOptions options(std::uint64_t size, std::uint32_t shards = 1,
                         std::uint32_t max_item = 0) {
    SegmentOptions o;
    o.name = unique_name();
    o.size = size;
    o.shards = shards;
    o.max_item_size = max_item;
    names_.push_back(o.name);
    return o;
  }

  // Opens (or attaches to) the segment described by o; fails the test on error.
  ShmStore& open(const SegmentOptions& o) {
    std::unique_ptr<ShmStore> s;
    std::string detail;
    Status st = ShmStore::open(o, s, detail);
    EXPECT_TRUE(st.ok()) << "open failed: code " << static_cast<int>(st.code) << " " << detail;
    if (!st.ok()) throw std::runtime_error("cannot open store: " + detail);
    stores_.push_back(std::move(s));
    return *stores_.back();
  }

  ShmStore& make(std::uint64_t size, std::uint32_t shards = 1, std::uint32_t max_item = 0) {
    return open(options(size, shards, max_item));
  }

  std::vector<std::string> names_;
  std::vector<std::unique_ptr<ShmStore>> stores_;
};

// The segment mapped a second time with shm_open + mmap, to inspect or damage it.
class RawMap {
 public:
  explicit RawMap(const std::string& name) {
    int fd = ::shm_open(("/" + name).c_str(), O_RDWR, 0);
    if (fd < 0) return;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      size_ = static_cast<std::size_t>(st.st_size);
      void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (p != MAP_FAILED) base_ = static_cast<std::byte*>(p);
    }
    ::close(fd);
  }
  ~RawMap() {
    if (base_ != nullptr) ::munmap(base_, size_);
  }
  RawMap(const RawMap&) = delete;
  RawMap& operator=(const RawMap&) = delete;

  bool ok() const noexcept { return base_ != nullptr; }
  std::size_t size() const noexcept { return size_; }
  nativecache::shm::SegmentHeader& header() const noexcept {
    return *reinterpret_cast<nativecache::shm::SegmentHeader*>(base_);
  }
  std::byte* shard(std::uint32_t i) const noexcept {
    return base_ + header().shards_offset + header().shard_stride * i;
  }
  nativecache::shm::ShardHeader& shard_header(std::uint32_t i) const noexcept {
    return *reinterpret_cast<nativecache::shm::ShardHeader*>(shard(i));
  }
  std::span<std::byte> buckets(std::uint32_t i) const noexcept {
    return {shard(i) + nativecache::shm::kShardHeaderBytes,
            std::size_t{header().bucket_count} * sizeof(std::uint32_t)};
  }
  std::span<std::byte> ring(std::uint32_t i) const noexcept {
    return {shard(i) + nativecache::shm::ring_offset(header().bucket_count),
            header().ring_capacity};
  }

 private:
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace nctest
