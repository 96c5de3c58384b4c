import NetUseCore
import Testing

@Suite struct DataBuffersTests {
    @Test func aGivenArrayIsTakenAgainWithoutAnotherAllocation() {
        let buffers = DataBuffers()
        var first = buffers.take(1 << 20)
        #expect(first.count == 1 << 20)
        first[0] = 7
        let storage = first.withUnsafeBufferPointer { $0.baseAddress }
        buffers.give(first)
        first = []
        let again = buffers.take((1 << 20) - 100)
        #expect(again.count == (1 << 20) - 100)
        #expect(again.withUnsafeBufferPointer { $0.baseAddress } == storage)
        let empty = buffers.take(capacity: 1 << 20)
        #expect(empty.isEmpty && empty.capacity >= 1 << 20)
    }

    /// An array someone still holds is copied on its first change, never changed under them.
    @Test func anArrayStillHeldElsewhereIsNotChangedUnderItsHolder() {
        let buffers = DataBuffers()
        let held = [UInt8](repeating: 1, count: 1 << 20)
        buffers.give(held)
        var taken = buffers.take(1 << 20)
        taken.withUnsafeMutableBytes { $0.initializeMemory(as: UInt8.self, repeating: 2) }
        #expect(held.allSatisfy { $0 == 1 })
    }

    @Test func smallArraysAreNotKeptAndTheKeptAreBounded() {
        let buffers = DataBuffers()
        buffers.give([UInt8](repeating: 0, count: 4096))
        #expect(buffers.bytesKept == 0)
        for _ in 0..<40 { buffers.give([UInt8](repeating: 0, count: 1 << 20)) }
        #expect(buffers.bytesKept <= 24 << 20 && buffers.bytesKept > 0)
    }

    /// Kept while arrays are taken; given back at the first look that finds none taken.
    @Test func theKeptGoBackOnceTheFlowStops() {
        let buffers = DataBuffers()
        buffers.give(buffers.take(1 << 20))
        #expect(!buffers.releaseIfIdle())
        #expect(buffers.bytesKept > 0)
        #expect(buffers.releaseIfIdle())
        #expect(buffers.bytesKept == 0)
    }
}
