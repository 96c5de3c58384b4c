import Glibc
import NetUseCore
import Redirector
import SMB2
import Synchronization

/// An SMB share spoken to by netuse's own SMB2/3 engine, in the daemon's process: every
/// call is a request (or one compound) in flight on the session's connection, many at once.
/// A lost connection is set up again on the next call, and open files are opened again
/// (without O_CREAT or O_TRUNC) on the new tree.
public final class NativeSMBShare: ShareBackend {
    let location: SMBLocation
    let options: SMB2Session.Options
    let sessionKey: String
    let health = SMBHealth()
    let owner: (uid: uid_t, gid: gid_t)
    /// Whether opens ask for leases (`-o nolease` says no).
    let asksForLeases: Bool
    /// fcntl and flock locks go to the server, unless `-o nobrl` keeps them in the kernel.
    public let capabilities: ShareCapabilities
    /// The tree connect in use, and a generation that counts reconnects.
    let link = Mutex<(tree: SMB2Tree?, generation: Int)>((nil, 0))
    let files = Mutex<(table: [Int64: NativeFile], next: Int64)>(([:], 1))
    /// Background threads for write-behind and listings ahead: a file's batches go on the
    /// courier of its handle, so they reach the share in order.
    let couriers = (0..<4).map { _ in Courier() }
    /// Files whose write-behind is sending: when none is, nothing needs settling.
    let behind = WriteBehindSender()
    /// Counts writes, truncates and copies made through the drive: a file's head read with
    /// its open before the latest of them is not served.
    let changes = Atomic<UInt64>(0)
    let listingAhead = ListingAhead()

    /// Who hears of lease breaks: the redirector, set once before the first open.
    let breakObserver = Mutex<(@Sendable (BackendHandle, HandleCaching) -> Void)?>(nil)

    final class NativeFile: BufferedFile {
        let path: String
        let flags: Int32
        /// The lease every open of it (a reopen after a reconnect too) asks for.
        let lease: SMB2LeaseRequest
        /// The server's open, the generation of the tree it was made on, and what its lease
        /// lets the drive cache.
        let open: Mutex<Open>

        struct Open: Sendable {
            var id: SMB2FileId
            var generation: Int
            var closed = false
            var caching: HandleCaching = []
            /// What the server's breaks for it name, while it holds a lease or oplock.
            var breaks: SMB2Break.Target?
            /// Set when the server made the open durable: a reconnect gets it back.
            var durable: SMB2Durable?
        }
        /// Writes on their way to the share (write-behind).
        let data = Monitor(DataState())
        /// The file's first bytes, read with the open (CREATE+READ) for a reader holding a
        /// read lease, and the count of changes through the drive when they were asked for.
        let head = Mutex<(bytes: [UInt8], changes: UInt64)?>(nil)
        /// What the server said of the file with the open: the answer to the stat that
        /// follows every open (the redirector's), once, if nothing was changed through the
        /// drive since (the count of changes it was asked at).
        let opened = Mutex<(attributes: Glibc.stat, changes: UInt64)?>(nil)

        var buffered: Monitor<DataState> { data }

        struct DataState: BufferedFileState {
            var writeBehind = WriteBehind()
            /// What this file holds of the cache budget, as last accounted.
            var charged = 0
            var closed = false
            var held: Int { writeBehind.held }

            mutating func account(_ budget: CacheBudget) {
                charged = budget.account(from: charged, to: closed ? 0 : held)
            }
        }

        /// Where the server's breaks for it go (again on a new session, after a reconnect).
        let breakHandler: @Sendable (SMB2Break) -> Void

        init(path: String, flags: Int32, lease: SMB2LeaseRequest, open: Open, breakHandler: @escaping @Sendable (SMB2Break) -> Void) {
            self.path = path
            self.flags = flags
            self.lease = lease
            self.open = Mutex(open)
            self.breakHandler = breakHandler
        }
    }

