import NetUseCore
import Redirector
import SMB2

/// An SMB share: `//server/share[/path]`, `\\server\share[\path]` or
/// `smb://[user@]server[:port]/share[/path]`, served by the native engine, or by
/// libsmbclient workers when asked (`-o engine=libsmbclient`) or when the server speaks SMB1 only.
public struct SMBShareKind: ShareKind {
    public let scheme = "smb"

    public init() {}

    public func parse(_ text: String) throws(NetError) -> Remote? {
        guard SMBLocation.names(text) else { return nil }
        let location = try SMBLocation(parsing: text)
        return Remote(scheme: scheme, description: location.description, server: location.serverKey, user: location.user)
    }

    public func connect(_ remote: Remote, _ request: ConnectRequest) throws(NetError) -> any ShareBackend {
        let location = try SMBLocation(parsing: remote.description)
        let credentials = request.credentials
        var options = SMB2Session.Options(host: location.server, port: UInt16(location.port ?? 445), user: credentials.user,
                                          password: credentials.password, domain: credentials.domain, timeout: request.timeout)
        var largestRead: Int?
        if request.engine == .native {
            options.seal = request.seal
            options.kerberos = request.kerberos
            do {
                return try NativeSMBShare(location: location, options: options, owner: request.owner, leases: request.leases,
                                          locks: request.locks)
            } catch {
                if case .refused(let refusal) = error { throw refusal }
                // An SMB1-only server: libsmbclient, which still speaks SMB1, serves it.
                guard request.kerberos == nil else {
                    throw NetError(.badNetPath, detail: ["\(location.url): the server speaks SMB1 only, and sec=krb5 is SMB2 and later."])
                }
                largestRead = SMBConnection.smallestLargestRead
            }
        }
        let connection = SMBConnection(url: location.url, user: credentials.user, password: credentials.password,
                                       domain: credentials.domain, timeout: request.timeout,
                                       largestRead: largestRead ?? SMB2Session.largestRead(options) ?? SMBConnection.smallestLargestRead)
        return try SMBShare(connection: connection, owner: request.owner, workers: request.workers)
    }
}

/// Which engine speaks SMB for a drive (`-o engine=`).
public enum SMBEngine: String, Sendable, CaseIterable {
    /// netuse's own SMB2/3 client, in the daemon's process.
    case native
    /// libsmbclient, in worker processes: for servers that speak only SMB1.
    case libsmbclient

    public static let standard = SMBEngine.native
}
