import CLinux
import Glibc
import NetUseCore
import Redirector

/// A directory on this machine served as a share: the embedded default backend.
/// Every call is relative to a descriptor of the top directory, so the share keeps
/// working on the directory it was mapped to even if its path is renamed.
public final class LocalShare: ShareBackend {
    private let top: Int32
    /// A daemon running as root creates files for the caller, as a local filesystem would.
    private let givesOwnership = geteuid() == 0

    /// Opens the directory, answering what `net use` would for a missing or unusable share.
    public init(directory: String, caller: Caller) throws(NetError) {
        var attributes = stat()
        if fstatat(AT_FDCWD, directory, &attributes, 0) != 0 {
            switch errno {
            case EACCES: throw NetError(.accessDenied, detail: ["\(directory): permission denied."])
            default: throw NetError(.badNetPath, detail: ["\(directory): \(String(cString: strerror(errno)))."])
            }
        }
        guard attributes.st_mode & S_IFMT == S_IFDIR else {
            throw NetError(.badNetName, detail: ["\(directory) is not a directory."])
        }
        guard Self.allows(caller, toEnter: attributes) else {
            throw NetError(.accessDenied, detail: ["\(directory): user \(caller.uid) may not read it."])
        }
        let fd = Glibc.open(directory, NETUSE_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw NetError(.badNetPath, detail: ["\(directory): \(String(cString: strerror(errno)))."])
        }
        top = fd
    }

    /// Read and search permission on the top directory by owner, group and other bits.
    /// The kernel checks everything below it through `default_permissions`.
    static func allows(_ caller: Caller, toEnter attributes: stat) -> Bool {
        if caller.uid == 0 { return true }
        let needed: mode_t = 0o5
        let mode = attributes.st_mode
        if attributes.st_uid == caller.uid { return (mode >> 6) & needed == needed }
        if attributes.st_gid == caller.gid { return (mode >> 3) & needed == needed }
        return mode & needed == needed
    }

    deinit { Glibc.close(top) }

    public func disconnect() {}

    // MARK: attributes

    public func attributes(of path: String) throws(Errno) -> stat {
        var attributes = stat()
        _ = try systemCall { fstatat(top, relative(path), &attributes, AT_SYMLINK_NOFOLLOW) }
        return attributes
    }

    public func attributes(of handle: BackendHandle) throws(Errno) -> stat {
        var attributes = stat()
        _ = try systemCall { fstat(Int32(handle.rawValue), &attributes) }
        return attributes
    }

    public func setAttributes(_ changes: AttributeChanges, of path: String, handle: BackendHandle?) throws(Errno) -> stat {
        let fd = handle.map { Int32($0.rawValue) }
        let name = relative(path)
        if let mode = changes.mode {
            if let fd {
                _ = try systemCall { fchmod(fd, mode) }
            } else {
                _ = try systemCall { fchmodat(top, name, mode, 0) }
            }
        }
        if changes.uid != nil || changes.gid != nil {
            let uid = changes.uid ?? uid_t.max
            let gid = changes.gid ?? gid_t.max
            if let fd {
                _ = try systemCall { fchown(fd, uid, gid) }
            } else {
                _ = try systemCall { fchownat(top, name, uid, gid, AT_SYMLINK_NOFOLLOW) }
            }
        }
        if let size = changes.size {
            if let fd {
                _ = try systemCall { ftruncate(fd, size) }
            } else {
                let temporary = try systemCall { openat(top, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC) }
                defer { Glibc.close(temporary) }
                _ = try systemCall { ftruncate(temporary, size) }
            }
        }
        if changes.changesTimes {
            let times = [changes.accessTime ?? AttributeChanges.timeOmit, changes.modificationTime ?? AttributeChanges.timeOmit]
            if let fd {
                _ = try systemCall { futimens(fd, times) }
            } else {
                _ = try systemCall { utimensat(top, name, times, AT_SYMLINK_NOFOLLOW) }
            }
        }
        if let handle { return try attributes(of: handle) }
        return try attributes(of: path)
    }

