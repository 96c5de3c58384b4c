import Glibc

/// Time since boot, for deadlines that a change of the wall clock must not move.
public enum MonotonicClock {
    @Sendable public static func now() -> Duration {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return .seconds(time.tv_sec) + .nanoseconds(time.tv_nsec)
    }
}
