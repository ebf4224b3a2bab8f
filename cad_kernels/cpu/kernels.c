/* Hand-written row kernels shared by many ops: accumulate, copy, casts,
 * reduction steps, and the reductions' forward pass. */
#include <math.h>
#include <string.h>
#include <stdlib.h>
#include "cad_cuda.h"

/* dst OP= src; with dst stride 0 the row is a reduction into a local */
#define REDUCE_ROW(name, T, INIT, STEP)                                        \
    static void name(char **p, const int64_t *s, int64_t n) {                 \
        T *d = (T *)p[0];                                                     \
        const T *x = (const T *)p[1];                                         \
        const int64_t sd = s[0], sx = s[1];                                   \
        int64_t i;                                                            \
        if (sd == 0) {                                                        \
            T a0 = INIT, a1 = INIT, a2 = INIT, a3 = INIT;                     \
            if (sx == 1) {                                                    \
                for (i = 0; i + 4 <= n; i += 4) {                             \
                    STEP(a0, x[i]); STEP(a1, x[i + 1]);                       \
                    STEP(a2, x[i + 2]); STEP(a3, x[i + 3]);                   \
                }                                                             \
                for (; i < n; i++) STEP(a0, x[i]);                            \
            } else {                                                          \
                for (i = 0; i < n; i++) STEP(a0, x[i * sx]);                  \
            }                                                                 \
            STEP(a0, a1); STEP(a2, a3); STEP(a0, a2); STEP(d[0], a0);         \
        } else if (sd == 1 && sx == 1) {                                      \
            for (i = 0; i < n; i++) STEP(d[i], x[i]);                         \
        } else {                                                              \
            for (i = 0; i < n; i++) STEP(d[i * sd], x[i * sx]);               \
        }                                                                     \
    }

#define ST_ADD(a, v) ((a) += (v))
#define ST_MUL(a, v) ((a) *= (v))
#define ST_MAX(a, v) ((a) = CAD_MAX2((a), (v)))
#define ST_MIN(a, v) ((a) = CAD_MIN2((a), (v)))

REDUCE_ROW(acc_f64, double, 0.0, ST_ADD)
REDUCE_ROW(acc_f32, float, 0.0f, ST_ADD)
REDUCE_ROW(acc_i64, int64_t, 0, ST_ADD)
REDUCE_ROW(mul_f64, double, 1.0, ST_MUL)
REDUCE_ROW(mul_f32, float, 1.0f, ST_MUL)
REDUCE_ROW(max_f64, double, -INFINITY, ST_MAX)
REDUCE_ROW(max_f32, float, -INFINITY, ST_MAX)
REDUCE_ROW(min_f64, double, INFINITY, ST_MIN)
REDUCE_ROW(min_f32, float, INFINITY, ST_MIN)

static void acc_bool(char **p, const int64_t *s, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) p[0][i * s[0]] |= p[1][i * s[1]];
}

/* NOTE [ Short reductions ]: a reduction over a short contiguous last axis (GMM's
 * sum(Lxc ** 2, axis=2) over d = 10, BA's sum(rot ** 2, axis=1) over 3: rows of
 * n < CAD_SHORT_ROW elements into one value each).  The iterator's short-row order
 * (NOTE [ Short rows ] in iter.c) ran it as n strided passes `d[i] += x[i n + j]`,
 * a load and a store of d per element; the row kernel per output (sd == 0) is a call
 * per n elements.  Here one loop over the outputs keeps each row's value in a
 * register: the row's own elements in order (from 4 elements on, two interleaved
 * chains, so a long row is not one dependent sequence), then one step into d.  The result is
 * the same at any thread count (it runs on the calling thread); against the strided
 * passes only where d started non-zero does the summation order differ. */
