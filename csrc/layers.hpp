// Fused elementwise passes of an MLP's training step, where NumPy makes several passes and
// temporaries: bias + activation (forward), the activation's derivative (backward), and
// softmax + cross-entropy + its gradient + the hit count.  One thread each: they run on a
// minibatch between two matmuls, which is BLAS's time.  Included by kernels.cpp only (compiled
// once per instruction set, inside its namespace).  The NumPy spec: fastopt/reference.py.
#pragma once
#include <cmath>
#include <cstdint>

#include "types.hpp"

namespace fastopt {
namespace FASTOPT_ISA_NS {

template <class T>
inline T sigmoid_of(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// z[r, :] = act(z[r, :] + b), in place.
template <class T>
void bias_act(void* z_, const void* b_, int64_t rows, int64_t cols, int act) {
  T* z = static_cast<T*>(z_);
  const T* __restrict b = static_cast<const T*>(b_);
  for (int64_t r = 0; r < rows; ++r) {
    T* __restrict row = z + r * cols;
    if (act == kActRelu) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) {
        const T v = row[c] + b[c];
        row[c] = v > T(0) ? v : T(0);
      }
    } else if (act == kActTanh) {
      for (int64_t c = 0; c < cols; ++c) row[c] = std::tanh(row[c] + b[c]);
    } else if (act == kActSigmoid) {
      for (int64_t c = 0; c < cols; ++c) row[c] = sigmoid_of(row[c] + b[c]);
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) row[c] = row[c] + b[c];
    }
  }
}

// d *= act'(z), written through the activation's output a = act(z), in place.
template <class T>
void act_backward(void* d_, const void* a_, int64_t n, int act) {
  T* __restrict d = static_cast<T*>(d_);
  const T* __restrict a = static_cast<const T*>(a_);
  if (act == kActRelu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] = a[i] > T(0) ? d[i] : T(0);
  } else if (act == kActTanh) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] = d[i] * (T(1) - a[i] * a[i]);
  } else if (act == kActSigmoid) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] = d[i] * a[i] * (T(1) - a[i]);
  }
}

// Row by row: loss += logsumexp(z) - z[y]; dz = (softmax(z) - onehot(y)) * scale;
// hits += (first argmax of z == y).  out[0] = loss sum (double), out[1] = hits.
template <class T>
void softmax_xent(const void* z_, const int64_t* __restrict y, void* dz_, int64_t rows, int64_t cols, double scale,
                  double* out) {
  const T* z = static_cast<const T*>(z_);
  T* dz = static_cast<T*>(dz_);
  double loss = 0.0, hits = 0.0;
  const T s = T(scale);
  for (int64_t r = 0; r < rows; ++r) {
    const T* __restrict zr = z + r * cols;
    T* __restrict dr = dz + r * cols;
    T m = zr[0];
    int64_t arg = 0;
    for (int64_t c = 1; c < cols; ++c)
      if (zr[c] > m) m = zr[c], arg = c;
    T sum = T(0);
    for (int64_t c = 0; c < cols; ++c) {
      const T e = std::exp(zr[c] - m);
      dr[c] = e;
      sum += e;
    }
    const T inv = s / sum;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) dr[c] = dr[c] * inv;
    dr[y[r]] -= s;
    loss += double(m) + std::log(double(sum)) - double(zr[y[r]]);
    hits += arg == y[r] ? 1.0 : 0.0;
  }
  out[0] = loss;
  out[1] = hits;
}

}  // namespace FASTOPT_ISA_NS
}  // namespace fastopt
