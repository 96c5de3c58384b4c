import Glibc
import NetUseCore

/// fcntl and flock locks through the drive, on a share that keeps byte-range locks (SMB):
/// a lock taken here stops another client's conflicting lock or write, and the reverse.
extension Redirector {
    /// F_SETLK and F_SETLKW (with `waiting`), and flock. The owner's locks in the same bytes
    /// are replaced: unlocked on the share, and what of them lies outside the new range
    /// locked again.
    public func setLock(_ handle: UInt64, owner: LockOwner, range: LockRange, _ request: LockRequest, pid: Int32,
                        waiting: LockWait?) throws(Errno) {
        try checkConnected()
        guard let target = handles.withLock({ $0.lockTargets(of: handle) }) else { throw Errno(EBADF) }
        if request != .unlock {
            // Another owner of this drive holds it: no need to ask the share to say no.
            if waiting == nil, locks.withLock({ $0.conflict(with: owner, range, exclusive: request == .exclusive,
                                                            on: target.file.map(\.0)) }) != nil {
                throw Errno(EAGAIN)
            }
            handles.withLock { $0.markLocked(target.serverOpen) }
        }
        let (taken, remainders) = locks.withLock { $0.takeOverlapping(owner, range, on: target.serverOpen) }
        for lock in taken { try? backend.lock(target.backend, lock.range, .unlock, waiting: nil) }
        var granted: [HeldLock] = []
        if request != .unlock {
            do {
                try backend.lock(target.backend, range, request, waiting: waiting)
            } catch {
                // The owner keeps what it held, as far as the share gives it back.
                relock(taken, through: target)
                throw error
            }
            granted.append(HeldLock(owner: owner, range: range, exclusive: request == .exclusive, pid: pid, handle: handle))
        }
        relock(remainders, through: target)
        locks.withLock { $0.add(granted, on: target.serverOpen) }
    }

    private func relock(_ held: [HeldLock], through target: (serverOpen: UInt64, backend: BackendHandle, file: [(UInt64, BackendHandle)])) {
        let kept = held.filter { lock in
            (try? backend.lock(target.backend, lock.range, lock.exclusive ? .exclusive : .shared, waiting: nil)) != nil
        }
        locks.withLock { $0.add(kept, on: target.serverOpen) }
    }

    /// F_GETLK: a lock of another owner of this drive, or one the share refuses to grant
    /// (another client's: its process is not known, and shows as pid 0); nil when free.
    public func testLock(_ handle: UInt64, owner: LockOwner, range: LockRange, exclusive: Bool) throws(Errno) -> HeldLock? {
        try checkConnected()
        guard let target = handles.withLock({ $0.lockTargets(of: handle) }) else { throw Errno(EBADF) }
        let ids = target.file.map(\.0)
        let (conflict, ownOverlap) = locks.withLock { locks in
            (locks.conflict(with: owner, range, exclusive: exclusive, on: ids),
             ids.contains { id in locks.locks(on: id).contains { $0.owner == owner && $0.range.overlaps(range) } })
        }
        if let conflict { return conflict }
        // The share would count the owner's own locks as conflicts: they never are.
        if ownOverlap { return nil }
        func grants(_ exclusive: Bool) throws(Errno) -> Bool {
            do throws(Errno) {
                try backend.lock(target.backend, range, exclusive ? .exclusive : .shared, waiting: nil)
            } catch {
                if error.rawValue == EAGAIN { return false }
                throw error
            }
            try? backend.lock(target.backend, range, .unlock, waiting: nil)
            return true
        }
        if try grants(exclusive) { return nil }
        let sharedOnly = exclusive ? try grants(false) : false
        return HeldLock(owner: LockOwner(id: 0, flock: owner.flock), range: range, exclusive: !sharedOnly, pid: 0)
    }

    /// The kernel let go of a FileHandle: the locks taken through it end (a close of a
    /// descriptor that cannot write sends no FLUSH, where the owner's locks would end).
    func releaseLocks(through handle: UInt64) {
        guard !locks.withLock({ $0.isEmpty }), let target = handles.withLock({ $0.lockTargets(of: handle) }) else { return }
        let taken = locks.withLock { $0.takeAll(through: handle, on: target.serverOpen) }
        for lock in taken { try? backend.lock(target.backend, lock.range, .unlock, waiting: nil) }
    }

    /// A close(2) of any descriptor of the file ends its process's POSIX locks on it; the
    /// last close of an open file description ends its flock.
    public func releaseLocks(_ handle: UInt64, owner: LockOwner) {
        guard !locks.withLock({ $0.isEmpty }), let target = handles.withLock({ $0.lockTargets(of: handle) }) else { return }
        for (serverOpen, backendHandle) in target.file {
            let (taken, _) = locks.withLock { $0.takeOverlapping(owner, .wholeFile, on: serverOpen) }
            for lock in taken { try? backend.lock(backendHandle, lock.range, .unlock, waiting: nil) }
        }
    }
}
