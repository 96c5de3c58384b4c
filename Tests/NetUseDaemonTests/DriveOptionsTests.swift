@testable import NetUseDaemon
import NetUseCore
import Testing

@Suite struct DriveOptionsTests {
    @Test func defaults() throws {
        let options = try DriveOptions.parse([:])
        #expect(options.workers == 4 && options.readAheadKiB == 4096 && options.timeout == .seconds(30))
        #expect(options.cache.closeTimeout == .seconds(5) && options.cache.deferredLimit == 64)
    }

    @Test func valuesAreRead() throws {
        let options = try DriveOptions.parse(["closetimeo": "0.5", "actimeo": "0", "maxdeferred": "1024", "workers": "1"])
        #expect(options.cache.closeTimeout == .milliseconds(500) && options.cache.attributeTimeout == .zero)
        #expect(options.cache.deferredLimit == 1024 && options.workers == 1)
        #expect(try DriveOptions.parse([:]).leases && !(try DriveOptions.parse(["nolease": ""]).leases))
        #expect(try DriveOptions.parse([:]).locks && !(try DriveOptions.parse(["nobrl": "yes"]).locks))
        #expect(try !DriveOptions.parse([:]).kerberos && DriveOptions.parse(["sec": "krb5"]).kerberos)
        #expect(try !DriveOptions.parse(["sec": "ntlmssp"]).kerberos)
    }

    /// Each deferred handle is one of the daemon's descriptors: a user may not ask for more.
    @Test(arguments: [["maxdeferred": "1025"], ["maxdeferred": "-1"], ["workers": "0"], ["timeout": "nan"],
                      ["closetimeo": "3601"], ["readahead": "x"], ["nosuch": "1"], ["nolease": "no"],
                      ["sec": "krb5i"], ["sec": "krb5", "engine": "libsmbclient"]])
    func outOfRangeIs87(_ options: [String: String]) {
        do {
            _ = try DriveOptions.parse(options)
            Issue.record("\(options) was accepted")
        } catch {
            #expect(error.code == .invalidParameter)
        }
    }
}
