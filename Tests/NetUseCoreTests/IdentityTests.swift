import Glibc
import NetUseCore
import Testing

@Suite struct IdentityTests {
    private func groups(_ status: String) -> [gid_t]? {
        Array(status.utf8).withUnsafeBufferPointer { Identity.groups(inStatus: $0) }
    }

    @Test func readsTheGroupsLine() {
        #expect(groups("Name:\tx\nGid:\t5\t5\t5\t5\nGroups:\t4 27 100 \nNgid:\t0\n") == [4, 27, 100])
    }

    @Test func noGroupsIsEmptyAndNoLineIsNil() {
        #expect(groups("Name:\tx\nGroups:\t\nNgid:\t0\n") == [])
        #expect(groups("Name:\tx\nNgid:\t0\n") == nil)
    }

    @Test func theCallingProcessHasItsOwnGroups() {
        let count = getgroups(0, nil)
        var own = [gid_t](repeating: 0, count: Int(count))
        _ = getgroups(count, &own)
        let caller = Caller(uid: getuid(), gid: getgid(), pid: getpid())
        #expect(Set(Identity.of(caller).groups) == Set(own))
    }
}
