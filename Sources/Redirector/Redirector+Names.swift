import Glibc
import NetUseCore
import Synchronization

/// Making, removing and renaming names: what the share is told, and what the node and FCB
/// tables learn of it.
extension Redirector {
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
    /// A file that processes here hold open, on a share that will not remove an open file,
    /// is deleted pending: as on Linux, the name goes now and the holders keep the file;
    /// the share removes it when they are done.
    func remove(parent: UInt64, name: String, directory: Bool) throws(Errno) {
        let path = try path(of: parent, name)
        if handles.withLock({ $0.isDeletePending(path) }) { throw Errno(ENOENT) }
        close(handles.withLock { $0.discardDeferred(at: path, subtree: directory) })
        for attempt in 1...2 {
            do {
                try whileReleasing([path], subtree: directory, unlessHeld: !directory) { () throws(Errno) in
                    if directory {
                        try backend.removeDirectory(path)
                    } else {
                        try backend.unlink(path)
                    }
                }
                break
            } catch where error.rawValue == EBUSY && !directory {
                if let retired = handles.withLock({ $0.markDeletePending(path) }) {
                    nodes.withLock { $0.detach(parent: parent, name: name) }
                    close(retired)
                    return
                }
                // Held when the share said busy, let go since: a RELEASE comes after close(2)
                // has returned, so an unlink right after a close may meet it. Once more.
                if attempt == 2 { throw error }
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
    /// Such a refusal gets a short grace for those releases and closes, trying again. The
    /// grace is real time, not the injected clock: it waits on other threads' RELEASEs.
    /// With `unlessHeld`, a refusal while processes here hold the file open is final at once
    /// (the caller deletes it pending instead of waiting out the grace).
    func whileReleasing(_ paths: [String], subtree: Bool, unlessHeld: Bool = false,
                        _ operation: () throws(Errno) -> Void) throws(Errno) {
        do {
            try operation()
        } catch where error.rawValue == EBUSY {
            if unlessHeld && handles.withLock({ table in paths.contains { table.hasOpen(at: $0, subtree: subtree) } }) {
                throw error
            }
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
}
