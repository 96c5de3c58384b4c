import Glibc

/// Splits a stream into newline-terminated lines without ever holding more than `limit`
/// bytes of one: a longer line is reported once, then skipped up to its newline, however
/// its bytes arrive.
public struct LineReader {
    public enum Next: Equatable {
        case line([UInt8])
        case tooLong
        case end
    }

    private let fd: Int32
    private let limit: Int
    private var buffer: [UInt8] = []
    private var scanned = 0
    private var discarding = false
    private var chunk = [UInt8](repeating: 0, count: 64 * 1024)

    public init(fd: Int32, limit: Int) {
        self.fd = fd
        self.limit = limit
    }

    /// The next line. With `within`, the whole line must arrive in that time (ETIMEDOUT
    /// otherwise): a client that trickles bytes gains nothing by it.
    public mutating func next(within timeout: Duration? = nil) throws(Errno) -> Next {
        let deadline = timeout.map { MonotonicClock.now() + $0 }
        while true {
            if let newline = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                scanned = 0
                if discarding {
                    discarding = false
                    continue
                }
                if line.count > limit { return .tooLong }
                return .line(line)
            }
            scanned = buffer.count
            if discarding {
                buffer.removeAll(keepingCapacity: true)
                scanned = 0
            } else if buffer.count > limit {
                buffer.removeAll(keepingCapacity: true)
                scanned = 0
                discarding = true
                return .tooLong
            }
            if let deadline { try wait(until: deadline) }
            let count = try systemCall { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            if count == 0 {
                if buffer.isEmpty || discarding { return .end }
                if buffer.count > limit {
                    buffer.removeAll()
                    return .tooLong
                }
                let rest = buffer
                buffer.removeAll()
                scanned = 0
                return .line(rest)
            }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    private func wait(until deadline: Duration) throws(Errno) {
        while true {
            let left = deadline - MonotonicClock.now()
            guard left > .zero else { throw Errno(ETIMEDOUT) }
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: left.milliseconds + 1)
            let count = poll(&ready, 1, milliseconds)
            if count > 0 { return }
            if count < 0 && errno != EINTR { throw Errno.current }
        }
    }
}
