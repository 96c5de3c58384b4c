import CFuse
import Glibc
import NetUseCore
import Redirector

/// libfuse's low-level callbacks, each turned into one Redirector call and one reply.
/// Callbacks run on libfuse worker threads; pointers they receive live only for the call.
enum FUSEOperations {
    static func table() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, connection in
            // Large requests: libfuse caps max_write at its buffer (1 MiB) and asks the
            // kernel for as many pages per request.
            connection?.pointee.max_write = 1 << 20
            connection?.pointee.max_readahead = 1 << 20
            // A write, truncate or chown by someone else clears set-user-ID and set-group-ID
            // bits. The share does that itself when the call is made as the caller; the
            // kernel's own way, a SETATTR of the mode, would be refused to a non-owner.
            if let connection, connection.pointee.capable & UInt32(FUSE_CAP_HANDLE_KILLPRIV) != 0 {
                connection.pointee.want |= UInt32(FUSE_CAP_HANDLE_KILLPRIV)
            }
            // Locks go to the share where it keeps them; elsewhere the kernel keeps them itself.
            let drive = Unmanaged<MountContext>.fromOpaque(userdata!).takeUnretainedValue().redirector
            if !drive.backend.capabilities.contains(.byteRangeLocks) {
                connection?.pointee.want &= ~UInt32(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS)
            }
        }
        ops.lookup = { request, parent, name in
            entryReply(request!) { try $0.lookup(parent: parent, name: String(cString: name!)) }
        }
        ops.forget = { request, node, count in
            redirector(request!).forget(node, count: count)
            fuse_reply_none(request)
        }
        ops.forget_multi = { request, count, forgets in
            let redirector = redirector(request!)
            for index in 0..<count {
                redirector.forget(forgets![index].ino, count: forgets![index].nlookup)
            }
            fuse_reply_none(request)
        }
        ops.getattr = { request, node, info in
            let handle = info.map { $0.pointee.fh }
            attributesReply(request!) { try $0.attributes(of: node, handle: handle) }
        }
        ops.setattr = { request, node, attributes, toSet, info in
            let changes = attributeChanges(attributes!.pointee, toSet: toSet)
            let handle = info.map { $0.pointee.fh }
            attributesReply(request!) { try $0.setAttributes(changes, of: node, handle: handle) }
        }
        ops.readlink = { request, node in
            guard let drive = admitted(request!) else { return }
            do {
                let target = try drive.readLink(node)
                fuse_reply_readlink(request, target)
            } catch {
                fuse_reply_err(request, code(error))
            }
        }
        ops.mknod = { request, parent, name, mode, device in
            let caller = caller(request!)
            entryReply(request!) { try $0.makeNode(parent: parent, name: String(cString: name!), mode: mode, device: device, caller: caller) }
        }
        ops.mkdir = { request, parent, name, mode in
            let caller = caller(request!)
            entryReply(request!) { try $0.makeDirectory(parent: parent, name: String(cString: name!), mode: mode, caller: caller) }
        }
        ops.unlink = { request, parent, name in
            errorReply(request!) { try $0.unlink(parent: parent, name: String(cString: name!)) }
        }
        ops.rmdir = { request, parent, name in
            errorReply(request!) { try $0.removeDirectory(parent: parent, name: String(cString: name!)) }
        }
        ops.symlink = { request, target, parent, name in
            let caller = caller(request!)
            entryReply(request!) { try $0.symlink(target: String(cString: target!), parent: parent, name: String(cString: name!), caller: caller) }
        }
        ops.rename = { request, parent, name, newParent, newName, flags in
            let known = RenameFlags.noReplace.rawValue | RenameFlags.exchange.rawValue
            guard flags & ~known == 0 else {
                fuse_reply_err(request, EINVAL)
                return
            }
            errorReply(request!) {
                try $0.rename(parent: parent, name: String(cString: name!), to: newParent,
                              newName: String(cString: newName!), flags: RenameFlags(rawValue: flags))
            }
        }
        ops.link = { request, node, newParent, newName in
            // The request is gone once answered: the session is taken first.
            let session = context(request!).session
            entryReply(request!) { try $0.link(node, parent: newParent, name: String(cString: newName!)) }
            // The new name is a node of its own (nodes are paths): what the kernel holds of the
            // old one, its link count first, is stale now. Attributes only, so this never blocks.
            if let session { _ = fuse_lowlevel_notify_inval_inode(session, node, -1, 0) }
        }
        ops.open = { request, node, info in
            guard let drive = admitted(request!) else { return }
            do {
                let opened = try drive.open(node, flags: info!.pointee.flags, caller: caller(request!))
                info!.pointee.fh = opened.handle
                // The FCB vouches that the file has not changed since the kernel cached it.
                info!.pointee.keep_cache = opened.keepCache ? 1 : 0
                info!.pointee.noflush = noFlush(info!.pointee.flags, drive)
                fuse_reply_open(request, info)
            } catch {
                fuse_reply_err(request, code(error))
            }
        }
        ops.create = { request, parent, name, mode, info in
            guard let drive = admitted(request!) else { return }
            do {
                let (entry, handle) = try drive.create(
                    parent: parent, name: String(cString: name!), flags: info!.pointee.flags, mode: mode, caller: caller(request!))
                info!.pointee.fh = handle
                info!.pointee.noflush = noFlush(info!.pointee.flags, drive)
                var parameters = entryParameters(entry, timeout: drive.kernelTimeout)
                fuse_reply_create(request, &parameters, info)
            } catch {
                fuse_reply_err(request, code(error))
            }
        }
        ops.read = { request, _, size, offset, info in
            let buffer = WorkerThread.current.readBuffer(size)
            do {
                let count = try redirector(request!).read(info!.pointee.fh, into: buffer, at: offset)
                fuse_reply_buf(request, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), count)
            } catch {
                fuse_reply_err(request, code(error))
            }
        }
        ops.write = { request, _, data, size, offset, info in
            do {
                // Made as the writer, so that the share clears privilege bits as it would.
                if redirector(request!).backend.capabilities.contains(.actsAsCaller) { try RequestIdentity.assume(for: request!) }
                let count = try redirector(request!).write(info!.pointee.fh, from: UnsafeRawBufferPointer(start: data, count: size), at: offset)
                fuse_reply_write(request, count)
            } catch {
                fuse_reply_err(request, code(error))
            }
        }
        ops.flush = { request, _, info in
            let handle = info!.pointee.fh
            let owner = LockOwner(id: info!.pointee.lock_owner, flock: false)
            errorReply(request!) { drive in
                if drive.backend.capabilities.contains(.byteRangeLocks) { drive.releaseLocks(handle, owner: owner) }
                try drive.flush(handle)
            }
        }
        ops.fsync = { request, _, dataOnly, info in
            let handle = info!.pointee.fh
            errorReply(request!) { try $0.sync(handle, dataOnly: dataOnly != 0) }
        }
        ops.release = { request, _, info in
            let drive = redirector(request!)
            if info!.pointee.flock_release != 0 {
                drive.releaseLocks(info!.pointee.fh, owner: LockOwner(id: info!.pointee.lock_owner, flock: true))
            }
            drive.release(info!.pointee.fh)
            fuse_reply_err(request, 0)
        }
        ops.copy_file_range = { request, _, sourceOffset, source, _, destinationOffset, destination, length, _ in
            do {
                let count = try redirector(request!).copyRange(from: source!.pointee.fh, at: sourceOffset, to: destination!.pointee.fh,
                                                               at: destinationOffset, length: length)
                fuse_reply_write(request, count)
            } catch {
                fuse_reply_err(request, code(error))
            }
        }
        ops.getlk = { request, _, info, lock in
            let drive = redirector(request!)
            let asked = lock!.pointee
            do {
                var answer = asked
                if let held = try drive.testLock(info!.pointee.fh, owner: LockOwner(id: info!.pointee.lock_owner, flock: false),
                                                 range: lockRange(asked), exclusive: asked.l_type == F_WRLCK) {
                    answer.l_type = Int16(held.exclusive ? F_WRLCK : F_RDLCK)
                    answer.l_whence = Int16(SEEK_SET)
                    answer.l_start = off_t(held.range.start)
                    answer.l_len = held.range.end == .max ? 0 : off_t(held.range.length)
                    answer.l_pid = held.pid
                } else {
                    answer.l_type = Int16(F_UNLCK)
                }
                fuse_reply_lock(request, &answer)
            } catch {
                fuse_reply_err(request, code(error))
            }
        }
        ops.setlk = { request, _, info, lock, sleep in
            let asked = lock!.pointee
            let kind: LockRequest = asked.l_type == F_UNLCK ? .unlock : asked.l_type == F_WRLCK ? .exclusive : .shared
            let owner = LockOwner(id: info!.pointee.lock_owner, flock: false)
            let pid = fuse_req_ctx(request)!.pointee.pid
            lockReply(request!, wait: sleep != 0 && kind != .unlock) { (drive, waiting) throws(Errno) in
                try drive.setLock(info!.pointee.fh, owner: owner, range: lockRange(asked), kind, pid: pid, waiting: waiting)
            }
        }
        ops.flock = { request, _, info, operation in
            let kind: LockRequest = operation & LOCK_UN != 0 ? .unlock : operation & LOCK_EX != 0 ? .exclusive : .shared
            let owner = LockOwner(id: info!.pointee.lock_owner, flock: true)
            let pid = fuse_req_ctx(request)!.pointee.pid
            // EAGAIN is EWOULDBLOCK on Linux: flock's answer already.
            lockReply(request!, wait: operation & LOCK_NB == 0 && kind != .unlock) { (drive, waiting) throws(Errno) in
                try drive.setLock(info!.pointee.fh, owner: owner, range: .wholeFile, kind, pid: pid, waiting: waiting)
            }
        }
        ops.opendir = { request, node, info in
            guard let drive = admitted(request!) else { return }
            do {
                info!.pointee.fh = try drive.openDirectory(node)
                fuse_reply_open(request, info)
            } catch {
                fuse_reply_err(request, code(error))
            }
        }
        ops.readdir = { request, node, size, offset, info in
            readDirectory(request!, node: node, size: size, offset: offset, handle: info!.pointee.fh, plus: false)
        }
        ops.readdirplus = { request, node, size, offset, info in
            readDirectory(request!, node: node, size: size, offset: offset, handle: info!.pointee.fh, plus: true)
        }
        ops.releasedir = { request, _, info in
            redirector(request!).releaseDirectory(info!.pointee.fh)
            fuse_reply_err(request, 0)
        }
        ops.fsyncdir = { request, _, _, _ in
            fuse_reply_err(request, 0)
        }
        ops.statfs = { request, _ in
            guard let drive = admitted(request!) else { return }
            do {
                var statistics = try drive.statistics()
                fuse_reply_statfs(request, &statistics)
            } catch {
                fuse_reply_err(request, code(error))
            }
        }
        return ops
    }
}

