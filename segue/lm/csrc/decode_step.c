/* One decoding step of segue's transformer (segue/lm/model.py) for a small batch, in one C call.
 *
 * At small batches a step reads every weight once and does little arithmetic on it; in PyTorch
 * it also makes ~100 small kernel calls, each with its own dispatch cost. This file does the
 * whole step in one call: embedding rows, every block (LayerNorm, fused qkv, rotary, cached
 * attention, projection, LayerNorm, tanh-GELU MLP), the final LayerNorm and the output layer's
 * rows [lo, hi). It is the same arithmetic as `Transformer.extend` for one position, in float32,
 * with another summation order. At batch 1 the matrices are read as vectors times matrices; at
 * batch > 1 each block of weights is loaded into registers once and used for four sequences
 * (the batch shares one read of the weights, which is what makes batching pay). Matrices are stored transposed, [in, out] row-major, in float32 or
 * float16 (`half`; values are converted to float32 before any arithmetic, so a model whose
 * weights are float16 values -- a bundle saved in half precision -- gives the same results
 * while reading half the bytes).
 *
 * Built by segue/lm/fused.py with the system C compiler (-O3 -march=native) and called through
 * ctypes: no PyTorch headers, no Python API.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif


/* Per layer, the pointers in this order: norm1 [D], qkv [D, (H + 2G) hd], proj [D, D],
 * norm2 [D], up [D, hidden], down [hidden, D]. */
enum { NORM1, QKV, PROJ, NORM2, UP, DOWN, PER_LAYER };

#define EPS 1e-5f

/* Everything a step reads and writes. segue/lm/fused.py mirrors it as a ctypes.Structure and
 * checks, when it loads the library, that its size and every field's offset match
 * (segue_step_layout). */
typedef struct {
    int64_t size; /* sizeof(SegueStep), as the caller sees it */
    /* the shape */
    int64_t d_model, n_head, n_kv_head, head_dim, hidden, n_layer, max_len, half, batch;
    /* the weights: embed [vocab, D]; layers: n_layer * PER_LAYER pointers; norm [D];
     * head [D, ld_head] (the output layer transposed) */
    const float *embed;
    void *const *layers;
    const float *norm;
    const void *head;
    int64_t ld_head;
    /* the cache: kv [n_layer, 2, batch, n_kv_head, max_len, head_dim] */
    float *kv;
    /* scratch memory of segue_step_scratch(step) floats, owned by the caller */
    float *scratch;
    int64_t scratch_floats;
    /* this step: tokens [batch] enter at position pos; cos, sin [(H + 2G) hd]: the rotary rows
     * of pos; logits [batch, hi - lo]: the output layer's columns lo..hi */
    const int64_t *tokens;
    const float *cos_, *sin_;
    int64_t pos, lo, hi;
    float *logits;
} SegueStep;

#define FIELDS(X)                                                                            \
    X(size) X(d_model) X(n_head) X(n_kv_head) X(head_dim) X(hidden) X(n_layer) X(max_len)    \
    X(half) X(batch) X(embed) X(layers) X(norm) X(head) X(ld_head) X(kv) X(scratch)          \
    X(scratch_floats) X(tokens) X(cos_) X(sin_) X(pos) X(lo) X(hi) X(logits)

/* The field names, comma-separated, in FIELDS order. */
const char *segue_step_fields(void) {
#define NAME(f) #f ","
    return FIELDS(NAME);
#undef NAME
}

/* out[0] = sizeof(SegueStep), then the offset and the size of each field in FIELDS order;
 * returns the number of values written (1 + 2 * fields) or -1 when n is too small. */
int64_t segue_step_layout(int64_t *out, int64_t n) {
    int64_t i = 0, need = 1;
#define COUNT(f) need += 2;
    FIELDS(COUNT)
#undef COUNT
    if (n < need) return -1;
    out[i++] = (int64_t)sizeof(SegueStep);
#define PLACE(f)                                          \
    out[i++] = (int64_t)offsetof(SegueStep, f);           \
    out[i++] = (int64_t)sizeof(((SegueStep *)0)->f);
    FIELDS(PLACE)
#undef PLACE
    return i;
}

