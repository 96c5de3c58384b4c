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
        discussion: """
            Exit status: 0 on success, 2 when the command fails with a System error, 64 on a usage error.

            NET USE's own spelling works too: use Q: \\\\server\\share [*] [/user:NAME] [/persistent:yes|no] [/savecred], \
            use Q: /delete [/y], use * /delete /y, and use alone.

            System errors (netusectl helpmsg N explains one):
            """ + "\n" + NetError.all.map { "  \($0.code)  \($0.text)" }.joined(separator: "\n"),
        version: NetUseVersion.current,
        subcommands: [Use.self, Delete.self, List.self, Refs.self, HelpMsg.self, NetUseList.self, NetUseDelete.self])
}

struct Use: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Connect a share to a drive letter: netusectl use q /srv/share")

    @Argument(help: "The drive letter (q, q: or Q:), or * for the next free one counting down from Z:.")
    var letter: String

    @Argument(help: "The share: //server/share[/path], smb://[user@]server[:port]/share[/path], an absolute directory path or a file:// URL.")
    var remote: String

    @Option(help: ArgumentHelp("Connect to an SMB share as this user ([DOMAIN\\]name or name@realm); guest without it.", valueName: "user"))
    var user: String?

    @Flag(help: "Read the password from the first line of standard input.")
    var passwordStdin = false

    @Option(help: ArgumentHelp("Take user, password and domain from a mount.cifs credentials file (mode 600).", valueName: "file"))
    var credentials: String?

    @Option(help: ArgumentHelp("yes: connect the drive again whenever netused starts (net use /persistent:yes); no: do not.",
                               valueName: "yes|no"))
    var persistent: YesNo = .no

    @Flag(help: "One drive for every user of the machine, each acting as themself on a local share (root only; net use /global).")
    var global = false

    @Option(name: .shortAndLong, help: ArgumentHelp(
        "A drive option, key=value (or a bare key, as mount.cifs takes them): closetimeo=SECONDS keeps closed files' server handles for reuse (default 5, 0 = off); maxdeferred=N bounds them (default 64); for SMB, timeout=SECONDS (default 30), seal, nolease, nobrl, engine=native|libsmbclient and workers=N (default 4).",
        valueName: "key=value"))
    var option: [String] = []

    @OptionGroup var connection: Connection

    func validate() throws {
        if letter != "*" && DriveLetter(letter) == nil { throw ValidationError("'\(letter)' is not a drive letter (a to z, or *).") }
        for pair in option where pair.isEmpty || pair.hasPrefix("=") { throw ValidationError("-o takes key=value or key, not '\(pair)'.") }
    }

    func run() throws {
        var options: [String: String] = [:]
        for pair in option {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            options[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        var account = user
        var password: String?
        var domain: String?
        var credentialsFile: String?
        if let credentials {
            credentialsFile = credentials.hasPrefix("/") ? credentials : currentDirectory() + "/" + credentials
            do {
                let file = try CredentialsFile.read(credentials)
                account = account ?? file.user
                password = file.password
                domain = file.domain
            } catch {
                FileOutput.standardError.write(error.description + "\n")
                throw ExitCode(Exit.systemError)
            }
        }
        if passwordStdin {
            password = readLine(strippingNewline: true) ?? ""
        } else if password == nil, account != nil, options["sec"] != "krb5", isatty(STDIN_FILENO) == 1 {
            // No echo, as net use * prompts.
            password = getpass("Type the password for \(remote): ").map { String(cString: $0) } ?? ""
        }
        // Kerberos tickets are the caller's: the daemon reads the cache named here as the caller.
        let tickets = options["sec"] == "krb5" ? getenv("KRB5CCNAME").map { String(cString: $0) } : nil
        let response = try connection.perform(ControlRequest(
            op: "use", letter: letter, remote: remote, options: options, user: account, password: password, domain: domain,
            persistent: persistent == .yes ? true : nil, credentialsFile: credentialsFile, global: global ? true : nil,
            credentialsCache: tickets))
        if connection.json { return connection.printJSON(response) }
        guard let drive = response.drive else { return }
        print("Drive \(drive.letter) is now connected to \(drive.remote).")
        print("It is mounted at \(drive.mountpoint).")
        print("")
        print("The command completed successfully.")
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Disconnect a drive: netusectl delete q",
        discussion: """
            Refused with System error 2401 while a process has a file of the drive open or mapped, and with             2404 while one has its current directory, root or executable there; the refusal names each             process. Handles kept only by the cache (deferred closes) never count: they are flushed.
            """)

    @Argument(help: "The drive letter.")
    var letter: String

    @Flag(help: "Detach at once even if the drive is in use; what processes still hold fails with EIO (net use /d /y).")
    var force = false

    @Option(help: ArgumentHelp("Wait up to this long for the drive to become idle.", valueName: "seconds"))
    var wait: Double?

    @Option(help: ArgumentHelp("Another user's drive (root only).", valueName: "uid"))
    var owner: UInt32?

    @OptionGroup var connection: Connection

    func validate() throws {
        if DriveLetter(letter) == nil { throw ValidationError("'\(letter)' is not a drive letter (a to z).") }
        if let wait, !(0...3600).contains(wait) { throw ValidationError("--wait takes 0 to 3600 seconds.") }
        if force && wait != nil { throw ValidationError("--force and --wait exclude each other.") }
    }

    func run() throws {
        let request = ControlRequest(op: "delete", letter: letter, force: force ? true : nil, wait: wait, owner: owner)
        let response = try wait.map { try waitShowingWhy(request, seconds: $0) } ?? connection.perform(request)
        if connection.json { return connection.printJSON(response) }
        print("\(DriveLetter(letter)!) was deleted successfully.")
        if force {
            print("\(response.flushed ?? 0) handles on the share were closed.")
        } else {
            print("\(response.flushed ?? 0) deferred closes were flushed.")
        }
        print("")
    }
}

extension Delete {
    /// `--wait`: asks again twice a second, and shows what it waits for: on a terminal the
    /// processes still holding the drive and the time left, rewritten in place; otherwise a
    /// plain line whenever that changes. The daemon's own answer ends it.
    private func waitShowingWhy(_ request: ControlRequest, seconds: Double) throws -> ControlResponse {
        var once = request
        once.wait = 0
        let deadline = MonotonicClock.now() + .milliseconds(Int64(seconds * 1000))
        let terminal = isatty(STDERR_FILENO) == 1 && !connection.json
        var shown: [String] = []
        var drawn = 0
        while true {
            let response: ControlResponse
            do {
                response = try connection.client.send(once)
            } catch {
                return try connection.perform(request)  // says why, the usual way
            }
            guard let error = response.netError, error.code == .openFiles || error.code == .deviceInUse,
                  MonotonicClock.now() < deadline else {
                if terminal && drawn > 0 { FileOutput.standardError.write("\u{1b}[\(drawn)A\u{1b}[J") }
                once.wait = 0
                return response.ok ? response : try connection.perform(once)
            }
            let left = Int((deadline - MonotonicClock.now()).components.seconds) + 1
            let why = error.detail
            if terminal {
                var lines = ["Waiting up to \(left) s for \(DriveLetter(letter)!) to become idle (\(error.code.rawValue)):"]
                lines += why.map { "  " + $0 }
                FileOutput.standardError.write((drawn > 0 ? "\u{1b}[\(drawn)A\u{1b}[J" : "") + lines.joined(separator: "\n") + "\n")
                drawn = lines.count
            } else if why != shown {
                FileOutput.standardError.write((["Waiting for \(DriveLetter(letter)!) (\(left) s left):"] + why.map { "  " + $0 })
                    .joined(separator: "\n") + "\n")
            }
            shown = why
            usleep(500_000)
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List your connected drives.")

    @Flag(help: "Every user's drives (root only).")
    var all = false

    @OptionGroup var connection: Connection

    func run() throws {
        let response = try connection.perform(ControlRequest(op: "list", all: all ? true : nil))
        if connection.json { return connection.printJSON(response) }
        if let notice = response.notice {
            print(notice)
            print("")
        }
        guard let drives = entries(response.drives) else { return }
        let rows = [["Status", "Local", "Remote", "Mounted at", "Open", "Deferred"]]
            + drives.map { [$0.status, $0.letter, $0.remote, $0.mountpoint, String($0.openHandles), String($0.deferredHandles)] }
        printTable(rows, underline: true)
        print("The command completed successfully.")
        print("")
    }
}

struct Refs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a drive's open and deferred handles, its cache counters, and the processes using it.")

    @Argument(help: "The drive letter.")
    var letter: String

    @Option(help: ArgumentHelp("Another user's drive (root only).", valueName: "uid"))
    var owner: UInt32?

    @OptionGroup var connection: Connection

    func validate() throws {
        if DriveLetter(letter) == nil { throw ValidationError("'\(letter)' is not a drive letter (a to z).") }
    }

    func run() throws {
        let response = try connection.perform(ControlRequest(op: "refs", letter: letter, owner: owner))
        if connection.json { return connection.printJSON(response) }
        guard let references = response.references else { return }
        let drive = references.drive
        print("\(drive.letter) \(drive.remote), mounted at \(drive.mountpoint)")
        print("")
        if references.serverOpens.isEmpty {
            print("No handles are open or deferred.")
        } else {
            printTable([["State", "Left", "Handles", "Access", "Lease", "Breaks", "Age", "PIDs", "Path"]] + references.serverOpens.map { open in
                [open.state, open.secondsLeft.map { seconds($0) } ?? "-", String(open.handles), open.access,
                 open.lease ?? "-", open.lease == nil ? "-" : String(open.breaks),
                 seconds(open.ageSeconds), open.pids.isEmpty ? "-" : open.pids.map(String.init).joined(separator: ","), open.path]
            }, underline: false)
        }
        let c = references.counters
        print("")
        print("Opens \(c.opens): \(c.backendOpens) reached the share, \(c.collapsed) shared an open handle, "
              + "\(c.revived) revived a deferred one.")
        print("Deferred closes: \(c.flushed) flushed, \(c.expired) expired, \(c.evicted) evicted, \(c.invalidated) invalidated.")
        print("Leases: \(c.deferredUnderLease) closes deferred under one, \(c.revivedUnderLease) opens served within a read lease, "
              + "\(c.breaks) breaks, \(c.closedByBreak) deferred closes done by a break.")
        print("")
        if references.processes.isEmpty {
            print("No process is using the drive.")
        } else {
            print("Processes using the drive:")
            references.processes.forEach { print("  \($0)") }
        }
        print("")
    }

    private func seconds(_ value: Double) -> String {
        let tenths = (value * 10).rounded() / 10
        return "\(tenths)s"
    }
}

/// The drives, or nil after saying, as NET.EXE does, that there are none.
func entries(_ drives: [DriveStatus]?) -> [DriveStatus]? {
    guard let drives, !drives.isEmpty else {
        print("There are no entries in the list.")
        print("")
        return nil
    }
    return drives
}

func printTable(_ rows: [[String]], underline: Bool) {
    let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max()! }
    func line(_ row: [String]) -> String {
        zip(row, widths).map { $0.padding($1) }.joined(separator: "  ").trimmingTrailingSpaces()
    }
    print(line(rows[0]))
    if underline { print(String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))) }
    rows.dropFirst().forEach { print(line($0)) }
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

enum YesNo: String, ExpressibleByArgument {
    case yes, no
}

func currentDirectory() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    return getcwd(&buffer, buffer.count).map { String(cString: $0) } ?? "/"
}

extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
    func trimmingTrailingSpaces() -> String {
        var result = self
        while result.last == " " { result.removeLast() }
        return result
    }
}

// `--persistent` alone means yes, as `/persistent:yes` would.
var arguments = Array(CommandLine.arguments.dropFirst())
for (index, argument) in arguments.enumerated() where argument == "--persistent" {
    let next = index + 1 < arguments.count ? arguments[index + 1] : ""
    if next != "yes" && next != "no" { arguments[index] = "--persistent=yes" }
}
Netusectl.main(netUseArguments(arguments) ?? arguments)
