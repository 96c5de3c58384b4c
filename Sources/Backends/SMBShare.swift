import Glibc
import NetUseCore
import Redirector
import Synchronization

/// An SMB share, served by a few netuse-smb-worker processes. Path operations go to an
/// idle worker; an open file stays with the worker that opened it, and is opened again
/// (without O_CREAT or O_TRUNC) on the worker that replaces a lost one.
public final class SMBShare: ShareBackend {
    private struct OpenFile {
        let worker: Int
        var remote: UInt32
        var generation: Int
        let path: String
        let flags: Int32
    }

    private let workers: [SMBWorker]
    private let health = SMBHealth()
    /// Files on the share are presented as the drive owner's, as mount.cifs does with uid=/gid=.
    private let owner: (uid: uid_t, gid: gid_t)
    private let files = Mutex<(table: [Int64: OpenFile], next: Int64)>(([:], 1))
    private let turn = Atomic<Int>(0)

    /// Connects the first worker at once, so that `use` answers 53, 67, 1326 or 5 before
    /// anything is mounted.
    public init(connection: SMBConnection, owner: Caller, workers count: Int) throws(NetError) {
        let health = self.health
        workers = (0..<max(1, count)).map { _ in SMBWorker(connection: connection, health: health) }
        self.owner = (owner.uid, owner.gid)
        do {
            try workers[0].withChannel { _ in }
        } catch {
            throw Self.connectError(error, connection: connection)
        }
    }

    static func connectError(_ error: Errno, connection: SMBConnection) -> NetError {
        let detail = ["\(connection.url): \(error)."]
        switch error.rawValue {
        case ENOENT, ENODEV, ENXIO, ENOTDIR: return NetError(.badNetName, detail: detail)
        case EPERM: return NetError(.logonFailure, detail: detail)
        case EACCES: return NetError(connection.user.isEmpty ? .accessDenied : .logonFailure, detail: detail)
        default: return NetError(.badNetPath, detail: detail)
        }
    }

    public func disconnect() {
        workers.forEach { $0.shutdown() }
    }

    public var status: String { health.current.status }

    // MARK: helpers

    /// A path operation on whichever worker is free, else on the next in turn. A worker
    /// lost on the way costs one more try on its replacement, which connects afresh.
    private func anyWorker<T>(_ body: (SMBWorker.Channel) throws(Errno) -> T) throws(Errno) -> T {
        do {
            return try anyWorkerOnce(body)
        } catch where error.rawValue == EIO && health.current != .connected {
            return try anyWorkerOnce(body)
        }
    }

    private func anyWorkerOnce<T>(_ body: (SMBWorker.Channel) throws(Errno) -> T) throws(Errno) -> T {
        let start = turn.add(1, ordering: .relaxed).newValue
        for offset in 0..<workers.count {
            if let result = try workers[(start + offset) % workers.count].withChannelIfIdle(body) { return result }
        }
        return try workers[start % workers.count].withChannel(body)
    }

    /// An operation on an open file, on its worker, reopening it first if that worker was
    /// replaced; one more try when the worker is lost on the way.
    private func onFile<T>(_ handle: BackendHandle, _ body: (SMBWorker.Channel, UInt32) throws(Errno) -> T) throws(Errno) -> T {
        do {
            return try onFileOnce(handle, body)
        } catch where error.rawValue == EIO && health.current != .connected {
            return try onFileOnce(handle, body)
        }
    }

    private func onFileOnce<T>(_ handle: BackendHandle, _ body: (SMBWorker.Channel, UInt32) throws(Errno) -> T) throws(Errno) -> T {
        guard let open = files.withLock({ $0.table[handle.rawValue] }) else { throw Errno(EBADF) }
        return try workers[open.worker].withChannel { (channel) throws(Errno) -> T in
            var remote = open.remote
            if channel.generation != open.generation {
                var reply = try channel.request(.open) { message in
                    message.string(open.path)
                    message.i32(open.flags & ~(O_CREAT | O_TRUNC | O_EXCL))
                    message.u32(0)
                }
                remote = try reply.u32()
                files.withLock { files in
                    files.table[handle.rawValue]?.remote = remote
                    files.table[handle.rawValue]?.generation = channel.generation
                }
            }
            return try body(channel, remote)
        }
    }

