/* The CUDA driver API, resolved at run time (dlopen libcuda.so.1), device memory
 * with a block cache, the kernel table and the launcher; and the fake device that
 * runs the same launcher on host memory with host-compiled kernels.
 * See NOTE [ CUDA backend ] in cad_cuda.h. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cad_cuda.h"

__thread int cad_dev = 0;
int64_t cad_cu_fake_limit = (int64_t)1 << 32;
int cad_cu_allow_tf32 = 0;

/* ---- the driver API subset cad uses (types as in cuda.h) */
typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef unsigned long long CUdeviceptr;

static struct {
    CUresult (*Init)(unsigned);
    CUresult (*DeviceGetCount)(int *);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceGetName)(char *, int, CUdevice);
    CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*CtxGetCurrent)(CUcontext *);
    CUresult (*CtxSynchronize)(void);
    CUresult (*ModuleLoadData)(CUmodule *, const void *);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, CUstream, void **, void **);
    CUresult (*MemAlloc)(CUdeviceptr *, size_t);
    CUresult (*MemFree)(CUdeviceptr);
    CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*MemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
    CUresult (*MemsetD8)(CUdeviceptr, unsigned char, size_t);
    CUresult (*MemGetInfo)(size_t *, size_t *);
    CUresult (*GetErrorString)(CUresult, const char **);
    CUresult (*GetErrorName)(CUresult, const char **);
} cu;

static void *lib = NULL;
static int state = 0;          /* 0 closed, 1 real, 2 fake */
static CUdevice dev0;
static CUcontext ctx = NULL;
static CUfunction *funcs = NULL;
static int nkern = 0;
static int loaded = 0;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static __thread char errbuf[512];
static int check_async(void);

const char *cad_cu_error(void) { return errbuf; }
int cad_cu_is_open(void) { return state != 0; }
int cad_cu_is_fake(void) { return state == 2; }
int cad_cu_loaded(void) { return state == 2 || loaded; }

static int fail(CUresult r, const char *what) {
    const char *nm = "?", *s = "";
    if (lib && cu.GetErrorName) cu.GetErrorName(r, &nm);
    if (lib && cu.GetErrorString) cu.GetErrorString(r, &s);
    snprintf(errbuf, sizeof errbuf, "%s failed: %s (%d): %s", what, nm ? nm : "?", r, s ? s : "");
    return CAD_ECUDA;
}

static int load_lib(void) {
    if (lib) return CAD_OK;
    lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libcuda.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(errbuf, sizeof errbuf, "no NVIDIA driver on this machine (libcuda.so.1 cannot be loaded: %s)",
                 dlerror());
        return CAD_ECUDA;
    }
#define SYM(field, name)                                                       \
    do {                                                                       \
        *(void **)&cu.field = dlsym(lib, name);                                \
        if (!cu.field) {                                                       \
            snprintf(errbuf, sizeof errbuf, "the NVIDIA driver lacks %s (too old?)", name); \
            dlclose(lib); lib = NULL;                                          \
            return CAD_ECUDA;                                                  \
        }                                                                      \
    } while (0)
    SYM(Init, "cuInit");
    SYM(DeviceGetCount, "cuDeviceGetCount");
    SYM(DeviceGet, "cuDeviceGet");
    SYM(DeviceGetName, "cuDeviceGetName");
    SYM(DeviceGetAttribute, "cuDeviceGetAttribute");
    SYM(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    SYM(CtxSetCurrent, "cuCtxSetCurrent");
    SYM(CtxGetCurrent, "cuCtxGetCurrent");
    SYM(CtxSynchronize, "cuCtxSynchronize");
    SYM(ModuleLoadData, "cuModuleLoadData");
    SYM(ModuleGetFunction, "cuModuleGetFunction");
    SYM(LaunchKernel, "cuLaunchKernel");
    SYM(MemAlloc, "cuMemAlloc_v2");
    SYM(MemFree, "cuMemFree_v2");
    SYM(MemcpyHtoD, "cuMemcpyHtoD_v2");
    SYM(MemcpyDtoH, "cuMemcpyDtoH_v2");
    SYM(MemcpyDtoD, "cuMemcpyDtoD_v2");
    SYM(MemsetD8, "cuMemsetD8_v2");
    SYM(MemGetInfo, "cuMemGetInfo_v2");
    SYM(GetErrorString, "cuGetErrorString");
    SYM(GetErrorName, "cuGetErrorName");
#undef SYM
    return CAD_OK;
}

