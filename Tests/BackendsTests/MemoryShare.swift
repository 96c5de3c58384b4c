import Backends
import Glibc
import NetUseCore
import Redirector
import Synchronization

/// The least a backend can be: files and directories in memory, with nothing beyond them
/// (no capabilities, so the protocol's defaults answer for links and devices). It exists
/// to show that a new kind of share is its own file and a line in the registry, and to
/// hold the conformance suite to what the protocol says rather than what one backend does.
final class MemoryShare: ShareBackend {
    private struct Node {
        var directory: Bool
        var data: [UInt8] = []
        var mode: mode_t
        var modified = MonotonicClock.now()
        let inode: UInt64
    }

    private struct State {
        var nodes: [String: Node]
        var handles: [Int64: (path: String, inode: UInt64, flags: Int32)] = [:]
        var nextHandle: Int64 = 1
        var nextInode: UInt64 = 2
    }

    private let state = Mutex(State(nodes: ["": Node(directory: true, mode: 0o755, inode: 1)]))

    private static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    private static func attributes(_ node: Node) -> stat {
        var result = stat()
        result.st_ino = UInt(node.inode)
        result.st_mode = (node.directory ? S_IFDIR : S_IFREG) | node.mode
        result.st_nlink = node.directory ? 2 : 1
        result.st_size = node.data.count
        result.st_blksize = 4096
        result.st_blocks = (node.data.count + 511) / 512
        let since = node.modified.components
        result.st_mtim = timespec(tv_sec: Int(since.seconds), tv_nsec: Int(since.attoseconds / 1_000_000_000))
        result.st_ctim = result.st_mtim
        result.st_atim = result.st_mtim
        return result
    }

    /// The node at `path` whose parent is a directory, or the errno a filesystem gives.
    private static func node(_ path: String, in state: State) throws(Errno) -> Node {
        guard let node = state.nodes[path] else {
            throw Errno(state.nodes[parent(of: path)].map { $0.directory ? ENOENT : ENOTDIR } ?? ENOENT)
        }
        return node
    }

    /// Makes a name in an existing directory.
    private static func add(_ path: String, directory: Bool, mode: mode_t, to state: inout State) throws(Errno) {
        let parent = try node(parent(of: path), in: state)
        guard parent.directory else { throw Errno(ENOTDIR) }
        guard state.nodes[path] == nil else { throw Errno(EEXIST) }
        state.nodes[path] = Node(directory: directory, mode: mode & 0o7777, inode: state.nextInode)
        state.nextInode += 1
    }

    private func withFile<T>(_ handle: BackendHandle, _ body: (inout Node, Int32) throws(Errno) -> T) throws(Errno) -> T {
        try state.withLock { (state) throws(Errno) -> T in
            guard let open = state.handles[handle.rawValue] else { throw Errno(EBADF) }
            // An open file renamed or unlinked stays itself: find it by its inode.
            guard let path = state.nodes.first(where: { $0.value.inode == open.inode })?.key else { throw Errno(ESTALE) }
            return try body(&state.nodes[path]!, open.flags)
        }
    }

    func attributes(of path: String) throws(Errno) -> stat {
        try state.withLock { (state) throws(Errno) in Self.attributes(try Self.node(path, in: state)) }
    }

    func attributes(of handle: BackendHandle) throws(Errno) -> stat {
        try withFile(handle) { (node, _) throws(Errno) in Self.attributes(node) }
    }

    func setAttributes(_ changes: AttributeChanges, of path: String, handle: BackendHandle?) throws(Errno) -> stat {
        try state.withLock { (state) throws(Errno) in
            var node = try Self.node(path, in: state)
            if let size = changes.size {
                guard !node.directory else { throw Errno(EISDIR) }
                guard size >= 0 else { throw Errno(EINVAL) }
                if Int(size) < node.data.count {
                    node.data.removeLast(node.data.count - Int(size))
                } else {
                    node.data += [UInt8](repeating: 0, count: Int(size) - node.data.count)
                }
                node.modified = MonotonicClock.now()
            }
            if let mode = changes.mode { node.mode = mode & 0o7777 }
            if changes.uid != nil || changes.gid != nil { throw Errno(EPERM) }
            state.nodes[path] = node
            return Self.attributes(node)
        }
    }

    func list(_ path: String) throws(Errno) -> [DirectoryEntry] {
        try state.withLock { (state) throws(Errno) in
            let directory = try Self.node(path, in: state)
            guard directory.directory else { throw Errno(ENOTDIR) }
            let parent = state.nodes[Self.parent(of: path)] ?? directory
            let children = state.nodes.filter { !$0.key.isEmpty && $0.key != path && Self.parent(of: $0.key) == path }
            return [DirectoryEntry(name: ".", attributes: Self.attributes(directory)),
                    DirectoryEntry(name: "..", attributes: Self.attributes(parent))]
                + children.map { DirectoryEntry(name: String($0.key.split(separator: "/").last!), attributes: Self.attributes($0.value)) }
        }
    }

