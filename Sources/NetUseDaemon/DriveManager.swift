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
    struct State {
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
    let store: DriveRecords?
    let kinds = ShareKinds.standard
    let state = Mutex(State())
    let probe = ActivityProbe()

    init(root: String, store: DriveRecords?) {
        self.root = root
        self.store = store
    }

    /// Where a drive is mounted: a folder per user (and one for global drives) that the
    /// daemon makes and owns, so that no user can put a symlink where a mount will go.
    func mountpoint(of key: DriveKey) -> String {
        root + "/" + key.folder + "/" + key.letter.name
    }

    /// Ten times a second: the deferred ServerOpens whose closetimeo ran out are closed
    /// (each FCB table knows which; each drive closes its own, so that one hung server
    /// holds up no other drive), and memory goes back to the system once the caches let
    /// go of it (the budget knows when).
    func startScavenger() {
        SystemThread.every(.milliseconds(100)) { [self] in
            for drive in state.withLock({ Array($0.drives.values) }) { drive.scavenge() }
            CacheBudget.shared.trimWhenIdle()
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
                                 credentialsFile: request.credentialsFile, credentialsCache: request.credentialsCache,
                                 global: request.global ? true : nil)
        }
        let drive = try connect(key, kind, remote, settings: settings, credentials: credentials,
                                owner: caller, identity: identity, credentialsCache: request.credentialsCache)
        state.withLock { state in
            state.drives[key] = drive
            if let record { state.records[key] = record }
        }
        if record != nil { saveRecords() }
        return drive.status()
    }

    /// Mounts a share at a letter the caller has reserved.
    func connect(_ key: DriveKey, _ kind: any ShareKind, _ remote: Remote, settings: DriveOptions,
                         credentials: Credentials, owner: Caller, identity: Identity,
                         credentialsCache: String? = nil) throws(NetError) -> Drive {
        let letter = key.letter
        if let server = remote.server { try checkOneUserPerServer(server, credentials, owner: key.owner) }
        var request = ConnectRequest(owner: owner, identity: identity, credentials: credentials,
                                     timeout: settings.timeout, workers: settings.workers)
        request.engine = settings.engine
        request.seal = settings.seal
        request.leases = settings.leases
        request.locks = settings.locks
        if settings.kerberos {
            guard let tickets = KerberosCredentials(cache: credentialsCache, identity: identity) else {
                throw NetError(.invalidParameter, detail: [
                    "sec=krb5 takes a FILE: or DIR: ticket cache by absolute path (KRB5CCNAME), not '\(credentialsCache ?? "")'."])
            }
            request.kerberos = tickets
        }
        let backend = try kind.connect(remote, request)
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
        MountUtab.add(target: mountpoint, source: mount.source, name: Self.displayName(letter, remote))
        Log.info("\(letter) connected to \(remote) at \(mountpoint) for \(key.owner.map { "uid \($0)" } ?? "every user")")
        return Drive(key: key, remote: remote, owner: owner.uid, account: credentials.user,
                     redirector: redirector, mount: mount, timeout: settings.timeout)
    }

    /// What a file manager calls the drive: its letter and the share, as Explorer shows it.
    static func displayName(_ letter: DriveLetter, _ remote: Remote) -> String {
        let folder = remote.description.split(separator: "/").last.map(String.init) ?? remote.description
        return "\(letter) (\(folder) on \(remote.server ?? "this computer"))"
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
