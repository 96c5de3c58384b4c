import FoundationEssentials

/// The control socket speaks one JSON object per line each way; `v` is the protocol version.
public enum ControlProtocol {
    public static let version = 1
    /// Requests are small; anything longer is refused without being buffered.
    public static let maxRequestLine = 64 * 1024
}

/// A request as it travels. Every field but `v` and `op` depends on the operation.
public struct ControlRequest: Codable, Sendable, Equatable {
    public var v: Int
    public var op: String
    public var letter: String?
    public var remote: String?
    public var options: [String: String]?
    /// use of an SMB share: who connects. The password crosses this socket and nothing else.
    public var user: String?
    public var password: String?
    public var domain: String?
    /// use: remember the drive across restarts; an SMB drive with a password names the
    /// mount.cifs credentials file the daemon reads it from.
    public var persistent: Bool?
    public var credentialsFile: String?
    /// use with `-o sec=krb5`: the caller's KRB5CCNAME, read as the caller.
    public var credentialsCache: String?
    /// list: every user's drives (root only).
    public var all: Bool?
    /// delete: detach at once and fail what is still open with EIO (`net use /d /y`).
    public var force: Bool?
    /// delete: seconds to wait for the drive to become idle.
    public var wait: Double?
    /// use: one drive every user sees, each acting as themself (root only; `net use /global`).
    public var global: Bool?
    /// delete, refs: whose drive (root only); the caller's own, else the global one, without it.
    public var owner: UInt32?

    public init(op: String, letter: String? = nil, remote: String? = nil, options: [String: String]? = nil,
                user: String? = nil, password: String? = nil, domain: String? = nil,
                persistent: Bool? = nil, credentialsFile: String? = nil, all: Bool? = nil,
                force: Bool? = nil, wait: Double? = nil, global: Bool? = nil, owner: UInt32? = nil,
                credentialsCache: String? = nil) {
        self.v = ControlProtocol.version
        self.op = op
        self.letter = letter
        self.remote = remote
        self.options = options
        self.user = user
        self.password = password
        self.domain = domain
        self.persistent = persistent
        self.credentialsFile = credentialsFile
        self.credentialsCache = credentialsCache
        self.all = all
        self.force = force
        self.wait = wait
        self.global = global
        self.owner = owner
    }

    public func encodedLine() -> [UInt8] { Array(try! JSONEncoder().encode(self)) + [UInt8(ascii: "\n")] }
}

/// Which letter a `use` asks for: a given one, or `*` for the next free one.
public enum LetterChoice: Equatable, Sendable {
    case letter(DriveLetter)
    case nextFree
}

/// Who connects to an SMB share; guest when `user` is empty.
public struct Credentials: Equatable, Sendable {
    public var user: String
    public var password: String
    public var domain: String

    public init(user: String = "", password: String = "", domain: String = "") {
        self.user = user
        self.password = password
        self.domain = domain
    }

    /// `DOMAIN\name` and `name@realm` both name a domain.
    public init(account: String, password: String, domain: String?) {
        var user = account
        var parsedDomain = ""
        if let backslash = account.firstIndex(of: "\\") {
            parsedDomain = String(account[..<backslash])
            user = String(account[account.index(after: backslash)...])
        } else if let at = account.lastIndex(of: "@") {
            parsedDomain = String(account[account.index(after: at)...])
            user = String(account[..<at])
        }
        self.init(user: user, password: password, domain: domain ?? parsedDomain)
    }
}

/// A `use` request, checked. The remote is parsed by the kind of share that takes it.
public struct UseRequest: Equatable, Sendable {
    public var letter: LetterChoice
    public var remote: String
    public var options: [String: String]
    public var credentials: Credentials
    public var persistent: Bool
    public var credentialsFile: String?
    public var credentialsCache: String?
    public var global: Bool

    public init(letter: LetterChoice, remote: String, options: [String: String] = [:], credentials: Credentials = Credentials(),
                persistent: Bool = false, credentialsFile: String? = nil, credentialsCache: String? = nil, global: Bool = false) {
        self.letter = letter
        self.remote = remote
        self.options = options
        self.credentials = credentials
        self.persistent = persistent
        self.credentialsFile = credentialsFile
        self.credentialsCache = credentialsCache
        self.global = global
    }
}

/// A request checked and parsed: what the daemon acts on.
public enum ControlOperation: Equatable, Sendable {
    case use(UseRequest)
    case delete(DriveLetter, force: Bool, wait: Duration, owner: UInt32? = nil)
    case list(all: Bool)
    case refs(DriveLetter, owner: UInt32? = nil)

