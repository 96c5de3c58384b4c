import Glibc
import NetUseCore
import Synchronization

/// Open files: opens that share a ServerOpen, reads and writes through it, and the deferred
/// close of what the last handle let go.
extension Redirector {
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
            try backend.checkAccess(path, flags: flags)
            if let leased = handles.withLock({ $0.collapseUnderReadLease(path: path, kind: kind, node: node, opener: caller) }) {
                // The kernel's next lookup still wants fresh attributes: fetched before it asks.
                if let cached = nodes.withLock({ $0.cached(node, at: now, within: attributeTimeout) }) {
                    refreshAhead(node, age: cached.age)
                }
                if let revived = leased.revived { backend.revived(revived) }
                startsTelling(leased.handle)
                return (leased.handle, true)
            }
            // A ServerOpen proves only that someone could open the file once (checked above).
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
        // The share still has a file deleted pending under the name, which processes here
        // hold: a new file cannot take the name until they let go.
        let pending = try handles.withLock { (table) throws(Errno) -> [BackendHandle] in
            if table.isDeletePending(path) { throw Errno(EBUSY) }
            return table.discardDeferred(at: path, subtree: false)
        }
        close(pending)
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

    func register(_ backendHandle: BackendHandle, path: String, kind: OpenKind, node: UInt64, caller: Caller) throws(Errno)
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
        // The lease is read under the table's lock, so that a break that comes meanwhile
        // either is in the answer or finds the ServerOpen recorded.
        return handles.withLock {
            $0.insert(path: path, kind: kind, backend: backendHandle, caching: backend.caching(backendHandle),
                      attributes: attributes, node: node, opener: caller, now: now)
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

    /// copy_file_range: done by the share where it can. The destination's cached attributes
    /// are stale once it is done; the kernel drops its own pages of the range.
    public func copyRange(from source: UInt64, at sourceOffset: off_t, to destination: UInt64, at destinationOffset: off_t,
                          length: Int) throws(Errno) -> Int {
        try checkConnected()
        guard let from = handles.withLock({ $0[handle: source] }), let to = handles.withLock({ $0[handle: destination] }) else {
            throw Errno(EBADF)
        }
        defer { nodes.withLock { $0.invalidate(to.node) } }
        return try backend.copyRange(from: from.backend, at: sourceOffset, to: to.backend, at: destinationOffset, length: length)
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

    func tell(_ handle: UInt64, backend open: BackendHandle, advance: Bool) throws(Errno) {
        let failures = backend.writeFailures(open)
        guard failures.count > 0 else { return }
        if let error = handles.withLock({ $0.untold(failures, to: handle, advance: advance) }) { throw error }
    }

    /// A handle collapsed onto an open ServerOpen hears only of failures from now on.
    func startsTelling(_ handle: UInt64) {
        guard let open = handles.withLock({ $0[handle: handle] }) else { return }
        let failures = backend.writeFailures(open.backend)
        if failures.count > 0 { handles.withLock { $0.told(failures, to: handle) } }
    }

    /// The kernel let go of a FileHandle. Its writes were flushed at close(2), so the
    /// ServerOpen may be deferred without holding back any data.
    public func release(_ handle: UInt64) {
        if backend.capabilities.contains(.byteRangeLocks) { releaseLocks(through: handle) }
        let now = clock()
        close(handles.withLock { $0.release(handle, now: now) })
    }

    /// The share broke a lease: a deferred ServerOpen that may no longer keep its handle is
    /// closed (so that the other client's open, rename or delete goes on), and without read
    /// caching what the drive and the kernel cached of the file goes.
    func leaseBroken(_ backendHandle: BackendHandle, caching: HandleCaching) {
        let (retired, node) = handles.withLock { $0.broke(backendHandle, caching: caching) }
        close(retired)
        guard !caching.contains(.read), let node else { return }
        nodes.withLock { $0.invalidate(node) }
        kernelCache.withLock { $0?(node) }
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
}
