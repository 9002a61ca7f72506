import Foundation
import CHDF5

// HDF5: a small, safe Swift wrapper over HDF5's C API, and the only Swift file that imports CHDF5.
//
// Fusion keeps its results and checkpoints in HDF5 (DESIGN.md, "Results on disk") so that h5py and
// h5dump read them as they are. Everything C stays in this file: `hid_t` handles, C strings, and
// HDF5's error stack. What leaves it is files, groups, datasets, attributes, Swift arrays, Tensors,
// and one error type, `HDF5Error`, that names the file and the object path.
//
// Handles: every group and dataset owns its HDF5 identifier and closes it on deinit. A file stays open
// until `close()`, or until the HDF5File and every group and dataset opened from it are released;
// `close()` first closes whatever objects are still open, so no identifier outlives its file.
// Temporary identifiers (dataspaces, datatypes, property lists, attributes) are closed by `defer`
// in the function that made them.
//
// Format: new files use the HDF5 1.8 object format (libver bounds V18...latest), which h5py and every
// HDF5 reader since 2008 read, and which lets one attribute exceed 64 KiB (a resolved config's YAML).
//
// Threads: use one file, and the objects opened from it, from one thread at a time (DESIGN.md: one
// process writes a file; a sweep merges finished runs).

// MARK: - Errors

/// A failed HDF5 operation: the file, the object inside it, what was being done (and how to fix it
/// where there is a fix), and HDF5's own innermost explanation when the C library gave one.
public struct HDF5Error: Error, CustomStringConvertible, LocalizedError {
    /// The file's path, as given to `HDF5File.create` or `HDF5File.open`.
    public let file: String
    /// The absolute path of the object inside the file ("/" for the file and its root group).
    public let object: String
    /// What went wrong, in words a user can act on.
    public let message: String
    /// HDF5's innermost error message, e.g. "file signature not found", when it reported one.
    public let detail: String?

    public init(file: String, object: String, message: String, detail: String? = nil) {
        self.file = file
        self.object = object
        self.message = message
        self.detail = detail
    }

    public var description: String {
        var text = "HDF5 file '\(file)', object '\(object)': \(message)"
        if let detail { text += " (HDF5: \(detail))" }
        return text
    }

    public var errorDescription: String? { description }
}

/// HDF5 prints its error stack to stderr on every failure unless told not to. Fusion turns that off
/// once per process and reports failures as thrown `HDF5Error`s instead (with the innermost message).
private let libraryIsReady: Bool = H5open() >= 0 && H5Eset_auto2(fusion_H5E_DEFAULT(), nil, nil) >= 0

private func requireLibrary(file: String) throws {
    guard libraryIsReady else {
        throw HDF5Error(file: file, object: "/", message: "the HDF5 library failed to initialise",
                        detail: takeErrorDetail())
    }
}

/// The innermost message on HDF5's error stack (the most specific one), after which the stack is
/// cleared so that a later failure does not report a stale message.
private func takeErrorDetail() -> String? {
    final class Messages { var list: [String] = [] }
    let messages = Messages()
    let collect: H5E_walk2_t = { _, error, context in
        guard let error, let context, let text = error.pointee.desc else { return 0 }
        let messages = Unmanaged<Messages>.fromOpaque(context).takeUnretainedValue()
        let message = String(cString: text)
        if !message.isEmpty { messages.list.append(message) }
        return 0
    }
    withExtendedLifetime(messages) {
        _ = H5Ewalk2(fusion_H5E_DEFAULT(), H5E_WALK_UPWARD, collect,
                     Unmanaged.passUnretained(messages).toOpaque())
    }
    H5Eclear2(fusion_H5E_DEFAULT())
    return messages.list.first
}

/// For tests: how many HDF5 objects of each kind are open in this process, over all files: files,
/// groups, datasets, attributes, committed datatypes. The same counts before and after a piece of
/// work mean that it leaked no such handle. (HDF5 counts only objects that live in files this way;
/// dataspaces, transient datatypes and property lists are closed by `defer` where they are made.)
func hdf5OpenObjectCounts() -> [String: Int] {
    _ = libraryIsReady
    let kinds: [(String, Int32)] = [
        ("file", Int32(H5F_OBJ_FILE)), ("group", Int32(H5F_OBJ_GROUP)), ("dataset", Int32(H5F_OBJ_DATASET)),
        ("attribute", Int32(H5F_OBJ_ATTR)), ("datatype", Int32(H5F_OBJ_DATATYPE)),
    ]
    // H5F_OBJ_ALL (a macro Swift cannot import) as the file: count over every open file.
    let allFiles = hid_t(kinds.reduce(0) { $0 | $1.1 })
    var counts: [String: Int] = [:]
    for (name, kind) in kinds {
        counts[name] = H5Fget_obj_count(allFiles, UInt32(kind))
    }
    return counts
}

// MARK: - Element types

/// The element types Fusion stores in datasets (little-endian, as every machine it runs on).
public enum HDF5ElementType: String, CustomStringConvertible, Sendable {
    case float32, float64, int32, int64, uint8, uint64

    public var description: String { rawValue }

    /// The Swift element type that reads and writes this one, for error messages.
    var swiftName: String {
        switch self {
        case .float32: return "Float"
        case .float64: return "Double"
        case .int32: return "Int32"
        case .int64: return "Int64"
        case .uint8: return "UInt8"
        case .uint64: return "UInt64"
        }
    }

    /// The HDF5 in-memory type; also the type written to the file (HDF5 records it as e.g. IEEE_F32LE).
    var nativeType: hid_t {
        switch self {
        case .float32: return fusion_H5T_NATIVE_FLOAT()
        case .float64: return fusion_H5T_NATIVE_DOUBLE()
        case .int32: return fusion_H5T_NATIVE_INT32()
        case .int64: return fusion_H5T_NATIVE_INT64()
        case .uint8: return fusion_H5T_NATIVE_UINT8()
        case .uint64: return fusion_H5T_NATIVE_UINT64()
        }
    }

