# gdb pretty-printers for qkvlab: `print a` on a qkvlab::Array or a qkvlab::Tensor shows shape, strides, dtype
# and the first values (in row-major order, read through the strides, so views print what they view):
#
#   (gdb) print g
#   $1 = Array(shape=(2,3), strides=(3,1), offset=0, float32) [0.5, 1, -2, 0.25, 3, 1.5]
#   (gdb) print x
#   $2 = Tensor(shape=(2,3), float32, leaf, requires_grad, name='w') data=[...] grad=[...]
#
# Load it with `source tools/gdb/qkvlab.py` (the repo's .gdbinit does this; see docs/DEBUGGING.md).
# `set qkvlab-max-values N` changes how many values are shown (default 8).
#
# The printers read qkvlab::Dims (shapes, strides) and libstdc++ internals (std::shared_ptr::_M_ptr) through gdb's value API,
# so they work on any -g build (make debug) without calling into the program.
import gdb
import gdb.printing

_DTYPES = {0: ("float32", "float"), 1: ("float64", "double"), 2: ("int64", "long")}


class _MaxValues(gdb.Parameter):
    """How many values the qkvlab printers show for an Array or Tensor."""

    set_doc = "Set how many values qkvlab printers show."
    show_doc = "Show how many values qkvlab printers show."

    def __init__(self):
        super().__init__("qkvlab-max-values", gdb.COMMAND_DATA, gdb.PARAM_ZUINTEGER)
        self.value = 8

    def get_set_string(self):
        return ""

    def get_show_string(self, svalue):
        return "qkvlab printers show up to %s values" % svalue


try:
    _max_values = _MaxValues()
except RuntimeError:  # sourced twice
    _max_values = None


def _limit():
    try:
        return int(gdb.parameter("qkvlab-max-values"))
    except (RuntimeError, gdb.error):
        return 8


def _vector(v):
    """The sizes in a shape or strides list (qkvlab::Dims: data_ and size_; or a libstdc++ std::vector<int64_t>)
    as Python ints."""
    try:
        start, n = v["data_"], int(v["size_"])
    except gdb.error:
        impl = v["_M_impl"]
        start = impl["_M_start"]
        n = int(impl["_M_finish"] - start)
    return [int((start + i).dereference()) for i in range(n)]


def _shared_ptr(p):
    """The raw pointer held by a libstdc++ std::shared_ptr (0 when empty)."""
    return p["_M_ptr"]


def _tuple(xs):
    return "(" + ",".join(str(x) for x in xs) + ("," if len(xs) == 1 else "") + ")"


def _fmt(x, is_int):
    if is_int:
        return str(int(x))
    f = float(x)
    return "%d" % f if f.is_integer() and abs(f) < 1e15 else "%.6g" % f


def _array_values(arr, limit):
    """The first `limit` elements of an Array in row-major order (list of str) and its element count."""
    storage = _shared_ptr(arr["storage_"])
    shape, strides = _vector(arr["shape_"]), _vector(arr["strides_"])
    offset = int(arr["offset_"])
    name, ctype = _DTYPES.get(int(arr["dtype_"]), ("?", "float"))
    numel = 1
    for s in shape:
        numel *= s
    base = storage.dereference()["data_"].cast(gdb.lookup_type(ctype).pointer())
    out = []
    index = [0] * len(shape)
    for _ in range(min(numel, limit)):
        off = offset + sum(i * s for i, s in zip(index, strides))
        try:
            out.append(_fmt((base + off).dereference(), ctype == "long"))
        except gdb.MemoryError:
            out.append("<unreadable>")
            break
        for d in range(len(shape) - 1, -1, -1):  # advance the row-major multi-index
            index[d] += 1
            if index[d] < shape[d]:
                break
            index[d] = 0
    return out, numel


def _values_str(arr):
    if int(_shared_ptr(arr["storage_"])) == 0:
        return "undefined"
    limit = _limit()
    vals, numel = _array_values(arr, limit)
    more = ", ... (%d values)" % numel if numel > len(vals) else ""
    return "[" + ", ".join(vals) + more + "]"


