import Glibc
import CNettle
import NetUseCore

/// NTLMv2 (MS-NLMP) inside SPNEGO (RFC 4178), written here on Nettle's MD4 and HMAC-MD5:
/// enough to log on with a user name and password, as a guest, or anonymously. No key
/// exchange and no MIC are negotiated, so the session key is NTLMv2's session base key
/// and SPNEGO needs no mechListMIC.
struct NTLMAuthenticator {
    let user: String
    let password: String
    let domain: String
    var negotiateMessage: [UInt8] = []
    /// The key SMB2 signs and encrypts with; empty for an anonymous logon.
    private(set) var sessionKey: [UInt8] = []

    static let signature: [UInt8] = Array("NTLMSSP".utf8) + [0]
    static let flags: UInt32 = 0x0000_0001 /* UNICODE */ | 0x0000_0004 /* REQUEST_TARGET */
        | 0x0000_0200 /* NTLM */ | 0x0000_8000 /* ALWAYS_SIGN */ | 0x0008_0000 /* EXTENDED_SESSIONSECURITY */
        | 0x0080_0000 /* TARGET_INFO */ | 0x2000_0000 /* 128 */ | 0x8000_0000 /* 56 */

    init(user: String, password: String, domain: String) {
        self.user = user
        self.password = password
        self.domain = domain
    }

    var isAnonymous: Bool { user.isEmpty }

    /// The first token: SPNEGO's NegTokenInit around NTLMSSP NEGOTIATE.
    mutating func firstToken() throws(SMB2SetupError) -> [UInt8] {
        var message = ByteWriter()
        message.append(Self.signature)
        message.u32(1)
        message.u32(Self.flags)
        message.zeros(16)  // domain and workstation: none
        negotiateMessage = message.bytes
        let mechTypes = DER.sequence(DER.tlv(0x06, SPNEGO.ntlmOID))
        let init_ = DER.sequence(DER.tlv(0xA0, mechTypes) + DER.tlv(0xA2, DER.tlv(0x04, negotiateMessage)))
        return DER.tlv(0x60, DER.tlv(0x06, SPNEGO.spnegoOID) + DER.tlv(0xA0, init_))
    }

    /// The answer to the server's CHALLENGE: NegTokenResp around NTLMSSP AUTHENTICATE.
    mutating func secondToken(_ serverToken: [UInt8], now: timespec = Self.realNow()) throws(Errno) -> [UInt8] {
        guard let challenge = SPNEGO.responseToken(serverToken) else { throw Errno(EPROTO) }
        var reader = ByteReader(Array(challenge))
        guard Array(try reader.take(8)) == Self.signature, try reader.u32() == 2 else { throw Errno(EPROTO) }
        try reader.skip(8)
        let serverFlags = try reader.u32()
        let serverChallenge = Array(try reader.take(8))
        try reader.skip(8)
        let infoLength = Int(try reader.u16())
        _ = try reader.u16()
        let infoOffset = Int(try reader.u32())
        let targetInfo = Array(try reader.at(infoOffset, infoLength))
        let flags = Self.flags & serverFlags | (isAnonymous ? 0x800 : 0)

        var lmResponse: [UInt8] = [0]
        var ntResponse: [UInt8] = []
        if !isAnonymous {
            let responses = Self.ntlmv2(responseKey: Self.ntowfv2(user: user, password: password, domain: domain),
                                        serverChallenge: serverChallenge, clientChallenge: Self.random(8),
                                        timestamp: Self.timestamp(in: targetInfo) ?? Self.fileTime(now), targetInfo: targetInfo)
            (ntResponse, lmResponse, sessionKey) = (responses.nt, responses.lm, responses.sessionKey)
        }
        let fields: [[UInt8]] = [lmResponse, ntResponse, Array(domain.utf16LE), Array(user.utf16LE), [], []]
        var message = ByteWriter()
        message.append(Self.signature)
        message.u32(3)
        var offset = 64
        for field in fields.prefix(6) {
            message.u16(UInt16(field.count))
            message.u16(UInt16(field.count))
            message.u32(UInt32(offset))
            offset += field.count
        }
        message.u32(flags)
        for field in fields { message.append(field) }
        return DER.tlv(0xA1, DER.sequence(DER.tlv(0xA2, DER.tlv(0x04, message.bytes))))
    }

