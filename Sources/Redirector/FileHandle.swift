import NetUseCore

/// One FUSE open: one kernel open file description, known to the kernel by its `fh`.
public struct FileHandle: Sendable {
    public let node: UInt64
    public let backend: BackendHandle
    /// Who opened it; the active-process check reports these.
    public let opener: Caller
}

/// The live FileHandles of one drive, by `fh`.
struct FileHandleTable {
    private var handles: [UInt64: FileHandle] = [:]
    private var nextID: UInt64 = 1

    var count: Int { handles.count }

    mutating func insert(_ handle: FileHandle) -> UInt64 {
        let id = nextID
        nextID += 1
        handles[id] = handle
        return id
    }

    subscript(id: UInt64) -> FileHandle? { handles[id] }

    /// Any handle open on the node: how an unlinked but open file is still reached.
    func first(on node: UInt64) -> FileHandle? { handles.values.first { $0.node == node } }

    mutating func remove(_ id: UInt64) -> FileHandle? { handles.removeValue(forKey: id) }

    mutating func removeAll() -> [FileHandle] {
        defer { handles.removeAll() }
        return Array(handles.values)
    }
}
