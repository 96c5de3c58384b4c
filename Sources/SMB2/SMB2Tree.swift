import Glibc
import NetUseCore

/// An open on the server (MS-SMB2 2.2.14.1).
public struct SMB2FileId: Hashable, Sendable {
    public let persistent: UInt64
    public let volatile: UInt64

    /// In a compound, "the file the request before opened".
    static let related = SMB2FileId(persistent: .max, volatile: .max)

    func write(to body: inout ByteWriter) {
        body.u64(persistent)
        body.u64(volatile)
    }
}

/// What SMB2 says of a file: enough for a stat.
public struct SMB2FileInfo: Sendable {
    public var creationTime: UInt64 = 0
    public var accessTime: UInt64 = 0
    public var writeTime: UInt64 = 0
    public var changeTime: UInt64 = 0
    public var attributes: UInt32 = 0
    public var size: UInt64 = 0
    public var allocation: UInt64 = 0
    public var links: UInt32 = 1
    public var index: UInt64 = 0

    public var isDirectory: Bool { attributes & SMB2Attributes.directory != 0 }

    /// The four FILETIMEs every SMB2 file information structure starts its times with.
    mutating func readTimes(_ reader: inout ByteReader) throws(Errno) {
        creationTime = try reader.u64()
        accessTime = try reader.u64()
        writeTime = try reader.u64()
        changeTime = try reader.u64()
    }
}

public enum SMB2Attributes {
    public static let readOnly: UInt32 = 0x1
    public static let hidden: UInt32 = 0x2
    public static let system: UInt32 = 0x4
    public static let directory: UInt32 = 0x10
    public static let archive: UInt32 = 0x20
    public static let normal: UInt32 = 0x80
}

public enum SMB2Access {
    public static let readData: UInt32 = 0x1
    public static let writeData: UInt32 = 0x2
    public static let appendData: UInt32 = 0x4
    public static let readEA: UInt32 = 0x8
    public static let writeEA: UInt32 = 0x10
    public static let readAttributes: UInt32 = 0x80
    public static let writeAttributes: UInt32 = 0x100
    public static let delete: UInt32 = 0x10000
    public static let readControl: UInt32 = 0x20000
    public static let synchronize: UInt32 = 0x100000
}

public enum SMB2Disposition: UInt32, Sendable {
    case supersede = 0, open, create, openIf, overwrite, overwriteIf
}

public struct SMB2CreateOptions: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let directory = SMB2CreateOptions(rawValue: 0x1)
    public static let nonDirectory = SMB2CreateOptions(rawValue: 0x40)
    public static let deleteOnClose = SMB2CreateOptions(rawValue: 0x1000)
}

/// A connected share: the requests that act on its files. Every call may run on any thread,
/// and many at once: each is a request (or a compound) in flight on the session's connection.
public final class SMB2Tree: Sendable {
    public let session: SMB2Session
    let treeId: UInt32

    init(session: SMB2Session, treeId: UInt32) {
        self.session = session
        self.treeId = treeId
    }

    var connection: SMB2Connection { session.connection }
    public var maxRead: Int { fitted(session.maxRead) }
    public var maxWrite: Int { fitted(session.maxWrite) }

    /// At most 8 MiB, the server's limit, and what the credits granted so far can pay for.
    func fitted(_ limit: Int) -> Int {
        max(65_536, min(limit, 8 << 20, connection.creditWindow * 65_536))
    }

    func request(_ command: SMB2Command, _ body: ByteWriter, payload: Int = 0, related: Bool = false) -> SMB2Request {
        var request = SMB2Request(command, body, payload: payload, treeId: treeId)
        request.related = related
        // Without large MTU (2.0.2) a request costs no more than one credit.
        if session.dialect == 0x202 { request.creditCharge = 1 }
        return request
    }

    /// Sent, not awaited: a hung server does not hold up the drive's delete.
    public func disconnect() {
        var body = ByteWriter()
        body.u16(4)
        body.u16(0)
        connection.post(request(.treeDisconnect, body))
    }

    // MARK: requests, as bodies

