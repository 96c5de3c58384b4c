import Glibc

/// The compact binary encoding spoken between netused and its SMB workers: little-endian
/// integers and length-prefixed bytes, one length-prefixed frame per message.
public struct WireWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func append(_ other: WireWriter) { bytes += other.bytes }
    public mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    public mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    public mutating func i64(_ value: Int64) { u64(UInt64(bitPattern: value)) }
    public mutating func i32(_ value: Int32) { u32(UInt32(bitPattern: value)) }
    public mutating func string(_ value: String) {
        let utf8 = Array(value.utf8)
        u32(UInt32(utf8.count))
        bytes += utf8
    }
    public mutating func attributes(_ value: stat) {
        u32(value.st_mode)
        u64(UInt64(value.st_nlink))
        u32(value.st_uid)
        u32(value.st_gid)
        i64(Int64(value.st_size))
        u64(UInt64(value.st_ino))
        i64(Int64(value.st_blocks))
        i64(Int64(value.st_blksize))
        for time in [value.st_atim, value.st_mtim, value.st_ctim] { self.time(time) }
    }
    public mutating func time(_ value: timespec) {
        i64(Int64(value.tv_sec))
        i64(Int64(value.tv_nsec))
    }
}

public struct WireReader {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { offset == bytes.count }

    private mutating func take(_ count: Int) throws(Errno) -> ArraySlice<UInt8> {
        guard count >= 0, offset + count <= bytes.count else { throw Errno(EPROTO) }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    public mutating func u8() throws(Errno) -> UInt8 { try take(1).first! }
    public mutating func u32() throws(Errno) -> UInt32 {
        try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
    public mutating func u64() throws(Errno) -> UInt64 {
        try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
    public mutating func i64() throws(Errno) -> Int64 { Int64(bitPattern: try u64()) }
    public mutating func i32() throws(Errno) -> Int32 { Int32(bitPattern: try u32()) }
    public mutating func string() throws(Errno) -> String { String(decoding: try take(Int(try u32())), as: UTF8.self) }
    public mutating func time() throws(Errno) -> timespec { timespec(tv_sec: Int(try i64()), tv_nsec: Int(try i64())) }
    /// What is left of the message: its tail.
    public mutating func rest() -> ArraySlice<UInt8> {
        defer { offset = bytes.count }
        return bytes[offset...]
    }
    public mutating func attributes() throws(Errno) -> stat {
        var value = stat()
        value.st_mode = try u32()
        value.st_nlink = UInt(try u64())
        value.st_uid = try u32()
        value.st_gid = try u32()
        value.st_size = Int(try i64())
        value.st_ino = UInt(try u64())
        value.st_blocks = Int(try i64())
        value.st_blksize = Int(try i64())
        value.st_atim = try time()
        value.st_mtim = try time()
        value.st_ctim = try time()
        return value
    }
}

/// Frames on a stream socket: a 4-byte length, then the payload.
public enum WireFrame {
    /// Larger than any read-ahead or write-behind batch (16 MiB) plus its header.
    public static let maxSize = 20 << 20

    /// One frame: `payload`, then `tail` when there is one (the data of a read or write,
    /// sent from where it lies).
    public static func send(_ fd: Int32, _ payload: [UInt8], tail: UnsafeRawBufferPointer? = nil) throws(Errno) {
        var header = WireWriter()
        header.u32(UInt32(payload.count + (tail?.count ?? 0)))
        try header.bytes.withUnsafeBytes { header in
            payload.withUnsafeBytes { payload in
                Result { () throws(Errno) in
                    try UnixSocket.send(fd, parts: [header, payload, tail ?? UnsafeRawBufferPointer(start: nil, count: 0)])
                }
            }
        }.get()
    }

    /// Waits at most `timeout` milliseconds for each chunk (-1: for ever); ETIMEDOUT past it,
    /// ECONNRESET when the other side is gone.
    public static func receive(_ fd: Int32, timeout: Int32 = -1) throws(Errno) -> [UInt8] {
        let header = try receiveExactly(fd, 4, timeout: timeout)
        var reader = WireReader(header)
        let length = Int(try reader.u32())
        guard length <= maxSize else { throw Errno(EPROTO) }
        return try receiveExactly(fd, length, timeout: timeout)
    }

    private static func receiveExactly(_ fd: Int32, _ count: Int, timeout: Int32) throws(Errno) -> [UInt8] {
        var failure: Errno?
        // Not zeroed first: every byte is received over before anyone reads it.
        let buffer = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var done = 0
            do throws(Errno) {
                while done < count {
                    var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    let ready = try systemCall { poll(&poller, 1, timeout) }
                    if ready == 0 { throw Errno(ETIMEDOUT) }
                    let received = try systemCall { recv(fd, buffer.baseAddress! + done, count - done, 0) }
                    if received == 0 { throw Errno(ECONNRESET) }
                    done += received
                }
            } catch {
                failure = error
                done = 0
            }
            initialized = done
        }
        if let failure { throw failure }
        return buffer
    }
}