    /// MS-NLMP 3.3.2: the NT and LM responses, and the session base key.
    static func ntlmv2(responseKey: [UInt8], serverChallenge: [UInt8], clientChallenge: [UInt8], timestamp: [UInt8],
                       targetInfo: [UInt8]) -> (nt: [UInt8], lm: [UInt8], sessionKey: [UInt8]) {
        var blob: [UInt8] = [1, 1, 0, 0, 0, 0, 0, 0] + timestamp + clientChallenge + [0, 0, 0, 0]
        blob += targetInfo + [0, 0, 0, 0]
        let proof = Crypto.hmacMD5(key: responseKey, serverChallenge, blob)
        return (proof + blob, Crypto.hmacMD5(key: responseKey, serverChallenge, clientChallenge) + clientChallenge,
                Crypto.hmacMD5(key: responseKey, proof))
    }

    static func ntowfv2(user: String, password: String, domain: String) -> [UInt8] {
        Crypto.hmacMD5(key: Crypto.md4(password.utf16LE), (user.uppercased() + domain).utf16LE)
    }

    /// The server's MsvAvTimestamp (AV pair 7), which the response must then use.
    static func timestamp(in targetInfo: [UInt8]) -> [UInt8]? {
        var reader = ByteReader(targetInfo)
        while let id = try? reader.u16(), let length = try? reader.u16(), id != 0 {
            guard let value = try? reader.take(Int(length)) else { return nil }
            if id == 7 && length == 8 { return Array(value) }
        }
        return nil
    }

    static func fileTime(_ time: timespec) -> [UInt8] {
        let value = UInt64(time.tv_sec + 11_644_473_600) * 10_000_000 + UInt64(time.tv_nsec / 100)
        return withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    static func realNow() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now
    }

    static func random(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        _ = getrandom(&bytes, count, 0)
        return bytes
    }
}

extension String {
    var utf16LE: [UInt8] { utf16.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: $0 >> 8)] } }
}

/// The little of DER that SPNEGO's tokens need.
enum DER {
    static func length(_ count: Int) -> [UInt8] {
        if count < 0x80 { return [UInt8(count)] }
        var bytes: [UInt8] = []
        var rest = count
        while rest > 0 {
            bytes.insert(UInt8(rest & 0xFF), at: 0)
            rest >>= 8
        }
        return [0x80 | UInt8(bytes.count)] + bytes
    }

    static func tlv(_ tag: UInt8, _ value: [UInt8]) -> [UInt8] { [tag] + length(value.count) + value }
    static func sequence(_ value: [UInt8]) -> [UInt8] { tlv(0x30, value) }

    /// The elements of a constructed value, as (tag, contents); nil when malformed.
    static func elements(_ bytes: ArraySlice<UInt8>) -> [(tag: UInt8, value: ArraySlice<UInt8>)]? {
        var result: [(UInt8, ArraySlice<UInt8>)] = []
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let tag = bytes[index]
            index += 1
            guard index < bytes.endIndex else { return nil }
            var count = Int(bytes[index])
            index += 1
            if count & 0x80 != 0 {
                let digits = count & 0x7F
                guard digits <= 4, index + digits <= bytes.endIndex else { return nil }
                count = bytes[index..<index + digits].reduce(0) { $0 << 8 | Int($1) }
                index += digits
            }
            guard index + count <= bytes.endIndex else { return nil }
            result.append((tag, bytes[index..<index + count]))
            index += count
        }
        return result
    }
}

enum SPNEGO {
    static let spnegoOID: [UInt8] = [0x2B, 0x06, 0x01, 0x05, 0x05, 0x02]
    static let ntlmOID: [UInt8] = [0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0A]

    /// The responseToken of a NegTokenResp ([1] SEQUENCE { ... [2] OCTET STRING }).
    static func responseToken(_ token: [UInt8]) -> ArraySlice<UInt8>? {
        guard let outer = DER.elements(token[...]), outer.first?.tag == 0xA1,
              let sequence = DER.elements(outer[0].value), sequence.first?.tag == 0x30,
              let fields = DER.elements(sequence[0].value),
              let wrapped = fields.first(where: { $0.tag == 0xA2 }),
              let octets = DER.elements(wrapped.value), octets.first?.tag == 0x04 else { return nil }
        return octets[0].value
    }
}
