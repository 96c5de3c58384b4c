import Glibc
import NetUseCore

/// A server's answer code (MS-ERREF 2.3), and the errno a local filesystem gives for the same
/// condition, as cifs.ko's smb2maperror.c maps them.
public struct NTStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    static let success = NTStatus(rawValue: 0)
    static let pending = NTStatus(rawValue: 0x0000_0103)
    static let moreProcessingRequired = NTStatus(rawValue: 0xC000_0016)
    static let bufferOverflow = NTStatus(rawValue: 0x8000_0005)
    static let noMoreFiles = NTStatus(rawValue: 0x8000_0006)
    static let endOfFile = NTStatus(rawValue: 0xC000_0011)
    static let noSuchFile = NTStatus(rawValue: 0xC000_000F)
    static let invalidParameter = NTStatus(rawValue: 0xC000_000D)
    static let accessDenied = NTStatus(rawValue: 0xC000_0022)
    static let objectNameInvalid = NTStatus(rawValue: 0xC000_0033)
    static let objectNameNotFound = NTStatus(rawValue: 0xC000_0034)
    static let objectNameCollision = NTStatus(rawValue: 0xC000_0035)
    static let objectPathNotFound = NTStatus(rawValue: 0xC000_003A)
    static let objectPathSyntaxBad = NTStatus(rawValue: 0xC000_003B)
    static let sharingViolation = NTStatus(rawValue: 0xC000_0043)
    static let deletePending = NTStatus(rawValue: 0xC000_0056)
    static let logonFailure = NTStatus(rawValue: 0xC000_006D)
    static let accountRestriction = NTStatus(rawValue: 0xC000_006E)
    static let passwordExpired = NTStatus(rawValue: 0xC000_0071)
    static let accountDisabled = NTStatus(rawValue: 0xC000_0072)
    static let diskFull = NTStatus(rawValue: 0xC000_007F)
    static let fileIsADirectory = NTStatus(rawValue: 0xC000_00BA)
    static let notSupported = NTStatus(rawValue: 0xC000_00BB)
    static let badNetworkName = NTStatus(rawValue: 0xC000_00CC)
    static let directoryNotEmpty = NTStatus(rawValue: 0xC000_0101)
    static let notADirectory = NTStatus(rawValue: 0xC000_0103)
    static let cancelled = NTStatus(rawValue: 0xC000_0120)
    static let fileClosed = NTStatus(rawValue: 0xC000_0128)
    static let cannotDelete = NTStatus(rawValue: 0xC000_0121)
    static let fileRenamed = NTStatus(rawValue: 0xC000_00D5)
    static let nameTooLong = NTStatus(rawValue: 0xC000_0106)
    static let notSameDevice = NTStatus(rawValue: 0xC000_00D4)
    static let mediaWriteProtected = NTStatus(rawValue: 0xC000_00A2)
    static let networkNameDeleted = NTStatus(rawValue: 0xC000_00C9)
    static let userSessionDeleted = NTStatus(rawValue: 0xC000_0203)
    static let networkSessionExpired = NTStatus(rawValue: 0xC000_035C)
    static let invalidHandle = NTStatus(rawValue: 0xC000_0008)
    static let insufficientResources = NTStatus(rawValue: 0xC000_009A)
    static let noMemory = NTStatus(rawValue: 0xC000_0017)
    static let quotaExceeded = NTStatus(rawValue: 0xC000_0044)
    static let invalidDeviceRequest = NTStatus(rawValue: 0xC000_0010)
    static let notImplemented = NTStatus(rawValue: 0xC000_0002)
    static let fileLockConflict = NTStatus(rawValue: 0xC000_0054)
    static let lockNotGranted = NTStatus(rawValue: 0xC000_0055)
    static let badNetworkPath = NTStatus(rawValue: 0xC000_00BE)
    static let networkAccessDenied = NTStatus(rawValue: 0xC000_00CA)
    static let ioTimeout = NTStatus(rawValue: 0xC000_00B5)
    static let stoppedOnSymlink = NTStatus(rawValue: 0x8000_002D)
    static let eaTooLarge = NTStatus(rawValue: 0xC000_0050)
    static let fileTooLarge = NTStatus(rawValue: 0xC000_0904)

    /// Errors have the two top bits set; warnings (10) carry data, as a buffer overflow does.
    var isError: Bool { rawValue >> 30 == 3 }

    public var description: String { "NT_STATUS 0x" + String(rawValue, radix: 16, uppercase: true) }

    public var errno: Errno {
        switch self {
        case .objectNameNotFound, .objectPathNotFound, .noSuchFile, .deletePending, .badNetworkName, .objectPathSyntaxBad:
            return Errno(ENOENT)
        case .objectNameCollision: return Errno(EEXIST)
        case .accessDenied, .cannotDelete, .networkAccessDenied: return Errno(EACCES)
        case .logonFailure, .accountRestriction, .passwordExpired, .accountDisabled: return Errno(EACCES)
        case .sharingViolation: return Errno(EBUSY)
        // A read or write into a range another open locked; a lock refused (F_SETLK's EAGAIN).
        case .fileLockConflict: return Errno(EACCES)
        case .lockNotGranted: return Errno(EAGAIN)
        case .directoryNotEmpty: return Errno(ENOTEMPTY)
        case .notADirectory: return Errno(ENOTDIR)
        case .fileIsADirectory: return Errno(EISDIR)
        case .diskFull, .quotaExceeded: return Errno(ENOSPC)
        case .fileTooLarge: return Errno(EFBIG)
        case .objectNameInvalid: return Errno(ENOENT)
        case .nameTooLong: return Errno(ENAMETOOLONG)
        case .notSameDevice: return Errno(EXDEV)
        case .mediaWriteProtected: return Errno(EROFS)
        case .invalidParameter, .eaTooLarge: return Errno(EINVAL)
        case .notSupported, .notImplemented, .invalidDeviceRequest: return Errno(EOPNOTSUPP)
        case .fileClosed, .invalidHandle: return Errno(EBADF)
        case .insufficientResources, .noMemory: return Errno(ENOMEM)
        case .cancelled: return Errno(EINTR)
        case .ioTimeout: return Errno(ETIMEDOUT)
        case .endOfFile: return Errno(ENODATA)
        default: return Errno(EIO)
        }
    }
}

/// A reply with an error status.
public struct SMB2Failure: Error, Sendable {
    public let status: NTStatus
}
