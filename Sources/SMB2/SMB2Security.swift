import Glibc
import NetUseCore

/// What a session signs and encrypts with (MS-SMB2 3.2.5.3, 3.1.4.1, 3.1.4.3).
struct SMB2Security: Sendable {
    var dialect: UInt16 = 0
    var sessionId: UInt64 = 0
    var signingKey: [UInt8] = []
    var signs = false
    /// As 3.1.1's signing-capabilities context chose: 0 HMAC-SHA256, 1 AES-CMAC, 2 AES-GMAC.
    /// Before 3.0 always HMAC-SHA256; 3.0 and 3.0.2 always AES-CMAC.
    var signingAlgorithm: UInt16 = 0
    var cipher: SMB2Cipher?
    var encryptionKey: [UInt8] = []
    var decryptionKey: [UInt8] = []
    var encrypts = false

    /// HMAC-SHA256 with the session key (2.x), AES-CMAC with a derived key (3.x), or
    /// AES-GMAC (3.1.1 when negotiated), whose nonce is the MessageId and whether the
    /// server sent it. The message's signature field must be zero.
    func signature(_ message: ArraySlice<UInt8>) -> [UInt8] {
        let start = message.startIndex
        let digest = message.withUnsafeBytes { bytes -> [UInt8] in
            switch signingAlgorithm {
            case 2:
                var nonce = Array(message[(start + 24)..<(start + 32)])
                let fromServer = message[start + 16] & UInt8(SMB2Flags.response) != 0
                let cancel = message[start + 12] == UInt8(SMB2Command.cancel.rawValue) && message[start + 13] == 0
                nonce += [(fromServer ? 1 : 0) | (cancel ? 2 : 0), 0, 0, 0]
                return Crypto.aesGMAC(key: signingKey, nonce: nonce, bytes)
            case 1: return Crypto.aesCMAC(key: signingKey, bytes)
            default: return Crypto.hmacSHA256(key: signingKey, bytes)
            }
        }
        return Array(digest.prefix(16))
    }

    func verify(_ message: ArraySlice<UInt8>) -> Bool {
        guard message.count >= 64 else { return false }
        let start = message.startIndex
        var unsigned = Array(message)
        unsigned.replaceSubrange(48..<64, with: repeatElement(0, count: 16))
        return Crypto.equal(signature(unsigned[...]), Array(message[(start + 48)..<(start + 64)]))
    }

    /// The transform header (52 bytes) around the encrypted messages; its last 32 bytes
    /// are the additional authenticated data.
    func seal(_ messages: [UInt8], nonce chosen: [UInt8]? = nil) -> [UInt8] {
        guard let cipher else { return messages }
        var nonce = chosen ?? NTLMAuthenticator.random(cipher.nonceBytes)
        nonce += [UInt8](repeating: 0, count: 16 - nonce.count)
        var header = ByteWriter(capacity: 52 + messages.count)
        header.u32(0x424D_53FD)
        header.zeros(16)
        header.append(nonce)
        header.u32(UInt32(messages.count))
        header.u16(0)
        header.u16(1)  // Encrypted
        header.u64(sessionId)
        let aad = Array(header.bytes[20..<52])
        var body = messages
        let tag = body.withUnsafeMutableBytes { cipher.seal(key: encryptionKey, nonce: Array(nonce.prefix(cipher.nonceBytes)), aad: aad, $0) }
        header.bytes.replaceSubrange(4..<20, with: tag)
        header.append(body)
        return header.bytes
    }

    func unseal(_ frame: [UInt8]) -> [UInt8]? {
        guard let cipher, frame.count >= 52 else { return nil }
        let tag = Array(frame[4..<20])
        let nonce = Array(frame[20..<(20 + cipher.nonceBytes)])
        let aad = Array(frame[20..<52])
        var body = Array(frame[52...])
        let valid = body.withUnsafeMutableBytes { cipher.open(key: decryptionKey, nonce: nonce, aad: aad, tag: tag, $0) }
        return valid ? body : nil
    }

    /// The keys of a session from its session key (MS-SMB2 3.2.5.3.1): 3.1.1 binds them to the
    /// hash of the exchange that set the session up. `fullSessionKey`: all of what authentication gave (32 bytes from an AES Kerberos ticket,
    /// 16 from NTLM). MS-SMB2 3.2.5.3.1: signing uses its first 16 bytes (zero-padded), and
    /// so does encryption, but for the 256-bit ciphers, which derive from the whole key.
    mutating func deriveKeys(sessionKey fullSessionKey: [UInt8], preauthHash: [UInt8]) {
        let sessionKey = Array((fullSessionKey + [UInt8](repeating: 0, count: 16)).prefix(16))
        guard dialect >= 0x300 else {
            signingKey = sessionKey
            signingAlgorithm = 0
            return
        }
        if dialect < 0x311 { signingAlgorithm = 1 }
        func label(_ text: String) -> [UInt8] { Array(text.utf8) + [0] }
        let bits = cipher == .aes256CCM || cipher == .aes256GCM ? 256 : 128
        if dialect == 0x311 {
            let cipherKey = bits == 256 ? fullSessionKey : sessionKey
            signingKey = Crypto.deriveKey(sessionKey, label: label("SMBSigningKey"), context: preauthHash)
            encryptionKey = Crypto.deriveKey(cipherKey, label: label("SMBC2SCipherKey"), context: preauthHash, bits: bits)
            decryptionKey = Crypto.deriveKey(cipherKey, label: label("SMBS2CCipherKey"), context: preauthHash, bits: bits)
        } else {
            signingKey = Crypto.deriveKey(sessionKey, label: label("SMB2AESCMAC"), context: label("SmbSign"))
            encryptionKey = Crypto.deriveKey(sessionKey, label: label("SMB2AESCCM"), context: label("ServerIn "))
            decryptionKey = Crypto.deriveKey(sessionKey, label: label("SMB2AESCCM"), context: label("ServerOut"))
        }
    }
}
