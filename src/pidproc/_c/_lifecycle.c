/* Lifecycle helpers (_lifecycle.py): the keeper thread, waitid with rusage,
 * and the small facts the choice of mechanism needs.
 *
 * Everything here runs in the parent, never in a child: ordinary C, no
 * async-signal-safety contract.  Functions return their result or -errno.
 *
 * THE KEEPER THREAD.  PR_SET_PDEATHSIG fires when the *thread* that created
 * the child exits, not the process: a child spawned from a worker thread
 * would be killed when that worker ends.  So a die_with_parent child that
 * relies on the parent-death signal is cloned by one thread that never
 * exits, started on first use.  The Python thread posts it the request
 * (a mutex and a condition variable) and sleeps until the child has exec'd
 * or exited, on a futex word the kernel zeroes and wakes from the child's
 * execve or exit (CLONE_CHILD_CLEARTID, _clone.c); the child stores its
 * pid in the request first thing.  The keeper clones without CLONE_VFORK
 * and goes straight back to waiting for the next job.  So the asking
 * thread is woken once, by the child, as a plain spawn's parent is by its
 * vfork child.  Measured with `nox -s bench -- -k s12a` on a 2-CPU machine:
 * a die_with_parent spawn+wait cost 1.06x a plain one when the keeper slept
 * in CLONE_VFORK and then woke the caller (most often on the other, idle
 * CPU), 1.08x with the caller and the keeper both woken by the exec, and
 * 1.03x as now.  (Spinning or yielding before the sleep, tried earlier,
 * helped on one machine and cost 8 % on another.)
 *
 * The keeper runs on while its child does, and the child uses the keeper's
 * TLS (CLONE_VM without CLONE_SETTLS).  That is safe because between the
 * clone and its next job the keeper only takes k_lock and waits on
 * k_posted.  glibc's mutex and condition variable make raw futex calls,
 * which never set errno.  The thread fields they do write (the
 * cancellation state, which the child's cancellable calls such as close
 * also update, atomically, and the cleanup chain) matter only to
 * pthread_cancel, which nothing calls on the keeper.  The child reads
 * nothing of the keeper's stack: its ctx and stack belong to the job, on
 * the asking thread's side (struct pidproc_handover).  The next job
 * cannot come before the exec: the asking thread holds k_turn until then.
 * Only process death (exit, a fatal signal, SIGKILL included) or an execve
 * of the process ends the keeper, and then the signal is what we want.
 * Spawns through it are serialised by k_turn: one asking thread at a time
 * waits for its child's exec, as one thread spawning alone would.
 *
 * The child must start the program with the signal mask of the thread that
 * asked, not the keeper's (which blocks everything): the caller's mask
 * travels with the job.  So do the caller's CPU affinity and nice value,
 * which Linux keeps per thread and a child inherits from the thread that
 * cloned it: the keeper takes them on before it clones (a syscall only
 * when they differ from what it has).  A nice value lower than the
 * keeper's needs CAP_SYS_NICE (or RLIMIT_NICE) to take on; without it the
 * child runs at the keeper's.  Other per-thread state (a scheduling
 * policy, namespaces entered with setns(), a seccomp filter) is the
 * keeper's, as README.md says.
 *
 * fork(): the keeper does not exist in a forked child, and a job in flight
 * belonged to a thread that is gone too.  The atfork handler resets the
 * state (the synchronisation objects are re-initialised, the standard
 * remedy for a lock a vanished thread may have held) and the next spawn in
 * the child starts a keeper of its own.
 */
#include "_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- the keeper thread ---------------------------------------------------- */

/* On the asking thread's stack, which it leaves only when exec_word is 0:
 * the keeper reads the job before the clone and, after it, writes to it
 * only when no child was made (rc, then exec_word). */
struct keeper_job {
    pidproc_spawn_fn fn;
    struct pidproc_spawn *req;
    sigset_t mask;   /* the calling thread's: the child starts with it */
    cpu_set_t cpus;  /* the calling thread's affinity, if have_cpus */
    int have_cpus;
    int nice;        /* the calling thread's, if have_nice */
    int have_nice;
    int rc;
    uint32_t exec_word;   /* see struct pidproc_handover */
    struct pidproc_clone_frame frame;
};

