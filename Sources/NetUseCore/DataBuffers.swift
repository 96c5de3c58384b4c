import Synchronization

/// Byte arrays of file data on its way (a megabyte of a read's answer, of a write's frame),
/// kept for the next one. A fresh megabyte costs a page fault for every 4 KiB of it (glibc
/// maps buffers this large, and unmaps them when freed, so that memory goes back): on a
/// sequential read that measured at twice the CPU of everything else the daemon does. A few
/// are kept, a bounded number of bytes, and given back when the daemon is idle
/// (`CacheBudget.trimWhenIdle`).
public final class DataBuffers: Sendable {
    public static let shared = DataBuffers()

    /// Smaller arrays are cheap enough to make afresh.
    public static let smallest = 256 << 10
    static let mostKept = 8
    static let mostBytesKept = 24 << 20

    private let kept = Mutex<[[UInt8]]>([])
    /// Set by every `take` of a large array since the scavenger last looked.
    private let touched = Atomic(false)

    public init() {}

    /// An array of `count` bytes, whose contents are whatever they were: the caller writes
    /// every byte before it reads one.
    public func take(_ count: Int) -> [UInt8] {
        guard count >= Self.smallest, var array = reuse(atLeast: count) else { return [UInt8](repeating: 0, count: count) }
        if array.count > count {
            array.removeLast(array.count - count)
        }
        while array.count < count {
            array.append(contentsOf: Self.zeros[..<min(Self.zeros.count, count - array.count)])
        }
        return array
    }

    /// What lengthens a kept array: appended from contiguous storage it is a copy, where
    /// `repeatElement` went element by element in a debug build, a third of a second per
    /// megabyte (the tests' build: a mapped write's page-ins waited on the reader thread).
    private static let zeros = [UInt8](repeating: 0, count: 64 << 10)

    /// An empty array with room for `capacity` bytes, to append to.
    public func take(capacity: Int) -> [UInt8] {
        guard capacity >= Self.smallest, var array = reuse(atLeast: capacity) else {
            var array: [UInt8] = []
            array.reserveCapacity(capacity)
            return array
        }
        array.removeAll(keepingCapacity: true)
        return array
    }

    private func reuse(atLeast capacity: Int) -> [UInt8]? {
        if !touched.load(ordering: .relaxed) { touched.store(true, ordering: .relaxed) }
        return kept.withLock { kept in
            guard let index = kept.firstIndex(where: { $0.capacity >= capacity }) else { return nil }
            return kept.remove(at: index)
        }
    }

    /// Keeps `array` for the next `take`, when it is worth keeping and room is left. Its
    /// storage is reused only if nobody else holds it (Swift's copy on write sees to that).
    public func give(_ array: [UInt8]) {
        guard array.capacity >= Self.smallest else { return }
        kept.withLock { kept in
            guard kept.count < Self.mostKept,
                  kept.reduce(array.capacity, { $0 + $1.capacity }) <= Self.mostBytesKept else { return }
            kept.append(array)
        }
    }

    /// Gives every kept array back to the system when none was taken since the last call:
    /// the flow of data has stopped. True when something was given back.
    public func releaseIfIdle() -> Bool {
        if touched.exchange(false, ordering: .relaxed) { return false }
        let gone = kept.withLock { kept -> [[UInt8]] in
            defer { kept = [] }
            return kept
        }
        return !gone.isEmpty
    }

    public var bytesKept: Int { kept.withLock { $0.reduce(0) { $0 + $1.capacity } } }
}
