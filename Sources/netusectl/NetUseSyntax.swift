import NetUseCore

/// `net use` as Windows spells it, beside netusectl's own options:
///
///     use Q: \\server\share [* | password] [/user:[DOMAIN\]name] [/persistent:yes|no] [/savecred]
///     use * \\server\share ...
///     use Q: /delete [/y]          use * /delete /y          use
///
/// Switches are case-insensitive and may be shortened as NET.EXE allows (/d, /p:, /u:). A
/// local directory that is spelled exactly like a switch (`/d`) must be written `file:///d`.
enum NetUseSyntax {
    enum Action: Equatable {
        /// Not NET USE's spelling: parse the arguments as they are.
        case own
        /// `net use` alone: the connections, as NET.EXE lists them.
        case list
        case use(letter: String, remote: String, user: String?, persistent: Bool?, prompt: Bool, saveCredentials: Bool,
                 global: Bool, rest: [String])
        /// `/delete`; `/y` answers yes to "There are open files…".
        case delete(letter: String, yes: Bool, rest: [String])
        case refused(String)
    }

    /// What the arguments after `use` ask for.
    static func action(_ arguments: [String]) -> Action {
        if arguments.isEmpty { return .list }
        var positional: [String] = []
        var user: String?
        var persistent: Bool?
        var delete = false, yes = false, save = false, global = false, anySwitch = false
        var rest: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument.hasPrefix("--") || (argument.hasPrefix("-") && argument.count > 1 && !argument.hasPrefix("-/")) {
                // netusectl's own options, and their values, pass through.
                rest.append(argument)
                if ["-o", "--option", "--user", "--credentials", "--persistent", "--socket"].contains(argument), index < arguments.count,
                   !(argument == "--persistent" && !["yes", "no"].contains(arguments[index])) {
                    rest.append(arguments[index])
                    index += 1
                }
                continue
            }
            guard let netSwitch = Switch(argument) else {
                positional.append(argument)
                continue
            }
            anySwitch = true
            switch netSwitch {
            case .user(let name): user = name
            case .persistent(let value):
                guard let value else { return .refused("/persistent takes yes or no.") }
                persistent = value
            case .delete: delete = true
            case .yes: yes = true
            case .no: return .refused("/n answers no: nothing was done.")
            case .saveCredentials: save = true
            case .global: global = true
            }
        }
        if positional.isEmpty && !anySwitch { return .list }
        if delete {
            guard positional.count == 1 else { return .refused("/delete takes one drive letter, or * for all of them.") }
            return .delete(letter: positional[0], yes: yes, rest: rest)
        }
        guard anySwitch || positional.count > 2 else { return .own }
        guard positional.count >= 2 else { return .refused("net use needs a drive letter (or *) and a share.") }
        guard positional.count <= 3 else { return .refused("Too many parameters: \(positional.dropFirst(3).joined(separator: " ")).") }
        var prompt = false
        if positional.count == 3 {
            guard positional[2] == "*" else {
                return .refused("""
                    A password typed on the command line can be read by every user of this machine (ps shows it).
                    Type * in its place to be asked for it, or use --password-stdin or --credentials FILE.
                    """)
            }
            prompt = true
        }
        return .use(letter: positional[0], remote: positional[1], user: user, persistent: persistent, prompt: prompt,
                    saveCredentials: save, global: global, rest: rest)
    }

    /// One NET.EXE switch; nil for anything else (a path such as /srv/share included).
    enum Switch: Equatable {
        case user(String)
        case persistent(Bool?)
        case delete, yes, no, saveCredentials, global

        init?(_ text: String) {
            let lower = text.lowercased()
            if let colon = lower.firstIndex(of: ":") {
                let name = lower[..<colon], value = String(text[text.index(after: colon)...])
                switch name {
                case "/user", "/u": self = .user(value)
                case "/persistent", "/p":
                    switch value.lowercased() {
                    case "yes", "y": self = .persistent(true)
                    case "no", "n": self = .persistent(false)
                    default: self = .persistent(nil)
                    }
                default: return nil
                }
                return
            }
            switch lower {
            case "/delete", "/d": self = .delete
            case "/y", "/yes": self = .yes
            case "/n", "/no": self = .no
            case "/savecred": self = .saveCredentials
            case "/global": self = .global
            default: return nil
            }
        }
    }
}
