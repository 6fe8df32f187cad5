// pybind11 front of the kernels: argument checks, GIL release, Python exceptions.  No math.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "dispatch.hpp"
#include "pool.hpp"
#include "types.hpp"

namespace py = pybind11;
using namespace fastopt;

namespace {

constexpr int NPY_FLOAT32 = 11, NPY_FLOAT64 = 12;

std::string type_name(py::handle h) { return py::str(py::type::handle_of(h).attr("__name__")); }

// ---- arrays ------------------------------------------------------------------------------

struct Role {
  const char* name;       // argument name, for messages
  py::handle obj;         // an ndarray or a list/tuple of them
  bool written;
  bool optional = false;  // None means absent (else None is an error)
  bool nonneg = false;    // a state of values >= 0 (its 8-bit code is the unsigned one)
};

// What an update call does beyond its arrays' dtypes: the float32 master copy's low-precision
// twin and the rounding of bfloat16 stores.
struct LeanArgs {
  py::handle low_params;
  bool stochastic = false;
  uint64_t seed = 0;
  py::handle compensation;  // Kahan: bfloat16 arrays, the parameters' rounding error
};

// An argument name and index, made into text only for an error message.
struct Label {
  const char* name;
  int64_t index;               // -1: the argument was a single array
  const char* field = nullptr;  // an array inside the argument's object: ".codes" or ".absmax"
  std::string str() const {
    std::string s = index < 0 ? std::string(name) : std::string(name) + "[" + std::to_string(index) + "]";
    return field ? s + field : s;
  }
};

// h.name, or a null object (and no Python error set) where h has no such attribute.  `name` is
// an interned string made once (see blockwise_names): a per-call string would be hashed and
// compared at every lookup, which cost an 8-bit step about a microsecond per call.
py::object attr_or_null(py::handle h, PyObject* name) {
  PyObject* v = PyObject_GetAttr(h.ptr(), name);
  if (!v) {
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
    PyErr_Clear();
  }
  return py::reinterpret_steal<py::object>(v);
}
// Interned once and kept for the life of the process.
PyObject* interned(const char* s) {
  PyObject* o = PyUnicode_InternFromString(s);
  if (!o) throw py::error_already_set();
  return o;
}
// A Blockwise8's fields.
struct BlockwiseNames {
  PyObject *codes, *absmax, *nonneg;
};
const BlockwiseNames& blockwise_names() {
  static const BlockwiseNames n{interned("codes"), interned("absmax"), interned("nonneg")};
  return n;
}
// h's codes where h is a Blockwise8 (anything with codes, absmax and nonneg) rather than an
// array; else a null object.
py::object codes_of(py::handle h) {
  return py::isinstance<py::array>(h) ? py::object() : attr_or_null(h, blockwise_names().codes);
}

struct Interval {
  uintptr_t begin, end;
  Label label;
  bool written;
};

// The memory of the calls now running (their spans, sorted and disjoint).  Calls register and
// leave with the GIL held, so the GIL guards this list; a call whose arrays meet a running
// call's, where either writes, raises instead of racing with it.
std::vector<const std::vector<Interval>*> g_in_flight;

void claim(const std::vector<Interval>& mine) {
  for (const std::vector<Interval>* other : g_in_flight) {
    size_t i = 0, j = 0;
    while (i < mine.size() && j < other->size()) {
      const Interval& a = mine[i];
      const Interval& b = (*other)[j];
      if (a.end <= b.begin) {
        ++i;
      } else if (b.end <= a.begin) {
        ++j;
      } else {
        if (a.written || b.written)
          throw py::value_error(a.label.str() + " is in use by a call running in another thread: concurrent calls on "
                                "the same arrays would race");
        if (a.end < b.end) ++i;
        else ++j;
      }
    }
  }
  g_in_flight.push_back(&mine);
}

void release(const std::vector<Interval>& mine) {
  for (size_t k = 0; k < g_in_flight.size(); ++k)
    if (g_in_flight[k] == &mine) {
      g_in_flight.erase(g_in_flight.begin() + std::ptrdiff_t(k));
      return;
    }
}

bool span_before(const Interval& a, const Interval& b) { return a.begin < b.begin; }

// Every span of a call apart from every other; the spans sorted by start.
void check_sorted_disjoint(const std::vector<Interval>& spans) {
  size_t widest = 0;
  for (size_t k = 1; k < spans.size(); ++k) {
    if (spans[k].begin < spans[widest].end)
      throw py::value_error(spans[k].label.str() + " and " + spans[widest].label.str() +
                            " share memory: every array of a call must be a separate buffer");
    if (spans[k].end > spans[widest].end) widest = k;
  }
}

// The same for spans in any order (sorts them).
void check_disjoint(std::vector<Interval>& spans) {
  std::sort(spans.begin(), spans.end(), span_before);
  check_sorted_disjoint(spans);
}

using PyArrayObject_ = py::detail::PyArray_Proxy;

int64_t element_count(const PyArrayObject_* a) {
  int64_t n = 1;
  for (int d = 0; d < a->nd; ++d) n *= int64_t(a->dimensions[d]);
  return n;
}

constexpr int U8 = 5;  // uint8: the codes of 8-bit state, inside a Blockwise8
const char* dtype_label(int d) {
  static const char* names[] = {"float32", "float64", "bfloat16", "float16", "8-bit blockwise", "uint8"};
  return names[d];
}
int64_t dtype_size(int d) { return d == F64 ? 8 : d == F32 ? 4 : d == U8 ? 1 : 2; }

// ml_dtypes' bfloat16 has a type number assigned at run time: found by name once.
int bf16_type_num = -1;
int dtype_code(py::handle h, int num) {
  if (num == NPY_FLOAT32) return F32;
  if (num == NPY_FLOAT64) return F64;
  if (num == 23) return F16;
  if (num == 2) return U8;
  if (num == bf16_type_num) return BF16;
  if (num >= 256 && std::string(py::str(h.attr("dtype").attr("name"))) == "bfloat16") {
    bf16_type_num = num;
    return BF16;
  }
  return -1;
}

// The validated arrays of one call, by slot (0 params, 1 grads, 2.. state, 5.. absmax, 8 the
// low-precision copy).  All arrays of one role share a dtype.  A call whose roles are all float32
// or all float64 is plain (dtype); any other mix that the lean kernels take sets `lean`.
class Arrays {
 public:
  int dtype = F32;
  int64_t count = 0;
  std::vector<int64_t> sizes;
  std::vector<void*> ptrs[9];
  int slot_dtype[9] = {-1, -1, -1, -1, -1, -1, -1, -1, -1};
  bool is_lean = false;
  Lean lean;

  // roles[0] is the parameter (or only) list; every array must match its sizes.  lean_ok: the
  // call's kernel takes bfloat16, float16 and 8-bit arrays; low: the update's LeanArgs.
  explicit Arrays(const std::vector<Role>& roles, bool lean_ok = false, const LeanArgs* low = nullptr) {
    std::vector<bool> listed;
    std::vector<Role> all = roles;
    const bool has_low = low && low->low_params && !low->low_params.is_none();
    const bool has_comp = low && low->compensation && !low->compensation.is_none();
    if (has_low && has_comp) throw py::type_error("low_params and compensation exclude each other");
    if (has_low || has_comp) {
      while (all.size() < 8) all.push_back({"", py::handle(), false, true});
      all.push_back({has_low ? "low_params" : "compensation", has_low ? low->low_params : low->compensation, true});
      kahan_ = has_comp;
    }
    const size_t nroles = all.size();
    for (size_t s = 0; s < nroles; ++s) {
      const Role& r = all[s];
      if (!r.optional && (!r.obj || r.obj.is_none()))
        throw py::type_error(std::string(r.name) + " is required: a numpy.ndarray or a list of them, got None");
      bool is_list = false;
      lists.push_back(as_list(r, &is_list));
      listed.push_back(is_list);
    }
    count = int64_t(lists[0].size());
    for (size_t s = 1; s < nroles; ++s)
      if (all[s].obj && !all[s].obj.is_none() && int64_t(lists[s].size()) != count)
        throw py::value_error(std::string(all[s].name) + " has " + std::to_string(lists[s].size()) +
                              " arrays but " + all[0].name + " has " + std::to_string(count));
    spans.reserve(nroles * size_t(count));
    sizes.reserve(size_t(count));
    for (size_t s = 0; s < nroles; ++s) {
      if (!all[s].obj || all[s].obj.is_none()) continue;
      for (int64_t i = 0; i < count; ++i) {
        const Label label{all[s].name, listed[s] ? i : -1};
        const Label first{all[0].name, listed[0] ? i : -1};
        py::handle h = lists[s][size_t(i)];  // owned by `lists` until the call returns
        if (s >= 2 && s <= 4) {
          if (py::object codes = codes_of(h)) {
            add_blockwise(h, codes, label, all[s], int(s), i, first);
            continue;
          }
        }
        const int d = check_array(h, label, all[s].written, s == 0 ? -1 : sizes[size_t(i)], first);
        if (d == U8) throw py::type_error(label.str() + " has dtype uint8; 8-bit state is a fastopt.Blockwise8");
        if (s == 0) sizes.push_back(element_count(reinterpret_cast<PyArrayObject_*>(h.ptr())));
        add(int(s), d, h, label, all[s].written, i);
      }
    }
    decide(all, lean_ok, low);
    check_disjoint(spans);
    claim(spans);
    claimed_ = true;
  }
  ~Arrays() {
    if (claimed_) release(spans);
  }
  Arrays(const Arrays&) = delete;
  Arrays& operator=(const Arrays&) = delete;