    /// The element type of a stored HDF5 datatype, or nil when it is none of Fusion's.
    init?(stored type: hid_t) {
        let size = H5Tget_size(type)
        switch H5Tget_class(type) {
        case H5T_FLOAT:
            switch size {
            case 4: self = .float32
            case 8: self = .float64
            default: return nil
            }
        case H5T_INTEGER:
            let signed = H5Tget_sign(type) == H5T_SGN_2
            switch (size, signed) {
            case (1, false): self = .uint8
            case (4, true): self = .int32
            case (8, true): self = .int64
            case (8, false): self = .uint64
            default: return nil
            }
        default:
            return nil
        }
    }
}

/// A Swift type that can be a dataset element: Float, Double, Int32, Int64, UInt8, UInt64.
public protocol HDF5Element {
    static var hdf5ElementType: HDF5ElementType { get }
}

extension Float: HDF5Element { public static var hdf5ElementType: HDF5ElementType { .float32 } }
extension Double: HDF5Element { public static var hdf5ElementType: HDF5ElementType { .float64 } }
extension Int32: HDF5Element { public static var hdf5ElementType: HDF5ElementType { .int32 } }
extension Int64: HDF5Element { public static var hdf5ElementType: HDF5ElementType { .int64 } }
extension UInt8: HDF5Element { public static var hdf5ElementType: HDF5ElementType { .uint8 } }
extension UInt64: HDF5Element { public static var hdf5ElementType: HDF5ElementType { .uint64 } }

/// A readable name for any stored HDF5 datatype ("float32", "variable-length string", …).
private func typeName(_ type: hid_t) -> String {
    if let known = HDF5ElementType(stored: type) { return known.rawValue }
    let bits = H5Tget_size(type) * 8
    switch H5Tget_class(type) {
    case H5T_INTEGER: return (H5Tget_sign(type) == H5T_SGN_2 ? "int" : "uint") + "\(bits)"
    case H5T_FLOAT: return "float\(bits)"
    case H5T_STRING:
        return H5Tis_variable_str(type) > 0 ? "variable-length string"
                                            : "fixed-length string of \(H5Tget_size(type)) bytes"
    case H5T_COMPOUND: return "compound"
    case H5T_ENUM: return "enum"
    case H5T_ARRAY: return "array type"
    case H5T_VLEN: return "variable-length sequence"
    default: return "HDF5 type class \(H5Tget_class(type).rawValue)"
    }
}

/// The dimensions of a dataspace: nil for a scalar, [] for an empty (null) one.
private func dimensions(of space: hid_t) -> [Int]? {
    switch H5Sget_simple_extent_type(space) {
    case H5S_SCALAR: return nil
    case H5S_SIMPLE:
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank > 0 else { return nil }
        var dims = [hsize_t](repeating: 0, count: rank)
        H5Sget_simple_extent_dims(space, &dims, nil)
        return dims.map { Int(clamping: $0) }  // a damaged file can hold any 64 bits here
    default: return []
    }
}

/// The product of `shape`, or nil when it overflows an Int.
private func elementCount(_ shape: [Int]) -> Int? {
    var count = 1
    for extent in shape {
        let (product, overflow) = count.multipliedReportingOverflow(by: extent)
        if overflow { return nil }
        count = product
    }
    return count
}

/// "an int64 scalar", "a float64 array of shape [3]", "a variable-length string scalar".
private func describe(type: hid_t, space: hid_t) -> String {
    let name = typeName(type)
    let article = name.first.map { "aeioH".contains($0) } == true ? "an" : "a"
    guard let dims = dimensions(of: space) else { return "\(article) \(name) scalar" }
    return "\(article) \(name) array of shape \(dims)"
}

/// The attribute getter that reads a stored attribute of this type and shape, if there is one.
private func getterFor(type: hid_t, space: hid_t) -> String? {
    let scalar = dimensions(of: space) == nil
    switch H5Tget_class(type) {
    case H5T_INTEGER: return scalar ? "int64Attribute" : "int64ArrayAttribute"
    case H5T_FLOAT: return scalar ? "doubleAttribute" : "doubleArrayAttribute"
    case H5T_STRING: return scalar ? "stringAttribute" : nil
    default: return nil
    }
}

