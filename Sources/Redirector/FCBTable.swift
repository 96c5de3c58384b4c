import Glibc
import NetUseCore

/// The handle cache of one drive: FCBs by path, their ServerOpens, the deferred list and
/// the FileHandles. A state machine without I/O: every call that retires a ServerOpen
/// returns its backend handle for the caller to close after letting go of the lock.
struct FCBTable {
    let closeTimeout: Duration
    let deferredLimit: Int
    private(set) var counters = HandleCounters()

    private var fcbs: [UInt64: FCB] = [:]
    private var byPath: [String: UInt64] = [:]
    private var serverOpens: [UInt64: ServerOpen] = [:]
    /// Deferred ServerOpens, oldest first.
    private var deferred: [UInt64] = []
    private var handles: [UInt64: FileHandle] = [:]
    private var nextID: UInt64 = 1
    /// Names unlinked while a process held them open, on a share that refuses to remove an
    /// open file (SMB without FILE_SHARE_DELETE): gone for the drive at once, removed from
    /// the share when their last ServerOpen closes (Windows calls this delete pending).
    private var pendingDeletes: Set<String> = []
    /// Pending deletes whose last ServerOpen just closed: the share may remove them now.
    private var dueDeletes: [String] = []

    init(closeTimeout: Duration, deferredLimit: Int) {
        self.closeTimeout = closeTimeout
        self.deferredLimit = deferredLimit
    }

    var handleCount: Int { handles.count }
    var deferredCount: Int { deferred.count }

    subscript(handle id: UInt64) -> FileHandle? { handles[id] }

    /// Any handle open on the node: how an unlinked but open file is still reached.
    func firstHandle(on node: UInt64) -> FileHandle? { handles.values.first { $0.node == node } }

    var liveHandles: [FileHandle] { Array(handles.values) }

    // MARK: opening

    /// Whether a ServerOpen of this kind exists for the path: only then is it worth asking
    /// the share for the file's attributes to see whether the open can collapse onto it.
    func mayCollapse(path: String, kind: OpenKind) -> Bool {
        guard let fcb = byPath[path].flatMap({ fcbs[$0] }) else { return false }
        return fcb.serverOpens.contains { serverOpens[$0]?.kind == kind }
    }

    /// Serves an open from a ServerOpen of the same kind on the same file, preferring one
    /// that is open over a deferred one. `current` is what the share says of the path now;
    /// deferred ServerOpens that reach another file than the path names are retired.
    mutating func collapse(path: String, kind: OpenKind, current: stat, node: UInt64, opener: Caller, now: Duration)
        -> (handle: UInt64?, keepCache: Bool, retired: [BackendHandle], revived: BackendHandle?)
    {
        guard let fcbID = byPath[path], let fcb = fcbs[fcbID] else { return (nil, false, [], nil) }
        let identity = FileIdentity(current)
        var retired: [BackendHandle] = []
        for id in fcb.serverOpens where serverOpens[id]!.isDeferred && serverOpens[id]!.identity != identity {
            retired.append(retire(id))
            counters.invalidated += 1
        }
        let candidates = (fcbs[fcbID]?.serverOpens ?? []).compactMap { serverOpens[$0] }
            .filter { $0.kind == kind && $0.identity == identity }
        guard let chosen = candidates.first(where: { !$0.isDeferred }) ?? candidates.last else {
            return (nil, false, retired, nil)
        }
        let validator = Validator(current)
        let keepCache = fcbs[fcbID]!.validator == validator
        fcbs[fcbID]!.validator = validator
        let served = serve(chosen, node: node, opener: opener)
        return (served.handle, keepCache, retired, served.revived)
    }

    /// Serves an open from a ServerOpen of the same kind whose lease lets it cache reads:
    /// the share would break the lease before anyone changed the file, so nothing needs
    /// revalidating and the kernel may keep its pages.
    mutating func collapseUnderReadLease(path: String, kind: OpenKind, node: UInt64, opener: Caller)
        -> (handle: UInt64, revived: BackendHandle?)?
    {
        guard let fcb = byPath[path].flatMap({ fcbs[$0] }) else { return nil }
        let candidates = fcb.serverOpens.compactMap { serverOpens[$0] }.filter { $0.kind == kind && $0.cachesReads }
        guard let chosen = candidates.first(where: { !$0.isDeferred }) ?? candidates.last else { return nil }
        counters.revivedUnderLease += 1
        return serve(chosen, node: node, opener: opener)
    }