    private func owned(_ attributes: stat) -> stat {
        var result = attributes
        result.st_uid = owner.uid
        result.st_gid = owner.gid
        return result
    }

    private func simple(_ operation: SMBOperation, _ arguments: @escaping (inout WireWriter) -> Void) throws(Errno) {
        _ = try anyWorker { (channel) throws(Errno) in try channel.request(operation, arguments) }
    }

    // MARK: attributes

    public func attributes(of path: String) throws(Errno) -> stat {
        try anyWorker { (channel) throws(Errno) in
            var reply = try channel.request(.attributes) { $0.string(path) }
            return owned(try reply.attributes())
        }
    }

    /// A handle opened write-only may not read its own attributes over SMB (no
    /// FILE_READ_ATTRIBUTES in its access mask): the path answers for it then.
    public func attributes(of handle: BackendHandle) throws(Errno) -> stat {
        do {
            return try onFile(handle) { (channel, remote) throws(Errno) in
                var reply = try channel.request(.handleAttributes) { $0.u32(remote) }
                return owned(try reply.attributes())
            }
        } catch where error.rawValue == EINVAL || error.rawValue == EACCES {
            guard let path = files.withLock({ $0.table[handle.rawValue]?.path }) else { throw Errno(EBADF) }
            return try attributes(of: path)
        }
    }

    public func setAttributes(_ changes: AttributeChanges, of path: String, handle: BackendHandle?) throws(Errno) -> stat {
        // SMB without POSIX extensions has no owners to change, as mount.cifs says.
        if changes.uid.map({ $0 != owner.uid }) == true || changes.gid.map({ $0 != owner.gid }) == true {
            throw Errno(EPERM)
        }
        if let size = changes.size {
            if let handle {
                _ = try onFile(handle) { (channel, remote) throws(Errno) in
                    try channel.request(.handleTruncate) { $0.u32(remote); $0.i64(Int64(size)) }
                }
            } else {
                try simple(.truncate) { $0.string(path); $0.i64(Int64(size)) }
            }
        }
        if let mode = changes.mode {
            try simple(.setMode) { $0.string(path); $0.u32(mode) }
        }
        if changes.changesTimes {
            let current = try attributes(of: path)
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            func resolve(_ time: timespec?, _ existing: timespec) -> timespec {
                guard let time else { return existing }
                if time.tv_nsec == AttributeChanges.timeNow.tv_nsec { return now }
                if time.tv_nsec == AttributeChanges.timeOmit.tv_nsec { return existing }
                return time
            }
            let access = resolve(changes.accessTime, current.st_atim)
            let modification = resolve(changes.modificationTime, current.st_mtim)
            try simple(.setTimes) { message in
                message.string(path)
                for time in [access, modification] {
                    message.i64(Int64(time.tv_sec))
                    message.i64(Int64(time.tv_nsec))
                }
            }
        }
        if let handle { return try attributes(of: handle) }
        return try attributes(of: path)
    }

    public func list(_ path: String) throws(Errno) -> [DirectoryEntry] {
        try anyWorker { (channel) throws(Errno) in
            var reply = try channel.request(.list) { $0.string(path) }
            let count = try reply.u32()
            var entries: [DirectoryEntry] = []
            entries.reserveCapacity(Int(count))
            for _ in 0..<count {
                let name = try reply.string()
                entries.append(DirectoryEntry(name: name, attributes: owned(try reply.attributes())))
            }
            return entries
        }
    }

    // MARK: file data

    public func open(_ path: String, flags: Int32) throws(Errno) -> BackendHandle {
        try openFile(path, flags: flags & ~(O_CREAT | O_EXCL), mode: 0)
    }

    public func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> BackendHandle {
        try openFile(path, flags: flags | O_CREAT, mode: mode)
    }

