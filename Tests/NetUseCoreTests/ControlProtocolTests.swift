import FoundationEssentials
import NetUseCore
import Testing

@Suite struct ControlProtocolTests {
    private func operation(_ json: String) throws(NetError) -> ControlOperation {
        try ControlOperation(line: Array(json.utf8))
    }

    private func code(_ json: String) -> Int? {
        do {
            _ = try operation(json)
            return nil
        } catch {
            return error.code.rawValue
        }
    }

    @Test func requestsRoundTrip() throws {
        let use = ControlRequest(op: "use", letter: "q:", remote: "/srv", options: ["a": "b"])
        let line = use.encodedLine()
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(try operation(String(decoding: line.dropLast(), as: UTF8.self))
                == .use(UseRequest(letter: .letter(DriveLetter("q")!), remote: "/srv", options: ["a": "b"])))
        #expect(try operation(#"{"v":1,"op":"use","letter":"*","remote":"/srv"}"#) == .use(UseRequest(letter: .nextFree, remote: "/srv")))
        #expect(try operation(#"{"v":1,"op":"use","letter":"q","remote":"/srv","persistent":true,"credentialsFile":"/etc/c"}"#)
                == .use(UseRequest(letter: .letter(DriveLetter("q")!), remote: "/srv", persistent: true,
                                   credentialsFile: "/etc/c")))
        #expect(try operation(#"{"v":1,"op":"delete","letter":"Q:"}"#) == .delete(DriveLetter("q")!, force: false, wait: .zero))
        #expect(try operation(#"{"v":1,"op":"delete","letter":"q","force":true,"wait":2.5}"#)
                == .delete(DriveLetter("q")!, force: true, wait: .milliseconds(2500)))
        #expect(try operation(#"{"v":1,"op":"refs","letter":"q"}"#) == .refs(DriveLetter("q")!))
        #expect(try operation(#"{"v":1,"op":"list"}"#) == .list(all: false))
        #expect(try operation(#"{"v":1,"op":"list","all":true}"#) == .list(all: true))
    }

    @Test func responsesRoundTrip() throws {
        let drive = DriveStatus(letter: "Q:", remote: "/srv", mountpoint: "/run/netuse/q", status: "OK", owner: 1000, openHandles: 3, deferredHandles: 2)
        for response in [ControlResponse(drive: drive), ControlResponse(drives: [drive]),
                         ControlResponse(error: NetError(.useNotFound, detail: ["Q: is not connected."]))] {
            let line = response.encodedLine()
            let decoded = try JSONDecoder().decode(ControlResponse.self, from: Data(line.dropLast()))
            #expect(decoded == response)
        }
        let failure = ControlResponse(error: NetError(.useNotFound, detail: ["x"]))
        #expect(failure.netError == NetError(.useNotFound, detail: ["x"]))
        #expect(failure.error?.text == "The network connection could not be found.")
    }

    @Test(arguments: [
        ("{not json", 87),
        ("[]", 87),
        ("null", 87),
        (#"{"op":"list"}"#, 87),
        (#"{"v":"1","op":"list"}"#, 87),
        (#"{"v":2,"op":"list"}"#, 87),
        (#"{"v":1}"#, 87),
        (#"{"v":1,"op":"use","letter":"q"}"#, 87),
        (#"{"v":1,"op":"use","remote":"/srv"}"#, 87),
        (#"{"v":1,"op":"use","letter":"qq","remote":"/srv"}"#, 87),
        (#"{"v":1,"op":"delete"}"#, 87),
        (#"{"v":1,"op":"delete","letter":"7"}"#, 87),
        (#"{"v":1,"op":"delete","letter":"q","wait":-1}"#, 87),
        (#"{"v":1,"op":"delete","letter":"q","force":"yes"}"#, 87),
        (#"{"v":1,"op":"refs"}"#, 87),
        (#"{"v":1,"op":"use","letter":"q","remote":"/srv","credentialsFile":"relative"}"#, 87),
        (#"{"v":1,"op":"format"}"#, 50),
    ])
    func badRequestsAreRefusedWithACode(_ json: String, _ expected: Int) {
        #expect(code(json) == expected)
    }

    /// A NUL would cut the mount options short; a newline would forge a log line.
    @Test(arguments: ["/srv/a\\u0000,allow_other", "/srv/a\\nforged", "/srv/\\u001b[31m"])
    func controlCharactersInARemoteAre87(_ remote: String) {
        let line = #"{"v":1,"op":"use","letter":"q","remote":"\#(remote)"}"#
        #expect(throws: NetError.self) { try ControlOperation(line: Array(line.utf8)) }
        do {
            _ = try ControlOperation(line: Array(line.utf8))
        } catch {
            #expect(error.code == .invalidParameter)
        }
    }

    @Test func deleteMayNameAnOwner() throws {
        let line = #"{"v":1,"op":"delete","letter":"q","owner":1000}"#
        #expect(try ControlOperation(line: Array(line.utf8)) == .delete(DriveLetter("q")!, force: false, wait: .zero, owner: 1000))
    }
}