    /// A new FileHandle on an existing ServerOpen: a deferred one is revived (the backend
    /// handle is returned for the backend to hear of it), an open one shared.
    private mutating func serve(_ chosen: ServerOpen, node: UInt64, opener: Caller) -> (handle: UInt64, revived: BackendHandle?) {
        if chosen.isDeferred {
            serverOpens[chosen.id]!.deferredUntil = nil
            deferred.removeAll { $0 == chosen.id }
            counters.revived += 1
        } else {
            counters.collapsed += 1
        }
        counters.opens += 1
        return (attach(chosen.id, node: node, opener: opener), chosen.isDeferred ? chosen.backend : nil)
    }

    /// Records a ServerOpen the share just opened, with its first FileHandle.
    mutating func insert(path: String, kind: OpenKind, backend: BackendHandle, caching: HandleCaching?, attributes: stat,
                         node: UInt64, opener: Caller, now: Duration) -> (handle: UInt64, keepCache: Bool) {
        let fcbID: UInt64
        if let existing = byPath[path] {
            fcbID = existing
        } else {
            fcbID = makeID()
            fcbs[fcbID] = FCB(id: fcbID, path: path)
            byPath[path] = fcbID
        }
        let validator = Validator(attributes)
        let keepCache = fcbs[fcbID]!.validator == validator
        fcbs[fcbID]!.validator = validator
        let id = makeID()
        serverOpens[id] = ServerOpen(id: id, fcb: fcbID, backend: backend, kind: kind,
                                     identity: FileIdentity(attributes), openedAt: now, node: node, caching: caching)
        fcbs[fcbID]!.serverOpens.append(id)
        counters.opens += 1
        counters.backendOpens += 1
        return (attach(id, node: node, opener: opener), keepCache)
    }

    /// Write-behind failures the handle was not told of yet. The first handle to hear of
    /// one does not hide it from the others; `advance` (an fsync) marks it told.
    mutating func untold(_ failures: WriteFailures, to id: UInt64, advance: Bool) -> Errno? {
        guard let seen = handles[id]?.failuresSeen, failures.count > seen else { return nil }
        if advance { handles[id]!.failuresSeen = failures.count }
        return failures.latest
    }

    /// A new handle hears only of failures after it opened.
    mutating func told(_ failures: WriteFailures, to id: UInt64) {
        handles[id]?.failuresSeen = failures.count
    }

    // MARK: closing

    /// Drops a FileHandle. Its ServerOpen's last one defers it, or closes it when deferral
    /// is off, its lease does not let it keep the handle, its FCB has no path any more, or
    /// the list is full (then the oldest goes).
    mutating func release(_ id: UInt64, now: Duration) -> [BackendHandle] {
        guard let handle = handles.removeValue(forKey: id), var open = serverOpens[handle.serverOpen] else { return [] }
        open.references -= 1
        serverOpens[open.id] = open
        guard open.references == 0 else { return [] }
        guard open.mayDefer, closeTimeout > .zero, deferredLimit > 0, let path = fcbs[open.fcb]?.path,
              !pendingDeletes.contains(path) else {
            return [retire(open.id)]
        }
        serverOpens[open.id]!.deferredUntil = now + closeTimeout
        if open.caching != nil { counters.deferredUnderLease += 1 }
        deferred.append(open.id)
        var retired: [BackendHandle] = []
        while deferred.count > deferredLimit {
            retired.append(retire(deferred[0]))
            counters.evicted += 1
        }
        return retired
    }

    /// Closes the deferred ServerOpens whose time ran out.
    mutating func expire(now: Duration) -> [BackendHandle] {
        var retired: [BackendHandle] = []
        while let oldest = deferred.first, let until = serverOpens[oldest]?.deferredUntil, until <= now {
            retired.append(retire(oldest))
            counters.expired += 1
        }
        return retired
    }

    /// Before an unlink, rename, rmdir or truncate: the deferred ServerOpens of the path
    /// (and, for a directory, of every path below it) are closed first.
    mutating func discardDeferred(at path: String, subtree: Bool) -> [BackendHandle] {
        let doomed = deferred.filter { id in
            guard let fcbPath = fcbs[serverOpens[id]!.fcb]?.path else { return false }
            return Self.path(fcbPath, isAt: path, subtree: subtree)
        }
        counters.invalidated += doomed.count
        return doomed.map { retire($0) }
    }

