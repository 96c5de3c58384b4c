import Glibc
import NetUseCore
import Redirector
import Testing

/// The FCB handle cache, driven through the Redirector with a fake share and a fake clock.
@Suite struct HandleCacheTests {
    let share = FakeShare()
    let clock = FakeClock()
    let redirector: Redirector
    let caller = Caller(uid: 0, gid: 0, pid: 42)

    init() {
        var options = Redirector.Options()
        options.closeTimeout = .seconds(5)
        options.deferredLimit = 3
        let clock = self.clock
        redirector = Redirector(backend: share, options: options, clock: { clock.now() })
    }

    private func node(_ path: String) throws -> UInt64 {
        var parent: UInt64 = 1
        for name in path.split(separator: "/") {
            parent = try redirector.lookup(parent: parent, name: String(name)).node
        }
        return parent
    }

    private func open(_ path: String, _ flags: Int32 = O_RDONLY) throws -> UInt64 {
        try redirector.open(try node(path), flags: flags, caller: caller).handle
    }

    /// Opens and closes: leaves one deferred ServerOpen behind.
    private func touch(_ path: String, _ flags: Int32 = O_RDONLY) throws {
        redirector.release(try open(path, flags))
    }

    @Test func compatibleOpensCollapseOntoOneServerOpen() throws {
        share.put("f")
        let first = try open("f")
        let second = try open("f")
        #expect(share.openCount == 1)
        #expect(redirector.counters.collapsed == 1)
        #expect(redirector.openHandleCount == 2)
        redirector.release(first)
        #expect(redirector.deferredCount == 0, "still held by the second FileHandle")
        redirector.release(second)
        #expect(redirector.deferredCount == 1)
        #expect(share.openHandles == 1)
    }

    /// Linux's errseq: every FileHandle open when written data failed hears of it at its
    /// next flush (close) or fsync; only its own fsync marks it told; later opens never hear.
    @Test func aWriteBehindFailureReachesEveryHandleOpenWhenItFailed() throws {
        share.put("f")
        let writer = try open("f", O_RDWR)
        let bystander = try open("f", O_RDWR)
        share.failWrites(Errno(ENOSPC))
        #expect(throws: Errno(ENOSPC)) { try redirector.flush(bystander) }
        #expect(throws: Errno(ENOSPC)) { try redirector.flush(bystander) }
        #expect(throws: Errno(ENOSPC)) { try redirector.sync(bystander, dataOnly: false) }
        try redirector.flush(bystander)
        #expect(throws: Errno(ENOSPC)) { try redirector.flush(writer) }
        let late = try open("f", O_RDWR)
        try redirector.sync(late, dataOnly: true)
        #expect(throws: Errno(ENOSPC)) { try redirector.sync(writer, dataOnly: true) }
        try redirector.flush(writer)
    }

    @Test func otherAccessModesGetTheirOwnServerOpen() throws {
        share.put("f")
        _ = try open("f", O_RDONLY)
        _ = try open("f", O_WRONLY)
        _ = try open("f", O_WRONLY | O_APPEND)
        #expect(share.openCount == 3)
    }

    @Test func aReleasedServerOpenIsRevivedWithoutTheShare() throws {
        share.put("batch.cmd")
        for _ in 0..<100 { try touch("batch.cmd") }
        let counters = redirector.counters
        #expect(counters.opens == 100 && counters.backendOpens == 1 && counters.revived == 99)
        #expect(share.openCount == 1)
    }

    @Test func deferredServerOpensExpireAfterCloseTimeout() throws {
        share.put("f")
        try touch("f")
        clock.advance(.milliseconds(4900))
        redirector.expireDeferred()
        #expect(redirector.deferredCount == 1)
        clock.advance(.milliseconds(200))
        redirector.expireDeferred()
        #expect(redirector.deferredCount == 0)
        #expect(share.openHandles == 0)
        #expect(redirector.counters.expired == 1)
        try touch("f")
        #expect(share.openCount == 2, "an expired ServerOpen is not revived")
    }