#define SHORT_RED(name, T, STEP)                                               \
    static void name(char *dp, const char *xp, int64_t m, int64_t n, int64_t sd, \
                     int64_t sx) {                                            \
        T *d = (T *)dp;                                                       \
        const T *x = (const T *)xp;                                           \
        int64_t i, j;                                                         \
        switch (n) {                                                          \
        case 1:                                                               \
            for (i = 0; i < m; i++) STEP(d[i * sd], x[i * sx]);               \
            break;                                                            \
        case 2:                                                               \
            for (i = 0; i < m; i++) {                                         \
                const T *r = x + i * sx;                                      \
                T a = r[0];                                                   \
                STEP(a, r[1]);                                                \
                STEP(d[i * sd], a);                                           \
            }                                                                 \
            break;                                                            \
        case 3:                                                               \
            for (i = 0; i < m; i++) {                                         \
                const T *r = x + i * sx;                                      \
                T a = r[0];                                                   \
                STEP(a, r[1]); STEP(a, r[2]);                                 \
                STEP(d[i * sd], a);                                           \
            }                                                                 \
            break;                                                            \
        case 4:                                                               \
            for (i = 0; i < m; i++) {                                         \
                const T *r = x + i * sx;                                      \
                T a = r[0], b = r[2];                                         \
                STEP(a, r[1]); STEP(b, r[3]); STEP(a, b);                     \
                STEP(d[i * sd], a);                                           \
            }                                                                 \
            break;                                                            \
        default:                                                              \
            for (i = 0; i < m; i++) {                                         \
                const T *r = x + i * sx;                                      \
                T a = r[0], b = r[1];                                         \
                for (j = 2; j + 2 <= n; j += 2) { STEP(a, r[j]); STEP(b, r[j + 1]); } \
                if (j < n) STEP(a, r[j]);                                     \
                STEP(a, b);                                                   \
                STEP(d[i * sd], a);                                           \
            }                                                                 \
        }                                                                     \
    }

SHORT_RED(sred_acc_f64, double, ST_ADD)
SHORT_RED(sred_acc_f32, float, ST_ADD)
SHORT_RED(sred_max_f64, double, ST_MAX)
SHORT_RED(sred_max_f32, float, ST_MAX)
SHORT_RED(sred_min_f64, double, ST_MIN)
SHORT_RED(sred_min_f32, float, ST_MIN)
SHORT_RED(sred_mul_f64, double, ST_MUL)
SHORT_RED(sred_mul_f32, float, ST_MUL)

cad_short_red cad_short_red_of(cad_row row) {
    if (row == acc_f64) return sred_acc_f64;
    if (row == acc_f32) return sred_acc_f32;
    if (row == max_f64) return sred_max_f64;
    if (row == max_f32) return sred_max_f32;
    if (row == min_f64) return sred_min_f64;
    if (row == min_f32) return sred_min_f32;
    if (row == mul_f64) return sred_mul_f64;
    if (row == mul_f32) return sred_mul_f32;
    return NULL;
}

/* the reverse of a short reduction: each of m values written (or added) over the n
 * contiguous elements of its row (a sum's vjp over GMM's d = 10: the strided passes
 * wrote every row n times apart) */
#define SHORT_BCAST(name, T, OP)                                               \
    static void name(char *dp, const char *xp, int64_t m, int64_t n, int64_t sd, \
                     int64_t sx) {                                            \
        T *d = (T *)dp;                                                       \
        const T *x = (const T *)xp;                                           \
        int64_t i, j;                                                         \
        for (i = 0; i < m; i++) {                                             \
            const T v = x[i * sx];                                            \
            T *r = d + i * sd;                                                \
            for (j = 0; j < n; j++) r[j] OP v;                                \
        }                                                                     \
    }

SHORT_BCAST(sbc_cp_f64, double, =)
SHORT_BCAST(sbc_cp_f32, float, =)
SHORT_BCAST(sbc_acc_f64, double, +=)
SHORT_BCAST(sbc_acc_f32, float, +=)

cad_short_red cad_short_bcast_of(cad_row row) {
    if (row == cad_copy_rows[CAD_F64]) return sbc_cp_f64;
    if (row == cad_copy_rows[CAD_F32]) return sbc_cp_f32;
    if (row == acc_f64) return sbc_acc_f64;
    if (row == acc_f32) return sbc_acc_f32;
    return NULL;
}

cad_row cad_acc_rows[4] = {acc_f64, acc_f32, acc_i64, acc_bool};
cad_row cad_max_rows[2] = {max_f64, max_f32};
cad_row cad_min_rows[2] = {min_f64, min_f32};
cad_row cad_mul_rows[2] = {mul_f64, mul_f32};

#define CAST_ROW(name, TD, TS, ACC)                                            \
    static void name(char **p, const int64_t *s, int64_t n) {                 \
        TD *d = (TD *)p[0];                                                   \
        const TS *x = (const TS *)p[1];                                       \
        const int64_t sd = s[0], sx = s[1];                                   \
        int64_t i;                                                            \
        if (sd == 1 && sx == 1) for (i = 0; i < n; i++) d[i] ACC (TD)x[i];    \
        else for (i = 0; i < n; i++) d[i * sd] ACC (TD)x[i * sx];             \
    }
