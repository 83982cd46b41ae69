// The process-shared robust mutex: waiting, wait hooks, a dead owner, an unrecoverable state.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/shm/robust_mutex.hpp"
#include "shm_test_util.hpp"

namespace {

using nativecache::shm::init_robust_mutex;
using nativecache::shm::LockResult;
using nativecache::shm::set_wait_hooks;
using nativecache::shm::unlock;
using nativecache::shm::Waited;
using nativecache::shm::WaitHooks;
using nctest::run_in_child;
using Clock = std::chrono::steady_clock;

// A mutex in memory shared with forked children, as in a segment.
class RobustMutex : public ::testing::Test {
 protected:
  void SetUp() override {
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    m_ = static_cast<pthread_mutex_t*>(p);
    ASSERT_TRUE(init_robust_mutex(m_));
  }
  void TearDown() override {
    set_wait_hooks({});
    ::munmap(m_, 4096);
  }
  // A child takes the lock and exits without releasing it.
  void orphan() {
    int rc = run_in_child([&] { return pthread_mutex_lock(m_) == 0 ? 0 : 1; }, 5000);
    ASSERT_EQ(rc, 0);
  }
  pthread_mutex_t* m_ = nullptr;
};

struct HookCount {
  static inline std::atomic<int> begins{0}, ends{0}, mismatched{0}, held_at_end{0};
  static inline pthread_mutex_t* watched = nullptr;
  static void reset(pthread_mutex_t* m) {
    begins = ends = mismatched = held_at_end = 0;
    watched = m;
  }
  static void* begin() {
    ++begins;
    return &begins;
  }
  // The end hook takes the interpreter back: the lock must not be held by then. A
  // non-recursive mutex the caller holds makes trylock fail with EBUSY.
  static void end(void* token) {
    if (token != &begins) ++mismatched;
    if (watched != nullptr) {
      if (pthread_mutex_trylock(watched) == 0) {
        pthread_mutex_unlock(watched);
      } else {
        ++held_at_end;
      }
    }
    ++ends;
  }
};

// lock() for the tests that set no wait hooks, so nothing is left to resume.
LockResult take(pthread_mutex_t* m, nativecache::shm::Repair repair = {}) {
  Waited wait;
  return nativecache::shm::lock(m, wait, repair);
}

// After a repair, this process and others take and release the lock as any other.
void expect_an_ordinary_lock(pthread_mutex_t* m) {
  EXPECT_EQ(take(m), LockResult::kAcquired);
  unlock(m);
  EXPECT_EQ(run_in_child(
                [&] {
                  if (take(m) != LockResult::kAcquired) return 1;
                  unlock(m);
                  return 0;
                },
                5000),
            0);
}

struct RepairCount {
  static void count(void* ctx) noexcept { ++*static_cast<int*>(ctx); }
};

TEST_F(RobustMutex, AcquireAndRelease) {
  EXPECT_EQ(take(m_), LockResult::kAcquired);
  unlock(m_);
  EXPECT_EQ(take(m_), LockResult::kAcquired);
  unlock(m_);
}

TEST_F(RobustMutex, WaitsForTheHolderWithHooksAround) {
  HookCount::reset(m_);
  set_wait_hooks({HookCount::begin, HookCount::end});
  // Uncontended: no wait, so no hooks.
  ASSERT_EQ(take(m_), LockResult::kAcquired);
  unlock(m_);
  EXPECT_EQ(HookCount::begins.load(), 0);

  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (pthread_mutex_lock(m_) != 0) ::_exit(1);
    char c = 'L';
    if (::write(fds[1], &c, 1) != 1) ::_exit(2);
    ::usleep(200 * 1000);
    pthread_mutex_unlock(m_);
    ::_exit(0);
  }
  ASSERT_GT(pid, 0);
  char c = 0;
  ASSERT_EQ(::read(fds[0], &c, 1), 1);
  auto t0 = Clock::now();
  Waited wait;
  EXPECT_EQ(nativecache::shm::lock(m_, wait), LockResult::kAcquired);
  auto waited = Clock::now() - t0;
  unlock(m_);
  wait.resume();  // the interpreter is taken back with the lock let go
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_GE(waited, std::chrono::milliseconds(100));
  EXPECT_EQ(HookCount::begins.load(), 1);
  EXPECT_EQ(HookCount::ends.load(), 1);
  EXPECT_EQ(HookCount::mismatched.load(), 0);
  EXPECT_EQ(HookCount::held_at_end.load(), 0) << "the end hook ran with the lock held";
}

