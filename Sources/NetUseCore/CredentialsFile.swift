import Glibc

/// A mount.cifs credentials file: `username=`, `password=`, `domain=` lines. It holds a
/// password, so one that group or others may read is refused, as ssh refuses such a key.
public enum CredentialsFile {
    /// Credentials files are a few lines; anything larger is not one.
    public static let maxSize = 64 * 1024

    /// Reads the file. The daemon passes `owner`, the user the drive belongs to: the file is
    /// then opened with that user's identity (never root's, which could read anyone's), must
    /// be a regular file that user owns, and may not make the daemon wait (a FIFO, a lock).
    public static func read(_ path: String, owner: Identity? = nil) throws(NetError) -> (user: String?, password: String?, domain: String?) {
        let opened: (fd: Int32, error: Int32)
        if let owner {
            opened = ThreadCredentials.acting(as: owner) { openFile(path) }
        } else {
            opened = openFile(path)
        }
        guard opened.fd >= 0 else {
            throw NetError(.invalidParameter, detail: ["Cannot read the credentials file \(path): \(Errno(opened.error))."])
        }
        defer { close(opened.fd) }
        var attributes = stat()
        guard fstat(opened.fd, &attributes) == 0, attributes.st_mode & S_IFMT == S_IFREG else {
            throw NetError(.invalidParameter, detail: ["The credentials file \(path) is not a regular file."])
        }
        if let owner, attributes.st_uid != owner.uid {
            throw NetError(.accessDenied, detail: ["The credentials file \(path) belongs to uid \(attributes.st_uid), not \(owner.uid)."])
        }
        guard attributes.st_mode & 0o077 == 0 else {
            throw NetError(.invalidParameter, detail: [
                "The credentials file \(path) may be read by group or others (mode \(String(attributes.st_mode & 0o777, radix: 8))).",
                "Make it private first: chmod 600 \(path)"])
        }
        var bytes = [UInt8](repeating: 0, count: maxSize + 1)
        var count = 0
        while count < bytes.count {
            let got = bytes.withUnsafeMutableBytes { Glibc.read(opened.fd, $0.baseAddress! + count, $0.count - count) }
            if got < 0 && errno == EINTR { continue }
            guard got >= 0 else {
                throw NetError(.invalidParameter, detail: ["Cannot read the credentials file \(path): \(Errno.current)."])
            }
            if got == 0 { break }
            count += got
        }
        guard count <= maxSize else {
            throw NetError(.invalidParameter, detail: ["The credentials file \(path) is larger than \(maxSize) bytes."])
        }
        return parse(bytes[..<count])
    }

    private static func openFile(_ path: String) -> (fd: Int32, error: Int32) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        return (fd, fd < 0 ? errno : 0)
    }

    static func parse(_ bytes: ArraySlice<UInt8>) -> (user: String?, password: String?, domain: String?) {
        var result: (user: String?, password: String?, domain: String?) = (nil, nil, nil)
        for rawLine in bytes.split(separator: UInt8(ascii: "\n")) {
            var text = String(decoding: rawLine, as: UTF8.self)
            while text.last == "\r" { text.removeLast() }
            guard let equals = text.firstIndex(of: "=") else { continue }
            let key = text[..<equals].trimmingCharacters(in: " \t").lowercased()
            let value = String(text[text.index(after: equals)...])
            switch key {
            case "username", "user": result.user = value
            case "password", "pass": result.password = value
            case "domain", "workgroup": result.domain = value
            default: break
            }
        }
        return result
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}
