import CLinux
import Glibc
import NetUseCore
import Redirector

/// A directory on this machine served as a share: the embedded default backend.
///
/// Every call is made relative to a descriptor of the top directory and resolves its path
/// beneath it without following any symlink (openat2's RESOLVE_BENEATH and
/// RESOLVE_NO_SYMLINKS for the directories, *at calls that do not follow for the last name),
/// so that nothing done on the directory itself, such as swapping a subdirectory for a
/// symlink, can lead a call outside the share. Run as root, the daemon makes each call with
/// the requesting thread's identity (see `RequestIdentity`), so the kernel checks it as
/// it would check the user's own call; files the user creates are theirs by that alone.
public final class LocalShare: ShareBackend {
    private let top: Int32
    public let capabilities: ShareCapabilities = ThreadCredentials.canSwitch
        ? [.symlinks, .hardLinks, .specialFiles, .exchange, .actsAsCaller]
        : [.symlinks, .hardLinks, .specialFiles, .exchange]
    private var actsAsCaller: Bool { capabilities.contains(.actsAsCaller) }

    /// Opens the directory as `caller` would, so that every directory above it is checked
    /// with the caller's own permissions; answers what `net use` would when that fails.
    public init(directory: String, caller: Identity) throws(NetError) {
        let opened = ThreadCredentials.acting(as: caller) { () -> (fd: Int32, error: Int32) in
            let fd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { return (fd, errno) }
            // A share is read and searched: both, as the caller, or no drive.
            guard netuse_access_fd(fd, R_OK | X_OK) == 0 else {
                let error = errno
                Glibc.close(fd)
                return (-1, error)
            }
            return (fd, 0)
        }
        guard opened.fd >= 0 else {
            switch opened.error {
            case EACCES, EPERM: throw NetError(.accessDenied, detail: ["\(directory): permission denied."])
            case ENOTDIR: throw NetError(.badNetName, detail: ["\(directory) is not a directory."])
            default: throw NetError(.badNetPath, detail: ["\(directory): \(Errno(opened.error))."])
            }
        }
        top = opened.fd
    }

    deinit { Glibc.close(top) }

    public func disconnect() {}

    // MARK: attributes

    public func attributes(of path: String) throws(Errno) -> stat {
        var attributes = stat()
        if path.isEmpty {
            _ = try systemCall { fstat(top, &attributes) }
        } else {
            try withParent(path) { (directory, name) throws(Errno) in
                _ = try systemCall { fstatat(directory, name, &attributes, AT_SYMLINK_NOFOLLOW) }
            }
        }
        return attributes
    }

    public func attributes(of handle: BackendHandle) throws(Errno) -> stat {
        var attributes = stat()
        _ = try systemCall { fstat(Int32(handle.rawValue), &attributes) }
        return attributes
    }

    public func setAttributes(_ changes: AttributeChanges, of path: String, handle: BackendHandle?) throws(Errno) -> stat {
        // The top has a descriptor of its own.
        let fd = handle.map { Int32($0.rawValue) } ?? (path.isEmpty ? top : nil)
        if let mode = changes.mode {
            if let fd {
                try changeMode(of: fd, to: mode)
            } else {
                // fchmodat follows a symlink in the last name, and an O_PATH descriptor
                // takes no fchmod: the descriptor's /proc entry names exactly that file.
                let file = try openBeneath(path, NETUSE_O_PATH)
                defer { Glibc.close(file) }
                try changeMode(of: file, to: mode)
            }
        }
        if changes.uid != nil || changes.gid != nil {
            let uid = changes.uid ?? uid_t.max
            let gid = changes.gid ?? gid_t.max
            if let fd {
                _ = try systemCall { fchown(fd, uid, gid) }
            } else {
                try withParent(path) { (directory, name) throws(Errno) in
                    _ = try systemCall { fchownat(directory, name, uid, gid, AT_SYMLINK_NOFOLLOW) }
                }
            }
        }
        if let size = changes.size {
            if let fd {
                _ = try systemCall { ftruncate(fd, size) }
            } else {
                let file = try openBeneath(path, O_WRONLY)
                defer { Glibc.close(file) }
                _ = try systemCall { ftruncate(file, size) }
            }
        }
        if changes.changesTimes {
            let times = [changes.accessTime ?? AttributeChanges.timeOmit, changes.modificationTime ?? AttributeChanges.timeOmit]
            if let fd {
                _ = try systemCall { futimens(fd, times) }
            } else {
                try withParent(path) { (directory, name) throws(Errno) in
                    _ = try systemCall { utimensat(directory, name, times, AT_SYMLINK_NOFOLLOW) }
                }
            }
        }
        if let fd { return try attributes(of: BackendHandle(Int64(fd))) }
        return try attributes(of: path)
    }

