#include "core/shm/robust_mutex.hpp"

#include <cerrno>
#include <ctime>

namespace nativecache::shm {

namespace {
WaitHooks g_hooks{};

// One attempt that never blocks: 0, EOWNERDEAD, ENOTRECOVERABLE, or ETIMEDOUT when held.
// Not pthread_mutex_trylock: on a robust mutex that is not recoverable, glibc's trylock
// (2.36 here) returns ENOTRECOVERABLE yet leaves the lock word owned by the caller, so
// every later locker of that mutex waits for ever. A lock whose deadline has already
// passed gives trylock's answers without that flaw, and glibc gives them without a
// system call.
int lock_now(pthread_mutex_t* m) noexcept {
  static constexpr timespec kPast{-1, 0};
  return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &kPast);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
}  // namespace

void set_wait_hooks(WaitHooks hooks) noexcept { g_hooks = hooks; }

bool init_robust_mutex(pthread_mutex_t* m) noexcept {
  pthread_mutexattr_t attr;
  if (pthread_mutexattr_init(&attr) != 0) return false;
  bool ok = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) == 0 &&
            pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) == 0 &&
            pthread_mutex_init(m, &attr) == 0;
  pthread_mutexattr_destroy(&attr);
  return ok;
}

namespace {
// The answer to a lock attempt that did not time out.
LockResult settle(pthread_mutex_t* m, int rc, Repair repair) noexcept {
  if (rc == 0) return LockResult::kAcquired;
  if (rc != EOWNERDEAD) return LockResult::kUnrecoverable;
  if (repair.fn != nullptr) repair.fn(repair.ctx);
  pthread_mutex_consistent(m);
  return LockResult::kOwnerDied;
}
}  // namespace

void Waited::resume() noexcept {
  if (!pending_) return;
  pending_ = false;
  if (g_hooks.end) g_hooks.end(token_);
}

InterpreterReleased::InterpreterReleased() noexcept {
  if (g_hooks.begin) {
    token_ = g_hooks.begin();
    released_ = true;
  }
}

InterpreterReleased::~InterpreterReleased() {
  if (released_ && g_hooks.end) g_hooks.end(token_);
}

LockResult lock(pthread_mutex_t* m, Waited& waited, Repair repair,
                std::int64_t timeout_ms) noexcept {
  for (int spin = 0; spin < 128; ++spin) {
    int rc = lock_now(m);
    if (rc != ETIMEDOUT) return settle(m, rc, repair);
    cpu_relax();
  }
  // Held by someone else for longer than a critical section should take: wait
  // without holding the interpreter (taken back by the caller, after unlocking).
  if (g_hooks.begin && !waited.pending_) {
    waited.token_ = g_hooks.begin();
    waited.pending_ = true;
  }
  if (timeout_ms <= 0) return settle(m, pthread_mutex_lock(m), repair);
  timespec deadline{};
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += static_cast<time_t>(timeout_ms / 1000);
  deadline.tv_nsec += static_cast<long>(timeout_ms % 1000) * 1'000'000L;
  if (deadline.tv_nsec >= 1'000'000'000L) {
    deadline.tv_sec += 1;
    deadline.tv_nsec -= 1'000'000'000L;
  }
  int rc = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &deadline);
  if (rc == ETIMEDOUT) return LockResult::kTimedOut;
  return settle(m, rc, repair);
}

void unlock(pthread_mutex_t* m) noexcept { pthread_mutex_unlock(m); }

}  // namespace nativecache::shm
