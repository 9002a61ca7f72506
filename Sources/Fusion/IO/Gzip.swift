// Gzip: whole gzip files to and from byte arrays (the Fashion-MNIST IDX files ship gzipped).
//
// The one file that talks to zlib, through its gzFile API (gzopen / gzread / gzwrite / gzerror).
//
// Note on plain files: zlib's gzread reads a file that is not gzip "transparently", returning its
// bytes unchanged. `readAll` accepts that by default (so an already-unpacked IDX file also loads);
// pass `allowUncompressed: false` to insist on gzip data.
import CZlib
import Foundation

/// What went wrong reading or writing a gzip file; the description names the file and the cause.
public enum GzipError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// The file could not be opened (missing, unreadable, ...); the message is the system's.
    case cannotOpen(path: String, message: String)
    /// `write` was asked not to overwrite, and the file exists.
    case fileExists(path: String)
    /// zlib failed while reading: a truncated or corrupt stream, or an I/O error; zlib's message.
    case readFailed(path: String, message: String)
    /// zlib failed while writing; zlib's message.
    case writeFailed(path: String, message: String)
    /// The file is not gzip data and `allowUncompressed` was false.
    case notGzip(path: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let message):
            return "Gzip: cannot open \(path): \(message)"
        case .fileExists(let path):
            return "Gzip: \(path) exists already; pass overwrite: true to replace it, or choose another path"
        case .readFailed(let path, let message):
            return "Gzip: cannot read \(path): \(message)"
        case .writeFailed(let path, let message):
            return "Gzip: cannot write \(path): \(message)"
        case .notGzip(let path):
            return "Gzip: \(path) is not gzip data"
        }
    }

    public var errorDescription: String? { description }
}

public enum Gzip {
    /// Bytes per gzread call and zlib's internal buffer size: large, so a 26 MB file is a few dozen calls.
    static let chunkSize = 1 << 22

    /// The decompressed contents of the gzip file at `path`.
    ///
    /// Concatenated gzip members are read as one stream (as `gunzip` does). A file that is not gzip
    /// is returned unchanged when `allowUncompressed` is true (zlib's transparent mode) and refused
    /// otherwise. Throws for a missing or unreadable file and for a truncated or corrupt stream.
    public static func readAll(_ path: String, allowUncompressed: Bool = true) throws -> [UInt8] {
        errno = 0
        guard let file = gzopen(path, "rb") else {
            // errno is set when the file itself could not be opened; zero means zlib ran out of memory.
            let code = errno
            throw GzipError.cannotOpen(path: path, message: code != 0 ? String(cString: strerror(code)) : "out of memory")
        }
        var closed = false
        defer { if !closed { gzclose_r(file) } }
        // Must precede the first read; a failure only means the default (8 KiB) buffer is used.
        _ = gzbuffer(file, UInt32(chunkSize))

        if !allowUncompressed && gzdirect(file) != 0 {
            throw GzipError.notGzip(path: path)
        }

        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if n < 0 { throw GzipError.readFailed(path: path, message: readErrorMessage(file, path)) }
            if n == 0 { break }
            chunk.withUnsafeBufferPointer { out.append(contentsOf: $0.prefix(Int(n))) }
        }
        // A stream cut short can also surface only here (gzread returns 0 and records Z_BUF_ERROR).
        var errnum: Int32 = Z_OK
        _ = gzerror(file, &errnum)
        if errnum != Z_OK { throw GzipError.readFailed(path: path, message: readErrorMessage(file, path)) }
        closed = true
        let status = gzclose_r(file)
        if status != Z_OK {
            let message = status == Z_BUF_ERROR ? "unexpected end of file" + damagedHint : "zlib error \(status) on close"
            throw GzipError.readFailed(path: path, message: message)
        }
        return out
    }

    /// Writes `bytes` to `path` as a gzip file (compression level 6, zlib's default).
    ///
    /// Refuses (throws `GzipError.fileExists`) when `path` exists and `overwrite` is false; zlib's
    /// "x" mode makes the check and the creation one step. A partly written file is removed on failure.
    public static func write(_ bytes: [UInt8], to path: String, overwrite: Bool) throws {
        errno = 0
        guard let file = gzopen(path, overwrite ? "wb6" : "wb6x") else {
            let code = errno
            if code == EEXIST { throw GzipError.fileExists(path: path) }
            throw GzipError.cannotOpen(path: path, message: code != 0 ? String(cString: strerror(code)) : "out of memory")
        }
        var failure: String?
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = min(chunkSize, raw.count - offset)
                if gzwrite(file, raw.baseAddress.map { $0 + offset }, UInt32(n)) != Int32(n) {
                    failure = errorMessage(file, path).text
                    return
                }
                offset += n
            }
        }
        let status = gzclose_w(file)
        if failure == nil && status != Z_OK { failure = "zlib error \(status) on close" }
        if let failure {
            remove(path)
            throw GzipError.writeFailed(path: path, message: failure)
        }
    }

    private static let damagedHint = " (the file is truncated or corrupt: download or unpack it again)"

    /// zlib's description of the last read error on `file`, with a hint when the data is damaged.
    private static func readErrorMessage(_ file: gzFile, _ path: String) -> String {
        let (code, text) = errorMessage(file, path)
        return code == Z_BUF_ERROR || code == Z_DATA_ERROR ? text + damagedHint : text
    }

    /// zlib's code and description of the last error on `file`, without the "path: " zlib puts first
    /// (our errors name the path themselves).
    private static func errorMessage(_ file: gzFile, _ path: String) -> (code: Int32, text: String) {
        var errnum: Int32 = Z_OK
        guard let raw = gzerror(file, &errnum) else { return (errnum, "zlib error \(errnum)") }
        var text = String(cString: raw)
        if text.hasPrefix(path + ": ") { text.removeFirst(path.count + 2) }
        return (errnum, text.isEmpty ? "zlib error \(errnum)" : text)
    }
}
