import NetUseCore
import Synchronization

/// A thread that does an SMB worker's background work, in the order it was given:
/// read-ahead and write-behind, which must not hold up the request that caused them.
final class Courier: Sendable {
    private let jobs = Monitor<(queue: [@Sendable () -> Void], stopping: Bool)>(([], false))
    private let thread = Mutex<SystemThread?>(nil)

    init() {
        let jobs = self.jobs
        thread.withLock {
            $0 = SystemThread {
                while let job = jobs.withLock(when: { !$0.queue.isEmpty || $0.stopping }, { state in
                    state.queue.isEmpty ? nil : state.queue.removeFirst()
                }) {
                    job()
                }
            }
        }
    }

    func send(_ job: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.queue.append(job) }
    }

    /// Does what was given, then ends the thread.
    func stop() {
        jobs.withLock { $0.stopping = true }
        thread.withLock { thread in
            thread?.join()
            thread = nil
        }
    }
}
