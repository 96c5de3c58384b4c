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
    private let clients = Atomic<Int>(0)

    /// Bounds that keep a flood of clients, or silent ones, from starving the others: each
    /// client has a thread of its own, up to `maxClients`, and is dropped after `idleTimeout`
    /// seconds without a request.
    static let maxClients = 512
    static let idleTimeout = 30

    init(path: String, mode: mode_t, drives: DriveManager) throws(Errno) {
        self.path = path
        self.drives = drives
        listener = try UnixSocket.listen(path: path, mode: mode)
    }

    func start() {
        SystemThread.detach { [self] in
            while true {
                guard let client = try? UnixSocket.accept(listener) else { continue }
                var idle = timeval(tv_sec: Self.idleTimeout, tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &idle, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &idle, socklen_t(MemoryLayout<timeval>.size))
                guard clients.add(1, ordering: .relaxed).newValue <= Self.maxClients else {
                    clients.subtract(1, ordering: .relaxed)
                    let busy = ControlResponse(error: NetError(.busy, detail: ["netused serves \(Self.maxClients) clients at once; try again."]))
                    try? UnixSocket.send(client, busy.encodedLine())
                    close(client)
                    continue
                }
                SystemThread.detach { [self] in
                    serve(client)
                    clients.subtract(1, ordering: .relaxed)
                }
            }
        }
    }

    func stop() {
        unlink(path)
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        guard let peer = try? UnixSocket.peer(of: client) else { return }
        var reader = LineReader(fd: client, limit: ControlProtocol.maxRequestLine)
        while true {
            let response: ControlResponse
            switch (try? reader.next()) ?? .end {
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
            case .delete(let letter, let force, let wait):
                return ControlResponse(flushed: try drives.delete(letter, force: force, wait: wait, caller: peer))
            case .list(let all):
                let (drives, notice) = try drives.list(caller: peer, all: all)
                return ControlResponse(drives: drives, notice: notice)
            case .refs(let letter):
                return ControlResponse(references: try drives.references(letter, caller: peer))
            }
        } catch {
            Log.debug("request from uid \(peer.uid) refused: \(error.code.rawValue) \(error.detail.joined(separator: " "))")
            return ControlResponse(error: error)
        }
    }
}