TEST_F(RobustMutex, DeadOwnerIsReportedOnceThenRepaired) {
  orphan();
  int repairs = 0;
  EXPECT_EQ(take(m_, {RepairCount::count, &repairs}), LockResult::kOwnerDied);
  EXPECT_EQ(repairs, 1);
  unlock(m_);  // lock() made it consistent
  expect_an_ordinary_lock(m_);
}

// A child holds the lock until killed; a thread here waits for it (with the wait hooks
// set or not). The waiter gets kOwnerDied, the repair ran once, and the lock is an
// ordinary one again, here and in other processes.
void waiter_outlives_a_killed_owner(pthread_mutex_t* m) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (pthread_mutex_lock(m) != 0) ::_exit(1);
    char c = 'L';
    if (::write(fds[1], &c, 1) != 1) ::_exit(2);
    for (;;) ::pause();
  }
  ASSERT_GT(pid, 0);
  char c = 0;
  ASSERT_EQ(::read(fds[0], &c, 1), 1);
  ::close(fds[0]);
  ::close(fds[1]);
  std::atomic<int> result{-1};
  int repairs = 0;
  std::thread waiter([&] {
    Waited wait;
    LockResult r = nativecache::shm::lock(m, wait, {RepairCount::count, &repairs});
    result = static_cast<int>(r);
    if (r != LockResult::kUnrecoverable) unlock(m);  // the holding thread lets it go
    wait.resume();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(result.load(), -1) << "acquired a lock held by a live process";
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  waiter.join();
  EXPECT_EQ(result.load(), static_cast<int>(LockResult::kOwnerDied));
  EXPECT_EQ(repairs, 1);
  expect_an_ordinary_lock(m);
}

TEST_F(RobustMutex, OwnerKilledWhileWaiting) { waiter_outlives_a_killed_owner(m_); }

// With hooks (the binding's case) the repair runs without the interpreter, and the end
// hook takes the interpreter back only after the holder has let the lock go.
TEST_F(RobustMutex, OwnerKilledWhileWaitingWithHooks) {
  HookCount::reset(m_);
  set_wait_hooks({HookCount::begin, HookCount::end});
  waiter_outlives_a_killed_owner(m_);
  EXPECT_EQ(HookCount::begins.load(), 1);
  EXPECT_EQ(HookCount::held_at_end.load(), 0) << "the end hook ran with the lock held";
}

TEST_F(RobustMutex, UnrecoverableIsReportedAndNeverHangs) {
  orphan();
  // Someone takes it after the death and releases it without repairing it.
  ASSERT_EQ(pthread_mutex_lock(m_), EOWNERDEAD);
  pthread_mutex_unlock(m_);
  // Every later attempt, here or in another process, says so at once, however often.
  int rc = run_in_child(
      [&] {
        for (int i = 0; i < 3; ++i) {
          if (take(m_) != LockResult::kUnrecoverable) return 1;
        }
        return 0;
      },
      5000);
  EXPECT_EQ(rc, 0) << (rc == -1 ? "lock() hangs on an unrecoverable mutex" : "");
  for (int i = 0; i < 3; ++i) {
    rc = run_in_child(
        [&] { return take(m_) == LockResult::kUnrecoverable ? 0 : 1; }, 5000);
    EXPECT_EQ(rc, 0) << i << (rc == -1 ? ": hangs" : "");
  }
}

// A lock word naming a thread that never existed (above any pid_max): no death will free
// it, as after a stray write into the segment. A wait with a limit ends at it.
TEST_F(RobustMutex, AWaitForAGarbageLockWordEndsAtItsTimeout) {
  int rc = run_in_child(
      [&] {
        reinterpret_cast<volatile int*>(m_)[0] = 0x3ffffff0;
        Waited wait;
        auto started = Clock::now();
        if (nativecache::shm::lock(m_, wait, {}, 200) != LockResult::kTimedOut) return 1;
        auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                          Clock::now() - started).count();
        return waited >= 190 && waited < 3000 ? 0 : 2;
      },
      10000);
  EXPECT_EQ(rc, 0) << (rc == -1 ? "lock() with a timeout hangs on a garbage lock word" : "");
}

TEST_F(RobustMutex, ALockLetGoBeforeTheTimeoutIsTaken) {
  std::atomic<bool> held{false};
  std::thread holder([&] {
    if (take(m_) != LockResult::kAcquired) return;
    held = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    unlock(m_);
  });
  while (!held) std::this_thread::yield();
  Waited wait;
  auto started = Clock::now();
  EXPECT_EQ(nativecache::shm::lock(m_, wait, {}, 5000), LockResult::kAcquired);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(4));
  unlock(m_);
  holder.join();
}

}  // namespace
