import Glibc
import NetUseCore

/// A mount.cifs credentials file: `username=`, `password=`, `domain=` lines. It holds a
/// password, so one that group or others may read is refused, as ssh refuses such a key.
public enum CredentialsFile {
    /// `owner`, when given, must own the file (the daemon reading a user's file for a
    /// persistent drive); root may own any.
    public static func read(_ path: String, owner: uid_t? = nil) throws(NetError) -> (user: String?, password: String?, domain: String?) {
        var attributes = stat()
        guard lstat(path, &attributes) == 0 else {
            throw NetError(.invalidParameter, detail: ["Cannot read the credentials file \(path): \(Errno.current)."])
        }
        if let owner, attributes.st_uid != owner && attributes.st_uid != 0 {
            throw NetError(.accessDenied, detail: ["The credentials file \(path) belongs to uid \(attributes.st_uid), not \(owner)."])
        }
        guard attributes.st_mode & 0o077 == 0 else {
            throw NetError(.invalidParameter, detail: [
                "The credentials file \(path) may be read by group or others (mode \(String(attributes.st_mode & 0o777, radix: 8))).",
                "Make it private first: chmod 600 \(path)"])
        }
        guard let file = fopen(path, "r") else {
            throw NetError(.invalidParameter, detail: ["Cannot read the credentials file \(path): \(Errno.current)."])
        }
        defer { fclose(file) }
        var result: (user: String?, password: String?, domain: String?) = (nil, nil, nil)
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            var text = String(cString: line!)
            while text.last == "\n" || text.last == "\r" { text.removeLast() }
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
