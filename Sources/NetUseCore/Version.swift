/// The version both programs and the Debian package report.
public enum NetUseVersion {
    public static let current = "0.9.0"
}
