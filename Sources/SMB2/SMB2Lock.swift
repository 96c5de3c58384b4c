import Glibc
import NetUseCore

/// What a LOCK element asks for (MS-SMB2 2.2.26.1).
public enum SMB2LockKind: Sendable {
    case shared, exclusive, unlock

    var flags: UInt32 {
        switch self {
        case .shared: return 0x1
        case .exclusive: return 0x2
        case .unlock: return 0x4
        }
    }
}

extension SMB2Tree {
    /// Locks or unlocks one byte range of an open. Without `waiting` a lock that conflicts
    /// fails at once (EAGAIN); with it the server holds the request until the range is free,
    /// and `waiting` is handed the way to give up (a CANCEL, answered with EINTR).
    public func lock(_ file: SMB2FileId, offset: UInt64, length: UInt64, _ kind: SMB2LockKind,
                     waiting: ((@escaping @Sendable () -> Void) -> Void)? = nil) throws(Errno) {
        var body = ByteWriter()
        body.u16(48)
        body.u16(1)  // one element
        body.u32(0)  // no lock sequence (resilient handles)
        file.write(to: &body)
        body.u64(offset)
        body.u64(length)
        let failImmediately: UInt32 = kind != .unlock && waiting == nil ? 0x10 : 0
        body.u32(kind.flags | failImmediately)
        body.u32(0)
        let lock = request(.lock, body)
        guard let waiting, kind != .unlock else {
            let reply = try connection.send(lock)
            // A lock that lost the race to the CANCEL is answered as any refused one.
            if reply.status == .fileLockConflict { throw Errno(EAGAIN) }
            try reply.check()
            return
        }
        let id = try connection.submit([lock])[0]
        let connection = self.connection
        waiting { connection.cancel(id) }
        let reply = try connection.awaitHeldReply(id)
        if reply.status == .fileLockConflict { throw Errno(EAGAIN) }
        try reply.check()
    }
}
