import Glibc

/// Who asks: the process behind a FUSE request (as the kernel tells the session) or on the
/// control socket (as SO_PEERCRED tells).
public struct Caller: Sendable, Equatable {
    public let uid: uid_t
    public let gid: gid_t
    public let pid: pid_t

    public init(uid: uid_t, gid: gid_t, pid: pid_t) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
    }
}
