/* The one parameter block every cad CUDA kernel takes (by value), shared by the C
 * launcher (exec.c) and the kernel sources (kernels.cuh, generated rows).
 *
 * NOTE [ Kernel iteration ]
 * A row kernel runs one op's per-element statement over an iteration space of
 * ndim dims (coalesced by the launcher, at most CAD_KMAXD) with nop operands, each
 * a base pointer and element strides per dim.  Dims [0, nkeep) are "kept": every
 * thread owns one kept index; dims [nkeep, ndim) are "reduced": operand 0 (the
 * destination) has stride 0 there, and the thread walks them itself, so an
 * accumulating statement (dst += ...) never races.  With parts > 1 the reduced
 * walk of each kept index is split over `parts` threads, each accumulating into
 * its own slot of a partial buffer (operand 0 is then that buffer, slot t), which
 * the launcher combines afterwards.  Thread t takes kept index t % nk and part
 * t / nk: neighbouring threads read neighbouring kept elements (coalesced when
 * the kept dim is the contiguous one, as for a bias gradient's column sums).  nk, nr: the number of kept and reduced
 * indices.  i[], f[]: parameters of the hand-written kernels.
 * The 1-D path (vec = 1: one kept dim, nothing reduced, the usual case once the
 * launcher has merged contiguous dims): each thread takes CAD_VW elements a grid
 * apart and issues all their loads before the first store (the V_ form of a row),
 * so enough bytes are in flight to run at the memory's bandwidth; with one element
 * per thread and the load-compute-store chain of the generic form, an H100 ran
 * W4's kernels at about half of it. */
#ifndef CAD_KP_H
#define CAD_KP_H

/* The fake device hands out addresses with bit 62 set (host memory underneath):
 * not canonical on x86-64, so host code that reads or writes device memory by
 * mistake faults on the fake device as it would with a GPU's addresses.  The fake
 * launcher, copies and GEMM strip the bit (CAD_FAKE_HOST); kernels that read
 * device addresses out of device memory (the device sweep) strip it through CAD_H,
 * which is the identity on the GPU. */
#define CAD_FAKE_BIT (1ULL << 62)
#define CAD_FAKE_HOST(T, a) ((T)(void *)((unsigned long long)(uintptr_t)(a) & ~CAD_FAKE_BIT))

#define CAD_KMAXD 8
#define CAD_KMAXOP 8
#define CAD_VW 4     /* elements a thread on the 1-D path */

typedef struct {
    char *ptr[CAD_KMAXOP];
    long long st[CAD_KMAXOP][CAD_KMAXD];
    long long shape[CAD_KMAXD];
    long long nk, nr, parts;
    int ndim, nkeep, nop, vec;   /* vec: the 1-D path (one kept dim, no reduced dim) */
    long long i[8];
    double f[2];
} cad_kp;

/* one record of a fused device sweep over 0-d values (NOTE [ Device scalar runs ] in
 * cpu/sweep.c): value pointers (NULL: not registered), the op, which inputs take a
 * gradient (bit 0: x, bit 1: y), and the gradient slots of out, x and y */
typedef struct {
    const char *x, *y, *out;
    int op, mask, gout, gx, gy, pad_;
} cad_dsinst;

/* ---- cross products of rows of three, shared by the CPU loop (cpu/cross.c) and the
 * CUDA kernel (kernels.cuh): OUT[row i] (=|+=) X[row i] x Y[row i], all contiguous */
#define CAD_CROSS_ROW(T, OUT, X, Y, i, acc)                                    \
    do {                                                                      \
        const T *x_ = (X) + 3 * (i), *y_ = (Y) + 3 * (i);                     \
        T *o_ = (OUT) + 3 * (i);                                              \
        const T c0_ = x_[1] * y_[2] - x_[2] * y_[1];                          \
        const T c1_ = x_[2] * y_[0] - x_[0] * y_[2];                          \
        const T c2_ = x_[0] * y_[1] - x_[1] * y_[0];                          \
        if (acc) { o_[0] += c0_; o_[1] += c1_; o_[2] += c2_; }                \
        else { o_[0] = c0_; o_[1] = c1_; o_[2] = c2_; }                       \
    } while (0)

