import NetUseCore
import Testing

@Suite struct KerberosCredentialsTests {
    let alice = Identity(uid: 60010, gid: 60010, groups: [])

    @Test func theDefaultIsTheUsersOwnCache() {
        #expect(KerberosCredentials(cache: nil, identity: alice)?.cache == "FILE:/tmp/krb5cc_60010")
    }

    @Test(arguments: [("FILE:/tmp/krb5cc_60010_x", "FILE:/tmp/krb5cc_60010_x"), ("/home/alice/cc", "FILE:/home/alice/cc"),
                      ("DIR:/run/user/60010/krb5cc", "DIR:/run/user/60010/krb5cc")])
    func fileAndDirectoryCachesAreTaken(_ named: String, _ cache: String) {
        #expect(KerberosCredentials(cache: named, identity: alice)?.cache == cache)
    }

    /// A keyring or KCM cache is the asking process's, which the daemon is not; a relative
    /// path is relative to nothing the user chose; control characters would reach the log.
    @Test(arguments: ["KEYRING:persistent:60010", "KCM:", "MEMORY:x", "FILE:cc", "cc", "FILE:/tmp/../etc/shadow",
                      "FILE:/tmp/x\n", "API:x", ""])
    func otherNamesAreRefused(_ named: String) {
        #expect(KerberosCredentials(cache: named, identity: alice) == nil)
    }
}