/// A C string of `length` bytes (no terminator counted) as a Swift string, decoded as UTF-8.
private func decodeCString(_ buffer: [CChar], length: Int) -> String {
    String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

// MARK: - Files

/// The open HDF5 file behind an `HDF5File` and every object opened from it. It closes the file
/// when the last of them is released, or on `close()`, which first closes the objects still open.
final class OpenFile {
    let path: String
    let writable: Bool
    let id: hid_t
    private(set) var isOpen = true

    private struct WeakObject { weak var object: HDF5Object? }
    private var objects: [ObjectIdentifier: WeakObject] = [:]

    init(path: String, id: hid_t, writable: Bool) {
        self.path = path
        self.id = id
        self.writable = writable
    }

    func register(_ object: HDF5Object) { objects[ObjectIdentifier(object)] = WeakObject(object: object) }
    func unregister(_ object: HDF5Object) { objects[ObjectIdentifier(object)] = nil }

    func close() throws {
        guard isOpen else { return }
        for entry in objects.values { entry.object?.closeHandle() }
        objects.removeAll()
        isOpen = false
        if H5Fclose(id) < 0 {
            throw HDF5Error(file: path, object: "/", message: "could not close the file (it may be incomplete)",
                            detail: takeErrorDetail())
        }
    }

    deinit { try? close() }
}

/// An HDF5 file, readable by h5py and h5dump. Its root group, `root`, holds everything else.
///
///     let file = try HDF5File.create("runs.h5", overwrite: false)
///     let train = try file.root.createGroup("runs/a/train")
///     let loss = try train.createExtendibleDataset("loss", of: Double.self)
///     try loss.append([2.31, 2.17])
///     try file.close()
///
/// The file closes on `close()`, or once this object and every group and dataset opened from it
/// have been released.
public final class HDF5File {
    /// The path as given when creating or opening the file.
    public let path: String
    /// The root group, "/".
    public let root: HDF5Group
    private let state: OpenFile

    /// The HDF5 library's version ("1.10.8"), for logs.
    public static var libraryVersion: String {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        guard H5get_libversion(&major, &minor, &release) >= 0 else { return "unknown" }
        return "\(major).\(minor).\(release)"
    }

    /// Whether the file was created or opened for writing.
    public var isWritable: Bool { state.writable }
    /// False once `close()` has been called.
    public var isOpen: Bool { state.isOpen }

    private init(path: String, id: hid_t, writable: Bool) throws {
        let state = OpenFile(path: path, id: id, writable: writable)
        let rootID = H5Gopen2(id, "/", fusion_H5P_DEFAULT())
        guard rootID >= 0 else {
            let detail = takeErrorDetail()
            try? state.close()
            throw HDF5Error(file: path, object: "/", message: "could not open the root group", detail: detail)
        }
        self.path = path
        self.state = state
        self.root = HDF5Group(file: state, id: rootID, path: "/")
    }

    /// Creates a new HDF5 file. Refuses to replace an existing file unless `overwrite` is true.
    public static func create(_ path: String, overwrite: Bool = false) throws -> HDF5File {
        try requireLibrary(file: path)
        if FileManager.default.fileExists(atPath: path) && !overwrite {
            throw HDF5Error(file: path, object: "/",
                            message: "the file already exists; pass overwrite: true to replace it")
        }
        let access = try writeAccessList(path)
        defer { H5Pclose(access) }
        let flags = overwrite ? fusion_H5F_ACC_TRUNC() : fusion_H5F_ACC_EXCL()
        let id = H5Fcreate(path, flags, fusion_H5P_DEFAULT(), access)
        guard id >= 0 else {
            throw HDF5Error(file: path, object: "/",
                            message: "could not create the file; check that its directory exists and is writable",
                            detail: takeErrorDetail())
        }
        return try HDF5File(path: path, id: id, writable: true)
    }

    /// Opens an existing HDF5 file, for reading or (with `writable`) for adding to it. A missing
    /// file, a file that is not HDF5, or a truncated one gives an `HDF5Error` naming the file.
    public static func open(_ path: String, writable: Bool = false) throws -> HDF5File {
        try requireLibrary(file: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw HDF5Error(file: path, object: "/", message: "no such file; expected an HDF5 file (check the path)")
        }
        guard !isDirectory.boolValue else {
            throw HDF5Error(file: path, object: "/", message: "this is a directory; expected an HDF5 file")
        }
        let signature = H5Fis_hdf5(path)
        guard signature > 0 else {
            let reason = signature == 0 ? "this is not an HDF5 file (no HDF5 signature in it)"
                                        : "could not read the file to check that it is HDF5"
            throw HDF5Error(file: path, object: "/",
                            message: "\(reason); expected an HDF5 file such as Fusion or h5py write",
                            detail: signature == 0 ? nil : takeErrorDetail())
        }
        let access = writable ? try writeAccessList(path) : fusion_H5P_DEFAULT()
        defer { if writable { H5Pclose(access) } }
        let id = H5Fopen(path, writable ? fusion_H5F_ACC_RDWR() : fusion_H5F_ACC_RDONLY(), access)
        guard id >= 0 else {
            throw HDF5Error(file: path, object: "/",
                            message: "could not open the file as HDF5; it may be truncated or damaged "
                                + "(copied while still being written?); expected a complete HDF5 file",
                            detail: takeErrorDetail())
        }
        return try HDF5File(path: path, id: id, writable: writable)
    }

    /// The file access properties for writing: the HDF5 1.8 object format or later (see the header).
    private static func writeAccessList(_ path: String) throws -> hid_t {
        let access = H5Pcreate(fusion_H5P_FILE_ACCESS())
        guard access >= 0, H5Pset_libver_bounds(access, H5F_LIBVER_V18, H5F_LIBVER_V110) >= 0 else {
            let detail = takeErrorDetail()
            if access >= 0 { H5Pclose(access) }
            throw HDF5Error(file: path, object: "/", message: "could not set up file access properties", detail: detail)
        }
        return access
    }

    /// Writes everything buffered so far to disk (a reader then sees a consistent file).
    public func flush() throws {
        guard state.isOpen else {
            throw HDF5Error(file: path, object: "/", message: "the file was closed; open it again to flush")
        }
        if H5Fflush(state.id, H5F_SCOPE_GLOBAL) < 0 {
            throw HDF5Error(file: path, object: "/", message: "could not flush the file", detail: takeErrorDetail())
        }
    }

    /// Closes every group and dataset still open from this file, then the file. Safe to call twice;
    /// objects opened from the file throw "the file was closed" afterwards.
    public func close() throws { try state.close() }
}

// MARK: - Objects and attributes

/// A group or dataset in an open file. Both carry attributes: strings, Int64, Double, and arrays of
/// Int64 or Double, each read back by a getter of its type.
public class HDF5Object {
    /// The object's absolute path inside the file, e.g. "/runs/a/train/loss".
    public let path: String
    let file: OpenFile
    let id: hid_t
    private var isOpen = true

    init(file: OpenFile, id: hid_t, path: String) {
        self.file = file
        self.id = id
        self.path = path
        file.register(self)
    }

    deinit {
        if isOpen {
            closeHandle()
            file.unregister(self)
        }
    }

    /// The path of the file this object lives in.
    public var filePath: String { file.path }

    /// Closes the identifier (called on deinit, or by the file's `close()`).
    func closeHandle() {
        guard isOpen else { return }
        isOpen = false
        if file.isOpen && H5Oclose(id) < 0 { _ = takeErrorDetail() }
    }

    // MARK: Checks

    /// An error about `object` (default: this object) in this file.
    func failure(_ message: String, object: String? = nil, detail: String? = nil) -> HDF5Error {
        HDF5Error(file: file.path, object: object ?? path, message: message, detail: detail)
    }

    /// `result`, or a thrown error carrying HDF5's explanation when it is negative (HDF5's failure).
    @discardableResult
    func check<T: BinaryInteger>(_ result: T, _ message: @autoclosure () -> String,
                                 object: String? = nil) throws -> T {
        if result >= 0 { return result }
        throw failure(message(), object: object, detail: takeErrorDetail())
    }

    func requireOpen() throws {
        guard isOpen && file.isOpen else {
            throw failure("the file was closed; open it again with HDF5File.open to use this object")
        }
    }

    func requireWritable(_ action: @autoclosure () -> String) throws {
        try requireOpen()
        guard file.writable else {
            throw failure("cannot \(action()): the file is open read-only; open it with writable: true")
        }
    }

    // MARK: Writing attributes

    /// Copies every attribute of `source` (strings, integers, reals and their arrays) onto this object.
    public func copyAttributes(from source: HDF5Object) throws {
        for name in try source.attributeNames {
            if let value = try? source.stringAttribute(name) { try setAttribute(name, value) }
            else if let value = try? source.int64Attribute(name) { try setAttribute(name, value) }
            else if let value = try? source.doubleAttribute(name) { try setAttribute(name, value) }
            else if let value = try? source.int64ArrayAttribute(name) { try setAttribute(name, value) }
            else if let value = try? source.doubleArrayAttribute(name) { try setAttribute(name, value) }
            else { throw failure("cannot copy attribute '\(name)': not a string, integer or real (array)", object: source.path) }
        }
    }

    /// Sets a string attribute, replacing any attribute of that name. Variable-length UTF-8 by default,
    /// which h5py reads as `str`; `fixedLength` stores exactly the UTF-8 bytes (h5py reads those as
    /// `bytes`). A string is stored up to its first NUL character.
    public func setAttribute(_ name: String, _ value: String, fixedLength: Bool = false) throws {
        try requireWritable("write attribute '\(name)'")
        let type = try check(H5Tcopy(fusion_H5T_C_S1()), "could not make a string type for attribute '\(name)'")
        defer { H5Tclose(type) }
        let bytes = Array(value.utf8.prefix { $0 != 0 })
        try check(H5Tset_size(type, fixedLength ? max(bytes.count, 1) : fusion_H5T_VARIABLE()),
                  "could not size the string type for attribute '\(name)'")
        if fixedLength {
            try check(H5Tset_strpad(type, H5T_STR_NULLPAD), "could not set string padding for attribute '\(name)'")
        }
        try check(H5Tset_cset(type, H5T_CSET_UTF8), "could not mark attribute '\(name)' as UTF-8")
        if fixedLength {
            let stored = bytes.isEmpty ? [UInt8(0)] : bytes
            try stored.withUnsafeBytes { try writeAttribute(name, type: type, dims: nil, data: $0.baseAddress) }
        } else {
            let terminated = bytes.map { CChar(bitPattern: $0) } + [0]
            try terminated.withUnsafeBufferPointer { characters in
                var pointer: UnsafePointer<CChar>? = characters.baseAddress
                try withUnsafePointer(to: &pointer) { try writeAttribute(name, type: type, dims: nil, data: $0) }
            }
        }
    }

    /// Sets a 64-bit integer attribute, replacing any attribute of that name.
    public func setAttribute(_ name: String, _ value: Int64) throws {
        try requireWritable("write attribute '\(name)'")
        try withUnsafeBytes(of: value) {
            try writeAttribute(name, type: fusion_H5T_NATIVE_INT64(), dims: nil, data: $0.baseAddress)
        }
    }

    /// Sets a 64-bit integer attribute from an Int (so that `setAttribute("seed", 42)` reads naturally).
    public func setAttribute(_ name: String, _ value: Int) throws {
        try setAttribute(name, Int64(value))
    }

    /// Sets a float64 attribute, replacing any attribute of that name.
    public func setAttribute(_ name: String, _ value: Double) throws {
        try requireWritable("write attribute '\(name)'")
        try withUnsafeBytes(of: value) {
            try writeAttribute(name, type: fusion_H5T_NATIVE_DOUBLE(), dims: nil, data: $0.baseAddress)
        }
    }

    /// Sets a 1-D array attribute of 64-bit integers, replacing any attribute of that name.
    public func setAttribute(_ name: String, _ values: [Int64]) throws {
        try requireWritable("write attribute '\(name)'")
        try values.withUnsafeBytes {
            try writeAttribute(name, type: fusion_H5T_NATIVE_INT64(), dims: [values.count], data: $0.baseAddress)
        }
    }

    /// Sets a 1-D array attribute of 64-bit integers from Ints.
    public func setAttribute(_ name: String, _ values: [Int]) throws {
        try setAttribute(name, values.map { Int64($0) })
    }

    /// Sets a 1-D array attribute of float64 values, replacing any attribute of that name.
    public func setAttribute(_ name: String, _ values: [Double]) throws {
        try requireWritable("write attribute '\(name)'")
        try values.withUnsafeBytes {
            try writeAttribute(name, type: fusion_H5T_NATIVE_DOUBLE(), dims: [values.count], data: $0.baseAddress)
        }
    }

    /// Creates attribute `name` (replacing an old one) with a scalar (`dims` nil) or 1-D dataspace.
    private func writeAttribute(_ name: String, type: hid_t, dims: [Int]?, data: UnsafeRawPointer?) throws {
        guard !name.isEmpty else { throw failure("an attribute needs a non-empty name") }
        let what = "attribute '\(name)'"
        if try check(H5Aexists(id, name), "could not check for \(what)") > 0 {
            try check(H5Adelete(id, name), "could not replace \(what)")
        }
        let space: hid_t
        if let dims {
            var extent = dims.map { hsize_t($0) }
            space = try check(H5Screate_simple(Int32(extent.count), &extent, nil),
                              "could not make a dataspace for \(what)")
        } else {
            space = try check(H5Screate(H5S_SCALAR), "could not make a dataspace for \(what)")
        }
        defer { H5Sclose(space) }
        let attribute = try check(H5Acreate2(id, name, type, space, fusion_H5P_DEFAULT(), fusion_H5P_DEFAULT()),
                                  "could not create \(what)")
        defer { H5Aclose(attribute) }
        let count = dims?.reduce(1, *) ?? 1
        if count > 0, let data {
            try check(H5Awrite(attribute, type, data), "could not write \(what)")
        }
    }

    // MARK: Reading attributes

    /// Whether this object has an attribute called `name`.
    public func hasAttribute(_ name: String) throws -> Bool {
        try requireOpen()
        guard !name.isEmpty else { return false }
        return try check(H5Aexists(id, name), "could not check for attribute '\(name)'") > 0
    }

    /// The names of this object's attributes, in alphabetical order.
    public var attributeNames: [String] {
        get throws {
            try requireOpen()
            var info = H5O_info_t()
            try check(H5Oget_info2(id, &info, UInt32(H5O_INFO_NUM_ATTRS)), "could not count the attributes")
            return try (0..<Int(info.num_attrs)).map { index in
                let length = try check(H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(index),
                                                           nil, 0, fusion_H5P_DEFAULT()),
                                       "could not read the name of attribute \(index)")
                var buffer = [CChar](repeating: 0, count: Int(length) + 1)
                try check(H5Aget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(index),
                                             &buffer, buffer.count, fusion_H5P_DEFAULT()),
                          "could not read the name of attribute \(index)")
                return decodeCString(buffer, length: Int(length))
            }
        }
    }

    /// A string attribute (variable- or fixed-length, UTF-8 or ASCII). Throws when it is missing,
    /// not a string, or an array of strings.
    public func stringAttribute(_ name: String) throws -> String {
        try withAttribute(name) { attribute, type, space in
            guard H5Tget_class(type) == H5T_STRING, dimensions(of: space) == nil else {
                let advice = getterFor(type: type, space: space).map { "; read it with \($0)" } ?? ""
                throw failure("attribute '\(name)' is \(describe(type: type, space: space)), "
                              + "not a single string\(advice)")
            }
            let what = "string attribute '\(name)'"
            if try check(H5Tis_variable_str(type), "could not inspect \(what)") > 0 {
                let memoryType = try check(H5Tcopy(fusion_H5T_C_S1()), "could not make a type to read \(what)")
                defer { H5Tclose(memoryType) }
                try check(H5Tset_size(memoryType, fusion_H5T_VARIABLE()), "could not make a type to read \(what)")
                try check(H5Tset_cset(memoryType, H5Tget_cset(type)), "could not make a type to read \(what)")
                var characters: UnsafeMutablePointer<CChar>? = nil
                try check(H5Aread(attribute, memoryType, &characters), "could not read \(what)")
                defer { if let characters { H5free_memory(characters) } }
                return characters.map { String(cString: $0) } ?? ""
            }
            // Fixed length: the bytes, up to the first NUL (null-terminated or null-padded), or
            // without the trailing spaces (space-padded, as Fortran writes them).
            let size = H5Tget_size(type)
            var bytes = [UInt8](repeating: 0, count: max(size, 1))
            try check(H5Aread(attribute, type, &bytes), "could not read \(what)")
            var end = bytes.firstIndex(of: 0) ?? bytes.count
            if H5Tget_strpad(type) == H5T_STR_SPACEPAD {
                while end > 0 && bytes[end - 1] == UInt8(ascii: " ") { end -= 1 }
            }
            return String(decoding: bytes[..<end], as: UTF8.self)
        }
    }

    /// A scalar integer attribute (any signed integer width, or unsigned up to 32 bits).
    public func int64Attribute(_ name: String) throws -> Int64 {
        let values: [Int64] = try readNumbers(name, array: false, as: .int64)
        return values[0]
    }

    /// A scalar integer attribute as an Int.
    public func intAttribute(_ name: String) throws -> Int { Int(try int64Attribute(name)) }

    /// A scalar floating-point attribute (float64, or float32 widened exactly).
    public func doubleAttribute(_ name: String) throws -> Double {
        let values: [Double] = try readNumbers(name, array: false, as: .float64)
        return values[0]
    }

    /// An array attribute of integers, flattened in row-major order.
    public func int64ArrayAttribute(_ name: String) throws -> [Int64] {
        try readNumbers(name, array: true, as: .int64)
    }

    /// An array attribute of floating-point values, flattened in row-major order.
    public func doubleArrayAttribute(_ name: String) throws -> [Double] {
        try readNumbers(name, array: true, as: .float64)
    }

    /// Reads a numeric attribute as `wanted` (.int64 or .float64), which must match its class (integer
    /// or float) and its kind (scalar or array); HDF5 converts the width.
    private func readNumbers<T: HDF5Element>(_ name: String, array: Bool, as wanted: HDF5ElementType) throws -> [T] {
        try withAttribute(name) { attribute, type, space in
            let typeClass = H5Tget_class(type)
            let fits = wanted == .float64
                ? typeClass == H5T_FLOAT
                : typeClass == H5T_INTEGER && (H5Tget_sign(type) == H5T_SGN_2 || H5Tget_size(type) < 8)
            let dims = dimensions(of: space)
            let wantedText = wanted == .float64 ? "float" : "integer"
            guard fits, array == (dims != nil) else {
                let advice = getterFor(type: type, space: space).map { "; read it with \($0)" } ?? ""
                throw failure("attribute '\(name)' is \(describe(type: type, space: space)), "
                              + "not \(array ? "an array of \(wantedText)s" : "a single \(wantedText)")\(advice)")
            }
            if dims == [] { return [] }  // an empty (null) dataspace
            guard let count = elementCount(dims ?? [1]) else {
                throw failure("attribute '\(name)' has shape \(dims ?? []), too many values to address; the file is damaged")
            }
            guard count > 0 else { return [] }
            return try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
                try check(H5Aread(attribute, wanted.nativeType, buffer.baseAddress),
                          "could not read attribute '\(name)'")
                initialized = count
            }
        }
    }

    /// Opens attribute `name` with its type and dataspace for `body`, closing all three afterwards.
    private func withAttribute<R>(_ name: String,
                                  _ body: (_ attribute: hid_t, _ type: hid_t, _ space: hid_t) throws -> R) throws -> R {
        guard try hasAttribute(name) else {
            let names = (try? attributeNames) ?? []
            let present = names.isEmpty ? "it has no attributes"
                                        : "it has: \(names.map { "'\($0)'" }.joined(separator: ", "))"
            throw failure("no attribute '\(name)' (\(present))")
        }
        let attribute = try check(H5Aopen(id, name, fusion_H5P_DEFAULT()), "could not open attribute '\(name)'")
        defer { H5Aclose(attribute) }
        let type = try check(H5Aget_type(attribute), "could not read the type of attribute '\(name)'")
        defer { H5Tclose(type) }
        let space = try check(H5Aget_space(attribute), "could not read the shape of attribute '\(name)'")
        defer { H5Sclose(space) }
        return try body(attribute, type, space)
    }
}