def array_str(arr):
    if int(_shared_ptr(arr["storage_"])) == 0:
        return "Array(undefined)"
    shape, strides = _vector(arr["shape_"]), _vector(arr["strides_"])
    dtype = _DTYPES.get(int(arr["dtype_"]), ("?",))[0]
    return "Array(shape=%s, strides=%s, offset=%d, %s) %s" % (
        _tuple(shape), _tuple(strides), int(arr["offset_"]), dtype, _values_str(arr))


def _node_name(node_ptr):
    """The dynamic type of a Node* (e.g. MulBackward), from its vtable."""
    if int(node_ptr) == 0:
        return None
    try:
        # The shared_ptr's pointer type is a typedef (element_type*): cast to Node* so gdb reads the vtable.
        node = node_ptr.cast(gdb.lookup_type("qkvlab::Node").pointer())
        return str(node.dynamic_type.target()).replace("qkvlab::", "")
    except gdb.error:
        return "Node"


def impl_str(impl):
    data = impl["data"]
    if int(_shared_ptr(data["storage_"])) == 0:
        return "Tensor(undefined data)"
    shape = _vector(data["shape_"])
    strides = _vector(data["strides_"])
    dtype = _DTYPES.get(int(data["dtype_"]), ("?",))[0]
    parts = ["shape=%s" % _tuple(shape)]
    contiguous_strides, acc = [], 1
    for s in reversed(shape):
        contiguous_strides.insert(0, acc)
        acc *= s
    if strides != contiguous_strides:
        parts.append("strides=%s" % _tuple(strides))
    parts.append(dtype)
    grad_fn = _node_name(_shared_ptr(impl["grad_fn"]))
    parts.append("grad_fn=%s" % grad_fn if grad_fn else "leaf")
    if bool(impl["requires_grad"]):
        parts.append("requires_grad")
    if bool(impl["retains_grad"]):
        parts.append("retains_grad")
    try:
        name = impl["name"]["_M_dataplus"]["_M_p"].string()  # libstdc++ std::string
    except gdb.error:
        name = ""
    if name:
        parts.append("name='%s'" % name)
    s = "Tensor(" + ", ".join(parts) + ") data=" + _values_str(data)
    if int(_shared_ptr(impl["grad"]["storage_"])) != 0:
        s += " grad=" + _values_str(impl["grad"])
    return s


class ArrayPrinter:
    def __init__(self, val):
        self.val = val

    def to_string(self):
        try:
            return array_str(self.val)
        except gdb.error as e:  # e.g. optimised out
            return "Array(<%s>)" % e


class TensorPrinter:
    def __init__(self, val):
        self.val = val

    def to_string(self):
        ptr = _shared_ptr(self.val["impl_"])
        if int(ptr) == 0:
            return "Tensor(undefined)"
        try:
            return impl_str(ptr.dereference())
        except gdb.error as e:
            return "Tensor(<%s>)" % e


class TensorImplPrinter:
    def __init__(self, val):
        self.val = val

    def to_string(self):
        try:
            return impl_str(self.val)
        except gdb.error as e:
            return "TensorImpl(<%s>)" % e


class DimsPrinter:
    """qkvlab::Dims (Shape, Strides): the sizes as a tuple, (2,3)."""

    def __init__(self, val):
        self.val = val

    def to_string(self):
        try:
            return _tuple(_vector(self.val))
        except gdb.error as e:
            return "Dims(<%s>)" % e


class SourceLocationPrinter:
    """std::source_location (Node::created_at): where an op was called."""

    def __init__(self, val):
        self.val = val

    def to_string(self):
        impl = self.val["_M_impl"]
        if int(impl) == 0:
            return "source_location(unknown)"
        impl = impl.dereference()
        return "%s:%d in %s" % (impl["_M_file_name"].string(), int(impl["_M_line"]),
                                impl["_M_function_name"].string())


def build_pretty_printer():
    pp = gdb.printing.RegexpCollectionPrettyPrinter("qkvlab")
    pp.add_printer("Array", "^qkvlab::Array$", ArrayPrinter)
    pp.add_printer("Tensor", "^qkvlab::Tensor$", TensorPrinter)
    pp.add_printer("TensorImpl", "^qkvlab::TensorImpl$", TensorImplPrinter)
    pp.add_printer("Dims", "^qkvlab::Dims$", DimsPrinter)
    pp.add_printer("source_location", "^std::source_location$", SourceLocationPrinter)
    return pp


gdb.printing.register_pretty_printer(gdb.current_objfile(), build_pretty_printer(), replace=True)
