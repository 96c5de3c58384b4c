import NetUseCore
import Redirector
import Backends

/// `-o key=value` options of `use`, checked before anything is mounted.
struct DriveOptions {
    var cache = Redirector.Options()
    /// SMB: how long one request may take before its worker is replaced.
    var timeout: Duration = .seconds(30)
    /// SMB: how many worker processes serve the drive. Each is one connection with one
    /// request at a time: four let listings fetched ahead and read-ahead batches overlap.
    var workers = 4
    /// The kernel's read-ahead window for the mount: sequential reads arrive as 1 MiB
    /// requests, several at a time.
    var readAheadKiB = 4096
    /// SMB: which engine speaks to the server, and whether to encrypt unasked.
    var engine = SMBEngine.standard
    var seal = false
    /// SMB (native engine): ask for leases, so that closes may be deferred coherently
    /// (`-o nolease`, as mount.cifs spells it, asks for none: every close then reaches the
    /// server, and changes made on the server's disk behind smbd show within actimeo).
    var leases = true
    /// SMB (native engine): fcntl and flock locks reach the server; `-o nobrl` keeps them in
    /// the kernel, for this machine only, as mount.cifs's nobrl does.
    var locks = true
    /// SMB (native engine): log on with the caller's Kerberos tickets (`-o sec=krb5`), not a
    /// password; `sec=ntlmssp` (NTLMv2 in SPNEGO) is the default.
    var kerberos = false

    static func parse(_ options: [String: String]) throws(NetError) -> DriveOptions {
        var result = DriveOptions()
        for (key, value) in options.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "timeout":
                guard let seconds = Double(value), seconds >= 0.1, seconds <= 3600 else {
                    throw NetError(.invalidParameter, detail: ["timeout takes 0.1 to 3600 seconds, not '\(value)'."])
                }
                result.timeout = .milliseconds(Int64(seconds * 1000))
            case "actimeo":
                guard let seconds = Double(value), seconds >= 0, seconds <= 3600 else {
                    throw NetError(.invalidParameter, detail: ["actimeo takes 0 to 3600 seconds, not '\(value)'."])
                }
                result.cache.attributeTimeout = .milliseconds(Int64(seconds * 1000))
            case "readahead":
                guard let kibibytes = Int(value), (0...65536).contains(kibibytes) else {
                    throw NetError(.invalidParameter, detail: ["readahead takes 0 to 65536 KiB, not '\(value)'."])
                }
                result.readAheadKiB = kibibytes
            case "workers":
                guard let count = Int(value), (1...16).contains(count) else {
                    throw NetError(.invalidParameter, detail: ["workers takes 1 to 16, not '\(value)'."])
                }
                result.workers = count
            case "closetimeo":
                guard let seconds = Double(value), seconds >= 0, seconds <= 3600 else {
                    throw NetError(.invalidParameter, detail: ["closetimeo takes 0 to 3600 seconds, not '\(value)'."])
                }
                result.cache.closeTimeout = .milliseconds(Int64(seconds * 1000))
            case "maxdeferred":
                // Each is a descriptor of the daemon's: a user's 26 drives stay far below its limit.
                guard let count = Int(value), count >= 0, count <= 1024 else {
                    throw NetError(.invalidParameter, detail: ["maxdeferred takes 0 to 1024, not '\(value)'."])
                }
                result.cache.deferredLimit = count
            case "engine":
                guard let engine = SMBEngine(rawValue: value) else {
                    throw NetError(.invalidParameter, detail: ["engine is native or libsmbclient, not '\(value)'."])
                }
                result.engine = engine
            case "sec":
                switch value {
                case "krb5": result.kerberos = true
                case "ntlmssp", "ntlmv2": result.kerberos = false
                default: throw NetError(.invalidParameter, detail: ["sec is krb5 or ntlmssp, not '\(value)'."])
                }
            case "seal", "nolease", "nobrl":
                guard ["", "1", "yes"].contains(value) else {
                    throw NetError(.invalidParameter, detail: ["\(key) takes no value, not '\(value)'."])
                }
                switch key {
                case "seal": result.seal = true
                case "nolease": result.leases = false
                default: result.locks = false
                }
            default:
                throw NetError(.invalidParameter, detail: ["Unknown option '\(key)'."])
            }
        }
        if result.kerberos && result.engine == .libsmbclient {
            throw NetError(.invalidParameter, detail: ["sec=krb5 is spoken by the native engine, not by libsmbclient."])
        }
        return result
    }
}
