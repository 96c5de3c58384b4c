import Glibc

/// What netused asks an SMB worker to do: the one definition both ends encode and decode.
/// A message is its fields, then, in the same frame, its tail: a write's data, a read's bytes.
public enum WorkerRequest: Sendable, Equatable {
    /// `largestRead`: the most one libsmbclient read may ask for (the server's MaxReadSize).
    case connect(url: String, user: String, password: String, domain: String, timeoutMilliseconds: UInt32, largestRead: UInt32)
    case attributes(path: String)
    case handleAttributes(file: UInt32)
    case open(path: String, flags: Int32, mode: UInt32)
    case read(file: UInt32, offset: Int64, count: UInt32)
    /// The data to write is the tail.
    case write(file: UInt32, offset: Int64)
    case close(file: UInt32)
    case list(path: String)
    case makeDirectory(path: String, mode: UInt32)
    case removeDirectory(path: String)
    case unlink(path: String)
    case rename(from: String, to: String)
    case truncate(path: String, size: Int64)
    case handleTruncate(file: UInt32, size: Int64)
    case setTimes(path: String, access: timespec, modification: timespec)
    case setMode(path: String, mode: UInt32)
    case statistics(path: String)

    private enum Tag: UInt8 {
        case connect = 1, attributes, handleAttributes, open, read, write, close, list
        case makeDirectory, removeDirectory, unlink, rename, truncate, handleTruncate, setTimes, setMode, statistics
    }

    public func encode(into message: inout WireWriter) {
        switch self {
        case let .connect(url, user, password, domain, timeout, largestRead):
            message.u8(Tag.connect.rawValue)
            for field in [url, user, password, domain] { message.string(field) }
            message.u32(timeout)
            message.u32(largestRead)
        case let .attributes(path):
            message.u8(Tag.attributes.rawValue)
            message.string(path)
        case let .handleAttributes(file):
            message.u8(Tag.handleAttributes.rawValue)
            message.u32(file)
        case let .open(path, flags, mode):
            message.u8(Tag.open.rawValue)
            message.string(path)
            message.i32(flags)
            message.u32(mode)
        case let .read(file, offset, count):
            message.u8(Tag.read.rawValue)
            message.u32(file)
            message.i64(offset)
            message.u32(count)
        case let .write(file, offset):
            message.u8(Tag.write.rawValue)
            message.u32(file)
            message.i64(offset)
        case let .close(file):
            message.u8(Tag.close.rawValue)
            message.u32(file)
        case let .list(path):
            message.u8(Tag.list.rawValue)
            message.string(path)
        case let .makeDirectory(path, mode):
            message.u8(Tag.makeDirectory.rawValue)
            message.string(path)
            message.u32(mode)
        case let .removeDirectory(path):
            message.u8(Tag.removeDirectory.rawValue)
            message.string(path)
        case let .unlink(path):
            message.u8(Tag.unlink.rawValue)
            message.string(path)
        case let .rename(from, to):
            message.u8(Tag.rename.rawValue)
            message.string(from)
            message.string(to)
        case let .truncate(path, size):
            message.u8(Tag.truncate.rawValue)
            message.string(path)
            message.i64(size)
        case let .handleTruncate(file, size):
            message.u8(Tag.handleTruncate.rawValue)
            message.u32(file)
            message.i64(size)
        case let .setTimes(path, access, modification):
            message.u8(Tag.setTimes.rawValue)
            message.string(path)
            message.time(access)
            message.time(modification)
        case let .setMode(path, mode):
            message.u8(Tag.setMode.rawValue)
            message.string(path)
            message.u32(mode)
        case let .statistics(path):
            message.u8(Tag.statistics.rawValue)
            message.string(path)
        }
    }

    /// Leaves `message` at the tail.
    public static func decode(_ message: inout WireReader) throws(Errno) -> WorkerRequest {
        guard let tag = Tag(rawValue: try message.u8()) else { throw Errno(ENOSYS) }
        switch tag {
        case .connect:
            return .connect(url: try message.string(), user: try message.string(), password: try message.string(),
                            domain: try message.string(), timeoutMilliseconds: try message.u32(), largestRead: try message.u32())
        case .attributes: return .attributes(path: try message.string())
        case .handleAttributes: return .handleAttributes(file: try message.u32())
        case .open: return .open(path: try message.string(), flags: try message.i32(), mode: try message.u32())
        case .read: return .read(file: try message.u32(), offset: try message.i64(), count: try message.u32())
        case .write: return .write(file: try message.u32(), offset: try message.i64())
        case .close: return .close(file: try message.u32())
        case .list: return .list(path: try message.string())
        case .makeDirectory: return .makeDirectory(path: try message.string(), mode: try message.u32())
        case .removeDirectory: return .removeDirectory(path: try message.string())
        case .unlink: return .unlink(path: try message.string())
        case .rename: return .rename(from: try message.string(), to: try message.string())
        case .truncate: return .truncate(path: try message.string(), size: try message.i64())
        case .handleTruncate: return .handleTruncate(file: try message.u32(), size: try message.i64())
        case .setTimes: return .setTimes(path: try message.string(), access: try message.time(), modification: try message.time())
        case .setMode: return .setMode(path: try message.string(), mode: try message.u32())
        case .statistics: return .statistics(path: try message.string())
        }
    }