/* Floats of scratch memory a step of this shape needs: per sequence the residual stream, the
 * normed input, qkv, the attention output and the MLP's hidden layer; attention scores of every
 * head of a key/value group for every cached position. */
int64_t segue_step_scratch(const SegueStep *s) {
    const int64_t n_qkv = (s->n_head + 2 * s->n_kv_head) * s->head_dim;
    const int64_t per_group = s->n_kv_head > 0 ? s->n_head / s->n_kv_head : s->n_head;
    return s->batch * (3 * s->d_model + n_qkv + s->hidden) + per_group * s->max_len;
}

/* y[0:n] (+)= x[0:in] @ W[0:in, 0:n], W row-major with leading dimension ld. Four rows of W per
 * pass over y: y is read and written a quarter as often. */
static void matvec_f32(const float *restrict x, const float *restrict w, int64_t in, int64_t ld,
                       int64_t n, float *restrict y, int accumulate) {
    if (!accumulate) memset(y, 0, (size_t)n * sizeof(float));
    int64_t i = 0;
    for (; i + 4 <= in; i += 4) {
        const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        const float *w0 = w + i * ld, *w1 = w0 + ld, *w2 = w1 + ld, *w3 = w2 + ld;
        for (int64_t j = 0; j < n; j++) y[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j];
    }
    for (; i < in; i++) {
        const float xi = x[i];
        const float *wi = w + i * ld;
        for (int64_t j = 0; j < n; j++) y[j] += xi * wi[j];
    }
}

