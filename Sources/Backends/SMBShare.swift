import Glibc
import NetUseCore
import Redirector
import Synchronization

/// An SMB share, served by a few netuse-smb-worker processes. Path operations go to an
/// idle worker; an open file stays with the worker that opened it, and is opened again
/// (without O_CREAT or O_TRUNC) on the worker that replaces a lost one. Each worker has a
/// courier for its files' read-ahead and write-behind.
public final class SMBShare: ShareBackend {
    let workers: [SMBWorker]
    let couriers: [Courier]
    let health = SMBHealth()
    /// Files on the share are presented as the drive owner's, as mount.cifs does with uid=/gid=.
    let owner: (uid: uid_t, gid: gid_t)
    /// Open files by handle, and how many are open per path.
    let files = Mutex<(table: [Int64: SMBFile], next: Int64, perPath: [String: Int])>(([:], 1, [:]))
    let turn = Atomic<Int>(0)
    /// Files whose write-behind is sending: when none is, nothing needs settling.
    let behind = WriteBehindSender()
    let listingAhead = ListingAhead()

    /// Connects the first worker at once, so that `use` answers 53, 67, 1326 or 5 before
    /// anything is mounted.
    public init(connection: SMBConnection, owner: Caller, workers count: Int) throws(NetError) {
        let health = self.health
        workers = (0..<max(1, count)).map { _ in SMBWorker(connection: connection, health: health) }
        couriers = workers.map { _ in Courier() }
        self.owner = (owner.uid, owner.gid)
        do {
            try workers[0].withChannel { _ in }
        } catch {
            throw Self.connectError(error, connection: connection)
        }
    }

    static func connectError(_ error: Errno, connection: SMBConnection) -> NetError {
        let detail = ["\(connection.url): \(error)."]
        switch error.rawValue {
        case ENOENT, ENODEV, ENXIO, ENOTDIR: return NetError(.badNetName, detail: detail)
        case EPERM: return NetError(.logonFailure, detail: detail)
        case EACCES: return NetError(connection.user.isEmpty ? .accessDenied : .logonFailure, detail: detail)
        default: return NetError(.badNetPath, detail: detail)
        }
    }

    public func disconnect() {
        couriers.forEach { $0.stop() }
        workers.forEach { $0.shutdown() }
    }

    public var status: String { health.current.status }

    /// libsmbclient asks for no lease, so nothing would tell the drive that another client
    /// wants a file it keeps open: its closes are never deferred.
    public func caching(_ handle: BackendHandle) -> HandleCaching? { [] }

    /// As mount.cifs without the POSIX extensions: no devices, FIFOs, symlinks or hard links.
    public var capabilities: ShareCapabilities { [] }

    // MARK: helpers

    /// A path operation on a running worker that is free, else on the next running one in
    /// turn, while one more worker starts in the background: starting one takes longer than
    /// waiting for a busy one. A worker lost on the way costs one more try on its
    /// replacement, which connects afresh.
    func anyWorker<T>(_ body: (SMBWorker.Channel, Int) throws(Errno) -> T) throws(Errno) -> T {
        let start = turn.add(1, ordering: .relaxed).newValue
        let order = (0..<workers.count).map { (start + $0) % workers.count }
        let running = order.filter { workers[$0].isRunning }
        var chosen = running.first ?? order[0]
        do {
            for index in running {
                chosen = index
                if let result = try workers[index].withChannelIfIdle({ (channel) throws(Errno) in try body(channel, index) }) {
                    return result
                }
            }
            if let idle = order.first(where: { !workers[$0].isRunning }), !running.isEmpty {
                warmUp(idle)
            }
            chosen = running.first ?? order[0]
            return try workers[chosen].withChannel { (channel) throws(Errno) in try body(channel, chosen) }
        } catch where error.rawValue == EIO && health.current != .connected {
            return try workers[chosen].withChannel { (channel) throws(Errno) in try body(channel, chosen) }
        }
    }

    func anyWorker<T>(_ body: (SMBWorker.Channel) throws(Errno) -> T) throws(Errno) -> T {
        try anyWorker { (channel, _) throws(Errno) in try body(channel) }
    }

