import Glibc
import NetUseCore

/// Server-side copy (MS-SMB2 3.2.4.20.2): the source's resume key, then COPYCHUNK_WRITE
/// requests on the destination, so that the data never crosses the network.
extension SMB2Tree {
    static let requestResumeKey: UInt32 = 0x0014_0078
    static let copyChunkWrite: UInt32 = 0x0014_80F2
    /// Within what Windows and Samba take in one request: 16 chunks of 1 MiB.
    static let chunkSize = 1 << 20
    static let chunksPerRequest = 16

    func ioctl(_ file: SMB2FileId, code: UInt32, input: [UInt8], maxOutput: Int) throws(Errno) -> [UInt8] {
        var body = ByteWriter(capacity: 56 + input.count)
        body.u16(57)
        body.u16(0)
        body.u32(code)
        file.write(to: &body)
        body.u32(input.isEmpty ? 0 : 64 + 56)
        body.u32(UInt32(input.count))
        body.u32(0)  // no input back
        body.u32(0)
        body.u32(0)
        body.u32(UInt32(maxOutput))
        body.u32(1)  // an FSCTL
        body.u32(0)
        body.append(input)
        let reply = try connection.send(request(.ioctl, body, payload: max(input.count, maxOutput)))
        try reply.check()
        var answer = reply.body
        try answer.skip(32)
        let offset = Int(try answer.u32())
        let count = Int(try answer.u32())
        return Array(try reply.body.at(offset, count))
    }

    /// Copies `length` bytes from one open to another on the same share; answers how many
    /// the server copied.
    public func copy(from source: SMB2FileId, at sourceOffset: UInt64, to destination: SMB2FileId,
                     at destinationOffset: UInt64, length: UInt64) throws(Errno) -> UInt64 {
        let key = try ioctl(source, code: Self.requestResumeKey, input: [], maxOutput: 32)
        guard key.count >= 24 else { throw Errno(EPROTO) }
        var done: UInt64 = 0
        while done < length {
            var input = ByteWriter()
            input.append(key[0..<24])
            let chunks = min(Self.chunksPerRequest, Int((length - done + UInt64(Self.chunkSize) - 1) / UInt64(Self.chunkSize)))
            input.u32(UInt32(chunks))
            input.u32(0)
            var asked: UInt64 = 0
            for _ in 0..<chunks {
                let piece = min(UInt64(Self.chunkSize), length - done - asked)
                input.u64(sourceOffset + done + asked)
                input.u64(destinationOffset + done + asked)
                input.u32(UInt32(piece))
                input.u32(0)
                asked += piece
            }
            let total: UInt64
            do {
                var written = ByteReader(try ioctl(destination, code: Self.copyChunkWrite, input: input.bytes, maxOutput: 12))
                try written.skip(8)
                total = UInt64(try written.u32())
            } catch {
                // What was copied stands; the caller hears of the failure on its next call.
                if done > 0 { break }
                throw error
            }
            done += total
            if total < asked { break }
        }
        return done
    }
}
