import Glibc
import NetUseCore
import Testing

@Suite struct WireTests {
    @Test func valuesRoundTrip() throws {
        var writer = WireWriter()
        writer.u8(7)
        writer.u32(0xDEAD_BEEF)
        writer.i64(-42)
        writer.i32(-1)
        writer.string("naïve/ü file")
        [UInt8]([1, 2, 3]).withUnsafeBytes { writer.data($0) }
        var attributes = stat()
        attributes.st_mode = S_IFREG | 0o644
        attributes.st_size = 1 << 40
        attributes.st_ino = 99
        attributes.st_mtim = timespec(tv_sec: 1_700_000_000, tv_nsec: 123_456_789)
        writer.attributes(attributes)
        var reader = WireReader(writer.bytes)
        #expect(try reader.u8() == 7)
        #expect(try reader.u32() == 0xDEAD_BEEF)
        #expect(try reader.i64() == -42)
        #expect(try reader.i32() == -1)
        #expect(try reader.string() == "naïve/ü file")
        #expect(Array(try reader.data()) == [1, 2, 3])
        let decoded = try reader.attributes()
        #expect(decoded.st_mode == attributes.st_mode && decoded.st_size == attributes.st_size && decoded.st_ino == 99)
        #expect(decoded.st_mtim.tv_sec == 1_700_000_000 && decoded.st_mtim.tv_nsec == 123_456_789)
        #expect(reader.isAtEnd)
    }

    @Test func aShortMessageIsAProtocolError() {
        var writer = WireWriter()
        writer.u32(100)  // claims 100 bytes follow
        var reader = WireReader(writer.bytes)
        #expect(throws: Errno(EPROTO)) { try reader.data() }
        var empty = WireReader([])
        #expect(throws: Errno(EPROTO)) { try empty.u32() }
    }

    @Test func framesCrossASocket() throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[1]) }
        let payload = [UInt8](repeating: 0xAB, count: 1 << 20)
        let sending = pair[0]
        let sender = SystemThread { try? WireFrame.send(sending, payload) }
        #expect(try WireFrame.receive(pair[1], timeout: 5000) == payload)
        sender.join()
        #expect(throws: Errno(ETIMEDOUT)) { try WireFrame.receive(pair[1], timeout: 50) }
        close(pair[0])
        #expect(throws: Errno(ECONNRESET)) { try WireFrame.receive(pair[1], timeout: 1000) }
    }
}
