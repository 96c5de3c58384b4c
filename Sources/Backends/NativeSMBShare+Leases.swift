import Glibc
import NetUseCore
import Redirector
import SMB2
import Synchronization

/// Leases: every open asks for one (read-handle for readers, read-write-handle for
/// writers; a batch oplock where the server has no leases), so that the redirector may keep
/// a closed file's handle and its pages only while no other client wants the file. A break
/// is answered after the drive has let go of what it may no longer keep: written data goes
/// out, deferred handles close, cached pages and attributes go.
extension NativeSMBShare {
    public func caching(_ handle: BackendHandle) -> HandleCaching? {
        guard let file = try? file(handle) else { return [] }
        return file.open.withLock { $0.caching }
    }

    public func observeBreaks(_ observer: @escaping @Sendable (BackendHandle, HandleCaching) -> Void) {
        breakObserver.withLock { $0 = observer }
    }

    /// Opens the file asking for a lease, on `tree`. The break handler is in place before
    /// the open is sent, since a break may overtake the open's answer.
    func openLeased(_ name: String, path: String, flags: Int32, disposition: SMB2Disposition,
                    on tree: SMB2Tree, generation: Int) throws(Errno) -> BackendHandle {
        let wanted: HandleCaching = flags & O_ACCMODE == O_RDONLY ? [.read, .handle] : [.read, .write, .handle]
        let lease = SMB2LeaseRequest(key: .random(), caching: wanted)
        let handle = BackendHandle(files.withLock { files in
            defer { files.next += 1 }
            return files.next
        })
        let session = tree.session
        // A break that comes before the file is in the table is kept for it here.
        let early = Mutex<HandleCaching?>(nil)
        let handler: @Sendable (SMB2Break) -> Void = { [weak self] broken in
            guard let self, (try? self.file(handle)) != nil else {
                return early.withLock { $0 = ($0 ?? broken.caching).intersection(broken.caching) }
            }
            self.broke(handle, broken)
        }
        var target = SMB2Break.Target.lease(lease.key)
        if asksForLeases && session.leases { session.onBreak(target, handler) }
        let id: SMB2FileId
        var caching: HandleCaching
        let info: SMB2FileInfo
        var durable: SMB2Durable? = asksForLeases ? .fresh() : nil
        var openedAt: UInt64 = 0
        var head: (bytes: [UInt8], changes: UInt64)?
        do {
            // A reader reads next: its first bytes come with the open, after what the drive
            // still holds to write to the file.
            let reads = flags & O_ACCMODE == O_RDONLY && disposition == .open && asksForLeases && session.leases
            if reads { settle(path: path) }
            let before = changes.load(ordering: .acquiring)
            openedAt = before
            let opened = try tree.open(name, access: Self.access(flags), disposition: disposition,
                                       options: flags & O_CREAT != 0 ? .nonDirectory : [],
                                       lease: asksForLeases ? lease : nil, durable: durable,
                                       readLength: reads ? Self.headLength : nil)
            (id, info, caching) = (opened.file, opened.info, opened.caching)
            if !opened.durable { durable = nil }
            head = opened.head.map { ($0, before) }
        } catch {
            session.stopBreaks(target)
            throw error
        }
        if asksForLeases && !session.leases {
            target = .oplock(id)
            session.onBreak(target, handler)
        }
        let file = NativeFile(path: path, flags: flags & ~(O_CREAT | O_EXCL | O_TRUNC), lease: lease,
                              open: NativeFile.Open(id: id, generation: generation, durable: durable), breakHandler: handler)
        file.head.withLock { $0 = head }
        file.opened.withLock { $0 = (stat(info, path: path), openedAt) }
        files.withLock { files in
            file.open.withLock { open in
                if let broken = early.withLock({ $0 }) { caching.formIntersection(broken) }
                open.caching = caching
                open.breaks = caching.isEmpty ? nil : target
            }
            files.table[handle.rawValue] = file
        }
        if caching.isEmpty { session.stopBreaks(target) }
        return handle
    }

    /// How much of a file a reader's open reads with it: one credit's worth, more than the
    /// kernel's first read-ahead window.
    static let headLength = 65_536

    /// A read the file's head answers: while the read lease holds and nothing was written
    /// through the drive since, for a range inside it (or reaching past the file's end).
    func readHead(_ file: NativeFile, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) -> Int? {
        guard let head = file.head.withLock({ $0 }) else { return nil }
        guard file.open.withLock({ $0.caching.contains(.read) }), head.changes == changes.load(ordering: .acquiring) else {
            file.head.withLock { $0 = nil }
            return nil
        }
        let start = Int(offset)
        guard start + buffer.count <= head.bytes.count || head.bytes.count < Self.headLength else { return nil }
        let count = max(0, min(buffer.count, head.bytes.count - start))
        if count > 0 {
            head.bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[start..<(start + count)])) }
        }
        return count
    }

    /// On the session's break thread: lets go of what the lease no longer covers, then
    /// answers the server (unless the redirector closed the handle, which ends the lease).
    func broke(_ handle: BackendHandle, _ broken: SMB2Break) {
        guard let file = try? file(handle) else { return }
        let before = file.open.withLock { open in
            defer { open.caching.formIntersection(broken.caching) }
            return open.caching
        }
        // Written data the drive still holds goes to the server before another client may read.
        if before.contains(.write) && !broken.caching.contains(.write) { drain(file) }
        if !broken.caching.contains(.read) {
            file.head.withLock { $0 = nil }
            listingAhead.forget(parentOf: file.path)
        }
        breakObserver.withLock { $0 }?(handle, broken.caching)
        let open = file.open.withLock { $0 }
        guard broken.acknowledgmentRequired, !open.closed else { return }
        let (tree, generation) = link.withLock { ($0.tree, $0.generation) }
        guard let tree, generation == open.generation else { return }
        tree.acknowledge(broken)
    }

    /// A new connection: the leases went with the old one. The redirector hears it as a
    /// break of everything, on a courier, since the caller may be serving one of the files.
    func leasesLost() {
        let held = files.withLock { files in
            files.table.filter { _, file in
                file.open.withLock { open in
                    defer { open.caching = []; open.breaks = nil }
                    return !open.caching.isEmpty
                }
            }.map { BackendHandle($0.key) }
        }
        guard !held.isEmpty, let observer = breakObserver.withLock({ $0 }) else { return }
        couriers[0].send { held.forEach { observer($0, []) } }
    }
}
