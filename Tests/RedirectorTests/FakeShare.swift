import Glibc
import NetUseCore
import Redirector
import Synchronization

/// A share in memory that records every call that opens, closes or changes a name, in
/// order, so that tests can see what reached the share and when.
final class FakeShare: ShareBackend {
    struct File {
        var inode: UInt64
        var size: Int
        var mtime: Int
        var directory = false
    }

    private struct State {
        var files: [String: File] = [:]
        var handles: [Int64: UInt64] = [:]  // handle → inode
        var nextHandle: Int64 = 100
        var nextInode: UInt64 = 10
        var events: [String] = []
        /// Stats by path: the round trips a revalidation costs.
        var stats = 0
        /// Write-behind failures by handle, as a backend that writes behind counts them.
        var failures: [Int64: WriteFailures] = [:]
    }

    private let state = Mutex(State())
    /// Refuse to unlink a file with open handles, as SMB does (sharing violation).
    let busyWhileOpen: Bool
    /// What each new open's lease lets the drive cache; nil: a share without leases.
    let grants: HandleCaching?
    private let leases = Mutex<(held: [Int64: HandleCaching], observer: (@Sendable (BackendHandle, HandleCaching) -> Void)?)>(([:], nil))

    init(busyWhileOpen: Bool = false, grants: HandleCaching? = nil) {
        self.busyWhileOpen = busyWhileOpen
        self.grants = grants
    }

    func caching(_ handle: BackendHandle) -> HandleCaching? {
        guard let grants else { return nil }
        return leases.withLock { $0.held[handle.rawValue] } ?? grants
    }

    func observeBreaks(_ observer: @escaping @Sendable (BackendHandle, HandleCaching) -> Void) {
        leases.withLock { $0.observer = observer }
    }

    /// Another client wants the file: every open handle on it may cache only `caching` now.
    func breakLeases(on path: String, to caching: HandleCaching) {
        let broken = state.withLock { state in
            state.handles.filter { $0.value == state.files[path]?.inode }.map { BackendHandle($0.key) }
        }
        let observer = leases.withLock { leases in
            for handle in broken { leases.held[handle.rawValue] = caching }
            return leases.observer
        }
        for handle in broken { observer?(handle, caching) }
    }

    /// Another client changes the file (a new size and time), after breaking the read leases.
    func writeBehindTheDrive(_ path: String, size: Int, mtime: Int) {
        breakLeases(on: path, to: [])
        put(path, size: size, mtime: mtime, newInode: false)
    }

    var events: [String] { state.withLock { $0.events } }
    var statCount: Int { state.withLock { $0.stats } }
    var openCount: Int { state.withLock { $0.events.filter { $0.hasPrefix("open ") || $0.hasPrefix("create ") }.count } }
    var openHandles: Int { state.withLock { $0.handles.count } }

    func clearEvents() { state.withLock { $0.events.removeAll() } }

    /// Data written behind through every open handle was refused.
    func failWrites(_ error: Errno) {
        state.withLock { state in
            for handle in state.handles.keys { state.failures[handle, default: WriteFailures()].record(error) }
        }
    }

    func writeFailures(_ handle: BackendHandle) -> WriteFailures {
        state.withLock { $0.failures[handle.rawValue] ?? WriteFailures() }
    }

    /// Puts a file on the share as another writer would, behind the drive's back.
    func put(_ path: String, size: Int = 0, mtime: Int = 1, directory: Bool = false, newInode: Bool = true) {
        state.withLock { state in
            let inode = newInode || state.files[path] == nil ? state.nextInode : state.files[path]!.inode
            if newInode || state.files[path] == nil { state.nextInode += 1 }
            state.files[path] = File(inode: inode, size: size, mtime: mtime, directory: directory)
        }
    }

    private func attributes(_ file: File) -> stat {
        var result = stat()
        result.st_ino = UInt(file.inode)
        result.st_dev = 1
        result.st_size = file.size
        result.st_mtim = timespec(tv_sec: file.mtime, tv_nsec: 0)
        result.st_mode = file.directory ? S_IFDIR | 0o755 : S_IFREG | 0o644
        result.st_nlink = 1
        return result
    }

    func attributes(of path: String) throws(Errno) -> stat {
        if path.isEmpty { return attributes(File(inode: 1, size: 0, mtime: 0, directory: true)) }
        guard let file = state.withLock({ state -> File? in
            state.stats += 1
            return state.files[path]
        }) else { throw Errno(ENOENT) }
        return attributes(file)
    }

