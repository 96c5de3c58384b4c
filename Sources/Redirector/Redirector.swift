import Glibc
import NetUseCore
import Synchronization

/// What the FUSE session asks of a drive, in inode numbers and handles, answered from the
/// share. FUSE-free, so that tests can drive it with a backend and no kernel.
///
/// Lock order: `nodes`, then `handles`, then `directories`, then `locks`; none is held across
/// backend I/O.
/// Calls that retire ServerOpens take their backend handles out under the lock and close
/// them after it.
public final class Redirector: Sendable {
    public struct Options: Sendable {
        /// How long a ServerOpen whose last FileHandle went stays open for reuse; zero turns
        /// deferred close off.
        public var closeTimeout: Duration = .seconds(5)
        /// How many ServerOpens may wait on the deferred list; past it the oldest is closed.
        public var deferredLimit = 64
        /// How long attributes from the share are trusted, by the kernel and by an open that
        /// revalidates a cached handle (mount.cifs's actimeo).
        public var attributeTimeout: Duration = .seconds(1)

        public init() {}
    }

    /// The drive's handle cache as `refs` shows it.
    public struct References: Sendable {
        public let serverOpens: [ServerOpenReference]
        public let counters: HandleCounters
    }

    public struct Entry: Sendable {
        public let node: UInt64
        public let attributes: stat
        /// How much longer the kernel may trust the answer, when less than the attribute
        /// timeout (the attributes were already that old).
        public let timeout: Duration?

        public init(node: UInt64, attributes: stat, timeout: Duration? = nil) {
            self.node = node
            self.attributes = attributes
            self.timeout = timeout
        }
    }

    public let backend: any ShareBackend
    public let attributeTimeout: Duration
    let clock: @Sendable () -> Duration
    let nodes = Mutex(NodeTable())
    let handles: Mutex<FCBTable>
    let directories = Mutex(DirectorySnapshots())
    let locks = Mutex(ByteRangeLocks())
    /// Set by a forced delete: from then on every request answers EIO.
    let revoked = Atomic(false)
    /// Asks again, in the background, for the attributes of nodes in use; `refreshing`
    /// holds the nodes it has queued, so that each is asked once.
    let refresher = Courier()
    let refreshing = Mutex(Set<UInt64>())
    /// Drops what the kernel cached of a node (its pages and attributes): set by the mount.
    let kernelCache = Mutex<(@Sendable (UInt64) -> Void)?>(nil)

    /// The only user (besides root) whose requests the drive serves, when the mount lets
    /// every user in (allow_other); nil when the kernel already keeps others out.
    public let admittedUID: uid_t?

    public init(backend: any ShareBackend, options: Options = Options(), admittedUID: uid_t? = nil,
                clock: @escaping @Sendable () -> Duration = MonotonicClock.now) {
        self.backend = backend
        self.admittedUID = admittedUID
        attributeTimeout = options.attributeTimeout
        self.clock = clock
        handles = Mutex(FCBTable(closeTimeout: options.closeTimeout, deferredLimit: options.deferredLimit))
        backend.observeBreaks { [weak self] handle, caching in self?.leaseBroken(handle, caching: caching) }
    }

    /// How a lease break reaches the kernel's caches: the mount sets it once it has a
    /// session, and clears it before the session goes.
    public func setKernelInvalidation(_ invalidate: (@Sendable (UInt64) -> Void)?) {
        kernelCache.withLock { $0 = invalidate }
    }

    public var openHandleCount: Int { handles.withLock { $0.handleCount } }
    public var deferredCount: Int { handles.withLock { $0.deferredCount } }
    /// The FileHandles the kernel still holds: the drive's own view of active references.
    public var liveHandles: [FileHandle] { handles.withLock { $0.liveHandles } }
    public var counters: HandleCounters { handles.withLock { $0.counters } }

    public var references: References {
        let now = clock()
        return handles.withLock { References(serverOpens: $0.references(now: now), counters: $0.counters) }
    }

    // MARK: names