    public func list(_ path: String) throws(Errno) -> [DirectoryEntry] {
        let fd = try openBeneath(path, O_RDONLY | O_DIRECTORY)
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

    /// What an open passes on to the directory.
    /// - Not the kernel's own bits (an exec's __FMODE_EXEC) or creation flags: openat2
    ///   refuses bits it does not know.
    /// - Not O_DIRECT or O_APPEND, which stay on this side. The kernel already sends an
    ///   O_DIRECT descriptor's reads and writes past its page cache, in buffers of any
    ///   alignment, which a backing file opened O_DIRECT refuses (EINVAL). It already sends
    ///   an appending write at the end of the file, and it writes mapped pages back through
    ///   any handle that can write, at their own offsets, which O_APPEND would append.
    static let openFlags: Int32 = O_ACCMODE | O_NONBLOCK | O_SYNC | O_DSYNC | O_TRUNC | O_NOFOLLOW | O_DIRECTORY
        | NETUSE_O_NOATIME | NETUSE_O_LARGEFILE
    private static let kernelFlags = NETUSE_O_DIRECT | O_APPEND

    public func open(_ path: String, flags: Int32) throws(Errno) -> BackendHandle {
        BackendHandle(Int64(try openBeneath(path, flags & Self.openFlags)))
    }

    public func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> BackendHandle {
        let fd = try withParent(path) { (directory, name) throws(Errno) in
            try systemCall { openat(directory, name, (flags & ~Self.kernelFlags) | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode) }
        }
        return BackendHandle(Int64(fd))
    }

    /// Whether the thread's identity may open the file so now (faccessat2 with AT_EACCESS
    /// asks with the fsuid and groups, as open would).
    public func checkAccess(_ path: String, flags: Int32) throws(Errno) {
        guard actsAsCaller else { return }
        let file = try openBeneath(path, NETUSE_O_PATH)
        defer { Glibc.close(file) }
        var mode: Int32 = 0
        switch flags & O_ACCMODE {
        case O_WRONLY: mode = W_OK
        case O_RDWR: mode = R_OK | W_OK
        default: mode = R_OK
        }
        _ = try systemCall { netuse_access_fd(file, mode) }
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
        try withParent(path) { (directory, name) throws(Errno) in _ = try systemCall { mkdirat(directory, name, mode) } }
    }

    public func makeNode(_ path: String, mode: mode_t, device: dev_t, caller: Caller) throws(Errno) {
        try withParent(path) { (directory, name) throws(Errno) in _ = try systemCall { mknodat(directory, name, mode, device) } }
    }

    public func removeDirectory(_ path: String) throws(Errno) {
        try withParent(path) { (directory, name) throws(Errno) in _ = try systemCall { unlinkat(directory, name, AT_REMOVEDIR) } }
    }

    public func unlink(_ path: String) throws(Errno) {
        try withParent(path) { (directory, name) throws(Errno) in _ = try systemCall { unlinkat(directory, name, 0) } }
    }

    public func rename(_ from: String, to: String, flags: RenameFlags) throws(Errno) {
        try withParent(from) { (fromDirectory, fromName) throws(Errno) in
            try withParent(to) { (toDirectory, toName) throws(Errno) in
                _ = try systemCall { netuse_renameat2(fromDirectory, fromName, toDirectory, toName, flags.rawValue) }
            }
        }
    }

    public func symlink(target: String, at path: String, caller: Caller) throws(Errno) {
        try withParent(path) { (directory, name) throws(Errno) in _ = try systemCall { symlinkat(target, directory, name) } }
    }

    public func readLink(_ path: String) throws(Errno) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = try withParent(path) { (directory, name) throws(Errno) in
            try systemCall { readlinkat(directory, name, &buffer, buffer.count - 1) }
        }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func link(_ existing: String, to newPath: String) throws(Errno) {
        try withParent(existing) { (fromDirectory, fromName) throws(Errno) in
            try withParent(newPath) { (toDirectory, toName) throws(Errno) in
                _ = try systemCall { linkat(fromDirectory, fromName, toDirectory, toName, 0) }
            }
        }
    }

    public func statistics() throws(Errno) -> statvfs {
        var result = statvfs()
        _ = try systemCall { fstatvfs(top, &result) }
        return result
    }

    /// A write, truncate or chown by someone else clears set-user-ID and set-group-ID bits:
    /// the kernel asks for that with a mode change a non-owner could not make (it has
    /// checked that the caller may write). A change that only clears those bits is made
    /// with the daemon's identity when the caller's is refused.
    private func changeMode(of fd: Int32, to mode: mode_t) throws(Errno) {
        // chmod through the descriptor's /proc entry works for O_PATH descriptors too.
        let path = "/proc/self/fd/\(fd)"
        do {
            _ = try systemCall { chmod(path, mode) }
        } catch where error.rawValue == EPERM && actsAsCaller {
            var attributes = stat()
            _ = try systemCall { fstat(fd, &attributes) }
            let privileges: mode_t = 0o6000  // set-user-ID, set-group-ID
            let now = attributes.st_mode & 0o7777, wanted = mode & 0o7777
            let onlyClears = wanted & ~privileges == now & ~privileges && wanted & ~now == 0 && wanted != now
            guard onlyClears else { throw error }
            _ = try ThreadCredentials.acting(as: ThreadCredentials.daemon) { () throws(Errno) in
                try systemCall { chmod(path, mode) }
            }
        }
    }

    // MARK: resolution

    /// A descriptor of `path` ("" is the top) reached beneath the top through no symlink;
    /// a symlink as the last name is refused (ELOOP) unless `flags` asks for O_PATH|O_NOFOLLOW.
    private func openBeneath(_ path: String, _ flags: Int32) throws(Errno) -> Int32 {
        try systemCall { netuse_open_beneath(top, path.isEmpty ? "." : path, flags | O_CLOEXEC, 0) }
    }

    /// Runs `body` with a descriptor of the path's directory (reached as `openBeneath` does)
    /// and the path's last name, for the *at call that names it without following it.
    private func withParent<T>(_ path: String, _ body: (Int32, String) throws(Errno) -> T) throws(Errno) -> T {
        guard let slash = path.lastIndex(of: "/") else { return try body(top, path) }
        let directory = try openBeneath(String(path[..<slash]), NETUSE_O_PATH | O_DIRECTORY)
        defer { Glibc.close(directory) }
        return try body(directory, String(path[path.index(after: slash)...]))
    }
}
