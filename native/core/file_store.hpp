// The filesystem store: one file per key under a cache directory, a drop-in for Django's
// FileBasedCache that several processes (and hosts sharing the directory) can use at once.
//
//   <dir>/<2 hex>/<16 hex>.djc   an entry: FileHeader, then the key, then the value
//   <dir>/.nativecache           shared counters (mmapped) and the lock bytes
//
// Reads take no lock: an entry is written to a temp file in its fan-out directory and
// renamed over the old one, so a reader sees the old file or the new one, never a mix.
// Every write takes an exclusive lock on one of kLockStripes byte ranges of .nativecache,
// picked by the key's hash, so add, cas and incr are atomic across processes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/store.hpp"

namespace nativecache::file {

// An entry file's first bytes. Fields are in the host's byte order: a file from a host of
// the other order fails the magic and version checks and reads as a miss.
struct FileHeader {
  std::uint32_t magic;
  std::uint16_t version;
  std::uint16_t header_size;  // sizeof(FileHeader)
  std::uint32_t flags;        // codec flags of the value
  std::uint32_t key_len;
  std::uint64_t value_len;
  std::int64_t expire_ms;     // Unix time in ms (CLOCK_REALTIME); 0 = never
  std::uint64_t cas;          // random, new on every write of the value
  std::uint32_t data_crc;     // CRC32 of the key, then the value
  std::uint32_t header_crc;   // CRC32 of the bytes before this field, then the key
};
static_assert(sizeof(FileHeader) == 48);

inline constexpr std::uint32_t kFileMagic = 0x434E4A44;  // "DJNC" read little-endian
inline constexpr std::uint16_t kFileVersion = 1;
inline constexpr std::string_view kEntrySuffix = ".djc";
inline constexpr std::string_view kTempPrefix = ".tmp-";
inline constexpr std::string_view kCounterFile = ".nativecache";
inline constexpr std::size_t kMaxKeyLength = 65535;
inline constexpr std::size_t kDefaultMaxValueSize = std::size_t{64} << 20;
inline constexpr unsigned kLockStripes = 64;

// The start of .nativecache, shared by every process that uses the directory. The
// counters are hints (a process can die between a rename and its increment); the exact
// entry count is taken by a rescan when culling.
struct Counters {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t size;  // sizeof(Counters)
  std::atomic<std::int64_t> entries;  // .djc files
  std::atomic<std::int64_t> bytes;    // their sizes
  std::atomic<std::int64_t> hits, misses, sets, evictions, expirations;
  std::atomic<std::int64_t> recoveries;  // damaged files removed
};
static_assert(std::atomic<std::int64_t>::is_always_lock_free);

inline constexpr std::uint64_t kCounterMagic = 0x52544E434E4A44ULL;  // "DJNCNTR"
inline constexpr std::uint32_t kCounterVersion = 1;
// Lock bytes sit past the counters, so locking never touches the mapped region.
inline constexpr std::int64_t kLockBase = 4096;
inline constexpr std::int64_t kCullLockByte = kLockBase + kLockStripes;
inline constexpr std::int64_t kInitLockByte = kCullLockByte + 1;

struct FileOptions {
  std::string dir;
  std::size_t max_value_size = 0;  // 0: kDefaultMaxValueSize
};

class CounterMap;

class FileStore final : public Store {
 public:
  // Creates nothing: the directory is made (0700, with any missing parents) by the
  // first write. A relative dir is taken from the current directory, as Django does.
  // kInvalidArgument (with `detail`) when dir is empty or not a directory.
  static Status open(const FileOptions& opts, std::unique_ptr<FileStore>& out,
                     std::string& detail);
  ~FileStore() override;
  FileStore(const FileStore&) = delete;
  FileStore& operator=(const FileStore&) = delete;

  Status get(std::string_view key, ValueOut& out) override;
  // These two read the header and the key only; the value's CRC is checked by reads of it.
  Status contains(std::string_view key) override;
  Status ttl(std::string_view key, std::int64_t& remaining_ms) override;
  Status store(const Write& w, Mode mode, std::uint64_t cas, const Limits& limits) override;
  Status concat(std::string_view key, std::span<const std::byte> data, std::uint32_t flags,
                bool prepend) override;
  Status remove(std::string_view key) override;
  Status touch(std::string_view key, Ttl ttl) override;
  Status incr(std::string_view key, std::int64_t delta, std::int64_t& result) override;
  // Removes entry files, temp files left by dead writers, and emptied fan-out
  // directories; anything else in the directory stays.
  Status clear() override;
  StoreStats stats() override;
  // Reads the header and key of every entry file; see file_store.cpp.
  Status keys(std::vector<std::string>& out) override;
  [[nodiscard]] std::size_t max_value_size() const noexcept override { return max_value_; }
  // A longer key is refused on writes and is absent on reads, as in every call.
  [[nodiscard]] const char* key_refusal(std::string_view key,
                                        bool writing) const noexcept override {
    return writing && key.size() > kMaxKeyLength ? "key longer than 65535 bytes" : nullptr;
  }
  [[nodiscard]] bool blocks() const noexcept override { return true; }

  // The file that holds key (whether or not it exists).
  [[nodiscard]] std::string path_for(std::string_view key) const;
  [[nodiscard]] const std::string& dir() const noexcept { return dir_; }

  // Test hook: takes the key's stripe lock, writes one byte to notify_fd and sleeps for
  // ever (the test kills the process).
  [[noreturn]] void debug_hold_lock(std::string_view key, int notify_fd);

 private:
  class Lock;
  FileStore(std::string dir, std::size_t max_value);

  void entry_path(std::uint64_t hash, std::string& out) const;
  Status lock(std::int64_t byte, bool create, Lock& out);
  Status lock_entry(std::string_view key, std::string& path, Lock& lk);
  Status write_entry(const std::string& path, std::string_view key,
                     std::span<const std::span<const std::byte>> parts, std::uint32_t flags,
                     std::int64_t expire_ms, std::uint64_t cas, bool existed,
                     std::int64_t old_size);
  void unlink_entry(const std::string& path, std::int64_t size, bool expired, bool damaged);
  void discard_if_same(const std::string& path, std::uint64_t hash, int fd, std::int64_t size,
                       bool expired, bool damaged);
  Status cull(const Limits& limits);
  void sweep_next_fanout();

  // Writes between two sweeps of a fan-out directory for stale temp files.
  static constexpr std::uint32_t kSweepEvery = 32;

  std::string dir_;
  std::string counter_path_;
  std::size_t max_value_;
  std::unique_ptr<CounterMap> counters_;
  std::atomic<std::uint32_t> writes_{0};
  std::atomic<std::uint32_t> sweep_next_{0};
};

}  // namespace nativecache::file