    /// Connects at once, so that `use` answers 53, 67, 1326 or 5 before anything is mounted.
    public init(location: SMBLocation, options: SMB2Session.Options, owner: Caller, leases: Bool = true,
                locks: Bool = true) throws(ConnectFailure) {
        self.location = location
        asksForLeases = leases
        capabilities = locks ? .byteRangeLocks : []
        self.options = options
        self.owner = (owner.uid, owner.gid)
        sessionKey = SMB2Sessions.key(options, owner: owner.uid)
        SMB2Sessions.shared.retain(sessionKey)
        do {
            let tree = try connectTree()
            link.withLock { $0 = (tree, 1) }
            if !location.path.isEmpty {
                guard try tree.info(of: location.path).isDirectory else { throw Errno(ENOTDIR) }
            }
        } catch SMB2SetupError.noSMB2 {
            SMB2Sessions.shared.release(sessionKey)
            throw .onlySMB1
        } catch let error as SMB2SetupError {
            SMB2Sessions.shared.release(sessionKey)
            throw .refused(Self.connectError(error, location: location, user: options.user))
        } catch let error as Errno {
            SMB2Sessions.shared.release(sessionKey)
            let detail = ["\(location.url): \(error)."]
            throw .refused(error.rawValue == ENOENT || error.rawValue == ENOTDIR ? NetError(.badNetName, detail: detail)
                : NetError(.badNetPath, detail: detail))
        } catch {
            SMB2Sessions.shared.release(sessionKey)
            throw .refused(NetError(.badNetPath, detail: ["\(location.url): \(error)."]))
        }
    }

    /// Why a drive could not be connected: `use`'s answer, or a server for libsmbclient.
    public enum ConnectFailure: Error {
        case refused(NetError)
        /// The server speaks SMB1 only (NT4-era): libsmbclient serves it instead.
        case onlySMB1
    }

    static func connectError(_ error: SMB2SetupError, location: SMBLocation, user: String) -> NetError {
        switch error {
        case .unreachable(let errno): return NetError(.badNetPath, detail: ["\(location.url): \(errno)."])
        case .logonFailure(let status): return NetError(.logonFailure, detail: ["\(location.url): \(status)."])
        case .accessDenied(let status):
            return NetError(user.isEmpty ? .accessDenied : .logonFailure, detail: ["\(location.url): \(status)."])
        case .badNetName(let status): return NetError(.badNetName, detail: ["\(location.url): \(status)."])
        case .protocolError(let text): return NetError(.badNetPath, detail: ["\(location.url): \(text)."])
        case .noSMB2: return NetError(.badNetPath, detail: ["\(location.url): no SMB2 answer."])
        case .noTicket(let reason):
            return NetError(.logonFailure, detail: ["\(location.url): no Kerberos ticket to log on with (kinit gets one): \(reason)."])
        }
    }

    func connectTree() throws(SMB2SetupError) -> SMB2Tree {
        try SMB2Sessions.shared.session(sessionKey, options).connect(share: location.share)
    }

    public func disconnect() {
        couriers.forEach { $0.stop() }
        let tree = link.withLock { link in
            defer { link.tree = nil }
            return link.tree
        }
        tree?.disconnect()
        SMB2Sessions.shared.release(sessionKey)
    }

    public var status: String { health.current.status }

    /// The tree to send on: the current one while its connection holds, else a new one.
    /// While the server is gone, one attempt a second; the others fail at once.
    func tree() throws(Errno) -> (SMB2Tree, Int) {
        let (current, generation) = link.withLock { ($0.tree, $0.generation) }
        if let current, current.session.isConnected { return (current, generation) }
        guard health.mayTryToReconnect(every: .seconds(1)) else { throw Errno(EIO) }
        health.set(.reconnecting)
        do {
            let fresh = try connectTree()
            health.set(.connected)
            let (chosen, generation) = link.withLock { link in
                if let installed = link.tree, installed.session.isConnected, installed !== current {
                    return (installed, link.generation)
                }
                link.tree = fresh
                link.generation += 1
                return (fresh, link.generation)
            }
            // Another thread reconnected first: its tree serves, this one goes.
            if chosen !== fresh { fresh.disconnect() } else { leasesLost() }
            return (chosen, generation)
        } catch {
            health.reconnectFailed()
            throw Errno(EIO)
        }
    }

    /// A call on the tree (with its generation); one more try on a new connection when the
    /// old one broke on the way.
    func onTree<T>(_ body: (SMB2Tree, Int) throws(Errno) -> T) throws(Errno) -> T {
        let (tree, generation) = try tree()
        do {
            return try body(tree, generation)
        } catch where error.rawValue == EIO && !tree.session.isConnected {
            let (fresh, generation) = try self.tree()
            return try body(fresh, generation)
        }
    }

    func onTree<T>(_ body: (SMB2Tree) throws(Errno) -> T) throws(Errno) -> T {
        try onTree { (tree, _) throws(Errno) in try body(tree) }
    }

