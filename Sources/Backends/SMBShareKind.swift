import NetUseCore
import Redirector

/// An SMB share: `//server/share[/path]`, `\\server\share[\path]` or
/// `smb://[user@]server[:port]/share[/path]`, served through libsmbclient workers.
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
        return try SMBShare(connection: SMBConnection(url: location.url, user: credentials.user, password: credentials.password,
                                                      domain: credentials.domain, timeout: request.timeout),
                            owner: request.owner, workers: request.workers)
    }
}