// Free functions, not static members: a closure that becomes a C function pointer
// may not capture anything, not even the enclosing type.

/// A struct flock as libfuse passes it (l_len 0: to the end of any file) as a range.
private func lockRange(_ lock: flock) -> LockRange {
    let start = UInt64(max(0, lock.l_start))
    return LockRange(start: start, end: lock.l_len <= 0 ? .max : start + UInt64(lock.l_len))
}

/// Answers a lock request. One that may wait can be interrupted (the process got a
/// signal): libfuse then calls back, and the share gives the request up (EINTR).
private func lockReply(_ request: fuse_req_t, wait: Bool, _ body: (Redirector, LockWait?) throws(Errno) -> Void) {
    let drive = redirector(request)
    let waiting = wait ? LockWait() : nil
    if let waiting {
        fuse_req_interrupt_func(request, { _, data in
            Unmanaged<LockWait>.fromOpaque(data!).takeUnretainedValue().interrupt()
        }, Unmanaged.passUnretained(waiting).toOpaque())
    }
    var result: Int32 = 0
    do throws(Errno) {
        try body(drive, waiting)
    } catch {
        result = error.rawValue
    }
    // No callback may come once `waiting` is gone.
    if waiting != nil { fuse_req_interrupt_func(request, nil, nil) }
    fuse_reply_err(request, result)
}

