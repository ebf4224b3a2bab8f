#define _GNU_SOURCE
/* A small thread pool for the CPU kernels (instead of OpenMP): workers sleep on a
 * condition variable between jobs, so they never spin on cores that BLAS or
 * another library's threads need, and importing cad changes no process-wide
 * setting.  One job runs at a time; a caller that finds the pool busy (another
 * Python thread's sweep) runs its job on its own thread.  Fork-safe: a child
 * process starts with no workers and makes new ones. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>
#include "cad_cpu.h"

#define POOL_MAX 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;      /* guards the fields below */
static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;    /* held while a job runs */
static pthread_cond_t go = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static int nworkers = 0;          /* started workers (threads 1..nworkers) */
static int64_t generation = 0;    /* bumped per job */
static int job_nt = 0, pending = 0;
static cad_task job_fn = NULL;
static void *job_arg = NULL;
static pid_t pool_pid = 0;
static int64_t start_gen[POOL_MAX];   /* the generation a worker was created in */

int cad_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    return (int)sysconf(_SC_NPROCESSORS_ONLN);
}

static void *worker(void *p) {
    int tid = (int)(intptr_t)p;
    int64_t seen = 0;
    pthread_mutex_lock(&mu);
    seen = start_gen[tid];   /* a job posted right after its creation is still seen */
    for (;;) {
        while (generation == seen) pthread_cond_wait(&go, &mu);
        seen = generation;
        if (tid < job_nt) {
            cad_task fn = job_fn;
            void *arg = job_arg;
            int nt = job_nt;
            pthread_mutex_unlock(&mu);
            fn(arg, tid, nt);
            pthread_mutex_lock(&mu);
            if (--pending == 0) pthread_cond_signal(&done);
        }
    }
    return NULL;
}

static void after_fork_child(void) {
    /* the workers did not survive the fork; locks are re-initialised */
    pthread_mutex_init(&mu, NULL);
    pthread_mutex_init(&busy, NULL);
    pthread_cond_init(&go, NULL);
    pthread_cond_init(&done, NULL);
    nworkers = 0;
    pending = 0;
    pool_pid = getpid();
}

static int ensure_workers(int nt) {
    static int atfork = 0;
    if (!atfork) { pthread_atfork(NULL, NULL, after_fork_child); atfork = 1; pool_pid = getpid(); }
    while (nworkers < nt - 1 && nworkers < POOL_MAX - 1) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        start_gen[nworkers + 1] = generation;
        if (pthread_create(&th, &at, worker, (void *)(intptr_t)(nworkers + 1)) != 0) {
            pthread_attr_destroy(&at);
            break;
        }
        pthread_attr_destroy(&at);
        nworkers++;
    }
    return nworkers + 1;
}

void cad_parallel(cad_task fn, void *arg, int nt) {
    if (nt > POOL_MAX) nt = POOL_MAX;
    if (nt < 2 || pthread_mutex_trylock(&busy) != 0) {
        int t;
        for (t = 0; t < nt; t++) fn(arg, t, nt < 1 ? 1 : nt);   /* serial fallback */
        if (nt < 1) fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&mu);
    {
        int have = ensure_workers(nt);
        if (nt > have) nt = have;
    }
    job_fn = fn;
    job_arg = arg;
    job_nt = nt;
    pending = nt - 1;
    generation++;
    pthread_cond_broadcast(&go);
    pthread_mutex_unlock(&mu);
    fn(arg, 0, nt);
    pthread_mutex_lock(&mu);
    while (pending > 0) pthread_cond_wait(&done, &mu);
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&busy);
}
