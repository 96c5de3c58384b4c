import CNettle

/// The few primitives SMB2 and NTLMv2 need, from Nettle (a Debian package that Samba's
/// GnuTLS already pulls in): no cipher or hash is written here.
enum Crypto {
    static func md4(_ data: [UInt8]) -> [UInt8] {
        var context = md4_ctx()
        nettle_md4_init(&context)
        nettle_md4_update(&context, data.count, data)
        var digest = [UInt8](repeating: 0, count: 16)
        nettle_md4_digest(&context, 16, &digest)
        return digest
    }

    static func hmacMD5(key: [UInt8], _ parts: [UInt8]...) -> [UInt8] {
        var context = hmac_md5_ctx()
        nettle_hmac_md5_set_key(&context, key.count, key)
        for part in parts { nettle_hmac_md5_update(&context, part.count, part) }
        var digest = [UInt8](repeating: 0, count: 16)
        nettle_hmac_md5_digest(&context, 16, &digest)
        return digest
    }

    static func hmacSHA256(key: [UInt8], _ data: UnsafeRawBufferPointer) -> [UInt8] {
        var context = hmac_sha256_ctx()
        nettle_hmac_sha256_set_key(&context, key.count, key)
        nettle_hmac_sha256_update(&context, data.count, data.baseAddress?.assumingMemoryBound(to: UInt8.self))
        var digest = [UInt8](repeating: 0, count: 32)
        nettle_hmac_sha256_digest(&context, 32, &digest)
        return digest
    }

    static func sha512(_ parts: [UInt8]...) -> [UInt8] {
        var context = sha512_ctx()
        nettle_sha512_init(&context)
        for part in parts { nettle_sha512_update(&context, part.count, part) }
        var digest = [UInt8](repeating: 0, count: 64)
        nettle_sha512_digest(&context, 64, &digest)
        return digest
    }

    static func aesCMAC(key: [UInt8], _ data: UnsafeRawBufferPointer) -> [UInt8] {
        var context = cmac_aes128_ctx()
        nettle_cmac_aes128_set_key(&context, key)
        nettle_cmac_aes128_update(&context, data.count, data.baseAddress?.assumingMemoryBound(to: UInt8.self))
        var digest = [UInt8](repeating: 0, count: 16)
        nettle_cmac_aes128_digest(&context, 16, &digest)
        return digest
    }

    /// AES-GMAC: GCM over nothing, with the data as additional authenticated data.
    static func aesGMAC(key: [UInt8], nonce: [UInt8], _ data: UnsafeRawBufferPointer) -> [UInt8] {
        var context = gcm_aes128_ctx()
        nettle_gcm_aes128_set_key(&context, key)
        nettle_gcm_aes128_set_iv(&context, nonce.count, nonce)
        nettle_gcm_aes128_update(&context, data.count, data.baseAddress?.assumingMemoryBound(to: UInt8.self))
        var digest = [UInt8](repeating: 0, count: 16)
        nettle_gcm_aes128_digest(&context, 16, &digest)
        return digest
    }

    /// SP800-108 in counter mode with HMAC-SHA256, as SMB 3.x derives its keys (MS-SMB2 3.1.4.2).
    static func deriveKey(_ key: [UInt8], label: [UInt8], context: [UInt8], bits: Int = 128) -> [UInt8] {
        var input: [UInt8] = [0, 0, 0, 1] + label + [0] + context
        input += [UInt8(truncatingIfNeeded: bits >> 24), UInt8(truncatingIfNeeded: bits >> 16),
                  UInt8(truncatingIfNeeded: bits >> 8), UInt8(truncatingIfNeeded: bits)]
        let digest = input.withUnsafeBytes { hmacSHA256(key: key, $0) }
        return Array(digest.prefix(bits / 8))
    }

    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && nettle_memeql_sec(a, b, a.count) != 0
    }
}

/// An AEAD cipher of SMB 3.x encryption (MS-SMB2 2.2.41): the tag goes in the transform
/// header's Signature, the nonce in its Nonce field.
public enum SMB2Cipher: UInt16, Sendable, CaseIterable {
    case aes128CCM = 1, aes128GCM = 2, aes256CCM = 3, aes256GCM = 4

