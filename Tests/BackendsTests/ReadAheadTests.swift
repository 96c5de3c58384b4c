import Glibc
import Testing

@testable import Backends

/// The read-ahead's decisions, without a share: what a read at each offset does next.
@Suite struct ReadAheadTests {
    static let MiB = 1 << 20
    var readAhead = ReadAhead(lanes: 2)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    var now = Duration.seconds(100)

    private mutating func step(at offset: Int) -> ReadAhead.Step {
        readAhead.step(at: off_t(offset), into: buffer, now: now)
    }

    private mutating func land(_ range: ReadAhead.Range, fill: UInt8 = 7, count: Int? = nil) {
        readAhead.fetched(ArraySlice(repeating: fill, count: count ?? range.count), for: range, now: now)
    }

    @Test mutating func theFirstReadGoesStraightToTheShareTheSecondStartsABatch() {
        guard case .direct = step(at: 0) else { Issue.record("first read"); return }
        guard case .fetch(let range) = step(at: Self.MiB) else { Issue.record("second read"); return }
        #expect(range.offset == off_t(Self.MiB) && range.count == 2 * Self.MiB)
        #expect(readAhead.mustWait(for: off_t(2 * Self.MiB)), "a read inside the fetch waits for it")
        land(range)
        guard case .copied(let count, let prefetches) = step(at: Self.MiB) else { Issue.record("copied"); return }
        #expect(count == Self.MiB)
        // Both lanes start, each batch larger than the last, from the frontier on.
        #expect(prefetches.map(\.offset) == [off_t(3 * Self.MiB), off_t(7 * Self.MiB)])
        #expect(prefetches.map(\.count) == [4 * Self.MiB, 8 * Self.MiB])
        #expect(buffer.allSatisfy { $0 == 7 })
    }

    @Test mutating func aReadFarFromTheLastOneIsNotSequential() {
        _ = step(at: 0)
        guard case .direct = step(at: 100 * Self.MiB) else { Issue.record("a jump"); return }
        guard case .fetch = step(at: 101 * Self.MiB) else { Issue.record("then sequential again"); return }
    }

    @Test mutating func aShortBatchEndsTheFile() {
        _ = step(at: 0)
        guard case .fetch(let range) = step(at: Self.MiB) else { Issue.record("fetch"); return }
        land(range, count: Self.MiB / 2)
        guard case .copied(let count, let prefetches) = step(at: Self.MiB) else { Issue.record("copied"); return }
        #expect(count == Self.MiB / 2 && prefetches.isEmpty)
        guard case .endOfFile = step(at: Self.MiB + Self.MiB / 2) else { Issue.record("end of file"); return }
    }

    @Test mutating func batchesExpireAndWritesForgetThem() {
        _ = step(at: 0)
        guard case .fetch(let range) = step(at: Self.MiB) else { Issue.record("fetch"); return }
        land(range)
        readAhead.forget()
        guard case .fetch = step(at: Self.MiB) else { Issue.record("forgotten: fetched again"); return }
        land((off_t(Self.MiB), 2 * Self.MiB, readAhead.epoch))
        now += .seconds(2)
        guard case .fetch = step(at: Self.MiB) else { Issue.record("expired: fetched again"); return }
    }

    /// A fetch on its way when the file changed read what the share held before: a read
    /// after the change must not be served from it (a stale page, or an end of file that
    /// shrinks the kernel's idea of the size after a truncate up: SIGBUS under mmap).
    @Test mutating func aFetchOnItsWayWhenTheFileChangesIsNotKept() {
        _ = step(at: 0)
        guard case .fetch(let range) = step(at: Self.MiB) else { Issue.record("fetch"); return }
        readAhead.forget()
        #expect(!readAhead.mustWait(for: off_t(Self.MiB)), "nobody waits for a forgotten fetch")
        land(range, count: Self.MiB / 2)
        #expect(readAhead.batches.isEmpty)
        if case .copied = step(at: Self.MiB) { Issue.record("served from a fetch older than the change") }
        if case .endOfFile = step(at: Self.MiB + Self.MiB / 2) { Issue.record("an end of file from before the change") }
    }

    @Test mutating func aFailedFetchLetsTheWaitersGo() {
        _ = step(at: 0)
        guard case .fetch(let range) = step(at: Self.MiB) else { Issue.record("fetch"); return }
        #expect(readAhead.mustWait(for: off_t(Self.MiB)))
        readAhead.fetchEnded(range)
        #expect(!readAhead.mustWait(for: off_t(Self.MiB)))
    }
}

@Suite struct WriteBehindTests {
    var writeBehind = WriteBehind()
    let block = [UInt8](repeating: 1, count: 1 << 20)

    private mutating func gather(at offset: off_t) -> Bool {
        block.withUnsafeBytes { writeBehind.gather($0, at: offset) }
    }

    @Test mutating func contiguousWritesJoinOneBatchWhileTheWireIsBusy() {
        #expect(gather(at: 0), "the first write starts the courier")
        #expect(!writeBehind.isIdle)
        let first = writeBehind.takeBatch()
        #expect(first?.offset == 0 && first?.bytes.count == 1 << 20)
        #expect(!gather(at: 1 << 20), "the courier is busy: it takes the rest itself")
        #expect(!gather(at: 2 << 20))
        let second = writeBehind.takeBatch()
        #expect(second?.offset == 1 << 20 && second?.bytes.count == 2 << 20)
        #expect(writeBehind.takeBatch() == nil)
        #expect(writeBehind.isIdle)
    }

    @Test mutating func aWriteElsewhereWaitsUntilTheGatheredBatchIsTaken() {
        _ = gather(at: 0)
        #expect(writeBehind.accepts(1 << 20, at: 1 << 20))
        #expect(!writeBehind.accepts(1 << 20, at: 5 << 20))
        #expect(!writeBehind.accepts(WriteBehind.largestBatch, at: 1 << 20), "a batch has a largest size")
        _ = writeBehind.takeBatch()
        #expect(writeBehind.accepts(1 << 20, at: 5 << 20))
    }
}
