import NetUseCore
import Redirector

/// One kind of share netuse can map: how its remotes are written and how one is connected.
/// A new backend is a type that conforms, in its own file, and a line in `ShareKinds.standard`.
public protocol ShareKind: Sendable {
    /// The key of its remotes (`Remote.scheme`) and of its records in the state file.
    var scheme: String { get }
    /// The remote, if `text` is written as one of this kind's; nil when it is not this
    /// kind's at all, so that the next kind may try.
    func parse(_ text: String) throws(NetError) -> Remote?
    /// Connects (before anything is mounted, so that `use` can answer 53, 67, 1326 or 5).
    func connect(_ remote: Remote, _ request: ConnectRequest) throws(NetError) -> any ShareBackend
}

/// What a kind of share may need to connect one.
public struct ConnectRequest: Sendable {
    /// Who the drive is for, and as whom checks of the share are made.
    public let owner: Caller
    public let identity: Identity
    public let credentials: Credentials
    /// How long one request to the share may take.
    public let timeout: Duration
    /// How many connections (worker processes) the drive may use.
    public let workers: Int
    /// SMB: which engine speaks to the server.
    public var engine: SMBEngine = .standard
    /// SMB: encrypt although the server does not ask for it.
    public var seal = false
    /// SMB: ask for leases (`-o nolease` asks for none).
    public var leases = true
    /// SMB: fcntl and flock locks reach the server (`-o nobrl` keeps them local).
    public var locks = true
    /// SMB: log on with these Kerberos tickets rather than `credentials`.
    public var kerberos: KerberosCredentials?

    public init(owner: Caller, identity: Identity, credentials: Credentials, timeout: Duration, workers: Int) {
        self.owner = owner
        self.identity = identity
        self.credentials = credentials
        self.timeout = timeout
        self.workers = workers
    }
}

/// The kinds of share this build knows, asked in order.
public struct ShareKinds: Sendable {
    public let kinds: [any ShareKind]

    public init(_ kinds: [any ShareKind]) { self.kinds = kinds }

    public static let standard = ShareKinds([SMBShareKind(), LocalShareKind()])

    /// The kind that takes `text`, and the remote it makes of it; 67 when none does.
    public func parse(_ text: String) throws(NetError) -> (kind: any ShareKind, remote: Remote) {
        for kind in kinds {
            if let remote = try kind.parse(text) { return (kind, remote) }
        }
        throw NetError(.badNetName, detail: ["No kind of share is written as \(text)."])
    }
}