static pthread_mutex_t k_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t k_turn = PTHREAD_MUTEX_INITIALIZER;   /* one job at a time */
static pthread_cond_t k_posted = PTHREAD_COND_INITIALIZER;
static struct keeper_job *k_job;
static int k_running;

/* The keeper's own affinity and nice value, as last read or set (keeper
 * thread only). */
static cpu_set_t k_cpus;
static int k_have_cpus;
static int k_nice;
static int k_have_nice;

static int read_nice(int *out)
{
    errno = 0;
    int n = getpriority(PRIO_PROCESS, 0);   /* Linux: the calling thread's */
    if (n == -1 && errno != 0)
        return 0;
    *out = n;
    return 1;
}

/* Before a job: take on the caller's affinity and nice value, where they
 * differ from the keeper's.  Failure leaves the keeper's (see above). */
static void keeper_match_caller(const struct keeper_job *job)
{
    if (job->have_cpus && (!k_have_cpus || !CPU_EQUAL(&job->cpus, &k_cpus))) {
        if (sched_setaffinity(0, sizeof job->cpus, &job->cpus) == 0) {
            k_cpus = job->cpus;
            k_have_cpus = 1;
        }
    }
    if (job->have_nice && (!k_have_nice || job->nice != k_nice)) {
        if (setpriority(PRIO_PROCESS, 0, job->nice) == 0) {
            k_nice = job->nice;
            k_have_nice = 1;
        } else {
            k_have_nice = read_nice(&k_nice);
        }
    }
}

static void *keeper_main(void *unused)
{
    (void)unused;
    k_have_cpus = sched_getaffinity(0, sizeof k_cpus, &k_cpus) == 0;
    k_have_nice = read_nice(&k_nice);
    pthread_mutex_lock(&k_lock);
    for (;;) {
        while (!k_job)
            pthread_cond_wait(&k_posted, &k_lock);
        struct keeper_job *job = k_job;
        k_job = NULL;
        pthread_mutex_unlock(&k_lock);
        keeper_match_caller(job);
        struct pidproc_handover h = {&job->mask, &job->exec_word, &job->frame};
        int rc = job->fn(job->req, &h);
        if (rc != 0) {
            /* No child, so no exec to wake the asking thread: do it here. */
            job->rc = rc;
            __atomic_store_n(&job->exec_word, 0, __ATOMIC_RELEASE);
            (void)syscall(SYS_futex, &job->exec_word, FUTEX_WAKE, 1, NULL, NULL, 0);
        }
        /* Otherwise job is not ours to touch: the asking thread may have
         * woken from the child's exec and returned already. */
        pthread_mutex_lock(&k_lock);
    }
    return NULL;
}