    @Test func theDeferredListIsBoundedOldestFirst() throws {
        for name in ["a", "b", "c", "d"] {
            share.put(name)
            try touch(name)
        }
        #expect(redirector.deferredCount == 3)
        #expect(share.events.filter { $0.hasPrefix("close") } == ["close a"])
        #expect(redirector.counters.evicted == 1)
    }

    @Test func zeroCloseTimeoutClosesAtOnce() throws {
        var options = Redirector.Options()
        options.closeTimeout = .zero
        let redirector = Redirector(backend: share, options: options)
        share.put("f")
        let node = try redirector.lookup(parent: 1, name: "f").node
        redirector.release(try redirector.open(node, flags: O_RDONLY, caller: caller).handle)
        #expect(redirector.deferredCount == 0 && share.openHandles == 0)
    }

    @Test func unlinkClosesTheDeferredOpenFirst() throws {
        share.put("doomed")
        try touch("doomed")
        share.clearEvents()
        try redirector.unlink(parent: 1, name: "doomed")
        #expect(share.events == ["close doomed", "unlink doomed"])
        #expect(redirector.counters.invalidated == 1)
    }

    @Test func renameClosesBothNamesButNotASiblingWithTheSamePrefix() throws {
        share.put("foo")
        share.put("foo.tmp")
        share.put("bar")
        try touch("foo")
        try touch("foo.tmp")
        try touch("bar")
        share.clearEvents()
        try redirector.rename(parent: 1, name: "foo", to: 1, newName: "bar", flags: [])
        #expect(share.events.last == "rename foo bar")
        #expect(Set(share.events.dropLast()) == ["close foo", "close bar"])
        #expect(redirector.deferredCount == 1, "foo.tmp keeps its deferred open")
        try touch("foo.tmp")
        #expect(redirector.counters.revived == 1)
    }

    @Test func renameOfADirectoryClosesEverythingBelowIt() throws {
        share.put("dir", directory: true)
        share.put("dir/a")
        share.put("dir/sub", directory: true)
        share.put("dir/sub/b")
        share.put("dir2")
        try touch("dir/a")
        try touch("dir/sub/b")
        try touch("dir2")
        share.clearEvents()
        try redirector.rename(parent: 1, name: "dir", to: 1, newName: "moved", flags: [])
        #expect(Set(share.events.dropLast()) == ["close dir/a", "close dir/sub/b"])
        #expect(redirector.deferredCount == 1)
    }

    @Test func rmdirClosesDeferredOpensBelowIt() throws {
        share.put("dir", directory: true)
        share.put("dir/a")
        try touch("dir/a")
        share.put("dirt")
        try touch("dirt")
        share.clearEvents()
        try redirector.removeDirectory(parent: 1, name: "dir")
        #expect(share.events == ["close dir/a", "rmdir dir"])
        #expect(redirector.deferredCount == 1)
    }

    @Test func truncateClosesTheDeferredOpenFirst() throws {
        share.put("f", size: 100)
        try touch("f")
        share.clearEvents()
        var changes = AttributeChanges()
        changes.size = 0
        _ = try redirector.setAttributes(changes, of: try node("f"), handle: nil)
        #expect(share.events == ["close f", "truncate f"])
    }

    @Test func anOpenWithTruncateNeverCollapses() throws {
        share.put("f", size: 100)
        try touch("f", O_WRONLY)
        share.clearEvents()
        try touch("f", O_WRONLY | O_TRUNC)
        #expect(share.events == ["close f", "open f"])
    }

    @Test func flushClosesEveryDeferredOpenAndNothingActive() throws {
        share.put("a")
        share.put("b")
        share.put("c")
        try touch("a")
        try touch("b")
        let held = try open("c")
        #expect(redirector.flushDeferred() == 2)
        #expect(redirector.deferredCount == 0)
        #expect(redirector.openHandleCount == 1)
        #expect(share.openHandles == 1)
        redirector.release(held)
    }

    @Test func aDeferredServerOpenIsNeverActive() throws {
        share.put("script.bat")
        try touch("script.bat")
        #expect(redirector.liveHandles.isEmpty)
        #expect(redirector.openHandleCount == 0)
        #expect(redirector.deferredCount == 1)
        let held = try open("script.bat")
        #expect(redirector.liveHandles.map(\.opener.pid) == [42])
        redirector.release(held)
        #expect(redirector.liveHandles.isEmpty)
    }

