// netuse-smb-worker: one libsmbclient context in a process of its own.
//
// libsmbclient is not safe to call from two threads at once (a trial here crashed even with a
// context per thread), and a hung or crashed call must not take the daemon with it. So
// netused starts workers like this one, talks to each over the socketpair on fd 3, one
// request at a time, and kills and replaces a worker that crashes or stops answering.
import CSMBClient
import Glibc
import NetUseCore

let channel: Int32 = 3

/// The credentials of the one connection this worker serves; read by the auth callback.
nonisolated(unsafe) var credentials = (user: "", password: "", domain: "")
nonisolated(unsafe) var context: UnsafeMutablePointer<SMBCCTX>?
nonisolated(unsafe) var base = ""
nonisolated(unsafe) var files: [UInt32: OpaquePointer] = [:]
nonisolated(unsafe) var nextFile: UInt32 = 1
/// Where reads land, kept from one request to the next: a read-ahead is megabytes, sent
/// to netused straight from here.
nonisolated(unsafe) var readBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
/// Bytes that follow the reply being built (a read's data), not copied into it.
nonisolated(unsafe) var replyTail: UnsafeRawBufferPointer?

func authenticate(_ context: UnsafeMutablePointer<SMBCCTX>?, _ server: UnsafePointer<CChar>?, _ share: UnsafePointer<CChar>?,
                  _ workgroup: UnsafeMutablePointer<CChar>?, _ workgroupLength: Int32,
                  _ user: UnsafeMutablePointer<CChar>?, _ userLength: Int32,
                  _ password: UnsafeMutablePointer<CChar>?, _ passwordLength: Int32) {
    func fill(_ target: UnsafeMutablePointer<CChar>?, _ length: Int32, _ value: String) {
        guard let target, length > 0, !value.isEmpty else { return }
        _ = value.withCString { strncpy(target, $0, Int(length) - 1) }
        target[Int(length) - 1] = 0
    }
    fill(workgroup, workgroupLength, credentials.domain)
    fill(user, userLength, credentials.user)
    fill(password, passwordLength, credentials.password)
}

/// libsmbclient takes URLs and decodes %XX in them: names with %, # or ? must be encoded.
func url(_ path: String) -> String {
    guard !path.isEmpty else { return base }
    var encoded = ""
    for byte in path.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "/"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "_"), UInt8(ascii: "~"):
            encoded.unicodeScalars.append(UnicodeScalar(byte))
        default:
            encoded += "%" + String(byte, radix: 16, uppercase: true).leftPadded(2)
        }
    }
    return base + "/" + encoded
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

func check(_ result: Int32) throws(Errno) {
    if result < 0 { throw Errno.current }
}

func file(_ id: UInt32) throws(Errno) -> OpaquePointer {
    guard let file = files[id] else { throw Errno(EBADF) }
    return file
}

func connect(_ request: inout WireReader) throws(Errno) {
    base = try request.string()
    credentials = (try request.string(), try request.string(), try request.string())
    let timeout = try request.u32()
    guard let created = smbc_new_context() else { throw Errno(ENOMEM) }
    smbc_setFunctionAuthDataWithContext(created, authenticate)
    smbc_setTimeout(created, Int32(timeout))
    // With a user name, a wrong password must fail rather than fall back to guest.
    smbc_setOptionNoAutoAnonymousLogin(created, credentials.user.isEmpty ? 0 : 1)
    if !credentials.user.isEmpty { smbc_setOptionUseKerberos(created, 0) }
    smbc_setOptionFallbackAfterKerberos(created, 1)
    // The native engine hands SMB1-only servers (NT4-era) to libsmbclient: it may speak SMB1.
    smbc_setOptionProtocols(created, "NT1", nil)
    guard smbc_init_context(created) != nil else { throw Errno.current }
    context = created
    // Proves that the server answers, the share exists and the credentials are good.
    guard let directory = smbc_getFunctionOpendir(created)!(created, base) else { throw Errno.current }
    _ = smbc_getFunctionClosedir(created)!(created, directory)
}

