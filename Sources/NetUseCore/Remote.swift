/// What a drive connects to, parsed from what the user typed.
public enum Remote: Hashable, Sendable, CustomStringConvertible {
    /// A directory on this machine: an absolute path or a `file://` URL.
    case local(path: String)

    public init(parsing text: String) throws(NetError) {
        if text.hasPrefix("//") || text.hasPrefix("\\\\") || text.lowercased().hasPrefix("smb://") {
            throw NetError(.notSupported, detail: ["SMB shares are not supported by this build yet: \(text)"])
        }
        var path = text
        if text.lowercased().hasPrefix("file://") {
            let rest = text.dropFirst("file://".count)
            guard let slash = rest.firstIndex(of: "/") else {
                throw NetError(.badNetName, detail: ["A file:// URL needs an absolute path: \(text)"])
            }
            let host = rest[..<slash]
            guard host.isEmpty || host.lowercased() == "localhost" else {
                throw NetError(.badNetName, detail: ["A file:// URL names this machine only, not \(host)."])
            }
            path = Remote.percentDecoded(String(rest[slash...]))
        }
        guard path.hasPrefix("/") else {
            throw NetError(.badNetName, detail: ["A local share is an absolute directory path or a file:// URL: \(text)"])
        }
        self = .local(path: Remote.normalized(path))
    }

    public var description: String {
        switch self {
        case .local(let path): return path
        }
    }

    /// Collapses `//`, `.` and `..` so that one directory has one spelling in `list`.
    static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": _ = parts.popLast()
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    static func percentDecoded(_ text: String) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
               let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
