@testable import FUSEBridge
import Testing

/// What goes into libmount's utab: fields escaped as libmount reads them, and a drive's
/// name encoded so that nothing in it is option or field syntax.
@Suite struct MountUtabTests {
    @Test func fieldsAreEscapedAsLibmountDoes() {
        #expect(MountUtab.mangled("/run/netuse/0/q") == "/run/netuse/0/q")
        #expect(MountUtab.mangled("/a b\tc\nd\\e") == "/a\\040b\\011c\\012d\\134e")
        #expect(MountTable.unescaped(Substring(MountUtab.mangled("/a b\\c"))) == "/a b\\c")
    }

    @Test func namesKeepNoSyntax() {
        #expect(MountUtab.percentEncoded("Q: (share on server)") == "Q:%20(share%20on%20server)")
        let encoded = MountUtab.percentEncoded("a,b=c\\d\"e\n%ü")
        #expect(encoded == "a%2Cb%3Dc%5Cd%22e%0A%25%C3%BC")
        #expect(!encoded.contains(where: { ",= \\\n\"".contains($0) }))
    }
}
