// Fork awareness for the stores that hold process-local state (connections, descriptors,
// in-process mutexes): a generation number bumped in every child of fork(), and a mutex
// that a child never inherits locked.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <mutex>

namespace nativecache {

// Registers the atfork handler that bumps the generation (once per process; cheap after).
void watch_forks() noexcept;
// 0 in the first process; one more in each child of fork() than in its parent.
std::uint64_t fork_generation() noexcept;

// A mutex for state guarded across threads of one process. A thread that holds it when
// another thread forks does not exist in the child, so a plain mutex would stay locked
// there for ever; this one is made anew on its first use in a child (pthread_mutex_init
// over the copy: POSIX leaves re-initialising a locked mutex undefined, glibc simply
// overwrites it, and no thread of the child can be using it). Lockable, for
// std::lock_guard and std::unique_lock. Needs watch_forks().
class ForkSafeMutex {
 public:
  ForkSafeMutex() noexcept : generation_(fork_generation()) {}
  ~ForkSafeMutex() { pthread_mutex_destroy(&m_); }
  ForkSafeMutex(const ForkSafeMutex&) = delete;
  ForkSafeMutex& operator=(const ForkSafeMutex&) = delete;

  void lock() noexcept;
  [[nodiscard]] bool try_lock() noexcept;
  void unlock() noexcept { pthread_mutex_unlock(&m_); }

 private:
  void remake_if_forked() noexcept;

  pthread_mutex_t m_ = PTHREAD_MUTEX_INITIALIZER;
  std::atomic<std::uint64_t> generation_;
};

// Descriptors a child of fork() must not keep: an OFD or flock lock lasts until the last
// descriptor of its open file description is closed, so a child holding a copy would
// keep a lock its parent took (before or after the fork) once the parent let it go or
// died, and every other process would wait for it. open() runs the opener under a mutex
// that fork() waits for, and the child closes its copies at once, in an atfork handler:
// no descriptor escapes. close() closes one under the mutex too (a fork between leaving
// the registry and the close would give the child a copy nobody closes).
class ChildClosedFds {
 public:
  template <class Opener>
  static int open(Opener&& opener) {
    std::lock_guard guard(mutex());
    int fd = opener();
    if (fd >= 0) add(fd);  // closes fd before it throws
    return fd;
  }
  static int close(int fd) noexcept;

 private:
  static std::mutex& mutex() noexcept;
  static void add(int fd);
};

}  // namespace nativecache
