import NetUseCore

/// When `net use /delete` may go ahead: the KB Q214563 rules as a decision, apart from the
/// /proc scan, the clock and the sleeping that feed it.
///
/// Only what processes hold is active. Open files and maps are 2401; a cwd, root or
/// executable alone is 2404. Deferred ServerOpens are never counted: the cache holds them,
/// not a process. A FileHandle the kernel still holds but no process is seen to hold is a
/// RELEASE on its way (FUSE sends it after close() has returned): it is given `grace`
/// before it counts as an open file.
enum DeletePolicy {
    /// A FileHandle the kernel holds: where it is seen through the mount, and how `refs`
    /// would name its opener.
    struct Held: Equatable {
        let path: String
        let description: String
    }

    enum Decision: Equatable {
        case proceed
        case refuse(NetError)
        /// Ask again shortly: releases may be on their way.
        case waitForReleases
    }

    static let grace: Duration = .milliseconds(500)

    static func decide(uses: [ProcessUse], held: [Held], now: Duration, graceEnds: Duration) -> Decision {
        let active = uses.filter { $0.how != .uninspectable }
        let detail = uses.map(\.description)
        if active.contains(where: \.holdsFiles) { return .refuse(NetError(.openFiles, detail: detail)) }
        // The kernel's own open of an executable shows up as a FileHandle too.
        let seen = Set(active.compactMap(\.path))
        let pending = held.filter { !seen.contains($0.path) }
        if pending.isEmpty {
            return active.isEmpty ? .proceed : .refuse(NetError(.deviceInUse, detail: detail))
        }
        if now >= graceEnds {
            return .refuse(NetError(.openFiles, detail: detail + pending.map(\.description)))
        }
        return .waitForReleases
    }
}