CAST_ROW(cp_f64_f64, double, double, =)
CAST_ROW(cp_f64_f32, double, float, =)
CAST_ROW(cp_f64_i64, double, int64_t, =)
CAST_ROW(cp_f64_b, double, uint8_t, =)
CAST_ROW(cp_f32_f64, float, double, =)
CAST_ROW(cp_f32_f32, float, float, =)
CAST_ROW(cp_f32_i64, float, int64_t, =)
CAST_ROW(cp_f32_b, float, uint8_t, =)
CAST_ROW(cp_i64_f64, int64_t, double, =)
CAST_ROW(cp_i64_f32, int64_t, float, =)
CAST_ROW(cp_i64_i64, int64_t, int64_t, =)
CAST_ROW(cp_i64_b, int64_t, uint8_t, =)
CAST_ROW(cp_b_b, uint8_t, uint8_t, =)
CAST_ROW(ca_f64_f64, double, double, +=)
CAST_ROW(ca_f64_f32, double, float, +=)
CAST_ROW(ca_f32_f64, float, double, +=)
CAST_ROW(ca_f32_f32, float, float, +=)

static void cp_b_num64(char **p, const int64_t *s, int64_t n) {   /* bool <- f64 */
    int64_t i;
    for (i = 0; i < n; i++) p[0][i * s[0]] = ((const double *)p[1])[i * s[1]] != 0;
}
static void cp_b_num32(char **p, const int64_t *s, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) p[0][i * s[0]] = ((const float *)p[1])[i * s[1]] != 0;
}
static void cp_b_i64(char **p, const int64_t *s, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) p[0][i * s[0]] = ((const int64_t *)p[1])[i * s[1]] != 0;
}

cad_row cad_cast_rows[4][4] = {
    {cp_f64_f64, cp_f64_f32, cp_f64_i64, cp_f64_b},
    {cp_f32_f64, cp_f32_f32, cp_f32_i64, cp_f32_b},
    {cp_i64_f64, cp_i64_f32, cp_i64_i64, cp_i64_b},
    {cp_b_num64, cp_b_num32, cp_b_i64, cp_b_b},
};
cad_row cad_copy_rows[4] = {cp_f64_f64, cp_f32_f32, cp_i64_i64, cp_b_b};
cad_row cad_castacc_rows[2][2] = {{ca_f64_f64, ca_f64_f32}, {ca_f32_f64, ca_f32_f32}};

int cad_reduce(int kind, int dtype, char *out, const char *x, int ndim,
               const int64_t *shape, const int64_t *xst, uint64_t mask) {
    int64_t rshape[CAD_MAXDIM], ost[CAD_MAXDIM], nout = 1;
    int d, es = dtype == CAD_F64 ? 8 : 4, dt = dtype == CAD_F64 ? 0 : 1;
    double id64;
    float id32;
    cad_iter it;
    cad_row row;
    for (d = 0; d < ndim; d++) {
        rshape[d] = (mask >> d) & 1 ? 1 : shape[d];
        nout *= rshape[d];
    }
    cad_contig_strides(ndim, rshape, ost);
    switch (kind) {
    case CAD_RSUM: id64 = 0.0; row = cad_acc_rows[dt]; break;
    case CAD_RMAX: id64 = -INFINITY; row = cad_max_rows[dt]; break;
    case CAD_RMIN: id64 = INFINITY; row = cad_min_rows[dt]; break;
    case CAD_RPROD: id64 = 1.0; row = cad_mul_rows[dt]; break;
    default: return CAD_EINTERNAL;
    }
    id32 = (float)id64;
    {
        int64_t bits = 0;
        int32_t b32;
        int s;
        if (dt == 0) memcpy(&bits, &id64, 8);
        else { memcpy(&b32, &id32, 4); bits = b32; }
        s = CAD_BE->fill(out, es, nout, bits);
        if (s) return s;
    }
    it.nop = 2;
    it.ndim = ndim;
    for (d = 0; d < ndim; d++) it.shape[d] = shape[d];
    cad_iter_operand(&it, 0, out, es, ndim, rshape, ost);
    cad_iter_operand(&it, 1, (char *)x, es, ndim, shape, xst);
    return cad_iter_run(&it, row, row, dt == 0 ? (const void *)&id64 : (const void *)&id32);
}


/* ---- cross-entropy rows: out[i] = logsumexp(z[i]) - z[i, lab[i]] ---- */
#define XENT_FWD(T, EXP, LOG)                                                  \
    {                                                                          \
        const T *Z = (const T *)z;                                             \
        T *O = (T *)out;                                                       \
        int64_t i, j;                                                          \
        for (i = 0; i < N; i++) {                                              \
            const T *row = Z + i * zrs;                                        \
            int64_t l = lab[i * lst];                                          \
            T m = row[0], s = 0;                                               \
            if (l < 0 || l >= C) return CAD_EINDEX;                            \
            for (j = 1; j < C; j++) if (row[j * zcs] > m) m = row[j * zcs];    \
            if (!isfinite(m)) m = 0;                                           \
            for (j = 0; j < C; j++) s += EXP(row[j * zcs] - m);                \
            O[i] = m + LOG(s) - row[l * zcs];                                  \
        }                                                                      \
    }

