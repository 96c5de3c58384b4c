import CFuse
import Glibc
import NetUseCore

/// On a drive that acts as its callers, each request by name runs with the requesting
/// process's fsuid, fsgid and supplementary groups. A libfuse worker keeps the identity of
/// the last request it served (its own drive's threads serve nobody else), so a run of
/// requests from one process costs the switch once; a worker's first request always switches,
/// since a new thread inherits whatever identity the thread that started it had.
enum RequestIdentity {
    /// How long the groups read for one thread of one uid and gid are used again. Reading
    /// them costs more than the rest of an open (/proc builds the whole status page), and
    /// only a privileged process changes its groups without changing its uid: for at most
    /// this long, such a process may act with the groups it had.
    static let groupsLifetime: Duration = .milliseconds(200)

    static func assume(for request: fuse_req_t) throws(Errno) {
        let context = fuse_req_ctx(request)!.pointee
        let worker = WorkerThread.current
        let now = MonotonicClock.now()
        let groups: [gid_t]
        if let known = worker.groups, known.thread == context.pid, known.uid == context.uid, known.gid == context.gid,
           now - known.readAt < groupsLifetime {
            groups = known.groups
        } else {
            groups = Self.groups(ofThread: context.pid)
            worker.groups = (context.pid, context.uid, context.gid, groups, now)
        }
        let identity = Identity(uid: context.uid, gid: context.gid, groups: groups)
        if worker.identity == identity { return }
        worker.identity = nil
        try ThreadCredentials.assume(identity)
        worker.identity = identity
    }

    /// The thread's supplementary groups, from the `Groups:` line of its /proc status (the
    /// request names the thread). None when the process is gone: that can only refuse more.
    /// libfuse's fuse_req_getgroups reads the file twice when it is over 1 KiB, as it always
    /// is: here one read of 4 KiB, an open and a close are all it costs.
    private static func groups(ofThread thread: pid_t) -> [gid_t] {
        guard thread > 0 else { return [] }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4096) { buffer -> [gid_t] in
            let fd = open("/proc/\(thread)/task/\(thread)/status", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return [] }
            defer { close(fd) }
            let count = read(fd, buffer.baseAddress, buffer.count)
            guard count > 0 else { return [] }
            return Identity.groups(inStatus: UnsafeBufferPointer(rebasing: buffer[..<count])) ?? []
        }
    }
}
