/* cad's CUDA backend on the C side: the driver API resolved at run time, device
 * memory, the kernel launcher and the device versions of the CPU primitives.
 *
 * NOTE [ CUDA backend ]
 * - Nothing links against CUDA: libcuda.so.1 (and libcublas for matrix products)
 *   are dlopen'ed when cad.cuda is first used, so cad builds and imports on
 *   machines with no toolkit and no driver.
 * - Kernels: one module, compiled at run time from cad/_core/_kernels.cu (the
 *   hand-written kernels.cuh plus the op table's rows, generated) through pycuda's
 *   compiler (nvcc, cached on disk), loaded here with cuModuleLoadData in the
 *   device's primary context (the one pycuda and PyTorch use) and launched with
 *   cuLaunchKernel from C: from the backward sweep, with the GIL released.
 * - Dispatch: the CPU code (sweep.c, forward.c, kernels.c) is written once; a
 *   record's output buffer says where it lives (BUF_CUDA), the sweep sets the
 *   thread's device (cad_dev) per record, and the primitives it calls
 *   (cad_iter_run, cad_reduce, cad_matmul, the index and cross-entropy kernels,
 *   gradient buffers) go to the device versions below when cad_dev is set.  A row
 *   kernel is found from the CPU row's function pointer (cad_*_row_names tables).
 * - Streams: everything runs on the legacy default stream, in order; copies to
 *   the host synchronise.  Freed device blocks go back to a cache (stream order
 *   makes reuse safe).
 * - The fake device: cad_cu_open(1) runs the same launcher against host memory
 *   and the kernels compiled for the host (host.c, CAD_HOST_EMU), so the whole
 *   device path (engine, sweep, launcher, every kernel's arithmetic) is tested on
 *   machines without a GPU.  cuBLAS is emulated (its column-major GEMM, exec.c);
 *   only the driver calls, nvcc and cuBLAS itself differ. */
#ifndef CAD_CUDA_H
#define CAD_CUDA_H
#include <stddef.h>
#include <stdint.h>
#include "cad_cpu.h"
#include "cad_kp.h"

/* the thread's current device for the primitives: 0 CPU, 1 CUDA */
extern __thread int cad_dev;

/* ---- driver (driver.c) */
int cad_cu_open(int fake);               /* 0: opened (or already); else a status, message in cad_cu_error() */
int cad_cu_is_open(void);
int cad_cu_is_fake(void);
int cad_cu_device_count(void);           /* without opening a context; -1: no driver */
const char *cad_cu_error(void);          /* the last error's message (per thread) */
int cad_cu_load(const void *image);      /* the compiled module (cubin); the fake ignores it */
int cad_cu_loaded(void);
int cad_cu_sync(void);
int cad_cu_name(char *buf, int n);
int cad_cu_capability(int *major, int *minor);
int cad_cu_meminfo(size_t *free_b, size_t *total_b);
extern int64_t cad_cu_fake_limit;        /* the fake device's memory, bytes (OOM tests) */
extern int cad_cu_allow_tf32;

/* ---- memory: device blocks (cached); NULL and CAD_EDEVMEM when out of memory */
void *cad_cu_alloc(size_t nb);
void cad_cu_release(void *p);
size_t cad_cu_cache_clear(void);
size_t cad_cu_cache_bytes(void);
size_t cad_cu_in_use(void);
int cad_cu_h2d(void *dst, const void *src, size_t nb);
int cad_cu_d2h(void *dst, const void *src, size_t nb);
int cad_cu_d2d(void *dst, const void *src, size_t nb);
int cad_cu_zero(void *p, size_t nb);
char *cad_cu_errword(void);
int cad_cu_fz_load(const void *image, int nreg, void **ffwd, void **fbwd);   /* fused kernels (fuse.c) */
int cad_cu_launch_fn(void *fn, const void *params, long long nthreads);              /* the device word kernels flag errors in (checked at d2h/sync) */
int cad_cu_fill(void *p, int esize, int64_t n, int64_t bits);   /* n elements of esize bytes := bits */
int cad_cu_optim_step(const cad_opt_slot *s, int64_t ns);       /* one launch for every CUDA parameter (cpu/optim.c's NOTE) */

/* ---- launches (driver.c): kernel ids are positions in the kernel list */
int cad_cu_kernel_id(const char *name);  /* -1 if unknown */
int cad_cu_launch(int kid, const cad_kp *p, long long nthreads);
int cad_cu_row_kernel(cad_row row);      /* the kernel of a CPU row, -1 if none */

/* ---- device primitives (exec.c) */
int cad_cu_iter_run(cad_iter *it, cad_row row, cad_row combine, const void *init);
int cad_cu_matmul(const cad_mm *mm);
int cad_cu_gather(int dtype, char *out, const char *x, const int64_t *lin, int64_t n, int64_t B, int64_t xsize);
int cad_cu_scatadd(int dtype, char *out, const char *g, const int64_t *lin, int64_t n, int64_t B, int64_t xsize);
int cad_cu_gathadd(int dtype, char *out, const char *x, const int64_t *lin, int64_t n, int64_t B, int64_t xsize);
int cad_cu_setitem(int dtype, char *out, const char *v, const int64_t *lin, int64_t n, int64_t osize);
int cad_cu_setitem_vjp(int dtype, char *gx, char *gv, const char *go, const int64_t *lin, int64_t n, int64_t osize);
int cad_cu_cross(int dtype, char *out, const char *x, const char *y, int64_t n, int acc);
int cad_cu_scan(int dtype, char *out, const char *x, int64_t outer, int64_t n, int64_t inner,
                int rev, int prod, int acc);
int cad_cu_cumprod_vjp(int dtype, char *gx, const char *g, const char *x, const char *out,
                       int64_t outer, int64_t n, int64_t inner, int acc);
int cad_cu_xent(int dtype, char *out, const char *z, int64_t zrs, int64_t zcs,
                const int64_t *lab, int64_t lst, int64_t N, int64_t C);
int cad_cu_xent_vjp(int dtype, char *gz, const char *g, const char *z, int64_t zrs, int64_t zcs,
                    const int64_t *lab, int64_t lst, const char *out, int64_t os, int64_t N, int64_t C,
                    int assign);

void cad_cu_set_cublas_paths(const char *paths);   /* ':'-separated libcublas candidates */
void cad_cu_seterr(const char *msg);
int cad_cu_ctx(void);                    /* the primary context, current on this thread */

/* host emulation (host.c) */
typedef void (*cad_hostk)(const cad_kp p);
typedef struct { const char *name; cad_hostk fn; } cad_hostk_entry;
extern const cad_hostk_entry cad_host_kernels[];

#endif
