import Glibc
import NetUseCore
import Synchronization

/// The control socket: one thread accepts, one thread per client reads request lines and
/// answers each with one response line. A bad request costs its sender an error reply,
/// never the daemon or another client.
final class ControlServer: Sendable {
    let path: String
    private let listener: Int32
    private let drives: DriveManager
    /// Connections open now, by the uid of the peer.
    private let clients = Mutex([uid_t: Int]())
    /// A descriptor kept in reserve: when the daemon has no other, it is given up to accept
    /// a client and tell it so, instead of leaving the client queued and `accept` spinning.
    private let spare = Atomic<Int32>(-1)

    /// Bounds that keep a flood of clients, or slow ones, from starving the others: each
    /// client has a thread of its own, up to `maxClients` in all and `maxClientsPerUser` for
    /// any one user but root, and each request must arrive whole within `idleTimeout`
    /// seconds of the previous answer (of the connection, for the first).
    static let maxClients = 512
    static let maxClientsPerUser = 32
    static let idleTimeout: Duration = .seconds(30)

    init(path: String, mode: mode_t, drives: DriveManager) throws(Errno) {
        self.path = path
        self.drives = drives
        listener = try UnixSocket.listen(path: path, mode: mode)
    }

    func start() {
        spare.store(open("/dev/null", O_RDONLY | O_CLOEXEC), ordering: .relaxed)
        SystemThread.detach { [self] in
            while true {
                let accepted = Result { () throws(Errno) in try UnixSocket.accept(listener) }
                guard case .success(let client) = accepted else {
                    if case .failure(let error) = accepted, error.rawValue == EMFILE || error.rawValue == ENFILE {
                        refuseForWantOfDescriptors()
                    }
                    continue
                }
                // Answers to a client that stopped reading may wait this long, no longer.
                var idle = timeval(tv_sec: Int(Self.idleTimeout.components.seconds), tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &idle, socklen_t(MemoryLayout<timeval>.size))
                guard let peer = try? UnixSocket.peer(of: client) else {
                    close(client)
                    continue
                }
                if let refusal = admit(peer.uid) {
                    try? UnixSocket.send(client, ControlResponse(error: refusal).encodedLine())
                    close(client)
                    continue
                }
                SystemThread.detach { [self] in
                    serve(client, peer: peer)
                    clients.withLock { clients in
                        clients[peer.uid, default: 1] -= 1
                        if clients[peer.uid] == 0 { clients[peer.uid] = nil }
                    }
                }
            }
        }
    }

    /// Counts the connection in, or says why not (error 170).
    private func admit(_ uid: uid_t) -> NetError? {
        clients.withLock { clients in
            if clients.values.reduce(0, +) >= Self.maxClients {
                return NetError(.busy, detail: ["netused serves \(Self.maxClients) clients at once; try again."])
            }
            if uid != 0 && clients[uid, default: 0] >= Self.maxClientsPerUser {
                return NetError(.busy, detail: ["uid \(uid) has \(Self.maxClientsPerUser) connections open already; try again."])
            }
            clients[uid, default: 0] += 1
            return nil
        }
    }

    /// Out of descriptors: the spare one makes room to take the waiting client and tell it,
    /// then comes back; a short pause keeps a full queue from spinning the accept thread.
    private func refuseForWantOfDescriptors() {
        let reserve = spare.exchange(-1, ordering: .relaxed)
        if reserve >= 0 {
            close(reserve)
            if let client = try? UnixSocket.accept(listener) {
                let busy = NetError(.busy, detail: ["netused has no file descriptor free; try again."])
                try? UnixSocket.send(client, ControlResponse(error: busy).encodedLine())
                close(client)
            }
            spare.store(open("/dev/null", O_RDONLY | O_CLOEXEC), ordering: .relaxed)
        }
        usleep(50_000)
    }

    func stop() {
        unlink(path)
    }

    private func serve(_ client: Int32, peer: Caller) {
        defer { close(client) }
        var reader = LineReader(fd: client, limit: ControlProtocol.maxRequestLine)
        while true {
            let response: ControlResponse
            switch (try? reader.next(within: Self.idleTimeout)) ?? .end {
            case .end:
                return
            case .tooLong:
                response = ControlResponse(error: NetError(.invalidParameter, detail: [
                    "The request is longer than \(ControlProtocol.maxRequestLine) bytes."]))
            case .line(let line):
                if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }) { continue }
                response = handle(line, from: peer)
            }
            guard (try? UnixSocket.send(client, response.encodedLine())) != nil else { return }
        }
    }

    func handle(_ line: [UInt8], from peer: Caller) -> ControlResponse {
        do throws(NetError) {
            switch try ControlOperation(line: line) {
            case .use(let request):
                return ControlResponse(drive: try drives.use(request, caller: peer))
            case .delete(let letter, let force, let wait, let owner):
                return ControlResponse(flushed: try drives.delete(letter, force: force, wait: wait, caller: peer, owner: owner))
            case .list(let all):
                let (drives, notice) = try drives.list(caller: peer, all: all)
                return ControlResponse(drives: drives, notice: notice)
            case .refs(let letter, let owner):
                return ControlResponse(references: try drives.references(letter, caller: peer, owner: owner))
            }
        } catch {
            Log.debug("request from uid \(peer.uid) refused: \(error.code.rawValue) \(error.detail.joined(separator: " "))")
            return ControlResponse(error: error)
        }
    }
}
