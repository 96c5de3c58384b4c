import Glibc

/// A plain POSIX thread: the FUSE loops and control clients block in system calls, which
/// is what threads are for and what the Swift concurrency pool is not.
public struct SystemThread: Sendable {
    private let thread: pthread_t

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Starts `body` on a new thread that someone will `join`.
    public init(_ body: @escaping @Sendable () -> Void) {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        let result = pthread_create(&thread, nil, { context in
            // A thread inherits the identity of the one that started it, which may be acting
            // for a user (a FUSE worker starting a courier): every thread starts as the daemon.
            if ThreadCredentials.canSwitch { try? ThreadCredentials.assume(ThreadCredentials.daemon) }
            Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed: \(result)")
        self.thread = thread
    }

    /// Starts `body` on a thread nobody waits for.
    public static func detach(_ body: @escaping @Sendable () -> Void) {
        pthread_detach(SystemThread(body).thread)
    }

    /// Runs `body` every `interval`, for as long as the process lives: the daemon's timers.
    public static func every(_ interval: Duration, _ body: @escaping @Sendable () -> Void) {
        detach {
            while true {
                usleep(UInt32(clamping: interval.microseconds))
                body()
            }
        }
    }

    public func join() {
        pthread_join(thread, nil)
    }
}
