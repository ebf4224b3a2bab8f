/* cad's CUDA kernels that are not generated from the op table: the row-kernel
 * skeleton (NOTE [ Kernel iteration ] in cad_kp.h), the hand-written rows
 * (accumulate, copy, casts, reduction steps, the max/min/prod vjp rows) and the
 * index, cross-entropy and fill kernels.
 *
 * Written in the common subset of CUDA C++ and C: compiled by nvcc for the GPU
 * (as part of the module cad builds at run time) and, with CAD_HOST_EMU defined,
 * by the C compiler for the host emulation that tests the launcher and every
 * kernel's arithmetic on machines without a GPU (one "thread" runs each grid-stride
 * loop to the end; atomics become plain updates). */
#ifndef CAD_KERNELS_CUH
#define CAD_KERNELS_CUH
#include "cad_kp.h"

#ifdef CAD_HOST_EMU
#include <math.h>
#include <stdint.h>
#define CAD_GLOBAL static
#define CAD_DEVICE static inline
#define CAD_GRIDCONST
#define CAD_TID 0LL
#define CAD_NTH 1LL
#define CAD_ATOMIC_ADD(p, v) (*(p) += (v))
#define CAD_ATOMIC_MAX_U64(p, v) do { if (*(p) < (v)) *(p) = (v); } while (0)
#define CAD_UNROLL
#define CAD_UNROLL4
#define CAD_H(T, a) CAD_FAKE_HOST(T, a)
#else
#include <stdint.h>
#define CAD_GLOBAL extern "C" __global__
#define CAD_DEVICE static __device__ __forceinline__
#define CAD_GRIDCONST __grid_constant__
#define CAD_TID ((long long)blockIdx.x * blockDim.x + threadIdx.x)
#define CAD_NTH ((long long)gridDim.x * blockDim.x)
#define CAD_ATOMIC_ADD(p, v) atomicAdd((p), (v))
#define CAD_ATOMIC_MAX_U64(p, v) atomicMax((unsigned long long *)(p), (unsigned long long)(v))
#define CAD_UNROLL _Pragma("unroll")
#define CAD_UNROLL4 _Pragma("unroll 4")
#define CAD_H(T, a) ((T)(a))
#endif

#define CAD_SELECT(c, a, b) ((c) ? (a) : (b))
#define CAD_SIGN(x) (((x) > 0) - ((x) < 0))
#define CAD_MAX2(a, b) (((a) > (b) || (a) != (a)) ? (a) : (b))
#define CAD_MIN2(a, b) (((a) < (b) || (a) != (a)) ? (a) : (b))
#define CAD_ISFINITE(x) isfinite((double)(x))
#define CAD_ISNAN(x) isnan((double)(x))

/* add the offsets of index idx over dims [d0, d1) (the last fastest) to off[];
 * the operand loops are unrolled to the fixed bound so off[] stays in registers */
CAD_DEVICE void cad_koff(const cad_kp *p, long long idx, int d0, int d1, long long *off) {
    int d, j;
    for (d = d1 - 1; d > d0; d--) {
        long long n = p->shape[d], c = idx % n;
        idx /= n;
        CAD_UNROLL
        for (j = 0; j < CAD_KMAXOP; j++) if (j < p->nop) off[j] += c * p->st[j][d];
    }
    if (d1 > d0) {
        CAD_UNROLL
        for (j = 0; j < CAD_KMAXOP; j++) if (j < p->nop) off[j] += idx * p->st[j][d0];
    }
}

/* the skeleton of every row kernel: BODY(q) runs the row's statement on the
 * operands at element offsets q[] */
#define CAD_ROW_KERNEL(NAME, BODY)                                            \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) CAD_ROW_LOOP(BODY)

#define CAD_ROW_LOOP(BODY)                                                    \
    {                                                                         \
        long long t, total = p.nk * p.parts;                                  \
        for (t = CAD_TID; t < total; t += CAD_NTH) {                          \
            long long k = t, part = 0, o[CAD_KMAXOP], r;                      \
            int j;                                                            \
            if (p.parts > 1) { part = t / p.nk; k = t - part * p.nk; }        \
            CAD_UNROLL                                                        \
            for (j = 0; j < CAD_KMAXOP; j++) o[j] = 0;                        \
            cad_koff(&p, k, 0, p.nkeep, o);                                   \
            if (p.parts > 1) o[0] = t;                                        \
            if (p.nkeep == p.ndim) {                                          \
                BODY(o);                                                      \
            } else {                                                          \
                for (r = part; r < p.nr; r += p.parts) {                      \
                    long long q[CAD_KMAXOP];                                  \
                    CAD_UNROLL                                                \
                    for (j = 0; j < CAD_KMAXOP; j++) q[j] = o[j];             \
                    cad_koff(&p, r, p.nkeep, p.ndim, q);                      \
                    if (p.parts > 1) q[0] = t;                                \
                    BODY(q);                                                  \
                }                                                             \
            }                                                                 \
        }                                                                     \
    }

#define CAD_OPND(T, k, q) (((T *)p.ptr[k])[q[k]])

