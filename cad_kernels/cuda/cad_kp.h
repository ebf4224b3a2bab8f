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
 * the launcher combines afterwards.  nk, nr: the number of kept and reduced
 * indices.  i[], f[]: parameters of the hand-written kernels. */
#ifndef CAD_KP_H
#define CAD_KP_H

#define CAD_KMAXD 8
#define CAD_KMAXOP 8

typedef struct {
    char *ptr[CAD_KMAXOP];
    long long st[CAD_KMAXOP][CAD_KMAXD];
    long long shape[CAD_KMAXD];
    long long nk, nr, parts;
    int ndim, nkeep, nop, pad_;
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

#endif
