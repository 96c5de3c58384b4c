import CGSSAPI
import Glibc
import NetUseCore

/// Kerberos through GSSAPI's SPNEGO mechanism (MIT krb5): an AP-REQ for cifs@server from the
/// user's ticket cache, and the server's AP-REP checked (mutual authentication). MIT's library
/// does the Kerberos; this holds one security context for one session setup.
final class GSSAuthenticator: SessionAuthenticator {
    let credentials: KerberosCredentials
    /// cifs@host, the service name Windows and Samba register for SMB.
    let target: String
    private var credential: gss_cred_id_t?
    private var name: gss_name_t?
    private var context: gss_ctx_id_t?
    private var complete = false
    private(set) var sessionKey: [UInt8] = []

    /// Mutual authentication, integrity and confidentiality, in sequence: what Windows asks for.
    private static let flags: OM_uint32 = 2 /* MUTUAL */ | 8 /* SEQUENCE */ | 16 /* CONF */ | 32 /* INTEG */

    init(_ credentials: KerberosCredentials, server: String) {
        self.credentials = credentials
        target = "cifs@" + server.lowercased()
    }

    deinit {
        var minor: OM_uint32 = 0
        if context != nil { gss_delete_sec_context(&minor, &context, nil) }
        if name != nil { gss_release_name(&minor, &name) }
        if credential != nil { gss_release_cred(&minor, &credential) }
    }

    func firstToken() throws(SMB2SetupError) -> [UInt8] {
        try asOwner { () throws(SMB2SetupError) in
            var minor: OM_uint32 = 0
            var major = netuse_gss_acquire_from_ccache(&minor, credentials.cache, &credential)
            guard major == 0 else { throw .noTicket("\(credentials.cache): " + Self.describe(major, minor)) }
            var text = Array(target.utf8)
            major = text.withUnsafeMutableBytes { bytes in
                var buffer = gss_buffer_desc(length: bytes.count, value: bytes.baseAddress)
                return gss_import_name(&minor, &buffer, netuse_gss_hostbased_service(), &name)
            }
            guard major == 0 else { throw .protocolError("Kerberos: \(target): " + Self.describe(major, minor)) }
            // The service ticket is got here, from the KDC, and stored in the user's cache.
            return try step(nil)
        }
    }

    func nextToken(_ serverToken: [UInt8]) throws(SMB2SetupError) -> [UInt8] {
        guard !complete else { throw .protocolError("Kerberos: the server asked for more after the logon was complete") }
        return try step(serverToken)
    }

    func finish(_ serverToken: [UInt8]) throws(SMB2SetupError) {
        guard !complete else { return }
        // The server's AP-REP: without it checked, a server that has not the service's key
        // could pose as it.
        guard !serverToken.isEmpty, try step(serverToken).isEmpty, complete else {
            throw .protocolError("Kerberos: the server did not prove who it is")
        }
    }

    private func step(_ input: [UInt8]?) throws(SMB2SetupError) -> [UInt8] {
        var minor: OM_uint32 = 0
        var output = gss_buffer_desc()
        defer { gss_release_buffer(&minor, &output) }
        var copy = input ?? []
        let major = copy.withUnsafeMutableBytes { bytes in
            var buffer = gss_buffer_desc(length: bytes.count, value: bytes.baseAddress)
            return withUnsafeMutablePointer(to: &buffer) { buffer in
                gss_init_sec_context(&minor, credential, &context, name, netuse_gss_spnego(), Self.flags, 0, nil,
                                     input == nil ? nil : buffer, nil, &output, nil, nil)
            }
        }
        // GSS_ERROR: a calling or routine error; CONTINUE_NEEDED (1) is supplementary.
        guard major & 0xFFFF_0000 == 0 else {
            let reason = Self.describe(major, minor)
            throw input == nil ? .noTicket("\(target): " + reason) : .protocolError("Kerberos: " + reason)
        }
        complete = major == 0
        if complete { sessionKey = try querySessionKey() }
        return output.length == 0 ? [] : Array(UnsafeRawBufferPointer(start: output.value, count: output.length))
    }

    private func querySessionKey() throws(SMB2SetupError) -> [UInt8] {
        var minor: OM_uint32 = 0
        var set: gss_buffer_set_t?
        let major = gss_inquire_sec_context_by_oid(&minor, context, netuse_gss_session_key(), &set)
        defer { gss_release_buffer_set(&minor, &set) }
        guard major == 0, let set, set.pointee.count >= 1, let key = set.pointee.elements?.pointee, key.length > 0 else {
            throw .protocolError("Kerberos: no session key")
        }
        return Array(UnsafeRawBufferPointer(start: key.value, count: key.length))
    }

    /// Runs `body` with the thread acting as the cache's owner (a daemon running as root),
    /// and back as before after it.
    private func asOwner<T>(_ body: () throws(SMB2SetupError) -> T) throws(SMB2SetupError) -> T {
        guard ThreadCredentials.canSwitch else { return try body() }
        let previous = ThreadCredentials.current()
        do {
            try ThreadCredentials.assume(credentials.identity)
        } catch {
            throw .noTicket("cannot act as uid \(credentials.identity.uid): \(error)")
        }
        defer { try? ThreadCredentials.assume(previous) }
        return try body()
    }

    /// GSSAPI's words for a failure, the mechanism's (Kerberos) first: they name the cause.
    static func describe(_ major: OM_uint32, _ minor: OM_uint32) -> String {
        func messages(_ code: OM_uint32, _ type: Int32) -> [String] {
            var result: [String] = []
            var more: OM_uint32 = 0
            repeat {
                var ignored: OM_uint32 = 0
                var text = gss_buffer_desc()
                guard gss_display_status(&ignored, code, type, nil, &more, &text) == 0 else { break }
                result.append(String(decoding: UnsafeRawBufferPointer(start: text.value, count: text.length), as: UTF8.self))
                gss_release_buffer(&ignored, &text)
            } while more != 0 && result.count < 4
            return result
        }
        let words = (minor != 0 ? messages(minor, 2 /* GSS_C_MECH_CODE */) : []) + messages(major, 1 /* GSS_C_GSS_CODE */)
        return words.filter { !$0.isEmpty }.joined(separator: "; ")
    }
}