    func attributes(of handle: BackendHandle) throws(Errno) -> stat {
        let file = state.withLock { state in
            state.handles[handle.rawValue].flatMap { inode in state.files.values.first { $0.inode == inode } }
        }
        guard let file else { throw Errno(EBADF) }
        return attributes(file)
    }

    func setAttributes(_ changes: AttributeChanges, of path: String, handle: BackendHandle?) throws(Errno) -> stat {
        try state.withLock { (state) throws(Errno) in
            guard state.files[path] != nil else { throw Errno(ENOENT) }
            if let size = changes.size {
                state.files[path]!.size = Int(size)
                state.events.append("truncate \(path)")
            }
        }
        return try attributes(of: path)
    }

    func list(_ path: String) throws(Errno) -> [DirectoryEntry] { [] }

    func open(_ path: String, flags: Int32) throws(Errno) -> BackendHandle {
        try state.withLock { (state) throws(Errno) in
            guard let file = state.files[path] else { throw Errno(ENOENT) }
            if flags & O_TRUNC != 0 { state.files[path]!.size = 0 }
            state.nextHandle += 1
            state.handles[state.nextHandle] = file.inode
            state.events.append("open \(path)")
            return BackendHandle(state.nextHandle)
        }
    }

    func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> BackendHandle {
        put(path)
        state.withLock { $0.events.append("create \(path)") }
        return try state.withLock { (state) throws(Errno) in
            state.nextHandle += 1
            state.handles[state.nextHandle] = state.files[path]!.inode
            return BackendHandle(state.nextHandle)
        }
    }

    func read(_ handle: BackendHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        guard state.withLock({ $0.handles[handle.rawValue] }) != nil else { throw Errno(EBADF) }
        return 0
    }

    func write(_ handle: BackendHandle, from buffer: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        guard state.withLock({ $0.handles[handle.rawValue] }) != nil else { throw Errno(EBADF) }
        return buffer.count
    }

    func sync(_ handle: BackendHandle, dataOnly: Bool) throws(Errno) {}

    func close(_ handle: BackendHandle) {
        state.withLock { state in
            let inode = state.handles.removeValue(forKey: handle.rawValue)
            let path = state.files.first { $0.value.inode == inode }?.key ?? "(gone)"
            state.events.append("close \(path)")
        }
    }

    func makeDirectory(_ path: String, mode: mode_t, caller: Caller) throws(Errno) { put(path, directory: true) }
    func makeNode(_ path: String, mode: mode_t, device: dev_t, caller: Caller) throws(Errno) { throw Errno(ENOSYS) }

    func removeDirectory(_ path: String) throws(Errno) {
        state.withLock { state in
            state.files[path] = nil
            state.events.append("rmdir \(path)")
        }
    }

    func unlink(_ path: String) throws(Errno) {
        try state.withLock { (state) throws(Errno) in
            if busyWhileOpen, let inode = state.files[path]?.inode, state.handles.values.contains(inode) {
                state.events.append("busy \(path)")
                throw Errno(EBUSY)
            }
            guard state.files.removeValue(forKey: path) != nil else { throw Errno(ENOENT) }
            state.events.append("unlink \(path)")
        }
    }

    func rename(_ from: String, to: String, flags: RenameFlags) throws(Errno) {
        try state.withLock { (state) throws(Errno) in
            guard state.files[from] != nil else { throw Errno(ENOENT) }
            for (path, file) in state.files where path == from || path.hasPrefix(from + "/") {
                state.files[path] = nil
                state.files[to + path.dropFirst(from.count)] = file
            }
            state.events.append("rename \(from) \(to)")
        }
    }

    func symlink(target: String, at path: String, caller: Caller) throws(Errno) { throw Errno(ENOSYS) }
    func readLink(_ path: String) throws(Errno) -> String { throw Errno(EINVAL) }
    func link(_ existing: String, to newPath: String) throws(Errno) { throw Errno(ENOSYS) }
    func statistics() throws(Errno) -> statvfs { statvfs() }
    func disconnect() {}
}

/// Time that moves only when a test says so.
final class FakeClock: Sendable {
    private let time = Mutex(Duration.seconds(1000))

    func now() -> Duration { time.withLock { $0 } }
    func advance(_ step: Duration) { time.withLock { $0 += step } }
}