  std::vector<Interval> spans;  // the call's memory, sorted
  // The arrays of the call, one reference each: they stay alive while the kernel runs without
  // the GIL, whatever another thread or a list's __getitem__ does.
  std::vector<std::vector<py::object>> lists;

  Batch batch() const {
    Batch b;
    b.count = count;
    b.sizes = sizes.data();
    for (int s = 0; s < 9; ++s) b.slot[s] = ptrs[s].empty() ? nullptr : ptrs[s].data();
    b.lean = is_lean ? &lean : nullptr;
    return b;
  }
  // The arrays inside Blockwise8 objects (kept alive with the lists).
  const std::vector<py::object>& inner() const { return extra_; }
  // The dtype of the gradients (slot 1), or of the only role.
  int grad_dtype() const { return slot_dtype[1] >= 0 ? slot_dtype[1] : slot_dtype[0]; }

 private:
  bool claimed_ = false;
  bool kahan_ = false;
  std::vector<py::object> extra_;  // the arrays inside Blockwise8 objects

  void add(int s, int d, py::handle h, const Label& label, bool written, int64_t i) {
    const auto* a = reinterpret_cast<const PyArrayObject_*>(h.ptr());
    if (i == 0) {
      slot_dtype[s] = d;
    } else if (d != slot_dtype[s]) {
      const Label head{label.name, 0};
      throw py::type_error(label.str() + " is " + dtype_label(d) + " but " + head.str() + " is " +
                           dtype_label(slot_dtype[s]) + ": the arrays of one argument share one dtype");
    }
    if (ptrs[s].empty()) ptrs[s].reserve(size_t(count));  // the slots in use only
    ptrs[s].push_back(a->data);
    const int64_t n = element_count(a);
    if (n > 0) {
      const uintptr_t b = reinterpret_cast<uintptr_t>(a->data);
      spans.push_back({b, b + uintptr_t(n * dtype_size(d)), label, written});
    }
  }

  // A Blockwise8 state (its codes already looked up): codes (uint8, the parameter's size) into
  // slot s, absmax (float32, one per block) into slot s + 3.
  void add_blockwise(py::handle h, py::object codes, const Label& label, const Role& role, int s, int64_t i,
                     const Label& first) {
    py::object absmax = attr_or_null(h, blockwise_names().absmax), flag = attr_or_null(h, blockwise_names().nonneg);
    if (!absmax || !flag || !PyBool_Check(flag.ptr()))
      throw py::type_error(label.str() + " must be a numpy.ndarray or a fastopt.Blockwise8 (codes, absmax, nonneg: bool), got " +
                           type_name(h));
    const bool nonneg = flag.ptr() == Py_True;
    extra_.push_back(codes);
    extra_.push_back(absmax);
    const Label cl{label.name, label.index, ".codes"}, al{label.name, label.index, ".absmax"};
    const int dc = check_array(codes, cl, true, sizes[size_t(i)], first);
    if (dc != U8) throw py::type_error(cl.str() + " must be uint8, got " + dtype_label(dc));
    const int64_t blocks = (sizes[size_t(i)] + kQBlock - 1) / kQBlock;
    const int da = check_array(absmax, al, true, -1, first);
    if (da != F32) throw py::type_error(al.str() + " must be float32, got " + dtype_label(da));
    if (element_count(reinterpret_cast<PyArrayObject_*>(absmax.ptr())) != blocks)
      throw py::value_error(al.str() + " has " + std::to_string(element_count(reinterpret_cast<PyArrayObject_*>(absmax.ptr()))) +
                            " elements; " + std::to_string(sizes[size_t(i)]) + " elements make " + std::to_string(blocks) +
                            " blocks of " + std::to_string(kQBlock));
    if (nonneg != role.nonneg)
      throw py::value_error(label.str() + (nonneg ? " holds values >= 0 (nonneg=True) but " : " is signed (nonneg=False) but ") +
                            role.name + (role.nonneg ? " holds values >= 0" : " is signed") +
                            ": quantize it with nonneg=" + (role.nonneg ? "True" : "False"));
    if (i > 0 && slot_dtype[s] != Q8)
      throw py::type_error(label.str() + " is 8-bit blockwise but " + role.name + "[0] is " + dtype_label(slot_dtype[s]) +
                           ": the arrays of one argument share one dtype");
    add(s, U8, codes, label, true, 0);
    slot_dtype[s] = Q8;
    add(s + 3, F32, absmax, label, true, i);
  }

  // Plain (one float dtype) or lean; refuse every other mix, naming the arguments.
  void decide(const std::vector<Role>& all, bool lean_ok, const LeanArgs* low) {
    const int pd = slot_dtype[0];
    dtype = pd == F64 ? F64 : F32;
    bool plain = pd == F32 || pd == F64;
    for (size_t s = 1; s < all.size() && s < 5; ++s)
      if (slot_dtype[s] >= 0 && slot_dtype[s] != pd) plain = false;
    if (slot_dtype[8] >= 0) plain = false;
    if (low) {
      lean.stochastic = low->stochastic;
      lean.seed = low->seed;
    }
    if (plain) return;
    for (size_t s = 1; s < all.size(); ++s)
      if (slot_dtype[s] >= 0 && slot_dtype[s] != pd && (slot_dtype[s] == F64 || pd == F64))
        throw py::type_error(std::string(all[s].name) + " is " + dtype_label(slot_dtype[s]) + " but " + all[0].name +
                             " are " + dtype_label(pd) + ": all arrays of a call share one dtype (float64 mixes with nothing)");
    if (!lean_ok)
      throw py::type_error(std::string(all[0].name) + " are " + dtype_label(pd) +
                           (all.size() > 1 && slot_dtype[1] >= 0 ? std::string(", ") + all[1].name + " " + dtype_label(slot_dtype[1]) : std::string()) +
                           ": this function takes float32 or float64 arrays only, all of one dtype");
    if (pd == Q8 || pd == U8) throw py::type_error(std::string(all[0].name) + " must be float32, bfloat16 or float16");
    if (slot_dtype[1] == Q8) throw py::type_error(std::string(all[1].name) + " must be float32, bfloat16 or float16");
    int sd = -1;
    const char* first_state = nullptr;
    for (int s = 2; s < 5 && s < int(all.size()); ++s) {
      if (slot_dtype[s] < 0) continue;
      if (slot_dtype[s] == F16)
        throw py::type_error(std::string(all[s].name) + " is float16: state is float32, bfloat16 or 8-bit blockwise");
      if (sd >= 0 && slot_dtype[s] != sd)
        throw py::type_error(std::string(all[s].name) + " is " + dtype_label(slot_dtype[s]) + " but " + first_state +
                             " is " + dtype_label(sd) + ": the states of a call share one dtype");
      sd = slot_dtype[s];
      first_state = all[s].name;
      lean.nonneg[s - 2] = all[s].nonneg;
    }
    if (kahan_) {
      if (pd != BF16 || slot_dtype[8] != BF16)
        throw py::type_error(std::string("compensation is for bfloat16 params, as bfloat16 arrays; got params ") +
                             dtype_label(pd) + ", compensation " + dtype_label(slot_dtype[8]));
      if (lean.stochastic) throw py::type_error("compensation and stochastic_rounding exclude each other");
      lean.kahan = true;
    } else if (slot_dtype[8] >= 0) {
      if (pd != F32)
        throw py::type_error(std::string("low_params need float32 params (the master copy), got ") + dtype_label(pd));
      if (slot_dtype[8] != BF16 && slot_dtype[8] != F16)
        throw py::type_error(std::string("low_params must be bfloat16 or float16, got ") + dtype_label(slot_dtype[8]));
      lean.out = slot_dtype[8];
    }
    lean.param = pd;
    lean.grad = slot_dtype[1];
    lean.state = sd < 0 ? F32 : sd;
    is_lean = true;
    dtype = F32;
  }

  static std::vector<py::object> as_list(const Role& r, bool* is_list) {
    std::vector<py::object> out;
    if (!r.obj || r.obj.is_none()) return out;
    if (!PyList_Check(r.obj.ptr()) && !PyTuple_Check(r.obj.ptr()) &&
        (py::isinstance<py::array>(r.obj) || codes_of(r.obj))) {
      out.push_back(py::reinterpret_borrow<py::object>(r.obj));
    } else if (PyList_Check(r.obj.ptr()) || PyTuple_Check(r.obj.ptr())) {
      *is_list = true;
      // The list's own items (a subclass's __getitem__ is not called), one reference each.
      py::object fast = py::reinterpret_steal<py::object>(PySequence_Fast(r.obj.ptr(), r.name));
      if (!fast) throw py::error_already_set();
      const Py_ssize_t n = PySequence_Fast_GET_SIZE(fast.ptr());
      PyObject** items = PySequence_Fast_ITEMS(fast.ptr());
      out.reserve(size_t(n));
      for (Py_ssize_t i = 0; i < n; ++i) out.push_back(py::reinterpret_borrow<py::object>(items[i]));
    } else {
      throw py::type_error(std::string(r.name) + " must be a numpy.ndarray or a list of them, got " + type_name(r.obj));
    }
    return out;
  }