int cad_cu_device_count(void) {
    int n = 0;
    CUresult r;
    if (state == 2) return 1;
    if (load_lib()) return -1;
    r = cu.Init(0);
    if (r) { fail(r, "cuInit"); return r == 100 ? 0 : -1; }   /* 100: CUDA_ERROR_NO_DEVICE */
    r = cu.DeviceGetCount(&n);
    if (r) { fail(r, "cuDeviceGetCount"); return -1; }
    if (n == 0) snprintf(errbuf, sizeof errbuf, "the NVIDIA driver sees no CUDA device");
    return n;
}

static int nkernels(void) {
    int n = 0;
    while (cad_host_kernels[n].name) n++;
    return n;
}

int cad_cu_open(int fake) {
    int st = CAD_OK, n;
    CUresult r;
    pthread_mutex_lock(&mu);
    if (state) {
        st = (state == 2) == (fake != 0) ? CAD_OK : CAD_ECUDA;
        if (st) snprintf(errbuf, sizeof errbuf, "the %s device is already open in this process",
                         state == 2 ? "fake" : "CUDA");
        goto out;
    }
    nkern = nkernels();
    if (fake) { state = 2; goto out; }
    n = cad_cu_device_count();
    if (n <= 0) { st = CAD_ECUDA; goto out; }
    if ((r = cu.DeviceGet(&dev0, 0))) { st = fail(r, "cuDeviceGet"); goto out; }
    if ((r = cu.DevicePrimaryCtxRetain(&ctx, dev0))) { st = fail(r, "cuDevicePrimaryCtxRetain"); goto out; }
    if ((r = cu.CtxSetCurrent(ctx))) { st = fail(r, "cuCtxSetCurrent"); goto out; }
    state = 1;
out:
    pthread_mutex_unlock(&mu);
    return st;
}

/* the primary context, current on the calling thread (the sweep may run anywhere) */
static inline int cur(void) {
    CUcontext c = NULL;
    CUresult r;
    if (state != 1) return CAD_OK;
    cu.CtxGetCurrent(&c);
    if (c == ctx) return CAD_OK;
    r = cu.CtxSetCurrent(ctx);
    return r ? fail(r, "cuCtxSetCurrent") : CAD_OK;
}

int cad_cu_load(const void *image) {
    int i, st = CAD_OK;
    CUmodule mod;
    CUresult r;
    if (state == 2) return CAD_OK;
    if (state != 1) { snprintf(errbuf, sizeof errbuf, "CUDA is not open"); return CAD_ECUDA; }
    pthread_mutex_lock(&mu);
    if (loaded) goto out;
    if ((st = cur())) goto out;
    if ((r = cu.ModuleLoadData(&mod, image))) { st = fail(r, "cuModuleLoadData"); goto out; }
    funcs = (CUfunction *)calloc((size_t)nkern, sizeof(CUfunction));
    if (!funcs) { st = CAD_ENOMEM; goto out; }
    for (i = 0; i < nkern; i++) {
        r = cu.ModuleGetFunction(&funcs[i], mod, cad_host_kernels[i].name);
        if (r) {
            char what[160];
            snprintf(what, sizeof what, "cuModuleGetFunction(%s)", cad_host_kernels[i].name);
            st = fail(r, what);
            goto out;
        }
    }
    loaded = 1;
out:
    pthread_mutex_unlock(&mu);
    return st;
}

int cad_cu_sync(void) {
    CUresult r;
    int st;
    if (state == 2) return check_async();
    if (state != 1) return CAD_OK;
    if ((st = cur())) return st;
    r = cu.CtxSynchronize();
    return r ? fail(r, "cuCtxSynchronize") : check_async();
}

int cad_cu_name(char *buf, int n) {
    if (state == 2) { snprintf(buf, (size_t)n, "cad fake CUDA device (host memory)"); return CAD_OK; }
    if (state != 1) return CAD_ECUDA;
    return cu.DeviceGetName(buf, n, dev0) ? CAD_ECUDA : CAD_OK;
}

int cad_cu_capability(int *major, int *minor) {
    if (state == 2) { *major = 0; *minor = 0; return CAD_OK; }
    if (state != 1) return CAD_ECUDA;
    if (cu.DeviceGetAttribute(major, 75, dev0) || cu.DeviceGetAttribute(minor, 76, dev0)) return CAD_ECUDA;
    return CAD_OK;
}