    /// A call on an open file, opening it again first if the tree it was opened on is gone.
    func onFile<T>(_ handle: BackendHandle, _ body: (SMB2Tree, SMB2FileId) throws(Errno) -> T) throws(Errno) -> T {
        let file = try file(handle)
        return try onTree { (tree, generation) throws(Errno) in
            let current = file.open.withLock { $0 }
            if current.closed { throw Errno(EBADF) }
            if current.generation == generation { return try body(tree, current.id) }
            // A durable open comes back as it was, its locks too; its lease holds on the server,
            // so its breaks are heard on the new session, though the drive, told at the
            // reconnect to drop what the lease cached, now caches nothing of it.
            if let durable = current.durable, let id = reconnect(file, current.id, durable, on: tree) {
                tree.session.onBreak(.lease(file.lease.key), file.breakHandler)
                file.open.withLock { $0.id = id; $0.generation = generation; $0.caching = []; $0.breaks = .lease(file.lease.key) }
                return try body(tree, id)
            }
            // Otherwise the file is opened again; the lease went with the old connection.
            let (id, _) = try tree.create(full(file.path), access: Self.access(file.flags), disposition: .open)
            file.open.withLock { $0.id = id; $0.generation = generation; $0.caching = []; $0.durable = nil }
            return try body(tree, id)
        }
    }

    /// A durable open back on a new tree. The server may not have noticed the old connection
    /// go yet (the new session names it as the previous one, which ends it, but that takes its
    /// time): a few tries, a tenth of a second apart.
    func reconnect(_ file: NativeFile, _ old: SMB2FileId, _ durable: SMB2Durable, on tree: SMB2Tree) -> SMB2FileId? {
        for attempt in 0..<5 {
            if attempt > 0 { usleep(100_000) }
            if let (id, _) = try? tree.reconnect(full(file.path), file: old, durable: durable, lease: file.lease) { return id }
            guard tree.session.isConnected else { return nil }
        }
        return nil
    }

    func isOpen(_ path: String, below: Bool) -> Bool {
        files.withLock { files in files.table.values.contains { $0.path == path || below && $0.path.hasPrefix(path + "/") } }
    }

    func file(_ handle: BackendHandle) throws(Errno) -> NativeFile {
        guard let file = files.withLock({ $0.table[handle.rawValue] }) else { throw Errno(EBADF) }
        return file
    }

    /// The path on the share: below the folder the drive maps, if it maps one.
    func full(_ path: String) -> String {
        location.path.isEmpty ? path : path.isEmpty ? location.path : location.path + "/" + path
    }

    static func access(_ flags: Int32) -> UInt32 {
        switch flags & O_ACCMODE {
        case O_WRONLY: return SMB2Access.writeData | SMB2Access.appendData | SMB2Access.writeAttributes
        case O_RDWR: return SMB2Access.readData | SMB2Access.writeData | SMB2Access.appendData | SMB2Access.writeAttributes
        default: return SMB2Access.readData
        }
    }

    // MARK: attributes

    /// As libsmbclient presents DOS attributes (and mount.cifs without POSIX extensions):
    /// read-only clears the owner's write bit; archive, system and hidden are the x bits.
    func stat(_ info: SMB2FileInfo, path: String) -> Glibc.stat {
        var result = Glibc.stat()
        result.st_mode = info.isDirectory ? S_IFDIR | 0o555 : S_IFREG | 0o444
        if info.attributes & SMB2Attributes.archive != 0 { result.st_mode |= S_IXUSR }
        if info.attributes & SMB2Attributes.system != 0 { result.st_mode |= S_IXGRP }
        if info.attributes & SMB2Attributes.hidden != 0 { result.st_mode |= S_IXOTH }
        if info.attributes & SMB2Attributes.readOnly == 0 { result.st_mode |= S_IWUSR }
        result.st_nlink = UInt(max(1, info.links))
        result.st_uid = owner.uid
        result.st_gid = owner.gid
        result.st_size = Int(info.size)
        result.st_blocks = Int((info.allocation + 511) / 512)
        result.st_blksize = 4096
        result.st_ino = info.index != 0 ? UInt(info.index) : UInt(truncatingIfNeeded: path.hashValue)
        result.st_atim = Self.time(info.accessTime)
        result.st_mtim = Self.time(info.writeTime)
        result.st_ctim = Self.time(info.changeTime)
        return result
    }

