import Glibc
import NetUseCore
import Synchronization

/// What the FUSE session asks of a drive, in inode numbers and handles, answered from the
/// share. FUSE-free, so that tests can drive it with a backend and no kernel.
///
/// Lock order: `nodes`, then `files`, then `directories`; none is held across backend I/O.
public final class Redirector: Sendable {
    public struct Entry: Sendable {
        public let node: UInt64
        public let attributes: stat

        public init(node: UInt64, attributes: stat) {
            self.node = node
            self.attributes = attributes
        }
    }

    public let backend: any ShareBackend
    private let nodes = Mutex(NodeTable())
    private let files = Mutex(FileHandleTable())
    private let directories = Mutex(DirectorySnapshots())

    public init(backend: any ShareBackend) {
        self.backend = backend
    }

    public var openHandleCount: Int { files.withLock { $0.count } }
    var nodeCount: Int { nodes.withLock { $0.count } }

    // MARK: names

    public func lookup(parent: UInt64, name: String) throws(Errno) -> Entry {
        let path = try nodes.withLock { (table) throws(Errno) in try table.path(of: parent, name) }
        let attributes = try backend.attributes(of: path)
        return Entry(node: remember(parent: parent, name: name), attributes: attributes)
    }

    /// Counts a reference the kernel takes without a LOOKUP (READDIRPLUS entries).
    public func remember(parent: UInt64, name: String) -> UInt64 {
        nodes.withLock { $0.remember(parent: parent, name: name) }
    }

    public func forget(_ node: UInt64, count: UInt64) {
        nodes.withLock { $0.forget(node, count: count) }
    }

    public func attributes(of node: UInt64, handle: UInt64?) throws(Errno) -> stat {
        let (path, open) = try target(node, handle: handle)
        if let open { return try backend.attributes(of: open) }
        return try backend.attributes(of: path)
    }

    public func setAttributes(_ changes: AttributeChanges, of node: UInt64, handle: UInt64?) throws(Errno) -> stat {
        let (path, open) = try target(node, handle: handle)
        return try backend.setAttributes(changes, of: path, handle: open)
    }

    /// Where a GETATTR or SETATTR goes: the handle the kernel named, else the path, else
    /// (for a file unlinked while open, which has no path) any handle open on the node.
    private func target(_ node: UInt64, handle: UInt64?) throws(Errno) -> (path: String, handle: BackendHandle?) {
        if let handle, let open = files.withLock({ $0[handle] }) {
            return ((try? path(of: node)) ?? "", open.backend)
        }
        do {
            return (try path(of: node), nil)
        } catch where error == Errno(ENOENT) {
            guard let open = files.withLock({ $0.first(on: node) }) else { throw error }
            return ("", open.backend)
        }
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
        try backend.unlink(try path(of: parent, name))
        nodes.withLock { $0.detach(parent: parent, name: name) }
    }

    public func removeDirectory(parent: UInt64, name: String) throws(Errno) {
        try backend.removeDirectory(try path(of: parent, name))
        nodes.withLock { $0.detach(parent: parent, name: name) }
    }

    public func rename(parent: UInt64, name: String, to newParent: UInt64, newName: String, flags: RenameFlags) throws(Errno) {
        let (from, to) = try nodes.withLock { (table) throws(Errno) in
            (try table.path(of: parent, name), try table.path(of: newParent, newName))
        }
        try backend.rename(from, to: to, flags: flags)
        nodes.withLock { table in
            if flags.contains(.exchange) {
                table.exchange(parent: parent, name: name, with: newParent, otherName: newName)
            } else {
                table.move(parent: parent, name: name, to: newParent, newName: newName)
            }
        }
    }

    // MARK: files

    public func open(_ node: UInt64, flags: Int32, caller: Caller) throws(Errno) -> UInt64 {
        let handle = try backend.open(try path(of: node), flags: flags)
        return files.withLock { $0.insert(FileHandle(node: node, backend: handle, opener: caller)) }
    }

    public func create(parent: UInt64, name: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> (Entry, UInt64) {
        let path = try path(of: parent, name)
        let handle = try backend.create(path, flags: flags, mode: mode, caller: caller)
        let attributes: stat
        do {
            attributes = try backend.attributes(of: handle)
        } catch {
            backend.close(handle)
            throw error
        }
        let node = remember(parent: parent, name: name)
        let id = files.withLock { $0.insert(FileHandle(node: node, backend: handle, opener: caller)) }
        return (Entry(node: node, attributes: attributes), id)
    }

    public func read(_ handle: UInt64, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try backend.read(try backendHandle(handle), into: buffer, at: offset)
    }

    public func write(_ handle: UInt64, from buffer: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try backend.write(try backendHandle(handle), from: buffer, at: offset)
    }

    public func sync(_ handle: UInt64, dataOnly: Bool) throws(Errno) {
        try backend.sync(try backendHandle(handle), dataOnly: dataOnly)
    }

    public func release(_ handle: UInt64) {
        guard let open = files.withLock({ $0.remove(handle) }) else { return }
        backend.close(open.backend)
    }

    // MARK: directories

    public func openDirectory(_ node: UInt64) throws(Errno) -> UInt64 {
        let entries = try backend.list(try path(of: node))
        return directories.withLock { $0.insert(entries) }
    }

    /// The snapshot taken at opendir, so that offsets stay stable while the caller reads.
    public func directoryEntries(_ handle: UInt64) throws(Errno) -> [DirectoryEntry] {
        guard let entries = directories.withLock({ $0[handle] }) else { throw Errno(EBADF) }
        return entries
    }

    public func releaseDirectory(_ handle: UInt64) {
        directories.withLock { $0.remove(handle) }
    }

    public func statistics() throws(Errno) -> statvfs { try backend.statistics() }

    /// Closes every handle still open on the share, then the share session itself.
    public func disconnect() {
        for open in files.withLock({ $0.removeAll() }) { backend.close(open.backend) }
        backend.disconnect()
    }

    // MARK: helpers

    private func path(of node: UInt64) throws(Errno) -> String {
        try nodes.withLock { (table) throws(Errno) in try table.path(of: node) }
    }

    private func path(of parent: UInt64, _ name: String) throws(Errno) -> String {
        try nodes.withLock { (table) throws(Errno) in try table.path(of: parent, name) }
    }

    private func backendHandle(_ handle: UInt64) throws(Errno) -> BackendHandle {
        guard let open = files.withLock({ $0[handle] }) else { throw Errno(EBADF) }
        return open.backend
    }
}

/// Directory listings taken at opendir, by directory handle.
struct DirectorySnapshots {
    private var snapshots: [UInt64: [DirectoryEntry]] = [:]
    private var nextID: UInt64 = 1

    mutating func insert(_ entries: [DirectoryEntry]) -> UInt64 {
        let id = nextID
        nextID += 1
        snapshots[id] = entries
        return id
    }

    subscript(id: UInt64) -> [DirectoryEntry]? { snapshots[id] }

    mutating func remove(_ id: UInt64) { snapshots[id] = nil }
}