    public func list(_ path: String) throws(Errno) -> [DirectoryEntry] {
        let fd = try systemCall { openat(top, relative(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard let directory = fdopendir(fd) else {
            let error = Errno.current
            Glibc.close(fd)
            throw error
        }
        defer { closedir(directory) }
        var entries: [DirectoryEntry] = []
        while true {
            errno = 0
            guard let entry = readdir(directory) else {
                if errno != 0 { throw Errno.current }
                break
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            var attributes = stat()
            // An entry removed between readdir and fstatat is simply not listed.
            guard fstatat(fd, name, &attributes, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            entries.append(DirectoryEntry(name: name, attributes: attributes))
        }
        return entries
    }

    // MARK: file data

    /// O_DIRECT and O_APPEND stay on this side. The kernel already sends an O_DIRECT
    /// descriptor's reads and writes past its page cache, in buffers of any alignment, which
    /// a backing file opened O_DIRECT refuses (EINVAL). It already sends an appending write
    /// at the end of the file, and it writes mapped pages back through any handle that can
    /// write, at their own offsets, which a backing file opened O_APPEND would append.
    private static let kernelFlags = NETUSE_O_DIRECT | O_APPEND

    public func open(_ path: String, flags: Int32) throws(Errno) -> BackendHandle {
        let flags = flags & ~(O_CREAT | O_EXCL | O_NOCTTY | Self.kernelFlags)
        let fd = try systemCall { openat(top, relative(path), flags | O_NOFOLLOW | O_CLOEXEC) }
        return BackendHandle(Int64(fd))
    }

    public func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> BackendHandle {
        let fd = try systemCall { openat(top, path, (flags & ~Self.kernelFlags) | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode) }
        do {
            try giveOwnership(path, to: caller)
        } catch {
            Glibc.close(fd)
            _ = unlinkat(top, path, 0)
            throw error
        }
        return BackendHandle(Int64(fd))
    }

    public func read(_ handle: BackendHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        var done = 0
        while done < buffer.count {
            let count = try systemCall { pread(Int32(handle.rawValue), buffer.baseAddress! + done, buffer.count - done, offset + off_t(done)) }
            if count == 0 { break }
            done += count
        }
        return done
    }

    public func write(_ handle: BackendHandle, from buffer: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        var done = 0
        while done < buffer.count {
            done += try systemCall { pwrite(Int32(handle.rawValue), buffer.baseAddress! + done, buffer.count - done, offset + off_t(done)) }
        }
        return done
    }

    public func sync(_ handle: BackendHandle, dataOnly: Bool) throws(Errno) {
        let fd = Int32(handle.rawValue)
        _ = try systemCall { dataOnly ? fdatasync(fd) : fsync(fd) }
    }

    public func close(_ handle: BackendHandle) {
        Glibc.close(Int32(handle.rawValue))
    }

    // MARK: names

    public func makeDirectory(_ path: String, mode: mode_t, caller: Caller) throws(Errno) {
        _ = try systemCall { mkdirat(top, path, mode) }
        try giveOwnershipOrUndo(path, to: caller, directory: true)
    }

    public func makeNode(_ path: String, mode: mode_t, device: dev_t, caller: Caller) throws(Errno) {
        _ = try systemCall { mknodat(top, path, mode, device) }
        try giveOwnershipOrUndo(path, to: caller, directory: false)
    }

    public func removeDirectory(_ path: String) throws(Errno) {
        _ = try systemCall { unlinkat(top, path, AT_REMOVEDIR) }
    }

    public func unlink(_ path: String) throws(Errno) {
        _ = try systemCall { unlinkat(top, path, 0) }
    }

    public func rename(_ from: String, to: String, flags: RenameFlags) throws(Errno) {
        _ = try systemCall { netuse_renameat2(top, from, top, to, flags.rawValue) }
    }

    public func symlink(target: String, at path: String, caller: Caller) throws(Errno) {
        _ = try systemCall { symlinkat(target, top, path) }
        try giveOwnershipOrUndo(path, to: caller, directory: false)
    }

    public func readLink(_ path: String) throws(Errno) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = try systemCall { readlinkat(top, path, &buffer, buffer.count - 1) }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func link(_ existing: String, to newPath: String) throws(Errno) {
        _ = try systemCall { linkat(top, existing, top, newPath, 0) }
    }

    public func statistics() throws(Errno) -> statvfs {
        var result = statvfs()
        _ = try systemCall { fstatvfs(top, &result) }
        return result
    }

    // MARK: helpers

    private func relative(_ path: String) -> String { path.isEmpty ? "." : path }

    /// New names belong to the caller: its uid, and its gid unless the parent directory
    /// is set-group-ID, which passes its own group on.
    private func giveOwnership(_ path: String, to caller: Caller) throws(Errno) {
        guard givesOwnership, caller.uid != 0 || caller.gid != 0 else { return }
        var parent = stat()
        let parentPath = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        _ = try systemCall { fstatat(top, parentPath, &parent, 0) }
        let gid = parent.st_mode & S_ISGID != 0 ? gid_t.max : caller.gid
        _ = try systemCall { fchownat(top, path, caller.uid, gid, AT_SYMLINK_NOFOLLOW) }
    }

    private func giveOwnershipOrUndo(_ path: String, to caller: Caller, directory: Bool) throws(Errno) {
        do {
            try giveOwnership(path, to: caller)
        } catch {
            _ = unlinkat(top, path, directory ? AT_REMOVEDIR : 0)
            throw error
        }
    }
}
