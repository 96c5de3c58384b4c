import Glibc
import NetUseCore
import Redirector
import Synchronization

/// An SMB share, served by a few netuse-smb-worker processes. Path operations go to an
/// idle worker; an open file stays with the worker that opened it, and is opened again
/// (without O_CREAT or O_TRUNC) on the worker that replaces a lost one. Each worker has a
/// courier for its files' read-ahead and write-behind.
public final class SMBShare: ShareBackend {
    private let workers: [SMBWorker]
    private let couriers: [Courier]
    private let health = SMBHealth()
    /// Files on the share are presented as the drive owner's, as mount.cifs does with uid=/gid=.
    private let owner: (uid: uid_t, gid: gid_t)
    /// Open files by handle, and how many are open per path.
    private let files = Mutex<(table: [Int64: SMBFile], next: Int64, perPath: [String: Int])>(([:], 1, [:]))
    private let turn = Atomic<Int>(0)
    /// Files whose write-behind is sending: when none is, nothing needs settling.
    private let writing = Atomic<Int>(0)
    private let listingAhead = ListingAhead()

    /// Connects the first worker at once, so that `use` answers 53, 67, 1326 or 5 before
    /// anything is mounted.
    public init(connection: SMBConnection, owner: Caller, workers count: Int) throws(NetError) {
        let health = self.health
        workers = (0..<max(1, count)).map { _ in SMBWorker(connection: connection, health: health) }
        couriers = workers.map { _ in Courier() }
        self.owner = (owner.uid, owner.gid)
        do {
            try workers[0].withChannel { _ in }
        } catch {
            throw Self.connectError(error, connection: connection)
        }
    }

    static func connectError(_ error: Errno, connection: SMBConnection) -> NetError {
        let detail = ["\(connection.url): \(error)."]
        switch error.rawValue {
        case ENOENT, ENODEV, ENXIO, ENOTDIR: return NetError(.badNetName, detail: detail)
        case EPERM: return NetError(.logonFailure, detail: detail)
        case EACCES: return NetError(connection.user.isEmpty ? .accessDenied : .logonFailure, detail: detail)
        default: return NetError(.badNetPath, detail: detail)
        }
    }

    public func disconnect() {
        couriers.forEach { $0.stop() }
        workers.forEach { $0.shutdown() }
    }

    public var status: String { health.current.status }

    /// As mount.cifs without the POSIX extensions: no devices, FIFOs, symlinks or hard links.
    public var capabilities: ShareCapabilities { [] }

    // MARK: helpers

    /// A path operation on a running worker that is free, else on the next running one in
    /// turn, while one more worker starts in the background: starting one takes longer than
    /// waiting for a busy one. A worker lost on the way costs one more try on its
    /// replacement, which connects afresh.
    private func anyWorker<T>(_ body: (SMBWorker.Channel, Int) throws(Errno) -> T) throws(Errno) -> T {
        let start = turn.add(1, ordering: .relaxed).newValue
        let order = (0..<workers.count).map { (start + $0) % workers.count }
        let running = order.filter { workers[$0].isRunning }
        var chosen = running.first ?? order[0]
        do {
            for index in running {
                chosen = index
                if let result = try workers[index].withChannelIfIdle({ (channel) throws(Errno) in try body(channel, index) }) {
                    return result
                }
            }
            if let idle = order.first(where: { !workers[$0].isRunning }), !running.isEmpty {
                warmUp(idle)
            }
            chosen = running.first ?? order[0]
            return try workers[chosen].withChannel { (channel) throws(Errno) in try body(channel, chosen) }
        } catch where error.rawValue == EIO && health.current != .connected {
            return try workers[chosen].withChannel { (channel) throws(Errno) in try body(channel, chosen) }
        }
    }

    private func anyWorker<T>(_ body: (SMBWorker.Channel) throws(Errno) -> T) throws(Errno) -> T {
        try anyWorker { (channel, _) throws(Errno) in try body(channel) }
    }