// MARK: - Groups

/// A group: a folder of groups and datasets inside a file. Paths given to its methods are relative
/// to it ("train/loss"), or absolute from the file's root ("/runs/a").
public final class HDF5Group: HDF5Object {

    /// The absolute path of `relative` seen from this group.
    private func absolutePath(_ relative: String) -> String {
        let parts = relative.split(separator: "/").map(String.init)
        let base = relative.hasPrefix("/") || path == "/" ? "" : path
        return parts.isEmpty ? (relative.hasPrefix("/") ? "/" : path) : base + "/" + parts.joined(separator: "/")
    }

    /// Whether an object exists at `path` (every group along the way must exist too).
    public func exists(_ path: String) throws -> Bool {
        try requireOpen()
        let parts = path.split(separator: "/").map(String.init)
        let lead = path.hasPrefix("/") ? "/" : ""
        for end in parts.indices {
            let prefix = lead + parts[...end].joined(separator: "/")
            let found = H5Lexists(id, prefix, fusion_H5P_DEFAULT())
            // A negative answer here means an earlier part of the path is a dataset, not a group, so
            // nothing can exist below it: that is "no", not a failure.
            if found < 0 { _ = takeErrorDetail() }
            if found <= 0 { return false }
        }
        return true
    }

    /// The names of this group's members (groups and datasets), in alphabetical order (by UTF-8 bytes,
    /// the order of HDF5's name index).
    ///
    /// Read in one pass in the storage's own order (H5_ITER_NATIVE), then sorted here. Asking HDF5 for the
    /// names in increasing order instead (H5Lget_name_by_idx with H5_ITER_INC) makes it build a table of
    /// every link for each name, and on a damaged group with dense link storage HDF5 1.10 then frees an
    /// invalid pointer while discarding that table (measured: a fuzzed log.h5 crashed `fusion report` in
    /// H5G__link_release_table); native iteration reads the links without that table.
    public var childNames: [String] {
        get throws {
            try requireOpen()
            final class Names { var list: [String] = [] }
            let names = Names()
            var position = hsize_t(0)
            let status = withExtendedLifetime(names) {
                H5Literate(id, H5_INDEX_NAME, H5_ITER_NATIVE, &position, { _, name, _, context in
                    guard let name, let context else { return -1 }
                    let length = strlen(name)
                    let bytes = UnsafeRawPointer(name).assumingMemoryBound(to: UInt8.self)
                    Unmanaged<Names>.fromOpaque(context).takeUnretainedValue().list
                        .append(String(decoding: UnsafeBufferPointer(start: bytes, count: length), as: UTF8.self))
                    return 0
                }, Unmanaged.passUnretained(names).toOpaque())
            }
            try check(status, "could not list the group's members")
            return names.list.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        }
    }

