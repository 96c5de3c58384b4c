import Glibc
import NetUseCore
import Synchronization

/// What the FUSE session asks of a drive, in inode numbers and handles, answered from the
/// share. FUSE-free, so that tests can drive it with a backend and no kernel.
///
/// Lock order: `nodes`, then `handles`, then `directories`; none is held across backend I/O.
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
    private let clock: @Sendable () -> Duration
    private let nodes = Mutex(NodeTable())
    private let handles: Mutex<FCBTable>
    private let directories = Mutex(DirectorySnapshots())
    /// Set by a forced delete: from then on every request answers EIO.
    private let revoked = Atomic(false)
    /// Asks again, in the background, for the attributes of nodes in use; `refreshing`
    /// holds the nodes it has queued, so that each is asked once.
    private let refresher = Courier()
    private let refreshing = Mutex(Set<UInt64>())

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
        // A node new to the table starts at generation 0: a write to it meanwhile moves that.
        let asked = nodes.withLock { table in table.existing(parent: parent, name: name).flatMap { table.generation(of: $0) } } ?? 0
        let attributes = try backend.attributes(of: path)
        return Entry(node: remember(parent: parent, name: name, attributes: attributes, generation: asked), attributes: attributes)
    }

    /// Past half the attribute timeout, a node in use is asked for again in the background,
    /// so that it is fresh before anyone must wait for it. An answer is recorded only if
    /// nothing was written to the node in the meantime, and it counts from when it was asked.
    private func refreshAhead(_ node: UInt64, age: Duration) {
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
    /// entries come without a LOOKUP). They are kept only if nothing was written to the node
    /// since they were asked for (`generation`), or to the drive (`writes`), when given.
    public func remember(parent: UInt64, name: String, attributes: stat? = nil, generation: UInt64? = nil,
                         writes: UInt64? = nil) -> UInt64 {
        let now = clock()
        return nodes.withLock { table in
            let node = table.remember(parent: parent, name: name)
            if let attributes, writes.map({ $0 == table.writes }) ?? true {
                table.record(attributes, of: node, at: now, generation: generation)
            }
            return node
        }
    }

    /// Asks the share for a node's attributes and keeps the answer unless something was
    /// written to the node while the question was out: an answer from before a write,
    /// recorded after it, would be served as fresh (a read after write and close saw 0 bytes
    /// while a walker stat'ed the file).
    private func fetch(_ node: UInt64, _ ask: () throws(Errno) -> stat) throws(Errno) -> stat {
        let generation = nodes.withLock { $0.generation(of: node) }
        let attributes = try ask()
        let now = clock()
        if let generation { nodes.withLock { $0.record(attributes, of: node, at: now, generation: generation) } }
        return attributes
    }

    private func record(_ attributes: stat, of node: UInt64) -> stat {
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
    private func target(_ node: UInt64, handle: UInt64?) throws(Errno) -> (path: String, handle: BackendHandle?) {
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

    // MARK: making and removing names

    public func makeDirectory(parent: UInt64, name: String, mode: mode_t, caller: Caller) throws(Errno) -> Entry {
        let path = try path(of: parent, name)
        try backend.makeDirectory(path, mode: mode, caller: caller)
        return try lookup(parent: parent, name: name)
    }

    public func makeNode(parent: UInt64, name: String, mode: mode_t, device: dev_t, caller: Caller) throws(Errno) -> Entry {
        try backend.makeNode(try path(of: parent, name), mode: mode, device: device, caller: caller)
        return try lookup(parent: parent, name: name)
    }

    public func symlink(target: String, parent: UInt64, name: String, caller: Caller) throws(Errno) -> Entry {
        try backend.symlink(target: target, at: try path(of: parent, name), caller: caller)
        return try lookup(parent: parent, name: name)
    }

    public func link(_ node: UInt64, parent: UInt64, name: String) throws(Errno) -> Entry {
        try backend.link(try path(of: node), to: try path(of: parent, name))
        return try lookup(parent: parent, name: name)
    }

    public func unlink(parent: UInt64, name: String) throws(Errno) {
        try remove(parent: parent, name: name, directory: false)
    }

    public func removeDirectory(parent: UInt64, name: String) throws(Errno) {
        try remove(parent: parent, name: name, directory: true)
    }

    /// Deferred handles on the name (and below a directory) are closed before the share
    /// is asked, so that it never sees a remove of a file this drive still holds for itself.
    private func remove(parent: UInt64, name: String, directory: Bool) throws(Errno) {
        let path = try path(of: parent, name)
        close(handles.withLock { $0.discardDeferred(at: path, subtree: directory) })
        try whileReleasing([path], subtree: directory) { () throws(Errno) in
            if directory {
                try backend.removeDirectory(path)
            } else {
                try backend.unlink(path)
            }
        }
        handles.withLock { $0.unlinked(path, subtree: directory) }
        nodes.withLock { $0.detach(parent: parent, name: name) }
    }

    public func rename(parent: UInt64, name: String, to newParent: UInt64, newName: String, flags: RenameFlags) throws(Errno) {
        // As a filesystem without RENAME_EXCHANGE answers, before any handle is let go.
        if flags.contains(.exchange) && !backend.capabilities.contains(.exchange) { throw Errno(EINVAL) }
        let (from, to) = try nodes.withLock { (table) throws(Errno) in
            (try table.path(of: parent, name), try table.path(of: newParent, newName))
        }
        close(handles.withLock { table in
            table.discardDeferred(at: from, subtree: true) + table.discardDeferred(at: to, subtree: true)
        })
        try whileReleasing([from, to], subtree: true) { () throws(Errno) in try backend.rename(from, to: to, flags: flags) }
        handles.withLock { table in
            if flags.contains(.exchange) {
                table.exchanged(from, to)
            } else {
                table.renamed(from, to: to)
            }
        }
        nodes.withLock { table in
            if flags.contains(.exchange) {
                table.exchange(parent: parent, name: name, with: newParent, otherName: newName)
            } else {
                table.move(parent: parent, name: name, to: newParent, newName: newName)
            }
        }
    }

    /// A share that refuses to remove or rename a file still open (SMB does, with EBUSY)
    /// may be refusing a handle whose RELEASE is still on its way: FUSE sends it after
    /// close() has returned, and its close on the share may still be waiting for a worker.
    /// Such a refusal gets a short grace for those releases and closes, trying again.
    private func whileReleasing(_ paths: [String], subtree: Bool, _ operation: () throws(Errno) -> Void) throws(Errno) {
        do {
            try operation()
        } catch where error.rawValue == EBUSY {
            let deadline = MonotonicClock.now() + .milliseconds(500)
            while true {
                while MonotonicClock.now() < deadline,
                      handles.withLock({ table in paths.contains { table.hasOpen(at: $0, subtree: subtree) } }) {
                    usleep(2_000)
                }
                close(handles.withLock { table in paths.flatMap { table.discardDeferred(at: $0, subtree: subtree) } })
                do {
                    return try operation()
                } catch where error.rawValue == EBUSY && MonotonicClock.now() < deadline {
                    usleep(5_000)
                }
            }
        }
    }

    // MARK: files

    /// An open the kernel asked for. It collapses onto a ServerOpen of the same kind on the
    /// same file when there is one (reviving it if deferred); otherwise the share opens the
    /// file. `keepCache` says the file is unchanged since the last open, so the kernel may
    /// keep its cached pages.
    public func open(_ node: UInt64, flags: Int32, caller: Caller) throws(Errno) -> (handle: UInt64, keepCache: Bool) {
        let path = try path(of: node)
        let kind = OpenKind(flags: flags)
        // A deferred ServerOpen older than the attribute timeout is closed, not revived:
        // while the drive holds a file open, Samba reports the write time it had when
        // opened, so another client's change in place would stay hidden past the timeout.
        let now = clock()
        close(handles.withLock { $0.discardDeferred(at: path, openedBefore: now - attributeTimeout) })
        if flags & O_TRUNC != 0 {
            close(handles.withLock { $0.discardDeferred(at: path, subtree: false) })
        } else if handles.withLock({ $0.mayCollapse(path: path, kind: kind) }) {
            // A ServerOpen proves only that someone could open the file once.
            try backend.checkAccess(path, flags: flags)
            // Within the attribute timeout the kernel trusts what the share last said of the
            // file; so does the revalidation, which saves the round trip of a stat.
            let cached = nodes.withLock { $0.cached(node, at: now, within: attributeTimeout) }
            let current: stat
            if let cached {
                current = cached.attributes
                refreshAhead(node, age: cached.age)
            } else {
                current = try fetch(node) { () throws(Errno) in try backend.attributes(of: path) }
            }
            let collapsed = handles.withLock {
                $0.collapse(path: path, kind: kind, current: current, node: node, opener: caller, now: now)
            }
            close(collapsed.retired)
            if let revived = collapsed.revived { backend.revived(revived) }
            if let handle = collapsed.handle {
                startsTelling(handle)
                return (handle, collapsed.keepCache)
            }
        }
        if flags & O_TRUNC != 0 { nodes.withLock { $0.invalidate(node) } }
        let backendHandle = try backend.open(path, flags: flags)
        return try register(backendHandle, path: path, kind: kind, node: node, caller: caller)
    }

    public func create(parent: UInt64, name: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> (Entry, UInt64) {
        let path = try path(of: parent, name)
        close(handles.withLock { $0.discardDeferred(at: path, subtree: false) })
        let backendHandle = try backend.create(path, flags: flags, mode: mode, caller: caller)
        let node = remember(parent: parent, name: name)
        do {
            let (handle, _) = try register(backendHandle, path: path, kind: OpenKind(flags: flags), node: node, caller: caller)
            let attributes = try backend.attributes(of: backendHandle)
            return (Entry(node: node, attributes: attributes), handle)
        } catch {
            forget(node, count: 1)
            throw error
        }
    }

    private func register(_ backendHandle: BackendHandle, path: String, kind: OpenKind, node: UInt64, caller: Caller) throws(Errno)
        -> (handle: UInt64, keepCache: Bool)
    {
        let attributes: stat
        do {
            attributes = try backend.attributes(of: backendHandle)
        } catch {
            backend.close(backendHandle)
            throw error
        }
        let now = clock()
        return handles.withLock {
            $0.insert(path: path, kind: kind, backend: backendHandle, attributes: attributes, node: node, opener: caller, now: now)
        }
    }

    public func read(_ handle: UInt64, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try backend.read(try backendHandle(handle), into: buffer, at: offset)
    }

    /// What was cached of the file's attributes is stale once the write is done.
    public func write(_ handle: UInt64, from buffer: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try checkConnected()
        guard let open = handles.withLock({ $0[handle: handle] }) else { throw Errno(EBADF) }
        defer { nodes.withLock { $0.invalidate(open.node) } }
        return try backend.write(open.backend, from: buffer, at: offset)
    }

    /// A close(2): tells of write-behind failures and keeps them for the next fsync or
    /// close, as Linux does for a close, which may be a child's of an inherited descriptor.
    public func flush(_ handle: UInt64) throws(Errno) {
        let open = try backendHandle(handle)
        try backend.flush(open)
        try tell(handle, backend: open, advance: false)
    }

    public func sync(_ handle: UInt64, dataOnly: Bool) throws(Errno) {
        let open = try backendHandle(handle)
        try backend.sync(open, dataOnly: dataOnly)
        try tell(handle, backend: open, advance: true)
    }

    private func tell(_ handle: UInt64, backend open: BackendHandle, advance: Bool) throws(Errno) {
        let failures = backend.writeFailures(open)
        guard failures.count > 0 else { return }
        if let error = handles.withLock({ $0.untold(failures, to: handle, advance: advance) }) { throw error }
    }

    /// A handle collapsed onto an open ServerOpen hears only of failures from now on.
    private func startsTelling(_ handle: UInt64) {
        guard let open = handles.withLock({ $0[handle: handle] }) else { return }
        let failures = backend.writeFailures(open.backend)
        if failures.count > 0 { handles.withLock { $0.told(failures, to: handle) } }
    }

    /// The kernel let go of a FileHandle. Its writes were flushed at close(2), so the
    /// ServerOpen may be deferred without holding back any data.
    public func release(_ handle: UInt64) {
        let now = clock()
        close(handles.withLock { $0.release(handle, now: now) })
    }

    /// The scavenger's tick: closes deferred ServerOpens whose closetimeo ran out.
    public func expireDeferred() {
        let now = clock()
        close(handles.withLock { $0.expire(now: now) })
    }

    /// Closes every deferred ServerOpen (delete does this before it unmounts); returns how many.
    public func flushDeferred() -> Int {
        let retired = handles.withLock { $0.flushDeferred() }
        close(retired)
        return retired.count
    }

    /// Forced delete: every request from now on fails with EIO. The handles on the share,
    /// the ones processes still hold included, are closed by `disconnect`, which the caller
    /// runs where a hung server cannot hold anyone up.
    public func revoke() {
        revoked.store(true, ordering: .releasing)
    }

    // MARK: directories

    public func openDirectory(_ node: UInt64) throws(Errno) -> UInt64 {
        let path = try path(of: node)
        let writes = nodes.withLock { $0.writes }
        let entries = try backend.list(path)
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

    private func checkConnected() throws(Errno) {
        if revoked.load(ordering: .acquiring) { throw Errno(EIO) }
    }

    private func close(_ retired: [BackendHandle]) {
        for handle in retired { backend.close(handle) }
    }

    private func path(of node: UInt64) throws(Errno) -> String {
        try checkConnected()
        return try nodes.withLock { (table) throws(Errno) in try table.path(of: node) }
    }

    private func path(of parent: UInt64, _ name: String) throws(Errno) -> String {
        try checkConnected()
        return try nodes.withLock { (table) throws(Errno) in try table.path(of: parent, name) }
    }

    private func backendHandle(_ handle: UInt64) throws(Errno) -> BackendHandle {
        try checkConnected()
        guard let open = handles.withLock({ $0[handle: handle] }) else { throw Errno(EBADF) }
        return open.backend
    }
}

/// A listing taken at opendir, and how many writes the drive had seen when it was asked for.
struct Listing {
    let entries: [DirectoryEntry]
    let writes: UInt64
}

/// Directory listings taken at opendir, by directory handle.
struct DirectorySnapshots {
    private var snapshots: [UInt64: Listing] = [:]
    private var nextID: UInt64 = 1

    mutating func insert(_ listing: Listing) -> UInt64 {
        let id = nextID
        nextID += 1
        snapshots[id] = listing
        return id
    }

    subscript(id: UInt64) -> Listing? { snapshots[id] }

    mutating func remove(_ id: UInt64) { snapshots[id] = nil }
}
