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
        /// Persistent drives, mounted or not, as the state file has them.
        var records: [DriveLetter: DriveRecord] = [:]
        /// Persistent drives whose share could not be reached: retried in the background.
        var unavailable: Set<DriveLetter> = []
        /// Told to every `list`: a state file that was corrupt and kept aside.
        var notice: String?

        var taken: Set<DriveLetter> { reserved.union(drives.keys).union(unavailable) }
    }

    let root: String
    private let store: DriveRecords?
    private let state = Mutex(State())
    private let probe = ActivityProbe()

    /// How long delete waits for the RELEASE of handles whose processes closed them:
    /// FUSE sends it after close() has returned.
    static let releaseGrace: Duration = .milliseconds(500)

    init(root: String, store: DriveRecords?) {
        self.root = root
        self.store = store
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

    func use(_ request: UseRequest, caller: Caller) throws(NetError) -> DriveStatus {
        var record: DriveRecord?
        if request.persistent {
            guard store != nil else { throw NetError(.invalidParameter, detail: ["This instance keeps no state: nothing can be persistent."]) }
            if case .smb = request.remote, !request.credentials.password.isEmpty, request.credentialsFile == nil {
                throw NetError(.invalidParameter, detail: [
                    "Passwords are never stored: a persistent SMB drive takes its password from --credentials FILE."])
            }
        }
        let settings = try DriveOptions.parse(request.options)
        let letter = try reserve(request.letter)
        defer { state.withLock { _ = $0.reserved.remove(letter) } }
        if request.persistent {
            record = DriveRecord(letter: letter.name, remote: request.remote.description, owner: caller.uid,
                                 ownerGroup: caller.gid, options: request.options,
                                 user: request.credentials.user.isEmpty ? nil : request.credentials.user,
                                 domain: request.credentials.domain.isEmpty ? nil : request.credentials.domain,
                                 credentialsFile: request.credentialsFile)
        }
        let drive = try connect(letter, request.remote, settings: settings, credentials: request.credentials, owner: caller)
        state.withLock { state in
            state.drives[letter] = drive
            if let record { state.records[letter] = record }
        }
        if record != nil { saveRecords() }
        return drive.status()
    }

    /// Mounts a share at a letter the caller has reserved.
    private func connect(_ letter: DriveLetter, _ remote: Remote, settings: DriveOptions, credentials: Credentials,
                         owner: Caller) throws(NetError) -> Drive {
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
            backend.disconnect()
            throw NetError(.deviceNotFunctioning, detail: ["Cannot make the mountpoint \(mountpoint): \(Errno.current)."])
        }
        // The system instance lets every user reach the mount, and serves only the owner (and root).
        let shared = geteuid() == 0
        let redirector = Redirector(backend: backend, options: settings.cache, admittedUID: shared ? owner.uid : nil)
        let mount: FUSEMount
        do {
            mount = try FUSEMount(redirector: redirector, mountpoint: mountpoint,
                                  fileSystemName: "netuse:" + remote.description, allowOther: shared)
        } catch {
            rmdir(mountpoint)
            backend.disconnect()
            throw NetError(.deviceNotFunctioning, detail: ["Cannot mount \(mountpoint): \(error)."])
        }
        MountTable.setReadAhead(mountpoint, kibibytes: settings.readAheadKiB)
        Log.info("\(letter) connected to \(remote) at \(mountpoint) for uid \(owner.uid)")
        return Drive(letter: letter, remote: remote, owner: owner.uid, account: credentials.user,
                     redirector: redirector, mount: mount)
    }

    // MARK: persistence

    /// At start: every recorded drive is connected again; one whose share cannot be reached
    /// is kept as Unavailable and retried.
    func restore() {
        guard let store else { return }
        let records: [DriveRecord]
        do {
            records = try store.load()
        } catch {
            let notice = "The state file \(store.path) was corrupt; it was kept as \(error.keptAs) and no drive was restored."
            Log.error(notice)
            state.withLock { $0.notice = notice }
            return
        }
        for record in records {
            guard let letter = DriveLetter(record.letter) else { continue }
            state.withLock { state in
                state.records[letter] = record
                state.unavailable.insert(letter)
            }
            reconnect(letter, record)
        }
    }

    /// Tries an Unavailable drive once; it stays Unavailable if the share is still away.
    private func reconnect(_ letter: DriveLetter, _ record: DriveRecord) {
        do throws(NetError) {
            let remote = try Remote(parsing: record.remote)
            let settings = try DriveOptions.parse(record.options)
            var credentials = Credentials(user: record.user ?? "", password: "", domain: record.domain ?? "")
            if let file = record.credentialsFile {
                let read = try CredentialsFile.read(file, owner: record.owner)
                credentials = Credentials(account: read.user ?? record.user ?? "", password: read.password ?? "",
                                          domain: read.domain ?? record.domain)
            }
            let owner = Caller(uid: record.owner, gid: record.ownerGroup, pid: 0)
            let drive = try connect(letter, remote, settings: settings, credentials: credentials, owner: owner)
            let kept = state.withLock { state -> Bool in
                // Deleted meanwhile: the record is gone, and so must the drive be.
                guard state.records[letter] == record else { return false }
                state.unavailable.remove(letter)
                state.drives[letter] = drive
                return true
            }
            if !kept {
                try? MountTable.unmount(drive.mount.mountpoint)
                finish(drive)
            }
        } catch {
            Log.warning("\(letter) (\(record.remote)) is unavailable: System error \(error.code.rawValue) \(error.detail.joined(separator: " "))")
        }
    }

    /// Retries the Unavailable drives every `interval`.
    func startRetrying(every interval: Duration) {
        SystemThread.detach { [self] in
            while true {
                let (seconds, attoseconds) = interval.components
                usleep(UInt32(clamping: seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
                let waiting = state.withLock { state in state.unavailable.compactMap { letter in state.records[letter].map { (letter, $0) } } }
                for (letter, record) in waiting { reconnect(letter, record) }
            }
        }
    }

    private func saveRecords() {
        guard let store else { return }
        let records = state.withLock { Array($0.records.values) }
        do {
            try store.save(records)
        } catch {
            Log.error("cannot write \(store.path): \(error)")
        }
    }

    // MARK: delete

    /// DESIGN.md's delete rules. Returns how many deferred ServerOpens were flushed.
    func delete(_ letter: DriveLetter, force: Bool, wait: Duration, caller: Caller) throws(NetError) -> Int {
        if try forgetUnavailable(letter, caller: caller) { return 0 }
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
            forgetRecord(letter)
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
        forgetRecord(letter)
        Log.info("\(letter) deleted; \(flushed) deferred opens flushed")
        return flushed
    }

    /// `net use /delete` forgets a persistent connection too.
    private func forgetRecord(_ letter: DriveLetter) {
        if state.withLock({ $0.records.removeValue(forKey: letter) }) != nil { saveRecords() }
    }

    /// Deleting an Unavailable drive only forgets its record. True when that was the case.
    private func forgetUnavailable(_ letter: DriveLetter, caller: Caller) throws(NetError) -> Bool {
        let forgotten = try state.withLock { (state) throws(NetError) -> Bool in
            guard state.unavailable.contains(letter), let record = state.records[letter] else { return false }
            guard caller.uid == 0 || caller.uid == record.owner else {
                throw NetError(.accessDenied, detail: ["\(letter) belongs to uid \(record.owner)."])
            }
            state.unavailable.remove(letter)
            state.records[letter] = nil
            return true
        }
        if forgotten { saveRecords() }
        return forgotten
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
        let closed = drive.redirector.openHandleCount + drive.redirector.deferredCount
        revokeAndDetach(drive)
        state.withLock { _ = $0.drives.removeValue(forKey: drive.letter) }
        // The session ends when the last process lets go of the detached mount.
        SystemThread.detach {
            drive.mount.close()
            drive.redirector.disconnect()
        }
        return closed
    }

    // MARK: list and refs

    /// The caller's drives; root's `--all` shows everyone's.
    func list(caller: Caller, all: Bool) throws(NetError) -> ([DriveStatus], String?) {
        if all && caller.uid != 0 { throw NetError(.accessDenied, detail: ["Only root may list every user's drives."]) }
        let (mounted, waiting, notice) = state.withLock { state in
            (state.drives.values.map { ($0, state.deleting.contains($0.letter)) },
             state.unavailable.compactMap { letter in state.records[letter].map { (letter, $0) } },
             state.notice)
        }
        var statuses = mounted.filter { all || $0.0.owner == caller.uid }.map { drive, deleting in
            drive.status(deleting ? "Deleting" : nil)
        }
        statuses += waiting.filter { all || $0.1.owner == caller.uid }.map { letter, record in
            DriveStatus(letter: letter.description, remote: record.remote, mountpoint: root + "/" + letter.name,
                        status: "Unavailable", owner: record.owner, openHandles: 0, deferredHandles: 0)
        }
        return (statuses.sorted { $0.letter < $1.letter }, notice)
    }

    func references(_ letter: DriveLetter, caller: Caller) throws(NetError) -> DriveReferences {
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
                // Busy: detach it lazily; what processes still hold fails from now on, and
                // the kernel ends the session when the daemon exits. Writes went through
                // as they came: nothing is lost.
                revokeAndDetach(drive)
                drive.mount.abandon()
                drive.redirector.disconnect()
                Log.warning("\(drive.letter) was busy and is detached: \(error)")
            }
        }
    }

    /// Every request from now on fails with EIO, the kernel drops what it cached of the
    /// files still held (so reads reach the daemon and fail too), and the mount leaves the tree.
    private func revokeAndDetach(_ drive: Drive) {
        let held = drive.redirector.liveHandles.map(\.node)
        drive.redirector.revoke()
        drive.mount.invalidate(nodes: held)
        MountTable.detach(drive.mount.mountpoint)
        rmdir(drive.mount.mountpoint)
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
