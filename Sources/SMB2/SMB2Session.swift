import Glibc
import NetUseCore
import Synchronization

/// Why a session or tree connect failed, for `use` to answer 53, 67, 1326 or 5.
public enum SMB2SetupError: Error, Sendable {
    case unreachable(Errno)
    case logonFailure(NTStatus)
    case accessDenied(NTStatus)
    case badNetName(NTStatus)
    case protocolError(String)
    /// Kerberos: no usable ticket (none in the cache, expired, or no key for the service).
    case noTicket(String)
    /// The server took the connection but gave no SMB2 answer to NEGOTIATE: it speaks SMB1 only.
    case noSMB2
}

/// A logged-on session on one connection: negotiate (2.0.2 to 3.1.1, with pre-authentication
/// integrity for 3.1.1), SPNEGO session setup (NTLMv2, or Kerberos through GSSAPI), and the
/// keys that follow.
public final class SMB2Session: Sendable {
    let connection: SMB2Connection
    public let server: String
    public let dialect: UInt16
    let maxRead: Int
    let maxWrite: Int
    let maxTransact: Int
    public let isGuest: Bool
    public let encrypts: Bool
    public let signs: Bool
    /// The server grants leases (SMB 2.1 and later); else opens ask for batch oplocks.
    public let leases: Bool
    /// Who hears of the breaks the server sends, by lease key or (oplocks) file id; and
    /// oplock breaks that overtook their open's answer, until the open claims them.
    let breakRoutes = Mutex<BreakRoutes>(BreakRoutes())
    /// Breaks are handled here, in the order they came, away from the connection's reader:
    /// a handler closes files, which waits for replies the reader must deliver.
    let breakCourier = Courier()

    public struct Options: Sendable {
        public var host: String
        public var port: UInt16
        public var user: String
        public var password: String
        public var domain: String
        public var timeout: Duration
        /// Encrypt although the server does not ask for it (`-o seal`).
        public var seal = false
        /// Log on with Kerberos from these tickets (`-o sec=krb5`) instead of a password.
        public var kerberos: KerberosCredentials?
        /// Who the client is to the server across connections: leases and durable handles
        /// belong to it, so a reconnect presents the same one.
        public var clientGuid: [UInt8] = freshClientGuid()
        /// The session this one replaces after a lost connection: the server ends it first,
        /// which leaves its durable handles waiting for this session to get them back.
        public var previousSessionId: UInt64 = 0

        public static func freshClientGuid() -> [UInt8] { NTLMAuthenticator.random(16) }
        /// The dialects offered; all of them unless a test narrows them.
        public var dialects: [UInt16] = [0x202, 0x210, 0x300, 0x302, 0x311]

        public init(host: String, port: UInt16, user: String, password: String, domain: String, timeout: Duration) {
            self.host = host
            self.port = port
            self.user = user
            self.password = password
            self.domain = domain
            self.timeout = timeout
        }
    }

    public static func open(_ options: Options) throws(SMB2SetupError) -> SMB2Session {
        let connection: SMB2Connection
        do {
            connection = try SMB2Connection.open(host: options.host, port: options.port, timeout: options.timeout)
        } catch {
            throw .unreachable(error)
        }
        do {
            return try SMB2Session(connection, options)
        } catch {
            connection.fail()
            throw error
        }
    }

    private init(_ connection: SMB2Connection, _ options: Options) throws(SMB2SetupError) {
        self.connection = connection
        server = options.host
        var preauth = [UInt8](repeating: 0, count: 64)
        func hashing(_ bytes: [UInt8]) { preauth = Crypto.sha512(preauth, bytes) }

        let negotiated = try SMB2Negotiation(on: connection, options, hashing: hashing)
        dialect = negotiated.dialect
        maxRead = negotiated.maxRead
        maxWrite = negotiated.maxWrite
        maxTransact = negotiated.maxTransact
        connection.security.withLock { $0 = negotiated.security }

        // SESSION_SETUP, two legs
        var authenticator: any SessionAuthenticator = options.kerberos.map { GSSAuthenticator($0, server: options.host) }
            ?? NTLMAuthenticator(user: options.user, password: options.password, domain: options.domain)
        var token = try authenticator.firstToken()
        var sessionFlags: UInt16 = 0
        var leg = 0
        while true {
            leg += 1
            guard leg <= 3 else { throw .protocolError("session setup did not end") }
            var setup = ByteWriter()
            setup.u16(25)
            setup.u8(0)
            setup.u8(1)  // signing enabled
            setup.u32(0)
            setup.u32(0)
            setup.u16(64 + 24)
            setup.u16(UInt16(token.count))
            setup.u64(options.previousSessionId)
            setup.append(token)
            let answer: SMB2Reply
            do {
                answer = try connection.send([SMB2Request(.sessionSetup, setup)], sent: { hashing($0) })[0]
            } catch {
                throw .unreachable(error)
            }
            connection.security.withLock { $0.sessionId = answer.sessionId }
            if answer.status == .moreProcessingRequired {
                hashing(Array(answer.bytes[answer.start..<answer.end]))
                token = try authenticator.nextToken(try Self.securityBuffer(answer))
                continue
            }
            switch answer.status {
            case .success:
                var body = answer.body
                try? body.skip(2)
                sessionFlags = (try? body.u16()) ?? 0
                try authenticator.finish(try Self.securityBuffer(answer))
            case .logonFailure, .accountRestriction, .passwordExpired, .accountDisabled:
                throw .logonFailure(answer.status)
            case .accessDenied:
                throw .accessDenied(answer.status)
            default:
                throw .protocolError("session setup: \(answer.status)")
            }
            break
        }
        isGuest = sessionFlags & 0x3 != 0
        leases = negotiated.leases
        let mustEncrypt = sessionFlags & 0x4 != 0 || options.seal
        guard !mustEncrypt || (negotiated.security.cipher != nil && !isGuest) else { throw .accessDenied(.accessDenied) }
        encrypts = mustEncrypt
        let sessionKey = authenticator.sessionKey
        let signsNow = negotiated.serverRequiresSigning && !isGuest && !sessionKey.isEmpty
        signs = signsNow
        connection.security.withLock { security in
            if !sessionKey.isEmpty && !isGuest { security.deriveKeys(sessionKey: sessionKey, preauthHash: preauth) }
            security.signs = signsNow
            security.encrypts = mustEncrypt
        }
        connection.notifications.withLock { $0 = { [weak self] notice in self?.deliver(notice) } }
    }

