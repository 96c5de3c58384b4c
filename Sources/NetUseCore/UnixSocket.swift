import CLinux
import Glibc

/// The few Unix stream socket calls the control channel needs, with errors as `Errno`.
public enum UnixSocket {
    public static func listen(path: String, mode: mode_t, backlog: Int32 = SOMAXCONN) throws(Errno) -> Int32 {
        let fd = try systemCall { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            try withAddress(path) { (address, length) throws(Errno) in
                _ = try systemCall { bind(fd, address, length) }
            }
            _ = try systemCall { chmod(path, mode) }
            _ = try systemCall { Glibc.listen(fd, backlog) }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    public static func connect(path: String) throws(Errno) -> Int32 {
        let fd = try systemCall { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            try withAddress(path) { (address, length) throws(Errno) in
                _ = try systemCall { Glibc.connect(fd, address, length) }
            }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    public static func accept(_ listener: Int32) throws(Errno) -> Int32 {
        let fd = try systemCall { Glibc.accept(listener, nil, nil) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    public static func peer(of fd: Int32) throws(Errno) -> Caller {
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        _ = try systemCall { netuse_peer_credentials(fd, &pid, &uid, &gid) }
        return Caller(uid: uid, gid: gid, pid: pid)
    }

    /// Writes every byte; MSG_NOSIGNAL so a client that hung up costs an EPIPE, not the daemon.
    public static func send(_ fd: Int32, _ bytes: [UInt8]) throws(Errno) {
        try bytes.withUnsafeBytes { buffer in Result { () throws(Errno) in try send(fd, parts: [buffer]) } }.get()
    }

    /// Sends the parts as one stream of bytes with as few system calls as the socket allows:
    /// large payloads go out from where they lie, not through a copy that joins them.
    public static func send(_ fd: Int32, parts: [UnsafeRawBufferPointer]) throws(Errno) {
        var pending = parts.filter { $0.count > 0 }
        while !pending.isEmpty {
            var vectors = pending.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
            let count = vectors.count
            let sent = try systemCall {
                vectors.withUnsafeMutableBufferPointer { vectors in
                    var message = msghdr()
                    message.msg_iov = vectors.baseAddress
                    message.msg_iovlen = count
                    return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
                }
            }
            var remaining = sent
            while let first = pending.first, remaining >= first.count {
                remaining -= first.count
                pending.removeFirst()
            }
            if remaining > 0 { pending[0] = UnsafeRawBufferPointer(rebasing: pending[0][remaining...]) }
        }
    }

    private static func withAddress(
        _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(Errno) -> Void
    ) throws(Errno) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw Errno(ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        try withUnsafePointer(to: &address) { (pointer) throws(Errno) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (generic) throws(Errno) in
                try body(generic, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}