/* ---- scans (cumsum, cumprod), shared by the CPU loops (cpu/scan.c) and the CUDA
 * kernels (kernels.cuh): one slice of a contiguous (outer, n, inner) array, the
 * elements base + j * inner for j < n.  CAD_SCAN_SLICE: out[j] (=|+=) the running
 * sum or product of x over j (from the end when rev).  CAD_CUMPROD_VJP_SLICE: the
 * exact gradient of cumprod with zeros present: gx[i] = sum_{j >= i} g[j] prod_{k <=
 * j, k != i} x[k]; before the first zero z that is (sum_{i <= j < z} g[j] out[j]) /
 * x[i], at z a running product that skips x[z], after z zero. */
#define CAD_SCAN_SLICE(T, OUT, X, base, n, inner, rev, prod, acc)              \
    do {                                                                      \
        long long k_, j_, ix_;                                                \
        T run_ = (prod) ? (T)1 : (T)0;                                        \
        for (k_ = 0; k_ < (n); k_++) {                                        \
            j_ = (rev) ? (n) - 1 - k_ : k_;                                   \
            ix_ = (base) + j_ * (inner);                                      \
            run_ = (prod) ? run_ * (X)[ix_] : run_ + (X)[ix_];                \
            if (acc) (OUT)[ix_] += run_; else (OUT)[ix_] = run_;              \
        }                                                                     \
    } while (0)
#define CAD_CUMPROD_VJP_SLICE(T, GX, G, X, O, base, n, inner, acc)             \
    do {                                                                      \
        long long z_ = (n), j_;                                               \
        T s_ = 0, r_, t_;                                                     \
        for (j_ = 0; j_ < (n); j_++) if ((X)[(base) + j_ * (inner)] == (T)0) { z_ = j_; break; } \
        for (j_ = (n) - 1; j_ > z_; j_--) {                                   \
            if (acc) { /* nothing to add */ } else (GX)[(base) + j_ * (inner)] = 0; \
        }                                                                     \
        if (z_ < (n)) {                                                       \
            r_ = z_ > 0 ? (O)[(base) + (z_ - 1) * (inner)] : (T)1;            \
            t_ = 0;                                                           \
            for (j_ = z_; j_ < (n); j_++) {                                   \
                if (j_ > z_) r_ *= (X)[(base) + j_ * (inner)];                \
                t_ += (G)[(base) + j_ * (inner)] * r_;                        \
            }                                                                 \
            if (acc) (GX)[(base) + z_ * (inner)] += t_; else (GX)[(base) + z_ * (inner)] = t_; \
        }                                                                     \
        for (j_ = z_ - 1; j_ >= 0; j_--) {                                    \
            const long long ix_ = (base) + j_ * (inner);                      \
            s_ += (G)[ix_] * (O)[ix_];                                        \
            if (acc) (GX)[ix_] += s_ / (X)[ix_]; else (GX)[ix_] = s_ / (X)[ix_]; \
        }                                                                     \
    } while (0)

/* ---- optimizer updates: one slot per parameter (NOTE [ Optimizer updates ] in
 * cpu/optim.c).  The CPU kernel reads the slots from host memory; the CUDA kernel
 * k_optim (kernels.cuh) from a copy in device memory, its buffer addresses being
 * device addresses.  Plain C types: one layout for gcc and nvcc. */
enum {
    CAD_OPT_ADAM = 1,        /* Adam/AdamW; else SGD */
    CAD_OPT_MAXIMIZE = 2,
    CAD_OPT_NESTEROV = 4,
    CAD_OPT_AMSGRAD = 8,
    CAD_OPT_DECOUPLED = 16,  /* AdamW's weight decay */
    CAD_OPT_FIRST = 32,      /* SGD: the momentum buffer starts as the gradient (m0 unread) */
    CAD_OPT_DELTA = 64       /* out gets the update (new - old), not the new value */
};
typedef struct {
    char *out;                       /* the new value (or the update): a fresh buffer */
    const char *p, *g;               /* the old value and the gradient */
    const char *m0, *v0, *w0;        /* state read: momentum buffer / exp_avg, exp_avg_sq, max_exp_avg_sq */
    char *m, *v, *w;                 /* state written (may equal m0, v0, w0: in place) */
    long long n;                     /* elements, every buffer contiguous */
    int dtype, flags;                /* CAD_F64 (0) or CAD_F32 (1) for every buffer of the slot */
    double lr, wd, beta1, beta2, eps, momentum, dampening;
    double bc1, bc2;                 /* Adam's bias corrections, 1 - beta1**step and 1 - beta2**step */
} cad_opt_slot;

#endif