    /// Unlinks the member `path` (a group or dataset) from this group.
    public func remove(_ path: String) throws {
        let full = absolutePath(path)
        try requireWritable("remove '\(full)'")
        guard try exists(path) else { throw failure("nothing to remove: no member at this path", object: full) }
        try check(H5Ldelete(id, path, fusion_H5P_DEFAULT()), "could not remove the member", object: full)
    }

    /// Copies `source` (a group or dataset of any open file, with everything below it and its
    /// attributes) to `path` in this group; `path` must not exist yet. How a sweep gathers its runs.
    /// Datasets go through H5Ocopy; groups are walked here and their attributes copied one by one,
    /// because H5Ocopy of a group whose many variable-length string attributes sit in dense storage
    /// crashes HDF5 1.10 (measured: h5copy of a run group segfaults, its children copy fine).
    public func copy(_ source: HDF5Object, to path: String) throws {
        let full = absolutePath(path)
        try requireWritable("copy '\(source.path)' to '\(full)'")
        try requireNew(path, full: full)
        guard let sourceGroup = source as? HDF5Group else {
            let links = try linkCreationList(full)
            defer { H5Pclose(links) }
            try check(H5Ocopy(source.id, ".", id, path, fusion_H5P_DEFAULT(), links),
                      "could not copy \(source.filePath):\(source.path)", object: full)
            return
        }
        let target = try createGroup(path)
        try target.copyAttributes(from: sourceGroup)
        for name in try sourceGroup.childNames {
            let child: HDF5Object = try (try? sourceGroup.group(name)) ?? sourceGroup.dataset(name)
            try target.copy(child, to: name)
        }
    }

