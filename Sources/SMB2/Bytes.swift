import Glibc
import NetUseCore

/// Little-endian encoding as SMB2 and NTLMSSP lay out their structures; offsets in them
/// count from the start of the message, so a writer is one message.
struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 128) { bytes.reserveCapacity(capacity) }

    /// Appends to `bytes`'s storage, emptied (a kept buffer: see DataBuffers).
    init(reusing bytes: [UInt8]) {
        self.bytes = bytes
        self.bytes.removeAll(keepingCapacity: true)
    }

    var count: Int { bytes.count }

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) { bytes.append(UInt8(truncatingIfNeeded: value)); bytes.append(UInt8(truncatingIfNeeded: value >> 8)) }
    mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func append<C: Collection>(_ data: C) where C.Element == UInt8 { bytes += data }
    mutating func zeros(_ count: Int) { bytes += repeatElement(0, count: count) }
    mutating func align(_ boundary: Int) { zeros((boundary - bytes.count % boundary) % boundary) }

    mutating func set16(_ value: UInt16, at offset: Int) {
        bytes[offset] = UInt8(truncatingIfNeeded: value)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
    }

    mutating func set32(_ value: UInt32, at offset: Int) {
        for index in 0..<4 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }
}

/// Reads a received message; every bound is checked, since the bytes are the server's.
struct ByteReader {
    let bytes: [UInt8]
    /// Where the message starts in `bytes` (a compound reply holds several).
    let base: Int
    var offset: Int

    init(_ bytes: [UInt8], base: Int = 0) {
        self.bytes = bytes
        self.base = base
        self.offset = base
    }

    func check(_ start: Int, _ count: Int) throws(Errno) {
        guard start >= 0, count >= 0, start + count <= bytes.count else { throw Errno(EPROTO) }
    }

    mutating func skip(_ count: Int) throws(Errno) {
        try check(offset, count)
        offset += count
    }

    mutating func u8() throws(Errno) -> UInt8 {
        try check(offset, 1)
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() throws(Errno) -> UInt16 {
        try check(offset, 2)
        defer { offset += 2 }
        return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    mutating func u32() throws(Errno) -> UInt32 {
        try check(offset, 4)
        defer { offset += 4 }
        var value: UInt32 = 0
        for index in (0..<4).reversed() { value = value << 8 | UInt32(bytes[offset + index]) }
        return value
    }

    mutating func u64() throws(Errno) -> UInt64 {
        let low = UInt64(try u32())
        return UInt64(try u32()) << 32 | low
    }

    mutating func take(_ count: Int) throws(Errno) -> ArraySlice<UInt8> {
        try check(offset, count)
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    /// Bytes at an offset counted from the message's start (SMB2's BufferOffset fields).
    func at(_ offset: Int, _ count: Int) throws(Errno) -> ArraySlice<UInt8> {
        try check(base + offset, count)
        return bytes[(base + offset)..<(base + offset + count)]
    }
}

extension String {
    /// SMB2 names are UTF-16LE without a terminator; `/` becomes `\`.
    var smb2Name: [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(utf16.count * 2)
        for unit in utf16 {
            let value = unit == 0x2F ? 0x5C : unit
            result.append(UInt8(truncatingIfNeeded: value))
            result.append(UInt8(truncatingIfNeeded: value >> 8))
        }
        return result
    }

    init(utf16LE bytes: ArraySlice<UInt8>) {
        var units: [UInt16] = []
        units.reserveCapacity(bytes.count / 2)
        var index = bytes.startIndex
        while index + 1 < bytes.endIndex {
            units.append(UInt16(bytes[index]) | UInt16(bytes[index + 1]) << 8)
            index += 2
        }
        self = String(decoding: units, as: UTF16.self)
    }
}