    var keyBytes: Int { self == .aes128CCM || self == .aes128GCM ? 16 : 32 }
    var nonceBytes: Int { self == .aes128CCM || self == .aes256CCM ? 11 : 12 }

    /// Encrypts `message` in place and answers the 16-byte tag.
    func seal(key: [UInt8], nonce: [UInt8], aad: [UInt8], _ message: UnsafeMutableRawBufferPointer) -> [UInt8] {
        var tag = [UInt8](repeating: 0, count: 16)
        let data = message.baseAddress?.assumingMemoryBound(to: UInt8.self)
        switch self {
        case .aes128GCM:
            var context = gcm_aes128_ctx()
            nettle_gcm_aes128_set_key(&context, key)
            nettle_gcm_aes128_set_iv(&context, nonce.count, nonce)
            nettle_gcm_aes128_update(&context, aad.count, aad)
            nettle_gcm_aes128_encrypt(&context, message.count, data, data)
            nettle_gcm_aes128_digest(&context, 16, &tag)
        case .aes256GCM:
            var context = gcm_aes256_ctx()
            nettle_gcm_aes256_set_key(&context, key)
            nettle_gcm_aes256_set_iv(&context, nonce.count, nonce)
            nettle_gcm_aes256_update(&context, aad.count, aad)
            nettle_gcm_aes256_encrypt(&context, message.count, data, data)
            nettle_gcm_aes256_digest(&context, 16, &tag)
        case .aes128CCM, .aes256CCM:
            var output = [UInt8](repeating: 0, count: message.count + 16)
            if self == .aes128CCM {
                var context = ccm_aes128_ctx()
                nettle_ccm_aes128_set_key(&context, key)
                nettle_ccm_aes128_encrypt_message(&context, nonce.count, nonce, aad.count, aad, 16, output.count, &output, data)
            } else {
                var context = ccm_aes256_ctx()
                nettle_ccm_aes256_set_key(&context, key)
                nettle_ccm_aes256_encrypt_message(&context, nonce.count, nonce, aad.count, aad, 16, output.count, &output, data)
            }
            output.withUnsafeBytes { message.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[..<message.count])) }
            tag = Array(output[message.count...])
        }
        return tag
    }

    /// Decrypts `message` in place; false when the tag does not match (the message is then garbage).
    func open(key: [UInt8], nonce: [UInt8], aad: [UInt8], tag: [UInt8], _ message: UnsafeMutableRawBufferPointer) -> Bool {
        let data = message.baseAddress?.assumingMemoryBound(to: UInt8.self)
        switch self {
        case .aes128GCM, .aes256GCM:
            var digest = [UInt8](repeating: 0, count: 16)
            if self == .aes128GCM {
                var context = gcm_aes128_ctx()
                nettle_gcm_aes128_set_key(&context, key)
                nettle_gcm_aes128_set_iv(&context, nonce.count, nonce)
                nettle_gcm_aes128_update(&context, aad.count, aad)
                nettle_gcm_aes128_decrypt(&context, message.count, data, data)
                nettle_gcm_aes128_digest(&context, 16, &digest)
            } else {
                var context = gcm_aes256_ctx()
                nettle_gcm_aes256_set_key(&context, key)
                nettle_gcm_aes256_set_iv(&context, nonce.count, nonce)
                nettle_gcm_aes256_update(&context, aad.count, aad)
                nettle_gcm_aes256_decrypt(&context, message.count, data, data)
                nettle_gcm_aes256_digest(&context, 16, &digest)
            }
            return Crypto.equal(digest, tag)
        case .aes128CCM, .aes256CCM:
            var input = [UInt8](repeating: 0, count: message.count + 16)
            input.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(message)) }
            input.replaceSubrange(message.count..., with: tag)
            if self == .aes128CCM {
                var context = ccm_aes128_ctx()
                nettle_ccm_aes128_set_key(&context, key)
                return nettle_ccm_aes128_decrypt_message(&context, nonce.count, nonce, aad.count, aad, 16, message.count, data, input) != 0
            } else {
                var context = ccm_aes256_ctx()
                nettle_ccm_aes256_set_key(&context, key)
                return nettle_ccm_aes256_decrypt_message(&context, nonce.count, nonce, aad.count, aad, 16, message.count, data, input) != 0
            }
        }
    }
}
