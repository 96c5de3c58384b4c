import CFuse
import Glibc
import NetUseCore

/// On a drive that acts as its callers, each request by name runs with the requesting
/// process's fsuid, fsgid and supplementary groups. A libfuse worker keeps the identity of
/// the last request it served (its own drive's threads serve nobody else), so a run of
/// requests from one process costs the switch once; a worker's first request always switches,
/// since a new thread inherits whatever identity the thread that started it had.
enum RequestIdentity {
    static func assume(for request: fuse_req_t) throws(Errno) {
        let context = fuse_req_ctx(request)!.pointee
        let identity = Identity(uid: context.uid, gid: context.gid, groups: groups(of: request))
        if let current = Current.identity, current == identity { return }
        Current.identity = nil
        try ThreadCredentials.assume(identity)
        Current.identity = identity
    }

    /// The requesting thread's supplementary groups, from the `Groups:` line of its
    /// /proc status (the request names the thread). None when the process is gone: that can
    /// only refuse more. libfuse's fuse_req_getgroups reads the file twice when it is over
    /// 1 KiB, as it always is: one read of 4 KiB, open and close, are all this costs.
    private static func groups(of request: fuse_req_t) -> [gid_t] {
        let thread = fuse_req_ctx(request)!.pointee.pid
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

    /// The identity this thread last took, kept in thread-specific storage.
    private enum Current {
        nonisolated(unsafe) static let key: pthread_key_t = {
            var key = pthread_key_t()
            pthread_key_create(&key) { $0.map { Unmanaged<Box>.fromOpaque($0).release() } }
            return key
        }()

        final class Box { let identity: Identity; init(_ identity: Identity) { self.identity = identity } }

        static var identity: Identity? {
            get { pthread_getspecific(key).map { Unmanaged<Box>.fromOpaque($0).takeUnretainedValue().identity } }
            set {
                if let old = pthread_getspecific(key) { Unmanaged<Box>.fromOpaque(old).release() }
                pthread_setspecific(key, newValue.map { Unmanaged.passRetained(Box($0)).toOpaque() })
            }
        }
    }
}
