// Lean precision: bfloat16 and float16 arrays and 8-bit blockwise state around the float32
// rules.  A work item is walked in blocks of kQBlock elements: each block is widened into
// float32 buffers (which stay in L1), the rule's own loop runs on them unchanged, and the block is
// narrowed back: one pass over memory, no temporaries.  float32 arrays are used where they lie.
//
// Stores round to nearest even, or (Lean::stochastic) stochastically for bfloat16 with random bits
// from a counter-based hash of (seed, array, role, element index): the same bits whatever the
// thread count.  8-bit state is blockwise: per block of kQBlock elements one float32 absmax and
// one uint8 code per element,
//   signed values: an FP8 E4M3 code (ml_dtypes.float8_e4m3fn) of x * 448 / absmax;
//   values >= 0 (second moments): an unsigned E5M3 code (5 exponent bits, bias 15, 3 mantissa
//   bits, subnormals, no sign; max 122880) of x * 122880 / absmax;
// written out in fastopt/reference.py.  Items start at multiples of kChunk, hence of kQBlock:
// a block belongs to one item, so threads never share one.
//
// Included by kernels.hpp at its end, inside the instruction set's namespace.
#pragma once

#ifndef FASTOPT_LEAN_BLOCK
#define FASTOPT_LEAN_BLOCK 1024
#endif

namespace fastopt {
namespace FASTOPT_ISA_NS {

static_assert(kChunk % kQBlock == 0, "a quantization block must not straddle two work items");
constexpr int64_t kLeanBlock = FASTOPT_LEAN_BLOCK;  // elements widened at a time (a multiple of kQBlock)
static_assert(kLeanBlock % kQBlock == 0 && kChunk % kLeanBlock == 0, "lean blocks hold whole quantization blocks");

FASTOPT_ELEMENT uint32_t f32_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
FASTOPT_ELEMENT float bits_f32(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// murmur3's 32-bit finalizer: a bijection that mixes every input bit into every output bit.
FASTOPT_ELEMENT uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}
// The key of the random bits of one role of one array; element i then uses
// mix32(key ^ (uint32(i) * 0x9e3779b9)).  index_hi: bits 32.. of the element index.
inline uint32_t sr_key(uint64_t seed, int64_t array, int role, int64_t index_hi) {
  uint32_t k = mix32(uint32_t(seed) ^ mix32(uint32_t(seed >> 32) + 0x9e3779b9u * uint32_t(role + 1)));
  k = mix32(k ^ uint32_t(uint64_t(array)));
  return mix32(k ^ uint32_t(uint64_t(index_hi)));
}

FASTOPT_ELEMENT uint16_t bf16_nearest(float x) {
  const uint32_t u = f32_bits(x);
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return uint16_t(x != x ? ((u >> 16) | 0x40u) : r);  // NaN stays a (quiet) NaN
}
FASTOPT_ELEMENT uint16_t bf16_stochastic(float x, uint32_t key, uint32_t i) {
  const uint32_t u = f32_bits(x);
  const uint32_t r = (u + (mix32(key ^ (i * 0x9e3779b9u)) & 0xffffu)) >> 16;
  return uint16_t(x != x ? ((u >> 16) | 0x40u) : r);
}

constexpr float kQSigned = 448.0f, kQUnsigned = 122880.0f;  // the largest codes
constexpr float kQSub = 0.015625f, kQSubU = 6.103515625e-05f;  // the smallest normals: 2^-6 (E4M3), 2^-14 (E5M3)
constexpr float kRound = 8388608.0f;                                         // 2^23: x + 2^23 - 2^23 rounds x to an integer, ties to even

// A block holding a NaN (or an infinity) has a non-finite absmax, so every value decoded from it is
// non-finite whatever its code: the codes themselves need no NaN.
FASTOPT_ELEMENT float q8_decode_signed(uint32_t c) {
  const uint32_t mag = c & 0x7fu;
  const float v = mag < 8u ? float(int32_t(mag)) * 0.001953125f : bits_f32((mag + 960u) << 20);  // 2^-9 steps below 2^-6
  return bits_f32(f32_bits(v) | ((c & 0x80u) << 24));
}
FASTOPT_ELEMENT float q8_decode_unsigned(uint32_t c) {
  return c < 8u ? float(int32_t(c)) * 7.62939453125e-06f : bits_f32((c + 896u) << 20);  // 2^-17 steps below 2^-14
}
template <bool NN>
FASTOPT_ELEMENT float q8_decode(uint32_t c) {
  if constexpr (NN) return q8_decode_unsigned(c);
  else return q8_decode_signed(c);
}
// The fast decode.  A code's bits moved into a float32's exponent and mantissa fields (E4M3's sign
// bit to the sign's) make a float32 equal to the code's value times 2^-120 (E4M3) or 2^-112
// (E5M3).  So q8_scaled(c) * (inv * 2^120 or 2^112) is the real product q8_decode(c) * inv,
// rounded once: the same bits, in two or three instructions a vector and no select.  It holds
// where inv * 2^k is finite (inv below 2^8 or 2^16, or not finite: a NaN or an infinite inv gives
// the same NaNs and infinities both ways) and for the normal codes; the subnormal ones (magnitude
// 1..7) would land on float32 subnormals, which a thread that reads them as zero (DAZ, as
// torch.set_flush_denormal(True) sets) would zero and which cost CPUs that fix them up in
// microcode a hundred cycles or more a multiplication.  Such codes are rare in blocks in use (a
// state under 2^-15 of its block's maximum), so q8_fast takes the fast decode for a block of
// normal codes (a scan of a few byte instructions per 64 codes) and the reference's for others.
template <bool NN>
FASTOPT_ELEMENT float q8_scaled(uint8_t c) {
  if constexpr (NN) return bits_f32(uint32_t(c) << 20);
  else return bits_f32((uint32_t(int32_t(int8_t(c))) << 20) & 0x87ffffffu);
}
template <bool NN>
inline float q8_factor(float inv) { return inv * (NN ? 0x1p112f : 0x1p120f); }
// Whether codes c[0..n) include a subnormal one (E4M3: magnitude 1..7; E5M3: 1..7): the exponent
// bits zero and the mantissa bits not.
template <bool NN>
inline bool q8_any_subnormal(const uint8_t* __restrict c, int64_t n) {
  constexpr uint8_t exp_bits = NN ? 0xf8u : 0x78u;
  int64_t i = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__)
  __mmask64 any = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i x = _mm512_loadu_si512(c + i);
    any |= _mm512_mask_test_epi8_mask(_mm512_testn_epi8_mask(x, _mm512_set1_epi8(char(exp_bits))), x,
                                       _mm512_set1_epi8(7));
  }
  if (any) return true;
#elif defined(__AVX2__)
  __m256i any = _mm256_setzero_si256();
  for (; i + 32 <= n; i += 32) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + i));
    const __m256i zero = _mm256_setzero_si256();
    const __m256i exp0 = _mm256_cmpeq_epi8(_mm256_and_si256(x, _mm256_set1_epi8(char(exp_bits))), zero);
    const __m256i man0 = _mm256_cmpeq_epi8(_mm256_and_si256(x, _mm256_set1_epi8(7)), zero);
    any = _mm256_or_si256(any, _mm256_andnot_si256(man0, exp0));
  }
  if (!_mm256_testz_si256(any, any)) return true;