int cad_cu_meminfo(size_t *free_b, size_t *total_b) {
    int st;
    if (state == 2) {
        *total_b = (size_t)cad_cu_fake_limit;
        *free_b = (size_t)cad_cu_fake_limit - cad_cu_in_use();
        return CAD_OK;
    }
    if (state != 1) return CAD_ECUDA;
    if ((st = cur())) return st;
    return cu.MemGetInfo(free_b, total_b) ? CAD_ECUDA : CAD_OK;
}

/* ---- device memory: blocks rounded to a size class; freed blocks are kept per
 * class and handed out again (all work is ordered on one stream, so a block freed
 * after the launches that use it were queued can be reused by later ones) */
typedef struct { void *p; size_t cls; } live_t;
static live_t *live = NULL;             /* open addressing: block -> class */
static size_t nlive_cap = 0, nlive = 0;
typedef struct { size_t cls; void **v; int n, cap; } fl_t;
static fl_t *fls = NULL;
static int nfl = 0, capfl = 0;
static size_t cached_b = 0, inuse_b = 0, fake_b = 0;

static size_t size_class(size_t nb) {
    const size_t small = 512, big = (size_t)2 << 20;
    if (nb == 0) nb = 1;
    if (nb <= ((size_t)1 << 20)) return (nb + small - 1) / small * small;
    return (nb + big - 1) / big * big;
}

static inline size_t hptr(void *p, size_t cap) { return ((uintptr_t)p >> 8) * 0x9E3779B97F4A7C15ull % cap; }

static int live_put(void *p, size_t cls) {
    size_t i;
    if ((nlive + 1) * 2 > nlive_cap) {
        size_t nc = nlive_cap ? nlive_cap * 2 : 1024, k;
        live_t *nl = (live_t *)calloc(nc, sizeof(live_t));
        if (!nl) return -1;
        for (k = 0; k < nlive_cap; k++) {
            if (!live[k].p) continue;
            i = hptr(live[k].p, nc);
            while (nl[i].p) i = (i + 1) % nc;
            nl[i] = live[k];
        }
        free(live);
        live = nl;
        nlive_cap = nc;
    }
    i = hptr(p, nlive_cap);
    while (live[i].p) i = (i + 1) % nlive_cap;
    live[i].p = p;
    live[i].cls = cls;
    nlive++;
    return 0;
}

static size_t live_take(void *p) {   /* removes p; its class, 0 if unknown */
    size_t i, j, cls;
    if (!nlive_cap) return 0;
    i = hptr(p, nlive_cap);
    while (live[i].p && live[i].p != p) i = (i + 1) % nlive_cap;
    if (!live[i].p) return 0;
    cls = live[i].cls;
    live[i].p = NULL;
    nlive--;
    /* re-insert the rest of the cluster (deletion in linear probing) */
    j = (i + 1) % nlive_cap;
    while (live[j].p) {
        live_t e = live[j];
        size_t h;
        live[j].p = NULL;
        h = hptr(e.p, nlive_cap);
        while (live[h].p) h = (h + 1) % nlive_cap;
        live[h] = e;
        j = (j + 1) % nlive_cap;
    }
    return cls;
}

static fl_t *fl_of(size_t cls, int make) {
    int i;
    for (i = 0; i < nfl; i++) if (fls[i].cls == cls) return fls + i;
    if (!make) return NULL;
    if (nfl == capfl) {
        int nc = capfl ? capfl * 2 : 64;
        fl_t *n = (fl_t *)realloc(fls, (size_t)nc * sizeof(fl_t));
        if (!n) return NULL;
        fls = n;
        capfl = nc;
    }
    memset(fls + nfl, 0, sizeof(fl_t));
    fls[nfl].cls = cls;
    return fls + nfl++;
}

static void raw_free(void *p, size_t cls) {
    if (state == 2) { free(CAD_FAKE_HOST(void *, p)); fake_b -= cls; }
    else { cur(); cu.MemFree((CUdeviceptr)(uintptr_t)p); }
}

static void *raw_alloc(size_t cls) {
    if (state == 2) {
        void *p;
        if ((int64_t)(fake_b + cls) > cad_cu_fake_limit) return NULL;
        p = malloc(cls);
        if (!p) return NULL;
        fake_b += cls;
        return (void *)((uintptr_t)p | CAD_FAKE_BIT);   /* not dereferenceable on the host */
    } else {
        CUdeviceptr d = 0;
        if (cur()) return NULL;
        if (cu.MemAlloc(&d, cls)) return NULL;
        return (void *)(uintptr_t)d;
    }
}