    /// Creates a group at `path`, with any missing groups along the way ("runs/a/train").
    /// Throws if something already exists there.
    @discardableResult
    public func createGroup(_ path: String) throws -> HDF5Group {
        let full = absolutePath(path)
        try requireWritable("create group '\(full)'")
        try requireNew(path, full: full)
        let links = try linkCreationList(full)
        defer { H5Pclose(links) }
        let group = try check(H5Gcreate2(id, path, links, fusion_H5P_DEFAULT(), fusion_H5P_DEFAULT()),
                              "could not create the group", object: full)
        return HDF5Group(file: file, id: group, path: full)
    }

    /// Opens the group at `path`; throws naming the path (and what is there instead) when it is missing.
    public func group(_ path: String) throws -> HDF5Group {
        let full = absolutePath(path)
        try requireExisting(path, full: full, type: H5O_TYPE_GROUP, label: "group")
        let group = try check(H5Gopen2(id, path, fusion_H5P_DEFAULT()), "could not open the group", object: full)
        return HDF5Group(file: file, id: group, path: full)
    }

    /// Opens the dataset at `path`; throws naming the path (and what is there instead) when it is missing.
    public func dataset(_ path: String) throws -> HDF5Dataset {
        let full = absolutePath(path)
        try requireExisting(path, full: full, type: H5O_TYPE_DATASET, label: "dataset")
        let dataset = try check(H5Dopen2(id, path, fusion_H5P_DEFAULT()), "could not open the dataset", object: full)
        return try HDF5Dataset(opening: dataset, in: file, path: full)
    }

    // MARK: Fixed datasets

