import NetUseCore

/// One way of logging on in SESSION_SETUP: the tokens each leg carries (SPNEGO), and the key
/// that signing and encryption derive from once the server said yes.
protocol SessionAuthenticator {
    /// The token of the first SESSION_SETUP.
    mutating func firstToken() throws(SMB2SetupError) -> [UInt8]
    /// The answer to the server's token while it asks for more (MORE_PROCESSING_REQUIRED).
    mutating func nextToken(_ serverToken: [UInt8]) throws(SMB2SetupError) -> [UInt8]
    /// The server's token in its final answer: mutual authentication checks it here.
    mutating func finish(_ serverToken: [UInt8]) throws(SMB2SetupError)
    /// The whole key (MS-SMB2's FullSessionKey); empty for an anonymous logon.
    var sessionKey: [UInt8] { get }
}

extension NTLMAuthenticator: SessionAuthenticator {
    mutating func nextToken(_ serverToken: [UInt8]) throws(SMB2SetupError) -> [UInt8] {
        do {
            return try secondToken(serverToken)
        } catch {
            throw .protocolError("session setup: challenge malformed")
        }
    }

    mutating func finish(_ serverToken: [UInt8]) throws(SMB2SetupError) {}
}
