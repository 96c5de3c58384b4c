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
/// The most one read asks libsmbclient for (SMBConnection.largestRead says why).
nonisolated(unsafe) var largestRead = 64 << 10
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

func connect(url: String, user: String, password: String, domain: String, timeout: UInt32, largest: UInt32) throws(Errno) {
    base = url
    largestRead = max(4096, Int(largest))
    credentials = (user, password, domain)
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

/// Carries out one request; a read's bytes are left in `replyTail`.
func handle(_ request: WorkerRequest, tail: ArraySlice<UInt8>) throws(Errno) -> WorkerReply {
    if case let .connect(url, user, password, domain, timeout, largest) = request {
        try connect(url: url, user: user, password: password, domain: domain, timeout: timeout, largest: largest)
        return .done
    }
    guard let ctx = context else { throw Errno(ENOTCONN) }
    switch request {
    case .connect:
        return .done
    case let .attributes(path):
        var attributes = stat()
        try check(smbc_getFunctionStat(ctx)!(ctx, url(path), &attributes))
        return .attributes(attributes)
    case let .handleAttributes(id):
        var attributes = stat()
        try check(smbc_getFunctionFstat(ctx)!(ctx, try file(id), &attributes))
        return .attributes(attributes)
    case let .open(path, flags, mode):
        guard let opened = smbc_getFunctionOpen(ctx)!(ctx, url(path), flags, mode) else { throw Errno.current }
        let id = nextFile
        nextFile &+= 1
        files[id] = opened
        return .opened(file: id)
    case let .read(id, offset, requested):
        let opened = try file(id)
        let size = Int(requested)
        guard smbc_getFunctionLseek(ctx)!(ctx, opened, off_t(offset), SEEK_SET) >= 0 else { throw Errno.current }
        if readBuffer.count < size {
            readBuffer.baseAddress?.deallocate()
            readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        }
        var done = 0
        while done < size {
            let piece = min(size - done, largestRead)
            let count = smbc_getFunctionRead(ctx)!(ctx, opened, readBuffer.baseAddress! + done, piece)
            if count < 0 { throw Errno.current }
            if count == 0 { break }
            done += count
        }
        replyTail = UnsafeRawBufferPointer(rebasing: readBuffer[..<done])
        return .read
    case let .write(id, offset):
        let opened = try file(id)
        guard smbc_getFunctionLseek(ctx)!(ctx, opened, off_t(offset), SEEK_SET) >= 0 else { throw Errno.current }
        var done = 0
        while done < tail.count {
            let count = tail.withUnsafeBytes { smbc_getFunctionWrite(ctx)!(ctx, opened, $0.baseAddress! + done, $0.count - done) }
            if count < 0 { throw Errno.current }
            done += count
        }
        return .written(count: UInt32(done))
    case let .close(id):
        if let opened = files.removeValue(forKey: id) { try check(smbc_getFunctionClose(ctx)!(ctx, opened)) }
        return .done
    case let .list(path):
        guard let directory = smbc_getFunctionOpendir(ctx)!(ctx, url(path)) else { throw Errno.current }
        defer { _ = smbc_getFunctionClosedir(ctx)!(ctx, directory) }
        var entries: [WorkerReply.Entry] = []
        while true {
            var attributes = stat()
            errno = 0
            guard let info = smbc_getFunctionReaddirPlus2(ctx)!(ctx, directory, &attributes) else {
                if errno != 0 && errno != ENOENT { throw Errno.current }
                break
            }
            entries.append(WorkerReply.Entry(name: String(cString: info.pointee.name), attributes: attributes))
        }
        return .listing(entries)
    case let .makeDirectory(path, mode):
        try check(smbc_getFunctionMkdir(ctx)!(ctx, url(path), mode_t(mode)))
    case let .removeDirectory(path):
        try check(smbc_getFunctionRmdir(ctx)!(ctx, url(path)))
    case let .unlink(path):
        try check(smbc_getFunctionUnlink(ctx)!(ctx, url(path)))
    case let .rename(from, to):
        try check(smbc_getFunctionRename(ctx)!(ctx, url(from), ctx, url(to)))
    case let .truncate(path, size):
        guard let opened = smbc_getFunctionOpen(ctx)!(ctx, url(path), O_WRONLY, 0) else { throw Errno.current }
        defer { _ = smbc_getFunctionClose(ctx)!(ctx, opened) }
        try check(smbc_getFunctionFtruncate(ctx)!(ctx, opened, off_t(size)))
    case let .handleTruncate(id, size):
        try check(smbc_getFunctionFtruncate(ctx)!(ctx, try file(id), off_t(size)))
    case let .setTimes(path, access, modification):
        var times = [access, modification].map { timeval(tv_sec: $0.tv_sec, tv_usec: $0.tv_nsec / 1000) }
        try check(smbc_getFunctionUtimes(ctx)!(ctx, url(path), &times))
    case let .setMode(path, mode):
        try check(smbc_getFunctionChmod(ctx)!(ctx, url(path), mode_t(mode)))
    case let .statistics(path):
        var statistics = statvfs()
        try check(url(path).withCString { smbc_getFunctionStatVFS(ctx)!(ctx, UnsafeMutablePointer(mutating: $0), &statistics) })
        return .statistics(statistics)
    }
    return .done
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
    var message = WireReader(frame)
    replyTail = nil
    let reply: WorkerReply
    do throws(Errno) {
        let request = try WorkerRequest.decode(&message)
        reply = try handle(request, tail: message.rest())
    } catch {
        reply = .failed(error)
        replyTail = nil
    }
    var encoded = WireWriter()
    reply.encode(into: &encoded)
    do {
        try WireFrame.send(channel, encoded.bytes, tail: replyTail)
    } catch {
        exit(0)
    }
}
