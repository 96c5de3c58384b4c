import Glibc
import NetUseCore

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
