import Backends
import FUSEBridge
import Glibc
import NetUseCore
import Redirector
import Synchronization

/// The drives of one daemon instance. As Windows keeps drive letters per logon session,
/// every user has letters of their own (`ROOT/UID/q`); a global drive (`ROOT/global/q`)
/// takes its letter from everyone. A letter is reserved while its drive is being connected,
/// and a drive is marked while it is being deleted, so that slow work happens outside the
/// lock and no second request can take the letter meanwhile.
final class DriveManager: Sendable {
    private struct State {
        var drives: [DriveKey: Drive] = [:]
        var reserved: Set<DriveKey> = []
        var deleting: Set<DriveKey> = []
        /// Persistent drives, mounted or not, as the state file has them.
        var records: [DriveKey: DriveRecord] = [:]
        /// Persistent drives whose share could not be reached: retried in the background.
        var unavailable: Set<DriveKey> = []
        /// Persistent drives not yet tried since the daemon started.
        var restoring: Set<DriveKey> = []
        /// Told to every `list`: a state file that was corrupt and kept aside.
        var notice: String?

        var allTaken: Set<DriveKey> { reserved.union(drives.keys).union(unavailable) }

        /// Which drive a delete or refs names: another user's only for root, else the
        /// caller's own letter, else the global one.
        func key(_ letter: DriveLetter, caller: Caller, owner: uid_t?) throws(NetError) -> DriveKey {
            if let owner {
                guard caller.uid == 0 else { throw NetError(.accessDenied, detail: ["Only root may name another user's drive."]) }
                return DriveKey(owner: owner, letter: letter)
            }
            let own = DriveKey(owner: caller.uid, letter: letter)
            let global = DriveKey(owner: nil, letter: letter)
            if drives[own] == nil && records[own] == nil && (drives[global] != nil || records[global] != nil) { return global }
            return own
        }

        /// The letters a user cannot take: their own and the global ones. A global drive
        /// needs a letter nobody has.
        func taken(by owner: uid_t?) -> Set<DriveLetter> {
            Set(allTaken.filter { owner == nil || $0.owner == nil || $0.owner == owner }.map(\.letter))
        }
    }

    let root: String
    private let store: DriveRecords?
    private let kinds = ShareKinds.standard
    private let state = Mutex(State())
    private let probe = ActivityProbe()

    init(root: String, store: DriveRecords?) {
        self.root = root
        self.store = store
    }

    /// Where a drive is mounted: a folder per user (and one for global drives) that the
    /// daemon makes and owns, so that no user can put a symlink where a mount will go.
    func mountpoint(of key: DriveKey) -> String {
        root + "/" + key.folder + "/" + key.letter.name
    }

    /// Closes deferred ServerOpens whose closetimeo ran out, ten times a second, and gives
    /// memory back to the system once the caches let go of it.
    func startScavenger() {
        SystemThread.detach { [self] in
            while true {
                usleep(100_000)
                for drive in state.withLock({ Array($0.drives.values) }) { drive.redirector.expireDeferred() }
                CacheBudget.shared.trimWhenIdle()
            }
        }
    }

    // MARK: use

    func use(_ request: UseRequest, caller: Caller) throws(NetError) -> DriveStatus {
        var record: DriveRecord?
        let identity = Identity.of(caller)
        if request.global {
            guard caller.uid == 0, geteuid() == 0 else {
                throw NetError(.accessDenied, detail: ["Only root may connect a global drive, on the system instance."])
            }
        }
        if request.persistent {
            guard store != nil else { throw NetError(.invalidParameter, detail: ["This instance keeps no state: nothing can be persistent."]) }
            if !request.credentials.password.isEmpty, request.credentialsFile == nil {
                throw NetError(.invalidParameter, detail: [
                    "Passwords are never stored: a persistent drive takes its password from --credentials FILE."])
            }
            // Read now as the caller, as it will be read at every start: a file the caller
            // may not read is never read for them.
            if let file = request.credentialsFile { _ = try CredentialsFile.read(file, owner: identity) }
        }
        let (kind, remote) = try kinds.parse(request.remote)
        var credentials = request.credentials
        if credentials.user.isEmpty, let user = remote.user {
            credentials = Credentials(account: user, password: credentials.password,
                                      domain: credentials.domain.isEmpty ? nil : credentials.domain)
        }
        let settings = try DriveOptions.parse(request.options)
        let key = try reserve(request.letter, owner: request.global ? nil : caller.uid)
        defer { state.withLock { _ = $0.reserved.remove(key) } }
        if request.persistent {
            record = DriveRecord(letter: key.letter.name, remote: remote.description, owner: caller.uid,
                                 ownerGroup: caller.gid, options: request.options,
                                 user: credentials.user.isEmpty ? nil : credentials.user,
                                 domain: credentials.domain.isEmpty ? nil : credentials.domain,
                                 credentialsFile: request.credentialsFile, global: request.global ? true : nil)
        }
        let drive = try connect(key, kind, remote, settings: settings, credentials: credentials,
                                owner: caller, identity: identity)
        state.withLock { state in
            state.drives[key] = drive
            if let record { state.records[key] = record }
        }
        if record != nil { saveRecords() }
        return drive.status()
    }

