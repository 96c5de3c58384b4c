/// A failure the user sees, numbered as NET HELPMSG numbers it.
public struct NetError: Error, Equatable, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }

        public static let accessDenied = Code(rawValue: 5)
        public static let deviceNotFunctioning = Code(rawValue: 31)
        public static let notSupported = Code(rawValue: 50)
        public static let badNetPath = Code(rawValue: 53)
        public static let badNetName = Code(rawValue: 67)
        public static let alreadyAssigned = Code(rawValue: 85)
        public static let invalidPassword = Code(rawValue: 86)
        public static let invalidParameter = Code(rawValue: 87)
        public static let sessionCredentialConflict = Code(rawValue: 1219)
        public static let busy = Code(rawValue: 170)
        public static let logonFailure = Code(rawValue: 1326)
        public static let workstationNotStarted = Code(rawValue: 2138)
        public static let useNotFound = Code(rawValue: 2250)
        public static let openFiles = Code(rawValue: 2401)
        public static let deviceInUse = Code(rawValue: 2404)
    }

    public let code: Code
    /// Lines that say which process, path or field the error is about.
    public let detail: [String]

    public init(_ code: Code, detail: [String] = []) {
        self.code = code
        self.detail = detail
    }

    public var text: String { NetError.text(for: code.rawValue) ?? "Unknown error." }

    public var description: String {
        (["System error \(code.rawValue) has occurred.", "", text] + detail).joined(separator: "\n")
    }

    /// Each number once: its name above, its text here.
    static let texts: [Code: String] = [
        .accessDenied: "Access is denied.",
        .deviceNotFunctioning: "A device attached to the system is not functioning.",
        .notSupported: "The request is not supported.",
        .badNetPath: "The network path was not found.",
        .badNetName: "The network name cannot be found.",
        .alreadyAssigned: "The local device name is already in use.",
        .invalidPassword: "The specified network password is not correct.",
        .invalidParameter: "The parameter is incorrect.",
        .busy: "The requested resource is in use.",
        .sessionCredentialConflict: "Multiple connections to a server or shared resource by the same user, using more than one user name, are not allowed.",
        .logonFailure: "The user name or password is incorrect.",
        .workstationNotStarted: "The Workstation service has not been started.",
        .useNotFound: "The network connection could not be found.",
        .openFiles: "There are open files on the connection.",
        .deviceInUse: "The device is being accessed by an active process.",
    ]

    /// Every number netuse answers with, and its text, in order.
    public static var all: [(code: Int, text: String)] {
        texts.map { ($0.key.rawValue, $0.value) }.sorted { $0.code < $1.code }
    }

    /// The text `NET HELPMSG code` prints, or nil for a number netuse does not use.
    public static func text(for code: Int) -> String? { texts[Code(rawValue: code)] }
}
