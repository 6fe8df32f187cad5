// Each update rule as pure per-element math.  A rule is built once per call from its
// hyperparameters (per-step constants are folded here, in double, then rounded to T) and
// applied to one element at a time: no loops, no intrinsics, no data-dependent branches
// other than selects.  The order of operations follows torch.optim's single-tensor code.
//
// Included only by kernels.cpp, inside the namespace of the instruction set being compiled, so
// that no inline function is shared (and merged by the linker) between targets.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "types.hpp"

#ifndef FASTOPT_ISA_NS
#error "rules.hpp is compiled per instruction set: define FASTOPT_ISA_NS"
#endif

// The per-element functions must inline into the loops for those to vectorize.
#define FASTOPT_ELEMENT inline __attribute__((always_inline))

namespace fastopt {
namespace FASTOPT_ISA_NS {

// A flag fixed for the whole call (weight decay on, first step, ...) selects between two
// results bit by bit: gcc does not vectorize every mix of a flag ?: with comparison selects.
template <class T> struct Bits;
template <> struct Bits<float> { using U = uint32_t; };
template <> struct Bits<double> { using U = uint64_t; };
template <class T> using Mask = typename Bits<T>::U;
template <class T> inline Mask<T> mask_of(bool b) { return b ? ~Mask<T>(0) : Mask<T>(0); }
template <class T> FASTOPT_ELEMENT T pick(Mask<T> mask, T a, T b) {
  Mask<T> ua, ub;
  std::memcpy(&ua, &a, sizeof(T));
  std::memcpy(&ub, &b, sizeof(T));
  ua = (ua & mask) | (ub & ~mask);
  T out;
  std::memcpy(&out, &ua, sizeof(T));
  return out;
}

// Selects one at a time: gcc does not if-convert a nested ?: in a vector loop.
template <class T> FASTOPT_ELEMENT T sign_of(T x) {
  const T pos = x > T(0) ? T(1) : T(0);
  const T neg = x < T(0) ? T(1) : T(0);
  return pos - neg;
}

// max that propagates NaN from either side, as torch.maximum does.
template <class T> FASTOPT_ELEMENT T nan_max(T a, T b) { return ((a > b) | (a != a)) ? a : b; }

// torch's lerp: start + w * (end - start) for |w| < 0.5, else end - (end - start) * (1 - w).
// Both forms are base + c * (end - start): base = start, c = w; or base = end, c = -(1 - w) (the
// negation is exact), so one select of the base replaces computing both forms.
template <class T> struct Lerp {
  T c;
  Mask<T> small;
  explicit Lerp(double weight)
      : c(std::fabs(weight) < 0.5 ? T(weight) : -(T(1) - T(weight))), small(mask_of<T>(std::fabs(weight) < 0.5)) {}
  FASTOPT_ELEMENT T operator()(T start, T end) const { return pick(small, start, end) + c * (end - start); }
};

// Clamping to +-infinity and multiplying by +1 change nothing (NaN stays NaN), so clip and
// maximize need no flag; the penalty is a template argument of the loop: gcc does not
// vectorize a flag select whose operands come from other selects.
template <class T> struct Pre {
  T scale, lo, hi, sign, l1, l2x2;
  bool penalty;
  explicit Pre(const PreHyper& h)
      : scale(T(h.scale)), lo(h.clip > 0.0 ? T(-h.clip) : -T(INFINITY)), hi(h.clip > 0.0 ? T(h.clip) : T(INFINITY)),
        sign(h.maximize ? T(-1) : T(1)), l1(T(h.l1)), l2x2(T(2.0 * h.l2)), penalty(h.l1 != 0.0 || h.l2 != 0.0) {}
  template <bool PENALTY>
  FASTOPT_ELEMENT T apply(T g, T p) const {
    g = g * scale;
    g = g < lo ? lo : g;
    g = g > hi ? hi : g;
    g = g * sign;
    if constexpr (PENALTY) g = g + (l1 * sign_of(p) + l2x2 * p);
    return g;
  }
};

// How a loop pre-processes the gradient.
enum PreMode : int { kNoPre = 0, kPre = 1, kPrePenalty = 2 };
inline PreMode pre_mode(const PreHyper& h) {
  return !h.active() ? kNoPre : ((h.l1 != 0.0 || h.l2 != 0.0) ? kPrePenalty : kPre);
}

// Every rule: nstate state arrays; operator()(p, g, s0, s1, s2) with unused slots ignored;
// nonneg[k]: whether state k holds values >= 0 (its 8-bit code is the unsigned one), as the
// bindings' roles fix it (lean.hpp compiles the 8-bit direct path for that combination only).

template <class T> struct GdRule {
  static constexpr int nstate = 0;
  T neg_lr;
  explicit GdRule(const GdHyper& h) : neg_lr(T(-h.lr)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T&, T&, T&) const { p = p + neg_lr * g; }
};

template <class T, bool MOMENTUM> struct SgdRule {
  static constexpr int nstate = MOMENTUM ? 1 : 0;
  static constexpr bool nonneg[3] = {false, false, false};
  T neg_lr, wd, mom, one_minus_damp;
  Mask<T> has_wd, nesterov, first;
  explicit SgdRule(const SgdHyper& h)
      : neg_lr(T(-h.lr)), wd(T(h.weight_decay)), mom(T(h.momentum)), one_minus_damp(T(1.0 - h.dampening)),
        has_wd(mask_of<T>(h.weight_decay != 0.0)), nesterov(mask_of<T>(h.nesterov)), first(mask_of<T>(h.step <= 1)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& buf, T&, T&) const {
    g = pick(has_wd, g + wd * p, g);
    if constexpr (MOMENTUM) {
      T b = pick(first, g, buf * mom + one_minus_damp * g);
      buf = b;
      g = pick(nesterov, g + mom * b, b);
    }
    p = p + neg_lr * g;
  }
};

// Keras' SGD: weight decay decoupled (p -= lr wd p), a velocity that holds the rate,
// v = mu v - lr g, then p += v (nesterov: p += mu v - lr g); no momentum: p -= lr g.
template <class T, bool MOMENTUM> struct KerasSgdRule {
  static constexpr int nstate = MOMENTUM ? 1 : 0;
  static constexpr bool nonneg[3] = {false, false, false};
  T lr, decay, mom;
  Mask<T> has_wd, nesterov;
  explicit KerasSgdRule(const SgdHyper& h)
      : lr(T(h.lr)), decay(T(1.0 - h.lr * h.weight_decay)), mom(T(h.momentum)),
        has_wd(mask_of<T>(h.weight_decay != 0.0)), nesterov(mask_of<T>(h.nesterov)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& v, T&, T&) const {
    p = pick(has_wd, p * decay, p);
    if constexpr (MOMENTUM) {
      v = -g * lr + v * mom;
      p = p + pick(nesterov, -g * lr + v * mom, v);
    } else {
      p = p - g * lr;
    }
  }
};

// Keras' (and optax's) RMSprop: epsilon inside the root, the rate inside the momentum buffer:
// inc = lr g / sqrt(sq - avg^2 + eps) (centered) or lr g / sqrt(sq + eps); p -= buf = mu buf + inc.
template <class T, bool CENTERED, bool MOMENTUM> struct KerasRmspropRule {
  static constexpr int nstate = 1 + int(CENTERED) + int(MOMENTUM);
  static constexpr bool nonneg[3] = {true, false, false};
  T lr, rho, one_minus_rho, eps, decay, mom;
  Mask<T> has_wd;
  explicit KerasRmspropRule(const RmspropHyper& h)
      : lr(T(h.lr)), rho(T(h.alpha)), one_minus_rho(T(1.0 - h.alpha)), eps(T(h.eps)),
        decay(T(1.0 - h.lr * h.weight_decay)), mom(T(h.momentum)), has_wd(mask_of<T>(h.weight_decay != 0.0)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& sq, T& s1, T& s2) const {
    p = pick(has_wd, p * decay, p);
    sq = rho * sq + one_minus_rho * (g * g);
    T denom;
    if constexpr (CENTERED) {
      s1 = rho * s1 + one_minus_rho * g;
      denom = sq - s1 * s1 + eps;
    } else {
      denom = sq + eps;
    }
    const T inc = lr * g / std::sqrt(denom);
    if constexpr (MOMENTUM) {
      T& buf = CENTERED ? s2 : s1;
      buf = mom * buf + inc;
      p = p - buf;
    } else {
      p = p - inc;
    }
  }
};

// Keras' (and optax's) Adagrad: p -= lr g / sqrt(sum + eps), epsilon inside the root.
template <class T> struct KerasAdagradRule {
  static constexpr int nstate = 1;
  static constexpr bool nonneg[3] = {true, false, false};
  T lr, eps, decay;
  Mask<T> has_wd;
  explicit KerasAdagradRule(const AdagradHyper& h)
      : lr(T(h.lr)), eps(T(h.eps)), decay(T(1.0 - h.lr * h.weight_decay)), has_wd(mask_of<T>(h.weight_decay != 0.0)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& sum, T&, T&) const {
    p = pick(has_wd, p * decay, p);
    sum = sum + g * g;
    p = p - lr * g / std::sqrt(sum + eps);
  }
};

// Adam and AdamW (decoupled weight decay), with optional AMSGrad.
// Adam in three placements of epsilon and the bias corrections (bc1 = 1 - beta1^t, bc2 = 1 - beta2^t):
//   torch:  p -= lr / bc1 * m / (sqrt(v + eps_root) / sqrt(bc2) + eps)
//   keras:  p -= lr sqrt(bc2) / bc1 * m / (sqrt(v + eps_root) + eps)          (step size folded)
//   optax:  p -= lr / bc1 * m / (sqrt(v / bc2 + eps_root) + eps)               (SCALED_V)
// bias_correction=false sets bc1 = bc2 = 1.  eps_root = 0 and the divisions by 1 leave torch's
// arithmetic as it was, bit for bit.
// NESTEROV (optax's nadam, with SCALED_V): the step's numerator is b1 m / (1 - b1^(t+1)) +
// (1 - b1) g / (1 - b1^t) instead of m / (1 - b1^t).
// Which weight decay a rule's loop applies: whichever the call asks for, selected element by
// element (kWdEither); none (kWdNone, the default of Adam, NAdam and RAdam); or decoupled only
// (kWdDecoupled, AdamW's).  The same bits as kWdEither for the calls they serve, without the
// selects, which cost Adam's loop a sixth of its time where the arrays fit in cache (NAdam's and
// RAdam's 5-12%).  The other rules with a square root and a division gained nothing measurable
// from the same change: their divider sets the pace.  Adam's two also serve only calls with
// eps_root = 0 and beta1 > 0.5 (every default), and so drop the addition of eps_root (v >= 0, so
// v + 0 is v but for a zero's sign, which the square root keeps and the addition of eps drops)
// and the lerp's select of its base (m, for a weight 1 - beta1 under 0.5): the same bits.
enum WeightDecay : int { kWdEither = 0, kWdNone = 1, kWdDecoupled = 2 };

template <class T, bool AMSGRAD, bool SCALED_V, bool NESTEROV = false, int WD = kWdEither> struct AdamRule {
  static constexpr int nstate = AMSGRAD ? 3 : 2;
  static constexpr bool nonneg[3] = {false, true, true};
  Lerp<T> lerp;
  T wd, decay, beta2, one_minus_beta2, inv_bc2_sqrt, inv_bc2, eps, eps_root, neg_step_size, c_m, c_g;
  Mask<T> l2, decoupled;
  static double bc(double beta, const AdamHyper& h) {
    return h.bias_correction ? 1.0 - std::pow(beta, double(h.step)) : 1.0;
  }
  explicit AdamRule(const AdamHyper& h)
      : lerp(1.0 - h.beta1), wd(T(h.weight_decay)), decay(T(1.0 - h.lr * h.weight_decay)), beta2(T(h.beta2)),
        one_minus_beta2(T(1.0 - h.beta2)),
        // the bias corrections of v multiply by their reciprocals: one division per element
        inv_bc2_sqrt(T(h.convention == kConvTorch ? 1.0 / std::sqrt(bc(h.beta2, h)) : 1.0)), inv_bc2(T(1.0 / bc(h.beta2, h))),
        eps(T(h.eps)), eps_root(T(h.eps_root)),
        neg_step_size(T(NESTEROV ? -h.lr
                        : h.convention == kConvKeras ? -(h.lr * std::sqrt(bc(h.beta2, h)) / bc(h.beta1, h))
                                                     : -(h.lr / bc(h.beta1, h)))),
        c_m(T(h.beta1 / (h.bias_correction ? 1.0 - std::pow(h.beta1, double(h.step + 1)) : 1.0))),
        c_g(T((1.0 - h.beta1) / bc(h.beta1, h))),
        l2(mask_of<T>(h.weight_decay != 0.0 && !h.decoupled)), decoupled(mask_of<T>(h.weight_decay != 0.0 && h.decoupled)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& m, T& v, T& vmax) const {
    if constexpr (WD == kWdEither) {
      p = pick(decoupled, p * decay, p);
      g = pick(l2, g + wd * p, g);
    } else if constexpr (WD == kWdDecoupled) {
      p = p * decay;
    }
    if constexpr (WD == kWdEither) m = lerp(m, g);
    else m = m + lerp.c * (g - m);  // Lerp's form for |weight| < 0.5
    v = v * beta2 + one_minus_beta2 * g * g;
    T vv = v;
    if constexpr (SCALED_V) vv = vv * inv_bc2;  // optax: the maximum of the corrected moments
    if constexpr (AMSGRAD) {
      vmax = nan_max(vmax, vv);
      vv = vmax;
    }
    if constexpr (WD == kWdEither) vv = vv + eps_root;
    T denom = std::sqrt(vv) * inv_bc2_sqrt + eps;
    if constexpr (NESTEROV) p = p + neg_step_size * ((c_m * m + c_g * g) / denom);
    else p = p + neg_step_size * (m / denom);
  }
};

template <class T> struct AdagradRule {
  static constexpr int nstate = 1;
  static constexpr bool nonneg[3] = {true, false, false};
  T neg_clr, wd, eps;
  Mask<T> has_wd;
  explicit AdagradRule(const AdagradHyper& h)
      : neg_clr(T(-(h.lr / (1.0 + double(h.step - 1) * h.lr_decay)))), wd(T(h.weight_decay)), eps(T(h.eps)),
        has_wd(mask_of<T>(h.weight_decay != 0.0)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& sum, T&, T&) const {
    g = pick(has_wd, g + wd * p, g);
    sum = sum + g * g;
    T std_ = std::sqrt(sum) + eps;
    p = p + neg_clr * (g / std_);
  }
};

// State order: square_avg, then grad_avg if CENTERED, then momentum_buffer if MOMENTUM.
template <class T, bool CENTERED, bool MOMENTUM> struct RmspropRule {
  static constexpr int nstate = 1 + int(CENTERED) + int(MOMENTUM);
  static constexpr bool nonneg[3] = {true, false, false};
  Lerp<T> lerp;
  T neg_lr, alpha, one_minus_alpha, eps, wd, mom;
  Mask<T> has_wd;
  explicit RmspropRule(const RmspropHyper& h)
      : lerp(1.0 - h.alpha), neg_lr(T(-h.lr)), alpha(T(h.alpha)), one_minus_alpha(T(1.0 - h.alpha)), eps(T(h.eps)),
        wd(T(h.weight_decay)), mom(T(h.momentum)), has_wd(mask_of<T>(h.weight_decay != 0.0)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& sq, T& s1, T& s2) const {
    g = pick(has_wd, g + wd * p, g);
    sq = sq * alpha + one_minus_alpha * g * g;
    T avg;
    if constexpr (CENTERED) {
      s1 = lerp(s1, g);
      // an infinite sq (huge gradients) stays infinite, as torch's fused multiply-add keeps it,
      // instead of inf - inf = NaN; finite values are untouched
      const T var = sq + T(-1) * s1 * s1;
      avg = std::sqrt(sq == T(INFINITY) ? sq : var);
    } else {
      avg = std::sqrt(sq);
    }
    avg = avg + eps;
    if constexpr (MOMENTUM) {
      T& buf = CENTERED ? s2 : s1;
      buf = buf * mom + g / avg;
      p = p + neg_lr * buf;
    } else {
      p = p + neg_lr * (g / avg);
    }
  }
};

// decoupled (Keras): p <- p (1 - lr wd) first instead of g <- g + wd p.
template <class T> struct AdadeltaRule {
  static constexpr int nstate = 2;
  static constexpr bool nonneg[3] = {true, true, false};
  T neg_lr, rho, one_minus_rho, eps, wd, decay;
  Mask<T> has_wd, decoupled;
  explicit AdadeltaRule(const AdadeltaHyper& h)
      : neg_lr(T(-h.lr)), rho(T(h.rho)), one_minus_rho(T(1.0 - h.rho)), eps(T(h.eps)), wd(T(h.weight_decay)),
        decay(T(1.0 - h.lr * h.weight_decay)), has_wd(mask_of<T>(h.weight_decay != 0.0 && !h.decoupled)),
        decoupled(mask_of<T>(h.weight_decay != 0.0 && h.decoupled)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& sq, T& acc, T&) const {
    p = pick(decoupled, p * decay, p);
    g = pick(has_wd, g + wd * p, g);
    sq = sq * rho + one_minus_rho * g * g;
    T std_ = std::sqrt(sq + eps);
    T delta = std::sqrt(acc + eps);
    delta = delta / std_ * g;
    acc = acc * rho + one_minus_rho * delta * delta;
    p = p + neg_lr * delta;
  }
};

template <class T> struct AdamaxRule {
  static constexpr int nstate = 2;
  static constexpr bool nonneg[3] = {false, true, false};
  Lerp<T> lerp;
  T wd, beta2, eps, neg_clr;
  Mask<T> has_wd;
  explicit AdamaxRule(const AdamaxHyper& h)
      : lerp(1.0 - h.beta1), wd(T(h.weight_decay)), beta2(T(h.beta2)), eps(T(h.eps)),
        neg_clr(T(-(h.lr / (1.0 - std::pow(h.beta1, double(h.step)))))), has_wd(mask_of<T>(h.weight_decay != 0.0)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& m, T& u, T&) const {
    g = pick(has_wd, g + wd * p, g);
    m = lerp(m, g);
    u = nan_max(u * beta2, std::fabs(g) + eps);
    p = p + neg_clr * (m / u);
  }
};

// Keras' Adamax: epsilon added to u at the update, not inside the max; decoupled weight decay:
// m += (g - m)(1 - b1); u = max(b2 u, |g|); p -= lr m / (bc1 (u + eps)).
template <class T> struct KerasAdamaxRule {
  static constexpr int nstate = 2;
  static constexpr bool nonneg[3] = {false, true, false};
  T one_minus_beta1, beta2, eps, lr, bc1, decay;
  Mask<T> has_wd;
  explicit KerasAdamaxRule(const AdamaxHyper& h)
      : one_minus_beta1(T(1.0 - h.beta1)), beta2(T(h.beta2)), eps(T(h.eps)), lr(T(h.lr)),
        bc1(T(1.0 - std::pow(h.beta1, double(h.step)))), decay(T(1.0 - h.lr * h.weight_decay)),
        has_wd(mask_of<T>(h.weight_decay != 0.0)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& m, T& u, T&) const {
    p = pick(has_wd, p * decay, p);
    m = m + (g - m) * one_minus_beta1;
    u = nan_max(beta2 * u, std::fabs(g));
    p = p - (lr * m) / (bc1 * (u + eps));
  }
};

// mu_product is the product of mu_1 .. mu_step, the current step's mu included.
template <class T, int WD = kWdEither> struct NadamRule {
  static constexpr int nstate = 2;
  static constexpr bool nonneg[3] = {false, true, false};
  Lerp<T> lerp;
  T wd, decay, beta2, one_minus_beta2, inv_bc2, eps, c_grad, c_avg;
  Mask<T> l2, decoupled;
  static double mu_at(double beta1, double momentum_decay, double t) {
    return beta1 * (1.0 - 0.5 * std::pow(0.96, t * momentum_decay));
  }
  explicit NadamRule(const NadamHyper& h)
      : lerp(1.0 - h.beta1), wd(T(h.weight_decay)), decay(T(1.0 - h.lr * h.weight_decay)), beta2(T(h.beta2)),
        one_minus_beta2(T(1.0 - h.beta2)), inv_bc2(T(1.0 / (1.0 - std::pow(h.beta2, double(h.step))))), eps(T(h.eps)),
        l2(mask_of<T>(h.weight_decay != 0.0 && !h.decoupled)), decoupled(mask_of<T>(h.weight_decay != 0.0 && h.decoupled)) {
    const double mu = mu_at(h.beta1, h.momentum_decay, double(h.step));
    const double mu_next = mu_at(h.beta1, h.momentum_decay, double(h.step + 1));
    c_grad = T(-h.lr * (1.0 - mu) / (1.0 - h.mu_product));
    c_avg = T((-h.lr * mu_next) / (1.0 - h.mu_product * mu_next));
  }
  FASTOPT_ELEMENT void operator()(T& p, T g, T& m, T& v, T&) const {
    if constexpr (WD == kWdEither) {
      p = pick(decoupled, p * decay, p);
      g = pick(l2, g + wd * p, g);
    }
    m = lerp(m, g);
    v = v * beta2 + one_minus_beta2 * g * g;
    // one division per element: the corrected root's reciprocal, then products
    const T inv = T(1) / (std::sqrt(v * inv_bc2) + eps);
    p = p + c_grad * (g * inv);
    p = p + c_avg * (m * inv);
  }
};

// OPTAX: optax's radam, eps added to the corrected root (m/bc1 / (sqrt(v/bc2 + eps_root) + eps)),
// rectified from rho_t >= 5 (torch: > 5).
template <class T, bool OPTAX = false, int WD = kWdEither> struct RadamRule {
  static constexpr int nstate = 2;
  static constexpr bool nonneg[3] = {false, true, false};
  Lerp<T> lerp;
  T wd, decay, beta2, one_minus_beta2, inv_bc1, bc2_sqrt, inv_bc2, eps, eps_root, lr, rect;
  Mask<T> l2, decoupled, rectified;
  // the bias corrections multiply by their reciprocals (one division per element)
  explicit RadamRule(const RadamHyper& h)
      : lerp(1.0 - h.beta1), wd(T(h.weight_decay)), decay(T(1.0 - h.lr * h.weight_decay)), beta2(T(h.beta2)),
        one_minus_beta2(T(1.0 - h.beta2)), inv_bc1(T(1.0 / (1.0 - std::pow(h.beta1, double(h.step))))),
        bc2_sqrt(T(std::sqrt(1.0 - std::pow(h.beta2, double(h.step))))), inv_bc2(T(1.0 / (1.0 - std::pow(h.beta2, double(h.step))))),
        eps(T(h.eps)), eps_root(T(h.eps_root)), lr(T(h.lr)), rect(T(1)),
        l2(mask_of<T>(h.weight_decay != 0.0 && !h.decoupled)), decoupled(mask_of<T>(h.weight_decay != 0.0 && h.decoupled)) {
    const double t = double(h.step);
    const double bc2 = 1.0 - std::pow(h.beta2, t);
    const double rho_inf = 2.0 / (1.0 - h.beta2) - 1.0;
    const double rho_t = rho_inf - 2.0 * t * std::pow(h.beta2, t) / bc2;
    const bool on = OPTAX ? rho_t >= 5.0 : rho_t > 5.0;
    rectified = mask_of<T>(on);
    if (on)
      rect = T(std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)));
  }
  FASTOPT_ELEMENT void operator()(T& p, T g, T& m, T& v, T&) const {
    if constexpr (WD == kWdEither) {
      p = pick(decoupled, p * decay, p);
      g = pick(l2, g + wd * p, g);
    }
    m = lerp(m, g);
    v = v * beta2 + one_minus_beta2 * g * g;
    T u = m * inv_bc1 * lr;
    T adaptive;
    if constexpr (OPTAX) adaptive = T(1) / (std::sqrt(v * inv_bc2 + eps_root) + eps);
    else adaptive = bc2_sqrt / (std::sqrt(v) + eps);
    T r = u * adaptive * rect;
    p = p - pick(rectified, r, u);
  }
};

