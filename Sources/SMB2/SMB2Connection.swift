import Glibc
import NetUseCore
import Synchronization

/// One TCP connection to a server, with many requests in flight: each request takes
/// credits and a MessageId, and a reader thread hands every reply to the request of its
/// MessageId (cifs.ko and sshfs work this way). No lock is held while a reply is awaited;
/// the sending lock covers only the write of one frame, so that frames do not interleave.
final class SMB2Connection: Sendable {
    let socket: Int32
    let timeout: Duration
    private let flow: Monitor<Flow>
    private let sending = Mutex<Void>(())
    let security = Mutex<SMB2Security>(SMB2Security())

    struct Flow: Sendable {
        var nextId: UInt64 = 0
        var credits = 1
        var waiting: Set<UInt64> = []
        var replies: [UInt64: SMB2Reply] = [:]
        /// Why the connection is no use any more; every waiter gets it.
        var broken: Errno?
        /// Whether `socket` is still ours: once closed, its number may be another file's.
        var open = true
    }

    /// How many credits each request asks for: servers grant up to their own limit
    /// (Samba 8192), and a deep window lets reads and writes of several MiB go at once.
    static let creditsWanted: UInt16 = 64

    private init(socket: Int32, timeout: Duration) {
        self.socket = socket
        self.timeout = timeout
        self.flow = Monitor(Flow())
    }

