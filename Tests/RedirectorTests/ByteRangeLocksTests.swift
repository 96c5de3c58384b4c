@testable import Redirector
import Testing

/// POSIX lock ownership over SMB's per-handle ranges: replace, split, and conflicts.
@Suite struct ByteRangeLocksTests {
    let process = LockOwner(id: 7, flock: false)
    let other = LockOwner(id: 8, flock: false)

    func range(_ start: UInt64, _ end: UInt64) -> LockRange { LockRange(start: start, end: end) }

    @Test func aRangeMinusAnotherLeavesWhatLiesOutside() {
        #expect(range(0, 300).minus(range(100, 200)) == [range(0, 100), range(200, 300)])
        #expect(range(0, 300).minus(range(0, 300)) == [])
        #expect(range(0, 100).minus(range(100, 200)) == [range(0, 100)])
        #expect(LockRange.wholeFile.minus(range(10, 20)) == [range(0, 10), range(20, .max)])
    }

    @Test func anUnlockInTheMiddleSplitsTheOwnersLock() {
        var locks = ByteRangeLocks()
        locks.add([HeldLock(owner: process, range: range(0, 300), exclusive: true, pid: 1)], on: 1)
        let (taken, remainders) = locks.takeOverlapping(process, range(100, 200), on: 1)
        #expect(taken.map(\.range) == [range(0, 300)])
        #expect(remainders.map(\.range) == [range(0, 100), range(200, 300)] && remainders.allSatisfy(\.exclusive))
        #expect(locks.locks(on: 1).isEmpty && locks.isEmpty, "the caller adds back what the share locked again")
    }

    @Test func onlyTheOwnersOwnLocksAreTaken() {
        var locks = ByteRangeLocks()
        locks.add([HeldLock(owner: other, range: range(0, 100), exclusive: false, pid: 2)], on: 1)
        #expect(locks.takeOverlapping(process, range(0, 100), on: 1).taken.isEmpty)
        #expect(locks.locks(on: 1).count == 1)
        #expect(locks.takeOverlapping(LockOwner(id: 8, flock: true), range(0, 100), on: 1).taken.isEmpty,
                "an flock owner is not the POSIX owner of the same number")
    }

    @Test func sharedLocksConflictOnlyWithExclusiveOnes() {
        var locks = ByteRangeLocks()
        locks.add([HeldLock(owner: other, range: range(0, 100), exclusive: false, pid: 2)], on: 1)
        #expect(locks.conflict(with: process, range(50, 60), exclusive: false, on: [1, 2]) == nil)
        #expect(locks.conflict(with: process, range(50, 60), exclusive: true, on: [1, 2])?.pid == 2)
        #expect(locks.conflict(with: process, range(100, 200), exclusive: true, on: [1, 2]) == nil)
        #expect(locks.conflict(with: other, range(0, 100), exclusive: true, on: [1]) == nil, "own locks never conflict")
    }
}
