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
    /// Who hears of messages no request waits for: the server's break notifications.
    let notifications = Mutex<(@Sendable (SMB2Reply) -> Void)?>(nil)

    struct Flow: Sendable {
        var nextId: UInt64 = 0
        var credits = 1
        var waiting: Set<UInt64> = []
        /// Credits taken by requests whose replies have not come.
        var charged = 0
        /// Requests posted without waiting: their replies are dropped as they come.
        var unwanted: Set<UInt64> = []
        var replies: [UInt64: SMB2Reply] = [:]
        /// Requests the server said it will answer later (a blocking lock), by MessageId.
        var asyncIds: [UInt64: UInt64] = [:]
        /// Held requests a CANCEL was sent for: their waiters now wait no longer than `timeout`.
        var cancelled: Set<UInt64> = []
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
            var seconds = timeval(tv_sec: Int(timeout.components.seconds),
                                  tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
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

    /// Credits granted in all: free now plus held by requests in flight. A request that
    /// costs more could wait for ever, so reads and writes are cut to fit.
    var creditWindow: Int { flow.withLock { $0.credits + $0.charged } }

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
        try awaitReplies(try submit(requests, sent: sent))
    }

    /// Sends the requests as one compound and answers their MessageIds, for `awaitReplies`:
    /// several submitted before any is awaited are on the wire at once.
    /// `payload` (a write's data) follows the last request's body, copied into the frame only.
    func submit(_ requests: [SMB2Request], payload: UnsafeRawBufferPointer? = nil,
                sent: (([UInt8]) -> Void)? = nil) throws(Errno) -> [UInt64] {
        let charge = requests.reduce(0) { $0 + Int($1.creditCharge) }
        let ids: [UInt64]? = try flow.withLock(when: { $0.broken != nil || $0.credits >= charge }, within: timeout) { (flow) throws(Errno) in
            if let broken = flow.broken { throw broken }
            flow.credits -= charge
            flow.charged += charge
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
        do {
            let frame = compose(requests, ids: ids, payload: payload, sent: sent)
            try write(frame)
            DataBuffers.shared.give(frame)
        } catch {
            fail()
            throw Errno(EIO)
        }
        return ids
    }

    /// Sends without waiting for the answer (a tree disconnect or logoff while the server may
    /// be hung must not hold up a delete or a stop); the reply is dropped when it comes.
    func post(_ request: SMB2Request) {
        guard let ids = try? submit([request]) else { return }
        flow.withLock { flow in
            for id in ids where flow.replies.removeValue(forKey: id) == nil { flow.unwanted.insert(id) }
        }
    }

    /// The replies to submitted requests, in their order. Every submitted id must be awaited
    /// (else its reply stays kept); on a broken connection they all fail at once.
    func awaitReplies(_ ids: [UInt64]) throws(Errno) -> [SMB2Reply] {
        let replies: [SMB2Reply]? = try flow.withLock(when: { flow in flow.broken != nil || ids.allSatisfy { flow.replies[$0] != nil } },
                                                       within: timeout) { (flow) throws(Errno) in
            if ids.allSatisfy({ flow.replies[$0] != nil }) {
                for id in ids { flow.asyncIds[id] = nil }
                return ids.map { flow.replies.removeValue(forKey: $0)! }
            }
            for id in ids {
                flow.waiting.remove(id)
                flow.replies[id] = nil
                flow.asyncIds[id] = nil
            }
            throw flow.broken ?? Errno(EIO)
        }
        guard let replies else {
            fail()
            throw Errno(EIO)
        }
        return replies
    }

    /// The reply to a request the server may hold for as long as it likes (a blocking lock):
    /// waited for without a limit until `cancel` asks the server to give it up, and from then
    /// on as any other reply.
    func awaitHeldReply(_ id: UInt64) throws(Errno) -> SMB2Reply {
        flow.withLock(when: { flow in flow.broken != nil || flow.replies[id] != nil || flow.cancelled.contains(id) }) { _ in }
        defer { _ = flow.withLock { $0.cancelled.remove(id) } }
        return try awaitReplies([id])[0]
    }

    func send(_ request: SMB2Request) throws(Errno) -> SMB2Reply {
        try send([request])[0]
    }

    /// Asks the server to give up a request it is holding (MS-SMB2 3.2.4.24): it then answers
    /// that request with STATUS_CANCELLED. A CANCEL takes no credit and gets no reply.
    func cancel(_ messageId: UInt64) {
        let asyncId: UInt64?? = flow.withLock { flow in
            guard flow.waiting.contains(messageId) && flow.replies[messageId] == nil else { return nil }
            flow.cancelled.insert(messageId)
            return .some(flow.asyncIds[messageId])
        }
        guard let asyncId else { return }
        var request = SMB2Request(.cancel, { var body = ByteWriter(); body.u16(4); body.u16(0); return body }())
        request.creditCharge = 0
        request.cancels = (messageId, asyncId)
        try? write(compose([request], ids: [messageId], payload: nil, sent: nil))
    }

    /// Headers, compound chaining, signing and encryption: the bytes of one frame, built in
    /// one buffer (a write's data is copied once, from its body into the frame).
    private func compose(_ requests: [SMB2Request], ids: [UInt64], payload: UnsafeRawBufferPointer?,
                         sent: (([UInt8]) -> Void)?) -> [UInt8] {
        let security = self.security.withLock { $0 }
        var frame = ByteWriter(reusing: DataBuffers.shared.take(
            capacity: 4 + (payload?.count ?? 0) + requests.reduce(0) { $0 + 72 + $1.body.count }))
        frame.zeros(4)  // the transport's length, set below
        for (index, request) in requests.enumerated() {
            let start = frame.count
            frame.u32(0x424D_53FE)
            frame.u16(64)
            frame.u16(request.creditCharge)
            frame.u32(0)
            frame.u16(request.command.rawValue)
            frame.u16(request.cancels != nil ? 0 : max(request.creditCharge, Self.creditsWanted))
            let sign = (security.signs || request.alwaysSigned && !security.signingKey.isEmpty) && !security.encrypts
                && request.command != .negotiate && request.command != .sessionSetup
            let async = request.cancels?.asyncId
            frame.u32((request.related ? SMB2Flags.related : 0) | (sign ? SMB2Flags.signed : 0) | (async != nil ? SMB2Flags.async : 0))
            frame.u32(0)  // NextCommand, set below
            frame.u64(ids[index])
            if let async {
                frame.u64(async)
            } else {
                frame.u32(0xFEFF)  // ProcessId
                frame.u32(request.treeId)
            }
            frame.u64(security.sessionId)
            frame.zeros(16)
            frame.append(request.body)
            if index == requests.count - 1, let payload { frame.append(payload) }
            if index < requests.count - 1 {
                frame.align(8)
                frame.set32(UInt32(frame.count - start), at: start + 20)
            }
            if sign {
                // The signature field is still zero, as signing wants it.
                let signature = security.signature(frame.bytes[start...])
                frame.bytes.replaceSubrange((start + 48)..<(start + 64), with: signature)
            }
        }
        if let sent { sent(Array(frame.bytes[4...])) }
        if security.encrypts { frame.bytes = [0, 0, 0, 0] + security.seal(Array(frame.bytes[4...])) }
        let length = frame.count - 4
        frame.bytes[1] = UInt8(truncatingIfNeeded: length >> 16)
        frame.bytes[2] = UInt8(truncatingIfNeeded: length >> 8)
        frame.bytes[3] = UInt8(truncatingIfNeeded: length)
        return frame.bytes
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
        var buffer = DataBuffers.shared.take(count)
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
                DataBuffers.shared.give(frame)
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
            let notices = replies.filter { $0.messageId == .max && $0.command == SMB2Command.oplockBreak.rawValue }
            flow.withLock { flow in
                for reply in replies {
                    flow.credits += Int(reply.credits)
                    // An interim answer (the server will reply later) and a break
                    // notification (MessageId all ones) are not the answer anyone waits for.
                    if reply.status == .pending && reply.flags & SMB2Flags.async != 0 {
                        if flow.waiting.contains(reply.messageId) { flow.asyncIds[reply.messageId] = reply.asyncId }
                        continue
                    }
                    if reply.messageId == .max { continue }
                    flow.charged = max(0, flow.charged - Int(max(1, reply.creditCharge)))
                    if flow.waiting.remove(reply.messageId) != nil, flow.unwanted.remove(reply.messageId) == nil {
                        flow.replies[reply.messageId] = reply
                    }
                }
            }
            if !notices.isEmpty, let notify = notifications.withLock({ $0 }) { notices.forEach(notify) }
        }
    }
}
