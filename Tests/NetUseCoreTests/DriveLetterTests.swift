import NetUseCore
import Testing

@Suite struct DriveLetterTests {
    @Test(arguments: ["q", "q:", "Q:", "Q"])
    func acceptsTheWaysUsersWriteALetter(_ text: String) {
        #expect(DriveLetter(text)?.name == "q")
        #expect(DriveLetter(text)?.description == "Q:")
    }

    /// ASCII only: the Kelvin sign lower-cases to k, a combining accent makes one character.
    @Test(arguments: ["", ":", "qq", "q::", "1", "1:", "é", "*", " q", "q :", "aa:", "\u{212A}", "q\u{301}", "@", "["])
    func rejectsWhatIsNotALetter(_ text: String) {
        #expect(DriveLetter(text) == nil)
    }

    @Test func nextFreeCountsDownFromZ() {
        #expect(DriveLetter.nextFree(excluding: []) == DriveLetter("z"))
        #expect(DriveLetter.nextFree(excluding: [DriveLetter("z")!]) == DriveLetter("y"))
        #expect(DriveLetter.nextFree(excluding: Set(DriveLetter.all.dropFirst())) == DriveLetter("a"))
        #expect(DriveLetter.nextFree(excluding: Set(DriveLetter.all)) == nil)
    }
}
