import Synchronization

/// Bytes [start, end) of a file; `end` UInt64.max reaches past any end of file.
public struct LockRange: Hashable, Sendable {
    public var start: UInt64
    public var end: UInt64

    public init(start: UInt64, end: UInt64) {
        self.start = start
        self.end = end
    }

    public static let wholeFile = LockRange(start: 0, end: .max)

    public var length: UInt64 { end - start }

    func overlaps(_ other: LockRange) -> Bool { start < other.end && other.start < end }

    /// What is left of this range outside `other`: none, one or two pieces.
    func minus(_ other: LockRange) -> [LockRange] {
        guard overlaps(other) else { return [self] }
        var pieces: [LockRange] = []
        if start < other.start { pieces.append(LockRange(start: start, end: other.start)) }
        if other.end < end { pieces.append(LockRange(start: other.end, end: end)) }
        return pieces
    }
}

/// Who holds a lock, as the kernel names it: a process's POSIX locks (fcntl) and an open
/// file description's BSD locks (flock) are separate owners even with the same number.
public struct LockOwner: Hashable, Sendable {
    public let id: UInt64
    public let flock: Bool

    public init(id: UInt64, flock: Bool) {
        self.id = id
        self.flock = flock
    }
}

public enum LockRequest: Sendable {
    case shared, exclusive, unlock
}

/// A lock the drive holds on the share, through one ServerOpen.
public struct HeldLock: Equatable, Sendable {
    public let owner: LockOwner
    public let range: LockRange
    public let exclusive: Bool
    /// The process that took it, for F_GETLK.
    public let pid: Int32
    /// The FileHandle it was taken through: its release ends the lock, where no FLUSH came
    /// to (a descriptor that cannot write closes without one).
    public var handle: UInt64 = 0
}

/// A lock request waiting for the share: an interrupt (a signal to the waiting process)
/// makes it give up.
public final class LockWait: Sendable {
    private let state = Mutex<(interrupted: Bool, giveUp: (@Sendable () -> Void)?)>((false, nil))

    public init() {}

    /// How the waiting request gives up; at once when the interrupt came first.
    public func onInterrupt(_ giveUp: @escaping @Sendable () -> Void) {
        let now = state.withLock { state in
            state.giveUp = giveUp
            return state.interrupted
        }
        if now { giveUp() }
    }

    public func interrupt() {
        let giveUp = state.withLock { state in
            state.interrupted = true
            return state.giveUp
        }
        giveUp?()
    }
}

/// The locks a drive holds, by ServerOpen. SMB locks belong to a handle and are unlocked
/// range by range as they were taken; POSIX locks belong to an owner, replace what the
/// owner held in the same bytes, and split. This keeps the owners' view and says what the
/// share must be told for each change.
struct ByteRangeLocks {
    private var held: [UInt64: [HeldLock]] = [:]

    func locks(on serverOpen: UInt64) -> [HeldLock] { held[serverOpen] ?? [] }

    /// No lock is held through the drive: what a close checks before anything else.
    var isEmpty: Bool { held.isEmpty }

    /// Takes out the owner's locks overlapping `range`, for the share to unlock; what of
    /// them lies outside `range` is to be locked again (`remainders`).
    mutating func takeOverlapping(_ owner: LockOwner, _ range: LockRange, on serverOpen: UInt64)
        -> (taken: [HeldLock], remainders: [HeldLock])
    {
        let mine = locks(on: serverOpen)
        let taken = mine.filter { $0.owner == owner && $0.range.overlaps(range) }
        guard !taken.isEmpty else { return ([], []) }
        let left = mine.filter { !taken.contains($0) }
        held[serverOpen] = left.isEmpty ? nil : left
        let remainders = taken.flatMap { lock in
            lock.range.minus(range).map { HeldLock(owner: owner, range: $0, exclusive: lock.exclusive, pid: lock.pid, handle: lock.handle) }
        }
        return (taken, remainders)
    }

    mutating func add(_ locks: [HeldLock], on serverOpen: UInt64) {
        guard !locks.isEmpty else { return }
        held[serverOpen, default: []] += locks
    }

    /// Takes out every lock taken through a FileHandle, for the share to unlock.
    mutating func takeAll(through handle: UInt64, on serverOpen: UInt64) -> [HeldLock] {
        guard let mine = held[serverOpen], mine.contains(where: { $0.handle == handle }) else { return [] }
        let left = mine.filter { $0.handle != handle }
        held[serverOpen] = left.isEmpty ? nil : left
        return mine.filter { $0.handle == handle }
    }

    /// Another owner's lock on any of the ServerOpens that conflicts with the one asked for.
    func conflict(with owner: LockOwner, _ range: LockRange, exclusive: Bool, on serverOpens: [UInt64]) -> HeldLock? {
        for id in serverOpens {
            if let lock = locks(on: id).first(where: { $0.owner != owner && $0.range.overlaps(range) && (exclusive || $0.exclusive) }) {
                return lock
            }
        }
        return nil
    }
}
