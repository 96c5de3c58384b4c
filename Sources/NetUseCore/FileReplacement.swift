import Glibc

/// A file replaced whole: written to a new file beside it (mkstemp, so no two writers share
/// one), flushed, then renamed over it, and the directory flushed, so that a reader or a
/// crash sees the old contents or the new, never a mix.
public enum FileReplacement {
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t) throws(Errno) {
        var template = Array((path + ".tmp-XXXXXX").utf8CString)
        let fd = try systemCall { mkstemp(&template) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let temporary = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        do {
            var written = 0
            while written < bytes.count {
                written += try systemCall { bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) } }
            }
            _ = try systemCall { fchmod(fd, mode) }
            _ = try systemCall { fsync(fd) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard Glibc.rename(temporary, path) == 0 else {
            let error = Errno.current
            unlink(temporary)
            throw error
        }
        let directory = open(String(path[..<path.lastIndex(of: "/")!]), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }
}