#endif
  bool tail = false;
  for (; i < n; ++i) tail |= (c[i] & exp_bits) == 0 && (c[i] & 7u) != 0;
  return tail;
}
template <bool NN>
inline bool q8_fast(float inv, float factor, const uint8_t* c, int64_t n) {
  return !(factor == INFINITY && inv != INFINITY) && !q8_any_subnormal<NN>(c, n);
}
FASTOPT_ELEMENT uint8_t q8_encode_signed(float x, float scale) {
  const uint32_t ux = f32_bits(x);
  const float y = bits_f32(ux & 0x7fffffffu) * scale;
  const float ys = y < kQSub ? y : 0.0f;
  const uint32_t sub = uint32_t(int32_t((ys * 512.0f + kRound) - kRound));
  const uint32_t uy = f32_bits(y);
  uint32_t mag = y < kQSub ? sub : ((uy + 0x7ffffu + ((uy >> 20) & 1u)) >> 20) - 960u;
  mag = mag > 126u ? 126u : mag;  // 448, the largest finite code (and any code for a non-finite y)
  return uint8_t(mag | ((ux >> 24) & 0x80u));
}
FASTOPT_ELEMENT uint8_t q8_encode_unsigned(float x, float scale) {
  const float y = x * scale;
  const float ys = y < kQSubU ? y : 0.0f;
  const uint32_t sub = uint32_t(int32_t((ys * 131072.0f + kRound) - kRound));
  const uint32_t uy = f32_bits(y);
  const uint32_t mag = y < kQSubU ? sub : ((uy + 0x7ffffu + ((uy >> 20) & 1u)) >> 20) - 896u;
  return uint8_t(mag > 255u ? 255u : mag);
}

// ---- the encode a vector at a time (AVX-512: 16, AVX2: 8) ---------------------------------
// The same codes as the functions above, bit for bit (tested against them and the reference on
// every code and on values around every rounding boundary, on every instruction set).  Written
// out because the compiler packs a loop's codes a byte vector at a time, in several shuffles per
// float vector, and keeps the subnormal path's float-to-integer conversion; here a subnormal
// rounds by one addition: y + 2^14 (0 <= y < 2^-6) is y rounded to a multiple of 2^-9, ties to
// even, and its low bits are the code.  For the unsigned code y + 96 rounds to 2^-17 the same way
// and, 96 lying mid-binade, gives the scalar code's results for y < 0 too (0 down to -2^-18, then
// 255), though no rule makes such a value.  The normal path subtracts the exponent bias before
// its shift (y >= 2^-6 there, so nothing borrows).  (Decoding needs no such code: q8_scaled.)
constexpr float q8_magic(bool nn) { return nn ? 96.0f : 16384.0f; }
constexpr uint32_t q8_round_add(bool nn) { return 0x7ffffu - ((nn ? 896u : 960u) << 20); }

// q8_encode_dw: one vector of codes (one per 32-bit lane; with AVX-512 the unsigned ones not yet
// clamped to 255, which q8_encode_vec's conversion does by saturating); q8_encode_vec: kQ8Width
// codes in memory order; q8_encode_split: 2 kQ8Width codes from the even elements' values in one
// buffer and the odd ones' in another (the layout of the all-bfloat16 loop's words, see bf16_pairs).
#if defined(__AVX512F__) && defined(__AVX512BW__)
constexpr int kQ8Width = 16;
template <bool NN>
FASTOPT_ELEMENT __m512i q8_encode_dw(const float* x, float scale) {
  const __m512i ux = _mm512_castps_si512(_mm512_loadu_ps(x));
  const __m512i ax = NN ? ux : _mm512_and_si512(ux, _mm512_set1_epi32(0x7fffffff));
  const __m512 y = _mm512_mul_ps(_mm512_castsi512_ps(ax), _mm512_set1_ps(scale));
  const __m512i uy = _mm512_castps_si512(y);
  const __mmask16 sub = _mm512_cmp_ps_mask(y, _mm512_set1_ps(NN ? kQSubU : kQSub), _CMP_LT_OQ);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(uy, 20), _mm512_set1_epi32(1));
  __m512i mag = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(uy, _mm512_set1_epi32(int32_t(q8_round_add(NN)))), lsb), 20);
  mag = _mm512_mask_sub_epi32(mag, sub, _mm512_castps_si512(_mm512_add_ps(y, _mm512_set1_ps(q8_magic(NN)))),
                              _mm512_set1_epi32(int32_t(f32_bits(q8_magic(NN)))));
  if (NN) return mag;  // clamped to 255 by the caller
  mag = _mm512_min_epu32(mag, _mm512_set1_epi32(126));
  return _mm512_ternarylogic_epi32(mag, _mm512_srli_epi32(ux, 24), _mm512_set1_epi32(0x80), 0xf8);
}
template <bool NN>
FASTOPT_ELEMENT void q8_encode_vec(const float* x, float scale, uint8_t* c) {
  const __m512i mag = q8_encode_dw<NN>(x, scale);  // unsigned codes: the conversion saturates at 255
  _mm_storeu_si128(reinterpret_cast<__m128i*>(c), NN ? _mm512_cvtusepi32_epi8(mag) : _mm512_cvtepi32_epi8(mag));
}
template <bool NN>
FASTOPT_ELEMENT __m512i q8_encode_clamped(const float* x, float scale) {
  const __m512i mag = q8_encode_dw<NN>(x, scale);
  return NN ? _mm512_min_epu32(mag, _mm512_set1_epi32(255)) : mag;
}
template <bool NN>
FASTOPT_ELEMENT void q8_encode_split(const float* even, const float* odd, float scale, uint8_t* c) {
  const __m512i w = _mm512_or_si512(q8_encode_clamped<NN>(even, scale), _mm512_slli_epi32(q8_encode_clamped<NN>(odd, scale), 8));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), _mm512_cvtepi32_epi16(w));
}
#elif defined(__AVX2__)
constexpr int kQ8Width = 8;
template <bool NN>
FASTOPT_ELEMENT __m256i q8_encode_dw(const float* x, float scale) {
  const __m256i ux = _mm256_castps_si256(_mm256_loadu_ps(x));
  const __m256i ax = NN ? ux : _mm256_and_si256(ux, _mm256_set1_epi32(0x7fffffff));
  const __m256 y = _mm256_mul_ps(_mm256_castsi256_ps(ax), _mm256_set1_ps(scale));
  const __m256i uy = _mm256_castps_si256(y);
  const __m256 sub = _mm256_cmp_ps(y, _mm256_set1_ps(NN ? kQSubU : kQSub), _CMP_LT_OQ);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(uy, 20), _mm256_set1_epi32(1));
  const __m256i nrm = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(uy, _mm256_set1_epi32(int32_t(q8_round_add(NN)))), lsb), 20);
  const __m256i den = _mm256_sub_epi32(_mm256_castps_si256(_mm256_add_ps(y, _mm256_set1_ps(q8_magic(NN)))),
                                       _mm256_set1_epi32(int32_t(f32_bits(q8_magic(NN)))));
  __m256i mag = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(nrm), _mm256_castsi256_ps(den), sub));
  mag = _mm256_min_epu32(mag, _mm256_set1_epi32(NN ? 255 : 126));
  if (!NN) mag = _mm256_or_si256(mag, _mm256_and_si256(_mm256_srli_epi32(ux, 24), _mm256_set1_epi32(0x80)));
  return mag;
}
FASTOPT_ELEMENT __m128i q8_pack_words(__m256i w) {  // 8 lanes of 0..65535 to 8 words (no saturation)
  return _mm_packus_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}
template <bool NN>
FASTOPT_ELEMENT void q8_encode_vec(const float* x, float scale, uint8_t* c) {
  const __m128i w = q8_pack_words(q8_encode_dw<NN>(x, scale));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(c), _mm_packus_epi16(w, w));
}
template <bool NN>
FASTOPT_ELEMENT void q8_encode_split(const float* even, const float* odd, float scale, uint8_t* c) {
  const __m256i w = _mm256_or_si256(q8_encode_dw<NN>(even, scale), _mm256_slli_epi32(q8_encode_dw<NN>(odd, scale), 8));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(c), q8_pack_words(w));
}
#else
constexpr int kQ8Width = 0;  // the scalar loops only
#endif

