// Every rule x dtype for one instruction set.  CMake compiles this file once per target with
// FASTOPT_ISA_NS naming the target and the target's -march flags.
#include "dispatch.hpp"
#include "kernels.hpp"
#include "layers.hpp"
#define FASTOPT_STR2(x) #x
#define FASTOPT_STR(x) FASTOPT_STR2(x)

namespace fastopt {
namespace FASTOPT_ISA_NS {
namespace {

template <class T> void gd(const Batch& b, const GdHyper& h, const PreHyper& pre, int nt) {
  sweep<T>(b, GdRule<T>(h), pre, nt);
}
template <class T> void sgd(const Batch& b, const SgdHyper& h, const PreHyper& pre, int nt) {
  if (h.convention == kConvKeras) {
    if (h.momentum != 0.0) sweep<T>(b, KerasSgdRule<T, true>(h), pre, nt);
    else sweep<T>(b, KerasSgdRule<T, false>(h), pre, nt);
    return;
  }
  if (h.momentum != 0.0) sweep<T>(b, SgdRule<T, true>(h), pre, nt);
  else if (h.weight_decay == 0.0) sweep<T>(b, GdRule<T>(GdHyper{h.lr}), pre, nt);  // the same p + (-lr) g, no select
  else sweep<T>(b, SgdRule<T, false>(h), pre, nt);
}
template <class T> void adam(const Batch& b, const AdamHyper& h, const PreHyper& pre, int nt) {
  const bool scaled = h.convention == kConvOptax;
  if (h.nesterov) {  // optax's nadam
    if (h.amsgrad) sweep<T>(b, AdamRule<T, true, true, true>(h), pre, nt);
    else sweep<T>(b, AdamRule<T, false, true, true>(h), pre, nt);
    return;
  }
  if (h.amsgrad && scaled) sweep<T>(b, AdamRule<T, true, true>(h), pre, nt);
  else if (h.amsgrad) sweep<T>(b, AdamRule<T, true, false>(h), pre, nt);
  else if (scaled) sweep<T>(b, AdamRule<T, false, true>(h), pre, nt);
  else if (!(h.eps_root == 0.0 && std::fabs(1.0 - h.beta1) < 0.5)) sweep<T>(b, AdamRule<T, false, false>(h), pre, nt);
  else if (h.weight_decay == 0.0) sweep<T>(b, AdamRule<T, false, false, false, kWdNone>(h), pre, nt);  // Adam's default
  else if (h.decoupled) sweep<T>(b, AdamRule<T, false, false, false, kWdDecoupled>(h), pre, nt);    // AdamW's
  else sweep<T>(b, AdamRule<T, false, false>(h), pre, nt);
}
template <class T> void adagrad(const Batch& b, const AdagradHyper& h, const PreHyper& pre, int nt) {
  if (h.convention != kConvTorch) sweep<T>(b, KerasAdagradRule<T>(h), pre, nt);
  else sweep<T>(b, AdagradRule<T>(h), pre, nt);
}
template <class T> void rmsprop(const Batch& b, const RmspropHyper& h, const PreHyper& pre, int nt) {
  const bool mom = h.momentum > 0.0;
  if (h.convention != kConvTorch) {
    if (h.centered && mom) sweep<T>(b, KerasRmspropRule<T, true, true>(h), pre, nt);
    else if (h.centered) sweep<T>(b, KerasRmspropRule<T, true, false>(h), pre, nt);
    else if (mom) sweep<T>(b, KerasRmspropRule<T, false, true>(h), pre, nt);
    else sweep<T>(b, KerasRmspropRule<T, false, false>(h), pre, nt);
    return;
  }
  if (h.centered && mom) sweep<T>(b, RmspropRule<T, true, true>(h), pre, nt);
  else if (h.centered) sweep<T>(b, RmspropRule<T, true, false>(h), pre, nt);
  else if (mom) sweep<T>(b, RmspropRule<T, false, true>(h), pre, nt);
  else sweep<T>(b, RmspropRule<T, false, false>(h), pre, nt);
}
template <class T> void adadelta(const Batch& b, const AdadeltaHyper& h, const PreHyper& pre, int nt) {
  sweep<T>(b, AdadeltaRule<T>(h), pre, nt);
}
template <class T> void adamax(const Batch& b, const AdamaxHyper& h, const PreHyper& pre, int nt) {
  if (h.convention == kConvKeras) sweep<T>(b, KerasAdamaxRule<T>(h), pre, nt);
  else sweep<T>(b, AdamaxRule<T>(h), pre, nt);
}
template <class T> void nadam(const Batch& b, const NadamHyper& h, const PreHyper& pre, int nt) {
  if (h.weight_decay == 0.0) sweep<T>(b, NadamRule<T, kWdNone>(h), pre, nt);  // the default
  else sweep<T>(b, NadamRule<T>(h), pre, nt);
}
template <class T> void radam(const Batch& b, const RadamHyper& h, const PreHyper& pre, int nt) {
  if (h.convention == kConvOptax) sweep<T>(b, RadamRule<T, true>(h), pre, nt);
  else if (h.weight_decay == 0.0) sweep<T>(b, RadamRule<T, false, kWdNone>(h), pre, nt);  // the default
  else sweep<T>(b, RadamRule<T>(h), pre, nt);
}
template <class T> void lion(const Batch& b, const LionHyper& h, const PreHyper& pre, int nt) {
  sweep<T>(b, LionRule<T>(h), pre, nt);
}
template <class T> void stream(const Batch& b, const StreamHyper& h, const PreHyper& pre, int nt) {
  switch (h.nstate) {
    case 0: return sweep<T>(b, StreamRule<T, 0>(h), pre, nt);
    case 1: return sweep<T>(b, StreamRule<T, 1>(h), pre, nt);
    case 2: return sweep<T>(b, StreamRule<T, 2>(h), pre, nt);
    default: return sweep<T>(b, StreamRule<T, 3>(h), pre, nt);
  }
}

}  // namespace

extern const KernelTable table;
const KernelTable table = {
    FASTOPT_STR(FASTOPT_ISA_NS),
#define FASTOPT_ENTRY(name, H) {name<float>, name<double>},
    FASTOPT_RULES(FASTOPT_ENTRY)
#undef FASTOPT_ENTRY
    {reduce<float>, reduce<double>, reduce<Bf16Bits>, reduce<_Float16>},
    {transform<float>, transform<double>},
    {bias_act<float>, bias_act<double>},
    {act_backward<float>, act_backward<double>},
    quantize_8bit,
    dequantize_8bit,
    {softmax_xent<float>, softmax_xent<double>},
};

}  // namespace FASTOPT_ISA_NS
}  // namespace fastopt