/* the 1-D path (cad_kp.h): operand k at element i + u S */
#define CAD_VOP(T, k, i, S, u) (((T *)p.ptr[k])[((i) + (long long)(u) * (S)) * p.st[k][0]])

/* a row kernel with a 1-D path: VBODY(i, S) runs elements i + u S (u < CAD_VW) */
#define CAD_ROW_KERNEL_V(NAME, BODY, VBODY)                                    \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        if (p.vec) {                                                          \
            long long i = CAD_TID, S = CAD_NTH, n = p.nk;                     \
            for (; i + (CAD_VW - 1) * S < n; i += CAD_VW * S) VBODY(i, S);    \
            for (; i < n; i += S) {                                           \
                long long q[CAD_KMAXOP];                                      \
                int j;                                                        \
                CAD_UNROLL                                                    \
                for (j = 0; j < CAD_KMAXOP; j++) q[j] = j < p.nop ? i * p.st[j][0] : 0; \
                BODY(q);                                                      \
            }                                                                 \
            return;                                                           \
        }                                                                     \
        CAD_ROW_LOOP(BODY)                                                    \
    }

/* ---- hand-written rows (the CPU versions are in cpu/kernels.c and cpu/sweep.c) */
#define CAD_B_ACC_F64(q) { CAD_OPND(double, 0, q) += CAD_OPND(const double, 1, q); }
#define CAD_B_ACC_F32(q) { CAD_OPND(float, 0, q) += CAD_OPND(const float, 1, q); }
#define CAD_B_ACC_I64(q) { CAD_OPND(long long, 0, q) += CAD_OPND(const long long, 1, q); }
#define CAD_B_ACC_B(q) { CAD_OPND(unsigned char, 0, q) |= CAD_OPND(const unsigned char, 1, q); }
#define CAD_B_MUL_F64(q) { CAD_OPND(double, 0, q) *= CAD_OPND(const double, 1, q); }
#define CAD_B_MUL_F32(q) { CAD_OPND(float, 0, q) *= CAD_OPND(const float, 1, q); }
#define CAD_B_MAX_F64(q) { double a_ = CAD_OPND(double, 0, q), v_ = CAD_OPND(const double, 1, q); CAD_OPND(double, 0, q) = CAD_MAX2(a_, v_); }
#define CAD_B_MAX_F32(q) { float a_ = CAD_OPND(float, 0, q), v_ = CAD_OPND(const float, 1, q); CAD_OPND(float, 0, q) = CAD_MAX2(a_, v_); }
#define CAD_B_MIN_F64(q) { double a_ = CAD_OPND(double, 0, q), v_ = CAD_OPND(const double, 1, q); CAD_OPND(double, 0, q) = CAD_MIN2(a_, v_); }
#define CAD_B_MIN_F32(q) { float a_ = CAD_OPND(float, 0, q), v_ = CAD_OPND(const float, 1, q); CAD_OPND(float, 0, q) = CAD_MIN2(a_, v_); }
/* sums over reduced dims (the accumulate row with reduced dims, as cad_reduce and
 * broadcast gradients run it): the walk accumulates in a register, four loads in
 * flight, and adds the total to the destination (or its partial slot) once */
#define CAD_RACC_KERNEL(NAME, T)                                               \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        long long t, total = p.nk * p.parts;                                  \
        for (t = CAD_TID; t < total; t += CAD_NTH) {                          \
            long long k = t, part = 0, o[CAD_KMAXOP], r;                      \
            int j;                                                            \
            T s = 0;                                                          \
            if (p.parts > 1) { part = t / p.nk; k = t - part * p.nk; }        \
            CAD_UNROLL                                                        \
            for (j = 0; j < CAD_KMAXOP; j++) o[j] = 0;                        \
            cad_koff(&p, k, 0, p.nkeep, o);                                   \
            if (p.parts > 1) o[0] = t;                                        \
            if (p.ndim - p.nkeep == 1) {                                      \
                const T *src = (const T *)p.ptr[1] + o[1];                    \
                const long long sr = p.st[1][p.nkeep];                        \
                CAD_UNROLL4                                                   \
                for (r = part; r < p.nr; r += p.parts) s += src[r * sr];      \
            } else {                                                          \
                for (r = part; r < p.nr; r += p.parts) {                      \
                    long long q[CAD_KMAXOP];                                  \
                    CAD_UNROLL                                                \
                    for (j = 0; j < CAD_KMAXOP; j++) q[j] = o[j];             \
                    cad_koff(&p, r, p.nkeep, p.ndim, q);                      \
                    s += ((const T *)p.ptr[1])[q[1]];                         \
                }                                                             \
            }                                                                 \
            ((T *)p.ptr[0])[o[0]] += s;                                       \
        }                                                                     \
    }
CAD_RACC_KERNEL(k_racc_f64, double)
CAD_RACC_KERNEL(k_racc_f32, float)