    /// Starts a worker on its courier, once.
    private func warmUp(_ index: Int) {
        guard workers[index].claimWarmUp() else { return }
        couriers[index].speculate({ [self] in
            _ = try? workers[index].withChannel { _ in }
            workers[index].warmedUp()
        }, cancel: { [self] in workers[index].warmedUp() })
    }

    private func file(_ handle: BackendHandle) throws(Errno) -> SMBFile {
        guard let file = files.withLock({ $0.table[handle.rawValue] }) else { throw Errno(EBADF) }
        return file
    }

    /// The worker of a file's lane: lane 0 is the worker that opened it.
    private func worker(of file: SMBFile, lane: Int) -> Int {
        (file.worker + lane) % workers.count
    }

    /// An operation on an open file, on the worker of `lane`, opening it there first if it
    /// was not yet (or that worker was replaced); one more try when the worker is lost on
    /// the way.
    private func onFile<T>(_ file: SMBFile, lane: Int = 0, _ body: (SMBWorker.Channel, UInt32) throws(Errno) -> T) throws(Errno) -> T {
        do {
            return try onFileOnce(file, lane: lane, body)
        } catch where error.rawValue == EIO && health.current != .connected {
            return try onFileOnce(file, lane: lane, body)
        }
    }

    private func onFileOnce<T>(_ file: SMBFile, lane: Int, _ body: (SMBWorker.Channel, UInt32) throws(Errno) -> T) throws(Errno) -> T {
        let index = worker(of: file, lane: lane)
        return try workers[index].withChannel { (channel) throws(Errno) -> T in
            if let open = file.state.withLock({ $0.opens[index] }), open.generation == channel.generation {
                return try body(channel, open.id)
            }
            // Other lanes only read ahead: a second open for writing may be refused where
            // the first was allowed (a guest that created a file may not open it again to write).
            let flags = lane == 0 ? file.flags & ~(O_CREAT | O_TRUNC | O_EXCL) : O_RDONLY
            if file.state.withLock({ $0.closed }) { throw Errno(EBADF) }
            var reply = try channel.request(.open) { message in
                message.string(file.path)
                message.i32(flags)
                message.u32(0)
            }
            let id = try reply.u32()
            let recorded = file.state.withLock { state in
                if !state.closed { state.opens[index] = SMBFile.RemoteOpen(id: id, generation: channel.generation) }
                return !state.closed
            }
            guard recorded else {
                _ = try? channel.request(.close) { $0.u32(id) }
                throw Errno(EBADF)
            }
            return try body(channel, id)
        }
    }

    /// Waits until the write-behind of every open file `matching` is on the share, so that
    /// what the share answers next includes it.
    private func settle(_ matching: (SMBFile) -> Bool) {
        guard writing.load(ordering: .acquiring) > 0 else { return }
        for file in files.withLock({ $0.table.values.filter(matching) }) {
            file.state.withLock(when: { $0.writeBehind.isIdle }) { _ in }
        }
    }

    private func settle(path: String) {
        settle { $0.path == path }
    }

    private func owned(_ attributes: stat) -> stat {
        var result = attributes
        result.st_uid = owner.uid
        result.st_gid = owner.gid
        return result
    }

    private func simple(_ operation: SMBOperation, _ arguments: @escaping (inout WireWriter) -> Void) throws(Errno) {
        _ = try anyWorker { (channel) throws(Errno) in try channel.request(operation, arguments) }
    }

    // MARK: attributes

    public func attributes(of path: String) throws(Errno) -> stat {
        settle(path: path)
        return try anyWorker { (channel) throws(Errno) in
            var reply = try channel.request(.attributes) { $0.string(path) }
            return owned(try reply.attributes())
        }
    }

    /// A handle opened write-only may not read its own attributes over SMB (no
    /// FILE_READ_ATTRIBUTES in its access mask): the path answers for it then.
    public func attributes(of handle: BackendHandle) throws(Errno) -> stat {
        let file = try file(handle)
        settle(path: file.path)
        do {
            return try onFile(file) { (channel, remote) throws(Errno) in
                var reply = try channel.request(.handleAttributes) { $0.u32(remote) }
                return owned(try reply.attributes())
            }
        } catch where error.rawValue == EINVAL || error.rawValue == EACCES {
            return try attributes(of: file.path)
        }
    }