    /// FILETIME (100 ns since 1601) to Unix time.
    static func time(_ value: UInt64) -> timespec {
        let unix = Int64(bitPattern: value) - 116_444_736_000_000_000
        let seconds = unix >= 0 ? unix / 10_000_000 : (unix - 9_999_999) / 10_000_000
        return timespec(tv_sec: Int(seconds), tv_nsec: Int((unix - seconds * 10_000_000) * 100))
    }

    static func fileTime(_ time: timespec) -> UInt64 {
        UInt64(bitPattern: Int64(time.tv_sec) * 10_000_000 + Int64(time.tv_nsec / 100) + 116_444_736_000_000_000)
    }

    public func attributes(of path: String) throws(Errno) -> Glibc.stat {
        settle(path: path)
        let info = try onTree { (tree) throws(Errno) in try tree.info(of: full(path)) }
        return stat(info, path: path)
    }

    /// From the directory's listing when one was fetched for lookups (ListingAhead says
    /// when); the first lookup in a directory fetches it in the same round trip as its own
    /// answer. Not while a write-behind is on its way: the listing would show sizes it is
    /// about to change.
    public func lookup(_ path: String, within window: Duration) throws(Errno) -> (attributes: Glibc.stat, age: Duration) {
        // A file open here is asked for as before: a lease break on its way (another client's
        // overwrite) reaches the drive before the answer to a request sent after it, never
        // before an answer from a listing.
        guard window > .zero, !path.isEmpty, !isOpen(path, below: false) else { return (try attributes(of: path), .zero) }
        let (directory, name) = ListingAhead.split(path)
        let known = listingAhead.lookup(name, in: directory, within: window)
        if let found = known.found { return found }
        guard let epoch = known.claim else { return (try attributes(of: path), .zero) }
        settle(path: path)
        guard behind.isIdle else {
            listingAhead.listedForLookups(directory, epoch: epoch, .failed)
            return (try attributes(of: path), .zero)
        }
        let answer: (info: Result<SMB2FileInfo, Errno>, listing: [(name: String, info: SMB2FileInfo)]?)
        do {
            answer = try onTree { (tree) throws(Errno) in
                try tree.info(of: full(path), listing: full(directory), within: ListingAhead.lookupListingBytes)
            }
        } catch {
            listingAhead.listedForLookups(directory, epoch: epoch, .failed)
            throw error
        }
        listingAhead.listedForLookups(directory, epoch: epoch, answer.listing.map { .entries(entries(of: directory, $0)) } ?? .tooLarge)
        return (stat(try answer.info.get(), path: path), .zero)
    }

    public func attributes(of handle: BackendHandle) throws(Errno) -> Glibc.stat {
        let file = try file(handle)
        if let opened = file.opened.withLock({ opened in defer { opened = nil }; return opened }),
           opened.changes == changes.load(ordering: .acquiring) {
            return opened.attributes
        }
        let path = file.path
        settle(path: path)
        let info = try onFile(handle) { (tree, id) throws(Errno) in try tree.info(of: id) }
        return stat(info, path: path)
    }

    public func setAttributes(_ changes: AttributeChanges, of path: String, handle: BackendHandle?) throws(Errno) -> Glibc.stat {
        // SMB without POSIX extensions has no owners to change, as mount.cifs says.
        if changes.uid.map({ $0 != owner.uid }) == true || changes.gid.map({ $0 != owner.gid }) == true {
            throw Errno(EPERM)
        }
        settle(path: path)
        defer { listingAhead.forget(parentOf: path) }
        if changes.size != nil { self.changes.add(1, ordering: .releasing) }
        if let size = changes.size {
            if let handle, (try? file(handle).flags & O_ACCMODE) != O_RDONLY {
                try onFile(handle) { (tree, id) throws(Errno) in try tree.setEndOfFile(id, UInt64(size)) }
            } else {
                try onTree { (tree) throws(Errno) in try tree.setEndOfFile(full(path), UInt64(size)) }
            }
        }
        if changes.mode != nil || changes.changesTimes {
            var attributes: UInt32 = 0
            if let mode = changes.mode {
                let current = try onTree { (tree) throws(Errno) in try tree.info(of: full(path)) }
                attributes = current.attributes & ~(SMB2Attributes.readOnly | SMB2Attributes.archive | SMB2Attributes.system | SMB2Attributes.hidden)
                if mode & S_IWUSR == 0 { attributes |= SMB2Attributes.readOnly }
                if mode & S_IXUSR != 0 { attributes |= SMB2Attributes.archive }
                if mode & S_IXGRP != 0 { attributes |= SMB2Attributes.system }
                if mode & S_IXOTH != 0 { attributes |= SMB2Attributes.hidden }
                if attributes == 0 { attributes = SMB2Attributes.normal }
            }
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            func value(_ time: timespec?) -> UInt64 {
                guard let time, time.tv_nsec != AttributeChanges.timeOmit.tv_nsec else { return 0 }  // 0: unchanged
                return Self.fileTime(time.tv_nsec == AttributeChanges.timeNow.tv_nsec ? now : time)
            }
            let access = value(changes.accessTime), modification = value(changes.modificationTime)
            try onTree { (tree) throws(Errno) in
                try tree.setBasic(full(path), accessTime: access, writeTime: modification, attributes: attributes)
            }
        }
        if let handle { return try attributes(of: handle) }
        return try attributes(of: path)
    }

