import Glibc
import NetUseCore
import Redirector

/// A file SMBShare opened: the worker that opened it, the other workers it was opened on
/// since, and the data on its way in (read-ahead) and out (write-behind). Over a network the
/// round trip, not the bytes, bounds one request at a time; both move data in batches of
/// megabytes instead, read-ahead several at once on different workers.
final class SMBFile: Sendable {
    let worker: Int
    let path: String
    let flags: Int32
    let state: Monitor<State>

    /// The file's id in one worker process, and which process that was.
    struct RemoteOpen {
        var id: UInt32
        var generation: Int
    }

    struct State {
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

        /// Brings the budget up to date with what the file holds now.
        mutating func account(_ budget: CacheBudget) {
            charged = budget.account(from: charged, to: closed ? 0 : held)
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

/// Data read from the share ahead of the reader, while it reads sequentially. A batch that
/// is older than `lifetime`, or that a write through the drive made stale, is dropped.
struct ReadAhead {
    struct Batch {
        let offset: off_t
        let bytes: ArraySlice<UInt8>
        let fetched: Duration
        /// Shorter than asked: the file ends here.
        let endsFile: Bool
        var end: off_t { offset + off_t(bytes.count) }
    }

    /// A fetch carries the epoch it was started in: one that lands after a `forget` is dropped.
    typealias Range = (offset: off_t, count: Int, epoch: Int)

    /// What a read does next.
    enum Step {
        /// Took this many bytes from a batch; start the prefetches given.
        case copied(Int, prefetch: [Range])
        /// The file ends here.
        case endOfFile
        /// Read this range into a new batch (this request does it), then look again.
        case fetch(Range)
        /// Not a sequential read: read straight into the caller's buffer.
        case direct
    }

    static let largestWindow = 8 << 20
    static let lifetime: Duration = .seconds(1)

    /// How many fetches may be on their way at once: one per worker.
    let lanes: Int
    private(set) var batches: [Batch] = []
    private(set) var fetching: [Range] = []
    /// Where the reader's last read ended: a read that starts near there is sequential.
    private var streamEnd: off_t = -1
    private var window = 0
    /// Counts `forget`s: a fetch on its way when the file changed read what the share held
    /// before, and must not be kept.
    private(set) var epoch = 0

    init(lanes: Int) {
        self.lanes = max(1, lanes)
    }

    /// Batches kept, and fetches on their way (counted at their full size).
    var held: Int { batches.reduce(0) { $0 + $1.bytes.count } + fetching.reduce(0) { $0 + $1.count } }

    /// While reading sequentially, a read the batches do not cover waits for the fetches on
    /// their way, which bring it or the batches after which it lies.
    func mustWait(for position: off_t) -> Bool {
        !fetching.isEmpty && window > 0 && batch(covering: position) == nil
    }

    private func batch(covering position: off_t) -> Int? {
        batches.firstIndex { position >= $0.offset && (position < $0.end || ($0.endsFile && position == $0.end)) }
    }

    /// The next step of a read at `position` into `buffer`.
    mutating func step(at position: off_t, into buffer: UnsafeMutableRawBufferPointer, now: Duration) -> Step {
        batches.removeAll { now - $0.fetched > Self.lifetime || $0.end + off_t(window) < position }
        if let index = batch(covering: position) {
            let batch = batches[index]
            let start = Int(position - batch.offset)
            let count = min(buffer.count, batch.bytes.count - start)
            if count == 0 { return .endOfFile }
            batch.bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[start..<start + count])) }
            streamEnd = position + off_t(count)
            return .copied(count, prefetch: prefetches(after: streamEnd))
        }
        // The kernel's own read-ahead sends several reads at once, and they may arrive out
        // of order: near where the last one ended still counts as sequential.
        let slack = off_t(max(window, 4 << 20))
        let sequential = streamEnd >= 0 && position >= streamEnd - slack && position <= streamEnd + slack
        streamEnd = position + off_t(buffer.count)
        guard sequential else {
            window = 0
            return .direct
        }
        window = min(max(window * 2, 2 << 20, buffer.count), Self.largestWindow)
        let range = (offset: position, count: window, epoch: epoch)
        fetching.append(range)
        return .fetch(range)
    }

    /// Keeps every lane busy while the reader is within reach of the frontier: a reader
    /// from memory is faster than the share.
    private mutating func prefetches(after position: off_t) -> [Range] {
        guard window > 0, let last = batches.last, !last.endsFile else { return [] }
        var frontier = max(last.end, fetching.map { $0.offset + off_t($0.count) }.max() ?? 0)
        var started: [Range] = []
        while fetching.count < lanes, frontier - position <= off_t(window * lanes) {
            window = min(window * 2, Self.largestWindow)
            let range = (offset: frontier, count: window, epoch: epoch)
            fetching.append(range)
            started.append(range)
            frontier += off_t(window)
        }
        return started
    }

    mutating func fetched(_ bytes: ArraySlice<UInt8>, for range: Range, now: Duration) {
        guard range.epoch == epoch else { return }
        fetchEnded(range)
        if batches.count >= 2 * lanes + 1 { batches.removeFirst() }
        batches.append(Batch(offset: range.offset, bytes: bytes, fetched: now, endsFile: bytes.count < range.count))
        batches.sort { $0.offset < $1.offset }
    }

    mutating func fetchEnded(_ range: Range) {
        if let index = fetching.firstIndex(where: { $0.offset == range.offset && $0.epoch == range.epoch }) {
            fetching.remove(at: index)
        }
    }

    /// The file changed (or may have): what was read ahead, and what is on its way, is
    /// stale. Reading ahead starts over from the next sequential reads.
    mutating func forget() {
        batches.removeAll()
        fetching.removeAll()
        window = 0
        epoch += 1
    }
}

/// Writes gathered while the previous batch is on its way to the share, then sent as one:
/// a batch grows with the round trip, and nothing waits while the wire is idle. One courier
/// sends, on the file's own worker, so batches reach the share in order. A flush, an fsync
/// or a close waits until all is on the share; the Redirector tells each descriptor of
/// the failures counted here.
struct WriteBehind {
    static let largestBatch = 8 << 20

    private(set) var gathered: [UInt8] = []
    private(set) var offset: off_t = 0
    /// A courier is sending: it takes each gathered batch until none is left.
    private(set) var sending = false
    /// The size of the batch on its way to the share.
    private var inFlight = 0
    var failures = WriteFailures()

    var isIdle: Bool { !sending }
    var held: Int { gathered.count + inFlight }

    /// A write at `position` may join what is gathered: it is contiguous and fits, or
    /// nothing is gathered.
    func accepts(_ count: Int, at position: off_t) -> Bool {
        gathered.isEmpty || (position == offset + off_t(gathered.count) && gathered.count + count <= Self.largestBatch)
    }

    /// Gathers the bytes; true when a courier must be started to send them.
    mutating func gather(_ bytes: UnsafeRawBufferPointer, at position: off_t) -> Bool {
        if gathered.isEmpty {
            offset = position
            gathered.reserveCapacity(max(bytes.count, 1 << 20))
        }
        gathered.append(contentsOf: bytes)
        defer { sending = true }
        return !sending
    }

    /// The next batch to send, or nil when all is sent (the courier stops).
    mutating func takeBatch() -> (offset: off_t, bytes: [UInt8])? {
        guard !gathered.isEmpty else {
            sending = false
            inFlight = 0
            return nil
        }
        defer { gathered = [] }
        inFlight = gathered.count
        return (offset, gathered)
    }
}
