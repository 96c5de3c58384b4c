import Glibc
import NetUseCore

/// SMB2's commands (MS-SMB2 2.2.1.2).
public enum SMB2Command: UInt16, Sendable {
    case negotiate = 0, sessionSetup, logoff, treeConnect, treeDisconnect, create, close, flush, read, write,
         lock, ioctl, cancel, echo, queryDirectory, changeNotify, queryInfo, setInfo, oplockBreak
}

struct SMB2Flags {
    static let response: UInt32 = 0x1
    static let async: UInt32 = 0x2
    static let related: UInt32 = 0x4
    static let signed: UInt32 = 0x8
}

/// One request: its command and the body after the 64-byte header. The connection fills
/// in the header (ids, credits, session, tree, signature) when it sends.
struct SMB2Request: Sendable {
    let command: SMB2Command
    var body: [UInt8]
    /// Credits it costs: one per 64 KiB of payload asked for or sent (multi-credit).
    var creditCharge: UInt16 = 1
    var treeId: UInt32 = 0
    /// Part of the compound before it: it then acts on the file its predecessor opened.
    var related = false
    /// Signed even where the session does not sign everything (3.1.1's tree connect).
    var alwaysSigned = false
    /// A CANCEL names the request it cancels: its MessageId, and its AsyncId once the server
    /// has said it will answer later.
    var cancels: (messageId: UInt64, asyncId: UInt64?)?

    init(_ command: SMB2Command, _ body: ByteWriter, payload: Int = 0, treeId: UInt32 = 0) {
        self.command = command
        self.body = body.bytes
        self.creditCharge = UInt16(max(1, (payload + 65_535) / 65_536))
        self.treeId = treeId
    }
}

/// One reply: the whole received message (header included) and where its body starts.
struct SMB2Reply: Sendable {
    let command: UInt16
    let status: NTStatus
    let flags: UInt32
    let messageId: UInt64
    let sessionId: UInt64
    let treeId: UInt32
    /// Set in an interim answer (STATUS_PENDING): what a CANCEL of the request names.
    let asyncId: UInt64?
    let credits: UInt16
    /// What the request cost, as the server echoes it.
    let creditCharge: UInt16
    /// The message bytes; `start` is where its header begins.
    let bytes: [UInt8]
    let start: Int
    let end: Int

    static let headerSize = 64

    init(_ bytes: [UInt8], start: Int, end: Int) throws(Errno) {
        var reader = ByteReader(bytes, base: start)
        guard end - start >= Self.headerSize, try reader.u32() == 0x424D_53FE else { throw Errno(EPROTO) }
        try reader.skip(2)  // StructureSize
        creditCharge = try reader.u16()
        status = NTStatus(rawValue: try reader.u32())
        command = try reader.u16()
        credits = try reader.u16()
        flags = try reader.u32()
        try reader.skip(4)  // NextCommand
        messageId = try reader.u64()
        if flags & SMB2Flags.async != 0 {
            asyncId = try reader.u64()
            treeId = 0
        } else {
            asyncId = nil
            try reader.skip(4)
            treeId = try reader.u32()
        }
        sessionId = try reader.u64()
        self.bytes = bytes
        self.start = start
        self.end = end
    }

    /// A reader of the body; offsets it is asked for count from the header's start.
    var body: ByteReader {
        var reader = ByteReader(bytes, base: start)
        reader.offset = start + Self.headerSize
        return reader
    }

    /// The errno of a failed reply; nothing for success and warnings that carry data.
    func check() throws(Errno) {
        if status.isError { throw status.errno }
    }
}
