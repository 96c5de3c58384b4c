/// An SMB share: `//server/share/path`, `\\server\share\path` or
/// `smb://[user@]server[:port]/share/path`.
public struct SMBLocation: Hashable, Sendable {
    public let server: String
    public let port: Int?
    public let share: String
    /// A folder below the share that the drive maps instead of its top ("" for the top).
    public let path: String
    /// The user named in an smb:// URL, if any.
    public let user: String?

    /// The URL libsmbclient takes.
    public var url: String {
        "smb://\(server)\(port.map { ":\($0)" } ?? "")/\(share)\(path.isEmpty ? "" : "/" + path)"
    }

    /// The same server as another drive's (for the one-user-per-server rule).
    public var serverKey: String { server.lowercased() + (port.map { ":\($0)" } ?? "") }

    /// Whether the text is written as an SMB share at all.
    public static func names(_ text: String) -> Bool {
        text.hasPrefix("//") || text.hasPrefix("\\\\") || text.lowercased().hasPrefix("smb://")
    }

    /// Without a port, the UNC form users know; with one, the URL that says it.
    public var description: String {
        if port != nil { return url }
        return "//\(server)/\(share)\(path.isEmpty ? "" : "/" + path)"
    }

    public init(parsing text: String) throws(NetError) {
        var rest = Substring(text.replacing("\\", with: "/"))
        var user: String?
        if rest.lowercased().hasPrefix("smb://") {
            rest = rest.dropFirst(6)
            if let at = rest.firstIndex(of: "@"), !rest[..<at].contains("/") {
                user = String(rest[..<at])
                rest = rest[rest.index(after: at)...]
            }
        } else {
            rest = rest.dropFirst(2)
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count >= 2 else {
            throw NetError(.badNetName, detail: ["An SMB share is //server/share or smb://server[:port]/share, not \(text)."])
        }
        var server = String(parts[0])
        var port: Int?
        if !server.hasPrefix("["), let colon = server.lastIndex(of: ":") {
            guard let number = Int(server[server.index(after: colon)...]), (1...65535).contains(number) else {
                throw NetError(.badNetName, detail: ["'\(server)' has no valid port."])
            }
            port = number
            server = String(server[..<colon])
        }
        guard !server.isEmpty else { throw NetError(.badNetName, detail: ["\(text) names no server."]) }
        self.server = server
        self.port = port
        self.share = String(parts[1])
        self.path = parts.dropFirst(2).filter { $0 != "." }.joined(separator: "/")
        self.user = user
    }
}

/// What a drive connects to, as the kind of share that took it parsed it from what the
/// user typed (see `ShareKinds` in Backends).
public struct Remote: Hashable, Sendable, CustomStringConvertible {
    /// Which kind of share serves it: "file", "smb".
    public let scheme: String
    /// The canonical spelling, which `list` shows and the state file keeps.
    public let description: String
    /// The server, for the rule of one user name per server (nil for this machine).
    public let server: String?
    /// A user named in the remote itself (`smb://bob@server/share`).
    public let user: String?

    public init(scheme: String, description: String, server: String? = nil, user: String? = nil) {
        self.scheme = scheme
        self.description = description
        self.server = server
        self.user = user
    }

    /// A local directory: an absolute path or a `file://` URL (this machine only), in its
    /// canonical spelling.
    public static func localPath(parsing text: String) throws(NetError) -> String {
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
        return Remote.normalized(path)
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