// ---- the encode of a block whose codes are all normal ------------------------------------
// Where every y = |x| * scale of a block lies in [2^-6, 448] (E4M3) or [2^-14, 122880] (E5M3),
// which q8_all_normal tells from the block's smallest and largest |x|, no code is subnormal and
// none needs clamping: a code is its value's bits rounded to the nearest even multiple of 2^20
// less the bias, as q8_encode_dw's normal path computes it.  The signed code works on y with its
// sign: the sum's bit 31 is the sign, so after the shift the magnitude is in bits 0..6 and the
// sign in bit 11, moved to bit 7 once two vectors are packed to 16-bit words (q8_sign_words).
// Four vectors are packed to bytes together and put in memory order by one permutation.  (The same codes as
// q8_encode_dw, bit for bit: tested at every rounding boundary on every instruction set.)
// q8_normal_dw: a vector of codes, signed ones with the sign in bit 11; q8_encode_normal4:
// 4 kQ8Width codes in memory order; q8_encode_split_normal: 4 kQ8Width codes from 2 kQ8Width
// even elements' values in one buffer and as many odd ones' in another, as q8_encode_split.
#if defined(__AVX512F__) && defined(__AVX512BW__)
template <bool NN>
FASTOPT_ELEMENT __m512i q8_normal_dw(const float* x, float scale) {
  const __m512i uy = _mm512_castps_si512(_mm512_mul_ps(_mm512_loadu_ps(x), _mm512_set1_ps(scale)));
  const __mmask16 odd = _mm512_test_epi32_mask(uy, _mm512_set1_epi32(1 << 20));  // ties to even
  const __m512i sum = _mm512_add_epi32(uy, _mm512_set1_epi32(int32_t(q8_round_add(NN))));
  return _mm512_srli_epi32(_mm512_mask_add_epi32(sum, odd, sum, _mm512_set1_epi32(1)), 20);
}
FASTOPT_ELEMENT __m512i q8_sign_words(__m512i w) {  // 16-bit words: bit 11 to bit 7
  return _mm512_ternarylogic_epi32(_mm512_set1_epi16(0x7f), w, _mm512_srli_epi16(w, 4), 0xca);
}
template <bool NN>
FASTOPT_ELEMENT void q8_encode_normal4(const float* x, float scale, uint8_t* c) {
  __m512i ab = _mm512_packus_epi32(q8_normal_dw<NN>(x, scale), q8_normal_dw<NN>(x + 16, scale));
  __m512i cd = _mm512_packus_epi32(q8_normal_dw<NN>(x + 32, scale), q8_normal_dw<NN>(x + 48, scale));
  if (!NN) {
    ab = q8_sign_words(ab);
    cd = q8_sign_words(cd);
  }
  // each 128-bit lane L holds 4 codes of each vector: x[4L..], x[16 + 4L..], x[32 + 4L..], x[48 + 4L..]
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  _mm512_storeu_si512(c, _mm512_permutexvar_epi32(order, _mm512_packus_epi16(ab, cd)));
}
template <bool NN>
FASTOPT_ELEMENT void q8_encode_split_normal(const float* even, const float* odd, float scale, uint8_t* c) {
  __m512i e = _mm512_packus_epi32(q8_normal_dw<NN>(even, scale), q8_normal_dw<NN>(even + 16, scale));
  __m512i o = _mm512_packus_epi32(q8_normal_dw<NN>(odd, scale), q8_normal_dw<NN>(odd + 16, scale));
  if (!NN) {
    e = q8_sign_words(e);
    o = q8_sign_words(o);
  } else {  // 255 for a negative value, as the other loops give (no rule makes one)
    e = _mm512_min_epu16(e, _mm512_set1_epi16(255));
    o = _mm512_min_epu16(o, _mm512_set1_epi16(255));
  }
  // each 128-bit lane L holds 4 words (an even and an odd code) of each pair of vectors
  const __m512i order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
  _mm512_storeu_si512(c, _mm512_permutexvar_epi64(order, _mm512_or_si512(e, _mm512_slli_epi16(o, 8))));
}
#elif defined(__AVX2__)
template <bool NN>
FASTOPT_ELEMENT __m256i q8_normal_dw(const float* x, float scale) {
  const __m256i uy = _mm256_castps_si256(_mm256_mul_ps(_mm256_loadu_ps(x), _mm256_set1_ps(scale)));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(uy, 20), _mm256_set1_epi32(1));
  const __m256i sum = _mm256_add_epi32(uy, _mm256_set1_epi32(int32_t(q8_round_add(NN))));
  return _mm256_srli_epi32(_mm256_add_epi32(sum, lsb), 20);
}
FASTOPT_ELEMENT __m256i q8_sign_words(__m256i w) {  // 16-bit words: bit 11 to bit 7
  return _mm256_or_si256(_mm256_and_si256(w, _mm256_set1_epi16(0x7f)),
                         _mm256_and_si256(_mm256_srli_epi16(w, 4), _mm256_set1_epi16(0x80)));
}
template <bool NN>
FASTOPT_ELEMENT void q8_encode_normal4(const float* x, float scale, uint8_t* c) {
  __m256i ab = _mm256_packus_epi32(q8_normal_dw<NN>(x, scale), q8_normal_dw<NN>(x + 8, scale));
  __m256i cd = _mm256_packus_epi32(q8_normal_dw<NN>(x + 16, scale), q8_normal_dw<NN>(x + 24, scale));
  if (!NN) {
    ab = q8_sign_words(ab);
    cd = q8_sign_words(cd);
  }
  // each 128-bit lane L holds 4 codes of each vector: x[4L..], x[8 + 4L..], x[16 + 4L..], x[24 + 4L..]
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order));
}
template <bool NN>
FASTOPT_ELEMENT void q8_encode_split_normal(const float* even, const float* odd, float scale, uint8_t* c) {
  __m256i e = _mm256_packus_epi32(q8_normal_dw<NN>(even, scale), q8_normal_dw<NN>(even + 8, scale));
  __m256i o = _mm256_packus_epi32(q8_normal_dw<NN>(odd, scale), q8_normal_dw<NN>(odd + 8, scale));
  if (!NN) {
    e = q8_sign_words(e);
    o = q8_sign_words(o);
  } else {  // 255 for a negative value, as the other loops give (no rule makes one)
    e = _mm256_min_epu16(e, _mm256_set1_epi16(255));
    o = _mm256_min_epu16(o, _mm256_set1_epi16(255));
  }
  // each 128-bit lane L holds 4 words (an even and an odd code) of each pair of vectors
  const __m256i w = _mm256_or_si256(e, _mm256_slli_epi16(o, 8));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), _mm256_permute4x64_epi64(w, 0xd8));
}
#endif

// Whether every code of a block whose largest and smallest |x| are amax and amin is normal (see
// above): amax finite (no NaN or infinity in the block), scale finite, and amin * scale, the
// smallest y (the multiplication is monotonic), at least the smallest normal code's value; then
// the largest y, amax * scale, is at most one float32 ulp above the largest code and rounds to it.
template <bool NN>
inline bool q8_all_normal(float amax, float amin, float scale) {
  return std::isfinite(amax) && std::isfinite(scale) && amin * scale >= (NN ? kQSubU : kQSub);
}

// ---- one block in, one block out ---------------------------------------------------------

__attribute__((noinline)) inline void widen_bf16(const uint16_t* __restrict x, float* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = bits_f32(uint32_t(x[i]) << 16);
}
__attribute__((noinline)) inline void widen_f16(const _Float16* __restrict x, float* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = float(x[i]);
}
__attribute__((noinline)) inline void copy_f32(const float* __restrict x, float* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = x[i];
}
__attribute__((noinline)) inline void narrow_bf16(const float* __restrict x, uint16_t* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_nearest(x[i]);
}
__attribute__((noinline)) inline void narrow_bf16_sr(const float* __restrict x, uint16_t* __restrict out, int64_t n,
                                                     uint32_t key, uint32_t i0) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_stochastic(x[i], key, i0 + uint32_t(i));
}
__attribute__((noinline)) inline void narrow_f16(const float* __restrict x, _Float16* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = _Float16(x[i]);
}