    @Test func reopenKeepsTheKernelCacheOnlyWhenTheFileIsUnchanged() throws {
        share.put("f", size: 10, mtime: 1)
        try touch("f")
        let f = try node("f")
        let unchanged = try redirector.open(f, flags: O_RDONLY, caller: caller)
        #expect(unchanged.keepCache)
        redirector.release(unchanged.handle)
        share.put("f", size: 12, mtime: 2, newInode: false)  // written in place by someone else
        // Within the attribute timeout an open trusts what the share said last, as the kernel does.
        let trusted = try redirector.open(f, flags: O_RDONLY, caller: caller)
        #expect(trusted.keepCache)
        redirector.release(trusted.handle)
        clock.advance(.milliseconds(1100))
        let changed = try redirector.open(f, flags: O_RDONLY, caller: caller)
        #expect(!changed.keepCache)
        // Samba reports the write time a file had when the drive opened it for as long as it
        // is open: past the timeout only a fresh open sees another client's change.
        #expect(share.openCount == 2, "past the timeout the deferred handle is closed, the file opened afresh")
        redirector.release(changed.handle)
    }

    @Test func anOpenWithinTheAttributeTimeoutAsksTheShareNothing() throws {
        share.put("batch.cmd")
        try touch("batch.cmd")
        let node = try node("batch.cmd")
        share.clearEvents()
        let stats = share.statCount
        for _ in 0..<10 { redirector.release(try redirector.open(node, flags: O_RDONLY, caller: caller).handle) }
        #expect(share.events.isEmpty && share.statCount == stats)
        #expect(redirector.counters.revived == 10)
        clock.advance(.milliseconds(1100))
        let opens = share.openCount
        redirector.release(try redirector.open(node, flags: O_RDONLY, caller: caller).handle)
        #expect(share.openCount == opens + 1, "past the timeout the share opens the file again")
    }

    @Test func aLookupWithinTheAttributeTimeoutIsAnsweredFromWhatTheShareSaid() throws {
        share.put("f", size: 10, mtime: 1)
        let first = try redirector.lookup(parent: 1, name: "f")
        let stats = share.statCount
        clock.advance(.milliseconds(400))
        let second = try redirector.lookup(parent: 1, name: "f")
        #expect(share.statCount == stats && second.node == first.node)
        #expect(second.timeout == .milliseconds(600), "the kernel trusts it for what is left")
        // A write through the drive makes what was said stale.
        let handle = try redirector.open(first.node, flags: O_WRONLY, caller: caller).handle
        _ = try [UInt8](repeating: 1, count: 4).withUnsafeBytes { try redirector.write(handle, from: $0, at: 0) }
        redirector.release(handle)
        _ = try redirector.lookup(parent: 1, name: "f")
        #expect(share.statCount > stats, "after a write the share is asked again")
    }

    @Test func aReplacedFileIsNotServedByTheOldHandle() throws {
        share.put("f", size: 10, mtime: 1)
        try touch("f")
        share.clearEvents()
        share.put("f", size: 10, mtime: 1, newInode: true)  // renamed over by someone else
        clock.advance(.milliseconds(1100))  // within the attribute timeout the name is trusted
        let reopened = try redirector.open(try node("f"), flags: O_RDONLY, caller: caller)
        #expect(share.events == ["close (gone)", "open f"])
        #expect(!reopened.keepCache)
        #expect(redirector.counters.invalidated == 1)
    }

    @Test func anOpenFileFollowsARenameAndANewFileAtAnUnlinkedNameIsNew() throws {
        share.put("old")
        let held = try open("old")
        try redirector.rename(parent: 1, name: "old", to: 1, newName: "new", flags: [])
        _ = try open("new")
        #expect(redirector.counters.collapsed == 1)
        try redirector.unlink(parent: 1, name: "new")
        share.put("new")
        _ = try open("new")
        #expect(redirector.counters.backendOpens == 2, "the unlinked file's handle is not reused")
        redirector.release(held)
    }

