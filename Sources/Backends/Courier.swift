import NetUseCore
import Synchronization

/// A thread that does an SMB worker's background work, in the order it was given:
/// read-ahead, listings ahead and write-behind, which must not hold up the request that
/// caused them.
final class Courier: Sendable {
    private struct Job {
        let run: @Sendable () -> Void
        /// Set for work done on speculation: what to undo when it is dropped unrun.
        let cancel: (@Sendable () -> Void)?
    }

    private let jobs = Monitor<(queue: [Job], stopping: Bool)>(([], false))
    private let thread = Mutex<SystemThread?>(nil)

    init() {
        let jobs = self.jobs
        thread.withLock {
            $0 = SystemThread {
                while let job = jobs.withLock(when: { !$0.queue.isEmpty || $0.stopping }, { state in
                    state.queue.isEmpty ? nil : state.queue.removeFirst()
                }) {
                    job.run()
                }
            }
        }
    }

    /// Work that must be done (write-behind).
    func send(_ job: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.queue.append(Job(run: job, cancel: nil)) }
    }

    /// Work done on speculation, dropped (and `cancel` run instead) when the share goes.
    func speculate(_ job: @escaping @Sendable () -> Void, cancel: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.queue.append(Job(run: job, cancel: cancel)) }
    }

    /// Drops what was only speculation, does the rest, then ends the thread.
    func stop() {
        let dropped = jobs.withLock { state in
            defer {
                state.queue.removeAll { $0.cancel != nil }
                state.stopping = true
            }
            return state.queue.compactMap(\.cancel)
        }
        dropped.forEach { $0() }
        thread.withLock { thread in
            thread?.join()
            thread = nil
        }
    }
}
