import Backends
import FUSEBridge
import Glibc
import NetUseCore
import Redirector
import Synchronization

/// The drives of one daemon instance. A letter is reserved while its drive is being
/// connected, and a drive is marked while it is being deleted, so that slow work happens
/// outside the lock and no second request can take the letter meanwhile.
final class DriveManager: Sendable {
    private struct State {
        var drives: [DriveLetter: Drive] = [:]
        var reserved: Set<DriveLetter> = []
        var deleting: Set<DriveLetter> = []

        var taken: Set<DriveLetter> { reserved.union(drives.keys) }
    }

    let root: String
    private let state = Mutex(State())
    private let probe = ActivityProbe()

    /// How long delete waits for the RELEASE of handles whose processes closed them:
    /// FUSE sends it after close() has returned.
    static let releaseGrace: Duration = .milliseconds(500)

    init(root: String) {
        self.root = root
    }

    /// Closes deferred ServerOpens whose closetimeo ran out, ten times a second.
    func startScavenger() {
        SystemThread.detach { [self] in
            while true {
                usleep(100_000)
                for drive in state.withLock({ Array($0.drives.values) }) { drive.redirector.expireDeferred() }
            }
        }
    }

    // MARK: use

    func use(_ choice: LetterChoice, remote: Remote, options: [String: String], credentials: Credentials,
             caller: UnixSocket.Peer) throws(NetError) -> DriveStatus {
        let settings = try DriveOptions.parse(options)
        let letter = try reserve(choice)
        defer { state.withLock { _ = $0.reserved.remove(letter) } }

        let owner = Caller(uid: caller.uid, gid: caller.gid, pid: caller.pid)
        let backend: any ShareBackend
        switch remote {
        case .local(let path):
            backend = try LocalShare(directory: path, caller: owner)
        case .smb(let location):
            try checkOneUserPerServer(location, credentials)
            backend = try SMBShare(connection: SMBConnection(url: location.url, user: credentials.user,
                                                             password: credentials.password, domain: credentials.domain,
                                                             timeout: settings.timeout),
                                   owner: owner, workers: settings.workers)
        }
        let mountpoint = root + "/" + letter.name
        if mkdir(mountpoint, 0o755) != 0 && errno != EEXIST {
            throw NetError(.deviceNotFunctioning, detail: ["Cannot make the mountpoint \(mountpoint): \(Errno.current)."])
        }
        let redirector = Redirector(backend: backend, options: settings.cache)
        let mount: FUSEMount
        do {
            mount = try FUSEMount(redirector: redirector, mountpoint: mountpoint,
                                  fileSystemName: "netuse:" + remote.description, allowOther: geteuid() == 0)
        } catch {
            rmdir(mountpoint)
            backend.disconnect()
            throw NetError(.deviceNotFunctioning, detail: ["Cannot mount \(mountpoint): \(error)."])
        }
        MountTable.setReadAhead(mountpoint, kibibytes: settings.readAheadKiB)
        let drive = Drive(letter: letter, remote: remote, owner: caller.uid, account: credentials.user,
                          redirector: redirector, mount: mount)
        state.withLock { $0.drives[letter] = drive }
        Log.info("\(letter) connected to \(remote) at \(mountpoint) for uid \(caller.uid)")
        return drive.status()
    }

    // MARK: delete

