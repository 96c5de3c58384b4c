@testable import NetUseDaemon
import Testing

@Suite struct LogTests {
    /// A name a user sent can neither forge a log line nor drive a terminal.
    @Test func controlCharactersAreWrittenAsEscapes() {
        #expect(Log.escaped("Q: connected to /srv/a\nnetused: error: forged") == "Q: connected to /srv/a\\x0anetused: error: forged")
        #expect(Log.escaped("\u{1b}[31mred\u{7f}") == "\\x1b[31mred\\x7f")
        #expect(Log.escaped("C:\\share") == "C:\\\\share")
        #expect(Log.escaped("plain text, é") == "plain text, é")
    }
}
