import Glibc
import NetUseCore
import Redirector
import SMB2

/// File data through the native engine: opens, reads, writes gathered and sent behind the
/// writer (the same `WriteBehind` as the libsmbclient backend's, on a courier), and closes.
extension NativeSMBShare {
    public func open(_ path: String, flags: Int32) throws(Errno) -> BackendHandle {
        try openFile(path, flags: flags & ~(O_CREAT | O_EXCL))
    }

    public func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> BackendHandle {
        try openFile(path, flags: flags | O_CREAT)
    }

    func openFile(_ path: String, flags: Int32) throws(Errno) -> BackendHandle {
        let disposition: SMB2Disposition
        switch (flags & O_CREAT != 0, flags & O_EXCL != 0, flags & O_TRUNC != 0) {
        case (true, true, _): disposition = .create
        case (true, false, true): disposition = .overwriteIf
        case (true, false, false): disposition = .openIf
        case (false, _, true): disposition = .overwrite
        case (false, _, false): disposition = .open
        }
        if flags & O_TRUNC != 0 {
            settle(path: path)
            changes.add(1, ordering: .releasing)
        }
        defer { if flags & (O_CREAT | O_TRUNC) != 0 { listingAhead.forget(parentOf: path) } }
        return try onTree { (tree, generation) throws(Errno) in
            try openLeased(full(path), path: path, flags: flags, disposition: disposition, on: tree, generation: generation)
        }
    }

    public func read(_ handle: BackendHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        let file = try file(handle)
        settle(path: file.path)
        if let count = readHead(file, into: buffer, at: offset) { return count }
        return try onFile(handle) { (tree, id) throws(Errno) in try tree.read(id, into: buffer, at: UInt64(offset)) }
    }

    /// Gathered and sent behind the writer. A batch the share refuses is counted in the
    /// file's `writeFailures`, which every descriptor open on it hears of at its next fsync
    /// or close; O_SYNC and O_DSYNC need nothing here, the kernel follows each such write
    /// with an FSYNC.
    public func write(_ handle: BackendHandle, from buffer: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        let file = try file(handle)
        changes.add(1, ordering: .releasing)
        defer { listingAhead.forget(parentOf: file.path) }
        // Writes wait on the drive only under a lease that lets them (W), as cifs.ko and the
        // Windows redirector cache them only under one: without it another client's later
        // write could land first and be overwritten by ours. Over the cache budget too, the
        // writer waits for the share. Either way what is gathered goes first, then this write,
        // straight through.
        if !file.open.withLock({ $0.caching.contains(.write) }) || !behind.hasRoom(for: buffer.count, in: file) {
            drain(file)
            return try onFile(handle) { (tree, id) throws(Errno) in try tree.write(id, from: buffer, at: UInt64(offset)) }
        }
        behind.gather(buffer, at: offset, in: file, on: couriers[Int(handle.rawValue) % couriers.count]) { [self] bytes, offset throws(Errno) in
            let written = try onFile(handle) { (tree, id) throws(Errno) in try tree.write(id, from: bytes, at: UInt64(offset)) }
            if written != bytes.count { throw Errno(EIO) }
        }
        return buffer.count
    }

    func drain(_ file: NativeFile) {
        behind.drain(file)
    }

    /// Waits until the write-behind of every open file `matching` is on the share, so that
    /// what the share answers next includes it.
    func settle(_ matching: @escaping (NativeFile) -> Bool) {
        behind.settle { files.withLock { $0.table.values.filter(matching) } }
    }

    func settle(path: String) {
        settle { $0.path == path }
    }

    public func writeFailures(_ handle: BackendHandle) -> WriteFailures {
        (try? file(handle)).map { behind.failures(of: $0) } ?? WriteFailures()
    }

    /// A close(2): what the file's writers wrote is on the share when this returns.
    public func flush(_ handle: BackendHandle) throws(Errno) {
        drain(try file(handle))
    }

    /// The write-behind, then the server's own flush.
    public func sync(_ handle: BackendHandle, dataOnly: Bool) throws(Errno) {
        drain(try file(handle))
        try onFile(handle) { (tree, id) throws(Errno) in try tree.flush(id) }
    }

    /// An SMB2 LOCK on the file's open. A lock may wait: a break thread or a reconnect is
    /// not held up by it, and the process's signal cancels it.
    public func lock(_ handle: BackendHandle, _ range: LockRange, _ request: LockRequest, waiting: LockWait?) throws(Errno) {
        let kind: SMB2LockKind = request == .unlock ? .unlock : request == .exclusive ? .exclusive : .shared
        // SMB2 ranges end at 2^64: a lock to the end of any file is one byte short of it.
        let length = range.end == .max ? UInt64.max - range.start : range.length
        try onFile(handle) { (tree, id) throws(Errno) in
            try tree.lock(id, offset: range.start, length: length, kind,
                          waiting: waiting.map { wait in { giveUp in wait.onInterrupt(giveUp) } })
        }
    }

    /// The server copies (FSCTL_SRV_COPYCHUNK_WRITE): nothing crosses the network. What the
    /// drive still holds to write to either file goes first, and the copy stops at the
    /// source's end, as copy_file_range does.
    public func copyRange(from source: BackendHandle, at sourceOffset: off_t, to destination: BackendHandle,
                          at destinationOffset: off_t, length: Int) throws(Errno) -> Int {
        let (from, to) = (try file(source), try file(destination))
        guard from.flags & O_ACCMODE != O_WRONLY else { throw Errno(EOPNOTSUPP) }
        settle(path: from.path)
        settle(path: to.path)
        changes.add(1, ordering: .releasing)
        defer { listingAhead.forget(parentOf: to.path) }
        let size = try onFile(source) { (tree, id) throws(Errno) in try tree.info(of: id).size }
        guard UInt64(sourceOffset) < size else { return 0 }
        let count = min(UInt64(length), size - UInt64(sourceOffset))
        let target = try onFile(destination) { (_, id) throws(Errno) in id }
        do {
            let copied = try onFile(source) { (tree, id) throws(Errno) in
                // SMB 2.0.2 has no COPYCHUNK_WRITE.
                guard tree.session.dialect > 0x202 else { throw Errno(EOPNOTSUPP) }
                return try tree.copy(from: id, at: UInt64(sourceOffset), to: target, at: UInt64(destinationOffset), length: count)
            }
            return Int(copied)
        } catch where error.rawValue != EIO {
            // The server will not copy these (a share or range it refuses): the kernel copies
            // through the drive instead.
            throw Errno(EOPNOTSUPP)
        }
    }

    public func close(_ handle: BackendHandle) {
        guard let file = try? file(handle) else { return }
        drain(file)
        files.withLock { _ = $0.table.removeValue(forKey: handle.rawValue) }
        file.data.withLock { state in
            state.closed = true
            state.account(CacheBudget.shared)
        }
        let open = file.open.withLock { open in
            defer { open.closed = true }
            return open
        }
        let (tree, generation) = link.withLock { ($0.tree, $0.generation) }
        guard let tree, generation == open.generation else { return }
        // The close ends the lease: a break on its way for it concerns nobody.
        try? tree.close(open.id)
        if let target = open.breaks { tree.session.stopBreaks(target) }
    }
}