private func context(_ request: fuse_req_t) -> MountContext {
    Unmanaged<MountContext>.fromOpaque(fuse_req_userdata(request)!).takeUnretainedValue()
}

private func redirector(_ request: fuse_req_t) -> Redirector { context(request).redirector }

/// The drive for a request by name, or nil (after answering EACCES) when the caller is
/// neither the drive's owner nor root on a mount every user can reach. On a drive that acts
/// as its callers, the thread takes the requesting process's identity first. Requests on
/// open handles are not checked: access was granted when the handle was opened.
private func admitted(_ request: fuse_req_t) -> Redirector? {
    let drive = redirector(request)
    if let owner = drive.admittedUID {
        let uid = fuse_req_ctx(request)!.pointee.uid
        guard uid == owner || uid == 0 else {
            fuse_reply_err(request, EACCES)
            return nil
        }
    }
    if drive.backend.capabilities.contains(.actsAsCaller) {
        do {
            try RequestIdentity.assume(for: request)
        } catch {
            fuse_reply_err(request, EACCES)
            return nil
        }
    }
    return drive
}

/// The errno to answer; Redirector calls throw only Errno.
private func code(_ error: any Error) -> Int32 { (error as? Errno)?.rawValue ?? EIO }

private func caller(_ request: fuse_req_t) -> Caller {
    let context = fuse_req_ctx(request)!.pointee
    return Caller(uid: context.uid, gid: context.gid, pid: context.pid)
}

