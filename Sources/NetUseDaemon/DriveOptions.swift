import NetUseCore
import Redirector

/// `-o key=value` options of `use`, checked before anything is mounted.
enum DriveOptions {
    static func parse(_ options: [String: String]) throws(NetError) -> Redirector.Options {
        var result = Redirector.Options()
        for (key, value) in options.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "closetimeo":
                guard let seconds = Double(value), seconds >= 0, seconds <= 3600 else {
                    throw NetError(.invalidParameter, detail: ["closetimeo takes 0 to 3600 seconds, not '\(value)'."])
                }
                result.closeTimeout = .milliseconds(Int64(seconds * 1000))
            case "maxdeferred":
                guard let count = Int(value), count >= 0, count <= 65536 else {
                    throw NetError(.invalidParameter, detail: ["maxdeferred takes 0 to 65536, not '\(value)'."])
                }
                result.deferredLimit = count
            default:
                throw NetError(.invalidParameter, detail: ["Unknown option '\(key)'."])
            }
        }
        return result
    }
}