    func createBody(_ path: String, access: UInt32, disposition: SMB2Disposition, options: SMB2CreateOptions,
                    attributes: UInt32 = 0, lease: SMB2LeaseRequest? = nil,
                    extra: [(name: String, data: [UInt8])] = []) -> ByteWriter {
        let name = path.smb2Name
        var body = ByteWriter(capacity: 56 + name.count + 8 + (lease == nil ? 0 : 80))
        body.u16(57)
        body.u8(0)
        // A server without leases grants a batch oplock, which lets a close wait as a lease's H does.
        body.u8(lease == nil ? SMB2Oplock.none : session.leases ? SMB2Oplock.lease : SMB2Oplock.batch)
        body.u32(2)  // impersonation
        body.u64(0)
        body.u64(0)
        body.u32(access | SMB2Access.readAttributes | SMB2Access.synchronize)
        body.u32(attributes)
        // Read and write are shared, as a Linux file is; delete too, but for an open that
        // holds a lease: another client's delete or rename then meets a sharing violation,
        // which makes the server break the lease's H, so that a deferred handle is closed
        // before the delete goes on (Samba breaks no H for a delete that does not conflict).
        body.u32(lease == nil ? 0x7 : 0x3)
        body.u32(disposition.rawValue)
        body.u32(options.rawValue)
        body.u16(64 + 56)
        body.u16(UInt16(name.count))
        let contextsField = body.count
        body.u32(0)
        body.u32(0)
        body.append(name)
        if name.isEmpty { body.u8(0) }
        let contexts = (lease != nil && session.leases ? [leaseContext(lease!)] : []) + extra
        if !contexts.isEmpty {
            body.align(8)
            let encoded = SMB2CreateContexts.encode(contexts)
            body.set32(UInt32(64 + body.count), at: contextsField)
            body.set32(UInt32(encoded.count), at: contextsField + 4)
            body.append(encoded)
        }
        return body
    }

    func closeBody(_ file: SMB2FileId, postQuery: Bool = false) -> ByteWriter {
        var body = ByteWriter()
        body.u16(24)
        body.u16(postQuery ? 1 : 0)
        body.u32(0)
        file.write(to: &body)
        return body
    }

    func queryInfoBody(_ file: SMB2FileId, type: UInt8, infoClass: UInt8, length: Int) -> ByteWriter {
        var body = ByteWriter()
        body.u16(41)
        body.u8(type)
        body.u8(infoClass)
        body.u32(UInt32(length))
        body.u16(0)
        body.u16(0)
        body.u32(0)
        body.u32(0)
        body.u32(0)
        file.write(to: &body)
        body.u8(0)
        return body
    }

    func setInfoBody(_ file: SMB2FileId, infoClass: UInt8, _ buffer: [UInt8]) -> ByteWriter {
        var body = ByteWriter()
        body.u16(33)
        body.u8(1)
        body.u8(infoClass)
        body.u32(UInt32(buffer.count))
        body.u16(64 + 32)
        body.u16(0)
        body.u32(0)
        file.write(to: &body)
        body.append(buffer)
        return body
    }

    // MARK: opens

    /// Opens (or creates) a file; its attributes come with the answer.
    public func create(_ path: String, access: UInt32, disposition: SMB2Disposition, options: SMB2CreateOptions = [],
                       attributes: UInt32 = 0) throws(Errno) -> (SMB2FileId, SMB2FileInfo) {
        let reply = try connection.send(request(.create, createBody(path, access: access, disposition: disposition,
                                                                    options: options, attributes: attributes)))
        try reply.check()
        return try Self.created(reply)
    }