    /// Starts a worker on its courier, once.
    func warmUp(_ index: Int) {
        guard workers[index].claimWarmUp() else { return }
        couriers[index].speculate({ [self] in
            _ = try? workers[index].withChannel { _ in }
            workers[index].warmedUp()
        }, cancel: { [self] in workers[index].warmedUp() })
    }

    func file(_ handle: BackendHandle) throws(Errno) -> SMBFile {
        guard let file = files.withLock({ $0.table[handle.rawValue] }) else { throw Errno(EBADF) }
        return file
    }

    /// The worker of a file's lane: lane 0 is the worker that opened it.
    func worker(of file: SMBFile, lane: Int) -> Int {
        (file.worker + lane) % workers.count
    }

    /// An operation on an open file, on the worker of `lane`, opening it there first if it
    /// was not yet (or that worker was replaced); one more try when the worker is lost on
    /// the way.
    func onFile<T>(_ file: SMBFile, lane: Int = 0, _ body: (SMBWorker.Channel, UInt32) throws(Errno) -> T) throws(Errno) -> T {
        do {
            return try onFileOnce(file, lane: lane, body)
        } catch where error.rawValue == EIO && health.current != .connected {
            return try onFileOnce(file, lane: lane, body)
        }
    }

    func onFileOnce<T>(_ file: SMBFile, lane: Int, _ body: (SMBWorker.Channel, UInt32) throws(Errno) -> T) throws(Errno) -> T {
        let index = worker(of: file, lane: lane)
        return try workers[index].withChannel { (channel) throws(Errno) -> T in
            if let open = file.state.withLock({ $0.opens[index] }), open.generation == channel.generation {
                return try body(channel, open.id)
            }
            // Other lanes only read ahead: a second open for writing may be refused where
            // the first was allowed (a guest that created a file may not open it again to write).
            let flags = lane == 0 ? file.flags & ~(O_CREAT | O_TRUNC | O_EXCL) : O_RDONLY
            if file.state.withLock({ $0.closed }) { throw Errno(EBADF) }
            let id = try channel.call(.open(path: file.path, flags: flags, mode: 0)).opened()
            let recorded = file.state.withLock { state in
                if !state.closed { state.opens[index] = SMBFile.RemoteOpen(id: id, generation: channel.generation) }
                return !state.closed
            }
            guard recorded else {
                _ = try? channel.call(.close(file: id))
                throw Errno(EBADF)
            }
            return try body(channel, id)
        }
    }

    /// Waits until the write-behind of every open file `matching` is on the share, so that
    /// what the share answers next includes it.
    func settle(_ matching: @escaping (SMBFile) -> Bool) {
        behind.settle { files.withLock { $0.table.values.filter(matching) } }
    }

    func settle(path: String) {
        settle { $0.path == path }
    }

    func owned(_ attributes: stat) -> stat {
        var result = attributes
        result.st_uid = owner.uid
        result.st_gid = owner.gid
        return result
    }

    func simple(_ request: WorkerRequest) throws(Errno) {
        _ = try anyWorker { (channel) throws(Errno) in try channel.call(request) }
    }

    // MARK: attributes

    public func attributes(of path: String) throws(Errno) -> stat {
        settle(path: path)
        return try anyWorker { (channel) throws(Errno) in
            owned(try channel.call(.attributes(path: path)).attributes())
        }
    }

    /// A handle opened write-only may not read its own attributes over SMB (no
    /// FILE_READ_ATTRIBUTES in its access mask): the path answers for it then.
    public func attributes(of handle: BackendHandle) throws(Errno) -> stat {
        let file = try file(handle)
        settle(path: file.path)
        do {
            return try onFile(file) { (channel, remote) throws(Errno) in
                owned(try channel.call(.handleAttributes(file: remote)).attributes())
            }
        } catch where error.rawValue == EINVAL || error.rawValue == EACCES {
            return try attributes(of: file.path)
        }
    }