// Kahan-compensated bfloat16 parameters: the value is p + c, both bfloat16 (exact in float32).
__attribute__((noinline)) inline void add_bf16(const uint16_t* __restrict c, float* __restrict x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] + bits_f32(uint32_t(c[i]) << 16);
}
__attribute__((noinline)) inline void kahan_residual(const float* __restrict x, const uint16_t* __restrict p,
                                                     uint16_t* __restrict c, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) c[i] = bf16_nearest(x[i] - bits_f32(uint32_t(p[i]) << 16));
}

template <bool NN>
inline void q8_decode_block(const uint8_t* __restrict c, float inv, float* __restrict out, int64_t n) {
  const float k = q8_factor<NN>(inv);
  if (q8_fast<NN>(inv, k, c, n)) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = q8_scaled<NN>(c[i]) * k;
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = q8_decode<NN>(c[i]) * inv;
  }
}
__attribute__((noinline)) inline void q8_load(const uint8_t* __restrict c, float absmax, bool nonneg,
                                              float* __restrict out, int64_t n) {
  if (nonneg) q8_decode_block<true>(c, absmax / kQUnsigned, out, n);
  else q8_decode_block<false>(c, absmax / kQSigned, out, n);
}

// A block's largest |x| (a NaN if any x is NaN: the largest of the bits of |x| as unsigned
// integers, which order non-negative floats as their values and put every NaN above infinity)
// and its smallest (a NaN only if every x is one).  RangeAcc keeps them per lane, kQ8Width values
// at a time (written out: GCC kept an omp simd reduction's lanes on the stack).
struct Q8Range {
  float amax, amin;
};
struct RangeAcc {
#if defined(__AVX512F__) && defined(__AVX512BW__)
  __m512i hi = _mm512_setzero_si512(), lo = _mm512_set1_epi32(-1);
  FASTOPT_ELEMENT void add(const float* x) {
    const __m512i u = _mm512_and_si512(_mm512_loadu_si512(x), _mm512_set1_epi32(0x7fffffff));
    hi = _mm512_max_epu32(hi, u);
    lo = _mm512_min_epu32(lo, u);
  }
#elif defined(__AVX2__)
  __m256i hi = _mm256_setzero_si256(), lo = _mm256_set1_epi32(-1);
  FASTOPT_ELEMENT void add(const float* x) {
    const __m256i u = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)), _mm256_set1_epi32(0x7fffffff));
    hi = _mm256_max_epu32(hi, u);
    lo = _mm256_min_epu32(lo, u);
  }
#endif
  // The range of the values added and of x[0..n) (the tail).
  Q8Range get([[maybe_unused]] const float* __restrict x, int64_t n) const {
    uint32_t m = 0, l = 0xffffffffu;
#if defined(__AVX512F__) && defined(__AVX512BW__)
    m = _mm512_reduce_max_epu32(hi);
    l = _mm512_reduce_min_epu32(lo);
#elif defined(__AVX2__)
    alignas(32) uint32_t hm[8], hl[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(hm), hi);
    _mm256_store_si256(reinterpret_cast<__m256i*>(hl), lo);
    for (int k = 0; k < 8; ++k) {
      m = hm[k] > m ? hm[k] : m;
      l = hl[k] < l ? hl[k] : l;
    }
#endif
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t u = f32_bits(x[i]) & 0x7fffffffu;
      m = u > m ? u : m;
      l = u < l ? u : l;
    }
    return {bits_f32(m), bits_f32(l)};
  }
};
inline Q8Range q8_range(const float* __restrict x, int64_t n) {
  RangeAcc r;
  int64_t i = 0;
#if defined(__AVX2__)
  for (; i + kQ8Width <= n; i += kQ8Width) r.add(x + i);
#endif
  return r.get(x + i, n - i);
}

template <bool NN>
inline void q8_encode_block(const float* __restrict x, float scale, uint8_t* __restrict c, int64_t n,
                            [[maybe_unused]] bool normal) {
  int64_t i = 0;
#if defined(__AVX2__)
  if (normal)
    for (; i + 4 * kQ8Width <= n; i += 4 * kQ8Width) q8_encode_normal4<NN>(x + i, scale, c + i);
  for (; i + kQ8Width <= n; i += kQ8Width) q8_encode_vec<NN>(x + i, scale, c + i);
#endif
#pragma omp simd
  for (int64_t j = i; j < n; ++j) c[j] = NN ? q8_encode_unsigned(x[j], scale) : q8_encode_signed(x[j], scale);
}

// The scale to codes of a block whose range is r.
template <bool NN>
inline float q8_scale(Q8Range r) { return r.amax > 0.0f ? (NN ? kQUnsigned : kQSigned) / r.amax : 0.0f; }

// The codes of n values whose range is r, and their largest |x|.
template <bool NN>
__attribute__((noinline)) void q8_encode(const float* __restrict x, Q8Range r, uint8_t* __restrict c,
                                         float* __restrict absmax, int64_t n) {
  const float scale = q8_scale<NN>(r);
  q8_encode_block<NN>(x, scale, c, n, q8_all_normal<NN>(r.amax, r.amin, scale));
  *absmax = r.amax;
}
// Two states' blocks at once, as two q8_encode calls give them: where both are all normal, one
// loop over both, for the two chains of conversions and packing to run side by side.
template <bool NN0, bool NN1>
__attribute__((noinline)) void q8_encode_two(const float* __restrict x0, Q8Range r0, uint8_t* __restrict c0,
                                             float* __restrict a0, const float* __restrict x1, Q8Range r1,
                                             uint8_t* __restrict c1, float* __restrict a1, int64_t n) {
  const float k0 = q8_scale<NN0>(r0), k1 = q8_scale<NN1>(r1);
  const bool normal0 = q8_all_normal<NN0>(r0.amax, r0.amin, k0), normal1 = q8_all_normal<NN1>(r1.amax, r1.amin, k1);
  *a0 = r0.amax;
  *a1 = r1.amax;
#if defined(__AVX2__)
  if (normal0 && normal1 && n % (4 * kQ8Width) == 0) {
    for (int64_t i = 0; i < n; i += 4 * kQ8Width) {
      q8_encode_normal4<NN0>(x0 + i, k0, c0 + i);
      q8_encode_normal4<NN1>(x1 + i, k1, c1 + i);
    }
    return;
  }
#endif
  q8_encode_block<NN0>(x0, k0, c0, n, normal0);
  q8_encode_block<NN1>(x1, k1, c1, n, normal1);
}
inline void q8_store(const float* __restrict x, bool nonneg, uint8_t* __restrict c, float* __restrict absmax, int64_t n) {
  if (nonneg) q8_encode<true>(x, q8_range(x, n), c, absmax, n);
  else q8_encode<false>(x, q8_range(x, n), c, absmax, n);
}

// Whole arrays of 8-bit state to and from float32 (set-up and checkpoints; one thread).
inline void quantize_8bit(const float* x, int64_t n, bool nonneg, uint8_t* codes, float* absmax) {
  for (int64_t i = 0; i < n; i += kQBlock) q8_store(x + i, nonneg, codes + i, absmax + i / kQBlock, n - i < kQBlock ? n - i : kQBlock);
}
inline void dequantize_8bit(const uint8_t* codes, const float* absmax, int64_t n, bool nonneg, float* out) {
  for (int64_t i = 0; i < n; i += kQBlock) q8_load(codes + i, absmax[i / kQBlock], nonneg, out + i, n - i < kQBlock ? n - i : kQBlock);
}

// Array `a`'s elements [i0, i0 + n) of slot s into buf (or a pointer to them where they are float32).
inline float* lean_load(const Batch& b, int s, int dtype, int64_t a, int64_t i0, int64_t n, float* buf,
                        bool nonneg = false) {
  void* base = b.slot[s][a];
  switch (dtype) {
    case F32: return static_cast<float*>(base) + i0;
    case BF16: widen_bf16(static_cast<const uint16_t*>(base) + i0, buf, n); return buf;
    case F16: widen_f16(static_cast<const _Float16*>(base) + i0, buf, n); return buf;
    default:
      dequantize_8bit(static_cast<const uint8_t*>(base) + i0, static_cast<const float*>(b.slot[s + 3][a]) + i0 / kQBlock, n,
                      nonneg, buf);
      return buf;
  }
}

