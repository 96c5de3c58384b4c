import FoundationEssentials
import Glibc
import NetUseCore

/// One request, one response, over the daemon's control socket.
struct ControlClient {
    let socketPath: String

    func send(_ request: ControlRequest) throws(NetError) -> ControlResponse {
        if let folder = InstancePaths.sharedFallback(of: socketPath), !InstancePaths.isPrivate(folder, to: getuid()) {
            throw NetError(.accessDenied, detail: [
                "\(folder) is not a directory of yours that only you may use (mode 0700); nothing was sent to it."])
        }
        let fd: Int32
        do {
            fd = try UnixSocket.connect(path: socketPath)
        } catch {
            throw NetError(.workstationNotStarted, detail: [
                "No netused answers on \(socketPath) (\(error)).",
                "Start one with `netused` (as root, `systemctl start netused`), or point netusectl at",
                "another instance with --socket PATH or NETUSE_SOCKET.",
            ])
        }
        defer { close(fd) }
        // A password goes only to a daemon run by root or by the user: anyone can make a
        // socket where the user's instance would be, before it does.
        guard let server = try? UnixSocket.peer(of: fd), server.uid == 0 || server.uid == getuid() else {
            throw NetError(.accessDenied, detail: [
                "\(socketPath) is served by someone other than root or you; nothing was sent to it."])
        }
        do {
            let sent = Result { () throws(Errno) in try UnixSocket.send(fd, request.encodedLine()) }
            // A daemon that turns clients away (170) answers before it reads: its answer may
            // be waiting even though it took nothing.
            if case .failure(let error) = sent, error.rawValue != EPIPE && error.rawValue != ECONNRESET { throw error }
            // Responses are not bounded like requests: a long listing is still one line.
            var reader = LineReader(fd: fd, limit: Int.max)
            guard case .line(let line) = try reader.next() else {
                throw NetError(.deviceNotFunctioning, detail: ["netused closed the connection without an answer."])
            }
            do {
                return try JSONDecoder().decode(ControlResponse.self, from: Data(line))
            } catch {
                throw NetError(.deviceNotFunctioning, detail: ["netused answered something that is not a response."])
            }
        } catch let error as NetError {
            throw error
        } catch {
            throw NetError(.deviceNotFunctioning, detail: ["The control connection failed: \(error)."])
        }
    }
}
