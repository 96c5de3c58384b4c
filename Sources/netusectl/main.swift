import ArgumentParser
import FoundationEssentials
import Glibc
import NetUseCore

/// Exit statuses: 0 success, 2 a "System error N" (as NET.EXE), 64 a command line
/// netusectl could not parse.
enum Exit {
    static let systemError: Int32 = 2
}

struct Connection: ParsableArguments {
    @Option(help: "The daemon's control socket (default: $NETUSE_SOCKET, else the default instance's).")
    var socket: String?

    @Flag(help: "Print the daemon's answer as JSON.")
    var json = false

    var client: ControlClient {
        ControlClient(socketPath: InstancePaths.clientSocket(explicit: socket, environment: InstancePaths.environment()))
    }

    /// Sends the request; prints an error the NET way and exits non-zero if it failed.
    func perform(_ request: ControlRequest) throws -> ControlResponse {
        let response: ControlResponse
        do {
            response = try client.send(request)
        } catch {
            response = ControlResponse(error: error)
        }
        if let error = response.netError {
            if json {
                printJSON(response)
            } else {
                FileOutput.standardError.write(error.description + "\n")
            }
            throw ExitCode(Exit.systemError)
        }
        return response
    }

    func printJSON<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try! encoder.encode(value), as: UTF8.self))
    }
}

enum FileOutput {
    case standardError
    func write(_ text: String) {
        _ = text.withCString { Glibc.write(STDERR_FILENO, $0, strlen($0)) }
    }
}

struct Netusectl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netusectl",
        abstract: "Connect shares to drive letters through netused, like `net use`.",
        discussion: "Exit status: 0 on success, 2 when the command fails with a System error, 64 on a usage error.",
        subcommands: [Use.self, Delete.self, List.self, HelpMsg.self])
}

struct Use: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Connect a share to a drive letter: netusectl use q /srv/share")

    @Argument(help: "The drive letter (q, q: or Q:), or * for the next free one counting down from Z:.")
    var letter: String

    @Argument(help: "The share: an absolute directory path or a file:// URL.")
    var remote: String

    @Option(name: .shortAndLong, help: "A drive option, key=value.")
    var option: [String] = []

    @OptionGroup var connection: Connection

    func validate() throws {
        if letter != "*" && DriveLetter(letter) == nil { throw ValidationError("'\(letter)' is not a drive letter (a to z, or *).") }
        for pair in option where !pair.contains("=") { throw ValidationError("-o takes key=value, not '\(pair)'.") }
    }

    func run() throws {
        var options: [String: String] = [:]
        for pair in option {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            options[String(parts[0])] = String(parts[1])
        }
        let response = try connection.perform(ControlRequest(op: "use", letter: letter, remote: remote, options: options))
        if connection.json { return connection.printJSON(response) }
        guard let drive = response.drive else { return }
        print("Drive \(drive.letter) is now connected to \(drive.remote).")
        print("It is mounted at \(drive.mountpoint).")
        print("")
        print("The command completed successfully.")
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Disconnect a drive: netusectl delete q")

    @Argument(help: "The drive letter.")
    var letter: String

    @OptionGroup var connection: Connection

    func validate() throws {
        if DriveLetter(letter) == nil { throw ValidationError("'\(letter)' is not a drive letter (a to z).") }
    }

    func run() throws {
        let response = try connection.perform(ControlRequest(op: "delete", letter: letter))
        if connection.json { return connection.printJSON(response) }
        print("\(DriveLetter(letter)!) was deleted successfully.")
        print("")
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the connected drives.")

    @OptionGroup var connection: Connection

    func run() throws {
        let response = try connection.perform(ControlRequest(op: "list"))
        if connection.json { return connection.printJSON(response) }
        let drives = response.drives ?? []
        guard !drives.isEmpty else {
            print("There are no entries in the list.")
            print("")
            return
        }
        let rows = [["Status", "Local", "Remote", "Mounted at", "Open handles"]]
            + drives.map { [$0.status, $0.letter, $0.remote, $0.mountpoint, String($0.openHandles)] }
        let widths = (0..<5).map { column in rows.map { $0[column].count }.max()! }
        func line(_ row: [String]) -> String {
            zip(row, widths).map { $0.padding($1) }.joined(separator: "  ").trimmingTrailingSpaces()
        }
        print(line(rows[0]))
        print(String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1)))
        rows.dropFirst().forEach { print(line($0)) }
        print("The command completed successfully.")
        print("")
    }
}

struct HelpMsg: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "helpmsg", abstract: "Explain a System error number.")

    @Argument(help: "The error number.")
    var number: Int

    func run() throws {
        guard let text = NetError.text(for: number) else {
            FileOutput.standardError.write("\(number) is not a message number netuse uses.\n")
            throw ExitCode(Exit.systemError)
        }
        print("")
        print(text)
        print("")
    }
}

extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
    func trimmingTrailingSpaces() -> String {
        var result = self
        while result.last == " " { result.removeLast() }
        return result
    }
}

Netusectl.main()
