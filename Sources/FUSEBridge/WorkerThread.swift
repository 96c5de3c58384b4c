import Glibc
import NetUseCore

/// What one libfuse worker thread keeps for itself between requests, in thread-specific
/// storage: the identity it has taken (see `RequestIdentity`) and its read buffer.
final class WorkerThread {
    /// The identity the thread has taken; nil when unknown.
    var identity: Identity?
    var groups: (thread: pid_t, uid: uid_t, gid: gid_t, groups: [gid_t], readAt: Duration)?
    /// Reused by every READ this thread answers: a fresh megabyte per request would be
    /// mapped and faulted in each time (file data buffers are mapped, not kept on a heap).
    private var readBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    func readBuffer(_ size: Int) -> UnsafeMutableRawBufferPointer {
        if readBuffer.count < size {
            readBuffer.deallocate()
            readBuffer = .allocate(byteCount: size, alignment: 4096)
        }
        return UnsafeMutableRawBufferPointer(rebasing: readBuffer[..<size])
    }

    deinit { readBuffer.deallocate() }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { $0.map { Unmanaged<WorkerThread>.fromOpaque($0).release() } }
        return key
    }()

    static var current: WorkerThread {
        if let known = pthread_getspecific(key) { return Unmanaged<WorkerThread>.fromOpaque(known).takeUnretainedValue() }
        let worker = WorkerThread()
        pthread_setspecific(key, Unmanaged.passRetained(worker).toOpaque())
        return worker
    }
}
