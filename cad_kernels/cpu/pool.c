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
#include <time.h>
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

/* NOTE [ Stragglers ]
 * A unit a worker holds while the scheduler has taken its core (a busy neighbour)
 * delays the job by up to a time slice, milliseconds against a job's tens of
 * microseconds: on a 2-core host shared with two spinning processes W6's jacrev at
 * two threads read 1.2-1.6x its one-thread time in some trials.  So the caller
 * times the job: when it waited for the others' units, after running out of its
 * own, more than 30 us plus the larger of 3 times its mean unit and all the time it
 * worked (units of uneven cost, an inverse's triangular blocks, wait up to a long
 * unit without a straggler), a worker was held off its core, provided the caller's
 * own work took under 1 ms: against larger jobs a time slice is a small delay, and
 * their workers' waits are mostly page faults of fresh outputs taken in turn (W4's
 * 1e7-element passes judged so ran a third of their jobs serially, 150 -> 220 ms),
 * and the next `serial_left` jobs run on the caller alone (the same units in order:
 * the same result; BLAS calls take one thread meanwhile, cad_pool_contended).  The
 * count doubles with each such job (16 .. 4096) and shrinks by an eighth with each
 * parallel job that did not wait, so parallel jobs come back when the neighbours
 * leave, and a machine where stragglers come more than about one job in six stays
 * serial.  Guarded by `busy` (only the thread running a job reads or writes them). */
#define STRAGGLE_JOB_MAX 1000000   /* ns of the caller's own work: larger jobs are not judged */
#define STRAGGLE_MIN 16
#define STRAGGLE_MAX 4096
static int serial_left = 0, backoff = 0;
static int64_t n_straggles = 0, n_serial = 0;   /* cad._core._engine._pool_stats */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int cad_pool_contended(void) { return __atomic_load_n(&serial_left, __ATOMIC_RELAXED) > 0; }
void cad_pool_stats(int64_t *out) {
    out[0] = n_straggles;
    out[1] = n_serial;
    out[2] = serial_left;
    out[3] = backoff;
}
void cad_pool_reset_stats(int serial) {   /* and the next `serial` jobs serial (tests) */
    pthread_mutex_lock(&busy);
    n_straggles = n_serial = 0;
    __atomic_store_n(&serial_left, serial, __ATOMIC_RELAXED);
    backoff = 0;
    pthread_mutex_unlock(&busy);
}

/* take and run units of the current job until none is left (called with mu held,
 * returns with mu held); the number it ran */
static int run_units(int64_t gen) {
    int ran = 0;
    while (generation == gen && job_fn != NULL && next_unit < job_units) {
        int u = next_unit++, n = job_units;
        cad_task fn = job_fn;
        void *arg = job_arg;
        active++;
        pthread_mutex_unlock(&mu);
        fn(arg, u, n);
        ran++;
        pthread_mutex_lock(&mu);
        if (--active == 0 && next_unit >= job_units) pthread_cond_signal(&done);
    }
    return ran;
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
    int64_t gen, t0, t1, t2;
    int ran;
    if (nt > POOL_MAX) nt = POOL_MAX;
    if (nt >= 2 && pthread_mutex_trylock(&busy) == 0) {
        if (serial_left > 0) {   /* NOTE [ Stragglers ] */
            __atomic_store_n(&serial_left, serial_left - 1, __ATOMIC_RELAXED);
            n_serial++;
            pthread_mutex_unlock(&busy);
        } else {
            goto parallel;
        }
    }
    {
        int u;
        for (u = 0; u < units; u++) fn(arg, u, units);   /* serial: the same units */
        return;
    }
parallel:
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
    t0 = now_ns();
    pthread_cond_broadcast(&go);
    ran = run_units(gen);
    t1 = now_ns();
    while (active > 0) pthread_cond_wait(&done, &mu);   /* units others hold */
    job_fn = NULL;   /* a late worker finds nothing to do */
    pthread_mutex_unlock(&mu);
    t2 = now_ns();
    if (t1 - t0 < STRAGGLE_JOB_MAX &&
            t2 - t1 > 30000 + (3 * (t1 - t0) / (ran > 0 ? ran : 1) > t1 - t0 ?
                               3 * (t1 - t0) / (ran > 0 ? ran : 1) : t1 - t0)) {   /* NOTE [ Stragglers ] */
        backoff = backoff < STRAGGLE_MIN ? STRAGGLE_MIN : (2 * backoff > STRAGGLE_MAX ? STRAGGLE_MAX : 2 * backoff);
        __atomic_store_n(&serial_left, backoff, __ATOMIC_RELAXED);
        n_straggles++;
    } else {
        backoff -= backoff / 8;
        if (backoff < STRAGGLE_MIN) backoff = 0;
    }
    pthread_mutex_unlock(&busy);
}
