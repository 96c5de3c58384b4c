import CLinux
import Glibc

/// Whose permissions a file-system call is checked against: the fsuid, fsgid and
/// supplementary groups that Linux keeps per thread.
public struct Identity: Equatable, Sendable {
    public let uid: uid_t
    public let gid: gid_t
    public let groups: [gid_t]

    public init(uid: uid_t, gid: gid_t, groups: [gid_t]) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// A process that is still there (a control-socket peer waiting for its answer), with
    /// the groups it has now; none when they cannot be read, which can only refuse more.
    public static func of(_ caller: Caller) -> Identity {
        Identity(uid: caller.uid, gid: caller.gid, groups: groups(ofProcess: caller.pid) ?? [])
    }

    /// A user with no process to ask (a persistent drive restored at start): the groups the
    /// user database gives a fresh login.
    public static func ofUser(uid: uid_t, gid: gid_t) -> Identity {
        var record = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getpwuid_r(uid, &record, &buffer, buffer.count, &result) == 0, result != nil, let name = record.pw_name else {
            return Identity(uid: uid, gid: gid, groups: [])
        }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            guard getgrouplist(name, gid, &groups, &count) >= 0 else { return Identity(uid: uid, gid: gid, groups: []) }
        }
        return Identity(uid: uid, gid: gid, groups: Array(groups.prefix(Int(count))))
    }

    /// The groups of /proc/PID/status.
    static func groups(ofProcess pid: pid_t) -> [gid_t]? {
        guard pid > 0 else { return nil }
        let fd = open("/proc/\(pid)/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return bytes.withUnsafeBufferPointer { groups(inStatus: UnsafeBufferPointer(rebasing: $0[..<count])) }
    }

    /// The numbers of the `Groups:` line of a /proc status file, parsed in place.
    public static func groups(inStatus status: UnsafeBufferPointer<UInt8>) -> [gid_t]? {
        let key = Array("\nGroups:".utf8)
        var start = 0
        search: while start + key.count <= status.count {
            for offset in 0..<key.count where status[start + offset] != key[offset] {
                start += 1
                continue search
            }
            break
        }
        guard start + key.count <= status.count else { return nil }
        var groups: [gid_t] = []
        var value: gid_t? = nil
        for byte in status[(start + key.count)...] {
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                value = (value ?? 0) &* 10 &+ gid_t(byte - UInt8(ascii: "0"))
            } else {
                if let number = value { groups.append(number) }
                value = nil
                if byte == UInt8(ascii: "\n") { return groups }
            }
        }
        return groups
    }
}

/// Makes the calling thread act as an Identity on the file system, so that the kernel
/// checks every call (parents, ACLs, sticky bits, quotas) as it would for that user.
/// Only a daemon running as root can switch; a user's own instance acts as its user anyway.
public enum ThreadCredentials {
    public static let canSwitch = geteuid() == 0

    /// The daemon's own identity, which threads return to after acting for someone.
    public static let daemon = Identity(uid: geteuid(), gid: getegid(), groups: [])

    /// Sets the thread's identity. Groups first: changing fsuid away from 0 drops the
    /// capabilities that file access needs, but not CAP_SETGID.
    public static func assume(_ identity: Identity) throws(Errno) {
        precondition(canSwitch)
        let set = identity.groups.withUnsafeBufferPointer { netuse_thread_setgroups($0.count, $0.baseAddress) }
        guard set == 0 else { throw Errno.current }
        _ = netuse_setfsgid(identity.gid)
        _ = netuse_setfsuid(identity.uid)
        // setfsuid and setfsgid report no error: read back what the thread has.
        guard netuse_setfsuid(uid_t.max) == identity.uid, netuse_setfsgid(gid_t.max) == identity.gid else {
            throw Errno(EPERM)
        }
    }

    /// What the calling thread has now.
    public static func current() -> Identity {
        let count = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(count, 0)))
        let got = getgroups(count, &groups)
        return Identity(uid: netuse_setfsuid(uid_t.max), gid: netuse_setfsgid(gid_t.max), groups: Array(groups.prefix(Int(max(got, 0)))))
    }

    /// Runs `body` as `identity`, then gives the thread back the identity it had.
    public static func acting<T, E: Error>(as identity: Identity, _ body: () throws(E) -> T) throws(E) -> T {
        guard canSwitch else { return try body() }
        let previous = current()
        do {
            try assume(identity)
        } catch {
            // A thread that cannot take the caller's identity must not act at all.
            fatalError("cannot act as uid \(identity.uid): \(error)")
        }
        defer { try! assume(previous) }
        return try body()
    }
}
