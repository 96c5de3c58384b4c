import NetUseCore

/// Where and as whom an SMB share is reached. The password lives here and in the worker's
/// memory only: never in argv, an environment, a log line or an answer.
public struct SMBConnection: Sendable {
    public let url: String
    public let user: String
    public let password: String
    public let domain: String
    /// How long one request may take before its worker is killed and replaced.
    public let timeout: Duration

    public init(url: String, user: String, password: String, domain: String, timeout: Duration) {
        self.url = url
        self.user = user
        self.password = password
        self.domain = domain
        self.timeout = timeout
    }
}