    /// Opens (or creates) a file asking for a lease, and in the same round trip asks for all
    /// it says of the file (CREATE+QUERY_INFO) and, for a reader, its first `readLength` bytes
    /// (+READ): what the open's caller asks next. The bytes are nil when not asked for or the
    /// read failed; fewer than asked means the file ends there.
    public func open(_ path: String, access: UInt32, disposition: SMB2Disposition, options: SMB2CreateOptions = [],
                     lease: SMB2LeaseRequest?, durable: SMB2Durable? = nil, readLength: Int? = nil) throws(Errno)
        -> (file: SMB2FileId, info: SMB2FileInfo, caching: HandleCaching, head: [UInt8]?, durable: Bool)
    {
        // Durable handles are SMB 3's (version 2), and only with a lease that keeps the handle.
        let asksDurable = durable != nil && session.dialect >= 0x300 && lease?.caching.contains(.handle) == true
        var requests = [request(.create, createBody(path, access: access, disposition: disposition, options: options, lease: lease,
                                                    extra: asksDurable ? [durable!.request] : [])),
                        allInformationQuery]
        if let readLength {
            requests.append(request(.read, readBody(.related, length: readLength, at: 0), payload: readLength, related: true))
        }
        let replies = try connection.send(requests)
        try replies[0].check()
        let (file, _) = try Self.created(replies[0])
        let caching = lease == nil ? [] : Self.grantedCaching(replies[0])
        let isDurable = asksDurable && SMB2CreateContexts.decode(replies[0])["DH2Q"] != nil
        let info: SMB2FileInfo
        do {
            if replies[1].status != .bufferOverflow { try replies[1].check() }
            info = try Self.allInformation(replies[1])
        } catch {
            _ = try? close(file)
            throw error
        }
        guard let readLength else { return (file, info, caching, nil, isDurable) }
        if replies[2].status == .endOfFile { return (file, info, caching, [], isDurable) }
        return (file, info, caching, (try? Self.readData(replies[2], asked: readLength)).map(Array.init), isDurable)
    }

    /// Gets a durable open back after a lost connection, with its lease: the same file id.
    public func reconnect(_ path: String, file: SMB2FileId, durable: SMB2Durable, lease: SMB2LeaseRequest?) throws(Errno)
        -> (SMB2FileId, HandleCaching)
    {
        let reply = try connection.send(request(.create, createBody(path, access: 0, disposition: .open, options: [], lease: lease,
                                                                    extra: [durable.reconnect(file)])))
        try reply.check()
        let (reopened, _) = try Self.created(reply)
        return (reopened, lease == nil ? [] : Self.grantedCaching(reply))
    }

    static func created(_ reply: SMB2Reply) throws(Errno) -> (SMB2FileId, SMB2FileInfo) {
        var body = reply.body
        try body.skip(8)
        var info = SMB2FileInfo()
        try info.readTimes(&body)
        info.allocation = try body.u64()
        info.size = try body.u64()
        info.attributes = try body.u32()
        try body.skip(4)
        let file = SMB2FileId(persistent: try body.u64(), volatile: try body.u64())
        return (file, info)
    }

    public func close(_ file: SMB2FileId) throws(Errno) {
        try connection.send(request(.close, closeBody(file))).check()
    }

    /// A path operation in one round trip: CREATE, what acts on the file, CLOSE.
    func compound(_ path: String, access: UInt32, disposition: SMB2Disposition = .open, options: SMB2CreateOptions = [],
                  attributes: UInt32 = 0, _ middle: [SMB2Request]) throws(Errno) -> [SMB2Reply] {
        var requests = [request(.create, createBody(path, access: access, disposition: disposition, options: options,
                                                    attributes: attributes))]
        requests += middle
        requests.append(request(.close, closeBody(.related), related: true))
        let replies = try connection.send(requests)
        try replies[0].check()
        for reply in replies.dropFirst() { try reply.check() }
        return replies
    }

    // MARK: attributes

    static let fileAllInformation: UInt8 = 18

    public func info(of path: String) throws(Errno) -> SMB2FileInfo {
        try Self.allInformation(try compound(path, access: 0, [allInformationQuery])[1])
    }

    private var allInformationQuery: SMB2Request {
        request(.queryInfo, queryInfoBody(.related, type: 1, infoClass: Self.fileAllInformation, length: 4096), related: true)
    }

    public func info(of file: SMB2FileId) throws(Errno) -> SMB2FileInfo {
        let reply = try connection.send(request(.queryInfo, queryInfoBody(file, type: 1, infoClass: Self.fileAllInformation, length: 4096)))
        // A name longer than the buffer is a warning with the fixed part intact.
        if reply.status != .bufferOverflow { try reply.check() }
        return try Self.allInformation(reply)
    }