    /// Parses one request line; every way it can be wrong is a `NetError` the client can print.
    public init(line: [UInt8]) throws(NetError) {
        let request: ControlRequest
        do {
            request = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
        } catch DecodingError.keyNotFound(let key, _) {
            throw NetError(.invalidParameter, detail: ["The request has no '\(key.stringValue)' field."])
        } catch DecodingError.typeMismatch(_, let context) {
            throw NetError(.invalidParameter, detail: ["The request's '\(context.codingPath.map(\.stringValue).joined(separator: "."))' field has the wrong type."])
        } catch {
            throw NetError(.invalidParameter, detail: ["The request is not a JSON object."])
        }
        guard request.v == ControlProtocol.version else {
            throw NetError(.invalidParameter, detail: ["Protocol version \(request.v) is not spoken here; this daemon speaks version \(ControlProtocol.version)."])
        }
        try Self.checkText(request)
        switch request.op {
        case "use":
            let letterText = try Self.required(request.letter, "letter")
            let choice: LetterChoice
            if letterText == "*" {
                choice = .nextFree
            } else {
                choice = .letter(try Self.letter(letterText))
            }
            let remote = try Self.required(request.remote, "remote")
            let credentials = request.user.map { Credentials(account: $0, password: request.password ?? "", domain: request.domain) }
                ?? Credentials(password: request.password ?? "", domain: request.domain ?? "")
            if let file = request.credentialsFile, !file.hasPrefix("/") {
                throw NetError(.invalidParameter, detail: ["The credentials file must be an absolute path, not \(file)."])
            }
            self = .use(UseRequest(letter: choice, remote: remote, options: request.options ?? [:], credentials: credentials,
                                   persistent: request.persistent ?? false, credentialsFile: request.credentialsFile,
                                   credentialsCache: request.credentialsCache, global: request.global ?? false))
        case "delete":
            let wait = request.wait ?? 0
            guard wait >= 0, wait <= 3600 else {
                throw NetError(.invalidParameter, detail: ["'wait' takes 0 to 3600 seconds."])
            }
            self = .delete(try Self.letter(try Self.required(request.letter, "letter")),
                           force: request.force ?? false, wait: .milliseconds(Int64(wait * 1000)), owner: request.owner)
        case "list":
            self = .list(all: request.all ?? false)
        case "refs":
            self = .refs(try Self.letter(try Self.required(request.letter, "letter")), owner: request.owner)
        default:
            throw NetError(.notSupported, detail: ["Unknown operation '\(request.op)'."])
        }
    }

    /// Every name a user sends may end in a mount option, a path, a log line or another
    /// program's argument: none may carry a control character (NUL cuts C strings short,
    /// newlines forge log lines). A password may hold anything but NUL.
    private static func checkText(_ request: ControlRequest) throws(NetError) {
        var named: [(String, String?)] = [("letter", request.letter), ("remote", request.remote), ("user", request.user),
                                          ("domain", request.domain), ("credentialsFile", request.credentialsFile)]
        for (key, value) in request.options ?? [:] { named += [("option", key), ("option " + key, value)] }
        for case let (field, text?) in named where text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            throw NetError(.invalidParameter, detail: ["The \(field) holds a control character."])
        }
        if let password = request.password, password.utf8.contains(0) {
            throw NetError(.invalidParameter, detail: ["The password holds a NUL character."])
        }
    }

    private static func required(_ value: String?, _ field: String) throws(NetError) -> String {
        guard let value else { throw NetError(.invalidParameter, detail: ["The request has no '\(field)' field."]) }
        return value
    }

    private static func letter(_ text: String) throws(NetError) -> DriveLetter {
        guard let letter = DriveLetter(text) else {
            throw NetError(.invalidParameter, detail: ["'\(text)' is not a drive letter (a to z)."])
        }
        return letter
    }
}

/// One drive as `list` and `use` report it.
public struct DriveStatus: Codable, Sendable, Equatable {
    public var letter: String
    public var remote: String
    public var mountpoint: String
    public var status: String
    public var owner: UInt32
    /// Seen by every user, each acting as themself (`use --global`).
    public var global: Bool?
    /// FileHandles the kernel holds: open files.
    public var openHandles: Int
    /// ServerOpens only the cache holds: never active.
    public var deferredHandles: Int

    public init(letter: String, remote: String, mountpoint: String, status: String, owner: UInt32,
                openHandles: Int, deferredHandles: Int, global: Bool? = nil) {
        self.global = global
        self.letter = letter
        self.remote = remote
        self.mountpoint = mountpoint
        self.status = status
        self.owner = owner
        self.openHandles = openHandles
        self.deferredHandles = deferredHandles
    }
}

/// What `refs` answers: the drive's handle cache and who uses the drive.
public struct DriveReferences: Codable, Sendable, Equatable {
    public var drive: DriveStatus
    public var serverOpens: [ServerOpenReference]
    public var counters: HandleCounters
    public var processes: [ProcessUse]

    public init(drive: DriveStatus, serverOpens: [ServerOpenReference], counters: HandleCounters, processes: [ProcessUse]) {
        self.drive = drive
        self.serverOpens = serverOpens
        self.counters = counters
        self.processes = processes
    }
}

public struct ErrorBody: Codable, Sendable, Equatable {
    public var code: Int
    public var text: String
    public var detail: [String]
}

public struct ControlResponse: Codable, Sendable, Equatable {
    public var v: Int = ControlProtocol.version
    public var ok: Bool
    public var error: ErrorBody?
    public var drive: DriveStatus?
    public var drives: [DriveStatus]?
    /// delete: how many deferred ServerOpens it closed.
    public var flushed: Int?
    public var references: DriveReferences?
    /// list: something the user should know, such as a state file that was kept aside.
    public var notice: String?

    public init(drive: DriveStatus? = nil, drives: [DriveStatus]? = nil, flushed: Int? = nil,
                references: DriveReferences? = nil, notice: String? = nil) {
        ok = true
        self.drive = drive
        self.drives = drives
        self.flushed = flushed
        self.references = references
        self.notice = notice
    }

    public init(error: NetError) {
        ok = false
        self.error = ErrorBody(code: error.code.rawValue, text: error.text, detail: error.detail)
    }

    /// The error as the client rebuilds it; nil for a success.
    public var netError: NetError? {
        error.map { NetError(.init(rawValue: $0.code), detail: $0.detail) }
    }

    public func encodedLine() -> [UInt8] { Array(try! JSONEncoder().encode(self)) + [UInt8(ascii: "\n")] }
}