    /// A listing fetched ahead when there is one; then the subdirectories' listings are
    /// fetched ahead on the couriers, one level below the walker (`find`, `du`).
    public func list(_ path: String) throws(Errno) -> [DirectoryEntry] {
        settle { _ in true }
        // Listing while a write-behind is on its way would show sizes it is about to change.
        return try listingAhead.list(path, couriers: couriers, fetch: { (path) throws(Errno) in try fetchListing(path) },
                                     mayFetchAhead: { [behind] in behind.isIdle },
                                     fetchAhead: { [self] (path, _) throws(Errno) in try fetchListing(path) })
    }

    func fetchListing(_ path: String) throws(Errno) -> [DirectoryEntry] {
        entries(of: path, try onTree { (tree) throws(Errno) in try tree.list(full(path)) })
    }

    func entries(of directory: String, _ listing: [(name: String, info: SMB2FileInfo)]) -> [DirectoryEntry] {
        listing.map { entry in
            DirectoryEntry(name: entry.name, attributes: stat(entry.info, path: directory.isEmpty ? entry.name : directory + "/" + entry.name))
        }
    }

    // MARK: names

    public func makeDirectory(_ path: String, mode: mode_t, caller: Caller) throws(Errno) {
        defer { listingAhead.forget(parentOf: path) }
        try onTree { (tree) throws(Errno) in try tree.makeDirectory(full(path)) }
    }

    public func removeDirectory(_ path: String) throws(Errno) {
        settle { $0.path.hasPrefix(path + "/") }
        defer {
            listingAhead.forget(parentOf: path)
            listingAhead.forget(path, subtree: true)
        }
        try onTree { (tree) throws(Errno) in try tree.remove(full(path), directory: true) }
    }

    /// The server would take the delete of a file open here (every open shares delete) and
    /// keep the name until the last close, as Windows does; a Linux program expects the name
    /// to go at once. EBUSY lets the redirector delete it pending (hidden at once, removed at
    /// its last close), as it does for libsmbclient, and close deferred handles first.
    public func unlink(_ path: String) throws(Errno) {
        if isOpen(path, below: false) { throw Errno(EBUSY) }
        defer { listingAhead.forget(parentOf: path) }
        try onTree { (tree) throws(Errno) in try tree.remove(full(path), directory: false) }
    }

    /// A file open here keeps the path it was opened by (a reopen after a reconnect uses it):
    /// as with libsmbclient, such a file is not renamed under its holders.
    public func rename(_ from: String, to: String, flags: RenameFlags) throws(Errno) {
        if isOpen(from, below: true) || isOpen(to, below: false) { throw Errno(EBUSY) }
        defer {
            for path in [from, to] {
                listingAhead.forget(parentOf: path)
                listingAhead.forget(path, subtree: true)
            }
        }
        try onTree { (tree) throws(Errno) in try tree.rename(full(from), to: full(to), replace: !flags.contains(.noReplace)) }
    }

    public func statistics() throws(Errno) -> statvfs {
        let size = try onTree { (tree) throws(Errno) in try tree.volumeSize() }
        var result = statvfs()
        result.f_bsize = UInt(size.unit)
        result.f_frsize = UInt(size.unit)
        result.f_blocks = UInt(size.total)
        result.f_bfree = UInt(size.free)
        result.f_bavail = UInt(size.available)
        result.f_namemax = 255
        return result
    }
}
