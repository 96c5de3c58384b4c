import NetUseCore
import Redirector

/// A directory on this machine: an absolute path or a `file://` URL.
public struct LocalShareKind: ShareKind {
    public let scheme = "file"

    public init() {}

    /// Every other kind is asked first: whatever they do not take is a path or nothing.
    public func parse(_ text: String) throws(NetError) -> Remote? {
        Remote(scheme: scheme, description: try Remote.localPath(parsing: text))
    }

    public func connect(_ remote: Remote, _ request: ConnectRequest) throws(NetError) -> any ShareBackend {
        try LocalShare(directory: remote.description, caller: request.identity)
    }
}