  static std::string dtype_name(py::handle a) { return py::str(a.attr("dtype")); }

  // Checks one array; returns its dtype code.
  static int check_array(py::handle h, const Label& label, bool written, int64_t size, const Label& first) {
    if (!py::isinstance<py::array>(h))
      throw py::type_error(label.str() + " must be a numpy.ndarray, got " + type_name(h));
    const auto* a = reinterpret_cast<const PyArrayObject_*>(h.ptr());
    const auto* descr = py::detail::array_descriptor_proxy(a->descr);
    const int d = dtype_code(h, descr->type_num);
    if (d < 0)
      throw py::type_error(label.str() + " has dtype " + dtype_name(h) +
                           "; the kernels take float32, float64, bfloat16 (ml_dtypes) or float16");
    if (descr->byteorder == '>')
      throw py::type_error(label.str() + " is big-endian; the kernels take native byte order");
    const int flags = a->flags;
    if (!(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_))
      throw py::value_error(label.str() + " is not C-contiguous (numpy.ascontiguousarray makes a contiguous copy)");
    if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) throw py::value_error(label.str() + " is not aligned");
    if (written && !(flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_))
      throw py::value_error(label.str() + " is read-only");
    if (size >= 0 && element_count(a) != size)
      throw py::value_error(label.str() + " has " + std::to_string(element_count(a)) + " elements but " + first.str() +
                            " has " + std::to_string(size));
    return d;
  }

};

// ---- hyperparameters ---------------------------------------------------------------------

std::string num(double x) {
  std::string s = py::str(py::float_(x));
  return s;
}
// The message is built only when the check fails (it calls into Python).
#define FASTOPT_REQUIRE(ok, msg)              \
  do {                                        \
    if (!(ok)) throw py::value_error(msg);    \
  } while (0)
void check_lr(double lr) { FASTOPT_REQUIRE(lr >= 0.0 && std::isfinite(lr), "lr must be a finite number >= 0, got " + num(lr)); }
void check_mu_product(double mu_product) {
  FASTOPT_REQUIRE(mu_product >= 0.0 && mu_product < 1.0, "mu_product must be in [0, 1), got " + num(mu_product));
}
void check_nonneg(const char* name, double x) {
  FASTOPT_REQUIRE(x >= 0.0 && std::isfinite(x), std::string(name) + " must be a finite number >= 0, got " + num(x));
}
void check_beta(const char* name, double b) {
  FASTOPT_REQUIRE(b >= 0.0 && b < 1.0, std::string(name) + " must be in [0, 1), got " + num(b));
}
void check_eps(double eps) { FASTOPT_REQUIRE(eps > 0.0 && std::isfinite(eps), "eps must be a finite number > 0, got " + num(eps)); }
constexpr int64_t kMaxStep = int64_t(1) << 53;  // exact in a double, far from overflow
void check_step(int64_t step) {
  FASTOPT_REQUIRE(step >= 1 && step <= kMaxStep,
                  "step must be in [1, 2**53] (the count of steps taken, this one included), got " + std::to_string(step));
}
// An eps that rounds to 0 in the arrays' dtype divides 0 by 0.
void check_eps_in(double eps, int dtype) {
  FASTOPT_REQUIRE(dtype != F32 || float(eps) > 0.0f, "eps = " + num(eps) + " is 0 in float32: use at least 1.4e-45");
}

int convention_code(const std::string& convention) {
  const int conv = convention == "torch" ? kConvTorch : convention == "keras" ? kConvKeras
                 : convention == "optax" ? kConvOptax : -1;
  FASTOPT_REQUIRE(conv >= 0, "convention must be 'torch', 'keras' or 'optax', got '" + convention + "'");
  return conv;
}

// The seed of stochastic rounding: a Python int in [0, 2**64).
uint64_t seed_value(py::handle seed) {
  if (!PyIndex_Check(seed.ptr()) || PyBool_Check(seed.ptr()))
    throw py::type_error("seed must be an int in [0, 2**64), got " + type_name(seed));
  py::object as_int = py::reinterpret_steal<py::object>(PyNumber_Index(seed.ptr()));
  if (!as_int) throw py::error_already_set();
  const unsigned long long v = PyLong_AsUnsignedLongLong(as_int.ptr());
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("seed must be an int in [0, 2**64), got " + std::string(py::str(seed)));
  }
  return uint64_t(v);
}

PreHyper make_pre(bool maximize, double grad_scale, std::optional<double> clip_value, double l1, double l2) {
  check_nonneg("grad_scale", grad_scale);
  if (clip_value)
    FASTOPT_REQUIRE(*clip_value > 0.0 && !std::isnan(*clip_value), "clip_value must be > 0, got " + num(*clip_value));
  check_nonneg("l1", l1);
  check_nonneg("l2", l2);
  PreHyper p;
  p.scale = grad_scale;
  p.clip = clip_value && std::isfinite(*clip_value) ? *clip_value : 0.0;
  p.l1 = l1;
  p.l2 = l2;
  p.maximize = maximize;
  return p;
}

// ---- running -----------------------------------------------------------------------------

bool grads_finite(const Batch& b, int dtype, int nt) {
  std::vector<double> per(size_t(b.count));
  kernels().reduce[dtype](b, 1, Reduce::NonFinite, 0.0, nt, per.data());
  return std::all_of(per.begin(), per.end(), [](double x) { return x == 0.0; });
}

// A new reference from a Python call, or the pending Python exception thrown.
py::object checked(PyObject* r) {
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r);
}

// ---- a call made once and run again (fastopt.torch's prepared step) ------------------------

template <class H, class = void>
struct HasStep : std::false_type {};
template <class H>
struct HasStep<H, std::void_t<decltype(std::declval<H&>().step)>> : std::true_type {};
template <class H, class = void>
struct HasLr : std::false_type {};
template <class H>
struct HasLr<H, std::void_t<decltype(std::declval<H&>().lr)>> : std::true_type {};
template <class H, class = void>
struct HasMuProduct : std::false_type {};
template <class H>
struct HasMuProduct<H, std::void_t<decltype(std::declval<H&>().mu_product)>> : std::true_type {};

bool torch_grads_into(py::handle params, py::handle expected, py::handle ptrs, py::handle sizes, py::handle dtype,
                      py::handle strided, std::vector<py::object>& grads, std::vector<void*>& data,
                      std::vector<int64_t>& counts);

// An update call as the kernel's binding validated it, kept to run again with new gradients, step
// and lr (and NAdam's mu_product): the arrays of every other role stay as they were (this object
// keeps them alive).  The gradients come from torch tensors, read and checked at each run as
// fastopt.torch's plan expects them (torch_grads_into); a run where they differ returns None and
// writes nothing.
class Prepared {
 public:
  template <class H, class Get>
  void take(const Arrays& a, Get get, const H& h, const PreHyper& pre, bool check_finite) {
    taken_ = true;  // once: run() clears g_capture before it calls take()
    sizes_ = a.sizes;
    for (int s = 0; s < 9; ++s) ptrs_[s] = a.ptrs[s];
    dtype_ = a.dtype;
    grad_dtype_ = a.grad_dtype();
    grad_size_ = dtype_size(a.slot_dtype[1]);
    is_lean_ = a.is_lean;
    lean_ = a.lean;
    check_finite_ = check_finite;
    for (const auto& list : a.lists)
      for (const py::object& o : list) keep_.push_back(o);
    for (const py::object& o : a.inner()) keep_.push_back(o);
    for (const Interval& iv : a.spans)
      if (std::strcmp(iv.label.name, "grads") != 0) fixed_.push_back(iv);  // sorted, as a's
    takes_mu_ = HasMuProduct<H>::value;
    call_ = [get, h, pre](const Batch& b, int dtype, int64_t step, double lr, double mu_product, int nt) {
      H hh = h;
      if constexpr (HasStep<H>::value) hh.step = step;
      if constexpr (HasLr<H>::value) hh.lr = lr;
      if constexpr (HasMuProduct<H>::value) hh.mu_product = mu_product;
      get(kernels())[dtype](b, hh, pre, nt);
    };
  }
  bool taken() const { return taken_; }

  void expect_torch(py::tuple expected, py::tuple ptrs, py::tuple sizes, py::object dtype, py::object strided) {
    torch_ = py::make_tuple(expected, ptrs, sizes, dtype, strided);
  }

