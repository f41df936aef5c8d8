// Fused hidden layer of the MAC-VR confidence MLP for a tile of (caption, video) pairs.
//
// For caption i, video j and concept k (see pipeline/kernels/__init__.py for the algebra):
//   h      = relu(cap[i, k, :] + sum_r a[j, i, r] * proj[j, r, k, :])      (H values)
//   w_ijk  = h . w2 + b2
//   s_ij  += w_ijk * cos_ijk      (cos from the pooling weights and two small GEMM outputs)
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
#include <vector>
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

// The concept-k cosines of video j and captions [c0, c1), from the pooling weights of its nf
// real frames (the same operations, in the same order, as pipeline.scoring._pair_terms):
//   num = sum_n a_n <F'^k_n, e_t^k>,  sq = ||e_v^k||^2 = sum_n a_n (G^k a)_n,  cos = num / (sqrt(sq) ||e_t^k||)
// Every array is contiguous over captions, so the loops vectorise across captions.
template <typename T>
inline void cosines(const T* a_j, int64_t nf, const int64_t* rows, const T* r_kj, const T* ga_jk,
                    const T* t_norm_k, int64_t I, int64_t c0, int64_t c1, T* num, T* sq, T* cos) {
    const int64_t n = c1 - c0;
    for (int64_t i = 0; i < n; ++i) num[i] = sq[i] = 0;
    for (int64_t q = 0; q < nf; ++q) {
        const T* aq = a_j + rows[q] * I + c0;
        const T* rq = r_kj + rows[q] * I + c0;
        const T* gq = ga_jk + rows[q] * I + c0;
        for (int64_t i = 0; i < n; ++i) {
            num[i] += aq[i] * rq[i];
            sq[i] += aq[i] * gq[i];
        }
    }
    for (int64_t i = 0; i < n; ++i) {
        const T s = sq[i] > 0 ? sq[i] : 0;
        cos[i] = num[i] / (__builtin_sqrt(s) * t_norm_k[c0 + i]);
    }
}