/* the 1-D forms of dst (=|+=) (TD)src (V_ forms: cad_kp.h) */
#define CAD_VSET(i, S, TD, TS) { TS s_[CAD_VW]; int u_;                       \
    CAD_UNROLL for (u_ = 0; u_ < CAD_VW; u_++) s_[u_] = CAD_VOP(const TS, 1, i, S, u_); \
    CAD_UNROLL for (u_ = 0; u_ < CAD_VW; u_++) CAD_VOP(TD, 0, i, S, u_) = (TD)s_[u_]; }
#define CAD_VADD(i, S, TD, TS) { TS s_[CAD_VW]; TD d_[CAD_VW]; int u_;        \
    CAD_UNROLL for (u_ = 0; u_ < CAD_VW; u_++) {                              \
        s_[u_] = CAD_VOP(const TS, 1, i, S, u_); d_[u_] = CAD_VOP(TD, 0, i, S, u_); } \
    CAD_UNROLL for (u_ = 0; u_ < CAD_VW; u_++) CAD_VOP(TD, 0, i, S, u_) = d_[u_] + (TD)s_[u_]; }
#define CAD_V_ACC_F64(i, S) CAD_VADD(i, S, double, double)
#define CAD_V_ACC_F32(i, S) CAD_VADD(i, S, float, float)
CAD_ROW_KERNEL_V(k_acc_f64, CAD_B_ACC_F64, CAD_V_ACC_F64)
CAD_ROW_KERNEL_V(k_acc_f32, CAD_B_ACC_F32, CAD_V_ACC_F32)
CAD_ROW_KERNEL(k_acc_i64, CAD_B_ACC_I64)
CAD_ROW_KERNEL(k_acc_b, CAD_B_ACC_B)
CAD_ROW_KERNEL(k_mul_f64, CAD_B_MUL_F64)
CAD_ROW_KERNEL(k_mul_f32, CAD_B_MUL_F32)
CAD_ROW_KERNEL(k_max_f64, CAD_B_MAX_F64)
CAD_ROW_KERNEL(k_max_f32, CAD_B_MAX_F32)
CAD_ROW_KERNEL(k_min_f64, CAD_B_MIN_F64)
CAD_ROW_KERNEL(k_min_f32, CAD_B_MIN_F32)

/* casts: dst (=|+=) (TD)src */
#define CAD_C(q, TD, TS, EQ) { ((TD *)p.ptr[0])[q[0]] EQ (TD)((const TS *)p.ptr[1])[q[1]]; }
#define CAD_B_CP_F64_F64(q) CAD_C(q, double, double, =)
#define CAD_B_CP_F64_F32(q) CAD_C(q, double, float, =)
#define CAD_B_CP_F64_I64(q) CAD_C(q, double, long long, =)
#define CAD_B_CP_F64_B(q) CAD_C(q, double, unsigned char, =)
#define CAD_B_CP_F32_F64(q) CAD_C(q, float, double, =)
#define CAD_B_CP_F32_F32(q) CAD_C(q, float, float, =)
#define CAD_B_CP_F32_I64(q) CAD_C(q, float, long long, =)
#define CAD_B_CP_F32_B(q) CAD_C(q, float, unsigned char, =)
#define CAD_B_CP_I64_F64(q) CAD_C(q, long long, double, =)
#define CAD_B_CP_I64_F32(q) CAD_C(q, long long, float, =)
#define CAD_B_CP_I64_I64(q) CAD_C(q, long long, long long, =)
#define CAD_B_CP_I64_B(q) CAD_C(q, long long, unsigned char, =)
#define CAD_B_CP_B_B(q) CAD_C(q, unsigned char, unsigned char, =)
#define CAD_B_CA_F64_F64(q) CAD_C(q, double, double, +=)
#define CAD_B_CA_F64_F32(q) CAD_C(q, double, float, +=)
#define CAD_B_CA_F32_F64(q) CAD_C(q, float, double, +=)
#define CAD_B_CA_F32_F32(q) CAD_C(q, float, float, +=)
#define CAD_NZ(q, TS) { ((unsigned char *)p.ptr[0])[q[0]] = ((const TS *)p.ptr[1])[q[1]] != 0; }
#define CAD_B_CP_B_F64(q) CAD_NZ(q, double)
#define CAD_B_CP_B_F32(q) CAD_NZ(q, float)
#define CAD_B_CP_B_I64(q) CAD_NZ(q, long long)
#define CAD_V_CP_F64_F64(i, S) CAD_VSET(i, S, double, double)
CAD_ROW_KERNEL_V(k_cp_f64_f64, CAD_B_CP_F64_F64, CAD_V_CP_F64_F64)
#define CAD_V_CP_F64_F32(i, S) CAD_VSET(i, S, double, float)
CAD_ROW_KERNEL_V(k_cp_f64_f32, CAD_B_CP_F64_F32, CAD_V_CP_F64_F32)
CAD_ROW_KERNEL(k_cp_f64_i64, CAD_B_CP_F64_I64)
CAD_ROW_KERNEL(k_cp_f64_b, CAD_B_CP_F64_B)
#define CAD_V_CP_F32_F64(i, S) CAD_VSET(i, S, float, double)
CAD_ROW_KERNEL_V(k_cp_f32_f64, CAD_B_CP_F32_F64, CAD_V_CP_F32_F64)
#define CAD_V_CP_F32_F32(i, S) CAD_VSET(i, S, float, float)
CAD_ROW_KERNEL_V(k_cp_f32_f32, CAD_B_CP_F32_F32, CAD_V_CP_F32_F32)
CAD_ROW_KERNEL(k_cp_f32_i64, CAD_B_CP_F32_I64)
CAD_ROW_KERNEL(k_cp_f32_b, CAD_B_CP_F32_B)
CAD_ROW_KERNEL(k_cp_i64_f64, CAD_B_CP_I64_F64)
CAD_ROW_KERNEL(k_cp_i64_f32, CAD_B_CP_I64_F32)
CAD_ROW_KERNEL(k_cp_i64_i64, CAD_B_CP_I64_I64)
CAD_ROW_KERNEL(k_cp_i64_b, CAD_B_CP_I64_B)
CAD_ROW_KERNEL(k_cp_b_b, CAD_B_CP_B_B)
CAD_ROW_KERNEL(k_cp_b_f64, CAD_B_CP_B_F64)
CAD_ROW_KERNEL(k_cp_b_f32, CAD_B_CP_B_F32)
CAD_ROW_KERNEL(k_cp_b_i64, CAD_B_CP_B_I64)
#define CAD_V_CA_F64_F64(i, S) CAD_VADD(i, S, double, double)
CAD_ROW_KERNEL_V(k_ca_f64_f64, CAD_B_CA_F64_F64, CAD_V_CA_F64_F64)
#define CAD_V_CA_F64_F32(i, S) CAD_VADD(i, S, double, float)
CAD_ROW_KERNEL_V(k_ca_f64_f32, CAD_B_CA_F64_F32, CAD_V_CA_F64_F32)
#define CAD_V_CA_F32_F64(i, S) CAD_VADD(i, S, float, double)
CAD_ROW_KERNEL_V(k_ca_f32_f64, CAD_B_CA_F32_F64, CAD_V_CA_F32_F64)
#define CAD_V_CA_F32_F32(i, S) CAD_VADD(i, S, float, float)
CAD_ROW_KERNEL_V(k_ca_f32_f32, CAD_B_CA_F32_F32, CAD_V_CA_F32_F32)