// Lion (Chen et al. 2023): p <- p (1 - lr wd) - lr sign(b1 m + (1 - b1) g);  m <- b2 m + (1 - b2) g.
template <class T> struct LionRule {
  static constexpr int nstate = 1;
  static constexpr bool nonneg[3] = {false, false, false};
  T neg_lr, decay, beta1, one_minus_beta1, beta2, one_minus_beta2;
  Mask<T> decoupled;
  explicit LionRule(const LionHyper& h)
      : neg_lr(T(-h.lr)), decay(T(1.0 - h.lr * h.weight_decay)), beta1(T(h.beta1)), one_minus_beta1(T(1.0 - h.beta1)),
        beta2(T(h.beta2)), one_minus_beta2(T(1.0 - h.beta2)), decoupled(mask_of<T>(h.weight_decay != 0.0)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& m, T&, T&) const {
    p = pick(decoupled, p * decay, p);
    T c = m * beta1 + one_minus_beta1 * g;
    p = p + neg_lr * sign_of(c);
    m = m * beta2 + one_minus_beta2 * g;
  }
};

// LAMB (You et al. 2020), in two passes per array:
//   moments(): m, v updated; returns the direction r = m_hat / (sqrt(v_hat) + eps) + wd p
//   apply():   p <- p - lr * trust * r, with trust = ||p|| / ||r|| from the first pass.
// decoupled (Keras): the weights decay first, p <- p (1 - lr wd), outside the trust ratio's
// direction; the ratio takes the norm of the decayed weights.
template <class T> struct LambRule {
  static constexpr int nstate = 2;
  Lerp<T> lerp;
  T beta2, one_minus_beta2, inv_bc1, inv_bc2, eps, wd;
  // The bias corrections multiply by their reciprocals (one division per element, not three: the
  // direction is computed twice, once for its norm and once for the update).
  explicit LambRule(const LambHyper& h)
      : lerp(1.0 - h.beta1), beta2(T(h.beta2)), one_minus_beta2(T(1.0 - h.beta2)),
        inv_bc1(T(1.0 / (1.0 - std::pow(h.beta1, double(h.step))))),
        inv_bc2(T(1.0 / (1.0 - std::pow(h.beta2, double(h.step))))), eps(T(h.eps)),
        wd(T(h.decoupled ? 0.0 : h.weight_decay)) {}
  FASTOPT_ELEMENT T direction(T p, T m, T v) const { return m * inv_bc1 / (std::sqrt(v * inv_bc2) + eps) + wd * p; }
  FASTOPT_ELEMENT T moments(T p, T g, T& m, T& v) const {
    m = lerp(m, g);
    v = v * beta2 + one_minus_beta2 * g * g;
    return direction(p, m, v);
  }
  // trust ratio as torch-optimizer/optax: 1 where either norm is zero.
  static double trust(double p_norm, double r_norm) {
    return (p_norm > 0.0 && r_norm > 0.0) ? p_norm / r_norm : 1.0;
  }
};

// The bandwidth probe: the same loads and stores as a rule with NS state arrays, and no math
// to speak of (c is 0 in the benchmarks, so nothing changes).
template <class T, int NS> struct StreamRule {
  static constexpr int nstate = NS;
  static constexpr bool nonneg[3] = {false, false, false};
  T c;
  explicit StreamRule(const StreamHyper& h) : c(T(h.c)) {}
  FASTOPT_ELEMENT void operator()(T& p, T g, T& s0, T& s1, T& s2) const {
    T d = c * g;
    p = p + d;
    if constexpr (NS > 0) s0 = s0 + d;
    if constexpr (NS > 1) s1 = s1 + d;
    if constexpr (NS > 2) s2 = s2 + d;
  }
};

}  // namespace FASTOPT_ISA_NS
}  // namespace fastopt