    public static func == (lhs: WorkerRequest, rhs: WorkerRequest) -> Bool {
        var left = WireWriter(), right = WireWriter()
        lhs.encode(into: &left)
        rhs.encode(into: &right)
        return left.bytes == right.bytes
    }
}

/// A worker's answer to one request.
public enum WorkerReply: Sendable {
    /// The errno of what failed.
    case failed(Errno)
    case done
    case opened(file: UInt32)
    case written(count: UInt32)
    /// A read's bytes are the tail, sent from where they lie.
    case read
    case attributes(stat)
    case listing([Entry])
    case statistics(statvfs)

    public struct Entry: Sendable {
        public let name: String
        public let attributes: stat

        public init(name: String, attributes: stat) {
            self.name = name
            self.attributes = attributes
        }
    }

    private enum Tag: UInt8 {
        case done = 1, opened, written, read, attributes, listing, statistics
    }

    public func encode(into message: inout WireWriter) {
        if case .failed(let error) = self { return message.i32(error.rawValue) }
        message.i32(0)
        switch self {
        case .failed:
            break
        case .done:
            message.u8(Tag.done.rawValue)
        case let .opened(file):
            message.u8(Tag.opened.rawValue)
            message.u32(file)
        case let .written(count):
            message.u8(Tag.written.rawValue)
            message.u32(count)
        case .read:
            message.u8(Tag.read.rawValue)
        case let .attributes(attributes):
            message.u8(Tag.attributes.rawValue)
            message.attributes(attributes)
        case let .listing(entries):
            message.u8(Tag.listing.rawValue)
            message.u32(UInt32(entries.count))
            for entry in entries {
                message.string(entry.name)
                message.attributes(entry.attributes)
            }
        case let .statistics(value):
            message.u8(Tag.statistics.rawValue)
            for field in [value.f_bsize, value.f_frsize, value.f_blocks, value.f_bfree, value.f_bavail,
                          value.f_files, value.f_ffree, value.f_namemax] {
                message.u64(UInt64(field))
            }
        }
    }

    /// Leaves `message` at the tail.
    public static func decode(_ message: inout WireReader) throws(Errno) -> WorkerReply {
        let status = try message.i32()
        guard status == 0 else { return .failed(Errno(status)) }
        guard let tag = Tag(rawValue: try message.u8()) else { throw Errno(EPROTO) }
        switch tag {
        case .done: return .done
        case .opened: return .opened(file: try message.u32())
        case .written: return .written(count: try message.u32())
        case .read: return .read
        case .attributes: return .attributes(try message.attributes())
        case .listing:
            let count = try message.u32()
            var entries: [Entry] = []
            for _ in 0..<count { entries.append(Entry(name: try message.string(), attributes: try message.attributes())) }
            return .listing(entries)
        case .statistics:
            var value = statvfs()
            value.f_bsize = UInt(try message.u64())
            value.f_frsize = UInt(try message.u64())
            value.f_blocks = UInt(try message.u64())
            value.f_bfree = UInt(try message.u64())
            value.f_bavail = UInt(try message.u64())
            value.f_files = UInt(try message.u64())
            value.f_ffree = UInt(try message.u64())
            value.f_namemax = UInt(try message.u64())
            return .statistics(value)
        }
    }

    // What the caller expected; anything else is a worker that does not speak this protocol.

    public func opened() throws(Errno) -> UInt32 {
        guard case .opened(let file) = self else { throw Errno(EPROTO) }
        return file
    }

    public func written() throws(Errno) -> Int {
        guard case .written(let count) = self else { throw Errno(EPROTO) }
        return Int(count)
    }

    public func attributes() throws(Errno) -> stat {
        guard case .attributes(let attributes) = self else { throw Errno(EPROTO) }
        return attributes
    }

    public func listing() throws(Errno) -> [Entry] {
        guard case .listing(let entries) = self else { throw Errno(EPROTO) }
        return entries
    }

    public func statistics() throws(Errno) -> statvfs {
        guard case .statistics(let value) = self else { throw Errno(EPROTO) }
        return value
    }
}