    /// A name the kernel asks again for (its entry timed out) is answered from what the
    /// share said of it within the attribute timeout, for the rest of that timeout.
    public func lookup(parent: UInt64, name: String) throws(Errno) -> Entry {
        try checkConnected()
        let now = clock()
        let cached = nodes.withLock { table -> (node: UInt64, attributes: stat, age: Duration)? in
            guard let node = table.existing(parent: parent, name: name),
                  let cached = table.cached(node, at: now, within: attributeTimeout) else { return nil }
            _ = table.remember(parent: parent, name: name)
            return (node, cached.attributes, cached.age)
        }
        if let cached {
            refreshAhead(cached.node, age: cached.age)
            return Entry(node: cached.node, attributes: cached.attributes, timeout: attributeTimeout - cached.age)
        }
        let path = try path(of: parent, name)
        if handles.withLock({ $0.isDeletePending(path) }) { throw Errno(ENOENT) }
        // A node new to the table starts at generation 0: a write to it meanwhile moves that.
        let asked = nodes.withLock { table in table.existing(parent: parent, name: name).flatMap { table.generation(of: $0) } } ?? 0
        let (attributes, age) = try backend.lookup(path, within: attributeTimeout)
        let node = remember(parent: parent, name: name, attributes: attributes, generation: asked, age: age)
        return Entry(node: node, attributes: attributes, timeout: age > .zero ? attributeTimeout - age : nil)
    }

    /// Past half the attribute timeout, a node in use is asked for again in the background,
    /// so that it is fresh before anyone must wait for it. An answer is recorded only if
    /// nothing was written to the node in the meantime, and it counts from when it was asked.
    func refreshAhead(_ node: UInt64, age: Duration) {
        guard age * 2 >= attributeTimeout, refreshing.withLock({ $0.insert(node).inserted }) else { return }
        refresher.speculate({ [self] in
            defer { _ = refreshing.withLock { $0.remove(node) } }
            guard let (path, generation) = nodes.withLock({ table -> (String, UInt64)? in
                guard let path = try? table.path(of: node), let generation = table.generation(of: node) else { return nil }
                return (path, generation)
            }) else { return }
            let asked = clock()
            guard let attributes = try? backend.attributes(of: path) else { return }
            nodes.withLock { table in
                if (try? table.path(of: node)) == path { table.record(attributes, of: node, at: asked, generation: generation) }
            }
        }, cancel: { [self] in _ = refreshing.withLock { $0.remove(node) } })
    }

    /// Counts a reference the kernel takes, with the attributes it is told (READDIRPLUS
    /// entries come without a LOOKUP), which were `age` old. They are kept only if nothing was
    /// written to the node since they were asked for (`generation`), or to the drive
    /// (`writes`), when given.
    public func remember(parent: UInt64, name: String, attributes: stat? = nil, generation: UInt64? = nil,
                         writes: UInt64? = nil, age: Duration = .zero) -> UInt64 {
        let now = clock()
        return nodes.withLock { table in
            let node = table.remember(parent: parent, name: name)
            if let attributes, writes.map({ $0 == table.writes }) ?? true {
                table.record(attributes, of: node, at: now - age, generation: generation)
            }
            return node
        }
    }

    /// Asks the share for a node's attributes and keeps the answer unless something was
    /// written to the node while the question was out: an answer from before a write,
    /// recorded after it, would be served as fresh (a read after write and close saw 0 bytes
    /// while a walker stat'ed the file).
    func fetch(_ node: UInt64, _ ask: () throws(Errno) -> stat) throws(Errno) -> stat {
        let generation = nodes.withLock { $0.generation(of: node) }
        let attributes = try ask()
        let now = clock()
        if let generation { nodes.withLock { $0.record(attributes, of: node, at: now, generation: generation) } }
        return attributes
    }

    func record(_ attributes: stat, of node: UInt64) -> stat {
        let now = clock()
        nodes.withLock { $0.record(attributes, of: node, at: now) }
        return attributes
    }

    public func forget(_ node: UInt64, count: UInt64) {
        nodes.withLock { $0.forget(node, count: count) }
    }

    public func attributes(of node: UInt64, handle: UInt64?) throws(Errno) -> stat {
        let (path, open) = try target(node, handle: handle)
        if let open { return try fetch(node) { () throws(Errno) in try backend.attributes(of: open) } }
        return try fetch(node) { () throws(Errno) in try backend.attributes(of: path) }
    }

