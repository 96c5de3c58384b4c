/// A drive letter, `a` to `z`. Written by users as `q`, `q:` or `Q:`; shown as `Q:`.
public struct DriveLetter: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The lower-case letter, which also names the mountpoint (`<root>/q`).
    public let name: String

    public init?(_ text: String) {
        var body = Substring(text)
        if body.hasSuffix(":") { body = body.dropLast() }
        guard body.count == 1, let scalar = body.lowercased().unicodeScalars.first,
              ("a"..."z").contains(scalar) else { return nil }
        name = String(scalar)
    }

    public static let all: [DriveLetter] = "abcdefghijklmnopqrstuvwxyz".map { DriveLetter(String($0))! }

    /// The letter `net use * ...` takes: the highest free one, as Windows counts down from Z.
    public static func nextFree(excluding taken: Set<DriveLetter>) -> DriveLetter? {
        all.reversed().first { !taken.contains($0) }
    }

    public var description: String { name.uppercased() + ":" }

    public static func < (lhs: DriveLetter, rhs: DriveLetter) -> Bool { lhs.name < rhs.name }
}