static size_t clear_locked(void) {
    size_t freed = 0;
    int i, k;
    for (i = 0; i < nfl; i++) {
        for (k = 0; k < fls[i].n; k++) raw_free(fls[i].v[k], fls[i].cls);
        freed += (size_t)fls[i].n * fls[i].cls;
        fls[i].n = 0;
    }
    cached_b = 0;
    return freed;
}

void *cad_cu_alloc(size_t nb) {
    size_t cls = size_class(nb);
    fl_t *f;
    void *p = NULL;
    if (!state) { snprintf(errbuf, sizeof errbuf, "CUDA is not open"); return NULL; }
    pthread_mutex_lock(&mu);
    f = fl_of(cls, 0);
    if (f && f->n) {
        p = f->v[--f->n];
        cached_b -= cls;
    } else {
        p = raw_alloc(cls);
        if (!p && cached_b) {   /* out of memory: return the cache and try again */
            clear_locked();
            p = raw_alloc(cls);
        }
    }
    if (p) {
        if (live_put(p, cls)) { raw_free(p, cls); p = NULL; }
        else inuse_b += cls;
    }
    if (!p) {
        size_t fr = 0, tot = 0;
        pthread_mutex_unlock(&mu);
        cad_cu_meminfo(&fr, &tot);
        snprintf(errbuf, sizeof errbuf, "out of %s memory: cannot allocate %zu bytes (%zu of %zu bytes "
                 "free on the device, %zu in cad's tensors)", state == 2 ? "fake-device" : "GPU",
                 nb, fr, tot, inuse_b);
        return NULL;
    }
    pthread_mutex_unlock(&mu);
    return p;
}

void cad_cu_release(void *p) {
    size_t cls;
    fl_t *f;
    if (!p) return;
    pthread_mutex_lock(&mu);
    cls = live_take(p);
    if (cls) {
        inuse_b -= cls;
        f = fl_of(cls, 1);
        if (f && (f->n < f->cap || (f->v = (void **)realloc(f->v, (size_t)(f->cap = f->cap ? 2 * f->cap : 16) * sizeof(void *))))) {
            f->v[f->n++] = p;
            cached_b += cls;
        } else {
            raw_free(p, cls);
        }
    }
    pthread_mutex_unlock(&mu);
}

size_t cad_cu_cache_clear(void) {
    size_t r;
    pthread_mutex_lock(&mu);
    r = state ? clear_locked() : 0;
    pthread_mutex_unlock(&mu);
    return r;
}

size_t cad_cu_cache_bytes(void) { return cached_b; }
size_t cad_cu_in_use(void) { return inuse_b; }

int cad_cu_h2d(void *dst, const void *src, size_t nb) {
    CUresult r;
    int st;
    if (!nb) return CAD_OK;
    if (state == 2) { memcpy(CAD_FAKE_HOST(void *, dst), src, nb); return CAD_OK; }
    if ((st = cur())) return st;
    r = cu.MemcpyHtoD((CUdeviceptr)(uintptr_t)dst, src, nb);
    return r ? fail(r, "cuMemcpyHtoD") : CAD_OK;
}

/* ---- errors found by kernels (a cross-entropy label out of range): a device word
 * the kernel sets; read at the next copy to the host or synchronisation, as
 * PyTorch's device-side asserts, so the check costs no round trip per op */
static char *errword = NULL;
static int err_pending = 0;

char *cad_cu_errword(void) {
    if (!errword) {
        errword = (char *)cad_cu_alloc(4);   /* kept for the process: never released */
        if (!errword) return NULL;
        if (cad_cu_zero(errword, 4)) { cad_cu_release(errword); errword = NULL; return NULL; }
    }
    err_pending = 1;
    return errword;
}

static int check_async(void) {
    int v = 0;
    CUresult r;
    if (!err_pending || !errword) return CAD_OK;
    err_pending = 0;
    if (state == 2) memcpy(&v, CAD_FAKE_HOST(const void *, errword), 4);
    else if ((r = cu.MemcpyDtoH(&v, (CUdeviceptr)(uintptr_t)errword, 4))) return fail(r, "cuMemcpyDtoH");
    if (!v) return CAD_OK;
    cad_cu_zero(errword, 4);
    snprintf(errbuf, sizeof errbuf, "cross_entropy: a label outside [0, number of classes) was found "
             "on the GPU (the check runs there and is reported at the next copy to the host or "
             "synchronisation)");
    return CAD_ECUDA;
}

