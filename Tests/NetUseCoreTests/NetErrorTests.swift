import NetUseCore
import Testing

@Suite struct NetErrorTests {
    @Test(arguments: [
        (5, "Access is denied."),
        (53, "The network path was not found."),
        (67, "The network name cannot be found."),
        (85, "The local device name is already in use."),
        (2250, "The network connection could not be found."),
        (2401, "There are open files on the connection."),
        (2404, "The device is being accessed by an active process."),
    ])
    func textsAreNetHelpmsgs(_ code: Int, _ text: String) {
        #expect(NetError.text(for: code) == text)
    }

    @Test func unknownNumberHasNoText() {
        #expect(NetError.text(for: 9999) == nil)
    }

    @Test func printsAsNetDoes() {
        let error = NetError(.deviceInUse, detail: ["pid 42 (bash) has its cwd on the drive"])
        #expect(error.description == """
            System error 2404 has occurred.

            The device is being accessed by an active process.
            pid 42 (bash) has its cwd on the drive
            """)
    }
}