int cad_xent_kernel(int dtype, char *out, const char *z, int64_t zrs, int64_t zcs,
                    const int64_t *lab, int64_t lst, int64_t N, int64_t C) {
    return CAD_BE->xent(dtype, out, z, zrs, zcs, lab, lst, N, C);
}

int cad_xent_cpu(int dtype, char *out, const char *z, int64_t zrs, int64_t zcs,
                 const int64_t *lab, int64_t lst, int64_t N, int64_t C) {
    if (C == 0) return N ? CAD_EINDEX : CAD_OK;
    if (dtype == CAD_F64) XENT_FWD(double, exp, log)
    else XENT_FWD(float, expf, logf)
    return CAD_OK;
}

/* the CUDA kernel of each row above (NOTE [ CUDA backend ]) */
const cad_rowname cad_hand_row_names[] = {
    {acc_f64, "k_acc_f64"}, {acc_f32, "k_acc_f32"}, {acc_i64, "k_acc_i64"}, {acc_bool, "k_acc_b"},
    {mul_f64, "k_mul_f64"}, {mul_f32, "k_mul_f32"}, {max_f64, "k_max_f64"}, {max_f32, "k_max_f32"},
    {min_f64, "k_min_f64"}, {min_f32, "k_min_f32"},
    {cp_f64_f64, "k_cp_f64_f64"}, {cp_f64_f32, "k_cp_f64_f32"}, {cp_f64_i64, "k_cp_f64_i64"},
    {cp_f64_b, "k_cp_f64_b"}, {cp_f32_f64, "k_cp_f32_f64"}, {cp_f32_f32, "k_cp_f32_f32"},
    {cp_f32_i64, "k_cp_f32_i64"}, {cp_f32_b, "k_cp_f32_b"}, {cp_i64_f64, "k_cp_i64_f64"},
    {cp_i64_f32, "k_cp_i64_f32"}, {cp_i64_i64, "k_cp_i64_i64"}, {cp_i64_b, "k_cp_i64_b"},
    {cp_b_b, "k_cp_b_b"}, {cp_b_num64, "k_cp_b_f64"}, {cp_b_num32, "k_cp_b_f32"}, {cp_b_i64, "k_cp_b_i64"},
    {ca_f64_f64, "k_ca_f64_f64"}, {ca_f64_f32, "k_ca_f64_f32"}, {ca_f32_f64, "k_ca_f32_f64"},
    {ca_f32_f32, "k_ca_f32_f32"},
    {NULL, NULL}
};

/* NOTE [ Top k ]: the positions of the k largest (smallest) elements of each row of
 * a C-ordered (R, n) array, in order, as a stable descending (ascending) sort's first
 * k (cad.topk; its full sort took 47x torch's topk on a 1000 x 1000 matrix): each row
 * keeps its k best so far in order, and a new element goes in only when it beats the
 * k-th (so a tie keeps the earlier element first), shifted up past the ones it beats.
 * NaN is the largest value (first when largest, never taken before a number when
 * smallest), as the sort puts it.  O(n) per row for random rows, O(n k) at worst (a
 * sorted row): the caller uses it for small k only. */
#define TOPK_BEATS_L(v, w) ((v) != (v) ? (w) == (w) : (v) > (w))
#define TOPK_BEATS_S(v, w) ((v) == (v) && ((w) != (w) || (v) < (w)))
#define TOPK_ROWS(name, T, BEATS)                                                \
    static void name(const T *x, int64_t R, int64_t n, int64_t k, int64_t *out) { \
        int64_t r, i, j, c;                                                      \
        for (r = 0; r < R; r++) {                                                \
            const T *row = x + r * n;                                            \
            int64_t *ix = out + r * k;                                           \
            T kth = 0;   /* row[ix[k - 1]] once k are kept */                     \
            for (i = 0, c = 0; i < n; i++) {                                     \
                const T v = row[i];                                              \
                if (c == k) {                                                    \
                    if (!BEATS(v, kth)) continue;                                \
                    j = k - 1;                                                   \
                } else {                                                         \
                    j = c++;                                                     \
                }                                                                \
                while (j > 0 && BEATS(v, row[ix[j - 1]])) { ix[j] = ix[j - 1]; j--; } \
                ix[j] = i;                                                       \
                if (c == k) kth = row[ix[k - 1]];                                \
            }                                                                    \
        }                                                                        \
    }
