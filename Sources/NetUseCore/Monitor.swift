import Glibc

/// State behind a lock, with a condition to wait on: what `Mutex` is, plus waiting, which
/// the Synchronization module does not offer. Every `withLock` wakes the waiters when it
/// ends, so nobody has to remember to.
///
/// The state must be Sendable: it is handed from thread to thread under the lock, and
/// `@unchecked` here vouches only for the lock, never for what it guards.
public final class Monitor<State: Sendable>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var state: State

    public init(_ state: State) {
        self.state = state
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    public func withLock<T, E: Error>(_ body: (inout State) throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        return try body(&state)
    }

    /// Waits until `ready` holds, then runs `body` under the same hold of the lock.
    public func withLock<T, E: Error>(when ready: (State) -> Bool, _ body: (inout State) throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        while !ready(state) {
            pthread_cond_wait(condition, mutex)
        }
        return try body(&state)
    }

    /// As `withLock(when:)`, waiting no longer than `limit`: nil, and `body` not run, when
    /// `ready` still does not hold by then.
    public func withLock<T, E: Error>(when ready: (State) -> Bool, within limit: Duration,
                                      _ body: (inout State) throws(E) -> T) throws(E) -> T? {
        let deadlineNanoseconds = (MonotonicClock.now() + limit).nanoseconds
        var deadline = timespec(tv_sec: Int(deadlineNanoseconds / 1_000_000_000), tv_nsec: Int(deadlineNanoseconds % 1_000_000_000))
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        while !ready(state) {
            if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT && !ready(state) { return nil }
        }
        return try body(&state)
    }
}
