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

    public init(op: String, letter: String? = nil, remote: String? = nil, options: [String: String]? = nil) {
        self.v = ControlProtocol.version
        self.op = op
        self.letter = letter
        self.remote = remote
        self.options = options
    }

    public func encodedLine() -> [UInt8] { Array(try! JSONEncoder().encode(self)) + [UInt8(ascii: "\n")] }
}

/// Which letter a `use` asks for: a given one, or `*` for the next free one.
public enum LetterChoice: Equatable, Sendable {
    case letter(DriveLetter)
    case nextFree
}

/// A request checked and parsed: what the daemon acts on.
public enum ControlOperation: Equatable, Sendable {
    case use(LetterChoice, Remote, options: [String: String])
    case delete(DriveLetter)
    case list

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
        switch request.op {
        case "use":
            let letterText = try Self.required(request.letter, "letter")
            let choice: LetterChoice
            if letterText == "*" {
                choice = .nextFree
            } else {
                choice = .letter(try Self.letter(letterText))
            }
            let remote = try Remote(parsing: try Self.required(request.remote, "remote"))
            self = .use(choice, remote, options: request.options ?? [:])
        case "delete":
            self = .delete(try Self.letter(try Self.required(request.letter, "letter")))
        case "list":
            self = .list
        default:
            throw NetError(.notSupported, detail: ["Unknown operation '\(request.op)'."])
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
    public var openHandles: Int

    public init(letter: String, remote: String, mountpoint: String, status: String, owner: UInt32, openHandles: Int) {
        self.letter = letter
        self.remote = remote
        self.mountpoint = mountpoint
        self.status = status
        self.owner = owner
        self.openHandles = openHandles
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

    public init(drive: DriveStatus? = nil, drives: [DriveStatus]? = nil) {
        ok = true
        self.drive = drive
        self.drives = drives
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