private func entryParameters(_ entry: Redirector.Entry, timeout: Double) -> fuse_entry_param {
    var parameters = fuse_entry_param()
    parameters.ino = entry.node
    parameters.attr = entry.attributes
    let trusted = entry.timeout.map { min($0.seconds, timeout) } ?? timeout
    parameters.attr_timeout = attributeTimeout(entry.attributes, trusted)
    parameters.entry_timeout = trusted
    return parameters
}

/// A file with several names is a node per name here, and a change through one name (a
/// chmod, a link, an unlink) does not reach what the kernel keeps of the others: their
/// attributes are never kept.
private func attributeTimeout(_ attributes: stat, _ timeout: Double) -> Double {
    attributes.st_nlink > 1 && attributes.st_mode & S_IFMT != S_IFDIR ? 0 : timeout
}


extension Redirector {
    /// How long the kernel may trust attributes and names without asking again.
    var kernelTimeout: Double { attributeTimeout.seconds }
}

private func entryReply(_ request: fuse_req_t, _ body: (Redirector) throws -> Redirector.Entry) {
    guard let drive = admitted(request) else { return }
    do {
        var parameters = entryParameters(try body(drive), timeout: drive.kernelTimeout)
        fuse_reply_entry(request, &parameters)
    } catch {
        fuse_reply_err(request, code(error))
    }
}

private func attributesReply(_ request: fuse_req_t, _ body: (Redirector) throws -> stat) {
    guard let drive = admitted(request) else { return }
    do {
        var attributes = try body(drive)
        fuse_reply_attr(request, &attributes, attributeTimeout(attributes, drive.kernelTimeout))
    } catch {
        fuse_reply_err(request, code(error))
    }
}