    /// DESIGN.md's delete rules. Returns how many deferred ServerOpens were flushed.
    func delete(_ letter: DriveLetter, force: Bool, wait: Duration, caller: UnixSocket.Peer) throws(NetError) -> Int {
        let drive = try state.withLock { (state) throws(NetError) -> Drive in
            guard let drive = state.drives[letter] else { throw NetError(.useNotFound, detail: ["\(letter) is not connected."]) }
            guard drive.allows(caller.uid) else { throw NetError(.accessDenied, detail: ["\(letter) belongs to uid \(drive.owner)."]) }
            guard state.deleting.insert(letter).inserted else {
                throw NetError(.deviceInUse, detail: ["\(letter) is already being deleted."])
            }
            return drive
        }
        defer { state.withLock { _ = $0.deleting.remove(letter) } }

        if force {
            let closed = forceOff(drive)
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
        state.withLock { _ = $0.drives.removeValue(forKey: letter) }
        finish(drive)
        Log.info("\(letter) deleted; \(flushed) deferred opens flushed")
        return flushed
    }

    /// Why the drive may not be deleted now, or nil when nothing active uses it.
    /// Open files and maps → 2401; only a cwd, root or executable → 2404. A FileHandle that
    /// no process is seen to hold is a RELEASE still on its way (FUSE sends it after
    /// close() has returned): it gets a short grace before it counts as an open file.
    private func refusal(_ drive: Drive) -> NetError? {
        let mountpoint = drive.mount.mountpoint
        let graceEnds = MonotonicClock.now() + Self.releaseGrace
        while true {
            let uses = probe.scan(mountpoint: mountpoint)
            let active = uses.filter { $0.how != .uninspectable }
            let detail = uses.map(\.description)
            if active.contains(where: \.holdsFiles) { return NetError(.openFiles, detail: detail) }
            // The kernel's own open of an executable shows up as a FileHandle too.
            let seen = Set(active.compactMap(\.path))
            let pending = drive.redirector.liveHandles.filter { !seen.contains(mountpoint + "/" + drive.redirector.displayPath(of: $0.node)) }
            if pending.isEmpty {
                return active.isEmpty ? nil : NetError(.deviceInUse, detail: detail)
            }
            if MonotonicClock.now() >= graceEnds {
                return NetError(.openFiles, detail: detail + pending.map { handle in
                    "pid \(handle.opener.pid) (\(probe.command(of: handle.opener.pid))): open \(mountpoint)/"
                        + "\(drive.redirector.displayPath(of: handle.node)) (the kernel has not released it)"
                })
            }
            usleep(2_000)
        }
    }

    /// `net use /d /y`: the mount leaves the tree at once, every handle on the share is
    /// closed, and what processes still hold answers EIO until they let go.
    private func forceOff(_ drive: Drive) -> Int {
        let held = drive.redirector.liveHandles.map(\.node)
        let closed = drive.redirector.openHandleCount + drive.redirector.deferredCount
        drive.redirector.revoke()
        drive.mount.invalidate(nodes: held)
        MountTable.detach(drive.mount.mountpoint)
        state.withLock { _ = $0.drives.removeValue(forKey: drive.letter) }
        rmdir(drive.mount.mountpoint)
        // The session ends when the last process lets go of the detached mount.
        SystemThread.detach {
            drive.mount.close()
            drive.redirector.disconnect()
        }
        return closed
    }

    // MARK: list and refs

    func list(caller: UnixSocket.Peer) -> [DriveStatus] {
        state.withLock { state in
            state.drives.values.sorted { $0.letter < $1.letter }.map { ($0, state.deleting.contains($0.letter)) }
        }.map { drive, deleting in drive.status(deleting ? "Deleting" : nil) }
    }

    func references(_ letter: DriveLetter, caller: UnixSocket.Peer) throws(NetError) -> DriveReferences {
        let drive = try state.withLock { (state) throws(NetError) -> Drive in
            guard let drive = state.drives[letter] else { throw NetError(.useNotFound, detail: ["\(letter) is not connected."]) }
            guard drive.allows(caller.uid) else { throw NetError(.accessDenied, detail: ["\(letter) belongs to uid \(drive.owner)."]) }
            return drive
        }
        let cache = drive.redirector.references
        return DriveReferences(drive: drive.status(), serverOpens: cache.serverOpens, counters: cache.counters,
                               processes: probe.scan(mountpoint: drive.mount.mountpoint))
    }

    // MARK: stop

    /// Takes every drive down for a daemon stop. A drive still in use is detached from the
    /// tree: its users see it vanish, and the kernel ends its session when the daemon exits.
    func shutdown() {
        let drives = state.withLock { state in
            defer { state.drives.removeAll() }
            return Array(state.drives.values)
        }
        for drive in drives {
            _ = drive.redirector.flushDeferred()
            do {
                try MountTable.unmount(drive.mount.mountpoint)
                finish(drive)
                Log.info("\(drive.letter) unmounted")
            } catch {
                MountTable.detach(drive.mount.mountpoint)
                drive.mount.abandon()
                drive.redirector.disconnect()
                rmdir(drive.mount.mountpoint)
                Log.warning("\(drive.letter) was busy and is detached: \(error)")
            }
        }
    }

    /// After a successful unmount: the loop has ended or is ending; let go of everything.
    private func finish(_ drive: Drive) {
        drive.mount.close()
        drive.redirector.disconnect()
        rmdir(drive.mount.mountpoint)
    }

    /// Windows allows one user name per server and session: a second drive to the same
    /// server under another name is 1219.
    private func checkOneUserPerServer(_ location: SMBLocation, _ credentials: Credentials) throws(NetError) {
        let others = state.withLock { state in
            state.drives.values.compactMap { drive -> String? in
                guard case .smb(let other) = drive.remote, other.serverKey == location.serverKey else { return nil }
                return drive.account
            }
        }
        if let other = others.first(where: { $0.lowercased() != credentials.user.lowercased() }) {
            throw NetError(.sessionCredentialConflict, detail: [
                "\(location.server) is already connected as \(other.isEmpty ? "guest" : other)."])
        }
    }

    private func reserve(_ choice: LetterChoice) throws(NetError) -> DriveLetter {
        try state.withLock { (state) throws(NetError) -> DriveLetter in
            let letter: DriveLetter
            switch choice {
            case .letter(let wanted):
                guard !state.taken.contains(wanted) else {
                    throw NetError(.alreadyAssigned, detail: ["\(wanted) is already connected."])
                }
                letter = wanted
            case .nextFree:
                guard let free = DriveLetter.nextFree(excluding: state.taken) else {
                    throw NetError(.alreadyAssigned, detail: ["Every letter from A: to Z: is in use."])
                }
                letter = free
            }
            state.reserved.insert(letter)
            return letter
        }
    }
}
