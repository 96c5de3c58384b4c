import Glibc
import NetUseCore
import Synchronization

/// One netuse-smb-worker process and the socket to it. Requests go one at a time: the
/// worker is single-threaded by design (libsmbclient is not thread-safe), so the lock here
/// is the channel itself. A worker that crashes or does not answer in time is killed; the
/// next request starts a new one, which connects afresh.
final class SMBWorker: Sendable {
    struct Process {
        let pid: pid_t
        let socket: Int32
        /// Counts the processes this slot has had: handles opened on an earlier one must be
        /// opened again on the current one.
        let generation: Int
    }

    /// The current process while the channel lock is held.
    final class Channel {
        fileprivate let process: Process
        fileprivate let timeout: Int32
        /// Set when the worker died, did not answer, or lost its server: it is replaced, and
        /// the handles it held are opened again on the next one.
        fileprivate(set) var lost = false
        var generation: Int { process.generation }

        fileprivate init(process: Process, timeout: Int32) {
            self.process = process
            self.timeout = timeout
        }

        /// Sends one request and returns its answer, with the frame's tail (a read's bytes,
        /// uncopied); errno answers are thrown. A dead or silent worker is EIO (the caller
        /// retires it). A write's data goes as `tail`, straight from where it lies.
        func call(_ request: WorkerRequest, tail: UnsafeRawBufferPointer? = nil) throws(Errno) -> (WorkerReply, tail: ArraySlice<UInt8>) {
            var message = WireWriter()
            request.encode(into: &message)
            let frame: [UInt8]
            do {
                try WireFrame.send(process.socket, message.bytes, tail: tail)
                frame = try WireFrame.receive(process.socket, timeout: timeout)
            } catch {
                lost = true
                throw Errno(EIO)
            }
            var answer = WireReader(frame)
            let reply = try WorkerReply.decode(&answer)
            if case .failed(let error) = reply {
                if Self.connectionErrors.contains(error.rawValue) {
                    lost = true
                    throw Errno(EIO)
                }
                throw error
            }
            return (reply, answer.rest())
        }

        func call(_ request: WorkerRequest) throws(Errno) -> WorkerReply {
            try call(request, tail: nil).0
        }

        /// What libsmbclient answers when the server went away rather than refused.
        static let connectionErrors: Set<Int32> = [
            EIO, ECONNRESET, ECONNREFUSED, ECONNABORTED, ENOTCONN, EPIPE, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, ENETDOWN,
        ]
    }

    /// The worker's process, and whether a caller has it checked out. The lock guards only
    /// the bookkeeping: a request, a process start and a connect run with the worker checked
    /// out and the lock free, so that `shutdown`, and whoever only wants an idle worker,
    /// never wait behind a server that does not answer.
    private struct Slot: Sendable {
        var process: Process?
        var generations = 0
        var checkedOut = false
        /// When the holder checked it out: one request ends within the timeout, so a
        /// checkout much older than that is stuck, not busy.
        var since: Duration = .zero
        var shutDown = false
    }

    private let connection: SMBConnection
    private let health: SMBHealth
    private let slot = Monitor(Slot())
    private let running = Atomic<Bool>(false)

    private let warming = Atomic<Bool>(false)

    /// Has a live process: work on speculation goes only to workers that need not start one.
    var isRunning: Bool { running.load(ordering: .relaxed) }

    /// True for the one caller that may start this worker in the background.
    func claimWarmUp() -> Bool {
        warming.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
    }

    func warmedUp() {
        warming.store(false, ordering: .relaxed)
    }

    init(connection: SMBConnection, health: SMBHealth) {
        self.connection = connection
        self.health = health
    }

    private var timeoutMilliseconds: Int32 {
        Int32(clamping: connection.timeout.milliseconds)
    }

    /// Runs `body` with a live worker, starting one if needed. Errors from the share pass
    /// through as their errno; a lost worker is killed and becomes EIO. A caller waits its
    /// turn however busy the worker is, but not behind a holder stuck for longer than two
    /// requests and a start may take: that is EIO (the holder's server is as good as gone).
    func withChannel<T>(_ body: (Channel) throws(Errno) -> T) throws(Errno) -> T {
        let stuck = connection.timeout * 2 + .seconds(1)
        while true {
            let turn = slot.withLock(when: { !$0.checkedOut || $0.shutDown }, within: connection.timeout) { slot -> Slot? in
                guard !slot.shutDown else { return nil }
                return checkOut(&slot)
            }
            switch turn {
            case .some(.some(let current)):
                return try withCheckedOut(current, body)
            case .some(.none):
                throw Errno(EIO)
            case .none:
                if slot.withLock({ MonotonicClock.now() - $0.since > stuck }) { throw Errno(EIO) }
            }
        }
    }