func handle(_ operation: SMBOperation, _ request: inout WireReader, _ reply: inout WireWriter) throws(Errno) {
    if operation == .connect { return try connect(&request) }
    guard let ctx = context else { throw Errno(ENOTCONN) }
    switch operation {
    case .connect:
        break
    case .attributes:
        var attributes = stat()
        try check(smbc_getFunctionStat(ctx)!(ctx, url(try request.string()), &attributes))
        reply.attributes(attributes)
    case .handleAttributes:
        var attributes = stat()
        try check(smbc_getFunctionFstat(ctx)!(ctx, try file(try request.u32()), &attributes))
        reply.attributes(attributes)
    case .open:
        let path = try request.string()
        let flags = try request.i32()
        let mode = try request.u32()
        guard let opened = smbc_getFunctionOpen(ctx)!(ctx, url(path), flags, mode) else { throw Errno.current }
        let id = nextFile
        nextFile &+= 1
        files[id] = opened
        reply.u32(id)
    case .read:
        let opened = try file(try request.u32())
        let offset = try request.i64()
        let size = Int(try request.u32())
        guard smbc_getFunctionLseek(ctx)!(ctx, opened, off_t(offset), SEEK_SET) >= 0 else { throw Errno.current }
        if readBuffer.count < size {
            readBuffer.baseAddress?.deallocate()
            readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        }
        var done = 0
        while done < size {
            let count = smbc_getFunctionRead(ctx)!(ctx, opened, readBuffer.baseAddress! + done, size - done)
            if count < 0 { throw Errno.current }
            if count == 0 { break }
            done += count
        }
        reply.u32(UInt32(done))
        replyTail = UnsafeRawBufferPointer(rebasing: readBuffer[..<done])
    case .write:
        let opened = try file(try request.u32())
        let offset = try request.i64()
        let data = try request.data()
        guard smbc_getFunctionLseek(ctx)!(ctx, opened, off_t(offset), SEEK_SET) >= 0 else { throw Errno.current }
        var done = 0
        while done < data.count {
            let count = data.withUnsafeBytes { smbc_getFunctionWrite(ctx)!(ctx, opened, $0.baseAddress! + done, $0.count - done) }
            if count < 0 { throw Errno.current }
            done += count
        }
        reply.u32(UInt32(done))
    case .close:
        let id = try request.u32()
        if let opened = files.removeValue(forKey: id) { try check(smbc_getFunctionClose(ctx)!(ctx, opened)) }
    case .list:
        guard let directory = smbc_getFunctionOpendir(ctx)!(ctx, url(try request.string())) else { throw Errno.current }
        defer { _ = smbc_getFunctionClosedir(ctx)!(ctx, directory) }
        var entries = WireWriter()
        var count: UInt32 = 0
        while true {
            var attributes = stat()
            errno = 0
            guard let info = smbc_getFunctionReaddirPlus2(ctx)!(ctx, directory, &attributes) else {
                if errno != 0 && errno != ENOENT { throw Errno.current }
                break
            }
            entries.string(String(cString: info.pointee.name))
            entries.attributes(attributes)
            count += 1
        }
        reply.u32(count)
        reply.append(entries)
    case .makeDirectory:
        let path = try request.string()
        try check(smbc_getFunctionMkdir(ctx)!(ctx, url(path), mode_t(try request.u32())))
    case .removeDirectory:
        try check(smbc_getFunctionRmdir(ctx)!(ctx, url(try request.string())))
    case .unlink:
        try check(smbc_getFunctionUnlink(ctx)!(ctx, url(try request.string())))
    case .rename:
        let from = url(try request.string())
        let to = url(try request.string())
        try check(smbc_getFunctionRename(ctx)!(ctx, from, ctx, to))
    case .truncate:
        let path = try request.string()
        let size = try request.i64()
        guard let opened = smbc_getFunctionOpen(ctx)!(ctx, url(path), O_WRONLY, 0) else { throw Errno.current }
        defer { _ = smbc_getFunctionClose(ctx)!(ctx, opened) }
        try check(smbc_getFunctionFtruncate(ctx)!(ctx, opened, off_t(size)))
    case .handleTruncate:
        let opened = try file(try request.u32())
        try check(smbc_getFunctionFtruncate(ctx)!(ctx, opened, off_t(try request.i64())))
    case .setTimes:
        let path = try request.string()
        var times = [timeval(), timeval()]
        for index in 0..<2 {
            times[index].tv_sec = Int(try request.i64())
            times[index].tv_usec = Int(try request.i64() / 1000)
        }
        try check(smbc_getFunctionUtimes(ctx)!(ctx, url(path), &times))
    case .setMode:
        let path = try request.string()
        try check(smbc_getFunctionChmod(ctx)!(ctx, url(path), mode_t(try request.u32())))
    case .statistics:
        var statistics = statvfs()
        let path = url(try request.string())
        try check(path.withCString { smbc_getFunctionStatVFS(ctx)!(ctx, UnsafeMutablePointer(mutating: $0), &statistics) })
        for value in [UInt64(statistics.f_bsize), UInt64(statistics.f_frsize), UInt64(statistics.f_blocks),
                      UInt64(statistics.f_bfree), UInt64(statistics.f_bavail), UInt64(statistics.f_files),
                      UInt64(statistics.f_ffree), UInt64(statistics.f_namemax)] {
            reply.u64(value)
        }
    }
}

signal(SIGPIPE, SIG_IGN)
signal(SIGINT, SIG_IGN)  // the daemon decides when a worker ends
while true {
    let frame: [UInt8]
    do {
        frame = try WireFrame.receive(channel)
    } catch {
        exit(0)  // the daemon is gone or let go of this worker
    }
    var request = WireReader(frame)
    var reply = WireWriter()
    replyTail = nil
    do throws(Errno) {
        guard let operation = SMBOperation(rawValue: try request.u8()) else { throw Errno(ENOSYS) }
        var results = WireWriter()
        try handle(operation, &request, &results)
        reply.i32(0)
        reply.append(results)
    } catch {
        reply = WireWriter()
        reply.i32(error.rawValue)
        replyTail = nil
    }
    do {
        try WireFrame.send(channel, reply.bytes, tail: replyTail)
    } catch {
        exit(0)
    }
}
