import NetUseCore
import Synchronization

/// Asks the share again for the attributes of nodes in use before they expire, on a thread
/// of its own: a file opened again and again (cmd.exe rereading a batch file line by line)
/// then never waits for the share, and what anyone is told stays younger than the
/// attribute timeout.
final class AttributeRefresher: Sendable {
    private let work = Monitor<(queue: [(node: UInt64, job: @Sendable () -> Void)], queued: Set<UInt64>, stopping: Bool)>(([], [], false))
    private let thread = Mutex<SystemThread?>(nil)

    /// Queues `job` for `node` unless one is queued already; the thread starts with the first.
    func request(_ node: UInt64, _ job: @escaping @Sendable () -> Void) {
        let queued = work.withLock { state in
            guard !state.stopping, state.queued.insert(node).inserted else { return false }
            state.queue.append((node, job))
            return true
        }
        guard queued else { return }
        thread.withLock { thread in
            guard thread == nil else { return }
            let work = self.work
            thread = SystemThread {
                while let next = work.withLock(when: { !$0.queue.isEmpty || $0.stopping }, { state in
                    state.stopping ? nil : state.queue.removeFirst()
                }) {
                    next.job()
                    work.withLock { _ = $0.queued.remove(next.node) }
                }
            }
        }
    }

    /// Drops what is queued and ends the thread.
    func stop() {
        work.withLock { state in
            state.stopping = true
            state.queue.removeAll()
        }
        thread.withLock { thread in
            thread?.join()
            thread = nil
        }
    }
}