    static func allInformation(_ reply: SMB2Reply) throws(Errno) -> SMB2FileInfo {
        var body = reply.body
        try body.skip(2)
        let offset = Int(try body.u16())
        let length = Int(try body.u32())
        guard length >= 72 else { throw Errno(EPROTO) }
        var all = ByteReader(Array(try reply.body.at(offset, length)))
        var info = SMB2FileInfo()
        try info.readTimes(&all)
        info.attributes = try all.u32()
        try all.skip(4)
        info.allocation = try all.u64()
        info.size = try all.u64()
        info.links = try all.u32()
        try all.skip(4)
        info.index = try all.u64()
        return info
    }

    /// FileFsFullSizeInformation: total, available to the caller, sectors per unit, bytes per sector.
    public func volumeSize() throws(Errno) -> (total: UInt64, available: UInt64, free: UInt64, unit: UInt64) {
        let query = request(.queryInfo, queryInfoBody(.related, type: 2, infoClass: 7, length: 32), related: true)
        let replies = try compound("", access: 0, options: .directory, [query])
        var body = replies[1].body
        try body.skip(2)
        let offset = Int(try body.u16())
        var info = ByteReader(Array(try replies[1].body.at(offset, 32)))
        let total = try info.u64()
        let available = try info.u64()
        let free = try info.u64()
        let sectors = UInt64(try info.u32())
        let bytes = UInt64(try info.u32())
        return (total, available, free, max(1, sectors * bytes))
    }

    // MARK: changes by path

    func setInfo(_ path: String, access: UInt32, infoClass: UInt8, _ buffer: [UInt8]) throws(Errno) {
        _ = try compound(path, access: access, [request(.setInfo, setInfoBody(.related, infoClass: infoClass, buffer), related: true)])
    }

    func setInfo(_ file: SMB2FileId, infoClass: UInt8, _ buffer: [UInt8]) throws(Errno) {
        try connection.send(request(.setInfo, setInfoBody(file, infoClass: infoClass, buffer))).check()
    }

    /// FileEndOfFileInformation: truncates or extends.
    public func setEndOfFile(_ file: SMB2FileId, _ size: UInt64) throws(Errno) {
        var buffer = ByteWriter()
        buffer.u64(size)
        try setInfo(file, infoClass: 20, buffer.bytes)
    }

    public func setEndOfFile(_ path: String, _ size: UInt64) throws(Errno) {
        var buffer = ByteWriter()
        buffer.u64(size)
        try setInfo(path, access: SMB2Access.writeData, infoClass: 20, buffer.bytes)
    }

    /// FileBasicInformation: a time or the attributes of 0 stay as they are.
    public func setBasic(_ path: String, accessTime: UInt64, writeTime: UInt64, attributes: UInt32) throws(Errno) {
        var buffer = ByteWriter()
        buffer.u64(0)
        buffer.u64(accessTime)
        buffer.u64(writeTime)
        buffer.u64(0)
        buffer.u32(attributes)
        buffer.u32(0)
        try setInfo(path, access: SMB2Access.writeAttributes, infoClass: 4, buffer.bytes)
    }

    public func makeDirectory(_ path: String) throws(Errno) {
        _ = try compound(path, access: 0, disposition: .create, options: .directory, [])
    }

    /// Deletes a file or an empty directory: FileDispositionInformation between open and close,
    /// which (unlike DELETE_ON_CLOSE) answers DIRECTORY_NOT_EMPTY.
    public func remove(_ path: String, directory: Bool) throws(Errno) {
        let disposition = request(.setInfo, setInfoBody(.related, infoClass: 13, [1]), related: true)
        _ = try compound(path, access: SMB2Access.delete, options: directory ? .directory : .nonDirectory, [disposition])
    }

    /// FileRenameInformation (SMB2 form): the target is a path from the share's top.
    public func rename(_ from: String, to: String, replace: Bool) throws(Errno) {
        let name = to.smb2Name
        var buffer = ByteWriter()
        buffer.u8(replace ? 1 : 0)
        buffer.zeros(7)
        buffer.u64(0)
        buffer.u32(UInt32(name.count))
        buffer.append(name)
        try setInfo(from, access: SMB2Access.delete, infoClass: 10, buffer.bytes)
    }

    // MARK: data

    func readBody(_ file: SMB2FileId, length: Int, at offset: UInt64) -> ByteWriter {
        var body = ByteWriter()
        body.u16(49)
        body.u8(0x50)
        body.u8(0)
        body.u32(UInt32(length))
        body.u64(offset)
        file.write(to: &body)
        body.u32(0)
        body.u32(0)
        body.u32(0)
        body.u16(0)
        body.u16(0)
        body.u8(0)
        return body
    }

