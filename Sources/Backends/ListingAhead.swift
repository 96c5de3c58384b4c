import Glibc
import NetUseCore
import Redirector
import Synchronization

/// Listings fetched before anyone asks for them, for two readers:
/// - a walk (`find`, `du`, a file manager): when it lists a directory, its subdirectories'
///   listings are fetched on the couriers, since the walk goes down next;
/// - lookups: a program that opens file after file of a directory it never listed (a script's
///   callees, a build's headers) would pay a round trip for each name before each open. The
///   first lookup in a small directory fetches its listing in the same round trip, and the
///   names after it are found there (`lookup`); a name not found is asked for as before,
///   since servers match names in ways a listing does not show (case, 8.3 names).
/// A listing serves one opendir, and lookups, within its lifetime; any change through the
/// drive in its directory forgets it.
final class ListingAhead: Sendable {
    private enum Listing {
        case fetching(epoch: Int)
        case ready([DirectoryEntry], fetched: Duration)
        /// Fetched for lookups, with its names found by `lookup` until it is taken or goes stale.
        case named([DirectoryEntry], index: [String: Int], fetched: Duration)
        /// More entries than a lookup fetches: its names are asked for one by one for a lifetime.
        case tooLarge(since: Duration)

        func isStale(at now: Duration) -> Bool {
            switch self {
            case .fetching: false
            case .ready(_, let fetched), .named(_, _, let fetched), .tooLarge(let fetched): now - fetched > ListingAhead.lifetime
            }
        }
    }

    /// What fetching a listing for lookups came to.
    enum LookupListing {
        case entries([DirectoryEntry])
        case tooLarge
        case failed
    }

    static let lifetime: Duration = .seconds(1)
    /// A directory with more subdirectories than this is not one a walk is about to finish.
    static let mostSubdirectories = 64
    /// How much of a listing a lookup fetches (a few hundred names), and how many such
    /// listings are held at once: a bound on what lookups keep, whatever walks the drive.
    static let lookupListingBytes = 32 << 10
    static let mostHeldForLookups = 32

    private let listings = Monitor<(table: [String: Listing], epoch: Int)>(([:], 0))
    /// How many listings are held or on their way: when none is, a change costs nothing.
    private let held = Atomic<Int>(0)

    /// The listing fetched ahead for `path`, after waiting for it if it is on its way; nil
    /// when there is none (or it went stale).
    func take(_ path: String) -> [DirectoryEntry]? {
        guard held.load(ordering: .acquiring) > 0 else { return nil }
        return listings.withLock(when: { state in
            if case .fetching = state.table[path] { return false }
            return true
        }) { state in
            guard let listing = state.table.removeValue(forKey: path) else { return nil }
            held.subtract(1, ordering: .releasing)
            guard !listing.isStale(at: MonotonicClock.now()) else { return nil }
            switch listing {
            case .ready(let entries, _), .named(let entries, _, _): return entries
            case .fetching, .tooLarge: return nil
            }
        }
    }

    /// The subdirectories of `directory` worth fetching ahead, each claimed with an epoch
    /// that `fetched` must show.
    func claim(subdirectoriesOf directory: String, in entries: [DirectoryEntry]) -> [(path: String, epoch: Int)] {
        let names = entries.lazy.filter { $0.attributes.st_mode & S_IFMT == S_IFDIR && $0.name != "." && $0.name != ".." }
            .map(\.name)
        guard !names.isEmpty, names.count <= Self.mostSubdirectories else { return [] }
        let now = MonotonicClock.now()
        return listings.withLock { state in
            // Listings nobody took in time go.
            let before = state.table.count
            state.table = state.table.filter { !$1.isStale(at: now) }
            var claimed: [(String, Int)] = []
            for name in names {
                let path = directory.isEmpty ? name : directory + "/" + name
                guard state.table[path] == nil else { continue }
                state.epoch += 1
                state.table[path] = .fetching(epoch: state.epoch)
                claimed.append((path, state.epoch))
            }
            held.add(state.table.count - before, ordering: .releasing)
            return claimed
        }
    }