    /// Creates a dataset of `shape` holding `values` in row-major order (shape [] is a scalar).
    @discardableResult
    public func createDataset<T: HDF5Element>(_ path: String, values: [T], shape: [Int]) throws -> HDF5Dataset {
        let full = absolutePath(path)
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw failure("cannot create a dataset with negative dimensions \(shape)", object: full)
        }
        let expected = shape.reduce(1, *)
        guard values.count == expected else {
            throw failure("\(values.count) values given for shape \(shape), which holds \(expected)", object: full)
        }
        return try values.withUnsafeBytes {
            try createFixedDataset(path, full: full, type: T.hdf5ElementType, shape: shape, data: $0.baseAddress)
        }
    }

    /// Creates a float32 dataset with the tensor's shape and values.
    @discardableResult
    public func createDataset(_ path: String, tensor: Tensor) throws -> HDF5Dataset {
        try withExtendedLifetime(tensor) {
            try createFixedDataset(path, full: absolutePath(path), type: .float32, shape: tensor.shape,
                                   data: UnsafeRawPointer(tensor.data))
        }
    }

    private func createFixedDataset(_ path: String, full: String, type: HDF5ElementType, shape: [Int],
                                    data: UnsafeRawPointer?) throws -> HDF5Dataset {
        try requireWritable("create dataset '\(full)'")
        try requireNew(path, full: full)
        let space: hid_t
        if shape.isEmpty {
            space = try check(H5Screate(H5S_SCALAR), "could not make a dataspace", object: full)
        } else {
            var extent = shape.map { hsize_t($0) }
            space = try check(H5Screate_simple(Int32(extent.count), &extent, nil),
                              "could not make a dataspace", object: full)
        }
        defer { H5Sclose(space) }
        let links = try linkCreationList(full)
        defer { H5Pclose(links) }
        let id = try check(H5Dcreate2(self.id, path, type.nativeType, space, links, fusion_H5P_DEFAULT(),
                                      fusion_H5P_DEFAULT()),
                           "could not create the dataset", object: full)
        let dataset = try HDF5Dataset(opening: id, in: file, path: full)
        if shape.reduce(1, *) > 0, let data {
            let written = H5Dwrite(id, type.nativeType, fusion_H5S_ALL(), fusion_H5S_ALL(), fusion_H5P_DEFAULT(), data)
            if written < 0 {
                // Do not leave a half-written dataset behind under the name.
                let detail = takeErrorDetail()
                dataset.closeHandle()
                H5Ldelete(self.id, path, fusion_H5P_DEFAULT())
                _ = takeErrorDetail()
                throw failure("could not write the dataset's values", object: full, detail: detail)
            }
        }
        return dataset
    }

    // MARK: Extendible datasets

    /// Creates an empty 1-D dataset that grows with `HDF5Dataset.append`, for logs written during a
    /// run (loss per step). Stored in chunks of `chunkSize` elements (1024 doubles = 8 KiB).
    @discardableResult
    public func createExtendibleDataset<T: HDF5Element>(_ path: String, of type: T.Type,
                                                        chunkSize: Int = 1024) throws -> HDF5Dataset {
        let full = absolutePath(path)
        try requireWritable("create dataset '\(full)'")
        guard chunkSize > 0 else { throw failure("chunkSize must be positive, got \(chunkSize)", object: full) }
        try requireNew(path, full: full)
        var extent: [hsize_t] = [0]
        var limit: [hsize_t] = [fusion_H5S_UNLIMITED()]
        let space = try check(H5Screate_simple(1, &extent, &limit), "could not make a dataspace", object: full)
        defer { H5Sclose(space) }
        let properties = try check(H5Pcreate(fusion_H5P_DATASET_CREATE()), "could not make dataset properties",
                                   object: full)
        defer { H5Pclose(properties) }
        var chunk: [hsize_t] = [hsize_t(chunkSize)]
        try check(H5Pset_chunk(properties, 1, &chunk), "could not set the chunk size", object: full)
        let links = try linkCreationList(full)
        defer { H5Pclose(links) }
        let id = try check(H5Dcreate2(self.id, path, T.hdf5ElementType.nativeType, space, links, properties,
                                      fusion_H5P_DEFAULT()),
                           "could not create the dataset", object: full)
        return try HDF5Dataset(opening: id, in: file, path: full)
    }

    // MARK: Helpers

    /// Link creation properties that also create missing intermediate groups.
    private func linkCreationList(_ full: String) throws -> hid_t {
        let links = try check(H5Pcreate(fusion_H5P_LINK_CREATE()), "could not make link properties", object: full)
        if H5Pset_create_intermediate_group(links, 1) < 0 {
            let detail = takeErrorDetail()
            H5Pclose(links)
            throw failure("could not make link properties", object: full, detail: detail)
        }
        return links
    }

    private func requireNew(_ path: String, full: String) throws {
        guard !path.split(separator: "/").isEmpty else {
            throw failure("a new group or dataset needs a name", object: full)
        }
        if try exists(path) {
            throw failure("something already exists at this path; open it, or choose another name", object: full)
        }
    }

    /// Throws unless a `type` object (group or dataset) exists at `path`, saying what is there instead:
    /// nothing (and what the parent group holds), or an object of the other kind.
    private func requireExisting(_ path: String, full: String, type: H5O_type_t, label: String) throws {
        guard try exists(path) else {
            throw failure("no \(label) at this path (\(whatIsAround(full)))", object: full)
        }
        var info = H5O_info_t()
        try check(H5Oget_info_by_name2(id, path, &info, UInt32(H5O_INFO_BASIC), fusion_H5P_DEFAULT()),
                  "could not inspect the object", object: full)
        guard info.type == type else {
            let found = info.type == H5O_TYPE_GROUP ? "group"
                      : info.type == H5O_TYPE_DATASET ? "dataset" : "named datatype"
            throw failure("this is a \(found), not a \(label)", object: full)
        }
    }

    /// For a missing object's error: what its parent holds, or that the parent is missing too.
    private func whatIsAround(_ full: String) -> String {
        var parts = full.split(separator: "/").map(String.init)
        parts.removeLast()
        let parent = "/" + parts.joined(separator: "/")
        guard let parentGroup = try? self.group(parent) else { return "'\(parent)' does not exist either" }
        let names = (try? parentGroup.childNames) ?? []
        return names.isEmpty ? "'\(parent)' is empty"
                             : "'\(parent)' holds: \(names.map { "'\($0)'" }.joined(separator: ", "))"
    }
}

// MARK: - Datasets

/// A dataset: an n-dimensional array of one element type, fixed in shape, or 1-D and extendible.
public final class HDF5Dataset: HDF5Object {
    /// The stored element type, or nil when it is one Fusion does not read (strings, compounds, …).
    public let elementType: HDF5ElementType?
    /// Whether the dataset is 1-D with an unlimited maximum size, so that `append` can grow it.
    public let isExtendible: Bool
    private let storedTypeName: String