    /// The token a SESSION_SETUP answer carries.
    private static func securityBuffer(_ answer: SMB2Reply) throws(SMB2SetupError) -> [UInt8] {
        do {
            var body = answer.body
            try body.skip(4)
            let offset = Int(try body.u16())
            let length = Int(try body.u16())
            return length == 0 ? [] : Array(try answer.body.at(offset, length))
        } catch {
            throw .protocolError("session setup: answer malformed")
        }
    }

    /// Logs off and ends the connection; the connection's reader thread closes the socket.
    /// Logs off without waiting for the answer, and ends the connection once the frame is out
    /// (the server closes what the session had open).
    public func close() {
        var body = ByteWriter()
        body.u16(4)
        body.u16(0)
        connection.post(SMB2Request(.logoff, body))
        connection.fail(Errno(ESHUTDOWN))
        // Not joined here: this may run on the break thread itself (a handler that reconnects).
        let courier = breakCourier
        SystemThread.detach { courier.stop() }
    }

    public var isConnected: Bool { !connection.isBroken }

    public var sessionId: UInt64 { connection.security.withLock { $0.sessionId } }

    struct BreakRoutes: Sendable {
        var handlers: [SMB2Break.Target: @Sendable (SMB2Break) -> Void] = [:]
        var unclaimed: [SMB2Break.Target: SMB2Break] = [:]
    }

    /// Sends the breaks for `target` to `handler` from now on, on the session's break thread.
    public func onBreak(_ target: SMB2Break.Target, _ handler: @escaping @Sendable (SMB2Break) -> Void) {
        let waiting = breakRoutes.withLock { routes in
            routes.handlers[target] = handler
            return routes.unclaimed.removeValue(forKey: target)
        }
        if let waiting { breakCourier.send { handler(waiting) } }
    }

    /// The open is closed: its breaks (there may be one on its way) concern nobody.
    public func stopBreaks(_ target: SMB2Break.Target) {
        _ = breakRoutes.withLock { $0.handlers.removeValue(forKey: target) }
    }

    /// From the connection's reader: a break notification, handed to the break thread.
    func deliver(_ notification: SMB2Reply) {
        guard let broken = SMB2Break(notification) else { return }
        breakCourier.send { [self] in
            let handler = breakRoutes.withLock { routes -> (@Sendable (SMB2Break) -> Void)? in
                if let handler = routes.handlers[broken.target] { return handler }
                // An oplock is named by its file id, known only once the open's answer is in.
                if case .oplock = broken.target {
                    if routes.unclaimed.count >= 64 { routes.unclaimed.removeAll() }
                    routes.unclaimed[broken.target] = broken
                }
                return nil
            }
            handler?(broken)
        }
    }

    /// A tree connect to `\\server\share`.
    public func connect(share: String) throws(SMB2SetupError) -> SMB2Tree {
        let path = "\\\\\(server)\\\(share)".utf16LE
        var body = ByteWriter()
        body.u16(9)
        body.u16(0)
        body.u16(64 + 8)
        body.u16(UInt16(path.count))
        body.append(path)
        let reply: SMB2Reply
        do {
            var request = SMB2Request(.treeConnect, body)
            // 3.1.1 signs every tree connect of a session with a key (MS-SMB2 3.2.4.2.4).
            request.alwaysSigned = dialect == 0x311 && !isGuest
            reply = try connection.send(request)
        } catch {
            throw .unreachable(error)
        }
        switch reply.status {
        case .success: break
        case .badNetworkName: throw .badNetName(reply.status)
        case .accessDenied, .networkAccessDenied: throw .accessDenied(reply.status)
        case .logonFailure: throw .logonFailure(reply.status)
        default: throw .protocolError("tree connect: \(reply.status)")
        }
        var answer = reply.body
        _ = try? answer.skip(4)
        let flags = (try? answer.u32()) ?? 0
        if flags & 0x8000 != 0 && !encrypts {
            // The share asks for encryption where the session did not.
            guard connection.security.withLock({ $0.cipher != nil }), !isGuest else { throw .accessDenied(.accessDenied) }
            connection.security.withLock { $0.encrypts = true }
        }
        return SMB2Tree(session: self, treeId: reply.treeId)
    }
}