inline void lean_store(const Batch& b, int s, int dtype, int64_t a, int64_t i0, int64_t n, const float* x,
                       const Lean& L, bool nonneg = false) {
  void* base = b.slot[s][a];
  switch (dtype) {
    case F32:
      if (static_cast<float*>(base) + i0 != x) copy_f32(x, static_cast<float*>(base) + i0, n);
      return;
    case BF16:
      if (L.stochastic)
        narrow_bf16_sr(x, static_cast<uint16_t*>(base) + i0, n, sr_key(L.seed, a, s, i0 >> 32), uint32_t(uint64_t(i0)));
      else narrow_bf16(x, static_cast<uint16_t*>(base) + i0, n);
      return;
    case F16: narrow_f16(x, static_cast<_Float16*>(base) + i0, n); return;
    default:
      quantize_8bit(x, n, nonneg, static_cast<uint8_t*>(base) + i0, static_cast<float*>(b.slot[s + 3][a]) + i0 / kQBlock);
  }
}

// ---- the direct path: float32 and bfloat16 arrays read and written in the rule's own loop ----
// For the common layouts (float32 model with bfloat16 state, bfloat16 model with float32 or
// bfloat16 state; round to nearest even): no buffers, one loop, as the float32 sweep.

struct F32Store {
  using E = float;
  static constexpr bool bits16 = false;
  static FASTOPT_ELEMENT float load(const E& x) { return x; }
  static FASTOPT_ELEMENT E store(float x) { return x; }
};
struct Bf16Store {
  using E = uint16_t;
  static constexpr bool bits16 = true;
  static FASTOPT_ELEMENT float load(const E& x) { return bits_f32(uint32_t(x) << 16); }
  static FASTOPT_ELEMENT E store(float x) { return bf16_nearest(x); }
};

// How a direct path's bfloat16 stores round: to nearest even (bf16_nearest), or stochastically
// with the buffered path's random bits (bf16_stochastic as narrow_bf16_sr calls it: key
// sr_key(seed, array, slot, high bits of the index), the index's low bits).  high(x, role, idx)
// is the rounded value in the upper 16 bits (the lower ones undefined); role 0 is the parameters,
// 1..3 the states; idx the element's index in its array (low 32 bits).
struct RoundNearest {
  static RoundNearest of(const Batch&, const Item&) { return {}; }
  FASTOPT_ELEMENT uint32_t high(float x, int, uint32_t) const {
    const uint32_t u = f32_bits(x);
    return x != x ? (u | 0x400000u) : u + 0x7fffu + ((u >> 16) & 1u);
  }
};
struct RoundStochastic {
  uint32_t key[4];
  static RoundStochastic of(const Batch& b, const Item& it) {
    // an item lies within one 2^32-element stretch (it starts at a multiple of kChunk): one key per role
    const uint32_t seed = b.lean->seed;
    const int64_t hi = it.start >> 32;
    return {{sr_key(seed, it.array, 0, hi), sr_key(seed, it.array, 2, hi), sr_key(seed, it.array, 3, hi),
             sr_key(seed, it.array, 4, hi)}};
  }
  FASTOPT_ELEMENT uint32_t high(float x, int role, uint32_t idx) const {
    const uint32_t u = f32_bits(x);
    return x != x ? (u | 0x400000u) : u + (mix32(key[role] ^ (idx * 0x9e3779b9u)) & 0xffffu);
  }
};
template <class S, class Round>
FASTOPT_ELEMENT typename S::E store_as(float x, const Round& rd, int role, uint32_t idx) {
  if constexpr (S::bits16) return uint16_t(rd.high(x, role, idx) >> 16);
  else return x;
}

// All arrays bfloat16: two elements per 32-bit word, the low one widened by a shift and the high
// one by a mask, each rounded as the element loop rounds it (the low one has index i0 + 2i, the
// high one i0 + 2i + 1) and put back in its half, so the loop's vectors hold float32 lanes only
// (a 16-bit element type makes the compiler widen and narrow with shuffles: 0.53 against 0.40 ns
// per element for Adam with AVX-512 in L2, 0.92 against 0.55 with AVX2).  The same operations per
// element, hence the same bits (tested).  Returns the elements done: all but an odd last one.
FASTOPT_ELEMENT uint32_t bf16_word(const uint16_t* x, int64_t i) {
  uint32_t w;
  std::memcpy(&w, x + 2 * i, 4);
  return w;
}
template <class Round>
FASTOPT_ELEMENT void bf16_put(uint16_t* x, int64_t i, float lo, float hi, const Round& rd, int role, uint32_t idx) {
  const uint32_t w = (rd.high(lo, role, idx) >> 16) | (rd.high(hi, role, idx + 1u) & 0xffff0000u);
  std::memcpy(x + 2 * i, &w, 4);
}
FASTOPT_ELEMENT float bf16_low(uint32_t w) { return bits_f32(w << 16); }
FASTOPT_ELEMENT float bf16_high(uint32_t w) { return bits_f32(w & 0xffff0000u); }

template <int MODE, class Round, class Rule>
__attribute__((noinline)) int64_t bf16_pairs(const Rule& rule, const Pre<float>& pre_in, uint16_t* __restrict p,
                                             const uint16_t* __restrict g, uint16_t* __restrict s0,
                                             uint16_t* __restrict s1, uint16_t* __restrict s2, int64_t n,
                                             const Round& round, uint32_t i0) {
  const Rule r = rule;
  const Pre<float> pre = pre_in;
  const Round rd = round;
  const int64_t h = n / 2;
#pragma omp simd
  for (int64_t i = 0; i < h; ++i) {
    const uint32_t idx = i0 + 2u * uint32_t(i);
    const uint32_t wp = bf16_word(p, i), wg = bf16_word(g, i);
    const uint32_t w0 = Rule::nstate > 0 ? bf16_word(s0, i) : 0u;
    const uint32_t w1 = Rule::nstate > 1 ? bf16_word(s1, i) : 0u;
    const uint32_t w2 = Rule::nstate > 2 ? bf16_word(s2, i) : 0u;
    float pl = bf16_low(wp), ph = bf16_high(wp), gl = bf16_low(wg), gh = bf16_high(wg);
    float al = bf16_low(w0), ah = bf16_high(w0), cl = bf16_low(w1), ch = bf16_high(w1);
    float dl = bf16_low(w2), dh = bf16_high(w2);
    if constexpr (MODE != kNoPre) {
      gl = pre.template apply<MODE == kPrePenalty>(gl, pl);
      gh = pre.template apply<MODE == kPrePenalty>(gh, ph);
    }
    r(pl, gl, al, cl, dl);
    r(ph, gh, ah, ch, dh);
    bf16_put(p, i, pl, ph, rd, 0, idx);
    if constexpr (Rule::nstate > 0) bf16_put(s0, i, al, ah, rd, 1, idx);
    if constexpr (Rule::nstate > 1) bf16_put(s1, i, cl, ch, rd, 2, idx);
    if constexpr (Rule::nstate > 2) bf16_put(s2, i, dl, dh, rd, 3, idx);
  }
  return 2 * h;
}