    init(opening id: hid_t, in file: OpenFile, path: String) throws {
        let type = H5Dget_type(id)
        let space = H5Dget_space(id)
        defer {
            if type >= 0 { H5Tclose(type) }
            if space >= 0 { H5Sclose(space) }
        }
        guard type >= 0, space >= 0 else {
            let detail = takeErrorDetail()
            H5Dclose(id)
            throw HDF5Error(file: file.path, object: path, message: "could not read the dataset's type and shape",
                            detail: detail)
        }
        elementType = HDF5ElementType(stored: type)
        storedTypeName = typeName(type)
        var extendible = false
        if H5Sget_simple_extent_type(space) == H5S_SIMPLE && H5Sget_simple_extent_ndims(space) == 1 {
            var size: hsize_t = 0
            var limit: hsize_t = 0
            H5Sget_simple_extent_dims(space, &size, &limit)
            extendible = limit == fusion_H5S_UNLIMITED()
        }
        isExtendible = extendible
        super.init(file: file, id: id, path: path)
    }

    /// The current dimensions ([] for a scalar); an extendible dataset's grows with `append`.
    public var shape: [Int] {
        get throws {
            try requireOpen()
            let space = try check(H5Dget_space(id), "could not read the dataset's shape")
            defer { H5Sclose(space) }
            return dimensions(of: space) ?? []
        }
    }

    /// The number of elements: the product of `shape`. Throws when the product does not fit in an Int
    /// (a damaged file's shape).
    public var count: Int {
        get throws {
            let shape = try self.shape
            guard let count = elementCount(shape) else {
                throw failure("the dataset's shape \(shape) holds too many elements to address; the file is damaged")
            }
            return count
        }
    }

    private func requireType(_ wanted: HDF5ElementType, for action: String) throws {
        guard elementType == wanted else {
            let advice = elementType.map { "; use [\($0.swiftName)] for this dataset" } ?? ""
            throw failure("cannot \(action) \(wanted) values: the dataset holds \(storedTypeName)\(advice)")
        }
    }

    /// All values in row-major order. `T` must be the stored type (no silent conversion).
    public func read<T: HDF5Element>(as type: T.Type) throws -> [T] {
        try requireOpen()
        try requireType(T.hdf5ElementType, for: "read")
        let count = try self.count
        guard count > 0 else { return [] }
        return try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            try check(H5Dread(id, T.hdf5ElementType.nativeType, fusion_H5S_ALL(), fusion_H5S_ALL(),
                              fusion_H5P_DEFAULT(), buffer.baseAddress),
                      "could not read the dataset")
            initialized = count
        }
    }

    /// A float32 dataset as a new Tensor of its shape.
    public func readTensor() throws -> Tensor {
        try requireOpen()
        try requireType(.float32, for: "read a Tensor of")
        _ = try count  // throws for a shape whose size overflows, which Tensor would trap on
        let tensor = Tensor(uninitializedShape: try shape)
        try readValues(into: tensor)
        return tensor
    }

    /// Reads a float32 dataset into an existing tensor of the same shape (its buffer is overwritten).
    public func read(into tensor: Tensor) throws {
        try requireOpen()
        try requireType(.float32, for: "read a Tensor of")
        let stored = try shape
        guard stored == tensor.shape else {
            throw failure("the dataset has shape \(stored) but the tensor has shape \(tensor.shape)")
        }
        try readValues(into: tensor)
    }

    private func readValues(into tensor: Tensor) throws {
        guard tensor.count > 0 else { return }
        _ = try withExtendedLifetime(tensor) {
            try check(H5Dread(id, fusion_H5T_NATIVE_FLOAT(), fusion_H5S_ALL(), fusion_H5S_ALL(), fusion_H5P_DEFAULT(),
                              tensor.data),
                      "could not read the dataset")
        }
    }

    /// Shrinks an extendible dataset to its first `count` values (a resumed run drops the rows logged
    /// after its checkpoint, so that they are not there twice).
    public func truncate(to count: Int) throws {
        try requireWritable("truncate the dataset")
        guard isExtendible else { throw failure("cannot truncate: the dataset has a fixed shape") }
        let current = try self.count
        guard count >= 0 && count <= current else {
            throw failure("cannot truncate \(current) values to \(count)")
        }
        var newSize: [hsize_t] = [hsize_t(count)]
        try check(H5Dset_extent(id, &newSize), "could not shrink the dataset to \(count) values")
    }

    /// Appends `values` to an extendible dataset (one made by `createExtendibleDataset`). `T` must be
    /// the stored type. If the write fails the dataset keeps its old length.
    public func append<T: HDF5Element>(_ values: [T]) throws {
        try requireWritable("append to the dataset")
        guard isExtendible else {
            throw failure("cannot append: the dataset has a fixed shape \((try? shape) ?? []); "
                          + "only datasets made with createExtendibleDataset can grow")
        }
        try requireType(T.hdf5ElementType, for: "append")
        guard !values.isEmpty else { return }
        let old = hsize_t(try count)
        var newSize: [hsize_t] = [old + hsize_t(values.count)]
        try check(H5Dset_extent(id, &newSize), "could not grow the dataset to \(newSize[0]) values")
        do {
            let fileSpace = try check(H5Dget_space(id), "could not read the dataset's shape")
            defer { H5Sclose(fileSpace) }
            var start: [hsize_t] = [old]
            var length: [hsize_t] = [hsize_t(values.count)]
            try check(H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &start, nil, &length, nil),
                      "could not select the appended range")
            let memorySpace = try check(H5Screate_simple(1, &length, nil), "could not make a dataspace")
            defer { H5Sclose(memorySpace) }
            _ = try values.withUnsafeBytes {
                try check(H5Dwrite(id, T.hdf5ElementType.nativeType, memorySpace, fileSpace, fusion_H5P_DEFAULT(),
                                   $0.baseAddress),
                          "could not write \(values.count) appended values")
            }
        } catch {
            var oldSize: [hsize_t] = [old]
            H5Dset_extent(id, &oldSize)
            _ = takeErrorDetail()
            throw error
        }
    }
}
