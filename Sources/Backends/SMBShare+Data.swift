import Glibc
import NetUseCore
import Redirector
import Synchronization

/// File data on an SMB share: opens, reads with read-ahead on the courier, writes behind
/// with their failures kept per handle, and closes.
extension SMBShare {
    public func open(_ path: String, flags: Int32) throws(Errno) -> BackendHandle {
        try openFile(path, flags: flags & ~(O_CREAT | O_EXCL), mode: 0)
    }

    public func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> BackendHandle {
        try openFile(path, flags: flags | O_CREAT, mode: mode)
    }

    /// O_APPEND stays on this side: libsmbclient refuses it (ENXIO), and the kernel already
    /// sends an appending write at the end of the file.
    func openFile(_ path: String, flags requested: Int32, mode: mode_t) throws(Errno) -> BackendHandle {
        let flags = requested & ~(O_APPEND | O_NOCTTY)
        defer { if flags & (O_CREAT | O_TRUNC) != 0 { listingAhead.forget(parentOf: path) } }
        let (index, open) = try anyWorker { (channel, index) throws(Errno) in
            let file = try channel.call(.open(path: path, flags: flags, mode: mode)).opened()
            return (index, SMBFile.RemoteOpen(id: file, generation: channel.generation))
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

    func readDirect(_ file: SMBFile, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try onFile(file) { (channel, remote) throws(Errno) in
            let (reply, data) = try channel.call(.read(file: remote, offset: Int64(offset), count: UInt32(buffer.count)), tail: nil)
            guard case .read = reply else { throw Errno(EPROTO) }
            guard data.count <= buffer.count else { throw Errno(EPROTO) }
            data.withUnsafeBytes { buffer.copyMemory(from: $0) }
            return data.count
        }
    }

    /// Over the cache budget, reading ahead shrinks: prefetches beyond it are not started, and
    /// a read that would fetch a batch reads straight into the caller's buffer instead.
    static func withinBudget(_ step: ReadAhead.Step, _ state: inout SMBFile.State) -> ReadAhead.Step {
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
    func fetch(_ file: SMBFile, _ range: ReadAhead.Range, lane: Int) throws(Errno) {
        do throws(Errno) {
            let bytes = try onFile(file, lane: lane) { (channel, remote) throws(Errno) in
                let (reply, data) = try channel.call(.read(file: remote, offset: Int64(range.offset), count: UInt32(range.count)),
                                                     tail: nil)
                guard case .read = reply else { throw Errno(EPROTO) }
                return data
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
    func forgetReadAhead(_ path: String, besides writer: SMBFile? = nil) {
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
        if !behind.hasRoom(for: buffer.count, in: file) {
            drain(file)
            file.state.withLock { state in
                state.readAhead.forget()
                state.account(CacheBudget.shared)
            }
            try writeThrough(file, buffer, at: offset)
            forgetReadAhead(file.path)
            return buffer.count
        }
        behind.gather(buffer, at: offset, in: file, on: couriers[file.worker]) { [self] bytes, offset throws(Errno) in
            // A fetch that read the share before this batch landed holds what it replaced.
            defer { forgetReadAhead(file.path) }
            try writeThrough(file, bytes, at: offset)
        }
        return buffer.count
    }

    /// One write, on the share when this returns.
    func writeThrough(_ file: SMBFile, _ bytes: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) {
        let written = try onFile(file) { (channel, remote) throws(Errno) in
            try channel.call(.write(file: remote, offset: Int64(offset)), tail: bytes).0.written()
        }
        if written != bytes.count { throw Errno(EIO) }
    }

    func drain(_ file: SMBFile) {
        behind.drain(file)
    }

    public func writeFailures(_ handle: BackendHandle) -> WriteFailures {
        (try? file(handle)).map { behind.failures(of: $0) } ?? WriteFailures()
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
                if channel.generation == open.generation { _ = try channel.call(.close(file: open.id)) }
            }
        }
    }
}