/* max/min vjp: count the ties (c += x == m), then gx += g / c where x == m; a NaN
 * extreme (m != m) makes the whole slice's gradient NaN, as in JAX */
#define CAD_CNTEQ(q, T) { CAD_OPND(T, 0, q) += (T)(CAD_OPND(const T, 1, q) == CAD_OPND(const T, 2, q)); }
#define CAD_MAXVJP(q, T) { if (CAD_OPND(const T, 2, q) == CAD_OPND(const T, 3, q)) \
        CAD_OPND(T, 0, q) += CAD_OPND(const T, 1, q) / CAD_OPND(const T, 4, q); \
        else if (CAD_OPND(const T, 3, q) != CAD_OPND(const T, 3, q)) CAD_OPND(T, 0, q) += CAD_OPND(const T, 3, q); }
/* prod vjp: zeros counted (c) and non-zeros multiplied (q) per slice (two
 * reductions), then
 * gx += g * (no zero: prod / x; one zero and x is it: the product of the rest) */
#define CAD_CNTZ(q, T) { CAD_OPND(T, 0, q) += (T)(CAD_OPND(const T, 1, q) == 0); }
#define CAD_MULNZ(q, T) { T v_ = CAD_OPND(const T, 1, q); CAD_OPND(T, 0, q) *= v_ == 0 ? (T)1 : v_; }
#define CAD_PRODVJP(q, T) { T v_ = CAD_OPND(const T, 2, q), cz_ = CAD_OPND(const T, 3, q), pq_ = CAD_OPND(const T, 4, q); \
        if (cz_ == 0) CAD_OPND(T, 0, q) += CAD_OPND(const T, 1, q) * (pq_ / v_); \
        else if (cz_ == 1 && v_ == 0) CAD_OPND(T, 0, q) += CAD_OPND(const T, 1, q) * pq_; }
#define CAD_B_CNTEQ_F64(q) CAD_CNTEQ(q, double)
#define CAD_B_CNTEQ_F32(q) CAD_CNTEQ(q, float)
#define CAD_B_MAXVJP_F64(q) CAD_MAXVJP(q, double)
#define CAD_B_MAXVJP_F32(q) CAD_MAXVJP(q, float)
#define CAD_B_CNTZ_F64(q) CAD_CNTZ(q, double)
#define CAD_B_CNTZ_F32(q) CAD_CNTZ(q, float)
#define CAD_B_MULNZ_F64(q) CAD_MULNZ(q, double)
#define CAD_B_MULNZ_F32(q) CAD_MULNZ(q, float)
#define CAD_B_PRODVJP_F64(q) CAD_PRODVJP(q, double)
#define CAD_B_PRODVJP_F32(q) CAD_PRODVJP(q, float)
CAD_ROW_KERNEL(k_cnteq_f64, CAD_B_CNTEQ_F64)
CAD_ROW_KERNEL(k_cnteq_f32, CAD_B_CNTEQ_F32)
CAD_ROW_KERNEL(k_maxvjp_f64, CAD_B_MAXVJP_F64)
CAD_ROW_KERNEL(k_maxvjp_f32, CAD_B_MAXVJP_F32)
CAD_ROW_KERNEL(k_cntz_f64, CAD_B_CNTZ_F64)
CAD_ROW_KERNEL(k_cntz_f32, CAD_B_CNTZ_F32)
CAD_ROW_KERNEL(k_mulnz_f64, CAD_B_MULNZ_F64)
CAD_ROW_KERNEL(k_mulnz_f32, CAD_B_MULNZ_F32)
CAD_ROW_KERNEL(k_prodvjp_f64, CAD_B_PRODVJP_F64)
CAD_ROW_KERNEL(k_prodvjp_f32, CAD_B_PRODVJP_F32)

