import Glibc
import NetUseCore
import Testing

@Suite struct LineReaderTests {
    /// Feeds `input` through a pipe and collects what the reader makes of it.
    private func read(_ input: [UInt8], limit: Int) throws -> [LineReader.Next] {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let writer = fds[1]
        let thread = SystemThread {
            input.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let count = write(writer, raw.baseAddress! + offset, min(4096, raw.count - offset))
                    if count <= 0 { break }
                    offset += count
                }
            }
            close(writer)
        }
        defer { close(fds[0]) }
        var reader = LineReader(fd: fds[0], limit: limit)
        var results: [LineReader.Next] = []
        while true {
            let next = try reader.next()
            results.append(next)
            if next == .end { break }
        }
        thread.join()
        return results
    }

    @Test func splitsLines() throws {
        #expect(try read(Array("a\nbc\n\nd".utf8), limit: 100)
                == [.line(Array("a".utf8)), .line(Array("bc".utf8)), .line([]), .line(Array("d".utf8)), .end])
    }

    @Test func reportsALongLineOnceAndGoesOn() throws {
        let long = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
        #expect(try read(long + Array("\nok\n".utf8), limit: 64 * 1024) == [.tooLong, .line(Array("ok".utf8)), .end])
    }

    @Test func aLineOfExactlyTheLimitIsALine() throws {
        let line = [UInt8](repeating: UInt8(ascii: "y"), count: 1000)
        #expect(try read(line + [UInt8(ascii: "\n")], limit: 1000) == [.line(line), .end])
    }

    @Test func anUnendedLongLineEnds() throws {
        #expect(try read([UInt8](repeating: 1, count: 300_000), limit: 1000) == [.tooLong, .end])
    }

    /// A line just over the limit whose newline arrives in the same chunk is still too long.
    @Test func aLineOverTheLimitInOneChunkIsTooLong() throws {
        let line = [UInt8](repeating: UInt8(ascii: "z"), count: 1001)
        #expect(try read(line + Array("\nok\n".utf8), limit: 1000) == [.tooLong, .line(Array("ok".utf8)), .end])
    }

    /// A client that trickles bytes gains no time by it: the whole line has its deadline.
    @Test func aLineMustArriveWithinItsDeadline() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let writer = fds[1]
        let thread = SystemThread {
            for _ in 0..<6 {
                _ = write(writer, "x", 1)
                usleep(50_000)
            }
        }
        var reader = LineReader(fd: fds[0], limit: 1000)
        #expect(throws: Errno(ETIMEDOUT)) { try reader.next(within: .milliseconds(150)) }
        thread.join()
    }
}
