import Glibc
import NetUseCore
import Redirector

/// A file SMBShare opened: the worker that opened it, the other workers it was opened on
/// since, and the data on its way in (read-ahead) and out (write-behind). Over a network the
/// round trip, not the bytes, bounds one request at a time; both move data in batches of
/// megabytes instead, read-ahead several at once on different workers.
final class SMBFile: BufferedFile {
    let worker: Int
    let path: String
    let flags: Int32
    let state: Monitor<State>

    /// The file's id in one worker process, and which process that was.
    struct RemoteOpen {
        var id: UInt32
        var generation: Int
    }

    var buffered: Monitor<State> { state }

    struct State: BufferedFileState {
        /// By worker index.
        var opens: [Int: RemoteOpen]
        var readAhead: ReadAhead
        var writeBehind: WriteBehind
        /// Which worker the next batch goes to.
        var turn = 0
        /// Set by close: a fetch ahead still on a courier must not open the file again on
        /// its worker, where nobody would close it.
        var closed = false
        /// What this file holds of the cache budget, as last accounted.
        var charged = 0

        /// Bytes of file data the file holds in memory: batches read ahead and on their way,
        /// writes gathered and being sent.
        var held: Int { readAhead.held + writeBehind.held }

        mutating func account(_ budget: CacheBudget) {
            charged = budget.account(from: charged, to: closed ? 0 : held)
        }

        /// What was read ahead may be what this write replaces.
        mutating func willGather() {
            readAhead.forget()
        }
    }

    init(worker: Int, path: String, flags: Int32, open: RemoteOpen, workers: Int) {
        self.worker = worker
        self.path = path
        self.flags = flags
        state = Monitor(State(opens: [worker: open], readAhead: ReadAhead(lanes: workers),
                              writeBehind: WriteBehind()))
    }
}