    public func setAttributes(_ changes: AttributeChanges, of path: String, handle: BackendHandle?) throws(Errno) -> stat {
        // SMB without POSIX extensions has no owners to change, as mount.cifs says.
        if changes.uid.map({ $0 != owner.uid }) == true || changes.gid.map({ $0 != owner.gid }) == true {
            throw Errno(EPERM)
        }
        settle(path: path)
        defer { listingAhead.forget(parentOf: path) }
        if let size = changes.size {
            // Before, and again after: a fetch may read the old end while the truncate is
            // on its way, and an end of file read ahead would shorten the next read.
            forgetReadAhead(path)
            defer { forgetReadAhead(path) }
            if let handle {
                _ = try onFile(try file(handle)) { (channel, remote) throws(Errno) in
                    try channel.request(.handleTruncate) { $0.u32(remote); $0.i64(Int64(size)) }
                }
            } else {
                try simple(.truncate) { $0.string(path); $0.i64(Int64(size)) }
            }
        }
        if let mode = changes.mode {
            try simple(.setMode) { $0.string(path); $0.u32(mode) }
        }
        if changes.changesTimes {
            let current = try attributes(of: path)
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            func resolve(_ time: timespec?, _ existing: timespec) -> timespec {
                guard let time else { return existing }
                if time.tv_nsec == AttributeChanges.timeNow.tv_nsec { return now }
                if time.tv_nsec == AttributeChanges.timeOmit.tv_nsec { return existing }
                return time
            }
            let access = resolve(changes.accessTime, current.st_atim)
            let modification = resolve(changes.modificationTime, current.st_mtim)
            try simple(.setTimes) { message in
                message.string(path)
                for time in [access, modification] {
                    message.i64(Int64(time.tv_sec))
                    message.i64(Int64(time.tv_nsec))
                }
            }
        }
        if let handle { return try attributes(of: handle) }
        return try attributes(of: path)
    }

    /// A listing fetched ahead when there is one; then the subdirectories' listings are
    /// fetched ahead on the couriers, one level below the walker.
    public func list(_ path: String) throws(Errno) -> [DirectoryEntry] {
        settle { _ in true }
        let entries: [DirectoryEntry]
        if let ready = listingAhead.take(path) {
            entries = ready
        } else {
            entries = try anyWorker { (channel) throws(Errno) in try fetchListing(path, on: channel) }
        }
        let running = workers.indices.filter { workers[$0].isRunning }
        let first = turn.add(1, ordering: .relaxed).newValue
        for (index, claim) in (running.isEmpty ? [] : listingAhead.claim(subdirectoriesOf: path, in: entries)).enumerated() {
            let worker = running[(first + index) % running.count]
            couriers[worker].speculate({ [self] in
                // Listing while a write-behind is on its way would show sizes it is about
                // to change; waiting for it here could wait on this very courier.
                let entries = writing.load(ordering: .acquiring) > 0 ? nil
                    : try? workers[worker].withChannel { (channel) throws(Errno) in try fetchListing(claim.path, on: channel) }
                listingAhead.fetched(claim.path, epoch: claim.epoch, entries)
            }, cancel: { [self] in listingAhead.fetched(claim.path, epoch: claim.epoch, nil) })
        }
        return entries
    }

    private func fetchListing(_ path: String, on channel: SMBWorker.Channel) throws(Errno) -> [DirectoryEntry] {
        var reply = try channel.request(.list) { $0.string(path) }
        let count = try reply.u32()
        var entries: [DirectoryEntry] = []
        entries.reserveCapacity(Int(count))
        for _ in 0..<count {
            let name = try reply.string()
            entries.append(DirectoryEntry(name: name, attributes: owned(try reply.attributes())))
        }
        return entries
    }