    /// O_APPEND stays on this side: libsmbclient refuses it (ENXIO), and the kernel already
    /// sends an appending write at the end of the file.
    private func openFile(_ path: String, flags requested: Int32, mode: mode_t) throws(Errno) -> BackendHandle {
        let flags = requested & ~(O_APPEND | O_NOCTTY)
        let start = turn.add(1, ordering: .relaxed).newValue
        let index = start % workers.count
        let (remote, generation) = try workers[index].withChannel { (channel) throws(Errno) in
            var reply = try channel.request(.open) { message in
                message.string(path)
                message.i32(flags)
                message.u32(mode)
            }
            return (try reply.u32(), channel.generation)
        }
        return files.withLock { files in
            let id = files.next
            files.next += 1
            files.table[id] = OpenFile(worker: index, remote: remote, generation: generation, path: path, flags: flags)
            return BackendHandle(id)
        }
    }

    public func read(_ handle: BackendHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try onFile(handle) { (channel, remote) throws(Errno) in
            var reply = try channel.request(.read) { message in
                message.u32(remote)
                message.i64(Int64(offset))
                message.u32(UInt32(buffer.count))
            }
            let data = try reply.data()
            guard data.count <= buffer.count else { throw Errno(EPROTO) }
            data.withUnsafeBytes { buffer.copyMemory(from: $0) }
            return data.count
        }
    }

    public func write(_ handle: BackendHandle, from buffer: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try onFile(handle) { (channel, remote) throws(Errno) in
            var reply = try channel.request(.write) { message in
                message.u32(remote)
                message.i64(Int64(offset))
                message.data(buffer)
            }
            return Int(try reply.u32())
        }
    }

    /// libsmbclient writes synchronously: what write answered is on the server.
    public func sync(_ handle: BackendHandle, dataOnly: Bool) throws(Errno) {}

    public func close(_ handle: BackendHandle) {
        guard let open = files.withLock({ $0.table.removeValue(forKey: handle.rawValue) }) else { return }
        _ = try? workers[open.worker].withChannel { (channel) throws(Errno) in
            // A file of a replaced worker died with it.
            if channel.generation == open.generation { _ = try channel.request(.close) { $0.u32(open.remote) } }
        }
    }

    // MARK: names

    public func makeDirectory(_ path: String, mode: mode_t, caller: Caller) throws(Errno) {
        try simple(.makeDirectory) { $0.string(path); $0.u32(mode) }
    }

    /// mount.cifs without POSIX extensions: no devices, FIFOs, symlinks or hard links.
    public func makeNode(_ path: String, mode: mode_t, device: dev_t, caller: Caller) throws(Errno) { throw Errno(EPERM) }
    public func symlink(target: String, at path: String, caller: Caller) throws(Errno) { throw Errno(EPERM) }
    public func readLink(_ path: String) throws(Errno) -> String { throw Errno(EINVAL) }
    public func link(_ existing: String, to newPath: String) throws(Errno) { throw Errno(EPERM) }

    public func removeDirectory(_ path: String) throws(Errno) {
        try simple(.removeDirectory) { $0.string(path) }
    }

    public func unlink(_ path: String) throws(Errno) {
        try simple(.unlink) { $0.string(path) }
    }

    public func rename(_ from: String, to: String, flags: RenameFlags) throws(Errno) {
        if flags.contains(.exchange) { throw Errno(EINVAL) }
        if flags.contains(.noReplace), (try? attributes(of: to)) != nil { throw Errno(EEXIST) }
        try simple(.rename) { $0.string(from); $0.string(to) }
    }

    public func statistics() throws(Errno) -> statvfs {
        try anyWorker { (channel) throws(Errno) in
            var reply = try channel.request(.statistics) { $0.string("") }
            var result = statvfs()
            result.f_bsize = UInt(try reply.u64())
            result.f_frsize = UInt(try reply.u64())
            result.f_blocks = UInt(try reply.u64())
            result.f_bfree = UInt(try reply.u64())
            result.f_bavail = UInt(try reply.u64())
            result.f_files = UInt(try reply.u64())
            result.f_ffree = UInt(try reply.u64())
            result.f_namemax = UInt(try reply.u64())
            // libsmbclient answers bytes per sector and sectors per allocation unit; blocks
            // count allocation units.
            let unit = result.f_bsize * max(result.f_frsize, 1)
            result.f_bsize = unit
            result.f_frsize = unit
            if result.f_namemax == 0 { result.f_namemax = 255 }  // SMB names: 255 UTF-16 units
            return result
        }
    }
}
