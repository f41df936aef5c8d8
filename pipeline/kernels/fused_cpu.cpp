// Fused hidden layer of the MAC-VR confidence MLP for a tile of (caption, video) pairs.
//
// For caption i, video j and concept k (see pipeline/kernels/__init__.py for the algebra):
//   h      = relu(cap[i, k, :] + sum_r a[j, i, r] * proj[j, r, k, :])      (H values)
//   w_ijk  = h . w2 + b2
//   s_ij  += w_ijk * cos[j, k, i]
// The H-wide vector h lives in SIMD registers only: the unfused form writes K*H values per pair
// to memory and reads them back twice (ReLU, second layer), which made it memory-bound.
//
// Register tile: IB captions x VB SIMD vectors of h (the same proj rows serve IB captions, the
// same a[j, i, r] broadcast serves VB vectors). Rows r whose weight is zero for every caption
// (padded frames) are skipped, so padded videos cost proportionally less.
// Plain C++ with GCC/Clang vector extensions: the compiler emits AVX-512, AVX2 or SSE/NEON code
// for the machine it is built on (-march=native); no intrinsics, no torch headers (fast build,
// called through ctypes, which releases the GIL so Python threads can split the videos).

#include <cstdint>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

namespace {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
constexpr int kRegs = 32;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
constexpr int kRegs = 16;
#else
constexpr int kVecBytes = 16;
constexpr int kRegs = 16;
#endif

// Register tile: kTileCaptions x kTileVectors accumulators + kTileVectors rows + kTileCaptions
// w2 sums + 1 broadcast must fit the vector registers (4x4 measured best of 4x4..8x3 on AVX-512).
#ifndef MACVR_TILE_CAPTIONS
#define MACVR_TILE_CAPTIONS (kRegs >= 32 ? 4 : 3)
#endif
#ifndef MACVR_TILE_VECTORS
#define MACVR_TILE_VECTORS (kRegs >= 32 ? 4 : 2)
#endif
constexpr int kTileCaptions = MACVR_TILE_CAPTIONS;
constexpr int kTileVectors = MACVR_TILE_VECTORS;

template <typename T> struct Vec;
template <> struct Vec<float> { typedef float type __attribute__((vector_size(kVecBytes))); };
template <> struct Vec<double> { typedef double type __attribute__((vector_size(kVecBytes))); };

template <typename T> inline typename Vec<T>::type load(const T* p) {
    typename Vec<T>::type v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// max(x, 0): one vmaxps/vmaxpd (GCC does not turn the vector ternary into one).
template <typename T> inline typename Vec<T>::type relu(typename Vec<T>::type x) {
    typedef typename Vec<T>::type V;
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) return (V)_mm512_max_ps((__m512)x, _mm512_setzero_ps());
    else return (V)_mm512_max_pd((__m512d)x, _mm512_setzero_pd());
#elif defined(__AVX__)
    if constexpr (sizeof(T) == 4) return (V)_mm256_max_ps((__m256)x, _mm256_setzero_ps());
    else return (V)_mm256_max_pd((__m256d)x, _mm256_setzero_pd());
#else
    const V zero = {};
    return x > zero ? x : zero;
#endif
}

template <typename T> inline T hsum(typename Vec<T>::type v) {
    constexpr int L = kVecBytes / sizeof(T);
    T s = 0;
    for (int l = 0; l < L; ++l) s += v[l];
    return s;
}

// sum over the h-block [h0, h0 + VB*L) of relu(cap + sum_r a_r proj_r) * w2, for IB captions,
// added into acc_w[IB] (one vector each).
template <typename T, int IB, int VB>
inline void micro(const T* const* cap, const T* wts, int64_t nr, const T* proj, int64_t row_stride,
                  const T* w2, typename Vec<T>::type* acc_w) {
    typedef typename Vec<T>::type V;
    constexpr int L = kVecBytes / sizeof(T);
    V acc[IB][VB];
    for (int ii = 0; ii < IB; ++ii)
        for (int v = 0; v < VB; ++v) acc[ii][v] = load(cap[ii] + v * L);
    for (int64_t r = 0; r < nr; ++r) {
        const T* p = proj + r * row_stride;
        V pv[VB];
        for (int v = 0; v < VB; ++v) pv[v] = load(p + v * L);
        for (int ii = 0; ii < IB; ++ii) {
            const T s = wts[ii * nr + r];
            for (int v = 0; v < VB; ++v) acc[ii][v] += s * pv[v];
        }
    }
    V w2v[VB];
    for (int v = 0; v < VB; ++v) w2v[v] = load(w2 + v * L);
    for (int ii = 0; ii < IB; ++ii)
        for (int v = 0; v < VB; ++v) acc_w[ii] += relu<T>(acc[ii][v]) * w2v[v];
}

// One concept of one video for IB captions: w[ii] = relu(...) . w2 over all H (no bias).
template <typename T, int IB>
inline void concept_block(const T* const* cap, const T* wts, int64_t nr, const T* proj, int64_t row_stride,
                          const T* w2, int64_t H, T* w) {
    typedef typename Vec<T>::type V;
    constexpr int L = kVecBytes / sizeof(T);
    // Accumulators: IB*VB + VB + IB + 1 registers must fit.
    constexpr int VB = kTileVectors;
    V acc_w[IB];
    for (int ii = 0; ii < IB; ++ii) acc_w[ii] = V{};
    const T* c[IB];
    for (int ii = 0; ii < IB; ++ii) c[ii] = cap[ii];
    int64_t h = 0;
    for (; h + VB * L <= H; h += VB * L) {
        micro<T, IB, VB>(c, wts, nr, proj + h, row_stride, w2 + h, acc_w);
        for (int ii = 0; ii < IB; ++ii) c[ii] += VB * L;
    }
    for (; h + L <= H; h += L) {
        micro<T, IB, 1>(c, wts, nr, proj + h, row_stride, w2 + h, acc_w);
        for (int ii = 0; ii < IB; ++ii) c[ii] += L;
    }
    for (int ii = 0; ii < IB; ++ii) w[ii] = hsum<T>(acc_w[ii]);
    for (; h < H; ++h) {  // scalar tail (H not a multiple of the vector width)
        for (int ii = 0; ii < IB; ++ii) {
            T x = cap[ii][h];
            for (int64_t r = 0; r < nr; ++r) x += wts[ii * nr + r] * proj[r * row_stride + h];
            w[ii] += (x > 0 ? x : 0) * w2[h];
        }
    }
}

template <typename T, int IB>
inline void caption_group(int64_t k, int64_t K, int64_t H, int64_t I, const T* cap_rows, int64_t i0, const T* wts,
                          int64_t nr, const T* proj_j, int64_t row_stride, const T* w2, T b2, const T* cos_j,
                          T* out_j) {
    const T* cap[IB];
    T w[IB];
    for (int ii = 0; ii < IB; ++ii) cap[ii] = cap_rows + (i0 + ii) * K * H + k * H;
    concept_block<T, IB>(cap, wts, nr, proj_j + k * H, row_stride, w2, H, w);
    for (int ii = 0; ii < IB; ++ii) out_j[i0 + ii] += (w[ii] + b2) * cos_j[k * I + i0 + ii];
}

// Scores out[j, i] (j in [j0, j1)) for all I captions. Layouts (contiguous):
//   a [J, I, R] weights, active [J, R] (0 = row skipped), proj [J, R, K*H], cap [I, K*H],
//   w2 [H], cos [J, K, I], out [J, I] (overwritten).
template <typename T>
void fused_scores(int64_t J, int64_t I, int64_t R, int64_t K, int64_t H, const T* a, const uint8_t* active,
                  const T* proj, const T* cap, const T* w2, T b2, const T* cos, T* out, int64_t j0, int64_t j1,
                  int64_t caption_block) {
    constexpr int IB = kTileCaptions;
    const int64_t KH = K * H;
    if (caption_block <= 0) caption_block = I;
    int64_t rows[4096];
    if (R > 4096) return;  // checked by the caller
    T* wts = new T[caption_block * R > 0 ? caption_block * R : 1];
    for (int64_t c0 = 0; c0 < I; c0 += caption_block) {
        const int64_t c1 = c0 + caption_block < I ? c0 + caption_block : I;
        for (int64_t j = j0; j < j1; ++j) {
            int64_t nr = 0;
            for (int64_t r = 0; r < R; ++r)
                if (active[j * R + r]) rows[nr++] = r;
            // Compact the weights of the active rows: wts[(i - c0) * nr + r'].
            for (int64_t i = c0; i < c1; ++i)
                for (int64_t q = 0; q < nr; ++q) wts[(i - c0) * nr + q] = a[(j * I + i) * R + rows[q]];
            // Active rows are usually a prefix (padding at the end); gather them when they are not.
            const T* proj_j = proj + j * R * KH;
            bool prefix = true;
            for (int64_t q = 0; q < nr; ++q) prefix = prefix && rows[q] == q;
            T* packed = nullptr;
            if (!prefix) {
                packed = new T[nr * KH];
                for (int64_t q = 0; q < nr; ++q) std::memcpy(packed + q * KH, proj_j + rows[q] * KH, KH * sizeof(T));
                proj_j = packed;
            }
            T* out_j = out + j * I;
            const T* cos_j = cos + j * K * I;
            for (int64_t i = c0; i < c1; ++i) out_j[i] = 0;
            // Concept outermost: the rows proj[j, :, k, :] (nr * H values) stay in L1 while every
            // caption group of the block reads them.
            for (int64_t k = 0; k < K; ++k) {
                int64_t i = c0;
                for (; i + IB <= c1; i += IB)
                    caption_group<T, IB>(k, K, H, I, cap, i, wts + (i - c0) * nr, nr, proj_j, KH, w2, b2, cos_j, out_j);
                for (; i < c1; ++i)
                    caption_group<T, 1>(k, K, H, I, cap, i, wts + (i - c0) * nr, nr, proj_j, KH, w2, b2, cos_j, out_j);
            }
            delete[] packed;
        }
    }
    delete[] wts;
}

}  // namespace

extern "C" {

int macvr_fused_abi_version() { return 1; }

int macvr_fused_vector_bytes() { return kVecBytes; }

void macvr_fused_scores_f32(int64_t J, int64_t I, int64_t R, int64_t K, int64_t H, const float* a,
                            const uint8_t* active, const float* proj, const float* cap, const float* w2, float b2,
                            const float* cos, float* out, int64_t j0, int64_t j1, int64_t caption_block) {
    fused_scores<float>(J, I, R, K, H, a, active, proj, cap, w2, b2, cos, out, j0, j1, caption_block);
}

void macvr_fused_scores_f64(int64_t J, int64_t I, int64_t R, int64_t K, int64_t H, const double* a,
                            const uint8_t* active, const double* proj, const double* cap, const double* w2, double b2,
                            const double* cos, double* out, int64_t j0, int64_t j1, int64_t caption_block) {
    fused_scores<double>(J, I, R, K, H, a, active, proj, cap, w2, b2, cos, out, j0, j1, caption_block);
}

}  // extern "C"
