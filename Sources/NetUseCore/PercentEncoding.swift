extension String {
    /// The text with every byte `keeping` refuses written as %XX: how a name from a user is
    /// made safe for a syntax that gives some bytes a meaning (mount options, utab fields).
    public func percentEncoded(keeping: (UInt8) -> Bool) -> String {
        var result = ""
        for byte in utf8 {
            if keeping(byte) {
                result.unicodeScalars.append(UnicodeScalar(byte))
            } else {
                result += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return result
    }
}
