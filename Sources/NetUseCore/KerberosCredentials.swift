import Glibc

/// Whose Kerberos tickets a session logs on with (`-o sec=krb5`): a credentials cache, read
/// while the thread acts as the user it is for, so that nobody presents tickets they could
/// not read themselves (cifs.upcall reads the cache as the user for the same reason).
public struct KerberosCredentials: Sendable, Equatable {
    /// A FILE: or DIR: cache.
    public let cache: String
    public let identity: Identity

    /// `named` as KRB5CCNAME spells it; nil is the user's default cache, FILE:/tmp/krb5cc_UID.
    /// Nil when the name is not one this accepts: a file or directory cache by absolute path
    /// (a keyring or KCM cache belongs to the process that asks, which the daemon is not).
    public init?(cache named: String?, identity: Identity) {
        let cache = named.map { $0.hasPrefix("/") ? "FILE:" + $0 : $0 } ?? "FILE:/tmp/krb5cc_\(identity.uid)"
        let path = cache.drop { $0 != ":" }.dropFirst()
        guard cache.hasPrefix("FILE:/") || cache.hasPrefix("DIR:/"), !path.contains("/../"), !path.hasSuffix("/.."),
              !cache.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }), cache.utf8.count < 4096 else { return nil }
        self.cache = cache
        self.identity = identity
    }
}
