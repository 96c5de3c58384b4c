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
    /// The most one libsmbclient read may ask for: the server's MaxReadSize. libsmbclient
    /// splits a larger read into requests in flight at once, and when one of them meets the
    /// end of the file it leaves the others' answers on the connection, which the next call
    /// then takes for its own and drops the connection (EINVAL). At SMB 2.0.2 that is any
    /// read over 64 KiB near the end of a file.
    public let largestRead: Int

    /// What SMB 2.0.2 and SMB1 servers take, and all that can be assumed of a server unasked.
    public static let smallestLargestRead = 64 << 10

    public init(url: String, user: String, password: String, domain: String, timeout: Duration,
                largestRead: Int = smallestLargestRead) {
        self.url = url
        self.user = user
        self.password = password
        self.domain = domain
        self.timeout = timeout
        self.largestRead = largestRead
    }
}
