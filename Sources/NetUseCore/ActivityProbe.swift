import CLinux
import Glibc

/// How one process uses a drive, as `fuser -m` would find it.
public struct ProcessUse: Codable, Sendable, Hashable, CustomStringConvertible {
    public enum How: String, Codable, Sendable, Hashable {
        case cwd, root, exe, open, mapped
        /// The daemon may not look at this process: it cannot tell whether it uses the drive.
        case uninspectable
    }

    public var pid: Int32
    public var command: String
    public var how: How
    public var path: String?

    public init(pid: Int32, command: String, how: How, path: String?) {
        self.pid = pid
        self.command = command
        self.how = how
        self.path = path
    }

    /// Open files and maps make a drive's files busy (2401); a cwd, root or executable
    /// makes the device busy (2404).
    public var holdsFiles: Bool { how == .open || how == .mapped }

    public var description: String {
        switch how {
        case .uninspectable: return "pid \(pid) (\(command)): cannot be inspected, so it may be using the drive"
        default: return "pid \(pid) (\(command)): \(how.rawValue) \(path ?? "")"
        }
    }
}

/// Finds the processes that use a mountpoint by reading `/proc/*/{cwd,root,exe,fd/*,maps}`.
/// Only symlinks and text are read, never the mount itself, so a hung share cannot hang it.
public struct ActivityProbe: Sendable {
    public let procRoot: String
    /// The daemon's own pid: its handles are on the share, not on the mount.
    public let ownPID: Int32

    public init(procRoot: String = "/proc", ownPID: Int32 = getpid()) {
        self.procRoot = procRoot
        self.ownPID = ownPID
    }

    public func scan(mountpoint: String) -> [ProcessUse] {
        var uses: [ProcessUse] = []
        for pid in processIDs() where pid != ownPID {
            uses += scan(pid: pid, mountpoint: mountpoint)
        }
        return uses
    }

    func scan(pid: Int32, mountpoint: String) -> [ProcessUse] {
        let base = "\(procRoot)/\(pid)"
        func onDrive(_ path: String) -> Bool { path == mountpoint || path.hasPrefix(mountpoint + "/") }
        let command = command(of: pid)
        var uses: [ProcessUse] = []
        var executable: String?
        for (link, how) in [("cwd", ProcessUse.How.cwd), ("root", .root), ("exe", .exe)] {
            switch readLink(base + "/" + link) {
            case .success(let target) where onDrive(target):
                uses.append(ProcessUse(pid: pid, command: command, how: how, path: target))
                if how == .exe { executable = target }
            case .failure(let error) where error == Errno(EACCES) || error == Errno(EPERM):
                return [ProcessUse(pid: pid, command: command, how: .uninspectable, path: nil)]
            default:
                break
            }
        }
        for name in entries(base + "/fd") {
            if case .success(let target) = readLink(base + "/fd/" + name), onDrive(target) {
                uses.append(ProcessUse(pid: pid, command: command, how: .open, path: target))
            }
        }
        // The executable's own image is mapped too; it counts as exe, not as a mapped file.
        var mapped: Set<String> = executable.map { [$0] } ?? []
        for path in mappedPaths(base + "/maps", under: mountpoint) where mapped.insert(path).inserted {
            uses.append(ProcessUse(pid: pid, command: command, how: .mapped, path: path))
        }
        return uses
    }

    /// The process's name as `ps` shows it, or "?" once it is gone.
    public func command(of pid: Int32) -> String {
        (readText("\(procRoot)/\(pid)/comm") ?? "?").split(separator: "\n").first.map(String.init) ?? "?"
    }

    /// The files below `mountpoint` that a maps file names. Most processes map nothing from
    /// the drive: a byte search for the mountpoint skips them without parsing a line.
    func mappedPaths(_ mapsFile: String, under mountpoint: String) -> [String] {
        guard let maps = readBytes(mapsFile) else { return [] }
        let needle = Array(mountpoint.utf8)
        let found = maps.withUnsafeBytes { haystack in
            needle.withUnsafeBytes { netuse_contains(haystack.baseAddress, haystack.count, $0.baseAddress, $0.count) != 0 }
        }
        guard found else { return [] }
        var paths: [String] = []
        for line in String(decoding: maps, as: UTF8.self).split(separator: "\n") {
            // address perms offset dev inode [path]; the path may hold spaces.
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6 else { continue }
            var path = String(fields[5].drop { $0 == " " })
            if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }
            if path == mountpoint || path.hasPrefix(mountpoint + "/") { paths.append(path) }
        }
        return paths
    }

    private func processIDs() -> [Int32] {
        entries(procRoot).compactMap { Int32($0) }
    }

    private func entries(_ directory: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    private func readLink(_ path: String) -> Result<String, Errno> {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count >= 0 else { return .failure(Errno.current) }
        var target = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if target.hasSuffix(" (deleted)") { target.removeLast(" (deleted)".count) }
        return .success(target)
    }

    private func readText(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    private func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result = [UInt8](repeating: 0, count: 16384)
        var used = 0
        while true {
            if used == result.count { result += [UInt8](repeating: 0, count: result.count) }
            let count = result.withUnsafeMutableBytes { read(fd, $0.baseAddress! + used, $0.count - used) }
            if count <= 0 { break }
            used += count
        }
        result.removeSubrange(used...)
        return result
    }
}
