import Glibc
import NetUseCore

/// What a lease or oplock lets the client cache is `HandleCaching`; on the wire a lease state
/// is 32 bits, and an oplock a level.
extension HandleCaching {
    init(leaseState: UInt32) {
        self.init(rawValue: UInt8(truncatingIfNeeded: leaseState & 0x7))
    }

    var leaseState: UInt32 { UInt32(rawValue) }

    /// What an oplock level amounts to: batch caches all three, level II reads only.
    init(oplockLevel: UInt8) {
        switch oplockLevel {
        case SMB2Oplock.batch: self = [.read, .write, .handle]
        case SMB2Oplock.exclusive: self = [.read, .write]
        case SMB2Oplock.levelII: self = [.read]
        default: self = []
        }
    }
}

enum SMB2Oplock {
    static let none: UInt8 = 0
    static let levelII: UInt8 = 0x1
    static let exclusive: UInt8 = 0x8
    static let batch: UInt8 = 0x9
    static let lease: UInt8 = 0xFF
}

/// A lease's identity, chosen by the client; the opens that present it share the lease.
public struct SMB2LeaseKey: Hashable, Sendable {
    let bytes: [UInt8]

    public static func random() -> SMB2LeaseKey { SMB2LeaseKey(bytes: NTLMAuthenticator.random(16)) }
}

/// What an open asks the server to let it cache, and what the server granted.
public struct SMB2LeaseRequest: Sendable {
    public let key: SMB2LeaseKey
    public let caching: HandleCaching

    public init(key: SMB2LeaseKey, caching: HandleCaching) {
        self.key = key
        self.caching = caching
    }
}

/// The server takes back some of what it let the client cache: because another client opened
/// the file, wrote to it, or renamed or deleted it.
public struct SMB2Break: Sendable {
    public enum Target: Hashable, Sendable {
        case lease(SMB2LeaseKey)
        case oplock(SMB2FileId)
    }

    public let target: Target
    /// What the client may still cache once it has done what the break asks.
    public let caching: HandleCaching
    /// The server waits for an acknowledgment (or the close of every open of the lease).
    public let acknowledgmentRequired: Bool

    /// A notification: MessageId all ones, command OPLOCK_BREAK (MS-SMB2 2.2.23).
    init?(_ reply: SMB2Reply) {
        var body = reply.body
        guard let size = try? body.u16() else { return nil }
        do {
            if size == 44 {
                try body.skip(2)  // NewEpoch
                let flags = try body.u32()
                let key = SMB2LeaseKey(bytes: Array(try body.take(16)))
                _ = try body.u32()  // CurrentLeaseState
                caching = HandleCaching(leaseState: try body.u32())
                target = .lease(key)
                acknowledgmentRequired = flags & 0x1 != 0
            } else if size == 24 {
                let level = try body.u8()
                try body.skip(5)
                target = .oplock(SMB2FileId(persistent: try body.u64(), volatile: try body.u64()))
                caching = HandleCaching(oplockLevel: level)
                // Every oplock break but one to level II of a level II oplock waits for its answer.
                acknowledgmentRequired = true
            } else {
                return nil
            }
        } catch {
            return nil
        }
    }
}

extension SMB2Tree {
    /// The lease create context ("RqLs"): version 2 (with epoch) on SMB 3, version 1 on 2.1.
    func leaseContext(_ lease: SMB2LeaseRequest) -> (name: String, data: [UInt8]) {
        var data = ByteWriter()
        data.append(lease.key.bytes)
        data.u32(lease.caching.leaseState)
        data.u32(0)  // flags
        data.u64(0)  // duration
        if session.dialect >= 0x300 {
            data.zeros(16)  // no parent lease
            data.u16(0)  // epoch
            data.u16(0)
        }
        return ("RqLs", data.bytes)
    }

    /// What the server granted: the lease in the answer's "RqLs" context, or an oplock level.
    static func grantedCaching(_ reply: SMB2Reply) -> HandleCaching {
        var body = reply.body
        guard (try? body.skip(2)) != nil, let level = try? body.u8() else { return [] }
        guard level == SMB2Oplock.lease else { return HandleCaching(oplockLevel: level) }
        guard let lease = SMB2CreateContexts.decode(reply)["RqLs"], lease.count >= 20 else { return [] }
        var state = ByteReader(lease)
        state.offset = 16
        return HandleCaching(leaseState: (try? state.u32()) ?? 0)
    }

    /// Answers a break: keeps what it still caches (MS-SMB2 2.2.24). Sent, not awaited: a
    /// server that has gone meanwhile holds nobody up.
    public func acknowledge(_ broken: SMB2Break) {
        var body = ByteWriter()
        switch broken.target {
        case .lease(let key):
            body.u16(36)
            body.u16(0)
            body.u32(0)
            body.append(key.bytes)
            body.u32(broken.caching.leaseState)
            body.u64(0)
        case .oplock(let file):
            body.u16(24)
            body.u8(broken.caching.contains(.read) ? SMB2Oplock.levelII : SMB2Oplock.none)
            body.u8(0)
            body.u32(0)
            file.write(to: &body)
        }
        connection.post(request(.oplockBreak, body))
    }
}
