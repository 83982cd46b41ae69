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
// rc from a lock attempt that may have taken the lock: kAcquired or kOwnerDied holding
// it (repaired and consistent), kUnrecoverable not holding it, kTimedOut for ETIMEDOUT.
enum class Attempt { kAcquired, kOwnerDied, kUnrecoverable, kTimedOut };

Attempt settle(pthread_mutex_t* m, int rc, Repair repair) noexcept {
  if (rc == 0) return Attempt::kAcquired;
  if (rc == ETIMEDOUT) return Attempt::kTimedOut;
  if (rc != EOWNERDEAD) return Attempt::kUnrecoverable;
  if (repair.fn != nullptr) repair.fn(repair.ctx);
  pthread_mutex_consistent(m);
  return Attempt::kOwnerDied;
}
}  // namespace

LockResult lock(pthread_mutex_t* m, Repair repair) noexcept {
  bool died = false;
  for (;;) {
    for (int spin = 0; spin < 128; ++spin) {
      switch (settle(m, lock_now(m), repair)) {
        case Attempt::kAcquired:
          return died ? LockResult::kOwnerDied : LockResult::kAcquired;
        case Attempt::kOwnerDied:
          return LockResult::kOwnerDied;
        case Attempt::kUnrecoverable:
          return LockResult::kUnrecoverable;
        case Attempt::kTimedOut:
          break;
      }
      cpu_relax();
    }
    // Held by someone else for longer than a critical section should take: wait
    // without holding the interpreter.
    void* token = g_hooks.begin ? g_hooks.begin() : nullptr;
    Attempt a = settle(m, pthread_mutex_lock(m), repair);
    died = died || a == Attempt::kOwnerDied;
    if (a == Attempt::kUnrecoverable) {
      if (g_hooks.end) g_hooks.end(token);
      return LockResult::kUnrecoverable;
    }
    if (!g_hooks.end) return died ? LockResult::kOwnerDied : LockResult::kAcquired;
    unlock(m);
    g_hooks.end(token);
  }
}

void unlock(pthread_mutex_t* m) noexcept { pthread_mutex_unlock(m); }

}  // namespace nativecache::shm
