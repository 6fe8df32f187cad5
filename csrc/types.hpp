// Plain data shared by the bindings, the dispatcher and the kernels: no math, no loops.
#pragma once
#include <cstdint>

namespace fastopt {

// Element types of the arrays.  The math runs in float32 or float64; bfloat16 and float16
// arrays (parameters, gradients, state) and 8-bit blockwise state (Q8: uint8 codes and one float32
// absmax per block of kQBlock elements) are widened on load and narrowed on store (lean.hpp).
enum DType : int { F32 = 0, F64 = 1, BF16 = 2, F16 = 3, Q8 = 4 };
constexpr int64_t kQBlock = 256;

// How a lean step stores what it reads and writes (see lean.hpp); null in a Batch: every array
// is of the call's one dtype.
struct Lean {
  int param = F32, grad = F32, state = F32;  // F32, BF16 or F16 (params, grads); F32, BF16 or Q8 (state)
  int out = -1;                              // BF16 or F16: params are a float32 master copy, rounded into slot 8
  bool kahan = false;                        // bfloat16 params with their rounding error kept in slot 8 (bfloat16)
  bool nonneg[3] = {false, false, false};    // Q8: state k holds values >= 0 (coded as sqrt)
  bool stochastic = false;                   // bfloat16 stores round stochastically
  uint32_t seed = 0;
  int64_t step = 0;                          // keys the random bits with the seed
};

// A list of same-sized arrays in up to nine roles: slot 0 parameters, 1 gradients,
// 2..4 optimizer state in the order the rule names them, 5..7 the absmax of 8-bit state 2..4,
// 8 the low-precision copy of float32 master parameters (or, with Lean::kahan, the bfloat16
// parameters' compensation: what rounding them last dropped).  Array i of every slot has
// sizes[i] elements (absmax: ceil(sizes[i] / kQBlock)).  Unused slots are null.
struct Batch {
  int64_t count = 0;
  const int64_t* sizes = nullptr;
  void* const* slot[9] = {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
  const Lean* lean = nullptr;
};

// Gradient pre-processing fused into every update: g <- scale * g, clamp to [-clip, clip],
// negate when maximizing, then add the penalty gradient l1 * sign(p) + 2 * l2 * p.
struct PreHyper {
  double scale = 1.0;
  double clip = 0.0;  // <= 0: no clamp
  double l1 = 0.0;
  double l2 = 0.0;
  bool maximize = false;
  bool active() const { return scale != 1.0 || clip > 0.0 || l1 != 0.0 || l2 != 0.0 || maximize; }
};

// convention: whose formula a rule follows (Adam: where epsilon and the bias corrections go;
// SGD, RMSprop, Adagrad: kConvKeras is Keras' form, see rules.hpp).
enum Convention : int { kConvTorch = 0, kConvKeras = 1, kConvOptax = 2 };

struct GdHyper { double lr; };
struct SgdHyper { double lr, momentum, dampening, weight_decay; bool nesterov; int64_t step; int convention = 0; };
struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, decoupled;
  int64_t step;
  double eps_root = 0.0;        // added inside the square root
  bool bias_correction = true;  // false: the textbook form without 1 - beta^t
  int convention = kConvTorch;
  bool nesterov = false;        // optax's nadam: the Nesterov form of the first moment (convention optax)
};
struct AdagradHyper { double lr, lr_decay, weight_decay, eps; int64_t step; int convention = 0; };
struct RmspropHyper { double lr, alpha, eps, weight_decay, momentum; bool centered; int convention = 0; };
struct AdadeltaHyper { double lr, rho, eps, weight_decay; bool decoupled = false; };
struct AdamaxHyper { double lr, beta1, beta2, eps, weight_decay; int64_t step; int convention = 0; };
struct NadamHyper { double lr, beta1, beta2, eps, weight_decay, momentum_decay, mu_product; bool decoupled; int64_t step; };
struct RadamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;
  int64_t step;
  double eps_root = 0.0;
  int convention = kConvTorch;  // optax: eps added to the corrected root, rectified from rho_t >= 5
};
struct LionHyper { double lr, beta1, beta2, weight_decay; };
struct LambHyper { double lr, beta1, beta2, eps, weight_decay; int64_t step; bool decoupled = false; };
// The bandwidth probe: p += c * g and s_k += c * g for nstate state arrays.
struct StreamHyper { double c; int nstate; };

// Activations of the fused layer passes (layers.hpp).
enum Activation : int { kActIdentity = 0, kActRelu = 1, kActTanh = 2, kActSigmoid = 3 };

// Reductions over one slot of a batch.
enum class Reduce : int { SumAbs = 0, SumSq = 1, MaxAbs = 2, SumPow = 3, NonFinite = 4 };

}  // namespace fastopt