// Scores out[j, i] (j in [j0, j1)) for all I captions. Layouts (contiguous):
//   a [J, N, I] pooling weights (0 on padded frames), mask [J, N] (0 = padded frame),
//   proj [J, R, K*H] with R = N + extra_row (the extra row, if any, has weight 1),
//   cap [I, K*H], w2 [H], r [K, J, N, I] = <F'^k_jn, e_t^k(i)>, ga [J, K, N, I] = (G^k_j a_ij)_n,
//   t_norm [K, I] = ||e_t^k(i)||, out [J, I] (overwritten).
template <typename T>
void fused_scores(int64_t J, int64_t I, int64_t N, int64_t K, int64_t H, int64_t extra_row, const T* a,
                  const uint8_t* mask, const T* proj, const T* cap, const T* w2, T b2, const T* r, const T* ga,
                  const T* t_norm, T* out, int64_t j0, int64_t j1, int64_t caption_block) {
    constexpr int IB = kTileCaptions;
    const int64_t KH = K * H, R = N + (extra_row ? 1 : 0);
    if (caption_block <= 0) caption_block = I;
    if (caption_block > I) caption_block = I;
    std::vector<int64_t> rows(R);
    std::vector<T> wts(caption_block * R > 0 ? caption_block * R : 1);
    std::vector<T> packed, num(I), sq(I), cos(static_cast<size_t>(j1 - j0) * K * I);
    T w[IB];
    // Cosines first, for all captions of each video and concept: contiguous streams over captions.
    for (int64_t j = j0; j < j1; ++j) {
        int64_t nf = 0;
        for (int64_t n = 0; n < N; ++n)
            if (mask[j * N + n]) rows[nf++] = n;
        for (int64_t k = 0; k < K; ++k)
            cosines(a + j * N * I, nf, rows.data(), r + (k * J + j) * N * I, ga + (j * K + k) * N * I, t_norm + k * I,
                    I, int64_t(0), I, num.data(), sq.data(), cos.data() + ((j - j0) * K + k) * I);
    }
    for (int64_t c0 = 0; c0 < I; c0 += caption_block) {
        const int64_t c1 = c0 + caption_block < I ? c0 + caption_block : I;
        for (int64_t j = j0; j < j1; ++j) {
            // Rows with a weight: the real frames, then the video-only row (after_softmax masking).
            int64_t nf = 0;
            for (int64_t n = 0; n < N; ++n)
                if (mask[j * N + n]) rows[nf++] = n;
            int64_t nr = nf;
            if (extra_row) rows[nr++] = N;
            // Compact weights per caption: wts[(i - c0) * nr + q].
            for (int64_t i = c0; i < c1; ++i) {
                for (int64_t q = 0; q < nf; ++q) wts[(i - c0) * nr + q] = a[(j * N + rows[q]) * I + i];
                if (extra_row) wts[(i - c0) * nr + nf] = 1;
            }
            // Real frames are usually a prefix (padding at the end); gather the rows when not.
            const T* proj_j = proj + j * R * KH;
            bool prefix = true;
            for (int64_t q = 0; q < nr; ++q) prefix = prefix && rows[q] == q;
            if (!prefix) {
                packed.resize(nr * KH);
                for (int64_t q = 0; q < nr; ++q)
                    std::memcpy(packed.data() + q * KH, proj_j + rows[q] * KH, KH * sizeof(T));
                proj_j = packed.data();
            }
            T* out_j = out + j * I;
            for (int64_t i = c0; i < c1; ++i) out_j[i] = 0;
            // Concept outermost: the rows proj[j, :, k, :] (nr * H values) stay in L1 while every
            // caption group of the block reads them.
            for (int64_t k = 0; k < K; ++k) {
                const T* cos_jk = cos.data() + ((j - j0) * K + k) * I;
                const T* cap_k = cap + k * H;
                int64_t i = c0;
                for (; i + IB <= c1; i += IB) {
                    const T* c[IB];
                    for (int ii = 0; ii < IB; ++ii) c[ii] = cap_k + (i + ii) * KH;
                    concept_block<T, IB>(c, wts.data() + (i - c0) * nr, nr, proj_j + k * H, KH, w2, H, w);
                    for (int ii = 0; ii < IB; ++ii) out_j[i + ii] += (w[ii] + b2) * cos_jk[i + ii];
                }
                for (; i < c1; ++i) {
                    const T* c[1] = {cap_k + i * KH};
                    concept_block<T, 1>(c, wts.data() + (i - c0) * nr, nr, proj_j + k * H, KH, w2, H, w);
                    out_j[i] += (w[0] + b2) * cos_jk[i];
                }
            }
        }
    }
}

}  // namespace

extern "C" {

int macvr_fused_abi_version() { return 2; }

int macvr_fused_vector_bytes() { return kVecBytes; }

void macvr_fused_scores_f32(int64_t J, int64_t I, int64_t N, int64_t K, int64_t H, int64_t extra_row, const float* a,
                            const uint8_t* mask, const float* proj, const float* cap, const float* w2, float b2,
                            const float* r, const float* ga, const float* t_norm, float* out, int64_t j0, int64_t j1,
                            int64_t caption_block) {
    fused_scores<float>(J, I, N, K, H, extra_row, a, mask, proj, cap, w2, b2, r, ga, t_norm, out, j0, j1,
                        caption_block);
}

void macvr_fused_scores_f64(int64_t J, int64_t I, int64_t N, int64_t K, int64_t H, int64_t extra_row, const double* a,
                            const uint8_t* mask, const double* proj, const double* cap, const double* w2, double b2,
                            const double* r, const double* ga, const double* t_norm, double* out, int64_t j0,
                            int64_t j1, int64_t caption_block) {
    fused_scores<double>(J, I, N, K, H, extra_row, a, mask, proj, cap, w2, b2, r, ga, t_norm, out, j0, j1,
                         caption_block);
}

}  // extern "C"