    /// Mounts a share at a letter the caller has reserved.
    private func connect(_ key: DriveKey, _ kind: any ShareKind, _ remote: Remote, settings: DriveOptions,
                         credentials: Credentials, owner: Caller, identity: Identity) throws(NetError) -> Drive {
        let letter = key.letter
        if let server = remote.server { try checkOneUserPerServer(server, credentials, owner: key.owner) }
        let backend = try kind.connect(remote, ConnectRequest(owner: owner, identity: identity, credentials: credentials,
                                                              timeout: settings.timeout, workers: settings.workers))
        let mountpoint = mountpoint(of: key)
        do throws(Errno) {
            try makeMountpoint(mountpoint)
        } catch {
            backend.disconnect()
            throw NetError(.deviceNotFunctioning, detail: ["Cannot make the mountpoint \(mountpoint): \(error)."])
        }
        // The system instance lets every user reach the mount, and serves only the owner (and
        // root), or everyone for a global drive.
        let shared = geteuid() == 0
        let redirector = Redirector(backend: backend, options: settings.cache,
                                    admittedUID: shared && key.owner != nil ? owner.uid : nil)
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
        Log.info("\(letter) connected to \(remote) at \(mountpoint) for \(key.owner.map { "uid \($0)" } ?? "every user")")
        return Drive(key: key, remote: remote, owner: owner.uid, account: credentials.user,
                     redirector: redirector, mount: mount, timeout: settings.timeout)
    }

    /// The user's folder and the mountpoint in it, both the daemon's own. Something else
    /// at either path (which only the daemon can write) is refused, never followed.
    private func makeMountpoint(_ mountpoint: String) throws(Errno) {
        let folder = String(mountpoint[..<mountpoint.lastIndex(of: "/")!])
        for path in [folder, mountpoint] {
            if mkdir(path, 0o755) != 0 && errno != EEXIST { throw Errno.current }
            var attributes = stat()
            _ = try systemCall { lstat(path, &attributes) }
            guard attributes.st_mode & S_IFMT == S_IFDIR, attributes.st_uid == geteuid() else { throw Errno(ENOTDIR) }
        }
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
        let keyed = records.compactMap { record in record.key.map { ($0, record) } }
        state.withLock { state in
            for (key, record) in keyed {
                state.records[key] = record
                state.unavailable.insert(key)
                state.restoring.insert(key)
            }
        }
        for (key, record) in keyed {
            reconnect(key, record)
            state.withLock { _ = $0.restoring.remove(key) }
        }
    }

    /// Tries an Unavailable drive once; it stays Unavailable if the share is still away.
    private func reconnect(_ key: DriveKey, _ record: DriveRecord) {
        let letter = key.letter
        do throws(NetError) {
            let (kind, remote) = try kinds.parse(record.remote)
            let settings = try DriveOptions.parse(record.options)
            // Nobody is waiting on the socket: the owner acts with what a fresh login gets.
            let identity = Identity.ofUser(uid: record.owner, gid: record.ownerGroup)
            var credentials = Credentials(user: record.user ?? "", password: "", domain: record.domain ?? "")
            if let file = record.credentialsFile {
                let read = try CredentialsFile.read(file, owner: identity)
                credentials = Credentials(account: read.user ?? record.user ?? "", password: read.password ?? "",
                                          domain: read.domain ?? record.domain)
            }
            let owner = Caller(uid: record.owner, gid: record.ownerGroup, pid: 0)
            let drive = try connect(key, kind, remote, settings: settings, credentials: credentials, owner: owner, identity: identity)
            let kept = state.withLock { state -> Bool in
                // Deleted meanwhile: the record is gone, and so must the drive be.
                guard state.records[key] == record else { return false }
                state.unavailable.remove(key)
                state.drives[key] = drive
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
                usleep(UInt32(clamping: interval.microseconds))
                let waiting = state.withLock { state in
                    state.unavailable.subtracting(state.restoring).compactMap { key in state.records[key].map { (key, $0) } }
                }
                for (key, record) in waiting { reconnect(key, record) }
            }
        }
    }

    private func saveRecords() {
        guard let store else { return }
        do {
            try store.save { state.withLock { Array($0.records.values) } }
        } catch {
            Log.error("cannot write \(store.path): \(error)")
        }
    }

    // MARK: delete

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
    private func forgetRecord(_ key: DriveKey) {
        if state.withLock({ $0.records.removeValue(forKey: key) }) != nil { saveRecords() }
    }

