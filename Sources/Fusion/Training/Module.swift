// Module: parameters found and named by reflection over stored properties, as PyTorch's
// `nn.Module.named_parameters()` (names like "blocks.3.attn.wq", the keys of checkpoints and of the
// optimiser's state).
//
// The rule, in the order the properties are declared (superclass properties first):
//   - a `Tensor` with `requiresGrad == true` is a parameter named by its property label
//     (a tensor with `requiresGrad == false` is a buffer, e.g. RoPE tables, and is skipped);
//   - a `Module` is walked with the prefix "label.";
//   - arrays are walked element by element as "label.0.", "label.1.", …; optionals as their value;
//     structs and tuples as "label.field." (so a struct of weights inside a module is found too);
//   - a tensor or module reached twice (weight tying, a shared submodule, a back-reference to an
//     ancestor) is listed once, under the first name, as PyTorch's `remove_duplicate=True` does;
//   - other classes are not walked, and dictionaries and sets that hold parameters are refused
//     (their order is not stable, so names and checkpoints would not be).

/// A model or layer whose parameters are its stored `Tensor` properties that require a gradient,
/// and those of its stored submodules. Conform a class and the extension below does the rest.
public protocol Module: AnyObject {}

extension Module {
    /// Every parameter with its full dotted name, in declaration order, each listed once.
    /// Also sets each parameter tensor's `name` to that full name (used in error messages).
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var walk = ParameterWalk()
        walk.visitModule(self, prefix: "")
        for (name, tensor) in walk.found { tensor.name = name }
        return walk.found
    }

    /// The parameter tensors, in the order of `namedParameters()`.
    public var parameters: [Tensor] { namedParameters().map(\.tensor) }

    /// The total number of scalar parameters (tied tensors counted once).
    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }

    /// Drops every parameter's accumulated gradient (an explicit step before each backward pass).
    public func zeroGrad() {
        for (_, tensor) in namedParameters() { tensor.zeroGrad() }
    }

    /// The parameters keyed by full name, for checkpoints and optimiser state.
    public func parametersByName() -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        for (name, tensor) in namedParameters() {
            precondition(result[name] == nil,
                         "Module.parametersByName: two parameters are named '\(name)'; rename one property")
            result[name] = tensor
        }
        return result
    }
}

/// One depth-first walk over a module tree, remembering what it has already listed.
struct ParameterWalk {
    var found: [(name: String, tensor: Tensor)] = []
    var seenTensors = Set<ObjectIdentifier>()
    var seenModules = Set<ObjectIdentifier>()

    mutating func visitModule(_ module: Module, prefix: String) {
        guard seenModules.insert(ObjectIdentifier(module)).inserted else { return }
        // A class's own Mirror lists only its own stored properties; walk the superclasses first so
        // that inherited parameters come in declaration order.
        var mirrors: [Mirror] = []
        var mirror: Mirror? = Mirror(reflecting: module)
        while let m = mirror {
            mirrors.append(m)
            mirror = m.superclassMirror
        }
        for m in mirrors.reversed() {
            visitChildren(of: m, prefix: prefix)
        }
    }

    mutating func visitChildren(of mirror: Mirror, prefix: String) {
        for (index, child) in mirror.children.enumerated() {
            var label = child.label ?? String(index)
            if label.hasPrefix("$__lazy_storage_$_") { label.removeFirst("$__lazy_storage_$_".count) }
            if label.hasPrefix(".") { label.removeFirst() }  // unlabelled tuple elements: ".0", ".1"
            visitValue(child.value, name: prefix + label)
        }
    }

    mutating func visitValue(_ value: Any, name: String) {
        if let tensor = value as? Tensor {
            if tensor.requiresGrad, seenTensors.insert(ObjectIdentifier(tensor)).inserted {
                found.append((name, tensor))
            }
            return
        }
        if let module = value as? Module {
            visitModule(module, prefix: name + ".")
            return
        }
        let mirror = Mirror(reflecting: value)
        switch mirror.displayStyle {
        case .optional:
            if let wrapped = mirror.children.first { visitValue(wrapped.value, name: name) }
        case .collection:
            // Look inside only when elements could hold parameters: skips [Float], [Int], [String]
            // tables without reflecting each of their elements.
            guard let first = mirror.children.first, Self.mayHoldParameters(first.value) else { return }
            for (index, element) in mirror.children.enumerated() {
                visitValue(element.value, name: "\(name).\(index)")
            }
        case .struct, .tuple:
            visitChildren(of: mirror, prefix: name + ".")
        case .dictionary, .set:
            for element in mirror.children {
                // A dictionary element is a (key, value) tuple; a set element is the value itself.
                let entry = Mirror(reflecting: element.value)
                let stored = mirror.displayStyle == .dictionary ? (entry.children.dropFirst().first?.value ?? element.value)
                                                                : element.value
                var probe = ParameterWalk()
                probe.visitValue(stored, name: name)
                precondition(probe.found.isEmpty && probe.seenModules.isEmpty,
                             "Module.namedParameters: property '\(name)' is a dictionary or set holding tensors or "
                             + "modules; their order is not stable, so parameter names would not be. "
                             + "Use an array or stored properties instead.")
            }
        default:
            return  // scalars, strings, enums, and classes that are not modules
        }
    }

    /// Whether a value is, or could contain, a tensor or a module.
    static func mayHoldParameters(_ value: Any) -> Bool {
        if value is Tensor || value is Module { return true }
        switch Mirror(reflecting: value).displayStyle {
        case .optional, .collection, .struct, .tuple, .dictionary, .set: return true
        default: return false
        }
    }
}