/* ---- fill: ptr[0][e] = the bit pattern i[1], for e < i[0] (8-, 4- or 1-byte elements) */
#define CAD_FILL_KERNEL(NAME, T)                                               \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        long long e;                                                          \
        for (e = CAD_TID; e < p.i[0]; e += CAD_NTH) ((T *)p.ptr[0])[e] = (T)p.i[1]; \
    }
CAD_FILL_KERNEL(k_fill_8, long long)
CAD_FILL_KERNEL(k_fill_4, int)
CAD_FILL_KERNEL(k_fill_1, unsigned char)

/* ---- gather / scatter over B batches: i[0] = n (positions), i[1] = B, i[2] = xsize;
 * ptr[2] = lin (long long).  gather: out[b, k] = x[b, lin[k]].  scatadd: out[b, lin[k]]
 * += g[b, k] (atomic: repeated positions add up).  gathadd: out[b, k] += x[b, lin[k]]. */
#define CAD_GATHER_KERNEL(NAME, T, EQ)                                         \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        const long long n = p.i[0], tot = p.i[0] * p.i[1], xs = p.i[2];       \
        const long long *lin = (const long long *)p.ptr[2];                   \
        long long e;                                                          \
        for (e = CAD_TID; e < tot; e += CAD_NTH) {                            \
            long long b = e / n, k = e - b * n;                               \
            ((T *)p.ptr[0])[e] EQ ((const T *)p.ptr[1])[b * xs + lin[k]];     \
        }                                                                     \
    }
CAD_GATHER_KERNEL(k_gather_8, long long, =)
CAD_GATHER_KERNEL(k_gather_4, int, =)
CAD_GATHER_KERNEL(k_gather_1, unsigned char, =)
CAD_GATHER_KERNEL(k_gathadd_f64, double, +=)
CAD_GATHER_KERNEL(k_gathadd_f32, float, +=)
#define CAD_SCATADD_KERNEL(NAME, T)                                            \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        const long long n = p.i[0], tot = p.i[0] * p.i[1], xs = p.i[2];       \
        const long long *lin = (const long long *)p.ptr[2];                   \
        long long e;                                                          \
        for (e = CAD_TID; e < tot; e += CAD_NTH) {                            \
            long long b = e / n, k = e - b * n;                               \
            CAD_ATOMIC_ADD(&((T *)p.ptr[0])[b * xs + lin[k]], ((const T *)p.ptr[1])[e]); \
        }                                                                     \
    }
CAD_SCATADD_KERNEL(k_scatadd_f64, double)
CAD_SCATADD_KERNEL(k_scatadd_f32, float)

/* ---- setitem (numpy's order: the last write to a position wins).  lastw: w (u64,
 * zeroed, one per output element) gets 1 + the last k writing each position;
 * setw: out[lin[k]] = v[k] for the winners; setgv: gv[k] += go[lin[k]] for the
 * winners; setgx: gx[j] += go[j] where nothing was written.  i[0] = n (or the
 * output size for setgx). */
CAD_GLOBAL void k_lastw(const CAD_GRIDCONST cad_kp p) {
    const long long *lin = (const long long *)p.ptr[1];
    long long k;
    for (k = CAD_TID; k < p.i[0]; k += CAD_NTH)
        CAD_ATOMIC_MAX_U64(&((unsigned long long *)p.ptr[0])[lin[k]], (unsigned long long)(k + 1));
}
#define CAD_SETW_KERNEL(NAME, T)                                               \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        const long long *lin = (const long long *)p.ptr[2];                   \
        const unsigned long long *w = (const unsigned long long *)p.ptr[3];   \
        long long k;                                                          \
        for (k = CAD_TID; k < p.i[0]; k += CAD_NTH)                           \
            if (w[lin[k]] == (unsigned long long)(k + 1))                     \
                ((T *)p.ptr[0])[lin[k]] = ((const T *)p.ptr[1])[k];           \
    }