template <int MODE, class PS, class SS, class Round, class Rule>
__attribute__((noinline)) void direct_range(const Rule& rule, const Pre<float>& pre_in, typename PS::E* __restrict p,
                                            const typename PS::E* __restrict g, typename SS::E* __restrict s0,
                                            typename SS::E* __restrict s1, typename SS::E* __restrict s2, int64_t n,
                                            const Round& round, uint32_t i0) {
  const Rule r = rule;
  const Pre<float> pre = pre_in;
  const Round rd = round;
  int64_t start = 0;
  if constexpr (PS::bits16 && SS::bits16) start = bf16_pairs<MODE>(rule, pre_in, p, g, s0, s1, s2, n, round, i0);
#pragma omp simd
  for (int64_t i = start; i < n; ++i) {
    const uint32_t idx = i0 + uint32_t(i);
    float pi = PS::load(p[i]);
    float gi = PS::load(g[i]);
    if constexpr (MODE != kNoPre) gi = pre.template apply<MODE == kPrePenalty>(gi, pi);
    float a = Rule::nstate > 0 ? SS::load(s0[i]) : 0.0f;
    float c = Rule::nstate > 1 ? SS::load(s1[i]) : 0.0f;
    float d = Rule::nstate > 2 ? SS::load(s2[i]) : 0.0f;
    r(pi, gi, a, c, d);
    p[i] = store_as<PS>(pi, rd, 0, idx);
    if constexpr (Rule::nstate > 0) s0[i] = store_as<SS>(a, rd, 1, idx);
    if constexpr (Rule::nstate > 1) s1[i] = store_as<SS>(c, rd, 2, idx);
    if constexpr (Rule::nstate > 2) s2[i] = store_as<SS>(d, rd, 3, idx);
  }
}

template <class PS, class SS, class Round, class Rule>
void direct_sweep(const Batch& b, const Rule& rule, const PreHyper& ph, int nt) {
  const Plan plan(b);
  const Pre<float> pre(ph);
  const PreMode mode = pre_mode(ph);
  for_items(plan, nt, [&](int64_t k) {
    const Item& it = plan.items[k];
    auto* p = static_cast<typename PS::E*>(b.slot[0][it.array]) + it.start;
    const auto* g = static_cast<const typename PS::E*>(b.slot[1][it.array]) + it.start;
    typename SS::E* s[3] = {nullptr, nullptr, nullptr};
    for (int j = 0; j < Rule::nstate; ++j) s[j] = static_cast<typename SS::E*>(b.slot[2 + j][it.array]) + it.start;
    const Round rd = Round::of(b, it);
    const uint32_t i0 = uint32_t(uint64_t(it.start));
    if (mode == kNoPre) direct_range<kNoPre, PS, SS>(rule, pre, p, g, s[0], s[1], s[2], it.len, rd, i0);
    else if (mode == kPre) direct_range<kPre, PS, SS>(rule, pre, p, g, s[0], s[1], s[2], it.len, rd, i0);
    else direct_range<kPrePenalty, PS, SS>(rule, pre, p, g, s[0], s[1], s[2], it.len, rd, i0);
  });
}

// ---- the 8-bit direct path: float32 or bfloat16 parameters and gradients, one or two 8-bit states
// Per block of kQBlock elements: the codes are decoded in the rule's own loop, which keeps the
// new state in an L1 buffer and takes its largest and smallest |x| strip by strip (RangeAcc; the
// smallest tells whether the block's codes are all normal: q8_all_normal); then it is encoded.
// The same decode, rule, maximum and encode as the buffered path below, hence the same bits,
// with one pass less over each state.  FAST: the block decodes by q8_scaled (factor f: inv *
// 2^k), else by q8_decode (f: inv).

template <bool FAST, bool NN>
FASTOPT_ELEMENT float q8_value(uint8_t c, float f) {
  if constexpr (FAST) return q8_scaled<NN>(c) * f;
  else return q8_decode<NN>(c) * f;
}
// The same for the low (HIGH false) or high code of a 16-bit word w, as q8_value(uint8_t(w)) or
// q8_value(uint8_t(w >> 8)), with the byte moved by shifts within the word's 32-bit lane.
template <bool FAST, bool NN, bool HIGH>
FASTOPT_ELEMENT float q8_word_value(uint32_t w, float f) {
  if constexpr (FAST) {
    const uint32_t top = w << (HIGH ? 16 : 24);  // the code in bits 24..31
    const uint32_t u = NN ? (top >> 4) & 0x0ff00000u : uint32_t(int32_t(top) >> 4) & 0x87f00000u;
    return bits_f32(u) * f;
  } else {
    return q8_decode<NN>((HIGH ? w >> 8 : w) & 0xffu) * f;
  }
}

// One element of q8_direct_block; IN: its states are already decoded into s0[i] and s1[i].
template <class PS, int NS, bool NN0, bool NN1, bool FAST, bool IN, class Rule>
FASTOPT_ELEMENT void q8_direct_element(const Rule& r, typename PS::E* __restrict p, const typename PS::E* __restrict g,
                                       const uint8_t* __restrict c0, const uint8_t* __restrict c1, float f0, float f1,
                                       float* __restrict s0, float* __restrict s1, int64_t i) {
  float pi = PS::load(p[i]), gi = PS::load(g[i]);
  float a = IN ? s0[i] : q8_value<FAST, NN0>(c0[i], f0);
  float c = NS > 1 ? (IN ? s1[i] : q8_value<FAST, NN1>(c1[i], f1)) : 0.0f;
  float d = 0.0f;
  r(pi, gi, a, c, d);
  p[i] = PS::store(pi);
  s0[i] = a;
  if constexpr (NS > 1) s1[i] = c;
}
#if defined(__AVX2__)
// kQ8Width codes decoded as q8_value<true, NN> decodes them (q8_scaled times the factor f), each
// vector of codes widened by one instruction from memory.
template <bool NN>
FASTOPT_ELEMENT void q8_scaled_vec(const uint8_t* c, float f, float* out) {
#if defined(__AVX512F__) && defined(__AVX512BW__)
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c));
  __m512i u = NN ? _mm512_slli_epi32(_mm512_cvtepu8_epi32(b), 20)
                 : _mm512_and_si512(_mm512_slli_epi32(_mm512_cvtepi8_epi32(b), 20), _mm512_set1_epi32(int32_t(0x87ffffffu)));
  _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_castsi512_ps(u), _mm512_set1_ps(f)));
#else
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c));
  __m256i u = NN ? _mm256_slli_epi32(_mm256_cvtepu8_epi32(b), 20)
                 : _mm256_and_si256(_mm256_slli_epi32(_mm256_cvtepi8_epi32(b), 20), _mm256_set1_epi32(int32_t(0x87ffffffu)));
  _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_castsi256_ps(u), _mm256_set1_ps(f)));
#endif
}
#endif
// The rule over a block, its new states' ranges into r0 and r1.  A block with the fast decode
// goes four vectors of elements at a time: each strip's codes are first decoded into the state
// buffers (q8_scaled_vec: one widening from memory per vector, where GCC widened 64 codes in two
// steps with extractions) and the rule reads them there; after each strip its new states' range
// is taken from the buffer while the strip is still in L1 (GCC vectorizes a strip of one vector
// with narrower vectors, and its stores then cannot forward to the loads).  The rest of it (a
// short last block) and a block with the slow decode take one loop, then the ranges.  (The
// bfloat16 model's pairs loop decodes in the rule's loop: decoding its words first was slower.)
template <class PS, int NS, bool NN0, bool NN1, bool FAST, class Rule>
__attribute__((noinline)) void q8_direct_block(const Rule& rule, typename PS::E* __restrict p,
                                               const typename PS::E* __restrict g, const uint8_t* __restrict c0,
                                               const uint8_t* __restrict c1, float f0, float f1,
                                               float* __restrict s0, float* __restrict s1, int64_t n,
                                               Q8Range* r0, Q8Range* r1) {
  const Rule r = rule;
  int64_t i = 0;
  if constexpr (FAST) {  // the usual block
#if defined(__AVX2__)
    RangeAcc m0, m1;
    constexpr int64_t kStrip = 4 * kQ8Width;
    for (; i + kStrip <= n; i += kStrip) {
      for (int64_t j = i; j < i + kStrip; j += kQ8Width) {
        q8_scaled_vec<NN0>(c0 + j, f0, s0 + j);
        if constexpr (NS > 1) q8_scaled_vec<NN1>(c1 + j, f1, s1 + j);
      }
#pragma omp simd
      for (int64_t j = i; j < i + kStrip; ++j)
        q8_direct_element<PS, NS, NN0, NN1, true, true>(r, p, g, c0, c1, f0, f1, s0, s1, j);
      for (int64_t j = i; j < i + kStrip; j += kQ8Width) {
        m0.add(s0 + j);
        if constexpr (NS > 1) m1.add(s1 + j);
      }
    }
    if (i == n) {
      *r0 = m0.get(s0, 0);
      if constexpr (NS > 1) *r1 = m1.get(s1, 0);
      return;
    }
#endif
  }
  // The rest (a short last block, the slow decode, no vector instructions): one loop, then the
  // ranges of the whole block.
#pragma omp simd
  for (int64_t j = i; j < n; ++j) q8_direct_element<PS, NS, NN0, NN1, FAST, false>(r, p, g, c0, c1, f0, f1, s0, s1, j);
  *r0 = q8_range(s0, n);
  if constexpr (NS > 1) *r1 = q8_range(s1, n);
}

