/* One batch-1 decoding step of segue's transformer (segue/lm/model.py), fused in one C call.
 *
 * At batch 1 a step reads every weight once and does little arithmetic on it; in PyTorch it
 * also makes ~100 small kernel calls, each with its own dispatch cost. This file does the whole
 * step in one call: embedding row, every block (LayerNorm, fused qkv, rotary, cached attention,
 * projection, LayerNorm, tanh-GELU MLP), the final LayerNorm and the output layer's rows
 * [lo, hi). It is the same arithmetic as `Transformer.extend` for one position, in float32, with
 * another summation order. Matrices are stored transposed, [in, out] row-major, in float32 or
 * float16 (`half`; values are converted to float32 before any arithmetic, so a model whose
 * weights are float16 values -- a bundle saved in half precision -- gives the same results
 * while reading half the bytes).
 *
 * Built by segue/lm/fused.py with the system C compiler (-O3 -march=native) and called through
 * ctypes: no PyTorch headers, no Python API.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif


/* The shape of the model, as int64 values, in this order. */
enum { D_MODEL, N_HEAD, N_KV_HEAD, HEAD_DIM, HIDDEN, N_LAYER, MAX_LEN, HALF, N_DIMS };

/* Per layer, the pointers in this order: norm1 [D], qkv [D, (H + 2G) hd], proj [D, D],
 * norm2 [D], up [D, hidden], down [hidden, D]. */
enum { NORM1, QKV, PROJ, NORM2, UP, DOWN, PER_LAYER };

#define EPS 1e-5f

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
 * none (scalar loop only) otherwise. VEC_LOAD_HALF converts HALF_LANES float16 values. */
#if defined(__AVX512F__)
#define HALF_LANES 16
#define VEC __m512
#define VEC_SET1 _mm512_set1_ps
#define VEC_LOAD _mm512_loadu_ps
#define VEC_STORE _mm512_storeu_ps
#define VEC_FMA _mm512_fmadd_ps
#define VEC_LOAD_HALF(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#elif defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#define HALF_LANES 8
#define VEC __m256
#define VEC_SET1 _mm256_set1_ps
#define VEC_LOAD _mm256_loadu_ps
#define VEC_STORE _mm256_storeu_ps
#define VEC_FMA _mm256_fmadd_ps
#define VEC_LOAD_HALF(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
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
#ifdef HALF_LANES
        const VEC v0 = VEC_SET1(x0), v1 = VEC_SET1(x1), v2 = VEC_SET1(x2), v3 = VEC_SET1(x3);
        for (; j + HALF_LANES <= n; j += HALF_LANES) {
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

/* Attention of the n_head queries q [H, hd] over positions 0..pos of one layer's cache
 * kv [2, G, max_len, hd] -> y [H, hd]. scores: scratch of pos + 1 floats. */
static void attend(const float *q, const float *kv, const int64_t *dims, int64_t pos, float *y,
                   float *scores) {
    const int64_t heads = dims[N_HEAD], groups = dims[N_KV_HEAD], hd = dims[HEAD_DIM];
    const int64_t max_len = dims[MAX_LEN], per_group = heads / groups;
    const float scale = 1.f / sqrtf((float)hd);
    for (int64_t h = 0; h < heads; h++) {
        const int64_t g = h / per_group;
        const float *keys = kv + g * max_len * hd;
        const float *values = kv + (groups + g) * max_len * hd;
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

/* The step. embed [vocab, D]: the input embedding; its row `token` starts the residual stream.
 * layers: N_LAYER * PER_LAYER weight pointers. kv [layers, 2, G, max_len, hd] (batch 1).
 * cos_, sin_ [(H + 2G) hd]: the rotary rows of position `pos`. norm [D], head [D, ld_head]
 * (the output layer transposed): logits [hi - lo] of its columns lo..hi.
 * Returns 0, or -1 when the scratch memory cannot be allocated. */
int segue_decode_step(const int64_t *dims, const float *embed, int64_t token,
                      void *const *layers, float *kv,
                      const float *cos_, const float *sin_, int64_t pos, const float *norm,
                      const void *head, int64_t ld_head, int64_t lo, int64_t hi, float *logits) {
    const int64_t d = dims[D_MODEL], heads = dims[N_HEAD], groups = dims[N_KV_HEAD];
    const int64_t hd = dims[HEAD_DIM], hidden = dims[HIDDEN], n_layer = dims[N_LAYER];
    const int64_t max_len = dims[MAX_LEN], half = dims[HALF];
    const int64_t n_qkv = (heads + 2 * groups) * hd;
    const size_t elem = half ? sizeof(uint16_t) : sizeof(float);
    float *scratch = malloc(sizeof(float) * (size_t)(2 * d + n_qkv + d + hidden + pos + 1));
    if (!scratch) return -1;
    float *x = scratch, *h = x + d, *qkv = h + d, *y = qkv + n_qkv, *mlp = y + d, *scores = mlp + hidden;
    memcpy(x, embed + token * d, (size_t)d * sizeof(float));

    for (int64_t l = 0; l < n_layer; l++) {
        void *const *w = layers + l * PER_LAYER;
        float *cache = kv + l * 2 * groups * max_len * hd;
        layer_norm(x, (const float *)w[NORM1], d, h);
        matvec(h, w[QKV], d, n_qkv, n_qkv, qkv, 0, (int)half);
        rotate(qkv, cos_, sin_, n_qkv);
        for (int64_t g = 0; g < groups; g++) { /* the new key and value enter the cache */
            memcpy(cache + (g * max_len + pos) * hd, qkv + (heads + g) * hd, hd * sizeof(float));
            memcpy(cache + ((groups + g) * max_len + pos) * hd, qkv + (heads + groups + g) * hd,
                   hd * sizeof(float));
        }
        attend(qkv, cache, dims, pos, y, scores);
        matvec(y, w[PROJ], d, d, d, x, 1, (int)half); /* x += y @ proj */
        layer_norm(x, (const float *)w[NORM2], d, h);
        matvec(h, w[UP], d, hidden, hidden, mlp, 0, (int)half);
        gelu_tanh(mlp, hidden);
        matvec(mlp, w[DOWN], hidden, d, d, x, 1, (int)half); /* x += gelu(..) @ down */
    }
    layer_norm(x, norm, d, h);
    matvec(h, (const char *)head + lo * elem, d, ld_head, hi - lo, logits, 0, (int)half);
    free(scratch);
    return 0;
}