CAD_SETW_KERNEL(k_setw_8, long long)
CAD_SETW_KERNEL(k_setw_4, int)
CAD_SETW_KERNEL(k_setw_1, unsigned char)
#define CAD_SETGV_KERNEL(NAME, T)                                              \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        const long long *lin = (const long long *)p.ptr[2];                   \
        const unsigned long long *w = (const unsigned long long *)p.ptr[3];   \
        long long k;                                                          \
        for (k = CAD_TID; k < p.i[0]; k += CAD_NTH)                           \
            if (w[lin[k]] == (unsigned long long)(k + 1))                     \
                ((T *)p.ptr[0])[k] += ((const T *)p.ptr[1])[lin[k]];          \
    }
CAD_SETGV_KERNEL(k_setgv_f64, double)
CAD_SETGV_KERNEL(k_setgv_f32, float)
#define CAD_SETGX_KERNEL(NAME, T)                                              \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        const unsigned long long *w = (const unsigned long long *)p.ptr[2];   \
        long long j;                                                          \
        for (j = CAD_TID; j < p.i[0]; j += CAD_NTH)                           \
            if (w[j] == 0) ((T *)p.ptr[0])[j] += ((const T *)p.ptr[1])[j];    \
    }
CAD_SETGX_KERNEL(k_setgx_f64, double)
CAD_SETGX_KERNEL(k_setgx_f32, float)

/* ---- cross-entropy, one thread per row: out[i] = logsumexp(z[i]) - z[i, lab[i]].
 * i[] = N, C, zrs, zcs, lst; ptr = out, z, lab, err (int: set to 1 on a label out
 * of range; the launcher reads it back) */
#define CAD_XENT_KERNEL(NAME, T, EXP, LOG)                                     \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        const long long N = p.i[0], C = p.i[1], zrs = p.i[2], zcs = p.i[3], lst = p.i[4]; \
        long long i, j;                                                       \
        for (i = CAD_TID; i < N; i += CAD_NTH) {                              \
            const T *row = (const T *)p.ptr[1] + i * zrs;                     \
            long long l = ((const long long *)p.ptr[2])[i * lst];             \
            T m = row[0], s = 0;                                              \
            if (l < 0 || l >= C) { *(int *)p.ptr[3] = 1; ((T *)p.ptr[0])[i] = 0; continue; } \
            for (j = 1; j < C; j++) if (row[j * zcs] > m) m = row[j * zcs];   \
            if (!isfinite((double)m)) m = 0;                                  \
            for (j = 0; j < C; j++) s += EXP(row[j * zcs] - m);               \
            ((T *)p.ptr[0])[i] = m + LOG(s) - row[l * zcs];                   \
        }                                                                     \
    }
CAD_XENT_KERNEL(k_xent_f64, double, exp, log)
CAD_XENT_KERNEL(k_xent_f32, float, expf, logf)
/* its vjp, one thread per logit: gz[i, j] (=|+=) g[i] (softmax(z[i])_j - [j == lab[i]]),
 * lse = out[i] + z[i, lab[i]].  i[] = N, C, zrs, zcs, lst, os, assign; ptr = gz
 * (contiguous N x C), g (contiguous N), z, lab, out */
#define CAD_XENTB_KERNEL(NAME, T, EXP)                                         \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        const long long N = p.i[0], C = p.i[1], zrs = p.i[2], zcs = p.i[3], lst = p.i[4], os = p.i[5]; \
        long long e;                                                          \
        for (e = CAD_TID; e < N * C; e += CAD_NTH) {                          \
            long long i = e / C, j = e - i * C;                               \
            const T *row = (const T *)p.ptr[2] + i * zrs;                     \
            long long l = ((const long long *)p.ptr[3])[i * lst];             \
            T lse = ((const T *)p.ptr[4])[i * os] + row[l * zcs], g = ((const T *)p.ptr[1])[i]; \
            T v = g * EXP(row[j * zcs] - lse) - (j == l ? g : (T)0);          \
            if (p.i[6]) ((T *)p.ptr[0])[e] = v; else ((T *)p.ptr[0])[e] += v; \
        }                                                                     \
    }
CAD_XENTB_KERNEL(k_xentb_f64, double, exp)
CAD_XENTB_KERNEL(k_xentb_f32, float, expf)

/* ---- a run of 0-d records swept in one kernel, on one thread (NOTE [ Device scalar
 * runs ] in cpu/sweep.c).  ptr = instructions, gradient slots, slot -> gradient it
 * starts from (NULL: 0), slot -> gradient buffer it ends in (NULL: none);
 * i[0] = instructions, i[1] = slots.  VJP is generated from the op table. */
#define CAD_DSWEEP_KERNEL(NAME, T, VJP)                                        \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        const cad_dsinst *in = (const cad_dsinst *)p.ptr[0];                  \
        T *G = (T *)p.ptr[1];                                                 \
        T *const *init = (T *const *)p.ptr[2];                                \
        T *const *wb = (T *const *)p.ptr[3];                                  \
        long long k;                                                          \
        if (CAD_TID != 0) return;                                             \
        for (k = 0; k < p.i[1]; k++) G[k] = init[k] ? *CAD_H(const T *, init[k]) : (T)0; \
        for (k = 0; k < p.i[0]; k++) {                                        \
            const cad_dsinst *q = in + k;                                     \
            T x = q->x ? *CAD_H(const T *, q->x) : (T)0;                      \
            T y = q->y ? *CAD_H(const T *, q->y) : (T)0;                      \
            T out = *CAD_H(const T *, q->out), gx = 0, gy = 0;                \
            VJP(q->op, q->mask, G[q->gout], x, y, out, &gx, &gy);             \
            if (q->mask & 1) G[q->gx] += gx;                                  \
            if (q->mask & 2) G[q->gy] += gy;                                  \
        }                                                                     \
        for (k = 0; k < p.i[1]; k++) if (wb[k]) *CAD_H(T *, wb[k]) = G[k];    \
    }