/* float16 bits -> float32 (scalar; the vector loops below convert 16 or 8 at a time). */
static inline float half_to_float(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff, bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000 | (mantissa << 13);
    } else if (exponent) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa) { /* subnormal: normalise */
        int shift = 0;
        while (!(mantissa & 0x400)) mantissa <<= 1, shift++;
        bits = sign | ((uint32_t)(113 - shift) << 23) | ((mantissa & 0x3ff) << 13);
    } else {
        bits = sign;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

/* The float32 vector the float16 loop uses: 16 lanes with AVX-512, 8 with AVX2 + F16C + FMA,
 * none (scalar loops only) otherwise. VEC_LOAD_HALF converts LANES float16 values. */
#if defined(__AVX512F__)
#define LANES 16
#define VEC __m512
#define VEC_SET1 _mm512_set1_ps
#define VEC_LOAD _mm512_loadu_ps
#define VEC_STORE _mm512_storeu_ps
#define VEC_FMA _mm512_fmadd_ps
#define VEC_LOAD_HALF(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define VEC_SUM _mm512_reduce_add_ps
#define VEC_ADD _mm512_add_ps
#define TILE_COLS 4 /* 4 x 4 sums + 4 weight vectors + 1 of 32 registers */
#elif defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#define LANES 8
#define VEC __m256
#define VEC_SET1 _mm256_set1_ps
#define VEC_LOAD _mm256_loadu_ps
#define VEC_STORE _mm256_storeu_ps
#define VEC_FMA _mm256_fmadd_ps
#define VEC_LOAD_HALF(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define VEC_ADD _mm256_add_ps
#define TILE_COLS 2 /* 4 x 2 sums + 2 weight vectors + 1 of 16 registers */
static inline float VEC_SUM(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#endif

/* matvec_f32 with float16 weights (GCC does not vectorize the conversion by itself). */
static void matvec_f16(const float *restrict x, const uint16_t *restrict w, int64_t in,
                       int64_t ld, int64_t n, float *restrict y, int accumulate) {
    if (!accumulate) memset(y, 0, (size_t)n * sizeof(float));
    int64_t i = 0;
    for (; i + 4 <= in; i += 4) {
        const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        const uint16_t *w0 = w + i * ld, *w1 = w0 + ld, *w2 = w1 + ld, *w3 = w2 + ld;
        int64_t j = 0;
#ifdef LANES
        const VEC v0 = VEC_SET1(x0), v1 = VEC_SET1(x1), v2 = VEC_SET1(x2), v3 = VEC_SET1(x3);
        for (; j + LANES <= n; j += LANES) {
            VEC acc = VEC_LOAD(y + j);
            acc = VEC_FMA(v0, VEC_LOAD_HALF(w0 + j), acc);
            acc = VEC_FMA(v1, VEC_LOAD_HALF(w1 + j), acc);
            acc = VEC_FMA(v2, VEC_LOAD_HALF(w2 + j), acc);
            acc = VEC_FMA(v3, VEC_LOAD_HALF(w3 + j), acc);
            VEC_STORE(y + j, acc);
        }
#endif
        for (; j < n; j++)
            y[j] += x0 * half_to_float(w0[j]) + x1 * half_to_float(w1[j]) +
                    x2 * half_to_float(w2[j]) + x3 * half_to_float(w3[j]);
    }
    for (; i < in; i++) {
        const float xi = x[i];
        const uint16_t *wi = w + i * ld;
        for (int64_t j = 0; j < n; j++) y[j] += xi * half_to_float(wi[j]);
    }
}

static void matvec(const float *x, const void *w, int64_t in, int64_t ld, int64_t n, float *y,
                   int accumulate, int half) {
    if (half)
        matvec_f16(x, (const uint16_t *)w, in, ld, n, y, accumulate);
    else
        matvec_f32(x, (const float *)w, in, ld, n, y, accumulate);
}

#ifdef LANES
#define TILE_ROWS 4 /* sequences per tile */
/* Columns [j, j + COLS * LANES) of Y[b] (+)= X[b] @ W for ROWS sequences b: the weights of
 * each input row are loaded (and converted) once, into COLS vectors, and used for every sequence;
 * the ROWS x COLS sums stay in registers over the whole input. Inlined with constant ROWS, COLS
 * and HALF, so that the compiler unrolls the small loops. */
static inline __attribute__((always_inline)) void matmul_tile(
    const float *restrict x, int64_t ldx, const void *restrict w, int64_t in, int64_t ld,
    int64_t j, float *restrict y, int64_t ldy, int accumulate, const int half, const int rows,
    const int cols) {
    VEC acc[TILE_ROWS][TILE_COLS];
    for (int b = 0; b < rows; b++)
        for (int c = 0; c < cols; c++)
            acc[b][c] = accumulate ? VEC_LOAD(y + b * ldy + j + c * LANES) : VEC_SET1(0.f);
    for (int64_t i = 0; i < in; i++) {
        VEC wv[TILE_COLS];
        for (int c = 0; c < cols; c++) {
            const int64_t at = i * ld + j + c * LANES;
            wv[c] = half ? VEC_LOAD_HALF((const uint16_t *)w + at) : VEC_LOAD((const float *)w + at);
        }
        for (int b = 0; b < rows; b++) {
            const VEC xv = VEC_SET1(x[b * ldx + i]);
            for (int c = 0; c < cols; c++) acc[b][c] = VEC_FMA(xv, wv[c], acc[b][c]);
        }
    }
    for (int b = 0; b < rows; b++)
        for (int c = 0; c < cols; c++) VEC_STORE(y + b * ldy + j + c * LANES, acc[b][c]);
}

/* Up to four sequences, every column: tiles of two vectors, then one, then a scalar tail. */
static inline __attribute__((always_inline)) void matmul_rows(
    const float *x, int64_t ldx, const void *w, int64_t in, int64_t ld, int64_t n, float *y,
    int64_t ldy, int accumulate, const int half, const int rows) {
    int64_t j = 0;
    for (; j + TILE_COLS * LANES <= n; j += TILE_COLS * LANES)
        matmul_tile(x, ldx, w, in, ld, j, y, ldy, accumulate, half, rows, TILE_COLS);
    for (; j + LANES <= n; j += LANES)
        matmul_tile(x, ldx, w, in, ld, j, y, ldy, accumulate, half, rows, 1);
    for (; j < n; j++)
        for (int b = 0; b < rows; b++) {
            float sum = accumulate ? y[b * ldy + j] : 0.f;
            for (int64_t i = 0; i < in; i++) {
                const float wij = half ? half_to_float(((const uint16_t *)w)[i * ld + j])
                                       : ((const float *)w)[i * ld + j];
                sum += x[b * ldx + i] * wij;
            }
            y[b * ldy + j] = sum;
        }
}

#endif

/* Y[b, 0:n] (+)= X[b, 0:in] @ W[0:in, 0:n] for b < batch; rows of X are ldx apart, of Y ldy. */
static void matmul(const float *x, int64_t ldx, const void *w, int64_t in, int64_t ld, int64_t n,
                   float *y, int64_t ldy, int64_t batch, int accumulate, int half) {
#ifdef LANES
    int64_t b = 0;
    for (; b + TILE_ROWS <= batch; b += TILE_ROWS) {
        if (half)
            matmul_rows(x + b * ldx, ldx, w, in, ld, n, y + b * ldy, ldy, accumulate, 1, TILE_ROWS);
        else
            matmul_rows(x + b * ldx, ldx, w, in, ld, n, y + b * ldy, ldy, accumulate, 0, TILE_ROWS);
    }
    for (; b < batch; b++) {
        if (half)
            matmul_rows(x + b * ldx, ldx, w, in, ld, n, y + b * ldy, ldy, accumulate, 1, 1);
        else
            matmul_rows(x + b * ldx, ldx, w, in, ld, n, y + b * ldy, ldy, accumulate, 0, 1);
    }
#else
    for (int64_t b = 0; b < batch; b++)
        matvec(x + b * ldx, w, in, ld, n, y + b * ldy, accumulate, half);
#endif
}

/* out = LayerNorm(x) * weight (no bias), biased variance, as F.layer_norm. */
static void layer_norm(const float *restrict x, const float *restrict weight, int64_t d,
                       float *restrict out) {
    float mean = 0.f, var = 0.f;
    for (int64_t i = 0; i < d; i++) mean += x[i];
    mean /= (float)d;
    for (int64_t i = 0; i < d; i++) var += (x[i] - mean) * (x[i] - mean);
    const float scale = 1.f / sqrtf(var / (float)d + EPS);
    for (int64_t i = 0; i < d; i++) out[i] = (x[i] - mean) * scale * weight[i];
}

/* tanh-approximate GELU, in place. tanh(u) = 1 - 2 / (exp(2u) + 1), which vectorizes. */
static void gelu_tanh(float *x, int64_t n) {
    const float c = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        float u = 2.f * c * (v + 0.044715f * v * v * v);
        u = fminf(fmaxf(u, -80.f), 80.f);
        const float t = 1.f - 2.f / (expf(u) + 1.f);
        x[i] = 0.5f * v * (1.f + t);
    }
}

/* a[2i], a[2i+1] -> a[2i] cos[2i] + a[2i+1] sin[2i], a[2i+1] cos[2i+1] + a[2i] sin[2i+1]
 * (sin carries the sign: the table of Transformer.step_rope). */
static void rotate(float *restrict a, const float *restrict cos_, const float *restrict sin_,
                   int64_t n) {
    for (int64_t i = 0; i < n; i += 2) {
        const float a0 = a[i], a1 = a[i + 1];
        a[i] = a0 * cos_[i] + a1 * sin_[i];
        a[i + 1] = a1 * cos_[i + 1] + a0 * sin_[i + 1];
    }
}

/* Attention of the n_head queries q [H, hd] of one sequence over positions 0..pos of its cache:
 * keys, values [G, max_len, hd] -> y [H, hd]. scores: scratch of pos + 1 floats. The plain
 * loops, for head sizes the vector version does not take and CPUs without vectors. */
static void attend_scalar(const float *q, const float *keys_, const float *values_, int64_t heads,
                   int64_t groups, int64_t hd, int64_t max_len, int64_t pos, float *y,
                   float *scores) {
    const int64_t per_group = heads / groups;
    const float scale = 1.f / sqrtf((float)hd);
    for (int64_t h = 0; h < heads; h++) {
        const int64_t g = h / per_group;
        const float *keys = keys_ + g * max_len * hd;
        const float *values = values_ + g * max_len * hd;
        const float *qh = q + h * hd;
        float top = -3.0e38f; /* no infinities: built with -ffast-math */
        for (int64_t t = 0; t <= pos; t++) {
            const float *k = keys + t * hd;
            float s = 0.f;
            for (int64_t j = 0; j < hd; j++) s += qh[j] * k[j];
            scores[t] = s * scale;
            top = fmaxf(top, scores[t]);
        }
        float total = 0.f;
        for (int64_t t = 0; t <= pos; t++) {
            scores[t] = expf(scores[t] - top);
            total += scores[t];
        }
        float *yh = y + h * hd;
        memset(yh, 0, (size_t)hd * sizeof(float));
        for (int64_t t = 0; t <= pos; t++) {
            const float p = scores[t] / total;
            const float *v = values + t * hd;
            for (int64_t j = 0; j < hd; j++) yh[j] += p * v[j];
        }
    }
}

#ifdef LANES
#define KEY_BLOCK 64 /* positions whose keys (values) stay in L1 while every head of a group reads them */

/* attend for heads of NV * LANES values, in vectors. The heads that share a key/value head
 * (multi-query and grouped attention) read each block of KEY_BLOCK keys, then values, while it
 * is in L1: the cache is read from memory once per group, not once per head. A head's query and
 * sums stay in registers; four keys are scored at a time and two values added at a time
 * (independent sums: one running sum would wait on the previous FMA at every position).
 * scores: per_group * (pos + 1) floats. */
static inline __attribute__((always_inline)) void attend_heads(
    const float *q, const float *keys_, const float *values_, int64_t heads, int64_t groups,
    int64_t max_len, int64_t pos, float *y, float *scores, const int nv) {
    const int64_t hd = nv * LANES, per_group = heads / groups, n = pos + 1;
    const float scale = 1.f / sqrtf((float)hd);
    for (int64_t g = 0; g < groups; g++) {
        const float *keys = keys_ + g * max_len * hd, *values = values_ + g * max_len * hd;
        for (int64_t t0 = 0; t0 < n; t0 += KEY_BLOCK) {
            const int64_t t1 = t0 + KEY_BLOCK < n ? t0 + KEY_BLOCK : n;
            for (int64_t j = 0; j < per_group; j++) {
                const float *qh = q + (g * per_group + j) * hd;
                float *sh = scores + j * n;
                VEC qv[8];
                for (int c = 0; c < nv; c++) qv[c] = VEC_LOAD(qh + c * LANES);
                int64_t t = t0;
                for (; t + 4 <= t1; t += 4) {
                    const float *k = keys + t * hd;
                    VEC s0 = VEC_SET1(0.f), s1 = s0, s2 = s0, s3 = s0;
                    for (int c = 0; c < nv; c++) {
                        s0 = VEC_FMA(qv[c], VEC_LOAD(k + c * LANES), s0);
                        s1 = VEC_FMA(qv[c], VEC_LOAD(k + hd + c * LANES), s1);
                        s2 = VEC_FMA(qv[c], VEC_LOAD(k + 2 * hd + c * LANES), s2);
                        s3 = VEC_FMA(qv[c], VEC_LOAD(k + 3 * hd + c * LANES), s3);
                    }
                    sh[t] = VEC_SUM(s0) * scale;
                    sh[t + 1] = VEC_SUM(s1) * scale;
                    sh[t + 2] = VEC_SUM(s2) * scale;
                    sh[t + 3] = VEC_SUM(s3) * scale;
                }
                for (; t < t1; t++) {
                    VEC s0 = VEC_SET1(0.f);
                    for (int c = 0; c < nv; c++)
                        s0 = VEC_FMA(qv[c], VEC_LOAD(keys + t * hd + c * LANES), s0);
                    sh[t] = VEC_SUM(s0) * scale;
                }
            }
        }
        for (int64_t j = 0; j < per_group; j++) { /* softmax numerators, and y = 0 */
            float *sh = scores + j * n;
            float top = -3.0e38f; /* no infinities: built with -ffast-math */
            for (int64_t t = 0; t < n; t++) top = fmaxf(top, sh[t]);
            float total = 0.f;
            for (int64_t t = 0; t < n; t++) {
                sh[t] = expf(sh[t] - top);
                total += sh[t];
            }
            const float inverse = 1.f / total;
            for (int64_t t = 0; t < n; t++) sh[t] *= inverse;
            memset(y + (g * per_group + j) * hd, 0, (size_t)hd * sizeof(float));
        }
        for (int64_t t0 = 0; t0 < n; t0 += KEY_BLOCK) {
            const int64_t t1 = t0 + KEY_BLOCK < n ? t0 + KEY_BLOCK : n;
            for (int64_t j = 0; j < per_group; j++) {
                const float *sh = scores + j * n;
                float *yh = y + (g * per_group + j) * hd;
                VEC a[8], b[8];
                for (int c = 0; c < nv; c++) a[c] = b[c] = VEC_SET1(0.f);
                int64_t t = t0;
                for (; t + 2 <= t1; t += 2) {
                    const float *v = values + t * hd;
                    const VEC p0 = VEC_SET1(sh[t]), p1 = VEC_SET1(sh[t + 1]);
                    for (int c = 0; c < nv; c++) {
                        a[c] = VEC_FMA(p0, VEC_LOAD(v + c * LANES), a[c]);
                        b[c] = VEC_FMA(p1, VEC_LOAD(v + hd + c * LANES), b[c]);
                    }
                }
                if (t < t1) {
                    const VEC p0 = VEC_SET1(sh[t]);
                    for (int c = 0; c < nv; c++)
                        a[c] = VEC_FMA(p0, VEC_LOAD(values + t * hd + c * LANES), a[c]);
                }
                for (int c = 0; c < nv; c++) {
                    float *out = yh + c * LANES;
                    VEC_STORE(out, VEC_ADD(VEC_LOAD(out), VEC_ADD(a[c], b[c])));
                }
            }
        }
    }
}
#endif

/* Attention of one sequence (see attend_scalar), in vectors where the head size allows. */
static void attend(const float *q, const float *keys, const float *values, int64_t heads,
                   int64_t groups, int64_t hd, int64_t max_len, int64_t pos, float *y,
                   float *scores) {
#ifdef LANES
    switch (hd == 0 || hd % LANES ? 0 : hd / LANES) {
    case 1: attend_heads(q, keys, values, heads, groups, max_len, pos, y, scores, 1); return;
    case 2: attend_heads(q, keys, values, heads, groups, max_len, pos, y, scores, 2); return;
    case 4: attend_heads(q, keys, values, heads, groups, max_len, pos, y, scores, 4); return;
    case 8: attend_heads(q, keys, values, heads, groups, max_len, pos, y, scores, 8); return;
    default: break;
    }
#endif
    attend_scalar(q, keys, values, heads, groups, hd, max_len, pos, y, scores);
}

/* The step (see SegueStep). Returns 0; -1 when the caller's layout is not this one; -2 when the
 * scratch memory is too small. The tokens and the logit range are the caller's to check. */
int segue_decode_step(const SegueStep *s) {
    if (s->size != (int64_t)sizeof(SegueStep)) return -1;
    if (s->scratch_floats < segue_step_scratch(s)) return -2;
    const int64_t d = s->d_model, heads = s->n_head, groups = s->n_kv_head, hd = s->head_dim;
    const int64_t hidden = s->hidden, max_len = s->max_len, batch = s->batch, pos = s->pos;
    const int half = (int)s->half;
    const int64_t n_qkv = (heads + 2 * groups) * hd, n_out = s->hi - s->lo;
    const size_t elem = half ? sizeof(uint16_t) : sizeof(float);
    const int64_t per_seq = groups * max_len * hd; /* one sequence's keys (or values), per layer */
    float *x = s->scratch, *h = x + batch * d, *qkv = h + batch * d, *y = qkv + batch * n_qkv;
    float *mlp = y + batch * d, *scores = mlp + batch * hidden;
    for (int64_t b = 0; b < batch; b++)
        memcpy(x + b * d, s->embed + s->tokens[b] * d, (size_t)d * sizeof(float));

    for (int64_t l = 0; l < s->n_layer; l++) {
        void *const *w = s->layers + l * PER_LAYER;
        float *keys = s->kv + l * 2 * batch * per_seq, *values = keys + batch * per_seq;
        for (int64_t b = 0; b < batch; b++) layer_norm(x + b * d, (const float *)w[NORM1], d, h + b * d);
        if (batch == 1)
            matvec(h, w[QKV], d, n_qkv, n_qkv, qkv, 0, half);
        else
            matmul(h, d, w[QKV], d, n_qkv, n_qkv, qkv, n_qkv, batch, 0, half);
        for (int64_t b = 0; b < batch; b++) {
            float *q = qkv + b * n_qkv;
            float *k = keys + b * per_seq, *v = values + b * per_seq;
            rotate(q, s->cos_, s->sin_, n_qkv);
            for (int64_t g = 0; g < groups; g++) { /* the new key and value enter the cache */
                memcpy(k + (g * max_len + pos) * hd, q + (heads + g) * hd, hd * sizeof(float));
                memcpy(v + (g * max_len + pos) * hd, q + (heads + groups + g) * hd,
                       hd * sizeof(float));
            }
            attend(q, k, v, heads, groups, hd, max_len, pos, y + b * d, scores);
        }
        if (batch == 1) {
            matvec(y, w[PROJ], d, d, d, x, 1, half); /* x += y @ proj */
            layer_norm(x, (const float *)w[NORM2], d, h);
            matvec(h, w[UP], d, hidden, hidden, mlp, 0, half);
            gelu_tanh(mlp, hidden);
            matvec(mlp, w[DOWN], hidden, d, d, x, 1, half); /* x += gelu(..) @ down */
        } else {
            matmul(y, d, w[PROJ], d, d, d, x, d, batch, 1, half);
            for (int64_t b = 0; b < batch; b++)
                layer_norm(x + b * d, (const float *)w[NORM2], d, h + b * d);
            matmul(h, d, w[UP], d, hidden, hidden, mlp, hidden, batch, 0, half);
            gelu_tanh(mlp, batch * hidden);
            matmul(mlp, hidden, w[DOWN], hidden, d, d, x, d, batch, 1, half);
        }
    }
    for (int64_t b = 0; b < batch; b++) layer_norm(x + b * d, s->norm, d, h + b * d);
    const void *head = (const char *)s->head + s->lo * elem;
    if (batch == 1)
        matvec(h, head, d, s->ld_head, n_out, s->logits, 0, half);
    else
        matmul(h, d, head, d, s->ld_head, n_out, s->logits, n_out, batch, 0, half);
    return 0;
}