/* Called with k_turn held.  0, or an errno with no keeper. */
static int keeper_start(void)
{
    if (k_running)
        return 0;
    pthread_attr_t attr;
    sigset_t all, old;
    int rc = pthread_attr_init(&attr);
    if (rc)
        return rc;
    /* Small: the keeper only calls the spawn functions (the child runs on
     * a pool stack of its own, _stack.c). */
    (void)pthread_attr_setstacksize(&attr, 256 * 1024);
    (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Every signal blocked in the keeper: no handler ever runs on it. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t t;
    rc = pthread_create(&t, &attr, keeper_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        k_running = 1;
    return rc;
}

int pidproc_keeper_call(pidproc_spawn_fn fn, struct pidproc_spawn *req)
{
    struct keeper_job job;
    job.fn = fn;
    job.req = req;
    job.rc = 0;
    job.exec_word = 1;
    pthread_sigmask(SIG_BLOCK, NULL, &job.mask);
    /* More than CPU_SETSIZE CPUs: EINVAL, and the keeper's affinity stays. */
    job.have_cpus = sched_getaffinity(0, sizeof job.cpus, &job.cpus) == 0;
    job.have_nice = read_nice(&job.nice);

    pthread_mutex_lock(&k_turn);
    int rc = keeper_start();
    if (rc != 0) {
        pthread_mutex_unlock(&k_turn);
        req->pidfd = -1;
        req->pid = 0;
        return rc;   /* EAGAIN/ENOMEM: nothing created, transient */
    }
    pthread_mutex_lock(&k_lock);
    k_job = &job;
    pthread_cond_signal(&k_posted);
    pthread_mutex_unlock(&k_lock);
    /* Shared (not FUTEX_PRIVATE): the kernel's CLONE_CHILD_CLEARTID wake
     * is, and only a waiter of the same kind matches it.  EINTR (a signal
     * handler ran) and spurious wakes just look again. */
    int saved = errno;
    while (__atomic_load_n(&job.exec_word, __ATOMIC_ACQUIRE) != 0)
        (void)syscall(SYS_futex, &job.exec_word, FUTEX_WAIT, 1, NULL, NULL, 0);
    errno = saved;
    pthread_mutex_unlock(&k_turn);
    if (job.rc != 0)
        return job.rc;
    return pidproc_clone_finish(req, &job.frame);
}

int pidproc_keeper_running(void) { return k_running; }

static void keeper_after_fork_in_child(void)
{
    static const pthread_mutex_t fresh_mutex = PTHREAD_MUTEX_INITIALIZER;
    static const pthread_cond_t fresh_cond = PTHREAD_COND_INITIALIZER;
    memcpy(&k_lock, &fresh_mutex, sizeof k_lock);
    memcpy(&k_turn, &fresh_mutex, sizeof k_turn);
    memcpy(&k_posted, &fresh_cond, sizeof k_posted);
    k_job = NULL;
    k_running = 0;
}

__attribute__((constructor)) static void keeper_init(void)
{
    (void)pthread_atfork(NULL, NULL, keeper_after_fork_in_child);
}

/* ---- waitid with rusage --------------------------------------------------- */

/* The kernel's struct rusage (include/uapi/linux/resource.h): what the
 * syscall writes, whatever glibc's time_t is. */
struct kernel_rusage {
    long utime_sec, utime_usec, stime_sec, stime_usec;
    long rest[14];
};

int pidproc_waitid_rusage(int pidfd, int options, struct pidproc_waited *out)
{
    siginfo_t info;
    struct kernel_rusage ru;
    memset(&info, 0, sizeof info);   /* WNOHANG with nothing to report leaves it as is */
    memset(&ru, 0, sizeof ru);
    if (syscall(SYS_waitid, PIDPROC_P_PIDFD, pidfd, &info, options, &ru) < 0)
        return -errno;
    out->pid = info.si_pid;
    out->code = info.si_code;
    out->status = info.si_status;
    out->uid = info.si_uid;
    out->ru[0] = ru.utime_sec;
    out->ru[1] = ru.utime_usec;
    out->ru[2] = ru.stime_sec;
    out->ru[3] = ru.stime_usec;
    for (int i = 0; i < 14; i++)
        out->ru[4 + i] = ru.rest[i];
    return 0;
}

/* ---- facts ------------------------------------------------------------------ */

struct cap_header {
    uint32_t version;
    int pid;
};
struct cap_data {
    uint32_t effective, permitted, inheritable;
};
#define CAP_VERSION_3 0x20080522

int pidproc_has_capability(int cap)
{
    struct cap_header h = {CAP_VERSION_3, 0};
    struct cap_data d[2];
    memset(d, 0, sizeof d);
    if (cap < 0 || cap >= 64)
        return -EINVAL;
    if (syscall(SYS_capget, &h, d) < 0)
        return -errno;
    return (d[cap / 32].effective >> (cap % 32)) & 1;
}

int pidproc_lowest_free_fd(void)
{
    int fd = open("/", O_PATH | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    close(fd);
    return fd;
}

int pidproc_set_no_new_privs(void)
{
    return prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) < 0 ? -errno : 0;
}