/* ---- cross products, one thread per row (CAD_CROSS_ROW in cad_kp.h).  i[] = rows,
 * acc; ptr = out, x, y (contiguous) */
#define CAD_CROSS_KERNEL(NAME, T)                                              \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        long long s;                                                          \
        for (s = CAD_TID; s < p.i[0]; s += CAD_NTH)                           \
            CAD_CROSS_ROW(T, (T *)p.ptr[0], (const T *)p.ptr[1], (const T *)p.ptr[2], s, p.i[1]); \
    }
CAD_CROSS_KERNEL(k_cross_f64, double)
CAD_CROSS_KERNEL(k_cross_f32, float)
/* ---- scans, one thread per slice (CAD_SCAN_SLICE in cad_kp.h).  i[] = outer, n,
 * inner, rev, prod, acc; ptr = out, x (contiguous) */
#define CAD_SCAN_KERNEL(NAME, T)                                               \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        const long long n = p.i[1], inner = p.i[2], ns = p.i[0] * p.i[2];      \
        long long s;                                                          \
        for (s = CAD_TID; s < ns; s += CAD_NTH) {                             \
            const long long o = s / inner, base = o * n * inner + (s - o * inner); \
            CAD_SCAN_SLICE(T, (T *)p.ptr[0], (const T *)p.ptr[1], base, n, inner, \
                           p.i[3], p.i[4], p.i[5]);                            \
        }                                                                     \
    }
CAD_SCAN_KERNEL(k_scan_f64, double)
CAD_SCAN_KERNEL(k_scan_f32, float)
/* cumprod's vjp, one thread per slice.  i[] = outer, n, inner, acc; ptr = gx, g, x,
 * out (contiguous) */
#define CAD_CUMPRODB_KERNEL(NAME, T)                                           \
    CAD_GLOBAL void NAME(const CAD_GRIDCONST cad_kp p) {                       \
        const long long n = p.i[1], inner = p.i[2], ns = p.i[0] * p.i[2];      \
        long long s;                                                          \
        for (s = CAD_TID; s < ns; s += CAD_NTH) {                             \
            const long long o = s / inner, base = o * n * inner + (s - o * inner); \
            CAD_CUMPROD_VJP_SLICE(T, (T *)p.ptr[0], (const T *)p.ptr[1], (const T *)p.ptr[2], \
                                  (const T *)p.ptr[3], base, n, inner, p.i[3]); \
        }                                                                     \
    }
CAD_CUMPRODB_KERNEL(k_cumprodb_f64, double)
CAD_CUMPRODB_KERNEL(k_cumprodb_f32, float)

/* ---- one optimizer step over every CUDA parameter at once (NOTE [ Optimizer
 * updates ] in cpu/optim.c; the arithmetic of its SGD_LOOP and ADAM_LOOP, operation
 * by operation).  ptr[0]: the slots (cad_opt_slot) in device memory, whose buffer
 * addresses are read from device memory (hence CAD_H); ptr[1]: off (long long,
 * ns + 1 entries, slot k's first element in the concatenation); i[0] = ns, i[1] =
 * the elements of all slots.  Each element finds its slot by bisection. */
