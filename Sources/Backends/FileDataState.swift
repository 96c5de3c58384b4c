import NetUseCore

/// What an SMB backend keeps of one open file's data, whichever engine speaks to the share:
/// batches read ahead and writes gathered behind, held in the daemon's one cache budget.
protocol FileDataState {
    var readAhead: ReadAhead { get set }
    var writeBehind: WriteBehind { get set }
    /// Set by close: the file holds nothing of the budget any more.
    var closed: Bool { get }
    /// What the file holds of the budget, as last accounted.
    var charged: Int { get set }
}

extension FileDataState {
    /// Bytes of file data the file holds in memory: batches read ahead and on their way,
    /// writes gathered and being sent.
    var held: Int { readAhead.held + writeBehind.held }

    /// Brings the budget up to date with what the file holds now.
    mutating func account(_ budget: CacheBudget) {
        charged = budget.account(from: charged, to: closed ? 0 : held)
    }

    /// Over the cache budget, reading ahead shrinks: prefetches beyond it are not started, and
    /// a read that would fetch a batch reads straight into the caller's buffer instead.
    mutating func withinBudget(_ step: ReadAhead.Step) -> ReadAhead.Step {
        let budget = CacheBudget.shared
        account(budget)
        switch step {
        case .copied(let count, var prefetches):
            while let last = prefetches.last, budget.inUse > budget.limit || held > budget.perFile {
                readAhead.fetchEnded(last)
                prefetches.removeLast()
                account(budget)
            }
            return .copied(count, prefetch: prefetches)
        case .fetch(let range) where budget.inUse > budget.limit || held > budget.perFile:
            readAhead.fetchEnded(range)
            account(budget)
            return .direct
        default:
            return step
        }
    }
}