    @Test func aRemoveRefusedForAHandleBeingReleasedIsTriedAgain() throws {
        let share = FakeShare(busyWhileOpen: true)
        let redirector = Redirector(backend: share)
        share.put("script.bat")
        let node = try redirector.lookup(parent: 1, name: "script.bat").node
        let handle = try redirector.open(node, flags: O_RDONLY, caller: caller).handle
        // The RELEASE comes a little after the unlink, as FUSE may deliver it.
        let releaser = SystemThread {
            usleep(50_000)
            redirector.release(handle)
        }
        try redirector.unlink(parent: 1, name: "script.bat")
        releaser.join()
        #expect(share.events.suffix(3) == ["busy script.bat", "close script.bat", "unlink script.bat"])
    }

    /// A share that will not remove an open file (SMB without FILE_SHARE_DELETE): a file a
    /// process holds is deleted pending, as Linux unlinks an open file. The name is gone for
    /// the drive at once and cannot be taken again while the share still has the file; the
    /// holder keeps its file; the share removes it when the last holder lets go.
    @Test func anUnlinkedFileAProcessHoldsIsDeletedWhenItLetsGo() throws {
        let share = FakeShare(busyWhileOpen: true)
        var options = Redirector.Options()
        options.closeTimeout = .seconds(5)
        let redirector = Redirector(backend: share, options: options, clock: { [clock] in clock.now() })
        share.put("held.tmp", size: 10)
        let node = try redirector.lookup(parent: 1, name: "held.tmp").node
        let reader = try redirector.open(node, flags: O_RDONLY, caller: caller).handle
        redirector.release(try redirector.open(node, flags: O_RDONLY, caller: caller).handle)
        let writer = try redirector.open(node, flags: O_WRONLY, caller: caller).handle
        redirector.release(reader)
        #expect(redirector.deferredCount == 1, "the read ServerOpen is deferred")

        try redirector.unlink(parent: 1, name: "held.tmp")
        #expect(redirector.deferredCount == 0, "a name deleted pending keeps no deferred ServerOpen")
        #expect(throws: Errno(ENOENT)) { try redirector.lookup(parent: 1, name: "held.tmp") }
        #expect(throws: Errno(ENOENT)) { try redirector.unlink(parent: 1, name: "held.tmp") }
        #expect(throws: Errno(EBUSY)) { try redirector.create(parent: 1, name: "held.tmp", flags: O_WRONLY | O_CREAT, mode: 0o644, caller: caller) }
        #expect(try redirector.attributes(of: node, handle: writer).st_size == 10, "the holder keeps its file")
        #expect(!share.events.contains("unlink held.tmp"))

        redirector.release(writer)
        #expect(share.events.suffix(2) == ["close held.tmp", "unlink held.tmp"])
        #expect(throws: Errno(ENOENT)) { try redirector.lookup(parent: 1, name: "held.tmp") }
        let (_, fresh) = try redirector.create(parent: 1, name: "held.tmp", flags: O_WRONLY | O_CREAT, mode: 0o644, caller: caller)
        redirector.release(fresh)
    }

    /// A share that removes open files (a local one) is never made to wait: nothing pends.
    @Test func anUnlinkTheShareTakesIsNotDeferred() throws {
        share.put("f")
        let held = try open("f", O_RDWR)
        try redirector.unlink(parent: 1, name: "f")
        #expect(share.events.last == "unlink f")
        redirector.release(held)
        #expect(!share.events.dropLast().contains("busy f"))
    }

    /// Revoking answers at once (no share is waited for); disconnecting, which a forced
    /// delete runs in the background, closes every handle, held ones included.
    @Test func revokeFailsEverythingWithEIOAndDisconnectClosesEveryHandle() throws {
        share.put("f")
        let held = try open("f")
        share.put("g")
        try touch("g")
        redirector.revoke()
        var byte: UInt8 = 0
        #expect(throws: Errno(EIO)) {
            _ = try withUnsafeMutableBytes(of: &byte) { try redirector.read(held, into: $0, at: 0) }
        }
        #expect(throws: Errno(EIO)) { try redirector.lookup(parent: 1, name: "f") }
        redirector.disconnect()
        #expect(share.openHandles == 0)
        redirector.release(held)
    }
}
