/// A thread that does background work in the order it was given, so that it does not hold
/// up the request that caused it: an SMB worker's read-ahead, listings ahead and
/// write-behind; a drive's attribute refreshes. The thread starts with the first job.
public final class Courier: Sendable {
    private struct Job: Sendable {
        let run: @Sendable () -> Void
        /// Set for work done on speculation: what to undo when it is dropped unrun.
        let cancel: (@Sendable () -> Void)?
    }

    private struct State: Sendable {
        var queue: [Job] = []
        var stopping = false
        /// Started under the same hold of the lock that queued its first job, so that a
        /// `stop` either sees it (and joins it) or comes first (and none is started).
        var thread: SystemThread?
    }

    private let state = Monitor(State())

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
        let accepted = state.withLock { state in
            guard !state.stopping else { return false }
            state.queue.append(job)
            if state.thread == nil {
                let jobs = self.state
                // The new thread waits for this lock before it takes the job.
                state.thread = SystemThread {
                    while let job = jobs.withLock(when: { !$0.queue.isEmpty || $0.stopping }, { state in
                        state.queue.isEmpty ? nil : state.queue.removeFirst()
                    }) {
                        job.run()
                    }
                }
            }
            return true
        }
        // After stop: speculation is undone, what must be done is done here.
        guard accepted else { return job.cancel?() ?? job.run() }
    }

    /// Drops what was only speculation, does the rest, then ends the thread.
    public func stop() {
        let (dropped, thread) = state.withLock { state in
            defer {
                state.queue.removeAll { $0.cancel != nil }
                state.stopping = true
                state.thread = nil  // joined once, below
            }
            return (state.queue.compactMap(\.cancel), state.thread)
        }
        dropped.forEach { $0() }
        thread?.join()
    }
}