    func open(_ path: String, flags: Int32) throws(Errno) -> BackendHandle {
        try state.withLock { (state) throws(Errno) in
            let node = try Self.node(path, in: state)
            if node.directory && flags & O_ACCMODE != O_RDONLY { throw Errno(EISDIR) }
            if flags & O_TRUNC != 0 && flags & O_ACCMODE != O_RDONLY { state.nodes[path]!.data = [] }
            state.nextHandle += 1
            state.handles[state.nextHandle] = (path, node.inode, flags)
            return BackendHandle(state.nextHandle)
        }
    }

    func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> BackendHandle {
        try state.withLock { (state) throws(Errno) in
            if state.nodes[path] != nil && flags & O_EXCL != 0 { throw Errno(EEXIST) }
            if state.nodes[path] == nil { try Self.add(path, directory: false, mode: mode, to: &state) }
        }
        return try open(path, flags: flags & ~(O_CREAT | O_EXCL))
    }

    func read(_ handle: BackendHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try withFile(handle) { (node, flags) throws(Errno) in
            guard flags & O_ACCMODE != O_WRONLY else { throw Errno(EBADF) }
            guard !node.directory else { throw Errno(EISDIR) }
            let start = min(Int(offset), node.data.count)
            let count = min(buffer.count, node.data.count - start)
            node.data.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + start, byteCount: count) }
            return count
        }
    }

    func write(_ handle: BackendHandle, from buffer: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try withFile(handle) { (node, flags) throws(Errno) in
            guard flags & O_ACCMODE != O_RDONLY else { throw Errno(EBADF) }
            let end = Int(offset) + buffer.count
            if node.data.count < end { node.data += [UInt8](repeating: 0, count: end - node.data.count) }
            node.data.replaceSubrange(Int(offset)..<end, with: buffer)
            node.modified = MonotonicClock.now()
            return buffer.count
        }
    }

    func sync(_ handle: BackendHandle, dataOnly: Bool) throws(Errno) {
        try withFile(handle) { (_, _) throws(Errno) in }
    }

    func close(_ handle: BackendHandle) {
        state.withLock { _ = $0.handles.removeValue(forKey: handle.rawValue) }
    }

    func makeDirectory(_ path: String, mode: mode_t, caller: Caller) throws(Errno) {
        try state.withLock { (state) throws(Errno) in try Self.add(path, directory: true, mode: mode, to: &state) }
    }

    func removeDirectory(_ path: String) throws(Errno) {
        try state.withLock { (state) throws(Errno) in
            guard !path.isEmpty else { throw Errno(EBUSY) }
            guard try Self.node(path, in: state).directory else { throw Errno(ENOTDIR) }
            guard !state.nodes.keys.contains(where: { $0.hasPrefix(path + "/") }) else { throw Errno(ENOTEMPTY) }
            state.nodes[path] = nil
        }
    }

    func unlink(_ path: String) throws(Errno) {
        try state.withLock { (state) throws(Errno) in
            guard !(try Self.node(path, in: state).directory) else { throw Errno(EISDIR) }
            state.nodes[path] = nil
        }
    }

    func rename(_ from: String, to: String, flags: RenameFlags) throws(Errno) {
        try state.withLock { (state) throws(Errno) in
            let moving = try Self.node(from, in: state)
            guard from != to else { return }
            guard try Self.node(Self.parent(of: to), in: state).directory else { throw Errno(ENOTDIR) }
            if moving.directory && to.hasPrefix(from + "/") { throw Errno(EINVAL) }
            if let existing = state.nodes[to] {
                if flags.contains(.noReplace) { throw Errno(EEXIST) }
                if existing.directory != moving.directory { throw Errno(existing.directory ? EISDIR : ENOTDIR) }
                if existing.directory && state.nodes.keys.contains(where: { $0.hasPrefix(to + "/") }) { throw Errno(ENOTEMPTY) }
            }
            for (path, node) in state.nodes where path == from || path.hasPrefix(from + "/") {
                state.nodes[path] = nil
                state.nodes[to + path.dropFirst(from.count)] = node
            }
        }
    }

    func statistics() throws(Errno) -> statvfs {
        var result = statvfs()
        result.f_bsize = 4096
        result.f_frsize = 4096
        result.f_namemax = 255
        return result
    }

    func disconnect() {}
}

/// `memory:NAME`: each connect makes a new, empty share.
struct MemoryShareKind: ShareKind {
    let scheme = "memory"

    func parse(_ text: String) throws(NetError) -> Remote? {
        guard text.hasPrefix("memory:") else { return nil }
        return Remote(scheme: scheme, description: text)
    }

    func connect(_ remote: Remote, _ request: ConnectRequest) throws(NetError) -> any ShareBackend { MemoryShare() }
}
