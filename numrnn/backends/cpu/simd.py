r"""Register-blocked matrix products for the CPU drivers, from explicit SIMD lanes.

The time loops do many small products (the recurrent ``(rows, H) @ (H, G*H)`` of
every step, its transpose in backward, and the weight gradients).  At these sizes a
BLAS call spends most of its time on dispatch and packing, and a plain Numba loop
keeps its accumulators in memory (Numba cannot tell LLVM that the output does not
alias the operands, so every multiply-add loads and stores the output).  The
products here keep a block of the output in vector registers for the whole inner
dimension, which plain Numba code cannot express; so this module gives Numba a
small vector type:

``Lanes``
    One LLVM vector of ``VECTOR_BYTES // itemsize`` floats (16 float32 or 8 float64:
    one AVX-512 register; LLVM splits it on narrower machines).
:func:`load_lanes`, :func:`store_lanes`, :func:`lane_count`
    ``row[j:j + n]`` as lanes, its store, and the number of lanes.
:func:`register_tile`
    A tile of a matrix product held in registers, of any shape given as literals
    (below).
Arithmetic on lanes
    ``+ - * /``, unary ``-``, ``min`` and ``max`` between lanes, or lanes and a
    scalar (broadcast), lane by lane in IEEE arithmetic.  The scalar cell
    functions of :mod:`numrnn.cells` then compile for lanes unchanged, where they
    have no branches (the float32 activations of
    :mod:`numrnn.backends.cpu.activations`): the LSTM's backward pointwise pass,
    which LLVM will not vectorise by itself, runs on them.

:func:`matmul_into` builds ``out = a @ b (+ bias)`` from micro-tiles of 4 rows by 2
vectors (8 accumulators), with vector then scalar tails; every tile shape is made by
one intrinsic, :func:`register_tile`.  For weights reused across
many products (every timestep), :func:`pack_panels` lays ``b`` out once as
contiguous panels of two vectors' worth of columns and :func:`matmul_packed_into`
runs the same tiles on them, led by tiles of 8 rows by 2 vectors (16 accumulators;
AVX-512 only, :data:`EIGHT_ROW_TILES`; measured in the README's Performance section).
Summation runs over ``k`` in order, so results do not depend on the tile a row falls in.

The streaming step multiplies one state row by the weights as stored, ``(G*H, H)``
row-major, where a packed transposed copy could go stale under an in-place update
of the parameters.  :func:`matvec_into` does it in dot form: :func:`dot_lanes`
keeps one register per weight row for a group of ``n`` rows, then folds the ``n``
registers into one vector of ``n`` sums with a tree of shuffles and adds, so no
sum is reduced on its own.
"""

from __future__ import annotations

import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, overload, register_model

import numpy as np

from numrnn._jit import cpu_function

#: Bytes per vector: one AVX-512 register.
VECTOR_BYTES = 64


def _has_avx512():
    """Whether Numba compiles for a CPU with AVX-512 (32 vector registers of 64 bytes)."""
    import numba

    if numba.config.CPU_FEATURES is not None:
        return "+avx512f" in numba.config.CPU_FEATURES.split(",")
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("avx512f", False))


#: Whether the packed products (:func:`matmul_packed_into`: the per-step products of
#: the time loops and the input projection) run tiles of 8 rows (16 accumulators)
#: before tiles of 4, as :func:`matmul_into` does not (there they added 7 CPU s, 16 %,
#: to a cold float32 LSTM + GRU forward + backward; the packed ones alone add none): with
#: AVX-512's 32 registers they hold, and the per-step products of the recurrence ran
#: 16 % faster than in tiles of 4 alone (one thread, float32, (64, 512) @ (512, 2048):
#: 226 against 195 GFLOPS; 6, 12 or 14 rows, or 4 vectors wide, did no better).
#: Without AVX-512 a vector of lanes takes two registers and 16 accumulators would
#: not fit, so only tiles of 4 run.
EIGHT_ROW_TILES = _has_avx512()


