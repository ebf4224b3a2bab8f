/* The fake CUDA device's kernels: kernels.cuh and the generated rows compiled for
 * the host (CAD_HOST_EMU: each grid-stride loop runs to the end in one call).
 * The order of this table is the kernel ids of the launcher, real device too. */
#define CAD_HOST_EMU 1
#include <stdint.h>
#include <stddef.h>
#include "kernels.cuh"
#include "_gen_rows.cuh"
#include "cad_cuda.h"

#define CAD_ENTRY(name) {#name, name},
const cad_hostk_entry cad_host_kernels[] = {
    CAD_HAND_KERNELS(CAD_ENTRY)
    CAD_GEN_KERNELS(CAD_ENTRY)
    {NULL, NULL}
};
