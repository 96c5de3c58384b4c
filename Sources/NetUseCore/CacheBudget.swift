import CLinux
import Glibc
import Synchronization

/// One memory budget for the daemon's caches of file data (read-ahead batches, write-behind
/// buffers), whatever file, drive or user they are for: a root daemon that any user can make
/// as large as they like is a daemon one user can take down. Over budget, read-ahead stops
/// reading ahead and writers wait for the share (back-pressure); no file may hold more than
/// a fair share, so one reader cannot starve the rest.
public final class CacheBudget: Sendable {
    /// The daemon's one budget; `netused --cache-memory MiB` sets it before any drive exists.
    public static let shared = CacheBudget(limit: 128 << 20)

    private let limitBytes: Atomic<Int>
    private let used = Atomic(0)
    /// Set once memory was given back since the last trim.
    private let released = Atomic(false)

    public init(limit: Int) {
        limitBytes = Atomic(limit)
    }

    public var limit: Int {
        get { limitBytes.load(ordering: .relaxed) }
        set { limitBytes.store(newValue, ordering: .relaxed) }
    }

    public var inUse: Int { used.load(ordering: .relaxed) }

    /// What one file may hold: an eighth of the budget, and never less than one batch.
    public var perFile: Int { max(limit / 8, 8 << 20) }

    /// Whether `bytes` more fit, in all and for a file that holds `held` already.
    public func hasRoom(for bytes: Int, holding held: Int) -> Bool {
        inUse + bytes <= limit && held + bytes <= perFile
    }

    /// Moves what a file holds from `before` to `after` bytes; returns `after`.
    @discardableResult
    public func account(from before: Int, to after: Int) -> Int {
        if after != before { used.add(after - before, ordering: .relaxed) }
        if after < before { released.store(true, ordering: .relaxed) }
        return after
    }

    /// After load, gives freed memory back to the system: glibc keeps what was freed for the
    /// process otherwise, and so do `DataBuffers` while data flows. Cheap when nothing was
    /// released since the last call.
    public func trimWhenIdle() {
        let buffersReleased = DataBuffers.shared.releaseIfIdle()
        guard inUse == 0, released.exchange(false, ordering: .relaxed) || buffersReleased else { return }
        _ = netuse_malloc_trim()
    }
}