    /// Before an open: the deferred ServerOpens of the path that the share opened before
    /// `time` are closed rather than revived, but for those under a read lease, which the
    /// share breaks before the file changes.
    mutating func discardDeferred(at path: String, openedBefore time: Duration) -> [BackendHandle] {
        guard let fcb = byPath[path].flatMap({ fcbs[$0] }) else { return [] }
        let doomed = fcb.serverOpens.filter { id in
            let open = serverOpens[id]!
            return open.isDeferred && open.openedAt < time && !open.cachesReads
        }
        counters.invalidated += doomed.count
        return doomed.map { retire($0) }
    }

    /// Whether a ServerOpen that FileHandles hold is open at the path (or below it).
    func hasOpen(at path: String, subtree: Bool) -> Bool {
        serverOpens.values.contains { open in
            guard !open.isDeferred, let fcbPath = fcbs[open.fcb]?.path else { return false }
            return Self.path(fcbPath, isAt: path, subtree: subtree)
        }
    }

    /// Delete: every deferred ServerOpen is closed; the count says how many.
    mutating func flushDeferred() -> [BackendHandle] {
        let all = deferred
        counters.flushed += all.count
        return all.map { retire($0) }
    }

    /// Forced delete: every ServerOpen goes, open or not, and no FileHandle is left.
    mutating func retireAll() -> [BackendHandle] {
        handles.removeAll()
        return serverOpens.keys.sorted().map { retire($0) }
    }

    /// A lease break: the ServerOpen may cache only `caching` from now on. Deferred without
    /// the handle lease, it is closed (returned); the node says whose kernel caches go.
    mutating func broke(_ backend: BackendHandle, caching: HandleCaching) -> (retired: [BackendHandle], node: UInt64?) {
        guard let open = serverOpens.values.first(where: { $0.backend == backend }) else { return ([], nil) }
        serverOpens[open.id]!.caching = caching
        serverOpens[open.id]!.breaks += 1
        counters.breaks += 1
        guard open.isDeferred, !caching.contains(.handle) else { return ([], open.node) }
        counters.closedByBreak += 1
        return ([retire(open.id)], open.node)
    }

    // MARK: locks

    /// The ServerOpen a FileHandle locks through, and every ServerOpen of its file (a
    /// process's POSIX locks are on the file, whichever descriptor took them).
    func lockTargets(of handle: UInt64) -> (serverOpen: UInt64, backend: BackendHandle, file: [(UInt64, BackendHandle)])? {
        guard let fileHandle = handles[handle], let open = serverOpens[fileHandle.serverOpen] else { return nil }
        let siblings = (fcbs[open.fcb]?.serverOpens ?? [open.id]).compactMap { id in serverOpens[id].map { (id, $0.backend) } }
        return (open.id, open.backend, siblings)
    }

    mutating func markLocked(_ serverOpen: UInt64) {
        serverOpens[serverOpen]?.locked = true
    }

    // MARK: names

    /// An unlink the share refused because the file is open: when processes of this drive
    /// hold it, the name is deleted pending (its deferred ServerOpens go now, returned for
    /// closing) and nil is not returned; nil when nothing here holds it open.
    mutating func markDeletePending(_ path: String) -> [BackendHandle]? {
        guard let fcb = byPath[path].flatMap({ fcbs[$0] }),
              fcb.serverOpens.contains(where: { !serverOpens[$0]!.isDeferred }) else { return nil }
        pendingDeletes.insert(path)
        return fcb.serverOpens.filter { serverOpens[$0]!.isDeferred }.map { retire($0) }
    }

    func isDeletePending(_ path: String) -> Bool {
        !pendingDeletes.isEmpty && pendingDeletes.contains(path)
    }

    /// The names in `directory` that are deleted pending.
    func deletesPending(in directory: String) -> Set<String> {
        guard !pendingDeletes.isEmpty else { return [] }
        let prefix = directory.isEmpty ? "" : directory + "/"
        return Set(pendingDeletes.compactMap { path in
            guard path.hasPrefix(prefix) else { return nil }
            let name = path.dropFirst(prefix.count)
            return name.contains("/") ? nil : String(name)
        })
    }

