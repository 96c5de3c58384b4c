import Synchronization

/// A thread that does background work in the order it was given, so that it does not hold
/// up the request that caused it: an SMB worker's read-ahead, listings ahead and
/// write-behind; a drive's attribute refreshes. The thread starts with the first job.
public final class Courier: Sendable {
    private struct Job {
        let run: @Sendable () -> Void
        /// Set for work done on speculation: what to undo when it is dropped unrun.
        let cancel: (@Sendable () -> Void)?
    }

    private let jobs = Monitor<(queue: [Job], stopping: Bool)>(([], false))
    private let thread = Mutex<SystemThread?>(nil)

    public init() {}

    /// Work that must be done (write-behind).
    public func send(_ job: @escaping @Sendable () -> Void) {
        enqueue(Job(run: job, cancel: nil))
    }

    /// Work done on speculation, dropped (and `cancel` run instead) when the courier stops.
    public func speculate(_ job: @escaping @Sendable () -> Void, cancel: @escaping @Sendable () -> Void) {
        enqueue(Job(run: job, cancel: cancel))
    }

    private func enqueue(_ job: Job) {
        let accepted = jobs.withLock { state in
            if !state.stopping { state.queue.append(job) }
            return !state.stopping
        }
        guard accepted else { return job.cancel?() ?? job.run() }
        thread.withLock { thread in
            guard thread == nil else { return }
            let jobs = self.jobs
            thread = SystemThread {
                while let job = jobs.withLock(when: { !$0.queue.isEmpty || $0.stopping }, { state in
                    state.queue.isEmpty ? nil : state.queue.removeFirst()
                }) {
                    job.run()
                }
            }
        }
    }

    /// Drops what was only speculation, does the rest, then ends the thread.
    public func stop() {
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