    public func setAttributes(_ changes: AttributeChanges, of node: UInt64, handle: UInt64?) throws(Errno) -> stat {
        let (path, open) = try target(node, handle: handle)
        if changes.size != nil, !path.isEmpty {
            close(handles.withLock { $0.discardDeferred(at: path, subtree: false) })
        }
        nodes.withLock { $0.invalidate(node) }
        let attributes = try backend.setAttributes(changes, of: path, handle: open)
        // Again: a refresh asked while the change was on its way may hold the old size.
        nodes.withLock { $0.invalidate(node) }
        return record(attributes, of: node)
    }

    /// Where a GETATTR or SETATTR goes: the handle the kernel named, else the path, else
    /// (for a file unlinked while open, which has no path) any handle open on the node.
    func target(_ node: UInt64, handle: UInt64?) throws(Errno) -> (path: String, handle: BackendHandle?) {
        if let handle, let open = handles.withLock({ $0[handle: handle] }) {
            try checkConnected()
            return ((try? path(of: node)) ?? "", open.backend)
        }
        do {
            return (try path(of: node), nil)
        } catch where error == Errno(ENOENT) {
            guard let open = handles.withLock({ $0.firstHandle(on: node) }) else { throw error }
            return ("", open.backend)
        }
    }

    /// The node's path on the share for messages; unlinked files say so.
    public func displayPath(of node: UInt64) -> String {
        (try? nodes.withLock { (table) throws(Errno) in try table.path(of: node) }) ?? "(deleted)"
    }

    public func readLink(_ node: UInt64) throws(Errno) -> String {
        try backend.readLink(try path(of: node))
    }

    // MARK: directories

    public func openDirectory(_ node: UInt64) throws(Errno) -> UInt64 {
        let path = try path(of: node)
        let writes = nodes.withLock { $0.writes }
        var entries = try backend.list(path)
        let pending = handles.withLock { $0.deletesPending(in: path) }
        if !pending.isEmpty { entries.removeAll { pending.contains($0.name) } }
        return directories.withLock { $0.insert(Listing(entries: entries, writes: writes)) }
    }

    /// The snapshot taken at opendir, so that offsets stay stable while the caller reads,
    /// and the drive's count of writes when it was taken: its attributes are current only
    /// while that count stands (see `remember`); nil once it moved, when they may be older
    /// than what the kernel knows.
    public func directoryEntries(_ handle: UInt64) throws(Errno) -> (entries: [DirectoryEntry], writes: UInt64?) {
        try checkConnected()
        guard let listing = directories.withLock({ $0[handle] }) else { throw Errno(EBADF) }
        return (listing.entries, nodes.withLock { $0.writes } == listing.writes ? listing.writes : nil)
    }

    public func releaseDirectory(_ handle: UInt64) {
        directories.withLock { $0.remove(handle) }
    }

    public func statistics() throws(Errno) -> statvfs {
        try checkConnected()
        return try backend.statistics()
    }

    /// Closes every handle still open on the share, then the share session itself.
    public func disconnect() {
        refresher.stop()
        close(handles.withLock { $0.retireAll() })
        backend.disconnect()
    }

    // MARK: helpers

    func checkConnected() throws(Errno) {
        if revoked.load(ordering: .acquiring) { throw Errno(EIO) }
    }

    func close(_ retired: [BackendHandle]) {
        guard !retired.isEmpty else { return }
        for handle in retired { backend.close(handle) }
        // A name unlinked while it was open goes from the share once its last ServerOpen has.
        for path in handles.withLock({ $0.takeDueDeletes() }) {
            try? backend.unlink(path)
            handles.withLock { $0.deleted(path) }
        }
    }

    func path(of node: UInt64) throws(Errno) -> String {
        try checkConnected()
        return try nodes.withLock { (table) throws(Errno) in try table.path(of: node) }
    }

    func path(of parent: UInt64, _ name: String) throws(Errno) -> String {
        try checkConnected()
        return try nodes.withLock { (table) throws(Errno) in try table.path(of: parent, name) }
    }

    func backendHandle(_ handle: UInt64) throws(Errno) -> BackendHandle {
        try checkConnected()
        guard let open = handles.withLock({ $0[handle: handle] }) else { throw Errno(EBADF) }
        return open.backend
    }
}
