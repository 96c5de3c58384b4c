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

    /// The requesting thread's supplementary groups, as libfuse reads them from /proc.
    /// None when the process is gone: that can only refuse more.
    private static func groups(of request: fuse_req_t) -> [gid_t] {
        var buffer = [gid_t](repeating: 0, count: 32)
        var count = fuse_req_getgroups(request, Int32(buffer.count), &buffer)
        if count > buffer.count {
            buffer = [gid_t](repeating: 0, count: Int(count))
            count = fuse_req_getgroups(request, Int32(buffer.count), &buffer)
        }
        guard count > 0 else { return [] }
        return Array(buffer.prefix(Int(min(count, Int32(buffer.count)))))
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
