import Glibc
import NetUseCore
import Redirector
import Synchronization

/// What a network backend's file keeps for the caching layer: the writes gathered behind the
/// writer, and its share of the cache budget.
protocol BufferedFileState: Sendable {
    var writeBehind: WriteBehind { get set }
    /// Bytes of file data the file holds in memory.
    var held: Int { get }
    /// Brings the budget up to date with what the file holds now.
    mutating func account(_ budget: CacheBudget)
    /// A write is about to be gathered: what the file holds of the share's bytes is stale.
    mutating func willGather()
}

extension BufferedFileState {
    mutating func willGather() {}
}

/// A file whose writes go behind, its state behind one monitor.
protocol BufferedFile: AnyObject, Sendable {
    associatedtype State: BufferedFileState
    var buffered: Monitor<State> { get }
}

/// Write-behind for any network backend: a write is gathered in its file's `WriteBehind`, and
/// a courier sends the batches, one after the other, through the backend's own write. The
/// backend says which courier (one per file, so that batches land in order) and how a batch
/// reaches the share.
final class WriteBehindSender: Sendable {
    /// Files with batches gathered or on their way: while none has, nothing waits for them.
    private let sending = Atomic<Int>(0)

    var isIdle: Bool { sending.load(ordering: .acquiring) == 0 }

    /// Whether the budget has room for `count` more bytes of the file's: a writer over it waits
    /// for the share instead (`drain`, then its write straight through).
    func hasRoom<File: BufferedFile>(for count: Int, in file: File) -> Bool {
        file.buffered.withLock { CacheBudget.shared.hasRoom(for: count, holding: $0.held) }
    }

    /// Gathers the write; when no courier is sending the file's batches, starts one on `courier`,
    /// which sends each with `send` until none is left. A batch the share refuses is counted
    /// in the file's `WriteFailures`, which every descriptor on it hears of at its next fsync
    /// or close.
    func gather<File: BufferedFile>(_ bytes: UnsafeRawBufferPointer, at offset: off_t, in file: File, on courier: Courier,
                                    send: @escaping @Sendable (UnsafeRawBufferPointer, off_t) throws(Errno) -> Void) {
        let start = file.buffered.withLock(when: { $0.writeBehind.accepts(bytes.count, at: offset) }) { state in
            state.willGather()
            defer { state.account(CacheBudget.shared) }
            return state.writeBehind.gather(bytes, at: offset)
        }
        guard start else { return }
        sending.add(1, ordering: .releasing)
        courier.send { [self] in
            while let (offset, batch) = file.buffered.withLock({ state in
                defer { state.account(CacheBudget.shared) }
                return state.writeBehind.takeBatch()
            }) {
                do throws(Errno) {
                    try batch.withUnsafeBytes { batch in Result { () throws(Errno) in try send(batch, offset) } }.get()
                } catch {
                    file.buffered.withLock { $0.writeBehind.failures.record(error) }
                }
                DataBuffers.shared.give(batch)
            }
            sending.subtract(1, ordering: .releasing)
        }
    }

    /// Waits until the file's write-behind is on the share (or refused, and counted).
    func drain<File: BufferedFile>(_ file: File) {
        file.buffered.withLock(when: { $0.writeBehind.isIdle }) { _ in }
    }

    /// Waits until the write-behind of every file `files` gives is on the share, so that what
    /// the share answers next includes it; asks for the files only when some are sending.
    func settle<File: BufferedFile>(_ files: () -> [File]) {
        guard !isIdle else { return }
        for file in files() { drain(file) }
    }

    func failures<File: BufferedFile>(of file: File) -> WriteFailures {
        file.buffered.withLock { $0.writeBehind.failures }
    }
}