#define CAD_OPT_ELEM(NAME, T, SQRT)                                            \
    CAD_DEVICE void NAME(const cad_opt_slot *s, long long i) {                 \
        const int f = s->flags, delta = (f & CAD_OPT_DELTA) != 0;             \
        const T pi = CAD_H(const T *, s->p)[i];                               \
        const T sg = (f & CAD_OPT_MAXIMIZE) ? (T)-1 : (T)1, wd = (T)s->wd;    \
        T gi = sg * CAD_H(const T *, s->g)[i];                                \
        T *o = CAD_H(T *, s->out);                                            \
        if (f & CAD_OPT_ADAM) {                                               \
            const int dec = (f & CAD_OPT_DECOUPLED) != 0;                     \
            const double w1d = 1.0 - s->beta1;                                \
            const T w1 = (T)w1d, w1c = (T)(1.0 - w1d), b2 = (T)s->beta2,      \
                    c2 = (T)(1.0 - s->beta2), eps = (T)s->eps,                \
                    ibc2s = (T)(1.0 / sqrt(s->bc2)), nss = (T)-(s->lr / s->bc1), \
                    shrink = (T)(1.0 - s->lr * s->wd), nlrwd = (T)(-s->lr * s->wd); \
            const int cwd = s->wd != 0.0 && !dec, dwd = s->wd != 0.0 && dec, \
                      small = fabs(w1d) < 0.5;                                \
            const T mi = CAD_H(const T *, s->m0)[i], vi = CAD_H(const T *, s->v0)[i]; \
            T mn, vn, d;                                                      \
            gi = cwd ? gi + wd * pi : gi;                                     \
            mn = small ? mi + w1 * (gi - mi) : gi - (gi - mi) * w1c;          \
            vn = vi * b2 + c2 * gi * gi;                                      \
            CAD_H(T *, s->m)[i] = mn;                                         \
            CAD_H(T *, s->v)[i] = vn;                                         \
            if (f & CAD_OPT_AMSGRAD) {                                        \
                const T wi = CAD_H(const T *, s->w0)[i];                      \
                vn = (wi != wi || wi > vn) ? wi : vn;                         \
                CAD_H(T *, s->w)[i] = vn;                                     \
            }                                                                 \
            d = SQRT(vn) * ibc2s + eps;                                       \
            o[i] = delta ? (dwd ? nlrwd * pi : (T)0) + nss * mn / d           \
                         : (dwd ? pi * shrink : pi) + nss * mn / d;           \
        } else {                                                              \
            const T mom = (T)s->momentum, keep = (T)(1.0 - s->dampening), nlr = (T)-s->lr; \
            gi = wd != (T)0 ? gi + wd * pi : gi;                              \
            if (mom != (T)0) {                                                \
                const T b = (f & CAD_OPT_FIRST) ? gi                          \
                            : CAD_H(const T *, s->m0)[i] * mom + keep * gi;   \
                CAD_H(T *, s->m)[i] = b;                                      \
                gi = (f & CAD_OPT_NESTEROV) ? gi + mom * b : b;               \
            }                                                                 \
            o[i] = delta ? nlr * gi : pi + nlr * gi;                          \
        }                                                                     \
    }
CAD_OPT_ELEM(cad_opt_f64, double, sqrt)
CAD_OPT_ELEM(cad_opt_f32, float, sqrtf)

CAD_GLOBAL void k_optim(const CAD_GRIDCONST cad_kp p) {
    const cad_opt_slot *sl = (const cad_opt_slot *)p.ptr[0];
    const long long *off = (const long long *)p.ptr[1];
    const long long ns = p.i[0], tot = p.i[1];
    long long e;
    for (e = CAD_TID; e < tot; e += CAD_NTH) {
        long long a = 0, b = ns;
        while (b - a > 1) {
            const long long c = (a + b) / 2;
            if (off[c] <= e) a = c; else b = c;
        }
        if (sl[a].dtype == 1) cad_opt_f32(sl + a, e - off[a]);
        else cad_opt_f64(sl + a, e - off[a]);
    }
}

/* every hand-written kernel, for the launcher's table (X(name)) */
#define CAD_HAND_KERNELS(X)                                                    \
    X(k_racc_f64) X(k_racc_f32)                                                 \
    X(k_acc_f64) X(k_acc_f32) X(k_acc_i64) X(k_acc_b) X(k_mul_f64) X(k_mul_f32)  \
    X(k_max_f64) X(k_max_f32) X(k_min_f64) X(k_min_f32)                         \
    X(k_cp_f64_f64) X(k_cp_f64_f32) X(k_cp_f64_i64) X(k_cp_f64_b)               \
    X(k_cp_f32_f64) X(k_cp_f32_f32) X(k_cp_f32_i64) X(k_cp_f32_b)               \
    X(k_cp_i64_f64) X(k_cp_i64_f32) X(k_cp_i64_i64) X(k_cp_i64_b)               \
    X(k_cp_b_b) X(k_cp_b_f64) X(k_cp_b_f32) X(k_cp_b_i64)                       \
    X(k_ca_f64_f64) X(k_ca_f64_f32) X(k_ca_f32_f64) X(k_ca_f32_f32)             \
    X(k_cnteq_f64) X(k_cnteq_f32) X(k_maxvjp_f64) X(k_maxvjp_f32)               \
    X(k_cntz_f64) X(k_cntz_f32) X(k_mulnz_f64) X(k_mulnz_f32)                   \
    X(k_prodvjp_f64) X(k_prodvjp_f32)                                           \
    X(k_fill_8) X(k_fill_4) X(k_fill_1)                                         \
    X(k_gather_8) X(k_gather_4) X(k_gather_1) X(k_gathadd_f64) X(k_gathadd_f32) \
    X(k_scatadd_f64) X(k_scatadd_f32)                                           \
    X(k_lastw) X(k_setw_8) X(k_setw_4) X(k_setw_1) X(k_setgv_f64) X(k_setgv_f32) \
    X(k_setgx_f64) X(k_setgx_f32)                                               \
    X(k_xent_f64) X(k_xent_f32) X(k_xentb_f64) X(k_xentb_f32)                   \
    X(k_dsweep_f64) X(k_dsweep_f32)                                             \
    X(k_scan_f64) X(k_scan_f32) X(k_cumprodb_f64) X(k_cumprodb_f32)              \
    X(k_cross_f64) X(k_cross_f32)                                               \
    X(k_optim)

#endif