    // MARK: file data

    public func open(_ path: String, flags: Int32) throws(Errno) -> BackendHandle {
        try openFile(path, flags: flags & ~(O_CREAT | O_EXCL), mode: 0)
    }

    public func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> BackendHandle {
        try openFile(path, flags: flags | O_CREAT, mode: mode)
    }

    /// O_APPEND stays on this side: libsmbclient refuses it (ENXIO), and the kernel already
    /// sends an appending write at the end of the file.
    private func openFile(_ path: String, flags requested: Int32, mode: mode_t) throws(Errno) -> BackendHandle {
        let flags = requested & ~(O_APPEND | O_NOCTTY)
        defer { if flags & (O_CREAT | O_TRUNC) != 0 { listingAhead.forget(parentOf: path) } }
        let (index, open) = try anyWorker { (channel, index) throws(Errno) in
            var reply = try channel.request(.open) { message in
                message.string(path)
                message.i32(flags)
                message.u32(mode)
            }
            return (index, SMBFile.RemoteOpen(id: try reply.u32(), generation: channel.generation))
        }
        let file = SMBFile(worker: index, path: path, flags: flags, open: open, workers: workers.count)
        return files.withLock { files in
            let id = files.next
            files.next += 1
            files.table[id] = file
            files.perPath[path, default: 0] += 1
            return BackendHandle(id)
        }
    }

    /// Sequential reads are served from batches read ahead on the file's courier; others
    /// go to the share as they come.
    public func read(_ handle: BackendHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        let file = try file(handle)
        settle(path: file.path)
        var done = 0
        while done < buffer.count {
            let position = offset + off_t(done)
            let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
            let step = file.state.withLock(when: { !$0.readAhead.mustWait(for: position) }) { state in
                let step = state.readAhead.step(at: position, into: rest, now: MonotonicClock.now())
                return Self.withinBudget(step, &state)
            }
            switch step {
            case .copied(let count, let prefetches):
                done += count
                for range in prefetches {
                    let lane = file.state.withLock { state in
                        defer { state.turn += 1 }
                        return state.turn % workers.count
                    }
                    couriers[worker(of: file, lane: lane)].speculate({ [self] in _ = try? fetch(file, range, lane: lane) },
                                                                     cancel: { file.state.withLock { $0.readAhead.fetchEnded(range) } })
                }
            case .endOfFile:
                return done
            case .fetch(let range):
                try fetch(file, range, lane: 0)
            case .direct:
                let count = try readDirect(file, into: rest, at: position)
                return done + count
            }
        }
        return done
    }

    private func readDirect(_ file: SMBFile, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try onFile(file) { (channel, remote) throws(Errno) in
            var reply = try channel.request(.read) { message in
                message.u32(remote)
                message.i64(Int64(offset))
                message.u32(UInt32(buffer.count))
            }
            let data = try reply.data()
            guard data.count <= buffer.count else { throw Errno(EPROTO) }
            data.withUnsafeBytes { buffer.copyMemory(from: $0) }
            return data.count
        }
    }

    /// Over the cache budget, reading ahead shrinks: prefetches beyond it are not started, and
    /// a read that would fetch a batch reads straight into the caller's buffer instead.
    private static func withinBudget(_ step: ReadAhead.Step, _ state: inout SMBFile.State) -> ReadAhead.Step {
        let budget = CacheBudget.shared
        state.account(budget)
        switch step {
        case .copied(let count, var prefetches):
            while let last = prefetches.last, budget.inUse > budget.limit || state.held > budget.perFile {
                state.readAhead.fetchEnded(last)
                prefetches.removeLast()
                state.account(budget)
            }
            return .copied(count, prefetch: prefetches)
        case .fetch(let range) where budget.inUse > budget.limit || state.held > budget.perFile:
            state.readAhead.fetchEnded(range)
            state.account(budget)
            return .direct
        default:
            return step
        }
    }

