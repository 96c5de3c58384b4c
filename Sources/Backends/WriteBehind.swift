import Glibc
import NetUseCore
import Redirector

/// Writes gathered while the previous batch is on its way to the share, then sent as one:
/// a batch grows with the round trip, and nothing waits while the wire is idle. One courier
/// sends a file's batches, so they reach the share in order. A flush, an fsync
/// or a close waits until all is on the share; the Redirector tells each descriptor of
/// the failures counted here.
struct WriteBehind {
    static let largestBatch = 8 << 20

    private(set) var gathered: [UInt8] = []
    private(set) var offset: off_t = 0
    /// A courier is sending: it takes each gathered batch until none is left.
    private(set) var sending = false
    /// The size of the batch on its way to the share.
    private var inFlight = 0
    var failures = WriteFailures()

    var isIdle: Bool { !sending }
    var held: Int { gathered.count + inFlight }

    /// A write at `position` may join what is gathered: it is contiguous and fits, or
    /// nothing is gathered.
    func accepts(_ count: Int, at position: off_t) -> Bool {
        gathered.isEmpty || (position == offset + off_t(gathered.count) && gathered.count + count <= Self.largestBatch)
    }

    /// Gathers the bytes; true when a courier must be started to send them.
    mutating func gather(_ bytes: UnsafeRawBufferPointer, at position: off_t) -> Bool {
        if gathered.isEmpty {
            offset = position
            // A streaming writer's batch grows to the largest: room for it at once, kept from
            // the last batch, rather than grown and copied.
            gathered = DataBuffers.shared.take(capacity: bytes.count >= 128 << 10 ? Self.largestBatch : max(bytes.count, 1 << 20))
        }
        gathered.append(contentsOf: bytes)
        defer { sending = true }
        return !sending
    }

    /// The next batch to send, or nil when all is sent (the courier stops).
    mutating func takeBatch() -> (offset: off_t, bytes: [UInt8])? {
        guard !gathered.isEmpty else {
            sending = false
            inFlight = 0
            return nil
        }
        defer { gathered = [] }
        inFlight = gathered.count
        return (offset, gathered)
    }
}