    /// Deleting an Unavailable drive only forgets its record. True when that was the case.
    private func forgetUnavailable(_ key: DriveKey, caller: Caller) throws(NetError) -> Bool {
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
    private func refusal(_ drive: Drive) -> NetError? {
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
    private func forceOff(_ drive: Drive) -> Int {
        let closed = drive.redirector.openHandleCount + drive.redirector.deferredCount
        revokeAndDetach(drive)
        state.withLock { _ = $0.drives.removeValue(forKey: drive.key) }
        SystemThread.detach {
            drive.redirector.disconnect()
            // The session ends when the last process lets go of the detached mount.
            drive.mount.close()
        }
        return closed
    }

    // MARK: list and refs

    /// The caller's drives and the global ones; root's `--all` shows everyone's.
    func list(caller: Caller, all: Bool) throws(NetError) -> ([DriveStatus], String?) {
        if all && caller.uid != 0 { throw NetError(.accessDenied, detail: ["Only root may list every user's drives."]) }
        let (mounted, waiting, notice) = state.withLock { state in
            (state.drives.values.map { ($0, state.deleting.contains($0.key)) },
             state.unavailable.compactMap { key in state.records[key].map { (key, $0, state.restoring.contains(key)) } },
             state.notice)
        }
        let visible = { (key: DriveKey) in all || key.owner == nil || key.owner == caller.uid }
        var statuses = mounted.filter { visible($0.0.key) }.map { drive, deleting in
            drive.status(deleting ? "Deleting" : nil)
        }
        statuses += waiting.filter { visible($0.0) }.map { key, record, restoring in
            DriveStatus(letter: key.letter.description, remote: record.remote, mountpoint: mountpoint(of: key),
                        status: restoring ? "Restoring" : "Unavailable", owner: record.owner, openHandles: 0,
                        deferredHandles: 0, global: key.owner == nil ? true : nil)
        }
        return (statuses.sorted { ($0.letter, $0.owner) < ($1.letter, $1.owner) }, notice)
    }

    func references(_ letter: DriveLetter, caller: Caller, owner: uid_t? = nil) throws(NetError) -> DriveReferences {
        let drive = try state.withLock { (state) throws(NetError) -> Drive in
            let key = try state.key(letter, caller: caller, owner: owner)
            guard let drive = state.drives[key] else { throw NetError(.useNotFound, detail: ["\(letter) is not connected."]) }
            guard drive.allows(caller.uid) else { throw NetError(.accessDenied, detail: ["\(letter) belongs to \(drive.ownerName)."]) }
            return drive
        }
        let cache = drive.redirector.references
        return DriveReferences(drive: drive.status(), serverOpens: cache.serverOpens, counters: cache.counters,
                               processes: probe.scan(mountpoint: drive.mount.mountpoint))
    }

    // MARK: stop

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

    private func stop(_ drive: Drive) {
        do {
            try MountTable.unmount(drive.mount.mountpoint)
            Log.info("\(drive.letter) unmounted")
            finish(drive)
        } catch {
            revokeAndDetach(drive)
            drive.mount.abandon()
            Log.warning("\(drive.letter) was busy and is detached: \(error)")
            drive.redirector.disconnect()
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
    /// Like letters, this holds within one user's session (and among global drives).
    private func checkOneUserPerServer(_ server: String, _ credentials: Credentials, owner: uid_t?) throws(NetError) {
        let others = state.withLock { state in
            state.drives.values.compactMap { drive -> String? in
                guard drive.key.owner == owner, drive.remote.server == server else { return nil }
                return drive.account
            }
        }
        if let other = others.first(where: { $0.lowercased() != credentials.user.lowercased() }) {
            throw NetError(.sessionCredentialConflict, detail: [
                "\(server) is already connected as \(other.isEmpty ? "guest" : other)."])
        }
    }

    /// A letter in the owner's namespace (nil: global).
    private func reserve(_ choice: LetterChoice, owner: uid_t?) throws(NetError) -> DriveKey {
        try state.withLock { (state) throws(NetError) -> DriveKey in
            let taken = state.taken(by: owner)
            let letter: DriveLetter
            switch choice {
            case .letter(let wanted):
                guard !taken.contains(wanted) else {
                    throw NetError(.alreadyAssigned, detail: [owner == nil ? "\(wanted) is in use by some user." : "\(wanted) is already connected."])
                }
                letter = wanted
            case .nextFree:
                guard let free = DriveLetter.nextFree(excluding: taken) else {
                    throw NetError(.alreadyAssigned, detail: ["Every letter from A: to Z: is in use."])
                }
                letter = free
            }
            let key = DriveKey(owner: owner, letter: letter)
            state.reserved.insert(key)
            return key
        }
    }
}

/// A drive's letter in its namespace: a user's own (`owner`), or every user's (nil).
struct DriveKey: Hashable, Sendable {
    let owner: uid_t?
    let letter: DriveLetter

    /// The folder of the instance's root its mountpoint is in.
    var folder: String { owner.map { String($0) } ?? "global" }
}

extension DriveRecord {
    var key: DriveKey? {
        DriveLetter(letter).map { DriveKey(owner: global == true ? nil : owner, letter: $0) }
    }
}
