import Glibc
import NetUseCore
import Redirector
import Testing

/// The handle cache under leases: a close is deferred only while the lease lets the handle
/// be kept, a break closes what it no longer covers, and a read lease spares revalidation.
@Suite struct LeaseTests {
    let clock = FakeClock()
    let caller = Caller(uid: 0, gid: 0, pid: 42)

    private func redirector(_ share: FakeShare) -> Redirector {
        var options = Redirector.Options()
        options.closeTimeout = .seconds(5)
        let clock = self.clock
        return Redirector(backend: share, options: options, clock: { clock.now() })
    }

    private func open(_ redirector: Redirector, _ path: String, _ flags: Int32 = O_RDONLY) throws -> (handle: UInt64, keepCache: Bool) {
        let node = try redirector.lookup(parent: 1, name: path).node
        return try redirector.open(node, flags: flags, caller: caller)
    }

    @Test func aCloseIsDeferredOnlyUnderAHandleLease() throws {
        for (grant, deferred) in [(HandleCaching([.read, .handle]), 1), ([.read], 0), ([], 0)] {
            let share = FakeShare(grants: grant)
            let redirector = redirector(share)
            share.put("f")
            redirector.release(try open(redirector, "f").handle)
            #expect(redirector.deferredCount == deferred, "\(grant)")
            #expect(share.openHandles == deferred)
            #expect(redirector.counters.deferredUnderLease == deferred)
        }
    }

    @Test func aBreakOfTheHandleLeaseClosesTheDeferredOpenAtOnce() throws {
        let share = FakeShare(grants: [.read, .handle])
        let redirector = redirector(share)
        share.put("f")
        share.put("g")
        redirector.release(try open(redirector, "f").handle)
        redirector.release(try open(redirector, "g").handle)
        share.breakLeases(on: "f", to: [.read])
        #expect(redirector.deferredCount == 1 && share.openHandles == 1, "g's lease still holds")
        let counters = redirector.counters
        #expect(counters.breaks == 1 && counters.closedByBreak == 1)
        let rows = redirector.references.serverOpens
        #expect(rows.map(\.path) == ["/g"] && rows[0].lease == "RH")
    }

    @Test func aBreakOfAHandleInUseClosesItWhenReleasedInstead() throws {
        let share = FakeShare(grants: [.read, .write, .handle])
        let redirector = redirector(share)
        share.put("f")
        let held = try open(redirector, "f", O_RDWR).handle
        share.breakLeases(on: "f", to: [.read])
        #expect(share.openHandles == 1, "a handle a process holds stays open")
        #expect(redirector.references.serverOpens.map(\.lease) == ["R"])
        #expect(redirector.references.serverOpens.map(\.breaks) == [1])
        redirector.release(held)
        #expect(redirector.deferredCount == 0 && share.openHandles == 0)
    }

    @Test func aReopenWithinAReadLeaseAsksTheShareNothing() throws {
        let share = FakeShare(grants: [.read, .handle])
        let redirector = redirector(share)
        share.put("run.bat", size: 10)
        redirector.release(try open(redirector, "run.bat").handle)
        // Past the attribute timeout, which without a lease closes rather than revives.
        clock.advance(.seconds(3))
        let node = try redirector.lookup(parent: 1, name: "run.bat").node
        let stats = share.statCount
        let reopened = try redirector.open(node, flags: O_RDONLY, caller: caller)
        #expect(reopened.keepCache)
        #expect(share.statCount == stats && share.openCount == 1)
        #expect(redirector.counters.revivedUnderLease == 1)
    }

    @Test func anotherClientsWriteBreaksTheReadLeaseAndIsSeenOnReopen() throws {
        let share = FakeShare(grants: [.read, .handle])
        let redirector = redirector(share)
        share.put("f", size: 10, mtime: 1)
        redirector.release(try open(redirector, "f").handle)
        share.writeBehindTheDrive("f", size: 20, mtime: 2)
        #expect(redirector.deferredCount == 0, "the break took the handle lease too")
        let node = try redirector.lookup(parent: 1, name: "f")
        #expect(node.attributes.st_size == 20, "the break dropped the cached attributes")
        let reopened = try open(redirector, "f")
        #expect(!reopened.keepCache, "the file changed: the kernel's pages go")
        #expect(share.openCount == 2)
    }

    @Test func aShareWithoutLeasesDefersAsBefore() throws {
        let share = FakeShare()
        let redirector = redirector(share)
        share.put("f")
        redirector.release(try open(redirector, "f").handle)
        #expect(redirector.deferredCount == 1)
        #expect(redirector.references.serverOpens.map(\.lease) == [nil])
        #expect(redirector.counters.deferredUnderLease == 0)
    }
}
