import Backends
import FUSEBridge
import Glibc
import NetUseCore
import Redirector
import Synchronization

/// Taking drives down: `net use /delete` by DeletePolicy's rules, by force, and at a stop.
extension DriveManager {
    /// `net use /delete`, by DeletePolicy's rules. Returns how many deferred ServerOpens were flushed.
    func delete(_ letter: DriveLetter, force: Bool, wait: Duration, caller: Caller, owner: uid_t? = nil) throws(NetError) -> Int {
        let key = try state.withLock { (state) throws(NetError) in try state.key(letter, caller: caller, owner: owner) }
        if try forgetUnavailable(key, caller: caller) { return 0 }
        let drive = try state.withLock { (state) throws(NetError) -> Drive in
            guard let drive = state.drives[key] else { throw NetError(.useNotFound, detail: ["\(letter) is not connected."]) }
            guard drive.allows(caller.uid) else { throw NetError(.accessDenied, detail: ["\(letter) belongs to \(drive.ownerName)."]) }
            guard state.deleting.insert(key).inserted else {
                throw NetError(.deviceInUse, detail: ["\(letter) is already being deleted."])
            }
            return drive
        }
        defer { state.withLock { _ = $0.deleting.remove(key) } }

        if force {
            let closed = forceOff(drive)
            forgetRecord(key)
            Log.info("\(letter) deleted by force; \(closed) handles on the share closed")
            return closed
        }
        let deadline = MonotonicClock.now() + wait
        while let refusal = refusal(drive) {
            guard MonotonicClock.now() < deadline else { throw refusal }
            usleep(100_000)
        }
        // Cached references are never active: they go before the unmount, data first
        // (writes went through as they came), then the remote close.
        let flushed = drive.redirector.flushDeferred()
        do throws(Errno) {
            try MountTable.unmount(drive.mount.mountpoint)
        } catch {
            if error.rawValue == EBUSY {
                throw NetError(.deviceInUse, detail: ["The kernel refused to unmount \(drive.mount.mountpoint): it is in use."]
                               + probe.scan(mountpoint: drive.mount.mountpoint).map(\.description))
            }
            throw NetError(.deviceNotFunctioning, detail: ["Cannot unmount \(drive.mount.mountpoint): \(error)."])
        }
        state.withLock { _ = $0.drives.removeValue(forKey: key) }
        finish(drive)
        forgetRecord(key)
        Log.info("\(letter) deleted; \(flushed) deferred opens flushed")
        return flushed
    }

    /// `net use /delete` forgets a persistent connection too.
    func forgetRecord(_ key: DriveKey) {
        if state.withLock({ $0.records.removeValue(forKey: key) }) != nil { saveRecords() }
    }

    /// Deleting an Unavailable drive only forgets its record. True when that was the case.
    func forgetUnavailable(_ key: DriveKey, caller: Caller) throws(NetError) -> Bool {
        let forgotten = try state.withLock { (state) throws(NetError) -> Bool in
            guard state.unavailable.contains(key), let record = state.records[key] else { return false }
            guard caller.uid == 0 || (key.owner != nil && caller.uid == record.owner) else {
                throw NetError(.accessDenied, detail: ["\(key.letter) belongs to \(key.owner.map { "uid \($0)" } ?? "every user")."])
            }
            state.unavailable.remove(key)
            state.restoring.remove(key)
            state.records[key] = nil
            return true
        }
        if forgotten { saveRecords() }
        return forgotten
    }

    /// Why the drive may not be deleted now (DeletePolicy's rules), or nil when nothing
    /// active uses it.
    func refusal(_ drive: Drive) -> NetError? {
        let mountpoint = drive.mount.mountpoint
        let graceEnds = MonotonicClock.now() + DeletePolicy.grace
        while true {
            let held = drive.redirector.liveHandles.map { handle in
                let path = mountpoint + "/" + drive.redirector.displayPath(of: handle.node)
                return DeletePolicy.Held(path: path, description:
                    "pid \(handle.opener.pid) (\(probe.command(of: handle.opener.pid))): open \(path) (the kernel has not released it)")
            }
            switch DeletePolicy.decide(uses: probe.scan(mountpoint: mountpoint), held: held, now: MonotonicClock.now(),
                                       graceEnds: graceEnds) {
            case .proceed: return nil
            case .refuse(let error): return error
            case .waitForReleases: usleep(2_000)
            }
        }
    }

    /// `net use /d /y`: the mount leaves the tree at once and what processes still hold
    /// answers EIO until they let go. Every handle on the share is closed in the background,
    /// so that a hung server holds up nobody (its requests end within the drive's timeout).
    func forceOff(_ drive: Drive) -> Int {
        let closed = drive.redirector.openHandleCount + drive.redirector.deferredCount
        revokeAndDetach(drive)
        state.withLock { _ = $0.drives.removeValue(forKey: drive.key) }
        SystemThread.detach {
            drive.disconnect()
            // The session ends when the last process lets go of the detached mount.
            drive.mount.close()
        }
        return closed
    }

    /// Takes every drive down for a daemon stop, all at once. Each leaves the tree first
    /// (unmounted, or detached when still in use: its users see it vanish, and the kernel
    /// ends its session when the daemon exits); then its handles on the share are closed.
    /// Data is on the share already (closed and fsync'ed files were flushed then), so a
    /// hung server may keep its handles past the stop, but not the stop itself: it returns
    /// once every drive is done or `timeout` (the longest drive's) and a little more passed.
    func shutdown() {
        let drives = state.withLock { state in
            defer { state.drives.removeAll() }
            return Array(state.drives.values)
        }
        let pending = Atomic(drives.count)
        for drive in drives {
            SystemThread.detach { [self] in
                stop(drive)
                pending.subtract(1, ordering: .releasing)
            }
        }
        let deadline = MonotonicClock.now() + (drives.map(\.timeout).max() ?? .zero) + .seconds(2)
        while pending.load(ordering: .acquiring) > 0 && MonotonicClock.now() < deadline { usleep(10_000) }
        if pending.load(ordering: .acquiring) > 0 {
            Log.warning("\(pending.load(ordering: .acquiring)) drives' shares did not answer in time; their handles are abandoned")
        }
    }

    func stop(_ drive: Drive) {
        do {
            try MountTable.unmount(drive.mount.mountpoint)
            Log.info("\(drive.letter) unmounted")
            finish(drive)
        } catch {
            revokeAndDetach(drive)
            drive.mount.abandon()
            Log.warning("\(drive.letter) was busy and is detached: \(error)")
            drive.disconnect()
        }
    }

    /// Every request from now on fails with EIO, the kernel drops what it cached of the
    /// files still held (so reads reach the daemon and fail too), and the mount leaves the tree.
    func revokeAndDetach(_ drive: Drive) {
        let held = drive.redirector.liveHandles.map(\.node)
        drive.redirector.revoke()
        drive.mount.invalidate(nodes: held)
        MountTable.detach(drive.mount.mountpoint)
        rmdir(drive.mount.mountpoint)
    }

    /// After a successful unmount: the loop has ended or is ending; let go of everything.
    func finish(_ drive: Drive) {
        drive.mount.close()
        drive.disconnect()
        rmdir(drive.mount.mountpoint)
    }
}