class Lanes(types.Type):
    """A vector of ``count`` values of float ``dtype``, held in a register."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.count = VECTOR_BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"Lanes({dtype} x {self.count})")


@register_model(Lanes)
class _LanesModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))


def _float_row(row, name):
    if not (isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C" and isinstance(row.dtype, types.Float)):
        raise TypingError(f"{name} needs a C-contiguous 1-D float array, got {row}")
    return Lanes(row.dtype)


def _element_pointer(context, builder, row_type, row, index, index_type):
    array = context.make_array(row_type)(context, builder, row)
    offset = context.cast(builder, index, index_type, types.intp)
    return builder.gep(array.data, [offset])


@intrinsic
def load_lanes(typingctx, row, start):
    """``row[start:start + n]`` as :class:`Lanes` (no bounds check)."""
    lanes = _float_row(row, "load_lanes")

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        vector_type = context.get_value_type(lanes)
        return builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=lanes.dtype.bitwidth // 8)

    return lanes(row, start), codegen


@intrinsic
def store_lanes(typingctx, row, start, value):
    """``row[start:start + n] = value`` (no bounds check)."""
    lanes = _float_row(row, "store_lanes")
    if value != lanes:
        raise TypingError(f"store_lanes: value is {value}, the row needs {lanes}")

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        vector_type = context.get_value_type(lanes)
        builder.store(args[2], builder.bitcast(pointer, vector_type.as_pointer()), align=lanes.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(row, start, value), codegen


@intrinsic
def lane_count(typingctx, row):
    """Number of lanes for ``row``'s dtype (a compile-time constant)."""
    lanes = _float_row(row, "lane_count")

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, lanes.count)

    return types.intp(row), codegen