  // The step on the group's current gradients: True (applied), False (check_finite met a NaN or
  // Inf) or None (the group is not as the plan found it: nothing done).
  py::object run(py::handle params, int64_t step, double lr, std::optional<double> mu_product) {
    check_step(step);
    check_lr(lr);
    if (takes_mu_ != mu_product.has_value())
      throw py::value_error(takes_mu_ ? "this update takes mu_product" : "this update takes no mu_product");
    if (mu_product) check_mu_product(*mu_product);
    if (torch_.size() != 5) throw py::value_error("expect_torch() first");
    std::vector<py::object> grads;
    std::vector<void*> gp;
    std::vector<int64_t> counts;
    if (!torch_grads_into(params, torch_[0], torch_[1], torch_[2], torch_[3], torch_[4], grads, gp, counts) ||
        counts != sizes_)
      return py::none();
    // The other roles' spans are sorted and apart already: sort the gradients' and merge.
    std::vector<Interval> gspans, mine;
    gspans.reserve(gp.size());
    for (size_t i = 0; i < gp.size(); ++i)
      if (sizes_[i] > 0) {
        const uintptr_t b = reinterpret_cast<uintptr_t>(gp[i]);
        gspans.push_back({b, b + uintptr_t(sizes_[i] * grad_size_), Label{"grads", int64_t(i)}, false});
      }
    std::sort(gspans.begin(), gspans.end(), span_before);
    mine.resize(fixed_.size() + gspans.size());
    std::merge(gspans.begin(), gspans.end(), fixed_.begin(), fixed_.end(), mine.begin(), span_before);
    check_sorted_disjoint(mine);
    claim(mine);
    struct Leave {
      const std::vector<Interval>& spans;
      ~Leave() { release(spans); }
    } leave{mine};
    Batch b;
    b.count = int64_t(sizes_.size());
    b.sizes = sizes_.data();
    for (int s = 0; s < 9; ++s) b.slot[s] = ptrs_[s].empty() ? nullptr : ptrs_[s].data();
    b.slot[1] = gp.data();
    b.lean = is_lean_ ? &lean_ : nullptr;
    bool applied = true;
    {
      py::gil_scoped_release nogil;
      const int nt = num_threads();
      if (check_finite_ && !grads_finite(b, grad_dtype_, nt)) applied = false;
      else call_(b, dtype_, step, lr, mu_product.value_or(0.0), nt);
    }
    return py::bool_(applied);
  }

 private:
  bool taken_ = false, is_lean_ = false, check_finite_ = false, takes_mu_ = false;
  int dtype_ = F32, grad_dtype_ = F32;
  int64_t grad_size_ = 4;
  std::vector<int64_t> sizes_;
  std::vector<void*> ptrs_[9];
  Lean lean_;
  std::vector<Interval> fixed_;
  std::vector<py::object> keep_;
  std::function<void(const Batch&, int, int64_t, double, double, int)> call_;
  py::tuple torch_;
};

// Set by _prepare while its function runs: the update call it makes is also kept here.
thread_local Prepared* g_capture = nullptr;

// Runs one update kernel: validated arrays in, the step applied unless check_finite finds a
// NaN or Inf in the gradients.  Returns whether the step was applied.
template <class H, class Get>
bool run(const Arrays& a, Get get, const H& h, const PreHyper& pre, bool check_finite) {
  if (g_capture) {
    Prepared* p = g_capture;
    g_capture = nullptr;  // one call only, whatever the kernel does next
    p->take(a, get, h, pre, check_finite);
  }
  if (a.count == 0) return true;
  const Batch b = a.batch();
  py::gil_scoped_release nogil;
  const int nt = num_threads();
  if (check_finite && !grads_finite(b, a.grad_dtype(), nt)) return false;
  get(kernels())[a.dtype](b, h, pre, nt);
  return true;
}

#define FASTOPT_PRE_ARGS                                                                             \
  py::arg("maximize") = false, py::arg("grad_scale") = 1.0, py::arg("clip_value") = py::none(), \
      py::arg("l1") = 0.0, py::arg("l2") = 0.0, py::arg("check_finite") = false
#define FASTOPT_PRE_PARAMS \
  bool maximize, double grad_scale, std::optional<double> clip_value, double l1, double l2, bool check_finite
#define FASTOPT_PRE make_pre(maximize, grad_scale, clip_value, l1, l2)
// Every update but LAMB's also takes bfloat16 / float16 arrays and 8-bit state (lean.hpp).
#define FASTOPT_LEAN_ARGS                                                                     \
  py::arg("low_params") = py::none(), py::arg("stochastic_rounding") = false, py::arg("seed") = 0, \
      py::arg("compensation") = py::none()
#define FASTOPT_LEAN_PARAMS py::object low_params, bool stochastic_rounding, py::object seed, py::object compensation
#define FASTOPT_LEAN                                                                     \
  LeanArgs lean_args{low_params, stochastic_rounding, seed_value(seed), compensation}; \
  const LeanArgs* lean = &lean_args

std::vector<double> per_array(const Arrays& a, Reduce kind, double power) {
  std::vector<double> out(size_t(a.count));
  if (a.count == 0) return out;
  Batch b = a.batch();
  b.slot[1] = b.slot[0];
  py::gil_scoped_release nogil;
  kernels().reduce[a.slot_dtype[0]](b, 0, kind, power, num_threads(), out.data());
  return out;
}

// Norm kind and power for a norm_type: 1, 2, inf or any p > 0.
std::pair<Reduce, double> norm_kind(double p) {
  FASTOPT_REQUIRE(p > 0.0, "norm_type must be > 0 (1, 2, inf or any positive p), got " + num(p));
  if (std::isinf(p)) return {Reduce::MaxAbs, p};
  if (p == 1.0) return {Reduce::SumAbs, p};
  if (p == 2.0) return {Reduce::SumSq, p};
  return {Reduce::SumPow, p};
}
double finish_norm(Reduce kind, double p, double raw) {
  if (kind == Reduce::MaxAbs || kind == Reduce::SumAbs) return raw;
  if (kind == Reduce::SumSq) return std::sqrt(raw);
  return std::pow(raw, 1.0 / p);
}

// ---- the fused layer passes --------------------------------------------------------------

// One array of a layer pass: a C-contiguous, aligned, native-order ndarray of `nd` dimensions,
// writeable when written.
const PyArrayObject_* layer_array(py::handle h, const char* name, int nd, int num, bool written) {  // num: -1 float32 or float64, 0 int64, 1 uint8
  if (!py::isinstance<py::array>(h)) throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " + type_name(h));
  const auto* a = reinterpret_cast<const PyArrayObject_*>(h.ptr());
  const auto* descr = py::detail::array_descriptor_proxy(a->descr);
  const int t = descr->type_num;
  static_assert(sizeof(long) == 8, "int64 labels are NPY_LONG or NPY_LONGLONG on LP64 platforms");
  const bool ok = num < 0 ? (t == NPY_FLOAT32 || t == NPY_FLOAT64) : num == 1 ? t == 2 : (t == 7 || t == 9);  // uint8, int64
  if (!ok || descr->byteorder == '>')
    throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(h.attr("dtype"))) + "; expected " +
                         (num < 0 ? "float32 or float64" : num == 1 ? "uint8" : "int64") + " in native byte order");
  if (a->nd != nd) throw py::value_error(std::string(name) + " must be " + std::to_string(nd) + "-D, got " + std::to_string(a->nd) + "-D");
  if (!(a->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) || !(a->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + " is not C-contiguous and aligned");
  if (written && !(a->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_)) throw py::value_error(std::string(name) + " is read-only");
  return a;
}
int dtype_of(const PyArrayObject_* a) { return py::detail::array_descriptor_proxy(a->descr)->type_num == NPY_FLOAT32 ? F32 : F64; }
int activation_code(const std::string& act) {
  if (act == "identity") return kActIdentity;
  if (act == "relu") return kActRelu;
  if (act == "tanh") return kActTanh;
  if (act == "sigmoid") return kActSigmoid;
  throw py::value_error("act must be 'identity', 'relu', 'tanh' or 'sigmoid', got '" + act + "'");
}
void same_dtype(const PyArrayObject_* a, const PyArrayObject_* b, const char* an, const char* bn) {
  if (dtype_of(a) != dtype_of(b)) throw py::type_error(std::string(bn) + " and " + an + " must share one dtype");
}

// out[r] = x[index[r]] for rows of `row_bytes`: rows handed out in runs of kRowRun to the team
// where the copy is large enough to pay for it (the trainer's minibatch gather: random rows of a
// large array, bound by memory latency, which two threads' misses overlap).
void take_rows(const char* x, const int64_t* index, char* out, int64_t rows, int64_t row_bytes) {
  constexpr int64_t kRowRun = 8, kParallelBytes = 256 * 1024;
  struct Shared {
    const char* x;
    const int64_t* index;
    char* out;
    int64_t rows, row_bytes, next;
  } s{x, index, out, rows, row_bytes, 0};
  auto work = [](void* ctx) {
    auto& sh = *static_cast<Shared*>(ctx);
    for (int64_t r0; (r0 = __atomic_fetch_add(&sh.next, kRowRun, __ATOMIC_RELAXED)) < sh.rows;) {
      const int64_t r1 = std::min(sh.rows, r0 + kRowRun);
      for (int64_t r = r0; r < r1; ++r) {
        if (r + 2 < r1) __builtin_prefetch(sh.x + sh.index[r + 2] * sh.row_bytes);
        std::memcpy(sh.out + r * sh.row_bytes, sh.x + sh.index[r] * sh.row_bytes, size_t(sh.row_bytes));
      }
    }
  };
  const int nt = rows * row_bytes >= kParallelBytes ? num_threads() : 1;
  if (nt <= 1) work(&s);
  else parallel_run(int(std::min<int64_t>(nt, (rows + kRowRun - 1) / kRowRun)), work, &s);
}

