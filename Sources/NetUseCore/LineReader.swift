import Glibc

/// Splits a stream into newline-terminated lines without ever holding more than `limit`
/// bytes of one: a longer line is reported once, then skipped up to its newline.
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

    public mutating func next() throws(Errno) -> Next {
        while true {
            if let newline = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                scanned = 0
                if discarding {
                    discarding = false
                    continue
                }
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
            let count = try systemCall { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            if count == 0 {
                if buffer.isEmpty || discarding { return .end }
                let rest = buffer
                buffer.removeAll()
                scanned = 0
                return .line(rest)
            }
            buffer.append(contentsOf: chunk[..<count])
        }
    }
}
