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
static int job_nt = 0;            /* threads the job may use (the caller is thread 0) */
static int job_units = 0, next_unit = 0, active = 0;   /* NOTE [ Pool units ] */
static cad_task job_fn = NULL;
static void *job_arg = NULL;
static pid_t pool_pid = 0;
static int64_t start_gen[POOL_MAX];   /* the generation a worker was created in */

/* NOTE [ Pool units ]
 * A job of nt threads is cut into cad_pool_units(nt) units (fn(arg, u, units) for
 * each u), which the caller and the workers take one at a time.  A thread that the
 * scheduler does not run (a busy neighbour on its core) delays at most the unit it
 * holds: the others take the rest, and the caller never waits for a worker that has
 * not started (a late worker finds no unit left and goes back to sleep).  Which
 * thread runs a unit does not change the result: each unit is a fixed range, and
 * partial results are merged in unit order. */
int cad_pool_units(int nt) {
    int u = nt * 4;
    return nt < 2 ? 1 : (u > POOL_MAX ? POOL_MAX : u);
}

/* take and run units of the current job until none is left (called with mu held,
 * returns with mu held) */
static void run_units(int64_t gen) {
    while (generation == gen && job_fn != NULL && next_unit < job_units) {
        int u = next_unit++, n = job_units;
        cad_task fn = job_fn;
        void *arg = job_arg;
        active++;
        pthread_mutex_unlock(&mu);
        fn(arg, u, n);
        pthread_mutex_lock(&mu);
        if (--active == 0 && next_unit >= job_units) pthread_cond_signal(&done);
    }
}

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
        if (tid < job_nt) run_units(seen);
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
    active = 0;
    job_fn = NULL;
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

/* fn(arg, u, units) for u in [0, units), units = cad_pool_units(nt), on up to nt
 * threads (NOTE [ Pool units ]) */
void cad_parallel(cad_task fn, void *arg, int nt) {
    const int units = cad_pool_units(nt < 1 ? 1 : (nt > POOL_MAX ? POOL_MAX : nt));
    int64_t gen;
    if (nt > POOL_MAX) nt = POOL_MAX;
    if (nt < 2 || pthread_mutex_trylock(&busy) != 0) {
        int u;
        for (u = 0; u < units; u++) fn(arg, u, units);   /* serial: the same units */
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
    job_units = units;
    next_unit = 0;
    active = 0;
    gen = ++generation;
    pthread_cond_broadcast(&go);
    run_units(gen);
    while (active > 0) pthread_cond_wait(&done, &mu);   /* units others hold */
    job_fn = NULL;   /* a late worker finds nothing to do */
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&busy);
}