    /// Reads a batch for the read-ahead; it keeps the received frame, uncopied.
    private func fetch(_ file: SMBFile, _ range: ReadAhead.Range, lane: Int) throws(Errno) {
        do throws(Errno) {
            let bytes = try onFile(file, lane: lane) { (channel, remote) throws(Errno) in
                var reply = try channel.request(.read) { message in
                    message.u32(remote)
                    message.i64(Int64(range.offset))
                    message.u32(UInt32(range.count))
                }
                return try reply.data()
            }
            guard bytes.count <= range.count else { throw Errno(EPROTO) }
            file.state.withLock { state in
                state.readAhead.fetched(bytes, for: range, now: MonotonicClock.now())
                state.account(CacheBudget.shared)
            }
        } catch {
            file.state.withLock { state in
                state.readAhead.fetchEnded(range)
                state.account(CacheBudget.shared)
            }
            throw error
        }
    }

    /// What was read ahead of `path` is stale; `besides` forgets its own under its own lock.
    private func forgetReadAhead(_ path: String, besides writer: SMBFile? = nil) {
        // Most paths have one file open: then there is no other to look for.
        guard files.withLock({ $0.perPath[path, default: 0] }) > (writer == nil ? 0 : 1) else { return }
        for file in files.withLock({ $0.table.values.filter { $0.path == path && $0 !== writer } }) {
            file.state.withLock { state in
                state.readAhead.forget()
                state.account(CacheBudget.shared)
            }
        }
    }

    /// Gathered and sent behind the writer (write-behind). A failure of a batch sent behind
    /// is counted in the file's `writeFailures`, which every descriptor open on it hears of
    /// at its next fsync or close. O_SYNC and O_DSYNC need nothing here: the kernel follows
    /// each of their writes with an FSYNC.
    public func write(_ handle: BackendHandle, from buffer: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        let file = try file(handle)
        forgetReadAhead(file.path, besides: file)
        defer { listingAhead.forget(parentOf: file.path) }
        // Over the cache budget the writer waits for the share: what is gathered goes
        // first, then this write, straight through.
        if !file.state.withLock({ CacheBudget.shared.hasRoom(for: buffer.count, holding: $0.held) }) {
            drain(file)
            file.state.withLock { state in
                state.readAhead.forget()
                state.account(CacheBudget.shared)
            }
            try writeThrough(file, buffer, at: offset)
            forgetReadAhead(file.path)
            return buffer.count
        }
        let start = file.state.withLock(when: { $0.writeBehind.accepts(buffer.count, at: offset) }) { state in
            state.readAhead.forget()
            defer { state.account(CacheBudget.shared) }
            return state.writeBehind.gather(buffer, at: offset)
        }
        if start {
            writing.add(1, ordering: .releasing)
            couriers[file.worker].send { [self] in sendBehind(file) }
        }
        return buffer.count
    }

    /// A courier's part of write-behind: sends what is gathered until nothing is.
    private func sendBehind(_ file: SMBFile) {
        while let (offset, bytes) = file.state.withLock({ state in
            defer { state.account(CacheBudget.shared) }
            return state.writeBehind.takeBatch()
        }) {
            do throws(Errno) {
                try bytes.withUnsafeBytes { bytes in Result { () throws(Errno) in try writeThrough(file, bytes, at: offset) } }.get()
            } catch {
                file.state.withLock { $0.writeBehind.failures.record(error) }
            }
            // A fetch that read the share before this batch landed holds what it replaced.
            forgetReadAhead(file.path)
        }
        writing.subtract(1, ordering: .releasing)
    }

    /// One write, on the share when this returns.
    private func writeThrough(_ file: SMBFile, _ bytes: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) {
        let written = try onFile(file) { (channel, remote) throws(Errno) in
            var reply = try channel.request(.write, tail: bytes) { message in
                message.u32(remote)
                message.i64(Int64(offset))
                message.u32(UInt32(bytes.count))
            }
            return Int(try reply.u32())
        }
        if written != bytes.count { throw Errno(EIO) }
    }