    /// `directory`'s listing: the one fetched ahead when there is one, else `fetch`'s; then its
    /// subdirectories' listings are fetched ahead on `couriers`, one level below the walker,
    /// each with `fetchAhead` (given the index of its courier), unless `mayFetchAhead` says
    /// no when its turn comes.
    func list(_ directory: String, couriers: [Courier], fetch: (String) throws(Errno) -> [DirectoryEntry],
              mayFetchAhead: @escaping @Sendable () -> Bool,
              fetchAhead: @escaping @Sendable (String, Int) throws(Errno) -> [DirectoryEntry]) throws(Errno) -> [DirectoryEntry] {
        let entries: [DirectoryEntry]
        if let ready = take(directory) {
            entries = ready
        } else {
            entries = try fetch(directory)
        }
        guard !couriers.isEmpty else { return entries }
        let first = Int(UInt(bitPattern: directory.hashValue) % UInt(couriers.count))
        for (index, claim) in claim(subdirectoriesOf: directory, in: entries).enumerated() {
            let lane = (first + index) % couriers.count
            couriers[lane].speculate({ [self] in
                fetched(claim.path, epoch: claim.epoch, mayFetchAhead() ? try? fetchAhead(claim.path, lane) : nil)
            }, cancel: { [self] in fetched(claim.path, epoch: claim.epoch, nil) })
        }
        return entries
    }

    /// `name` in `directory` as a listing no older than `window` has it: its attributes and
    /// their age. Else, when `directory` has no listing held or on its way, is not known to be
    /// too large, and there is room, a claim (an epoch for `listedForLookups`) on fetching one.
    func lookup(_ name: String, in directory: String, within window: Duration) -> (found: (stat, Duration)?, claim: Int?) {
        let now = MonotonicClock.now()
        return listings.withLock { state in
            if let listing = state.table[directory], !listing.isStale(at: now) {
                guard case .named(let entries, let index, let fetched) = listing, now - fetched < window,
                      let position = index[name] else { return (nil, nil) }
                return ((entries[position].attributes, now - fetched), nil)
            }
            let before = state.table.count
            if before >= Self.mostHeldForLookups { state.table = state.table.filter { !$1.isStale(at: now) } }
            guard state.table.count < Self.mostHeldForLookups else {
                held.subtract(before - state.table.count, ordering: .releasing)
                return (nil, nil)
            }
            state.epoch += 1
            state.table[directory] = .fetching(epoch: state.epoch)
            held.add(state.table.count - before, ordering: .releasing)
            return (nil, state.epoch)
        }
    }

    /// Ends a claim `lookup` made.
    func listedForLookups(_ directory: String, epoch: Int, _ outcome: LookupListing) {
        let now = MonotonicClock.now()
        listings.withLock { state in
            guard case .fetching(let claimed)? = state.table[directory], claimed == epoch else { return }
            switch outcome {
            case .entries(let entries):
                var index: [String: Int] = [:]
                index.reserveCapacity(entries.count)
                for (position, entry) in entries.enumerated() { index[entry.name] = position }
                state.table[directory] = .named(entries, index: index, fetched: now)
            case .tooLarge:
                state.table[directory] = .tooLarge(since: now)
            case .failed:
                state.table.removeValue(forKey: directory)
                held.subtract(1, ordering: .releasing)
            }
        }
    }

    /// Ends a claim: the listing, or nil when it could not be fetched. A claim that a
    /// change forgot in the meantime keeps nothing.
    func fetched(_ path: String, epoch: Int, _ entries: [DirectoryEntry]?) {
        listings.withLock { state in
            guard case .fetching(let claimed)? = state.table[path], claimed == epoch else { return }
            if let entries {
                state.table[path] = .ready(entries, fetched: MonotonicClock.now())
            } else {
                state.table.removeValue(forKey: path)
                held.subtract(1, ordering: .releasing)
            }
        }
    }

    /// Something in `directory` changed through the drive (or the directory itself, and
    /// with `subtree` everything below it): what was listed of it is stale.
    func forget(_ directory: String, subtree: Bool = false) {
        guard held.load(ordering: .acquiring) > 0 else { return }
        listings.withLock { state in
            let before = state.table.count
            state.table.removeValue(forKey: directory)
            if subtree {
                let prefix = directory + "/"
                state.table = state.table.filter { !$0.key.hasPrefix(prefix) }
            }
            held.subtract(before - state.table.count, ordering: .releasing)
        }
    }

    /// Forgets the listing of the directory that holds `path`.
    func forget(parentOf path: String) {
        guard held.load(ordering: .acquiring) > 0 else { return }
        forget(Self.split(path).directory)
    }

    /// A share path's directory ("" for the top) and last name.
    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }
}