#if defined(__AVX2__)
FASTOPT_ELEMENT uint32_t code_word(const uint8_t* c, int64_t i) {
  uint16_t w;
  std::memcpy(&w, c + 2 * i, 2);
  return w;
}
// A bfloat16 model's block of n elements (a multiple of 2 kQ8Width) two elements per 32-bit word
// as bf16_pairs walks them, and each state's two codes per 16-bit word: the rule run on each
// word's two halves, the new states left in split buffers (the even elements' values in the first
// half, the odd ones' in the second) for q8_encode_block_split.
template <int NS, bool NN0, bool NN1, bool FAST, class Rule>
FASTOPT_ELEMENT void q8_pairs_element(const Rule& r, uint16_t* __restrict p, const uint16_t* __restrict g,
                                      const uint8_t* __restrict c0, const uint8_t* __restrict c1, float f0, float f1,
                                      float* __restrict s0, float* __restrict s1, int64_t h, int64_t i) {
  const uint32_t wp = bf16_word(p, i), wg = bf16_word(g, i), w0 = code_word(c0, i);
  const uint32_t w1 = NS > 1 ? code_word(c1, i) : 0u;
  float pl = bf16_low(wp), ph = bf16_high(wp), gl = bf16_low(wg), gh = bf16_high(wg);
  float al = q8_word_value<FAST, NN0, false>(w0, f0), ah = q8_word_value<FAST, NN0, true>(w0, f0);
  float cl = NS > 1 ? q8_word_value<FAST, NN1, false>(w1, f1) : 0.0f;
  float ch = NS > 1 ? q8_word_value<FAST, NN1, true>(w1, f1) : 0.0f;
  float dl = 0.0f, dh = 0.0f;
  r(pl, gl, al, cl, dl);
  r(ph, gh, ah, ch, dh);
  bf16_put(p, i, pl, ph, RoundNearest{}, 0, 0u);
  s0[i] = al;
  s0[h + i] = ah;
  if constexpr (NS > 1) {
    s1[i] = cl;
    s1[h + i] = ch;
  }
}
// The same walk over words (n: a multiple of 2 kQ8Width, so each half is whole vectors), the
// ranges taken strip by strip as q8_direct_block takes them where the block has the fast decode
// and whole strips, else after one loop.
template <int NS, bool NN0, bool NN1, bool FAST, class Rule>
__attribute__((noinline)) void q8_pairs_block(const Rule& rule, uint16_t* __restrict p, const uint16_t* __restrict g,
                                              const uint8_t* __restrict c0, const uint8_t* __restrict c1, float f0,
                                              float f1, float* __restrict s0, float* __restrict s1, int64_t n,
                                              Q8Range* r0, Q8Range* r1) {
  const Rule r = rule;
  const int64_t h = n / 2;
  constexpr int64_t kStrip = 2 * kQ8Width;
  if (FAST && h % kStrip == 0) {  // the usual block
    RangeAcc m0, m1;
    for (int64_t i = 0; i < h; i += kStrip) {
#pragma omp simd
      for (int64_t j = i; j < i + kStrip; ++j) q8_pairs_element<NS, NN0, NN1, FAST>(r, p, g, c0, c1, f0, f1, s0, s1, h, j);
      for (int64_t j = i; j < i + kStrip; j += kQ8Width) {
        m0.add(s0 + j);
        m0.add(s0 + h + j);
        if constexpr (NS > 1) {
          m1.add(s1 + j);
          m1.add(s1 + h + j);
        }
      }
    }
    *r0 = m0.get(s0, 0);
    if constexpr (NS > 1) *r1 = m1.get(s1, 0);
    return;
  }
#pragma omp simd
  for (int64_t j = 0; j < h; ++j) q8_pairs_element<NS, NN0, NN1, FAST>(r, p, g, c0, c1, f0, f1, s0, s1, h, j);
  *r0 = q8_range(s0, n);
  if constexpr (NS > 1) *r1 = q8_range(s1, n);
}
template <bool NN>
__attribute__((noinline)) void q8_encode_block_split(const float* __restrict x, Q8Range r, uint8_t* __restrict c,
                                                     float* __restrict absmax, int64_t n) {
  const float scale = q8_scale<NN>(r);
  const int64_t h = n / 2;
  int64_t j = 0;
  if (q8_all_normal<NN>(r.amax, r.amin, scale))
    for (; j + 2 * kQ8Width <= h; j += 2 * kQ8Width) q8_encode_split_normal<NN>(x + j, x + h + j, scale, c + 2 * j);
  for (; j < h; j += kQ8Width) q8_encode_split<NN>(x + j, x + h + j, scale, c + 2 * j);
  *absmax = r.amax;
}
#endif

// Whether q8_sweep walks a block of n elements two per 32-bit word (q8_pairs_block, then
// q8_encode_block_split) rather than one by one (q8_direct_block, then q8_encode).
template <class PS>
constexpr bool q8_split([[maybe_unused]] int64_t n) {
#if defined(__AVX2__)
  return PS::bits16 && n % (2 * kQ8Width) == 0;
#else
  return false;
#endif
}

// One block of q8_sweep's rule, the new states left in s0 and s1.
template <class PS, int NS, bool NN0, bool NN1, bool FAST, class Rule>
void q8_rule_block(const Rule& rule, typename PS::E* p, const typename PS::E* g, uint8_t* c0, uint8_t* c1, float f0,
                   float f1, float* s0, float* s1, int64_t n, Q8Range* r0, Q8Range* r1) {
#if defined(__AVX2__)
  if constexpr (PS::bits16) {
    if (q8_split<PS>(n)) return q8_pairs_block<NS, NN0, NN1, FAST>(rule, p, g, c0, c1, f0, f1, s0, s1, n, r0, r1);
  }
#endif
  q8_direct_block<PS, NS, NN0, NN1, FAST>(rule, p, g, c0, c1, f0, f1, s0, s1, n, r0, r1);
}