int cad_cu_d2h(void *dst, const void *src, size_t nb) {
    CUresult r;
    int st;
    if (!nb) return CAD_OK;
    if (state == 2) { memcpy(dst, CAD_FAKE_HOST(const void *, src), nb); return check_async(); }
    if ((st = cur())) return st;
    r = cu.MemcpyDtoH(dst, (CUdeviceptr)(uintptr_t)src, nb);
    return r ? fail(r, "cuMemcpyDtoH") : check_async();
}

int cad_cu_d2d(void *dst, const void *src, size_t nb) {
    CUresult r;
    int st;
    if (!nb) return CAD_OK;
    if (state == 2) { memmove(CAD_FAKE_HOST(void *, dst), CAD_FAKE_HOST(const void *, src), nb); return CAD_OK; }
    if ((st = cur())) return st;
    r = cu.MemcpyDtoD((CUdeviceptr)(uintptr_t)dst, (CUdeviceptr)(uintptr_t)src, nb);
    return r ? fail(r, "cuMemcpyDtoD") : CAD_OK;
}

int cad_cu_zero(void *p, size_t nb) {
    CUresult r;
    int st;
    if (!nb) return CAD_OK;
    if (state == 2) { memset(CAD_FAKE_HOST(void *, p), 0, nb); return CAD_OK; }
    if ((st = cur())) return st;
    r = cu.MemsetD8((CUdeviceptr)(uintptr_t)p, 0, nb);
    return r ? fail(r, "cuMemsetD8") : CAD_OK;
}

/* ---- kernels */
int cad_cu_kernel_id(const char *name) {
    int i;
    for (i = 0; cad_host_kernels[i].name; i++)
        if (!strcmp(cad_host_kernels[i].name, name)) return i;
    return -1;
}

int cad_cu_launch(int kid, const cad_kp *p, long long nthreads) {
    if (kid < 0 || kid >= nkern) {
        snprintf(errbuf, sizeof errbuf, "internal: no CUDA kernel %d", kid);
        return CAD_ECUDA;
    }
    if (nthreads <= 0) return CAD_OK;
    if (state == 2) {   /* the kernel reads host memory: strip the fake addresses' bit */
        cad_kp h = *p;
        int k;
        static int trace = -1;   /* CAD_CUDA_TRACE=1: list the fake device's launches on stderr */
        if (trace < 0) trace = getenv("CAD_CUDA_TRACE") != NULL;
        if (trace)
            fprintf(stderr, "cad fake launch %s threads=%lld nk=%lld nr=%lld parts=%lld ndim=%d vec=%d\n",
                    cad_host_kernels[kid].name, nthreads, p->nk, p->nr, p->parts, p->ndim, p->vec);
        for (k = 0; k < CAD_KMAXOP; k++) {
            if (h.ptr[k] && !((uintptr_t)h.ptr[k] & CAD_FAKE_BIT)) {   /* a GPU would fault */
                snprintf(errbuf, sizeof errbuf, "internal: kernel %s was given a host address "
                         "(operand %d)", cad_host_kernels[kid].name, k);
                return CAD_ECUDA;
            }
            h.ptr[k] = CAD_FAKE_HOST(char *, h.ptr[k]);
        }
        cad_host_kernels[kid].fn(h);
        return CAD_OK;
    } else {
        const unsigned block = 256;
        long long g = (nthreads + block - 1) / block;
        void *args[1];
        CUresult r;
        int st;
        if (!loaded) { snprintf(errbuf, sizeof errbuf, "cad's CUDA kernels are not loaded"); return CAD_ECUDA; }
        if (g > 65535LL * 8) g = 65535LL * 8;   /* grid-stride loops cover the rest */
        if ((st = cur())) return st;
        args[0] = (void *)p;
        r = cu.LaunchKernel(funcs[kid], (unsigned)g, 1, 1, block, 1, 1, 0, NULL, args, NULL);
        if (r) {
            char what[160];
            snprintf(what, sizeof what, "cuLaunchKernel(%s)", cad_host_kernels[kid].name);
            return fail(r, what);
        }
        return CAD_OK;
    }
}