    public func setAttributes(_ changes: AttributeChanges, of path: String, handle: BackendHandle?) throws(Errno) -> stat {
        // SMB without POSIX extensions has no owners to change, as mount.cifs says.
        if changes.uid.map({ $0 != owner.uid }) == true || changes.gid.map({ $0 != owner.gid }) == true {
            throw Errno(EPERM)
        }
        settle(path: path)
        defer { listingAhead.forget(parentOf: path) }
        if let size = changes.size {
            // Before, and again after: a fetch may read the old end while the truncate is
            // on its way, and an end of file read ahead would shorten the next read.
            forgetReadAhead(path)
            defer { forgetReadAhead(path) }
            if let handle {
                _ = try onFile(try file(handle)) { (channel, remote) throws(Errno) in
                    try channel.call(.handleTruncate(file: remote, size: Int64(size)))
                }
            } else {
                try simple(.truncate(path: path, size: Int64(size)))
            }
        }
        if let mode = changes.mode {
            try simple(.setMode(path: path, mode: mode))
        }
        if changes.changesTimes {
            let current = try attributes(of: path)
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            func resolve(_ time: timespec?, _ existing: timespec) -> timespec {
                guard let time else { return existing }
                if time.tv_nsec == AttributeChanges.timeNow.tv_nsec { return now }
                if time.tv_nsec == AttributeChanges.timeOmit.tv_nsec { return existing }
                return time
            }
            let access = resolve(changes.accessTime, current.st_atim)
            let modification = resolve(changes.modificationTime, current.st_mtim)
            try simple(.setTimes(path: path, access: access, modification: modification))
        }
        if let handle { return try attributes(of: handle) }
        return try attributes(of: path)
    }

    /// A listing fetched ahead when there is one; then the subdirectories' listings are
    /// fetched ahead on the couriers, one level below the walker.
    public func list(_ path: String) throws(Errno) -> [DirectoryEntry] {
        settle { _ in true }
        // Ahead only on workers that are up; listing while a write-behind is on its way would
        // show sizes it is about to change, and waiting for it could wait on this very courier.
        let running = workers.indices.filter { workers[$0].isRunning }
        return try listingAhead.list(
            path, couriers: running.map { couriers[$0] },
            fetch: { (path) throws(Errno) in try anyWorker { (channel) throws(Errno) in try fetchListing(path, on: channel) } },
            mayFetchAhead: { [behind] in behind.isIdle },
            fetchAhead: { [self] (path, lane) throws(Errno) in
                try workers[running[lane]].withChannel { (channel) throws(Errno) in try fetchListing(path, on: channel) }
            })
    }

    func fetchListing(_ path: String, on channel: SMBWorker.Channel) throws(Errno) -> [DirectoryEntry] {
        try channel.call(.list(path: path)).listing().map { DirectoryEntry(name: $0.name, attributes: owned($0.attributes)) }
    }

    // MARK: names

    public func makeDirectory(_ path: String, mode: mode_t, caller: Caller) throws(Errno) {
        defer { listingAhead.forget(parentOf: path) }
        try simple(.makeDirectory(path: path, mode: mode))
    }

    public func removeDirectory(_ path: String) throws(Errno) {
        settle { $0.path.hasPrefix(path + "/") }
        defer {
            listingAhead.forget(parentOf: path)
            listingAhead.forget(path, subtree: true)
        }
        try simple(.removeDirectory(path: path))
    }

    public func unlink(_ path: String) throws(Errno) {
        settle(path: path)
        defer { listingAhead.forget(parentOf: path) }
        try simple(.unlink(path: path))
    }

    public func rename(_ from: String, to: String, flags: RenameFlags) throws(Errno) {
        settle { $0.path == from || $0.path.hasPrefix(from + "/") }
        if flags.contains(.noReplace), (try? attributes(of: to)) != nil { throw Errno(EEXIST) }
        defer {
            for path in [from, to] {
                listingAhead.forget(parentOf: path)
                listingAhead.forget(path, subtree: true)
            }
        }
        try simple(.rename(from: from, to: to))
    }

    public func statistics() throws(Errno) -> statvfs {
        try anyWorker { (channel) throws(Errno) in
            var result = try channel.call(.statistics(path: "")).statistics()
            // libsmbclient answers bytes per sector and sectors per allocation unit; blocks
            // count allocation units.
            let unit = result.f_bsize * max(result.f_frsize, 1)
            result.f_bsize = unit
            result.f_frsize = unit
            if result.f_namemax == 0 { result.f_namemax = 255 }  // SMB names: 255 UTF-16 units
            return result
        }
    }
}