def _fused_multiply_add(builder, vector_type, lanes):
    """LLVM's ``fma`` intrinsic for :class:`Lanes` ``lanes`` (of LLVM type ``vector_type``):
    ``fma(x, y, acc) = x * y + acc``, rounded once."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
                                          f"llvm.fma.v{lanes.count}f{lanes.dtype.bitwidth}")


def _fold(builder, a, b, count, half):
    """One level of the reduction tree of :func:`dot_lanes`.

    ``a`` and ``b`` hold blocks of ``2 * half`` partial sums, one block per row;
    the result holds blocks of ``half``: each block's halves added, the rows of
    ``a`` first, then those of ``b``, in order.
    """
    blocks = count // (2 * half)
    low = [block * 2 * half + offset for block in range(blocks) for offset in range(half)]
    low += [count + index for index in low]
    high = [index + half for index in low]
    index_type = ir.IntType(32)

    def picks(indices):
        return ir.Constant(ir.VectorType(index_type, count), [ir.Constant(index_type, i) for i in indices])

    return builder.fadd(builder.shuffle_vector(a, b, picks(low)), builder.shuffle_vector(a, b, picks(high)))


@intrinsic
def dot_lanes(typingctx, v, m, row, inner):
    """Lanes of ``n`` dot products: lane ``r`` is ``v[:inner] @ m[row + r, :inner]``.

    ``v`` is a C-contiguous row, ``m`` a C-contiguous matrix of its dtype with
    ``n`` rows from ``row`` on, ``inner`` a multiple of ``n`` (no bounds checks).
    Each of the ``n`` rows accumulates in its own register (one fused multiply-add
    per vector of ``m``), and a tree of ``n - 1`` shuffle-and-add steps turns the
    ``n`` registers into one vector of sums, so no sum is reduced alone.
    """
    lanes = _float_row(v, "dot_lanes")
    if not (isinstance(m, types.Array) and m.ndim == 2 and m.layout == "C" and m.dtype == v.dtype):
        raise TypingError(f"dot_lanes needs a C-contiguous 2-D matrix of {v.dtype}, got {m}")
    count = lanes.count

    def codegen(context, builder, signature, args):
        index_type = context.get_value_type(types.intp)
        vector_type = context.get_value_type(lanes)
        row_index, inner_count = (context.cast(builder, args[i], signature.args[i], types.intp) for i in (2, 3))
        v_data = context.make_array(signature.args[0])(context, builder, args[0]).data
        matrix = context.make_array(signature.args[1])(context, builder, args[1])
        row_length = builder.sdiv(builder.extract_value(matrix.strides, 0), ir.Constant(index_type, lanes.dtype.bitwidth // 8))
        rows = [builder.gep(matrix.data, [builder.mul(builder.add(row_index, ir.Constant(index_type, r)), row_length)]) for r in range(count)]
        fused = _fused_multiply_add(builder, vector_type, lanes)
        align = lanes.dtype.bitwidth // 8
        sums = [cgutils.alloca_once_value(builder, ir.Constant(vector_type, None)) for _ in range(count)]
        step = ir.Constant(index_type, count)
        with cgutils.for_range_slice(builder, ir.Constant(index_type, 0), inner_count, step) as (k, _):
            vector = builder.load(builder.bitcast(builder.gep(v_data, [k]), vector_type.as_pointer()), align=align)
            for r in range(count):
                weights = builder.load(builder.bitcast(builder.gep(rows[r], [k]), vector_type.as_pointer()), align=align)
                builder.store(builder.call(fused, [vector, weights, builder.load(sums[r])]), sums[r])
        level = [builder.load(total) for total in sums]
        half = count // 2
        while len(level) > 1:
            level = [_fold(builder, level[i], level[i + 1], count, half) for i in range(0, len(level), 2)]
            half //= 2
        return level[0]

    return lanes(v, m, row, inner), codegen


def _as_vector(context, builder, value, value_type, lanes):
    """``value`` as a vector of ``lanes``: lanes pass through, scalars are broadcast."""
    if isinstance(value_type, Lanes):
        return value
    vector_type = context.get_value_type(lanes)
    element = context.cast(builder, value, value_type, lanes.dtype)
    single = builder.insert_element(ir.Constant(vector_type, ir.Undefined), element, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(single, single, ir.Constant(ir.VectorType(ir.IntType(32), lanes.count), None))


def _lanes_of(x, y):
    """The :class:`Lanes` type of a binary operation on ``x``, ``y``, or None."""
    lanes = x if isinstance(x, Lanes) else y
    if not isinstance(lanes, Lanes):
        return None
    for operand in (x, y):
        if operand != lanes and not isinstance(operand, (types.Float, types.Integer)):
            return None
    return lanes


def _binary_intrinsic(build):
    @intrinsic
    def binary(typingctx, x, y):
        lanes = _lanes_of(x, y)
        if lanes is None:
            return None

        def codegen(context, builder, signature, args):
            vectors = [_as_vector(context, builder, value, kind, lanes) for value, kind in zip(args, signature.args)]
            return build(builder, *vectors)

        return lanes(x, y), codegen

    return binary


_add = _binary_intrinsic(lambda builder, x, y: builder.fadd(x, y))
_sub = _binary_intrinsic(lambda builder, x, y: builder.fsub(x, y))
_mul = _binary_intrinsic(lambda builder, x, y: builder.fmul(x, y))
_div = _binary_intrinsic(lambda builder, x, y: builder.fdiv(x, y))
_min = _binary_intrinsic(lambda builder, x, y: builder.select(builder.fcmp_ordered("<", y, x), y, x))
_max = _binary_intrinsic(lambda builder, x, y: builder.select(builder.fcmp_ordered(">", y, x), y, x))


def _register_binary(operation, implementation):
    @overload(operation, inline="always")
    def lanes_operation(x, y):
        if _lanes_of(x, y) is not None:
            return lambda x, y: implementation(x, y)
        return None


for _operation, _implementation in (
    (operator.add, _add),
    (operator.sub, _sub),
    (operator.mul, _mul),
    (operator.truediv, _div),
    (min, _min),
    (max, _max),
):
    _register_binary(_operation, _implementation)


@overload(operator.neg, inline="always")
def _lanes_neg(x):
    if isinstance(x, Lanes):
        return lambda x: _mul(x, -1)  # exact: flips the sign, zeros included
    return None


# Integer arguments of the helpers below start as ``np.intp(0)``, never a literal ``0``:
# Numba compiles a callee for every argument type it sees while typing the caller,
# and a loop counter is first typed ``Literal[int](0)`` (its value before the loop),
# then ``int64``, so a literal start compiled each tile twice (measured: 10
# specialisations of the 4-row tile for 3 argument layouts, about 2 s of a cold start,
# when each tile was a function of its own; they are one intrinsic now).
# ``bias`` is passed explicitly (None) for the same reason: an omitted argument is
# another type than an explicit None.


@cpu_function
def matmul_into(a, b, out, bias=None):
    """``out[...] = a @ b (+ bias)``: ``a`` (M, K) of any layout, ``b`` (K, N), ``out``
    (M, N) and ``bias`` (N,) C-contiguous, one float dtype.  The bias, added to
    every row, is where the accumulators start.

    For each panel of two vectors' worth of columns of ``b`` (kept in cache while it
    is reused), tiles of 4 rows keep 8 accumulators in registers over all of ``k``:
    each step of ``k`` loads two vectors of ``b[k]`` and one scalar of ``a`` per row
    for two fused multiply-adds per row.  Leftover columns (fewer than one vector)
    accumulate row by row in memory.
    """
    rows, inner = a.shape
    cols = b.shape[1]
    width = lane_count(out[0])
    j = np.intp(0)  # not a literal 0: see the note above matmul_into
    while j + 2 * width <= cols:
        i = np.intp(0)
        while i + 4 <= rows:
            register_tile(a, b, j, out, bias, i, j, 4, 2)
            i += 4
        while i < rows:
            register_tile(a, b, j, out, bias, i, j, 1, 1)
            register_tile(a, b, j + width, out, bias, i, j + width, 1, 1)
            i += 1
        j += 2 * width
    while j + width <= cols:
        i = np.intp(0)
        while i + 4 <= rows:
            register_tile(a, b, j, out, bias, i, j, 4, 1)
            i += 4
        while i < rows:
            register_tile(a, b, j, out, bias, i, j, 1, 1)
            i += 1
        j += width
    if j < cols:
        _column_tail(a, b, out, bias, j)


@intrinsic
def register_tile(typingctx, a, b, column, out, bias, i, j, rows, vectors):
    """``out[i:i+rows, j:j+vectors*n] = a[i:i+rows] @ b[:, column:column+vectors*n]
    (+ bias[j:...])`` in ``rows * vectors`` vector registers (``n`` lanes; no bounds
    checks).  ``rows`` and ``vectors`` are integer literals: the tile is generated at
    compile time, so one piece of code makes every tile shape.

    ``a`` (M, K) of any layout; ``b`` (K, N) (a packed panel, ``column`` 0, or ``b``
    itself, ``column`` = ``j``), ``out`` and ``bias`` (N,) C-contiguous, one float dtype.
    Each accumulator starts from the bias (or zero) and takes one fused multiply-add
    per ``k``, in order: every output is the same chain of operations whatever tile
    it falls in.  Each step of ``k`` loads ``vectors`` vectors of ``b[k]`` and ``rows``
    scalars of ``a``.
    """
    if not (isinstance(rows, types.IntegerLiteral) and isinstance(vectors, types.IntegerLiteral)):
        raise TypingError(f"register_tile needs literal rows and vectors, got {rows}, {vectors}")
    lanes = Lanes(out.dtype)
    count_rows, count_vectors = rows.literal_value, vectors.literal_value

    def codegen(context, builder, signature, args):
        a_type, b_type, out_type, bias_type = signature.args[0], signature.args[1], signature.args[3], signature.args[4]
        index_type = context.get_value_type(types.intp)
        vector_type = context.get_value_type(lanes)
        element_type = context.get_value_type(lanes.dtype)
        itemsize = ir.Constant(index_type, lanes.dtype.bitwidth // 8)
        align = lanes.dtype.bitwidth // 8

        def index(position):
            return context.cast(builder, args[position], signature.args[position], types.intp)

        column, first_row, first_col = index(2), index(5), index(6)
        a_array = context.make_array(a_type)(context, builder, args[0])
        b_array = context.make_array(b_type)(context, builder, args[1])
        out_array = context.make_array(out_type)(context, builder, args[3])
        a_bytes = builder.bitcast(a_array.data, ir.IntType(8).as_pointer())
        a_row_stride, a_col_stride = (builder.extract_value(a_array.strides, d) for d in (0, 1))
        b_row_length = builder.sdiv(builder.extract_value(b_array.strides, 0), itemsize)
        out_row_length = builder.sdiv(builder.extract_value(out_array.strides, 0), itemsize)
        width = ir.Constant(index_type, lanes.count)
        offsets = [builder.mul(ir.Constant(index_type, v), width) for v in range(count_vectors)]
        fused = _fused_multiply_add(builder, vector_type, lanes)

        def vector_at(data, offset):
            return builder.bitcast(builder.gep(data, [offset]), vector_type.as_pointer())

        if isinstance(bias_type, types.NoneType):
            starts = [ir.Constant(vector_type, None)] * count_vectors
        else:
            bias_data = context.make_array(bias_type)(context, builder, args[4]).data
            starts = [builder.load(vector_at(bias_data, builder.add(first_col, offset)), align=align) for offset in offsets]
        sums = [[cgutils.alloca_once_value(builder, starts[v]) for v in range(count_vectors)] for _ in range(count_rows)]
        a_rows = [builder.mul(builder.add(first_row, ir.Constant(index_type, r)), a_row_stride) for r in range(count_rows)]
        inner = builder.extract_value(a_array.shape, 1)
        with cgutils.for_range(builder, inner) as loop:
            k = loop.index
            b_row = builder.gep(b_array.data, [builder.add(builder.mul(k, b_row_length), column)])
            columns = [builder.load(vector_at(b_row, offsets[v]), align=align) for v in range(count_vectors)]
            a_col = builder.mul(k, a_col_stride)
            for r in range(count_rows):
                pointer = builder.bitcast(builder.gep(a_bytes, [builder.add(a_rows[r], a_col)]), element_type.as_pointer())
                broadcast = _as_vector(context, builder, builder.load(pointer, align=align), lanes.dtype, lanes)
                for v in range(count_vectors):
                    builder.store(builder.call(fused, [broadcast, columns[v], builder.load(sums[r][v])]), sums[r][v])
        for r in range(count_rows):
            row = builder.gep(out_array.data, [builder.mul(builder.add(first_row, ir.Constant(index_type, r)), out_row_length)])
            for v in range(count_vectors):
                builder.store(builder.load(sums[r][v]), vector_at(row, builder.add(first_col, offsets[v])), align=align)
        return context.get_dummy_value()

    return types.none(a, b, column, out, bias, i, j, rows, vectors), codegen


@cpu_function
def _column_tail(a, b, out, bias, start):
    """``out[:, start:] = a @ b[:, start:]`` for fewer than one vector of columns."""
    for i in range(a.shape[0]):
        o = out[i, start:]
        if bias is None:
            o[:] = 0
        else:
            for j in range(o.shape[0]):  # a loop, not o[:] = bias[start:]: see pack_panels
                o[j] = bias[start + j]
        for k in range(a.shape[1]):
            a_ik = a[i, k]
            b_row = b[k, start:]
            for j in range(o.shape[0]):
                o[j] += a_ik * b_row[j]


@cpu_function
def pack_panels(b):
    """``b`` (K, N) as panels (N // (2n), K, 2n) of two vectors' worth of columns, each
    contiguous (``n`` lanes): what :func:`matmul_packed_into` reads.  ``N`` must be a
    multiple of ``2n`` (:func:`packs_evenly`)."""
    inner, cols = b.shape
    span = 2 * lane_count(b[0])
    panels = np.empty((cols // span, inner, span), dtype=b.dtype)
    # loops, not panels[p] = b[:, ...]: a slice assignment from an array compiles
    # Numba's shape-mismatch message (string formatting, about a second per rank)
    for p in range(cols // span):
        panel = panels[p]
        for k in range(inner):
            row = b[k]
            for c in range(span):
                panel[k, c] = row[p * span + c]
    return panels


@cpu_function
def packs_evenly(b):
    """Whether :func:`pack_panels` takes ``b``: its columns fill whole panels."""
    return b.shape[1] % (2 * lane_count(b[0])) == 0


@cpu_function
def matmul_packed_into(a, panels, out, bias=None):
    """``out[...] = a @ b (+ bias)`` with ``b`` given as :func:`pack_panels` ``(b)``.

    For weights too big for the caches (where :func:`matmul_into` would stride
    through ``b`` row by row): each panel is contiguous and is reused by every tile
    of rows (8, then 4: :data:`EIGHT_ROW_TILES`) while it sits in cache.  The same
    summation order as :func:`matmul_into`, so the same bits.
    """
    rows = a.shape[0]
    width = lane_count(out[0])
    column = np.intp(0)  # the panel's first column, not a literal 0: see the note above matmul_into
    for p in range(panels.shape[0]):
        panel = panels[p]
        j = p * 2 * width
        i = np.intp(0)
        if EIGHT_ROW_TILES:
            while i + 8 <= rows:
                register_tile(a, panel, column, out, bias, i, j, 8, 2)
                i += 8
        while i + 4 <= rows:
            register_tile(a, panel, column, out, bias, i, j, 4, 2)
            i += 4
        while i < rows:
            register_tile(a, panel, column, out, bias, i, j, 1, 1)
            register_tile(a, panel, width, out, bias, i, j + width, 1, 1)
            i += 1


@cpu_function
def matvec_into(m, v, out):
    """``out[...] = m @ v``: ``m`` (N, K), ``v`` (K,) and ``out`` (N,) C-contiguous,
    one float dtype.  For the streaming step, where ``v`` is one row of the batch
    and ``m`` a weight matrix as stored (no transposed or packed copy to keep in
    step with the parameters).

    Rows of ``m`` go in groups of one vector's worth (:func:`dot_lanes`); the
    ``K mod n`` last columns, and the rows left over, are summed one by one.
    """
    rows, inner = m.shape
    width = lane_count(v)
    if inner < width:  # rows too short for lanes: LLVM vectorises this loop across rows
        _dot_rows(m, v, out, 0)  # a literal 0 on purpose: this specialisation is the faster step
        return
    grouped = rows - rows % width
    full = inner - inner % width
    for j in range(0, grouped, width):
        store_lanes(out, j, dot_lanes(v, m, j, full))
        for r in range(j, j + width):
            total = out[r]
            for k in range(full, inner):
                total += v[k] * m[r, k]
            out[r] = total
    _dot_rows(m, v, out, grouped)


@cpu_function
def _dot_rows(m, v, out, start):
    """``out[start:] = m[start:] @ v``, one scalar sum per row, ``v[k]`` read once
    (not per row, which LLVM would do for fear that ``out`` overlaps ``v``)."""
    rows, inner = m.shape
    v_k = v[0]
    for r in range(start, rows):
        out[r] = v_k * m[r, 0]
    for k in range(1, inner):
        v_k = v[k]
        for r in range(start, rows):
            out[r] += v_k * m[r, k]
