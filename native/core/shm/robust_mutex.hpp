// A process-shared, robust pthread mutex living in the segment. Boost's own mutexes
// cannot be made consistent after an owner dies; this one can.
#pragma once

#include <pthread.h>

namespace nativecache::shm {

enum class LockResult { kAcquired, kOwnerDied, kUnrecoverable };

// Hooks run around a blocking wait, so the binding can release the GIL while another
// process holds the lock. Set once by the binding; core code never names Python.
struct WaitHooks {
  void* (*begin)() = nullptr;
  void (*end)(void*) = nullptr;
};
void set_wait_hooks(WaitHooks hooks) noexcept;

// Initialises *m in place (PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST).
bool init_robust_mutex(pthread_mutex_t* m) noexcept;

// Spins briefly, then waits with the hooks around the wait. kOwnerDied: the caller
// holds the lock and must repair what it guards, then call mark_consistent().
LockResult lock(pthread_mutex_t* m) noexcept;
void mark_consistent(pthread_mutex_t* m) noexcept;
void unlock(pthread_mutex_t* m) noexcept;

}  // namespace nativecache::shm
