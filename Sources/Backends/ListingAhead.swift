import Glibc
import NetUseCore
import Redirector
import Synchronization

/// Listings of the subdirectories of a directory just listed, fetched on the workers before
/// anyone asks: a walk (`find`, `du`, a file manager) goes down next, and one listing costs
/// four round trips that the workers can spend side by side. A listing serves one opendir
/// within its lifetime, and any change through the drive in its directory forgets it.
final class ListingAhead: Sendable {
    private enum Listing {
        case fetching(epoch: Int)
        case ready([DirectoryEntry], fetched: Duration)
    }

    static let lifetime: Duration = .seconds(1)
    /// A directory with more subdirectories than this is not one a walk is about to finish.
    static let mostSubdirectories = 64

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
            guard case .ready(let entries, let fetched) = listing, MonotonicClock.now() - fetched <= Self.lifetime else { return nil }
            return entries
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
            state.table = state.table.filter { _, listing in
                if case .ready(_, let fetched) = listing { return now - fetched <= Self.lifetime }
                return true
            }
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
        forget(path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "")
    }
}