// The gradients of a torch parameter group, read for the step that fastopt.torch prepared for
// the group (its plan): false unless the group is as the plan found it: the same parameter
// objects at the same data pointers (`expected`, `ptrs`), a gradient exactly where there was
// one (`sizes`: the element count, -1 where none), each a CPU, strided, contiguous tensor of the
// plan's dtype and its parameter's element count, its parameter contiguous too.  The Python path
// handles every other case (and names what is wrong).  grads: the tensors (kept for the call),
// data: their addresses, counts: their element counts.
bool torch_grads_into(py::handle params, py::handle expected, py::handle ptrs, py::handle sizes, py::handle dtype,
                      py::handle strided, std::vector<py::object>& grads, std::vector<void*>& data,
                      std::vector<int64_t>& counts) {
  static PyObject *s_grad = interned("grad"), *s_data_ptr = interned("data_ptr"), *s_dtype = interned("dtype"),
                  *s_layout = interned("layout"), *s_is_cpu = interned("is_cpu"), *s_numel = interned("numel"),
                  *s_is_contiguous = interned("is_contiguous");
  if (!PyTuple_Check(expected.ptr()) || !PyTuple_Check(ptrs.ptr()) || !PyTuple_Check(sizes.ptr()))
    throw py::type_error("expected, ptrs and sizes must be tuples");
  if (!PyList_Check(params.ptr())) return false;  // not the list the plan was made for
  const Py_ssize_t n = PyList_GET_SIZE(params.ptr());
  if (PyTuple_GET_SIZE(expected.ptr()) != n || PyTuple_GET_SIZE(ptrs.ptr()) != n || PyTuple_GET_SIZE(sizes.ptr()) != n)
    return false;
  auto as_int = [](PyObject* o) {
    const long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    return v;
  };
  grads.reserve(size_t(n));
  data.reserve(size_t(n));
  counts.reserve(size_t(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* p = PyList_GET_ITEM(params.ptr(), i);
    if (p != PyTuple_GET_ITEM(expected.ptr(), i)) return false;
    if (as_int(checked(PyObject_CallMethodNoArgs(p, s_data_ptr)).ptr()) != as_int(PyTuple_GET_ITEM(ptrs.ptr(), i)))
      return false;
    const long long size = as_int(PyTuple_GET_ITEM(sizes.ptr(), i));
    py::object g = checked(PyObject_GetAttr(p, s_grad));
    if (g.is_none() != (size < 0)) return false;
    if (size < 0) continue;
    // the parameter itself C-contiguous too (its memory order the gradient's): a parameter
    // re-laid at the same address (param.data = param.data.t()) takes the Python path
    if (checked(PyObject_CallMethodNoArgs(p, s_is_contiguous)).ptr() != Py_True) return false;
    if (checked(PyObject_GetAttr(g.ptr(), s_dtype)).ptr() != dtype.ptr() ||
        checked(PyObject_GetAttr(g.ptr(), s_layout)).ptr() != strided.ptr() ||
        checked(PyObject_GetAttr(g.ptr(), s_is_cpu)).ptr() != Py_True ||
        checked(PyObject_CallMethodNoArgs(g.ptr(), s_is_contiguous)).ptr() != Py_True ||
        as_int(checked(PyObject_CallMethodNoArgs(g.ptr(), s_numel)).ptr()) != size)
      return false;
    const long long address = as_int(checked(PyObject_CallMethodNoArgs(g.ptr(), s_data_ptr)).ptr());
    if (address == 0 && size > 0) return false;
    data.push_back(reinterpret_cast<void*>(uintptr_t(address)));
    counts.push_back(size);
    grads.push_back(std::move(g));
  }
  return true;
}

// The same gradients as 1-D NumPy views of their memory (each keeping its tensor alive), or None.
py::object torch_grads(py::handle params, py::handle expected, py::handle ptrs, py::handle sizes, py::handle dtype,
                       py::handle strided, py::handle np_dtype) {
  auto& api = py::detail::npy_api::get();
  if (!api.PyArrayDescr_Check_(np_dtype.ptr())) throw py::type_error("np_dtype must be a numpy.dtype");
  std::vector<py::object> grads;
  std::vector<void*> data;
  std::vector<int64_t> counts;
  if (!torch_grads_into(params, expected, ptrs, sizes, dtype, strided, grads, data, counts)) return py::none();
  py::list out;
  for (size_t i = 0; i < grads.size(); ++i) {
    Py_ssize_t dims[1] = {Py_ssize_t(counts[i])};
    Py_INCREF(np_dtype.ptr());  // stolen by the call
    py::object view = checked(api.PyArray_NewFromDescr_(api.PyArray_Type_, np_dtype.ptr(), 1, dims, nullptr, data[i],
                                                        py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                                                            py::detail::npy_api::NPY_ARRAY_ALIGNED_ |
                                                            py::detail::npy_api::NPY_ARRAY_WRITEABLE_, nullptr));
    if (api.PyArray_SetBaseObject_(view.ptr(), grads[i].release().ptr()) != 0) throw py::error_already_set();  // steals
    out.append(view);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastopt kernels: in-place optimizer updates, clipping and regularization (see fastopt.functional)";

  m.def("gd_", [](py::object params, py::object grads, double lr, FASTOPT_PRE_PARAMS, FASTOPT_LEAN_PARAMS) {
    check_lr(lr);
    const PreHyper pre = FASTOPT_PRE;
    FASTOPT_LEAN;
    Arrays a({{"params", params, true}, {"grads", grads, false}}, true, lean);
    return run(a, [](const KernelTable& k) { return k.gd; }, GdHyper{lr}, pre, check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("lr"), FASTOPT_PRE_ARGS, FASTOPT_LEAN_ARGS);

  m.def("sgd_", [](py::object params, py::object grads, py::object momentum_buffers, int64_t step, double lr,
                   double momentum, double dampening, double weight_decay, bool nesterov, FASTOPT_PRE_PARAMS,
                   const std::string& convention, FASTOPT_LEAN_PARAMS) {
    const int conv = convention_code(convention);
    FASTOPT_REQUIRE(conv != kConvKeras || dampening == 0.0, "dampening must be 0 with convention='keras'");
    check_step(step);
    check_lr(lr);
    check_nonneg("momentum", momentum);
    FASTOPT_REQUIRE(std::isfinite(dampening), "dampening must be finite, got " + num(dampening));
    check_nonneg("weight_decay", weight_decay);
    FASTOPT_REQUIRE(!nesterov || (momentum > 0.0 && dampening == 0.0), "nesterov=True requires momentum > 0 and dampening = 0");
    FASTOPT_REQUIRE(momentum == 0.0 || !momentum_buffers.is_none(), "momentum_buffers are required when momentum != 0");
    const PreHyper pre = FASTOPT_PRE;
    FASTOPT_LEAN;
    Arrays a({{"params", params, true}, {"grads", grads, false},
              {"momentum_buffers", momentum != 0.0 ? momentum_buffers : py::none(), true, momentum == 0.0}}, true, lean);
    return run(a, [](const KernelTable& k) { return k.sgd; },
               SgdHyper{lr, momentum, dampening, weight_decay, nesterov, step, conv}, pre, check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("step"), py::arg("lr"),
     py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), FASTOPT_PRE_ARGS,
     py::arg("convention") = "torch", FASTOPT_LEAN_ARGS);

  m.def("adam_", [](py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs,
                    py::object max_exp_avg_sqs, int64_t step, double lr, double beta1, double beta2, double eps,
                    double weight_decay, bool amsgrad, bool decoupled_weight_decay, FASTOPT_PRE_PARAMS,
                    double eps_root, bool bias_correction, const std::string& convention, bool nesterov,
                    FASTOPT_LEAN_PARAMS) {
    check_step(step);
    check_lr(lr);
    check_beta("beta1", beta1);
    check_beta("beta2", beta2);
    check_nonneg("eps_root", eps_root);
    if (eps_root == 0.0) check_eps(eps);  // the usual message: eps must be > 0
    else check_nonneg("eps", eps);
    check_nonneg("weight_decay", weight_decay);
    const int conv = convention_code(convention);
    FASTOPT_REQUIRE(!nesterov || conv == kConvOptax, "nesterov=True is optax's nadam: it needs convention='optax'");
    FASTOPT_REQUIRE(!amsgrad || !max_exp_avg_sqs.is_none(), "max_exp_avg_sqs are required when amsgrad=True");
    const PreHyper pre = FASTOPT_PRE;
    FASTOPT_LEAN;
    Arrays a({{"params", params, true}, {"grads", grads, false}, {"exp_avgs", exp_avgs, true},
              {"exp_avg_sqs", exp_avg_sqs, true, false, true}, {"max_exp_avg_sqs", amsgrad ? max_exp_avg_sqs : py::none(), true, !amsgrad, true}}, true, lean);
    if (eps_root == 0.0) check_eps_in(eps, a.dtype);
    else FASTOPT_REQUIRE(a.dtype != F32 || float(eps) > 0.0f || float(eps_root) > 0.0f,
                         "eps_root = " + num(eps_root) + " is 0 in float32 (and eps is 0)");
    AdamHyper h{lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled_weight_decay, step};
    h.eps_root = eps_root;
    h.bias_correction = bias_correction;
    h.convention = conv;
    h.nesterov = nesterov;
    return run(a, [](const KernelTable& k) { return k.adam; }, h, pre, check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
     py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
     py::arg("amsgrad"), py::arg("decoupled_weight_decay"), FASTOPT_PRE_ARGS, py::arg("eps_root") = 0.0,
     py::arg("bias_correction") = true, py::arg("convention") = "torch", py::arg("nesterov") = false, FASTOPT_LEAN_ARGS);

  m.def("adagrad_", [](py::object params, py::object grads, py::object state_sums, int64_t step, double lr,
                       double lr_decay, double weight_decay, double eps, FASTOPT_PRE_PARAMS,
                       const std::string& convention, FASTOPT_LEAN_PARAMS) {
    const int conv = convention_code(convention);
    FASTOPT_REQUIRE(conv == kConvTorch || lr_decay == 0.0, "lr_decay is torch's: 0 with convention='" + convention + "'");
    check_step(step);
    check_lr(lr);
    check_nonneg("lr_decay", lr_decay);
    check_nonneg("weight_decay", weight_decay);
    check_eps(eps);
    const PreHyper pre = FASTOPT_PRE;
    FASTOPT_LEAN;
    Arrays a({{"params", params, true}, {"grads", grads, false}, {"state_sums", state_sums, true, false, true}}, true, lean);
    check_eps_in(eps, a.dtype);
    return run(a, [](const KernelTable& k) { return k.adagrad; },
               AdagradHyper{lr, lr_decay, weight_decay, eps, step, conv}, pre, check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("state_sums"), py::arg("step"), py::arg("lr"), py::arg("lr_decay"),
     py::arg("weight_decay"), py::arg("eps"), FASTOPT_PRE_ARGS, py::arg("convention") = "torch", FASTOPT_LEAN_ARGS);

  m.def("rmsprop_", [](py::object params, py::object grads, py::object square_avgs, py::object grad_avgs,
                       py::object momentum_buffers, double lr, double alpha, double eps, double weight_decay,
                       double momentum, bool centered, FASTOPT_PRE_PARAMS, const std::string& convention, FASTOPT_LEAN_PARAMS) {
    const int conv = convention_code(convention);
    check_lr(lr);
    check_nonneg("alpha", alpha);
    check_eps(eps);
    check_nonneg("weight_decay", weight_decay);
    check_nonneg("momentum", momentum);
    FASTOPT_REQUIRE(!centered || !grad_avgs.is_none(), "grad_avgs are required when centered=True");
    FASTOPT_REQUIRE(momentum == 0.0 || !momentum_buffers.is_none(), "momentum_buffers are required when momentum > 0");
    const PreHyper pre = FASTOPT_PRE;
    std::vector<Role> roles = {{"params", params, true}, {"grads", grads, false}, {"square_avgs", square_avgs, true, false, true}};
    if (centered) roles.push_back({"grad_avgs", grad_avgs, true});
    if (momentum > 0.0) roles.push_back({"momentum_buffers", momentum_buffers, true});
    FASTOPT_LEAN;
    Arrays a(roles, true, lean);
    check_eps_in(eps, a.dtype);
    return run(a, [](const KernelTable& k) { return k.rmsprop; },
               RmspropHyper{lr, alpha, eps, weight_decay, momentum, centered, conv}, pre, check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("grad_avgs"), py::arg("momentum_buffers"),
     py::arg("lr"), py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
     py::arg("centered"), FASTOPT_PRE_ARGS, py::arg("convention") = "torch", FASTOPT_LEAN_ARGS);

  m.def("adadelta_", [](py::object params, py::object grads, py::object square_avgs, py::object acc_deltas,
                        double lr, double rho, double eps, double weight_decay, FASTOPT_PRE_PARAMS,
                        const std::string& convention, FASTOPT_LEAN_PARAMS) {
    const int conv = convention_code(convention);
    check_lr(lr);
    FASTOPT_REQUIRE(rho >= 0.0 && rho <= 1.0, "rho must be in [0, 1], got " + num(rho));
    check_eps(eps);
    check_nonneg("weight_decay", weight_decay);
    const PreHyper pre = FASTOPT_PRE;
    FASTOPT_LEAN;
    Arrays a({{"params", params, true}, {"grads", grads, false}, {"square_avgs", square_avgs, true, false, true},
              {"acc_deltas", acc_deltas, true, false, true}}, true, lean);
    check_eps_in(eps, a.dtype);
    return run(a, [](const KernelTable& k) { return k.adadelta; },
               AdadeltaHyper{lr, rho, eps, weight_decay, conv == kConvKeras}, pre, check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("acc_deltas"), py::arg("lr"),
     py::arg("rho"), py::arg("eps"), py::arg("weight_decay"), FASTOPT_PRE_ARGS, py::arg("convention") = "torch",
     FASTOPT_LEAN_ARGS);

  m.def("adamax_", [](py::object params, py::object grads, py::object exp_avgs, py::object exp_infs, int64_t step,
                      double lr, double beta1, double beta2, double eps, double weight_decay, FASTOPT_PRE_PARAMS,
                      const std::string& convention, FASTOPT_LEAN_PARAMS) {
    const int conv = convention_code(convention);
    check_step(step);
    check_lr(lr);
    check_beta("beta1", beta1);
    check_beta("beta2", beta2);
    check_eps(eps);
    check_nonneg("weight_decay", weight_decay);
    const PreHyper pre = FASTOPT_PRE;
    FASTOPT_LEAN;
    Arrays a({{"params", params, true}, {"grads", grads, false}, {"exp_avgs", exp_avgs, true},
              {"exp_infs", exp_infs, true, false, true}}, true, lean);
    check_eps_in(eps, a.dtype);
    return run(a, [](const KernelTable& k) { return k.adamax; },
               AdamaxHyper{lr, beta1, beta2, eps, weight_decay, step, conv}, pre, check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_infs"), py::arg("step"), py::arg("lr"),
     py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), FASTOPT_PRE_ARGS,
     py::arg("convention") = "torch", FASTOPT_LEAN_ARGS);

  m.def("nadam_", [](py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs, int64_t step,
                     double mu_product, double lr, double beta1, double beta2, double eps, double weight_decay,
                     double momentum_decay, bool decoupled_weight_decay, FASTOPT_PRE_PARAMS, FASTOPT_LEAN_PARAMS) {
    check_step(step);
    check_lr(lr);
    check_beta("beta1", beta1);
    check_beta("beta2", beta2);
    check_eps(eps);
    check_nonneg("weight_decay", weight_decay);
    check_nonneg("momentum_decay", momentum_decay);
    check_mu_product(mu_product);
    const PreHyper pre = FASTOPT_PRE;
    FASTOPT_LEAN;
    Arrays a({{"params", params, true}, {"grads", grads, false}, {"exp_avgs", exp_avgs, true},
              {"exp_avg_sqs", exp_avg_sqs, true, false, true}}, true, lean);
    check_eps_in(eps, a.dtype);
    return run(a, [](const KernelTable& k) { return k.nadam; },
               NadamHyper{lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product, decoupled_weight_decay, step},
               pre, check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("step"),
     py::arg("mu_product"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
     py::arg("weight_decay"), py::arg("momentum_decay"), py::arg("decoupled_weight_decay"), FASTOPT_PRE_ARGS, FASTOPT_LEAN_ARGS);

  m.def("radam_", [](py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs, int64_t step,
                     double lr, double beta1, double beta2, double eps, double weight_decay,
                     bool decoupled_weight_decay, FASTOPT_PRE_PARAMS, double eps_root, const std::string& convention,
                     FASTOPT_LEAN_PARAMS) {
    const int conv = convention_code(convention);
    FASTOPT_REQUIRE(conv != kConvKeras, "RAdam takes convention 'torch' or 'optax' (Keras has no RAdam)");
    FASTOPT_REQUIRE(conv == kConvOptax || eps_root == 0.0, "eps_root is optax's: 0 with convention='torch'");
    check_nonneg("eps_root", eps_root);
    check_step(step);
    check_lr(lr);
    check_beta("beta1", beta1);
    check_beta("beta2", beta2);
    check_eps(eps);
    check_nonneg("weight_decay", weight_decay);
    const PreHyper pre = FASTOPT_PRE;
    FASTOPT_LEAN;
    Arrays a({{"params", params, true}, {"grads", grads, false}, {"exp_avgs", exp_avgs, true},
              {"exp_avg_sqs", exp_avg_sqs, true, false, true}}, true, lean);
    check_eps_in(eps, a.dtype);
    RadamHyper h{lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay, step};
    h.eps_root = eps_root;
    h.convention = conv;
    return run(a, [](const KernelTable& k) { return k.radam; }, h, pre, check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("step"),
     py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
     py::arg("decoupled_weight_decay"), FASTOPT_PRE_ARGS, py::arg("eps_root") = 0.0, py::arg("convention") = "torch",
     FASTOPT_LEAN_ARGS);

  m.def("lion_", [](py::object params, py::object grads, py::object exp_avgs, double lr, double beta1, double beta2,
                    double weight_decay, FASTOPT_PRE_PARAMS, const std::string& convention, FASTOPT_LEAN_PARAMS) {
    convention_code(convention);  // one update in all three (decoupled decay, as Keras and optax)
    check_lr(lr);
    check_beta("beta1", beta1);
    check_beta("beta2", beta2);
    check_nonneg("weight_decay", weight_decay);
    const PreHyper pre = FASTOPT_PRE;
    FASTOPT_LEAN;
    Arrays a({{"params", params, true}, {"grads", grads, false}, {"exp_avgs", exp_avgs, true}}, true, lean);
    return run(a, [](const KernelTable& k) { return k.lion; }, LionHyper{lr, beta1, beta2, weight_decay}, pre,
               check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
     py::arg("weight_decay"), FASTOPT_PRE_ARGS, py::arg("convention") = "torch", FASTOPT_LEAN_ARGS);

  m.def("lamb_", [](py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs, int64_t step,
                    double lr, double beta1, double beta2, double eps, double weight_decay, FASTOPT_PRE_PARAMS,
                    const std::string& convention) {
    const int conv = convention_code(convention);
    check_step(step);
    check_lr(lr);
    check_beta("beta1", beta1);
    check_beta("beta2", beta2);
    check_eps(eps);
    check_nonneg("weight_decay", weight_decay);
    const PreHyper pre = FASTOPT_PRE;
    Arrays a({{"params", params, true}, {"grads", grads, false}, {"exp_avgs", exp_avgs, true},
              {"exp_avg_sqs", exp_avg_sqs, true, false, true}});
    check_eps_in(eps, a.dtype);
    return run(a, [](const KernelTable& k) { return k.lamb; },
               LambHyper{lr, beta1, beta2, eps, weight_decay, step, conv == kConvKeras}, pre, check_finite);
  }, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("step"),
     py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), FASTOPT_PRE_ARGS,
     py::arg("convention") = "torch");

  m.def("stream_", [](py::object params, py::object grads, std::vector<py::object> states, double c, FASTOPT_LEAN_PARAMS) {
    FASTOPT_REQUIRE(states.size() <= 3, "states holds at most 3 lists");
    std::vector<Role> roles = {{"params", params, true}, {"grads", grads, false}};
    static const char* names[3] = {"states[0]", "states[1]", "states[2]"};
    for (size_t k = 0; k < states.size(); ++k) roles.push_back({names[k], states[k], true});
    FASTOPT_LEAN;
    Arrays a(roles, true, lean);
    return run(a, [](const KernelTable& k) { return k.stream; }, StreamHyper{c, int(states.size())}, PreHyper{},
               false);
  }, py::arg("params"), py::arg("grads"), py::arg("states"), py::arg("c") = 0.0, FASTOPT_LEAN_ARGS,
     "Bandwidth probe: params += c * grads and s += c * grads for each state list; the loads and stores of a rule "
     "with len(states) state arrays and none of its math.");

  m.def("transform_", [](py::object grads, py::object params, double scale, std::optional<double> clip_value,
                         double l1, double l2, bool maximize) {
    FASTOPT_REQUIRE(std::isfinite(scale), "scale must be a finite number, got " + num(scale));
    PreHyper pre = make_pre(maximize, 1.0, clip_value, l1, l2);
    pre.scale = scale;
    const bool with_params = !params.is_none();
    FASTOPT_REQUIRE(with_params || (l1 == 0.0 && l2 == 0.0), "params are required for an l1 or l2 penalty gradient");
    Arrays a(with_params ? std::vector<Role>{{"params", params, false}, {"grads", grads, true}}
                         : std::vector<Role>{{"grads", grads, true}});
    if (a.count == 0) return;
    Batch b = a.batch();
    if (!with_params) {
      b.slot[1] = b.slot[0];
      b.slot[0] = nullptr;
    }
    py::gil_scoped_release nogil;
    kernels().transform[a.dtype](b, pre, with_params, num_threads());
  }, py::arg("grads"), py::arg("params") = py::none(), py::arg("scale") = 1.0, py::arg("clip_value") = py::none(),
     py::arg("l1") = 0.0, py::arg("l2") = 0.0, py::arg("maximize") = false,
     "grads <- scale * grads, clamped to [-clip_value, clip_value], negated if maximize, plus l1 * sign(params) "
     "+ 2 * l2 * params; in place.");

  m.def("global_norm", [](py::object arrays, double norm_type) {
    const auto [kind, p] = norm_kind(norm_type);
    Arrays a({{"arrays", arrays, false}}, true);
    double total = 0.0;
    for (double x : per_array(a, kind, p)) total = kind == Reduce::MaxAbs ? (x > total || x != x ? x : total) : total + x;
    return finish_norm(kind, p, total);
  }, py::arg("arrays"), py::arg("norm_type") = 2.0,
     "The norm of all arrays taken together (as one concatenated vector), accumulated in float64.");

  m.def("array_norms", [](py::object arrays, double norm_type) {
    const auto [kind, p] = norm_kind(norm_type);
    Arrays a({{"arrays", arrays, false}}, true);
    std::vector<double> out = per_array(a, kind, p);
    for (double& x : out) x = finish_norm(kind, p, x);
    return py::array_t<double>(py::ssize_t(out.size()), out.data());
  }, py::arg("arrays"), py::arg("norm_type") = 2.0, "The norm of each array, accumulated in float64.");

  m.def("penalty", [](py::object params, double l1, double l2) {
    check_nonneg("l1", l1);
    check_nonneg("l2", l2);
    Arrays a({{"params", params, false}}, true);
    double total = 0.0;
    if (l1 != 0.0)
      for (double x : per_array(a, Reduce::SumAbs, 1.0)) total += l1 * x;
    if (l2 != 0.0)
      for (double x : per_array(a, Reduce::SumSq, 2.0)) total += l2 * x;
    return total;
  }, py::arg("params"), py::arg("l1") = 0.0, py::arg("l2") = 0.0,
     "l1 * sum(|p|) + l2 * sum(p**2) over all arrays, accumulated in float64.");

  m.def("all_finite", [](py::object arrays) {
    Arrays a({{"arrays", arrays, false}}, true);
    for (double x : per_array(a, Reduce::NonFinite, 0.0))
      if (x != 0.0) return false;
    return true;
  }, py::arg("arrays"), "True when no array holds a NaN or an infinity.");

  m.def("bias_act_", [](py::object z, py::object b, const std::string& act) {
    const int code = activation_code(act);
    const auto* za = layer_array(z, "z", 2, -1, true);
    const auto* ba = layer_array(b, "b", 1, -1, false);
    same_dtype(za, ba, "z", "b");
    if (ba->dimensions[0] != za->dimensions[1])
      throw py::value_error("b has " + std::to_string(ba->dimensions[0]) + " elements but z has " +
                            std::to_string(za->dimensions[1]) + " columns");
    py::gil_scoped_release nogil;
    kernels().bias_act[dtype_of(za)](za->data, ba->data, za->dimensions[0], za->dimensions[1], code);
  }, py::arg("z"), py::arg("b"), py::arg("act"), "z <- act(z + b) in place, b added to every row.");

  m.def("act_backward_", [](py::object d, py::object a, const std::string& act) {
    const int code = activation_code(act);
    const auto* da = layer_array(d, "d", 2, -1, true);
    const auto* aa = layer_array(a, "a", 2, -1, false);
    same_dtype(da, aa, "d", "a");
    if (da->dimensions[0] != aa->dimensions[0] || da->dimensions[1] != aa->dimensions[1])
      throw py::value_error("d and a must have one shape");
    if (da->data == aa->data) throw py::value_error("d and a must be separate arrays");
    py::gil_scoped_release nogil;
    kernels().act_backward[dtype_of(da)](da->data, aa->data, element_count(da), code);
  }, py::arg("d"), py::arg("a"), py::arg("act"),
     "d <- d * act'(z) in place, from the activation's output a = act(z).");

  m.def("softmax_xent_", [](py::object z, py::object y, py::object dz, double scale) {
    const auto* za = layer_array(z, "z", 2, -1, false);
    const auto* ya = layer_array(y, "y", 1, 0, false);
    const auto* dza = layer_array(dz, "dz", 2, -1, true);
    same_dtype(za, dza, "z", "dz");
    const int64_t rows = za->dimensions[0], cols = za->dimensions[1];
    if (dza->dimensions[0] != rows || dza->dimensions[1] != cols) throw py::value_error("dz must have z's shape");
    if (ya->dimensions[0] != rows) throw py::value_error("y must have one label per row of z");
    if (cols < 1) throw py::value_error("z must have at least one column");
    if (dza->data == za->data) throw py::value_error("dz and z must be separate arrays");
    const int64_t* labels = static_cast<const int64_t*>(static_cast<void*>(ya->data));
    for (int64_t r = 0; r < rows; ++r)
      if (labels[r] < 0 || labels[r] >= cols)
        throw py::value_error("y[" + std::to_string(r) + "] = " + std::to_string(labels[r]) + " is not a class in [0, " +
                              std::to_string(cols) + ")");
    double out[2] = {0.0, 0.0};
    {
      py::gil_scoped_release nogil;
      kernels().softmax_xent[dtype_of(za)](za->data, labels, dza->data, rows, cols, scale, out);
    }
    return py::make_tuple(out[0], out[1]);
  }, py::arg("z"), py::arg("y"), py::arg("dz"), py::arg("scale"),
     "Softmax cross-entropy on logits z and int64 labels y: dz <- (softmax(z) - onehot(y)) * scale; returns "
     "(sum of the rows' losses, count of rows whose first argmax is y).");

  m.def("take_rows_", [](py::object x, py::object index, py::object out) {
    const auto* xa = layer_array(x, "x", 2, -1, false);
    const auto* ia = layer_array(index, "index", 1, 0, false);
    const auto* oa = layer_array(out, "out", 2, -1, true);
    same_dtype(xa, oa, "x", "out");
    const int64_t n = xa->dimensions[0], cols = xa->dimensions[1], rows = ia->dimensions[0];
    if (oa->dimensions[0] != rows || oa->dimensions[1] != cols)
      throw py::value_error("out must have shape (" + std::to_string(rows) + ", " + std::to_string(cols) + "): one row per index");
    const int64_t* idx = static_cast<const int64_t*>(static_cast<void*>(ia->data));
    for (int64_t r = 0; r < rows; ++r)
      if (idx[r] < 0 || idx[r] >= n)
        throw py::value_error("index[" + std::to_string(r) + "] = " + std::to_string(idx[r]) + " is not a row of x (" +
                              std::to_string(n) + " rows)");
    const char* xb = xa->data;
    char* ob = oa->data;
    const int64_t row_bytes = cols * (dtype_of(xa) == F32 ? 4 : 8);
    if (ob < xb + n * row_bytes && xb < ob + rows * row_bytes) throw py::value_error("out must not overlap x");
    py::gil_scoped_release nogil;
    take_rows(xb, idx, ob, rows, row_bytes);
  }, py::arg("x"), py::arg("index"), py::arg("out"),
     "out[r] = x[index[r]] for every r (numpy.take(x, index, axis=0, out=out)), on fastopt's threads when large.");

  m.def("quantize_8bit_", [](py::object x, py::object codes, py::object absmax, bool nonneg) {
    const auto* xa = layer_array(x, "x", 1, -1, false);
    if (dtype_of(xa) != F32) throw py::type_error("x must be float32");
    const auto* ca = layer_array(codes, "codes", 1, 1, true);
    const auto* aa = layer_array(absmax, "absmax", 1, -1, true);
    if (dtype_of(aa) != F32) throw py::type_error("absmax must be float32");
    const int64_t n = xa->dimensions[0];
    if (ca->dimensions[0] != n) throw py::value_error("codes must have x's size");
    if (aa->dimensions[0] != (n + kQBlock - 1) / kQBlock) throw py::value_error("absmax must have one element per block of 256");
    py::gil_scoped_release nogil;
    kernels().quantize_8bit(reinterpret_cast<const float*>(xa->data), n, nonneg, reinterpret_cast<uint8_t*>(ca->data),
                            reinterpret_cast<float*>(aa->data));
  }, py::arg("x"), py::arg("codes"), py::arg("absmax"), py::arg("nonneg"),
     "codes, absmax <- the 8-bit blockwise code of the float32 vector x (see fastopt.quantize_8bit).");
  m.def("dequantize_8bit_", [](py::object codes, py::object absmax, py::object out, bool nonneg) {
    const auto* ca = layer_array(codes, "codes", 1, 1, false);
    const auto* aa = layer_array(absmax, "absmax", 1, -1, false);
    const auto* oa = layer_array(out, "out", 1, -1, true);
    if (dtype_of(aa) != F32 || dtype_of(oa) != F32) throw py::type_error("absmax and out must be float32");
    const int64_t n = ca->dimensions[0];
    if (oa->dimensions[0] != n) throw py::value_error("out must have codes' size");
    if (aa->dimensions[0] != (n + kQBlock - 1) / kQBlock) throw py::value_error("absmax must have one element per block of 256");
    py::gil_scoped_release nogil;
    kernels().dequantize_8bit(reinterpret_cast<const uint8_t*>(ca->data), reinterpret_cast<const float*>(aa->data), n, nonneg,
                              reinterpret_cast<float*>(oa->data));
  }, py::arg("codes"), py::arg("absmax"), py::arg("out"), py::arg("nonneg"),
     "out <- the float32 values of an 8-bit blockwise code.");
  m.attr("QBLOCK") = kQBlock;
  py::class_<Prepared>(m, "_Prepared",
                       "An update call kept by _prepare, run again on a torch group's new gradients, step and lr.")
      .def("expect_torch", &Prepared::expect_torch, py::arg("expected"), py::arg("ptrs"), py::arg("sizes"),
           py::arg("dtype"), py::arg("strided"),
           "What run() checks of the group: its parameters, their addresses, gradient sizes (-1: none), dtype.")
      .def("run", &Prepared::run, py::arg("params"), py::arg("step"), py::arg("lr"),
           py::arg("mu_product") = py::none(),
           "The step on the group's gradients: True, False (check_finite met a NaN or Inf) or None (the group "
           "changed: nothing done).  mu_product: NAdam's, required by its update and refused by others.");
  m.def("_prepare", [](py::function fn, py::args args, py::kwargs kwargs) {
    py::object kept = py::cast(new Prepared(), py::return_value_policy::take_ownership);
    struct Reset {
      ~Reset() { g_capture = nullptr; }
    } reset;
    g_capture = kept.cast<Prepared*>();
    py::object result = fn(*args, **kwargs);
    g_capture = nullptr;
    if (!kept.cast<Prepared*>()->taken()) throw py::value_error("_prepare: the function ran no update");
    return py::make_tuple(result, kept);
  }, "fn(*args, **kwargs), keeping the update call it makes: (its result, a _Prepared).");
  m.def("_torch_grads", &torch_grads, py::arg("params"), py::arg("expected"), py::arg("ptrs"), py::arg("sizes"),
        py::arg("dtype"), py::arg("strided"), py::arg("np_dtype"),
        "fastopt.torch's prepared step: the group's gradients as 1-D NumPy views, or None where the group is not as "
        "its plan found it.");

  m.def("get_num_threads", &num_threads);
  m.def("set_num_threads", [](int64_t n) {
    FASTOPT_REQUIRE(n >= 0 && n <= kMaxThreads, "n must be in [1, " + std::to_string(kMaxThreads) + "] (0: back to the default), got " +
                                                    std::to_string(n));
    set_num_threads(int(n));
  }, py::arg("n"));
  m.def("_set_thread_omp_team", &set_thread_omp_team, py::arg("on"),
        "This thread's calls on the process's OpenMP team (True; where there is one) or on fastopt's own (False, "
        "the default); returns the previous setting.");
  m.def("_omp_team_available", &omp_team_available,
        "Whether an OpenMP runtime (libgomp's GOMP_parallel) is loaded in this process, outside a forked child.");
  m.def("_set_thread_parallel_min", [](int64_t n) {
    if (n < 0) throw py::value_error("n must be >= 0 (0: the default), got " + std::to_string(n));
    return set_thread_parallel_min(n);
  }, py::arg("n"), "This thread's fewest elements for a call to use helper threads (0: the default); returns the previous value.");
  m.def("_set_direct_lean", &set_direct_lean, py::arg("on"),
        "8-bit state and stochastic rounding: the direct paths (True, the default) or the buffered one (the "
        "same bits); returns the previous setting.");
  m.def("_alias_walk", &alias_walk,
        "Whether elementwise steps walk a range down where its arrays would stall on 4K aliasing walking up "
        "(by default on Intel CPUs only; FASTOPT_ALIAS_WALK=1 or 0 overrides).");
  m.def("_set_alias_walk", &set_alias_walk, py::arg("on"),
        "Turn the walk down against 4K aliasing on or off; returns the previous setting (a test hook).");
  m.def("_down_walks", &down_walks,
        "Ranges an elementwise step walked from the end, its arrays placed so that walking up would stall "
        "on 4K aliasing, since the module loaded (a test hook).");
  m.def("_q8_direct_calls", &q8_direct_calls,
        "Kernel calls that took the 8-bit direct path since the module loaded (a test hook).");
  m.def("_thread_setting", &thread_setting, "set_num_threads' value, 0 when unset (the default applies).");
  m.def("isa", []() { return std::string(kernels().name); }, "The instruction set in use.");
  m.def("compiled_isas", &compiled_isas);
  m.def("supported_isas", &supported_isas);
  m.def("_set_isa", [](const std::string& name) {
    try {
      set_isa(name);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  }, py::arg("name"));
  m.def("pool_info", []() {
    py::dict d;
    d["workers"] = pool_workers();
    d["spin_us"] = pool_spin_us();
    d["max_threads"] = kMaxThreads;
    return d;
  }, "The thread team: workers started, microseconds a worker spins before it sleeps, the thread cap.");
  m.attr("CHUNK") = 1 << 14;
#ifdef FASTOPT_VERSION
  m.attr("__version__") = FASTOPT_VERSION;
#endif
}