TOPK_ROWS(topk_l_f64, double, TOPK_BEATS_L)
TOPK_ROWS(topk_s_f64, double, TOPK_BEATS_S)
TOPK_ROWS(topk_l_f32, float, TOPK_BEATS_L)
TOPK_ROWS(topk_s_f32, float, TOPK_BEATS_S)

void cad_topk_rows(int dtype, const char *x, int64_t R, int64_t n, int64_t k, int largest, int64_t *out) {
    if (k <= 0 || n <= 0) return;
    if (dtype == CAD_F64) (largest ? topk_l_f64 : topk_s_f64)((const double *)x, R, n, k, out);
    else (largest ? topk_l_f32 : topk_s_f32)((const float *)x, R, n, k, out);
}

/* NOTE [ Row gathers ]
 * A recorded t[ix] (t of 2 or more dims) marks its positions buffer CAD_VER_ROWS: its
 * n positions are n / w whole rows of w (its last dim), so a replay's gather copies
 * rows (cad_gather_rows, reading one position per row) and the vjp adds rows
 * (cad_scatadd_rows), where the general kernels read a position per element (BA's
 * cams[ci]: 400k positions for 36k rows).  Other gathers (and tapes loaded from a
 * file, which do not keep the mark) take the general kernels.
 *
 * t[ix] of a C-ordered host array by one int64 index array (BA's cams[ci], X[pi]):
 * rows idx[0..m) of n rows of rowb bytes each into dst, a negative index counting from
 * the end.  Rows of up to 16 words are copied word by word inline, where numpy's take
 * called memmove per row and cad checked the indices' range in two passes before it
 * (min and max): the README has the times.
 * idx is read with a stride of ist elements (a column of BA's (p, 2) observations).
 * Returns -1, or the position i (idx[i * ist]) of the first index out of range (the
 * rows before it written, none after). */
int64_t cad_take_rows(char *dst, const char *src, const int64_t *idx, int64_t ist, int64_t m,
                      int64_t n, int64_t rowb) {
    int64_t i, j;
    if (rowb % 8 == 0 && rowb <= 128) {
        const int64_t w = rowb / 8;
        for (i = 0; i < m; i++) {
            int64_t r = idx[i * ist];
            const char *s;
            char *d = dst + i * rowb;
            if (r < 0) r += n;
            if (r < 0 || r >= n) return i;
            s = src + r * rowb;
            for (j = 0; j < w; j++) memcpy(d + 8 * j, s + 8 * j, 8);
        }
        return -1;
    }
    for (i = 0; i < m; i++) {
        int64_t r = idx[i * ist];
        if (r < 0) r += n;
        if (r < 0 || r >= n) return i;
        memcpy(dst + i * rowb, src + r * rowb, (size_t)rowb);
    }
    return -1;
}

/* NOTE [ Row gathers ]: out's rows of w elements of es bytes from x at positions
 * lin[i w] (in range: the recorded positions were checked) */
void cad_gather_rows(int es, char *out, const char *x, const int64_t *lin, int64_t n, int64_t w) {
    const int64_t rows = w > 0 ? n / w : 0, rowb = w * es;
    int64_t i, j;
    if (rowb % 8 == 0 && rowb <= 128) {
        const int64_t q = rowb / 8;
        for (i = 0; i < rows; i++) {
            const char *s = x + lin[i * w] * es;
            char *d = out + i * rowb;
            for (j = 0; j < q; j++) memcpy(d + 8 * j, s + 8 * j, 8);
        }
        return;
    }
    for (i = 0; i < rows; i++) memcpy(out + i * rowb, x + lin[i * w] * es, (size_t)rowb);
}

/* its vjp: gx[lin[i w] + j] += g[i w + j], rows in order (the same sums, in the same
 * order, as the element-wise scatter-add) */
void cad_scatadd_rows(int dtype, char *gx, const char *g, const int64_t *lin, int64_t n, int64_t w) {
    const int64_t rows = w > 0 ? n / w : 0;
    int64_t i, j;
    if (dtype == CAD_F64) {
        for (i = 0; i < rows; i++) {
            double *d = (double *)gx + lin[i * w];
            const double *s = (const double *)g + i * w;
            for (j = 0; j < w; j++) d[j] += s[j];
        }
    } else {
        for (i = 0; i < rows; i++) {
            float *d = (float *)gx + lin[i * w];
            const float *s = (const float *)g + i * w;
            for (j = 0; j < w; j++) d[j] += s[j];
        }
    }
}