    private func checkOut(_ slot: inout Slot) -> Slot {
        slot.checkedOut = true
        slot.since = MonotonicClock.now()
        return slot
    }

    /// Runs `body` only if the worker is free now, so that path operations can go to an idle one.
    func withChannelIfIdle<T>(_ body: (Channel) throws(Errno) -> T) throws(Errno) -> T? {
        let checkedOut = slot.withLock { slot -> Slot? in
            guard !slot.checkedOut && !slot.shutDown else { return nil }
            return checkOut(&slot)
        }
        guard let current = checkedOut else { return nil }
        return try withCheckedOut(current, body)
    }

    private func withCheckedOut<T>(_ checkedOut: Slot, _ body: (Channel) throws(Errno) -> T) throws(Errno) -> T {
        var process = checkedOut.process
        var lost = false
        defer {
            let stale = slot.withLock { slot -> Process? in
                slot.checkedOut = false
                if lost || slot.shutDown {
                    let stale = slot.process
                    slot.process = nil
                    running.store(false, ordering: .relaxed)
                    return stale
                }
                return nil
            }
            if let stale { Self.stop(stale) }
        }
        if process == nil {
            guard health.mayTryToReconnect(every: min(connection.timeout, .seconds(5))) else { throw Errno(EIO) }
            let generation = slot.withLock { slot in
                slot.generations += 1
                return slot.generations
            }
            if generation > 1 { health.set(.reconnecting) }
            do throws(Errno) {
                process = try start(generation: generation)
            } catch {
                if generation > 1 {
                    health.reconnectFailed()
                    throw Errno(EIO)
                }
                throw error
            }
            slot.withLock { $0.process = process }
            health.set(.connected)
            running.store(true, ordering: .relaxed)
        }
        let channel = Channel(process: process!, timeout: timeoutMilliseconds)
        do throws(Errno) {
            let result = try body(channel)
            // Any answer from the server means it is back, for every worker of the drive.
            if health.current != .connected { health.set(.connected) }
            return result
        } catch {
            if channel.lost {
                lost = true
                health.set(.disconnected)
            }
            throw error
        }
    }

    /// Stops the worker now: one in use is killed, which ends its request with EIO, and is
    /// reaped by its holder; no later request starts another.
    func shutdown() {
        let idle = slot.withLock { slot -> Process? in
            slot.shutDown = true
            guard let process = slot.process else { return nil }
            if slot.checkedOut {
                kill(process.pid, SIGKILL)
                return nil
            }
            slot.process = nil
            running.store(false, ordering: .relaxed)
            return process
        }
        if let idle { Self.stop(idle) }
    }

    /// Starts a worker and connects it; a share that cannot be reached fails here with the
    /// worker's errno.
    private func start(generation: Int) throws(Errno) -> Process {
        var pair: [Int32] = [0, 0]
        _ = try systemCall { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pair[1], 3)
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group: a Ctrl-C meant for the daemon's terminal is the daemon's.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let program = Self.workerPath
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(program), nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, program, &actions, &attributes, argv, environ)
        close(pair[1])
        guard result == 0 else {
            close(pair[0])
            throw Errno(result)
        }
        let process = Process(pid: pid, socket: pair[0], generation: generation)
        let channel = Channel(process: process, timeout: timeoutMilliseconds)
        do {
            _ = try channel.call(.connect(url: connection.url, user: connection.user, password: connection.password,
                                          domain: connection.domain, timeoutMilliseconds: UInt32(timeoutMilliseconds),
                                          largestRead: UInt32(clamping: connection.largestRead)))
        } catch {
            Self.stop(process)
            // A worker that died while connecting says nothing of the share: call it unreachable.
            throw channel.lost ? Errno(EHOSTUNREACH) : error
        }
        return process
    }

    private static func stop(_ process: Process) {
        kill(process.pid, SIGKILL)
        close(process.socket)
        var status: Int32 = 0
        while waitpid(process.pid, &status, 0) == -1 && errno == EINTR {}
    }

    /// netuse-smb-worker beside netused (a build folder), else where `make install` puts it.
    static let workerPath: String = {
        if let override = InstancePaths.environment()["NETUSE_SMB_WORKER"] { return override }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let executable = count > 0 ? String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        let folder = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        for candidate in [folder + "/netuse-smb-worker", folder + "/../libexec/netuse/netuse-smb-worker"]
        where access(candidate, X_OK) == 0 {
            return candidate
        }
        return "/usr/local/libexec/netuse/netuse-smb-worker"
    }()
}