// A block's new states wait in one of two buffer pairs, with their ranges taken, while the next
// block's rule runs, and are encoded after it: the chain from a block's last value to its codes
// (the range's reduction, the division for the scale) then overlaps the next block's rule loop
// instead of stalling the encode.  Blocks are disjoint, so the order changes no bits.
template <class PS, int NS, bool NN0, bool NN1, class Rule>
void q8_sweep(const Batch& b, const Rule& rule, int nt) {
  const Plan plan(b);
  for_items(plan, nt, [&](int64_t k) {
    const Item& it = plan.items[k];
    auto* p = static_cast<typename PS::E*>(b.slot[0][it.array]) + it.start;
    const auto* g = static_cast<const typename PS::E*>(b.slot[1][it.array]) + it.start;
    uint8_t* c0 = static_cast<uint8_t*>(b.slot[2][it.array]) + it.start;
    float* a0 = static_cast<float*>(b.slot[5][it.array]) + it.start / kQBlock;
    uint8_t* c1 = NS > 1 ? static_cast<uint8_t*>(b.slot[3][it.array]) + it.start : nullptr;
    float* a1 = NS > 1 ? static_cast<float*>(b.slot[6][it.array]) + it.start / kQBlock : nullptr;
    alignas(64) float buf0[2][kQBlock], buf1[2][kQBlock];
    Q8Range r0[2], r1[2];
    // Encodes the waiting block q (its values in buffer pair q & 1).
    auto encode = [&](int64_t q) {
      const int h = int(q & 1);
      const int64_t off = q * kQBlock, n = it.len - off < kQBlock ? it.len - off : kQBlock;
#if defined(__AVX2__)
      if (q8_split<PS>(n)) {
        q8_encode_block_split<NN0>(buf0[h], r0[h], c0 + off, a0 + q, n);
        if constexpr (NS > 1) q8_encode_block_split<NN1>(buf1[h], r1[h], c1 + off, a1 + q, n);
        return;
      }
#endif
      if constexpr (NS > 1) q8_encode_two<NN0, NN1>(buf0[h], r0[h], c0 + off, a0 + q, buf1[h], r1[h], c1 + off, a1 + q, n);
      else q8_encode<NN0>(buf0[h], r0[h], c0 + off, a0 + q, n);
    };
    for (int64_t off = 0, q = 0; off < it.len; off += kQBlock, ++q) {
      const int64_t n = it.len - off < kQBlock ? it.len - off : kQBlock;
      const int h = int(q & 1);
      const float inv0 = a0[q] / (NN0 ? kQUnsigned : kQSigned);
      const float inv1 = NS > 1 ? a1[q] / (NN1 ? kQUnsigned : kQSigned) : 0.0f;
      const float k0 = q8_factor<NN0>(inv0), k1 = q8_factor<NN1>(inv1);
      uint8_t* d1 = NS > 1 ? c1 + off : nullptr;
      float* s1 = NS > 1 ? buf1[h] : nullptr;
      if (q8_fast<NN0>(inv0, k0, c0 + off, n) && (NS < 2 || q8_fast<NN1>(inv1, k1, d1, n)))
        q8_rule_block<PS, NS, NN0, NN1, true>(rule, p + off, g + off, c0 + off, d1, k0, k1, buf0[h], s1, n, &r0[h],
                                              &r1[h]);
      else
        q8_rule_block<PS, NS, NN0, NN1, false>(rule, p + off, g + off, c0 + off, d1, inv0, inv1, buf0[h], s1, n,
                                               &r0[h], &r1[h]);
      if (q > 0) encode(q - 1);
    }
    if (it.len > 0) encode((it.len - 1) / kQBlock);
  });
}

// The 8-bit direct path for the signs of the rule's states (Rule::nonneg, which the bindings'
// roles fix): one instantiation per rule instead of one per combination of signs, which took a
// quarter off the kernels' compile time.  Any other combination (none reaches here) takes the
// buffered path.
template <class PS, class Rule>
bool q8_direct_with(const Batch& b, const Rule& rule, int nt) {
  const Lean& L = *b.lean;
  if constexpr (Rule::nstate == 1) {
    constexpr bool nn0 = Rule::nonneg[0];
    if (L.nonneg[0] != nn0) return false;
    q8_sweep<PS, 1, nn0, false>(b, rule, nt);
    count_q8_direct();
    return true;
  } else if constexpr (Rule::nstate == 2) {
    constexpr bool nn0 = Rule::nonneg[0], nn1 = Rule::nonneg[1];
    if (L.nonneg[0] != nn0 || L.nonneg[1] != nn1) return false;
    q8_sweep<PS, 2, nn0, nn1>(b, rule, nt);
    count_q8_direct();
    return true;
  }
  return false;
}

// The 8-bit direct path where it applies (float32 or bfloat16 parameters and gradients of one
// dtype, rounded to nearest; no gradient pre-processing; one or two states); false otherwise.
template <class Rule>
bool q8_direct(const Batch& b, const Rule& rule, const PreHyper& ph, int nt) {
  const Lean& L = *b.lean;
  if (L.stochastic || L.out >= 0 || L.kahan || L.grad != L.param || L.state != Q8 || pre_mode(ph) != kNoPre)
    return false;
  if (L.param == F32) return q8_direct_with<F32Store>(b, rule, nt);
  if (L.param == BF16) return q8_direct_with<Bf16Store>(b, rule, nt);
  return false;
}

template <class Rule>
void lean_sweep(const Batch& b, const Rule& rule, const PreHyper& ph, int nt) {
  const Lean& L = *b.lean;
  if (!L.stochastic && L.out < 0 && !L.kahan && L.grad == L.param) {
    if (L.param == F32 && L.state == BF16) return direct_sweep<F32Store, Bf16Store, RoundNearest>(b, rule, ph, nt);
    if (L.param == BF16 && L.state == F32) return direct_sweep<Bf16Store, F32Store, RoundNearest>(b, rule, ph, nt);
    if (L.param == BF16 && L.state == BF16) return direct_sweep<Bf16Store, Bf16Store, RoundNearest>(b, rule, ph, nt);
  }
  if (L.stochastic && L.out < 0 && !L.kahan && L.param == BF16 && L.grad == BF16 && !direct_lean_off()) {
    if (L.state == BF16) return direct_sweep<Bf16Store, Bf16Store, RoundStochastic>(b, rule, ph, nt);
    if (L.state == F32) return direct_sweep<Bf16Store, F32Store, RoundStochastic>(b, rule, ph, nt);
  }
  if (!direct_lean_off() && q8_direct(b, rule, ph, nt)) return;
  const Plan plan(b);
  const Pre<float> pre(ph);
  const PreMode mode = pre_mode(ph);
  for_items(plan, nt, [&](int64_t k) {
    const Item& it = plan.items[k];
    alignas(64) float pbuf[kLeanBlock], gbuf[kLeanBlock], sbuf[3][kLeanBlock];
    float* s[3] = {sbuf[0], sbuf[1], sbuf[2]};
    for (int64_t off = 0; off < it.len; off += kLeanBlock) {
      const int64_t i0 = it.start + off, n = it.len - off < kLeanBlock ? it.len - off : kLeanBlock;
      float* p = lean_load(b, 0, L.param, it.array, i0, n, pbuf);
      if (L.kahan) add_bf16(static_cast<const uint16_t*>(b.slot[8][it.array]) + i0, pbuf, n);  // p + what rounding dropped
      float* g = lean_load(b, 1, L.grad, it.array, i0, n, gbuf);
      if (mode != kNoPre && g != gbuf) {  // the gradients are read, never written
        copy_f32(g, gbuf, n);
        g = gbuf;
      }
      for (int j = 0; j < Rule::nstate; ++j) s[j] = lean_load(b, 2 + j, L.state, it.array, i0, n, sbuf[j], L.nonneg[j]);
      if (mode == kPre) transform_range<float, false>(pre, g, nullptr, n);
      else if (mode == kPrePenalty) transform_range<float, true>(pre, g, p, n);
      sweep_range<float, kNoPre>(rule, pre, p, g, s[0], s[1], s[2], n);
      lean_store(b, 0, L.param, it.array, i0, n, p, L);
      if (L.out >= 0) lean_store(b, 8, L.out, it.array, i0, n, p, L);
      if (L.kahan)  // the new compensation: the exact value less its rounding
        kahan_residual(p, static_cast<const uint16_t*>(b.slot[0][it.array]) + i0,
                       static_cast<uint16_t*>(b.slot[8][it.array]) + i0, n);
      for (int j = 0; j < Rule::nstate; ++j) lean_store(b, 2 + j, L.state, it.array, i0, n, s[j], L, L.nonneg[j]);
    }
  });
}

}  // namespace FASTOPT_ISA_NS
}  // namespace fastopt