    /// Connects to `host:port`, waiting no longer than `timeout`.
    static func open(host: String, port: UInt16, timeout: Duration) throws(Errno) -> SMB2Connection {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let first = found else { throw Errno(EHOSTUNREACH) }
        defer { freeaddrinfo(found) }
        var failure = Errno(ECONNREFUSED)
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let address = entry {
            entry = address.pointee.ai_next
            let fd = Glibc.socket(address.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            var seconds = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))
            var on: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, 4)
            if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 {
                let connection = SMB2Connection(socket: fd, timeout: timeout)
                SystemThread.detach { connection.readReplies() }
                return connection
            }
            failure = Errno.current
            Glibc.close(fd)
        }
        throw failure
    }

    var isBroken: Bool { flow.withLock { $0.broken != nil } }

    /// Ends the connection: every waiter gets EIO, and the reader thread closes the socket.
    func fail(_ error: Errno = Errno(EIO)) {
        flow.withLock { flow in
            if flow.broken == nil { flow.broken = error }
            if flow.open { shutdown(socket, Int32(SHUT_RDWR)) }
        }
    }

    /// Sends the requests as one compound and waits for every reply. A reply that does not
    /// come within the timeout breaks the connection (its requests' fate is unknown).
    func send(_ requests: [SMB2Request], sent: (([UInt8]) -> Void)? = nil) throws(Errno) -> [SMB2Reply] {
        let charge = requests.reduce(0) { $0 + Int($1.creditCharge) }
        let ids: [UInt64]? = try flow.withLock(when: { $0.broken != nil || $0.credits >= charge }, within: timeout) { (flow) throws(Errno) in
            if let broken = flow.broken { throw broken }
            flow.credits -= charge
            var ids: [UInt64] = []
            for request in requests {
                ids.append(flow.nextId)
                flow.waiting.insert(flow.nextId)
                flow.nextId += UInt64(request.creditCharge)
            }
            return ids
        }
        guard let ids else {
            fail()
            throw Errno(EIO)
        }
        let frame = compose(requests, ids: ids, sent: sent)
        do {
            try write(frame)
        } catch {
            fail()
            throw Errno(EIO)
        }
        let replies: [SMB2Reply]? = try flow.withLock(when: { flow in flow.broken != nil || ids.allSatisfy { flow.replies[$0] != nil } },
                                                       within: timeout) { (flow) throws(Errno) in
            if ids.allSatisfy({ flow.replies[$0] != nil }) {
                return ids.map { flow.replies.removeValue(forKey: $0)! }
            }
            for id in ids {
                flow.waiting.remove(id)
                flow.replies[id] = nil
            }
            throw flow.broken ?? Errno(EIO)
        }
        guard let replies else {
            fail()
            throw Errno(EIO)
        }
        return replies
    }

    func send(_ request: SMB2Request) throws(Errno) -> SMB2Reply {
        try send([request])[0]
    }

    /// Headers, compound chaining, signing and encryption: the bytes of one frame.
    private func compose(_ requests: [SMB2Request], ids: [UInt64], sent: (([UInt8]) -> Void)?) -> [UInt8] {
        let security = self.security.withLock { $0 }
        var messages: [UInt8] = []
        for (index, request) in requests.enumerated() {
            var header = ByteWriter(capacity: 64 + request.body.count + 8)
            header.u32(0x424D_53FE)
            header.u16(64)
            header.u16(request.creditCharge)
            header.u32(0)
            header.u16(request.command.rawValue)
            header.u16(max(request.creditCharge, Self.creditsWanted))
            let sign = (security.signs || request.alwaysSigned && !security.signingKey.isEmpty) && !security.encrypts
                && request.command != .negotiate && request.command != .sessionSetup
            header.u32((request.related ? SMB2Flags.related : 0) | (sign ? SMB2Flags.signed : 0))
            header.u32(0)  // NextCommand, set below
            header.u64(ids[index])
            header.u32(0xFEFF)  // ProcessId
            header.u32(request.treeId)
            header.u64(security.sessionId)
            header.zeros(16)
            header.append(request.body)
            if index < requests.count - 1 {
                header.align(8)
                header.set32(UInt32(header.count), at: 20)
            }
            if sign {
                let signature = security.sign(header.bytes)
                header.bytes.replaceSubrange(48..<64, with: signature)
            }
            messages += header.bytes
        }
        sent?(messages)
        if security.encrypts { messages = security.seal(messages) }
        var frame = [UInt8](repeating: 0, count: 4)
        frame[1] = UInt8(truncatingIfNeeded: messages.count >> 16)
        frame[2] = UInt8(truncatingIfNeeded: messages.count >> 8)
        frame[3] = UInt8(truncatingIfNeeded: messages.count)
        return frame + messages
    }

    private func write(_ frame: [UInt8]) throws(Errno) {
        try sending.withLock { (_) throws(Errno) in
            guard flow.withLock({ $0.open && $0.broken == nil }) else { throw Errno(EIO) }
            var done = 0
            while done < frame.count {
                let count = frame.withUnsafeBytes { Glibc.send(socket, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
                if count < 0 {
                    if errno == EINTR { continue }
                    throw Errno.current
                }
                done += count
            }
        }
    }

    private func readFully(_ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress! + done, count - done, 0) }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return nil }
            done += got
        }
        return buffer
    }

    /// The reader thread: frames in, replies to their waiters, until the connection ends.
    private func readReplies() {
        defer {
            // Under the sending lock, so that no frame is on its way into a closed number.
            sending.withLock { _ in
                flow.withLock { flow in
                    if flow.broken == nil { flow.broken = Errno(EIO) }
                    flow.open = false
                    Glibc.close(socket)
                }
            }
        }
        while let prefix = readFully(4) {
            let length = Int(prefix[1]) << 16 | Int(prefix[2]) << 8 | Int(prefix[3])
            guard prefix[0] == 0, length >= 4, var frame = readFully(length) else { return }
            let security = self.security.withLock { $0 }
            if frame.starts(with: [0xFD, 0x53, 0x4D, 0x42]) {
                guard let plain = security.unseal(frame) else { return }
                frame = plain
            }
            var start = 0
            var replies: [SMB2Reply] = []
            while start < frame.count {
                var next = ByteReader(frame, base: start)
                next.offset = start + 20
                guard let chained = try? next.u32() else { return }
                let end = chained == 0 ? frame.count : start + Int(chained)
                guard end <= frame.count, end > start, let reply = try? SMB2Reply(frame, start: start, end: end) else { return }
                if reply.flags & SMB2Flags.signed != 0, !security.signingKey.isEmpty, !security.verify(frame[start..<end]) { return }
                replies.append(reply)
                start = end
            }
            flow.withLock { flow in
                for reply in replies {
                    flow.credits += Int(reply.credits)
                    // An interim answer (the server will reply later) and a break
                    // notification (MessageId all ones) are not the answer anyone waits for.
                    if reply.status == .pending && reply.flags & SMB2Flags.async != 0 { continue }
                    if flow.waiting.remove(reply.messageId) != nil { flow.replies[reply.messageId] = reply }
                }
            }
        }
    }
}
