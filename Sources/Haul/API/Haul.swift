/// Facts about the Haul library itself.
public enum Haul {
    /// The library's version.
    public static let version = "0.1.0"
}
