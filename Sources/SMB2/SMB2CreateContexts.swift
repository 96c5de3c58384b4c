import Glibc
import NetUseCore

/// CREATE contexts (MS-SMB2 2.2.13.2): named blobs after a CREATE's name, and after its
/// answer, each 8-byte aligned and chained by offset.
enum SMB2CreateContexts {
    static func encode(_ contexts: [(name: String, data: [UInt8])]) -> [UInt8] {
        var out = ByteWriter()
        for (index, context) in contexts.enumerated() {
            let start = out.count
            out.u32(0)  // Next, set below
            out.u16(16)  // name offset
            out.u16(UInt16(context.name.utf8.count))
            out.u16(0)
            out.u16(24)  // data offset: after the 4-byte name and its padding
            out.u32(UInt32(context.data.count))
            out.append(Array(context.name.utf8))
            out.zeros(4)
            out.append(context.data)
            if index < contexts.count - 1 {
                out.align(8)
                out.set32(UInt32(out.count - start), at: start)
            }
        }
        return out.bytes
    }

    /// The answer's contexts by name (the data of each).
    static func decode(_ reply: SMB2Reply) -> [String: [UInt8]] {
        var body = reply.body
        body.offset = reply.start + SMB2Reply.headerSize + 80
        guard let offset = try? body.u32(), let length = try? body.u32(), length >= 16,
              let contexts = try? reply.body.at(Int(offset), Int(length)) else { return [:] }
        var found: [String: [UInt8]] = [:]
        var at = contexts.startIndex
        while at + 16 <= contexts.endIndex {
            var context = ByteReader(Array(contexts[at...]))
            guard let next = try? context.u32(), let nameOffset = try? context.u16(), let nameLength = try? context.u16(),
                  (try? context.skip(2)) != nil, let dataOffset = try? context.u16(), let dataLength = try? context.u32(),
                  let name = try? context.at(Int(nameOffset), Int(nameLength)),
                  let data = try? context.at(Int(dataOffset), Int(dataLength)) else { break }
            found[String(decoding: name, as: UTF8.self)] = Array(data)
            guard next != 0 else { break }
            at += Int(next)
        }
        return found
    }
}

/// A durable handle (version 2, MS-SMB2 3.2.4.3.5): the server keeps the open for a while
/// after the connection is lost, and a reconnect that names it gets it back, with its lease
/// and its byte-range locks, so that a program with the file open notices nothing.
public struct SMB2Durable: Sendable {
    let createGuid: [UInt8]

    public static func fresh() -> SMB2Durable { SMB2Durable(createGuid: NTLMAuthenticator.random(16)) }

    /// "DH2Q": the server's own timeout, not persistent.
    var request: (name: String, data: [UInt8]) {
        var data = ByteWriter()
        data.u32(0)
        data.u32(0)
        data.u64(0)
        data.append(createGuid)
        return ("DH2Q", data.bytes)
    }

    /// "DH2C": the open to get back.
    func reconnect(_ file: SMB2FileId) -> (name: String, data: [UInt8]) {
        var data = ByteWriter()
        file.write(to: &data)
        data.append(createGuid)
        data.u32(0)
        return ("DH2C", data.bytes)
    }
}
