import Glibc
import NetUseCore
import SMB2

/// One SMB2 session per server and user, shared by all of that user's drives to the server
/// (each drive is a tree connect on it). A session whose connection broke is replaced by the
/// next drive that asks; the last drive's release logs it off.
final class SMB2Sessions: Sendable {
    static let shared = SMB2Sessions()

    struct Entry: Sendable {
        var session: SMB2Session?
        var drives = 0
        var connecting = false
        /// The same on every connection of the entry: a reconnect gets durable handles back.
        var clientGuid = SMB2Session.Options.freshClientGuid()
    }

    private let entries = Monitor<[String: Entry]>([:])

    /// Who the session is for: the owner too, so that two Unix users never share one even
    /// with the same SMB account (as cifs.ko's multiuser keeps one per fsuid).
    static func key(_ options: SMB2Session.Options, owner: uid_t) -> String {
        "\(owner)\u{0}\(options.host.lowercased())\u{0}\(options.port)\u{0}\(options.user)\u{0}\(options.domain)\u{0}\(options.password)"
            + (options.kerberos.map { "\u{0}krb5\u{0}\($0.cache)" } ?? "")
    }

    func retain(_ key: String) {
        entries.withLock { $0[key, default: Entry()].drives += 1 }
    }

    /// Drops a drive's hold; the last one's logs the session off.
    func release(_ key: String) {
        let ending: SMB2Session? = entries.withLock { entries in
            guard var entry = entries[key] else { return nil }
            entry.drives -= 1
            if entry.drives > 0 {
                entries[key] = entry
                return nil
            }
            entries[key] = nil
            return entry.session
        }
        ending?.close()
    }

    /// The connected session for `key`, set up when there is none (one connect at a time per key).
    func session(_ key: String, _ options: SMB2Session.Options) throws(SMB2SetupError) -> SMB2Session {
        let found: (SMB2Session?, [UInt8], UInt64) = entries.withLock(when: { !($0[key]?.connecting ?? false) }) { entries in
            if let session = entries[key]?.session, session.isConnected { return (session, [], 0) }
            entries[key, default: Entry()].connecting = true
            return (nil, entries[key]!.clientGuid, entries[key]!.session?.sessionId ?? 0)
        }
        if let existing = found.0 { return existing }
        var options = options
        options.clientGuid = found.1
        options.previousSessionId = found.2
        do {
            let session = try SMB2Session.open(options)
            let stale: SMB2Session? = entries.withLock { entries in
                let old = entries[key]?.session
                entries[key, default: Entry()].session = session
                entries[key]?.connecting = false
                return old
            }
            stale?.close()
            return session
        } catch {
            entries.withLock { $0[key]?.connecting = false }
            throw error
        }
    }
}
