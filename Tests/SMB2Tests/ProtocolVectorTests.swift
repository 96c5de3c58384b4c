import Testing
@testable import SMB2

/// The engine's cryptography against the examples published with the specifications
/// (MS-NLMP 4.2.4, the MS-SMB2 team's key derivation and encryption examples, RFC 4493).
struct ProtocolVectorTests {
    static func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.filter { !$0.isWhitespace }.utf8)
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }

    @Test func ntlmv2MatchesMSNLMP() {
        #expect(Crypto.md4("Password".utf16LE) == Self.bytes("a4f49c406510bdcab6824ee7c30fd852"))
        let key = NTLMAuthenticator.ntowfv2(user: "User", password: "Password", domain: "Domain")
        #expect(key == Self.bytes("0c868a403bfd7a93a3001ef22ef02e3f"))
        let responses = NTLMAuthenticator.ntlmv2(
            responseKey: key, serverChallenge: Self.bytes("0123456789abcdef"), clientChallenge: Self.bytes("aaaaaaaaaaaaaaaa"),
            timestamp: [UInt8](repeating: 0, count: 8),
            targetInfo: Self.bytes("02000c0044006f006d00610069006e0001000c0053006500720076006500720000000000"))
        #expect(Array(responses.nt.prefix(16)) == Self.bytes("68cd0ab851e51c96aabc927bebef6a1c"))
        #expect(responses.nt.count == 84)
        #expect(responses.lm == Self.bytes("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"))
        #expect(responses.sessionKey == Self.bytes("8de40ccadbc14a82f15cb0ad0de95ca3"))
    }

    @Test func aesCMACMatchesRFC4493() {
        let key = Self.bytes("2b7e151628aed2a6abf7158809cf4f3c")
        let message = Self.bytes("""
            6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51
            30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710
            """)
        let expected = [(0, "bb1d6929e95937287fa37d129b756746"), (16, "070a16b46b4d4144f79bdd9dd04a287c"),
                        (40, "dfa66747de9ae63030ca32611497c827"), (64, "51f0bebf7e3b9d92fc49741779363cfe")]
        for (length, mac) in expected {
            #expect(Array(message.prefix(length)).withUnsafeBytes { Crypto.aesCMAC(key: key, $0) } == Self.bytes(mac))
        }
    }

    @Test func smb30KeysMatchTheExample() {
        var security = SMB2Security()
        security.dialect = 0x300
        security.cipher = .aes128CCM
        security.deriveKeys(sessionKey: Self.bytes("7cd451825d0450d235424e44ba6e78cc"), preauthHash: [])
        #expect(security.signingKey == Self.bytes("0b7e9c5cac36c0f6ea9ab275298cedce"))
        #expect(security.encryptionKey == Self.bytes("fad27796665b313ebb578f388632b4f7"))
        #expect(security.decryptionKey == Self.bytes("b0f0427f7ceb416d1d9dcc0cd4f99447"))
    }

    @Test func smb311KeysAndSignatureMatchTheExample() {
        var security = SMB2Security()
        security.dialect = 0x311
        security.cipher = .aes128GCM
        security.signingAlgorithm = 1  // AES-CMAC, as the example negotiated
        security.deriveKeys(sessionKey: Self.bytes("270e1ba896585eeb7af3472d3b4c75a7"), preauthHash: Self.bytes("""
            0dd13628cc3ed218ef9df9772d436d0887ab9814bfae63a80aa845f36909db79
            28622dddad522d9751640a459762c5a9d6bb084cbb3ce6bdadef5d5bce3c6c01
            """))
        #expect(security.signingKey == Self.bytes("73fe7a9a77bef0bde49c650d8ccb5f76"))
        #expect(security.encryptionKey == Self.bytes("629bcbc54422a0f572b97f45989b6073"))
        #expect(security.decryptionKey == Self.bytes("e2af0dcefac68da71a0dfbd0d1350d74"))
        // The final SESSION_SETUP response of the same example, as the server signed it.
        let response = Self.bytes("""
            FE534D4240000100000000000100800009000000000000000300000000000000FFFE000000000000
            1900000000100000EBE146DA120BA25FC3376A49DFE31BC10900000048001D00A11B3019A0030A01
            00A3120410010000003B453CDC3524164200000000
            """)
        #expect(security.verify(response[...]))
        var tampered = response
        tampered[70] ^= 1
        #expect(!security.verify(tampered[...]))
    }

    static let writeRequest = bytes("""
        FE534D4240000100000000000900010008000000000000000500000000000000FFFE000001000000
        25000000001000000000000000000000000000000000000031007000170000000000000000000000
        0600000004000000010000000400000000000000000000007000000000000000536D623320656E63
        72797074696F6E2074657374696E67
        """)

    @Test func gcmEncryptionMatchesTheExample() {
        var security = SMB2Security()
        security.cipher = .aes128GCM
        security.sessionId = 0x0000_1000_0000_0025
        security.encryptionKey = Self.bytes("a2f5e80e5d59103034f32e52f698e5ec")
        let sealed = security.seal(Self.writeRequest, nonce: Self.bytes("C7D6822D269CAF48904C664C"))
        #expect(sealed == Self.bytes("""
            FD534D42BD73D97D2BC9001BCAFAC0FDFF5FEEBCC7D6822D269CAF48904C664C0000000087000000
            0000010025000000001000006ECDD2A7AFC7B47763057A041B8FD4DAFFE990B70C9E09D36C084E02
            D14EF247F8BDE38ACF6256F8B1D3B56F77FBDEB312FEA5E92CBCC1ED8FB2EBBFAA75E49A4A394BB4
            4576545567C24D4C014D47C9FBDFDAFD2C4F9B72F8D256452620A299F48E29E53D6B61D1C13A19E9
            1AF013F00D17E3ABC2FC3D36C8C1B6B93973253852DBD442E46EE8
            """))
        // What was sealed with a key opens with it, and not once altered.
        var peer = security
        peer.decryptionKey = security.encryptionKey
        #expect(peer.unseal(sealed) == Self.writeRequest)
        var altered = sealed
        altered[60] ^= 1
        #expect(peer.unseal(altered) == nil)
    }

    @Test func ccmEncryptionMatchesTheExample() {
        var plain = Self.writeRequest
        plain.replaceSubrange(40..<48, with: Self.bytes("2100000000100000"))
        plain[80] = 0x05
        var security = SMB2Security()
        security.cipher = .aes128CCM
        security.sessionId = 0x0000_1000_0000_0021
        security.encryptionKey = Self.bytes("dfaaa31aae40a2485d47ac4df09fda1d")
        let sealed = security.seal(plain, nonce: Self.bytes("9F6F1EAAD7E9F24AACD38F"))
        #expect(sealed == Self.bytes("""
            FD534D42E89551D666DAB8993488F5A97103116C9F6F1EAAD7E9F24AACD38F000000000087000000
            00000100210000000010000056A74778199A9D2B6E9C3A376FD88D27680694FED253A313BEB07381
            AE8689F973ACDB8D716E4477803BCE53A92E1B81FA3E965AD9AF2C89C08CE66A344664453B8FC881
            18EDC9814CF58E92AA465E6EFB09958A9FDAD96FBD55B36A710C30D5E7C64AD7B9449F9F17EDD024
            FE8BA79154F340A82740D1D5180C69B0A2DE6A4BA893BD55D3210E
            """))
    }

    @Test func spnegoFindsTheResponseTokenAndRefusesGarbage() {
        let inner: [UInt8] = Array("NTLMSSP".utf8) + [0, 2, 0, 0, 0]
        let token = DER.tlv(0xA1, DER.sequence(DER.tlv(0xA0, DER.tlv(0x0A, [1])) + DER.tlv(0xA2, DER.tlv(0x04, inner))))
        #expect(SPNEGO.responseToken(token).map(Array.init) == inner)
        #expect(SPNEGO.responseToken([0xA1, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]) == nil)
        #expect(SPNEGO.responseToken(Array(token.prefix(token.count - 3))) == nil)
    }
}
