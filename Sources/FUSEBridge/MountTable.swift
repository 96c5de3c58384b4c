import Glibc
import NetUseCore

/// The kernel's view of what is mounted, and the two ways netuse takes a mount down.
public enum MountTable {
    public static let fileSystemType = "fuse.netuse"

    /// Mountpoints of netuse filesystems at or below `root`, deepest first.
    public static func netuseMounts(under root: String) -> [String] {
        netuseEntries().map(\.mountpoint).filter { $0 == root || $0.hasPrefix(root + "/") }.sorted { $0.count > $1.count }
    }

    /// The kernel's read-ahead for a mount, in KiB. The kernel offers FUSE only its default
    /// window (128 KiB); a larger one turns sequential reads into fewer, larger requests.
    /// Root only, best effort.
    public static func setReadAhead(_ mountpoint: String, kibibytes: Int) {
        // The kernel sets the window when the session's INIT is answered, which may come
        // after the mount: a stat of the mountpoint waits for it.
        var attributes = stat()
        _ = lstat(mountpoint + "/.", &attributes)
        guard geteuid() == 0, let device = netuseEntries().first(where: { $0.mountpoint == mountpoint })?.device else { return }
        let fd = open("/sys/class/bdi/\(device)/read_ahead_kb", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = "\(kibibytes)\n".withCString { write(fd, $0, strlen($0)) }
    }

    /// (mountpoint, major:minor) of every netuse mount, from /proc/self/mountinfo.
    private static func netuseEntries() -> [(mountpoint: String, device: String)] {
        guard let file = fopen("/proc/self/mountinfo", "r") else { return [] }
        defer { fclose(file) }
        var found: [(String, String)] = []
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let fields = String(cString: line!).split(separator: " ")
            guard fields.count > 4, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count,
                  fields[dash + 1] == fileSystemType else { continue }
            found.append((unescaped(fields[4]), String(fields[2])))
        }
        return found
    }

    /// A plain unmount: the kernel refuses with EBUSY while a process uses the mount.
    public static func unmount(_ mountpoint: String) throws(Errno) {
        if geteuid() == 0 {
            _ = try systemCall { umount2(mountpoint, 0) }
        } else if !fusermount(["-u", "-q", mountpoint]) {
            throw Errno(EBUSY)
        }
        MountUtab.remove(target: mountpoint)
    }

    /// Detaches the mount from the tree now; the kernel lets go of it when the last user does.
    public static func detach(_ mountpoint: String) {
        if geteuid() == 0 {
            _ = umount2(mountpoint, Int32(MNT_DETACH))
        } else {
            _ = fusermount(["-u", "-q", "-z", mountpoint])
        }
        MountUtab.remove(target: mountpoint)
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes.
    static func unescaped(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count,
               let value = UInt8(String(decoding: utf8[index + 1...index + 3], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// An unprivileged daemon unmounts through the setuid helper, as libfuse mounts through it.
    private static func fusermount(_ arguments: [String]) -> Bool {
        let argv = (["fusermount3"] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawnp(&pid, "fusermount3", nil, nil, argv, environ) == 0 else { return false }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return status == 0
    }
}