private func errorReply(_ request: fuse_req_t, _ body: (Redirector) throws -> Void) {
    guard let drive = admitted(request) else { return }
    do {
        try body(drive)
        fuse_reply_err(request, 0)
    } catch {
        fuse_reply_err(request, code(error))
    }
}

private func attributeChanges(_ attributes: stat, toSet: Int32) -> AttributeChanges {
    var changes = AttributeChanges()
    if toSet & FUSE_SET_ATTR_MODE != 0 { changes.mode = attributes.st_mode }
    if toSet & FUSE_SET_ATTR_UID != 0 { changes.uid = attributes.st_uid }
    if toSet & FUSE_SET_ATTR_GID != 0 { changes.gid = attributes.st_gid }
    if toSet & FUSE_SET_ATTR_SIZE != 0 { changes.size = attributes.st_size }
    if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 {
        changes.accessTime = AttributeChanges.timeNow
    } else if toSet & FUSE_SET_ATTR_ATIME != 0 {
        changes.accessTime = attributes.st_atim
    }
    if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 {
        changes.modificationTime = AttributeChanges.timeNow
    } else if toSet & FUSE_SET_ATTR_MTIME != 0 {
        changes.modificationTime = attributes.st_mtim
    }
    return changes
}

/// A descriptor that cannot write has nothing to flush at close(2): the kernel may skip
/// the FLUSH round trip (which would halve the rate of a batch file's reopens). One that can
/// waits there for its write-behind. FLUSH is where a process's POSIX locks end; without
/// it, those taken through the descriptor end at its RELEASE.
private func noFlush(_ flags: Int32, _ drive: Redirector) -> UInt32 {
    flags & O_ACCMODE == O_RDONLY ? 1 : 0
}

/// Serves a READDIR or READDIRPLUS from the snapshot taken at opendir; entry i has
/// offset i + 1. READDIRPLUS hands the kernel a node reference per entry, so one is
/// counted only for an entry that fits in the reply.
private func readDirectory(_ request: fuse_req_t, node: UInt64, size: Int, offset: off_t, handle: UInt64, plus: Bool) {
    let redirector = redirector(request)
    let entries: [DirectoryEntry]
    let writes: UInt64?
    do {
        (entries, writes) = try redirector.directoryEntries(handle)
    } catch {
        fuse_reply_err(request, code(error))
        return
    }
    let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
    defer { buffer.deallocate() }
    var used = 0
    var index = Int(offset)
    while index < entries.count {
        let entry = entries[index]
        let next = off_t(index + 1)
        let added: Int
        if plus {
            let needed = fuse_add_direntry_plus(request, nil, 0, entry.name, nil, 0)
            if needed > size - used { break }
            var parameters = fuse_entry_param()
            if entry.name == "." || entry.name == ".." || writes == nil {
                // No node: the kernel lists the name and takes nothing else from the entry.
                // A listing taken before a write through the drive holds attributes older
                // than what the kernel knows, and a READDIRPLUS sent after that write would
                // pass the kernel's own check (a read after write and close saw 0 bytes).
                parameters.attr.st_ino = entry.attributes.st_ino
                parameters.attr.st_mode = entry.attributes.st_mode
            } else {
                parameters = entryParameters(Redirector.Entry(
                    node: redirector.remember(parent: node, name: entry.name, attributes: entry.attributes, writes: writes),
                    attributes: entry.attributes), timeout: redirector.kernelTimeout)
            }
            added = fuse_add_direntry_plus(request, buffer + used, size - used, entry.name, &parameters, next)
        } else {
            var attributes = entry.attributes
            added = fuse_add_direntry(request, buffer + used, size - used, entry.name, &attributes, next)
            if added > size - used { break }
        }
        used += added
        index += 1
    }
    fuse_reply_buf(request, buffer, used)
}
