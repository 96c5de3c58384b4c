import Glibc
import NetUseCore

/// What NEGOTIATE settled with a server: the dialect, the largest messages, and how the
/// session that follows is to sign and seal.
struct SMB2Negotiation {
    let dialect: UInt16
    let maxRead: Int
    let maxWrite: Int
    let maxTransact: Int
    /// The dialect, the signing algorithm and the cipher; the keys come with the session.
    let security: SMB2Security
    let serverRequiresSigning: Bool
    /// The server grants leases (SMB 2.1 and later); else opens ask for batch oplocks.
    let leases: Bool

    /// Offers `options.dialects` on `connection`; `hashing` sees both frames, for 3.1.1's
    /// pre-authentication integrity.
    init(on connection: SMB2Connection, _ options: SMB2Session.Options, hashing: @escaping ([UInt8]) -> Void) throws(SMB2SetupError) {
        var negotiate = ByteWriter()
        let dialects = options.dialects
        let offersContexts = dialects.contains(0x311)
        negotiate.u16(36)
        negotiate.u16(UInt16(dialects.count))
        negotiate.u16(1)  // signing enabled
        negotiate.u16(0)
        negotiate.u32(0x2 | 0x4 | 0x40)  // LEASING, LARGE_MTU, ENCRYPTION
        negotiate.append(options.clientGuid)
        let contextOffsetField = negotiate.count
        negotiate.zeros(8)
        for dialect in dialects { negotiate.u16(dialect) }
        if offersContexts {
            negotiate.align(8)
            negotiate.set32(UInt32(64 + negotiate.count), at: contextOffsetField)
            negotiate.set16(3, at: contextOffsetField + 4)
            // Pre-authentication integrity: SHA-512 with a 32-byte salt.
            negotiate.u16(1); negotiate.u16(38); negotiate.u32(0)
            negotiate.u16(1); negotiate.u16(32); negotiate.u16(1)
            negotiate.append(NTLMAuthenticator.random(32))
            negotiate.align(8)
            // Encryption: the ciphers, best first.
            let ciphers: [SMB2Cipher] = [.aes128GCM, .aes128CCM, .aes256GCM, .aes256CCM]
            negotiate.u16(2); negotiate.u16(UInt16(2 + 2 * ciphers.count)); negotiate.u32(0)
            negotiate.u16(UInt16(ciphers.count))
            for cipher in ciphers { negotiate.u16(cipher.rawValue) }
            negotiate.align(8)
            // Signing: AES-GMAC (cheaper than CMAC where the CPU does GCM), else AES-CMAC.
            negotiate.u16(8); negotiate.u16(6); negotiate.u32(0)
            negotiate.u16(2); negotiate.u16(2); negotiate.u16(1)
        }
        let reply: SMB2Reply
        do {
            reply = try connection.send([SMB2Request(.negotiate, negotiate)], sent: hashing)[0]
        } catch {
            // Connected, then no SMB2 frame back: an SMB1 server answers in SMB1 or hangs up.
            throw .noSMB2
        }
        guard reply.status == .success else { throw .protocolError("negotiate: \(reply.status)") }
        hashing(Array(reply.bytes[reply.start..<reply.end]))
        var security = SMB2Security()
        do {
            var body = reply.body
            try body.skip(2)
            let securityMode = try body.u16()
            dialect = try body.u16()
            let contextCount = Int(try body.u16())
            try body.skip(16)
            let capabilities = try body.u32()
            leases = dialect >= 0x210 && capabilities & 0x2 != 0
            maxTransact = Int(try body.u32())
            maxRead = Int(try body.u32())
            maxWrite = Int(try body.u32())
            try body.skip(16)
            try body.skip(4)
            let contextOffset = Int(try body.u32())
            guard dialects.contains(dialect) else { throw Errno(EPROTO) }
            security.dialect = dialect
            security.signingAlgorithm = dialect >= 0x300 ? 1 : 0
            serverRequiresSigning = securityMode & 0x2 != 0
            if dialect == 0x311 {
                var at = contextOffset
                for _ in 0..<contextCount {
                    var context = ByteReader(reply.bytes, base: reply.start)
                    context.offset = reply.start + at
                    let type = try context.u16()
                    let length = Int(try context.u16())
                    try context.skip(4)
                    if type == 2, length >= 4 {
                        _ = try context.u16()
                        security.cipher = SMB2Cipher(rawValue: try context.u16())
                    } else if type == 8, length >= 4 {
                        _ = try context.u16()
                        security.signingAlgorithm = try context.u16()
                    }
                    at += (8 + length + 7) / 8 * 8
                }
            } else if dialect >= 0x300, capabilities & 0x40 != 0 {
                security.cipher = .aes128CCM
            }
        } catch {
            throw .protocolError("negotiate reply malformed")
        }
        self.security = security
    }
}

extension SMB2Session {
    /// The largest read the server at `host` takes in one request, asked by a NEGOTIATE on
    /// a connection of its own that ends at once; nil when it gives no SMB2 answer (SMB1
    /// only) or cannot be reached. For an engine that cannot tell (libsmbclient).
    public static func largestRead(_ options: SMB2Session.Options) -> Int? {
        guard let connection = try? SMB2Connection.open(host: options.host, port: options.port, timeout: options.timeout)
        else { return nil }
        defer { connection.fail(Errno(ESHUTDOWN)) }
        return (try? SMB2Negotiation(on: connection, options, hashing: { _ in }))?.maxRead
    }
}