/* ---- fused replay kernels (fuse.c): a module compiled at run time per tape, its
 * kernels fz_fwd_<k> / fz_bwd_<k>; the module stays loaded for the process */
int cad_cu_fz_load(const void *image, int nreg, void **ffwd, void **fbwd) {
    CUmodule mod;
    CUresult r;
    int k, st;
    char nm[32];
    if (state != 1) { snprintf(errbuf, sizeof errbuf, "CUDA is not open"); return CAD_ECUDA; }
    if ((st = cur())) return st;
    if ((r = cu.ModuleLoadData(&mod, image))) return fail(r, "cuModuleLoadData (fused replay kernels)");
    for (k = 0; k < nreg; k++) {
        snprintf(nm, sizeof nm, "fz_fwd_%d", k);
        if ((r = cu.ModuleGetFunction((CUfunction *)&ffwd[k], mod, nm))) return fail(r, "cuModuleGetFunction");
        snprintf(nm, sizeof nm, "fz_bwd_%d", k);
        if ((r = cu.ModuleGetFunction((CUfunction *)&fbwd[k], mod, nm))) return fail(r, "cuModuleGetFunction");
    }
    return CAD_OK;
}

int cad_cu_launch_fn(void *fn, const void *params, long long nthreads) {
    const unsigned block = 256;
    long long g = (nthreads + block - 1) / block;
    void *args[1];
    CUresult r;
    int st;
    if (nthreads <= 0) return CAD_OK;
    if (state != 1 || !fn) { snprintf(errbuf, sizeof errbuf, "internal: no fused kernel"); return CAD_ECUDA; }
    if (g > 65535LL * 8) g = 65535LL * 8;   /* grid-stride loops cover the rest */
    if ((st = cur())) return st;
    args[0] = (void *)params;
    r = cu.LaunchKernel((CUfunction)fn, (unsigned)g, 1, 1, block, 1, 1, 0, NULL, args, NULL);
    return r ? fail(r, "cuLaunchKernel (fused replay kernel)") : CAD_OK;
}

/* CPU row -> kernel id: an open-addressing map built on first use */
typedef struct { cad_row row; int kid; } rowk_t;
static rowk_t *rowmap = NULL;
static size_t rowcap = 0;

static inline size_t hrow(cad_row r) { return ((uintptr_t)r >> 4) * 0x9E3779B97F4A7C15ull % rowcap; }

static int build_rowmap(void) {
    const cad_rowname *tabs[3] = {cad_gen_row_names, cad_hand_row_names, cad_sweep_row_names};
    size_t n = 0;
    int t, i;
    for (t = 0; t < 3; t++) for (i = 0; tabs[t][i].row; i++) n++;
    rowcap = 4 * n + 16;
    rowmap = (rowk_t *)calloc(rowcap, sizeof(rowk_t));
    if (!rowmap) return CAD_ENOMEM;
    for (t = 0; t < 3; t++) {
        for (i = 0; tabs[t][i].row; i++) {
            size_t h = hrow(tabs[t][i].row);
            int kid = cad_cu_kernel_id(tabs[t][i].name);
            if (kid < 0) {
                snprintf(errbuf, sizeof errbuf, "internal: row %s has no CUDA kernel", tabs[t][i].name);
                free(rowmap);
                rowmap = NULL;
                return CAD_ECUDA;
            }
            while (rowmap[h].row && rowmap[h].row != tabs[t][i].row) h = (h + 1) % rowcap;
            rowmap[h].row = tabs[t][i].row;
            rowmap[h].kid = kid;
        }
    }
    return CAD_OK;
}

int cad_cu_row_kernel(cad_row row) {
    size_t h;
    if (!rowmap) {
        int st;
        pthread_mutex_lock(&mu);
        st = rowmap ? CAD_OK : build_rowmap();
        pthread_mutex_unlock(&mu);
        if (st) return -1;
    }
    h = hrow(row);
    while (rowmap[h].row) {
        if (rowmap[h].row == row) return rowmap[h].kid;
        h = (h + 1) % rowcap;
    }
    snprintf(errbuf, sizeof errbuf, "internal: a CPU row with no CUDA kernel");
    return -1;
}

void cad_cu_seterr(const char *msg) { snprintf(errbuf, sizeof errbuf, "%s", msg); }

int cad_cu_ctx(void) { return cur(); }
