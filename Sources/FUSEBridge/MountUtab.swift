import Glibc
import NetUseCore

/// libmount's table of userspace mount options (`/run/mount/utab`), which the kernel does
/// not keep: `mount`, `findmnt -m` and GIO (so GNOME Files and other gvfs file managers)
/// read a mount's `x-*` options from it. libfuse 3.14 mounts without writing it, so the
/// system instance writes its drives' entries itself, in libmount's format and under its
/// lock, and takes each out when the mount leaves the tree. Root only: nobody else may
/// write the file, and a user instance's drives are the user's own business.
public enum MountUtab {
    static let directory = "/run/mount"
    static let path = directory + "/utab"

    /// Lists the drive in file managers, named `name` ("Q: (share on server)").
    public static func add(target: String, source: String, name: String) {
        let line = "SRC=\(mangled(source)) TARGET=\(mangled(target)) ROOT=/ OPTS=x-gvfs-show,x-gvfs-name=\(percentEncoded(name))"
        update { lines in lines.filter { !names($0, target) } + [line] }
    }

    public static func remove(target: String) {
        update { lines in lines.filter { !names($0, target) } }
    }

    /// At start: entries a daemon that did not stop cleanly left for mounts below `root`.
    public static func removeAll(under root: String) {
        update { lines in lines.filter { line in !names(line) { $0 == root || $0.hasPrefix(root + "/") } } }
    }

    /// Whether the entry's TARGET is `target`.
    private static func names(_ line: String, _ target: String) -> Bool {
        names(line) { $0 == target }
    }

    private static func names(_ line: String, _ matches: (String) -> Bool) -> Bool {
        guard let field = line.split(separator: " ").first(where: { $0.hasPrefix("TARGET=") }) else { return false }
        return matches(MountTable.unescaped(field.dropFirst("TARGET=".count)))
    }

    /// Rewrites the file whole (FileReplacement), under libmount's lock,
    /// so that a reader sees the old table or the new one and `mount` running meanwhile
    /// loses nothing. Best effort: a drive works without its file-manager entry.
    private static func update(_ change: ([String]) -> [String]) {
        guard geteuid() == 0 else { return }
        if mkdir(directory, 0o755) != 0 && errno != EEXIST { return }
        let lock = open(path + ".lock", O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard lock >= 0 else { return }
        defer { close(lock) }
        guard flock(lock, LOCK_EX) == 0 else { return }
        let before = read()
        let after = change(before)
        guard after != before else { return }
        try? FileReplacement.write(Array(after.map { $0 + "\n" }.joined().utf8), to: path, mode: 0o644)
    }

    private static func read() -> [String] {
        guard let file = fopen(path, "re") else { return [] }
        defer { fclose(file) }
        var lines: [String] = []
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let text = String(decoding: UnsafeRawBufferPointer(start: line, count: strlen(line!)), as: UTF8.self)
            let trimmed = text.hasSuffix("\n") ? String(text.dropLast()) : text
            if !trimmed.isEmpty { lines.append(trimmed) }
        }
        return lines
    }

    /// libmount's escaping of a field: space, tab, newline and backslash as octal.
    static func mangled(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case " ": result += "\\040"
            case "\t": result += "\\011"
            case "\n": result += "\\012"
            case "\\": result += "\\134"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// gvfs reads x-gvfs-name percent-decoded; encoded, a name from a user cannot end the
    /// option (a comma), the field (a space) or the line.
    static func percentEncoded(_ text: String) -> String {
        text.percentEncoded { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7a) || "-._~:()".utf8.contains(byte)
        }
    }
}