    static func readData(_ reply: SMB2Reply, asked length: Int) throws(Errno) -> ArraySlice<UInt8> {
        try reply.check()
        var answer = reply.body
        try answer.skip(2)
        let dataOffset = Int(try answer.u8())
        try answer.skip(1)
        let count = Int(try answer.u32())
        guard count <= length else { throw Errno(EPROTO) }
        return try reply.body.at(dataOffset, count)
    }

    /// Reads up to `buffer.count` bytes; fewer only at the end of the file. Pieces larger than
    /// the server's MaxReadSize go as several requests in flight at once.
    public func read(_ file: SMB2FileId, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(Errno) -> Int {
        var done = 0
        while done < buffer.count {
            let length = min(buffer.count - done, maxRead)
            let reply = try connection.send(request(.read, readBody(file, length: length, at: offset + UInt64(done)), payload: length))
            if reply.status == .endOfFile { break }
            let count = try Self.readData(reply, asked: length).withUnsafeBytes { data in
                UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + data.count)]).copyMemory(from: data)
                return data.count
            }
            DataBuffers.shared.give(reply.bytes)
            done += count
            if count < length { break }
        }
        return done
    }

    /// Writes all of the buffer, in pieces of at most 1 MiB that are all on the wire at once:
    /// a batch of several MiB costs one round trip, and the data is copied once, a piece at a
    /// time, into its frame.
    public func write(_ file: SMB2FileId, from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(Errno) -> Int {
        let piece = min(maxWrite, 1 << 20)
        var submitted: [(ids: [UInt64], length: Int)] = []
        var failure: Errno?
        var done = 0
        repeat {
            let length = min(buffer.count - done, piece)
            var body = ByteWriter(capacity: 48)
            body.u16(49)
            body.u16(64 + 48)
            body.u32(UInt32(length))
            body.u64(offset + UInt64(done))
            file.write(to: &body)
            body.u32(0)
            body.u32(0)
            body.u16(0)
            body.u16(0)
            body.u32(0)
            do {
                let data = UnsafeRawBufferPointer(rebasing: buffer[done..<(done + length)])
                submitted.append((try connection.submit([request(.write, body, payload: length)], payload: data), length))
            } catch {
                failure = error
                break
            }
            done += length
        } while done < buffer.count
        // Every piece sent is awaited, also after a failure, so that no reply is left kept.
        var written = 0
        for (ids, length) in submitted {
            do {
                let reply = try connection.awaitReplies(ids)[0]
                try reply.check()
                var answer = reply.body
                try answer.skip(4)
                let count = Int(try answer.u32())
                if count != length && failure == nil { failure = Errno(EIO) }
                written += count
            } catch {
                if failure == nil { failure = error }
            }
        }
        if let failure { throw failure }
        return written
    }

    public func flush(_ file: SMB2FileId) throws(Errno) {
        var body = ByteWriter()
        body.u16(24)
        body.u16(0)
        body.u32(0)
        file.write(to: &body)
        try connection.send(request(.flush, body)).check()
    }

    // MARK: listings

    /// A directory's entries (FileIdFullDirectoryInformation), `.` and `..` included: the open
    /// and two batches go as one compound, so a directory whose entries fit in the first
    /// costs one round trip (the second finds no more files); a larger one goes on batch by
    /// batch. The close is sent without waiting for its answer.
    public func list(_ path: String) throws(Errno) -> [(name: String, info: SMB2FileInfo)] {
        let length = listingBuffer
        var replies = try connection.send([
            request(.create, createBody(path, access: SMB2Access.readData, disposition: .open, options: .directory)),
            request(.queryDirectory, queryDirectoryBody(.related, restart: true, length: length), payload: length, related: true),
            request(.queryDirectory, queryDirectoryBody(.related, restart: false, length: length), payload: length, related: true),
        ])
        try replies[0].check()
        let (directory, _) = try Self.created(replies[0])
        defer { connection.post(request(.close, closeBody(directory))) }
        var entries: [(name: String, info: SMB2FileInfo)] = []
        replies.removeFirst()
        while let reply = replies.first, reply.status != .noMoreFiles {
            try reply.check()
            try Self.parseListing(reply, into: &entries)
            replies.removeFirst()
            if replies.isEmpty {
                replies = try connection.send([request(.queryDirectory, queryDirectoryBody(directory, restart: false, length: length),
                                                       payload: length)])
            }
        }
        return entries
    }

    /// A directory's entries if they fit in `within` bytes of one answer, in one round trip:
    /// CREATE, QUERY_DIRECTORY, a second QUERY_DIRECTORY that must find no more files (its
    /// buffer holds no entry of a long name: it only asks), and CLOSE. Nil when more follow.
    public func listing(_ path: String, within length: Int) throws(Errno) -> [(name: String, info: SMB2FileInfo)]? {
        try Self.listing(try connection.send(listingRequests(path, within: length)))
    }

    /// A name's attributes (or why not) and, in the same round trip, the listing of
    /// `directory` if it fits in `length` bytes (nil when it does not, or cannot be had): the
    /// lookups that follow in that directory need not ask.
    public func info(of path: String, listing directory: String, within length: Int) throws(Errno)
        -> (info: Result<SMB2FileInfo, Errno>, listing: [(name: String, info: SMB2FileInfo)]?) {
        let listingIds = try connection.submit(listingRequests(directory, within: length))
        let info: Result<SMB2FileInfo, Errno>
        do {
            info = .success(try Self.allInformation(try compound(path, access: 0, [allInformationQuery])[1]))
        } catch {
            info = .failure(error)
        }
        return (info, try? Self.listing(try connection.awaitReplies(listingIds)))
    }

    private func listingRequests(_ path: String, within length: Int) -> [SMB2Request] {
        let length = min(length, listingBuffer)
        let probe = 128
        return [
            request(.create, createBody(path, access: SMB2Access.readData, disposition: .open, options: .directory)),
            request(.queryDirectory, queryDirectoryBody(.related, restart: true, length: length), payload: length, related: true),
            request(.queryDirectory, queryDirectoryBody(.related, restart: false, length: probe), payload: probe, related: true),
            request(.close, closeBody(.related), related: true),
        ]
    }

    private static func listing(_ replies: [SMB2Reply]) throws(Errno) -> [(name: String, info: SMB2FileInfo)]? {
        try replies[0].check()
        var entries: [(name: String, info: SMB2FileInfo)] = []
        if replies[1].status != .noMoreFiles {
            try replies[1].check()
            try parseListing(replies[1], into: &entries)
        }
        return replies[2].status == .noMoreFiles ? entries : nil
    }

    func queryDirectoryBody(_ file: SMB2FileId, restart: Bool, length: Int) -> ByteWriter {
        let pattern = "*".smb2Name
        var body = ByteWriter()
        body.u16(33)
        body.u8(0x26)  // FileIdFullDirectoryInformation
        body.u8(restart ? 1 : 0)
        body.u32(0)
        file.write(to: &body)
        body.u16(64 + 32)
        body.u16(UInt16(pattern.count))
        body.u32(UInt32(length))
        body.append(pattern)
        return body
    }

    /// How much of a listing one QUERY_DIRECTORY asks for (and pays credits for).
    var listingBuffer: Int { min(fitted(session.maxTransact), 1 << 20) }

    static func parseListing(_ reply: SMB2Reply, into entries: inout [(name: String, info: SMB2FileInfo)]) throws(Errno) {
        var body = reply.body
        try body.skip(2)
        let offset = Int(try body.u16())
        let length = Int(try body.u32())
        let buffer = Array(try reply.body.at(offset, length))
        var at = 0
        while at + 80 <= buffer.count {
            var entry = ByteReader(buffer, base: at)
            let next = Int(try entry.u32())
            try entry.skip(4)
            var info = SMB2FileInfo()
            try info.readTimes(&entry)
            info.size = try entry.u64()
            info.allocation = try entry.u64()
            info.attributes = try entry.u32()
            let nameLength = Int(try entry.u32())
            try entry.skip(8)
            info.index = try entry.u64()
            entries.append((String(utf16LE: try entry.take(nameLength)), info))
            if next == 0 { break }
            at += next
        }
    }
}
