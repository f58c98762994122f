/// The positional parameters of one call, read with aria2's types and a clear error for a
/// wrong one.
struct Arguments {
    let method: String
    let values: [Any]

    func string(_ index: Int) throws(RPCError) -> String {
        guard index < values.count, let value = values[index] as? String else {
            throw .invalidParams("\(method): parameter \(index + 1) must be a string")
        }
        return value
    }

    /// An array of strings; `nil` when absent and `optional`.
    func strings(_ index: Int, optional: Bool = false) throws(RPCError) -> [String]? {
        guard index < values.count else {
            if optional { return nil }
            throw .invalidParams("\(method): parameter \(index + 1) is missing")
        }
        guard let list = values[index] as? [Any], let strings = list as? [String] else {
            throw .invalidParams("\(method): parameter \(index + 1) must be an array of strings")
        }
        return strings
    }

    func strings(_ index: Int) throws(RPCError) -> [String] {
        guard let list = try strings(index, optional: false), !list.isEmpty else {
            throw .invalidParams("\(method): parameter \(index + 1) must be a non-empty array of strings")
        }
        return list
    }

    func object(_ index: Int) throws(RPCError) -> [String: Any]? {
        guard index < values.count else { return nil }
        guard let object = values[index] as? [String: Any] else {
            throw .invalidParams("\(method): parameter \(index + 1) must be an object")
        }
        return object
    }

    /// An integer given as a number or a string of digits (clients send both); `nil` if absent.
    func int(_ index: Int) throws(RPCError) -> Int? {
        guard index < values.count else { return nil }
        if let number = values[index] as? Int { return number }
        if let text = values[index] as? String, let number = Int(text) { return number }
        throw .invalidParams("\(method): parameter \(index + 1) must be an integer")
    }

    func requiredInt(_ index: Int) throws(RPCError) -> Int {
        guard let value = try int(index) else { throw .invalidParams("\(method): parameter \(index + 1) is missing") }
        return value
    }
}