    /// Waits until the file's write-behind is on the share (or refused, and counted).
    private func drain(_ file: SMBFile) {
        file.state.withLock(when: { $0.writeBehind.isIdle }) { _ in }
    }

    public func writeFailures(_ handle: BackendHandle) -> WriteFailures {
        (try? file(handle))?.state.withLock { $0.writeBehind.failures } ?? WriteFailures()
    }

    /// A close(2): what the file's writers wrote is on the share when this returns.
    public func flush(_ handle: BackendHandle) throws(Errno) {
        drain(try file(handle))
    }

    /// What was written is on the share once the write-behind is (libsmbclient has no
    /// flush of its own to ask the server for).
    public func sync(_ handle: BackendHandle, dataOnly: Bool) throws(Errno) {
        drain(try file(handle))
    }

    public func revived(_ handle: BackendHandle) {
        (try? file(handle))?.state.withLock { state in
            state.readAhead.forget()
            state.account(CacheBudget.shared)
        }
    }

    public func close(_ handle: BackendHandle) {
        guard let file = try? file(handle) else { return }
        drain(file)
        files.withLock { files in
            files.table.removeValue(forKey: handle.rawValue)
            files.perPath[file.path, default: 1] -= 1
            if files.perPath[file.path] == 0 { files.perPath.removeValue(forKey: file.path) }
        }
        let opens = file.state.withLock { state in
            state.closed = true
            state.account(CacheBudget.shared)
            return state.opens
        }
        for (index, open) in opens {
            _ = try? workers[index].withChannel { (channel) throws(Errno) in
                // A file of a replaced worker died with it.
                if channel.generation == open.generation { _ = try channel.request(.close) { $0.u32(open.id) } }
            }
        }
    }

    // MARK: names

    public func makeDirectory(_ path: String, mode: mode_t, caller: Caller) throws(Errno) {
        defer { listingAhead.forget(parentOf: path) }
        try simple(.makeDirectory) { $0.string(path); $0.u32(mode) }
    }

    public func removeDirectory(_ path: String) throws(Errno) {
        settle { $0.path.hasPrefix(path + "/") }
        defer {
            listingAhead.forget(parentOf: path)
            listingAhead.forget(path, subtree: true)
        }
        try simple(.removeDirectory) { $0.string(path) }
    }

    public func unlink(_ path: String) throws(Errno) {
        settle(path: path)
        defer { listingAhead.forget(parentOf: path) }
        try simple(.unlink) { $0.string(path) }
    }

    public func rename(_ from: String, to: String, flags: RenameFlags) throws(Errno) {
        settle { $0.path == from || $0.path.hasPrefix(from + "/") }
        if flags.contains(.noReplace), (try? attributes(of: to)) != nil { throw Errno(EEXIST) }
        defer {
            for path in [from, to] {
                listingAhead.forget(parentOf: path)
                listingAhead.forget(path, subtree: true)
            }
        }
        try simple(.rename) { $0.string(from); $0.string(to) }
    }

    public func statistics() throws(Errno) -> statvfs {
        try anyWorker { (channel) throws(Errno) in
            var reply = try channel.request(.statistics) { $0.string("") }
            var result = statvfs()
            result.f_bsize = UInt(try reply.u64())
            result.f_frsize = UInt(try reply.u64())
            result.f_blocks = UInt(try reply.u64())
            result.f_bfree = UInt(try reply.u64())
            result.f_bavail = UInt(try reply.u64())
            result.f_files = UInt(try reply.u64())
            result.f_ffree = UInt(try reply.u64())
            result.f_namemax = UInt(try reply.u64())
            // libsmbclient answers bytes per sector and sectors per allocation unit; blocks
            // count allocation units.
            let unit = result.f_bsize * max(result.f_frsize, 1)
            result.f_bsize = unit
            result.f_frsize = unit
            if result.f_namemax == 0 { result.f_namemax = 255 }  // SMB names: 255 UTF-16 units
            return result
        }
    }
}
