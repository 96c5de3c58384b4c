/// A drive letter, `a` to `z`. Written by users as `q`, `q:` or `Q:`; shown as `Q:`.
public struct DriveLetter: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The lower-case letter, which also names the mountpoint (`<root>/q`).
    public let name: String

    public init?(_ text: String) {
        // ASCII bytes only: case mapping would turn other scripts' letters (the Kelvin sign
        // is a K) into these.
        var bytes = Array(text.utf8)
        if bytes.last == UInt8(ascii: ":") { bytes.removeLast() }
        guard bytes.count == 1, case let byte = bytes[0] | 0x20, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) else {
            return nil
        }
        name = String(UnicodeScalar(byte))
    }

    public static let all: [DriveLetter] = "abcdefghijklmnopqrstuvwxyz".map { DriveLetter(String($0))! }

    /// The letter `net use * ...` takes: the highest free one, as Windows counts down from Z.
    public static func nextFree(excluding taken: Set<DriveLetter>) -> DriveLetter? {
        all.reversed().first { !taken.contains($0) }
    }

    public var description: String { name.uppercased() + ":" }

    public static func < (lhs: DriveLetter, rhs: DriveLetter) -> Bool { lhs.name < rhs.name }
}
