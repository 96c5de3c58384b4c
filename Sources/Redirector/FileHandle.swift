import NetUseCore

/// One FUSE open: one kernel open file description, known to the kernel by its `fh`.
/// It holds one reference on a ServerOpen.
public struct FileHandle: Sendable {
    public let node: UInt64
    let serverOpen: UInt64
    let backend: BackendHandle
    /// Who opened it; the active-process check and `refs` report these.
    public let opener: Caller
    /// How many write-behind failures of its ServerOpen it has been told of (or that came
    /// before it opened).
    var failuresSeen: UInt64 = 0
}