    /// Pending deletes that are due: the caller removes them from the share, then calls
    /// `deleted` for each, until which the name stays hidden and unopenable.
    mutating func takeDueDeletes() -> [String] {
        defer { dueDeletes.removeAll() }
        return dueDeletes
    }

    mutating func deleted(_ path: String) {
        pendingDeletes.remove(path)
    }

    /// After an unlink or rmdir: open FCBs there keep their handles but lose their name.
    mutating func unlinked(_ path: String, subtree: Bool) {
        for (fcbPath, id) in byPath where Self.path(fcbPath, isAt: path, subtree: subtree) {
            byPath[fcbPath] = nil
            fcbs[id]?.path = nil
        }
    }

    /// After a rename: FCBs at and below `from` now live at and below `to`; whatever stood
    /// at `to` was replaced and loses its name.
    mutating func renamed(_ from: String, to: String) {
        unlinked(to, subtree: true)
        rekey([(from, to)])
    }

    /// After RENAME_EXCHANGE: the two subtrees trade names.
    mutating func exchanged(_ first: String, _ second: String) {
        rekey([(first, second), (second, first)])
    }

    // MARK: inspection

    func references(now: Duration) -> [ServerOpenReference] {
        var holders: [UInt64: [FileHandle]] = [:]
        for handle in handles.values { holders[handle.serverOpen, default: []].append(handle) }
        return serverOpens.values.sorted { $0.id < $1.id }.map { open in
            let held = holders[open.id] ?? []
            return ServerOpenReference(
                path: fcbs[open.fcb]?.path.map { "/" + $0 } ?? "(deleted)",
                state: open.isDeferred ? "deferred" : "open",
                secondsLeft: open.deferredUntil.map { max(0, ($0 - now).seconds) },
                handles: held.count,
                pids: Array(Set(held.map(\.opener.pid))).sorted(),
                access: open.kind.access.rawValue,
                ageSeconds: (now - open.openedAt).seconds,
                lease: open.caching?.description,
                breaks: open.breaks)
        }
    }

    // MARK: helpers

    static func path(_ candidate: String, isAt path: String, subtree: Bool) -> Bool {
        if candidate == path { return true }
        guard subtree else { return false }
        return path.isEmpty || candidate.hasPrefix(path + "/")
    }

    private mutating func makeID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    private mutating func attach(_ serverOpen: UInt64, node: UInt64, opener: Caller) -> UInt64 {
        serverOpens[serverOpen]!.references += 1
        let id = makeID()
        handles[id] = FileHandle(node: node, serverOpen: serverOpen, backend: serverOpens[serverOpen]!.backend,
                                 opener: opener)
        return id
    }

    /// Takes a ServerOpen out of every index; its FCB goes with its last ServerOpen.
    private mutating func retire(_ id: UInt64) -> BackendHandle {
        let open = serverOpens.removeValue(forKey: id)!
        if open.isDeferred { deferred.removeAll { $0 == id } }
        if var fcb = fcbs[open.fcb] {
            fcb.serverOpens.removeAll { $0 == id }
            if fcb.serverOpens.isEmpty {
                fcbs[fcb.id] = nil
                if let path = fcb.path, byPath[path] == fcb.id { byPath[path] = nil }
                if let path = fcb.path, pendingDeletes.contains(path) { dueDeletes.append(path) }
            } else {
                fcbs[fcb.id] = fcb
            }
        }
        return open.backend
    }

    private mutating func rekey(_ moves: [(from: String, to: String)]) {
        var placed: [(String, UInt64)] = []
        for (from, to) in moves {
            for (fcbPath, id) in byPath where Self.path(fcbPath, isAt: from, subtree: true) {
                byPath[fcbPath] = nil
                let moved = to + fcbPath.dropFirst(from.count)
                fcbs[id]?.path = moved
                placed.append((moved, id))
            }
        }
        for (path, id) in placed { byPath[path] = id }
        if !pendingDeletes.isEmpty {
            pendingDeletes = Set(pendingDeletes.map { path in
                guard let (from, to) = moves.first(where: { Self.path(path, isAt: $0.from, subtree: true) }) else { return path }
                return to + path.dropFirst(from.count)
            })
        }
    }
}

