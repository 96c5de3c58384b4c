import ArgumentParser
import FoundationEssentials
import Glibc
import NetUseCore

/// `net use` alone: the connections as NET.EXE lists them.
struct NetUseList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "net-use-list", shouldDisplay: false)

    @OptionGroup var connection: Connection

    func run() throws {
        let response = try connection.perform(ControlRequest(op: "list"))
        if connection.json { return connection.printJSON(response) }
        print("New connections will not be remembered.")
        print("")
        guard let drives = entries(response.drives) else { return }
        print("")
        print("Status".padding(13) + "Local".padding(10) + "Remote".padding(26) + "Network")
        print("")
        print(String(repeating: "-", count: 79))
        for drive in drives {
            let smb = drive.remote.hasPrefix("//") || drive.remote.lowercased().hasPrefix("smb://")
            let remote = drive.remote.hasPrefix("//") ? drive.remote.replacing("/", with: "\\") : drive.remote
            print(drive.status.padding(13) + drive.letter.padding(10) + remote.padding(26)
                  + (smb ? "Microsoft Windows Network" : "Local directory"))
        }
        print("The command completed successfully.")
        print("")
    }
}

/// `net use Q: /delete [/y]` and `net use * /delete /y`. Where NET.EXE asks before it
/// closes open files, this asks on a terminal and refuses without one; `/y` answers yes.
struct NetUseDelete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "net-use-delete", shouldDisplay: false)

    @Argument var letter: String
    @Flag var yes = false
    @OptionGroup var connection: Connection

    func run() throws {
        if letter == "*" {
            guard let drives = entries(try connection.perform(ControlRequest(op: "list")).drives) else { return }
            if !yes {
                print("You have these remote connections:")
                print("")
                for drive in drives { print("    \(drive.letter)        \(drive.remote)") }
                guard ask("Continuing will cancel the connections.") else { throw refusal() }
            }
            for drive in drives { try delete(drive.letter, force: true) }
        } else {
            guard DriveLetter(letter) != nil else {
                throw Self.fail(NetError(.invalidParameter, detail: ["'\(letter)' is not a drive letter (a to z, or *)."]))
            }
            do {
                try delete(letter, force: yes)
            } catch let error as NetError where error.code == .openFiles || error.code == .deviceInUse {
                FileOutput.standardError.write(error.description + "\n\n")
                guard ask("There are open files and/or incomplete directory searches pending on the connection to \(DriveLetter(letter)!).")
                else { throw refusal() }
                try delete(letter, force: true)
            }
        }
        print("The command completed successfully.")
        print("")
    }

    private func delete(_ letter: String, force: Bool) throws {
        let response: ControlResponse
        do {
            response = try connection.client.send(ControlRequest(op: "delete", letter: letter, force: force ? true : nil))
        } catch {
            throw Self.fail(error)
        }
        if let error = response.netError {
            if error.code == .openFiles || error.code == .deviceInUse, !force { throw error }
            throw Self.fail(error)
        }
        print("\(DriveLetter(letter)!) was deleted successfully.")
        print("")
    }

    /// NET.EXE's question, on a terminal only; without one the answer is no.
    private func ask(_ situation: String) -> Bool {
        guard isatty(STDIN_FILENO) == 1 else { return false }
        print(situation)
        print("")
        print("Do you want to continue this operation? (Y/N) [N]: ", terminator: "")
        fflush(nil)
        return readLine()?.drop { $0 == " " || $0 == "\t" }.lowercased().hasPrefix("y") ?? false
    }

    private func refusal() -> Error {
        Self.fail(NetError(.openFiles, detail: [
            "Nothing was deleted. /y closes the open files without asking" + (isatty(STDIN_FILENO) == 1 ? "." : " (no terminal to ask on).")]))
    }

    private static func fail(_ error: NetError) -> Error {
        FileOutput.standardError.write(error.description + "\n")
        return ExitCode(Exit.systemError)
    }
}

/// Turns `netusectl use …` in NET USE's spelling into netusectl's own, or runs what has no
/// counterpart (the NET-style listing, delete with its question). Nil: parse as given.
func netUseArguments(_ arguments: [String]) -> [String]? {
    guard arguments.first?.lowercased() == "use" else { return nil }
    switch NetUseSyntax.action(Array(arguments.dropFirst())) {
    case .own:
        return nil
    case .list:
        return ["net-use-list"] + arguments.dropFirst()
    case .delete(let letter, let yes, let rest):
        return ["net-use-delete", letter] + (yes ? ["--yes"] : []) + rest
    case .refused(let reason):
        FileOutput.standardError.write(NetError(.invalidParameter, detail: reason.split(separator: "\n").map(String.init)).description + "\n")
        exit(Exit.systemError)
    case .use(let letter, let remote, var user, let persistent, let prompt, let saveCredentials, let global, let rest):
        var translated = ["use", letter, remote]
        if (prompt || saveCredentials), user == nil, let login = getpwuid(getuid())?.pointee.pw_name {
            user = String(cString: login)  // `*` asks for the password of the user who types
        }
        if saveCredentials, let user {
            guard let file = saveCredentialsFile(remote: remote, user: user) else { exit(Exit.systemError) }
            translated += ["--credentials", file]
        } else if let user {
            translated += ["--user", user]
        }
        if prompt && !saveCredentials && isatty(STDIN_FILENO) != 1 && !rest.contains("--password-stdin") {
            FileOutput.standardError.write(NetError(.invalidParameter, detail: [
                "* asks for the password on a terminal, and there is none: use --password-stdin."]).description + "\n")
            exit(Exit.systemError)
        }
        if let persistent { translated += ["--persistent", persistent ? "yes" : "no"] }
        if global { translated.append("--global") }
        return translated + rest
    }
}

/// `/savecred`: the password, asked for once, kept in a credentials file of the user's own
/// (mode 0600 in a 0700 folder), which `--credentials` reads now and the daemon at each start.
private func saveCredentialsFile(remote: String, user: String) -> String? {
    guard isatty(STDIN_FILENO) == 1 else {
        FileOutput.standardError.write(NetError(.invalidParameter, detail: ["/savecred asks for the password on a terminal, and there is none."]).description + "\n")
        return nil
    }
    let home = InstancePaths.environment()["HOME"] ?? String(cString: getpwuid(getuid())!.pointee.pw_dir)
    let folder = home + "/.config/netuse/credentials"
    _ = mkdir(home + "/.config", 0o755)
    _ = mkdir(home + "/.config/netuse", 0o700)
    _ = mkdir(folder, 0o700)
    let server = (try? SMBLocation(parsing: remote))?.serverKey ?? "local"
    let safe = (server + "-" + user).map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
    let path = folder + "/" + String(safe)
    let password = getpass("Type the password for \(remote): ").map { String(cString: $0) } ?? ""
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
    guard fd >= 0 else {
        FileOutput.standardError.write("Cannot write \(path): \(Errno.current).\n")
        return nil
    }
    defer { close(fd) }
    fchmod(fd, 0o600)
    let text = "username=\(user)\npassword=\(password)\n"
    _ = text.withCString { write(fd, $0, strlen($0)) }
    return path
}
