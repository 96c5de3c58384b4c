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
        let decoded = try reader.attributes()
        #expect(decoded.st_mode == attributes.st_mode && decoded.st_size == attributes.st_size && decoded.st_ino == 99)
        #expect(decoded.st_mtim.tv_sec == 1_700_000_000 && decoded.st_mtim.tv_nsec == 123_456_789)
        #expect(reader.isAtEnd)
    }

    @Test func aShortMessageIsAProtocolError() {
        var writer = WireWriter()
        writer.u32(100)  // claims 100 bytes follow
        var reader = WireReader(writer.bytes)
        #expect(throws: Errno(EPROTO)) { try reader.string() }
        var empty = WireReader([])
        #expect(throws: Errno(EPROTO)) { try empty.u32() }
    }

    @Test func everyWorkerRequestRoundTrips() throws {
        let requests: [WorkerRequest] = [
            .connect(url: "smb://h/s", user: "u", password: "p", domain: "d", timeoutMilliseconds: 30_000, largestRead: 65_536),
            .attributes(path: "a/b"), .handleAttributes(file: 7), .open(path: "f", flags: O_RDWR | O_CREAT, mode: 0o640),
            .read(file: 3, offset: 1 << 40, count: 65_536), .write(file: 3, offset: 12), .close(file: 3), .list(path: ""),
            .makeDirectory(path: "d", mode: 0o755), .removeDirectory(path: "d"), .unlink(path: "f"),
            .rename(from: "x", to: "y"), .truncate(path: "f", size: 9), .handleTruncate(file: 4, size: 0),
            .setTimes(path: "f", access: timespec(tv_sec: 1, tv_nsec: 2), modification: timespec(tv_sec: 3, tv_nsec: 4)),
            .setMode(path: "f", mode: 0o600), .statistics(path: ""),
        ]
        for request in requests {
            var writer = WireWriter()
            request.encode(into: &writer)
            writer.u8(0xEE)  // a tail
            var reader = WireReader(writer.bytes)
            #expect(try WorkerRequest.decode(&reader) == request)
            #expect(Array(reader.rest()) == [0xEE])
        }
        var unknown = WireReader([200])
        #expect(throws: Errno(ENOSYS)) { try WorkerRequest.decode(&unknown) }
    }

    @Test func workerRepliesRoundTrip() throws {
        func roundTrip(_ reply: WorkerReply) throws -> WorkerReply {
            var writer = WireWriter()
            reply.encode(into: &writer)
            var reader = WireReader(writer.bytes)
            defer { #expect(reader.isAtEnd) }
            return try WorkerReply.decode(&reader)
        }
        guard case .failed(let error) = try roundTrip(.failed(Errno(EACCES))) else { Issue.record("not a failure"); return }
        #expect(error == Errno(EACCES))
        #expect(try roundTrip(.opened(file: 5)).opened() == 5)
        #expect(try roundTrip(.written(count: 4096)).written() == 4096)
        var attributes = stat()
        attributes.st_size = 77
        let entries = try roundTrip(.listing([.init(name: "ü", attributes: attributes)])).listing()
        #expect(entries.map(\.name) == ["ü"] && entries[0].attributes.st_size == 77)
        var statistics = statvfs()
        statistics.f_namemax = 255
        #expect(try roundTrip(.statistics(statistics)).statistics().f_namemax == 255)
        #expect(throws: Errno(EPROTO)) { try roundTrip(.done).attributes() }
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
