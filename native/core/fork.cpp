// The fork generation and ForkSafeMutex (see fork.hpp).
#include "core/fork.hpp"

#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <vector>

namespace nativecache {

namespace {

std::atomic<std::uint64_t> g_generation{0};
// Serialises the re-making of mutexes in a child; itself re-made in the atfork handler,
// which runs while the child has one thread.
pthread_mutex_t g_remake = PTHREAD_MUTEX_INITIALIZER;
std::once_flag g_once;

void on_fork_child() noexcept {
  pthread_mutex_init(&g_remake, nullptr);
  g_generation.fetch_add(1, std::memory_order_release);
}

}  // namespace

void watch_forks() noexcept {
  std::call_once(g_once, [] { pthread_atfork(nullptr, nullptr, on_fork_child); });
}

std::uint64_t fork_generation() noexcept { return g_generation.load(std::memory_order_acquire); }

void ForkSafeMutex::remake_if_forked() noexcept {
  const std::uint64_t now = fork_generation();
  if (generation_.load(std::memory_order_acquire) != now) [[unlikely]] {
    pthread_mutex_lock(&g_remake);
    if (generation_.load(std::memory_order_relaxed) != now) {
      pthread_mutex_init(&m_, nullptr);
      generation_.store(now, std::memory_order_release);
    }
    pthread_mutex_unlock(&g_remake);
  }
}

void ForkSafeMutex::lock() noexcept {
  remake_if_forked();
  pthread_mutex_lock(&m_);
}

bool ForkSafeMutex::try_lock() noexcept {
  remake_if_forked();
  return pthread_mutex_trylock(&m_) == 0;
}

namespace {

struct FdRegistry {
  std::mutex mu;
  std::vector<int> fds;
};

void registry_prepare() noexcept;
void registry_parent() noexcept;
void registry_child() noexcept;

// Never destroyed: a thread running without the GIL may still open or close a
// descriptor while the process exits and runs static destructors.
FdRegistry& fd_registry() noexcept {
  static FdRegistry* r = [] {
    auto* made = new FdRegistry;
    ::pthread_atfork(&registry_prepare, &registry_parent, &registry_child);
    return made;
  }();
  return *r;
}

void registry_prepare() noexcept { fd_registry().mu.lock(); }
void registry_parent() noexcept { fd_registry().mu.unlock(); }
void registry_child() noexcept {
  FdRegistry& r = fd_registry();
  for (int fd : r.fds) ::close(fd);
  r.fds.clear();
  r.mu.unlock();
}

}  // namespace

std::mutex& ChildClosedFds::mutex() noexcept { return fd_registry().mu; }

void ChildClosedFds::add(int fd) {
  try {
    fd_registry().fds.push_back(fd);
  } catch (...) {
    ::close(fd);
    throw;
  }
}

int ChildClosedFds::close(int fd) noexcept {
  FdRegistry& r = fd_registry();
  std::lock_guard guard(r.mu);
  auto it = std::find(r.fds.begin(), r.fds.end(), fd);
  if (it != r.fds.end()) {
    *it = r.fds.back();
    r.fds.pop_back();
  }
  return ::close(fd);
}

}  // namespace nativecache
