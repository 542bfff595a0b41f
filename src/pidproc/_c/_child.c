/* The child side of the clone3 and clone paths.
 *
 * CONTRACT.  pidproc_child_main() runs in a child created with CLONE_VM |
 * CLONE_VFORK: it shares every page of the parent's memory, including the
 * parent thread's TLS (errno), while the parent thread is suspended until
 * the child execs or exits.  (A child of the keeper thread is made without
 * CLONE_VFORK: the thread that asked is the one suspended, and the keeper
 * only goes back to sleep, touching nothing the child uses; _lifecycle.c
 * says why that holds.)  Therefore, from here until execve/_exit:
 *   - only async-signal-safe calls (POSIX.1 list) and raw syscalls;
 *   - no malloc/free, no stdio, no locks, no writes to global state other
 *     than req->err_step/err_errno, which is how the failure is reported
 *     (and req->pid, when the keeper thread cloned: see _internal.h);
 *   - no glibc set*id wrappers: they broadcast the change to every thread
 *     of the process (nptl's setxid), and the "process" here is the parent's
 *     threads; raw syscalls change only this task;
 *   - the stack is a fixed-size one from the pool in _stack.c (the parent
 *     takes it before the clone and gives it back after; the child never
 *     touches the pool), sized from what this code was measured to use
 *     (python -m tests.child_stack, checked by tests/test_small_stacks.py),
 *     with a guard page below: no
 *     large locals (the 2 KiB getdents buffer is the largest) and no
 *     recursion;
 *   - no signal handler can run on that stack: every signal stays blocked
 *     until the handlers are reset (by CLONE_CLEAR_SIGHAND or
 *     reset_signal_handlers below), and only then is the caller's mask
 *     restored.
 * The steps and their order are those of CPython's _posixsubprocess
 * child_exec, so every error is the one the stdlib reports.
 */
#include "_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_close_range
#define __NR_close_range 436
#endif

extern char **environ;

static void fail(struct pidproc_spawn *req, int step, int err)
{
    req->err_step = step;
    req->err_errno = err;
    _exit(255);
}

static int set_inheritable(int fd, int inheritable)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0)
        return -1;
    int want = inheritable ? (flags & ~FD_CLOEXEC) : (flags | FD_CLOEXEC);
    if (want == flags)
        return 0;
    return fcntl(fd, F_SETFD, want);
}

static void reset_signal_handlers(void)
{
    /* What CLONE_CLEAR_SIGHAND does in the kernel: handled signals go back
     * to SIG_DFL, ignored ones stay ignored (exec would keep SIG_IGN too). */
    for (int sig = 1; sig < _NSIG; sig++) {
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) != 0)
            continue;   /* glibc's reserved signals answer EINVAL */
        if (sa.sa_handler == SIG_IGN || sa.sa_handler == SIG_DFL)
            continue;
        sa.sa_handler = SIG_DFL;
        sa.sa_flags = 0;
        sigemptyset(&sa.sa_mask);
        (void)sigaction(sig, &sa, NULL);
    }
}

/* Without close_range (before 5.9, or denied by seccomp): read /proc/self/fd
 * with raw getdents64 into a small stack buffer, as CPython does.  */
struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static int parse_fd(const char *s)
{
    int n = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        n = n * 10 + (*s - '0');
    }
    return n;
}

static void close_fds_by_listing(const struct pidproc_spawn *req)
{
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        /* No /proc: close every possible number up to the soft limit. */
        struct rlimit rl;
        long max = 65536;
        if (syscall(SYS_getrlimit, RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            max = (long)rl.rlim_cur;
        for (long fd = 3; fd < max; fd++)
            if (!pidproc_is_kept(req, (int)fd))
                (void)close((int)fd);
        return;
    }
    char buf[2048] __attribute__((aligned(8)));
    long n;
    while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            int fd = parse_fd(d->d_name);
            if (fd >= 3 && fd != dir && !pidproc_is_kept(req, fd))
                (void)close(fd);
            off += d->d_reclen;
        }
    }
    (void)close(dir);
}

static void close_open_fds(const struct pidproc_spawn *req)
{
    unsigned int start = 3;
    for (int i = 0; i < req->n_keep_fds; i++) {
        unsigned int keep = (unsigned int)req->keep_fds[i];
        if (keep < start)
            continue;
        if (keep > start && syscall(__NR_close_range, start, keep - 1, 0) != 0)
            goto fallback;
        start = keep + 1;
    }
    if (syscall(__NR_close_range, start, ~0U, 0) == 0)
        return;
fallback:
    close_fds_by_listing(req);
}

/* Reading the credentials back after each set*id call.  The return value
 * alone is not proof: a seccomp filter answering SECCOMP_RET_ERRNO(0), or an
 * emulator that stubs the call, reports success without changing anything,
 * and the program would then run with the caller's privileges (the stdlib's
 * child trusts the return value and does run it).  setreuid(u, u) that really
 * ran leaves real, effective and saved ids all u (the saved id follows the
 * effective one whenever the real id is set; the fs id follows too), so the
 * check never rejects a drop that happened, and a saved id left at 0 (which
 * would let the program regain root) is caught. */
static int ids_are(long getres_nr, unsigned int want)
{
    unsigned int r, e, s;
    if (syscall(getres_nr, &r, &e, &s) != 0)
        return 0;
    return r == want && e == want && s == want;
}

/* The kernel sorts the list it stores (duplicates kept), so compare as
 * multisets.  Up to GROUPS_CHECKED groups are compared one by one on the
 * stack; a longer list is checked by its length only (the stack is small
 * and getgroups cannot return part of a list). */
#define GROUPS_CHECKED 256

static int count_of(const unsigned int *list, int n, unsigned int value)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += list[i] == value;
    return c;
}

static int groups_are(const struct pidproc_spawn *req)
{
    unsigned int got[GROUPS_CHECKED];
    long n = syscall(SYS_getgroups, 0, NULL);
    if (n != req->n_groups)
        return 0;
    if (n == 0 || n > GROUPS_CHECKED)
        return 1;
    if (syscall(SYS_getgroups, n, got) != n)
        return 0;
    for (int i = 0; i < (int)n; i++)
        if (count_of(got, (int)n, got[i]) != count_of(req->groups, (int)n, got[i]))
            return 0;
    return 1;
}

int pidproc_child_main(void *arg)
{
    struct pidproc_child *ctx = arg;
    struct pidproc_spawn *req = ctx->req;

    /* Cloned by the keeper thread: the thread that asked wakes from our exec
     * (CLONE_CHILD_CLEARTID) before the keeper knows the clone's result. */
    if (ctx->report_pid)
        req->pid = (int)syscall(SYS_getpid);

    if (!ctx->handlers_cleared)
        reset_signal_handlers();
    /* The parent blocked every signal around clone; give the program the
     * caller's mask back, as CPython's child does first thing. */
    sigprocmask(SIG_SETMASK, ctx->old_mask, NULL);

    if (req->probe_only)
        _exit(0);

    for (int i = 0; i < req->n_keep_fds; i++)
        if (set_inheritable(req->keep_fds[i], 1) < 0)
            fail(req, PIDPROC_STEP_OTHER, errno);

    int in = req->stdin_fd, out = req->stdout_fd, err = req->stderr_fd;
    /* When a source fd is itself 0, 1 or 2 it could be overwritten by an
     * earlier dup2 (bpo-12607): move it out of the way first. */
    if (out == 0) {
        if ((out = dup(out)) < 0 || set_inheritable(out, 0) < 0)
            fail(req, PIDPROC_STEP_OTHER, errno);
    }
    while (err == 0 || err == 1) {
        if ((err = dup(err)) < 0 || set_inheritable(err, 0) < 0)
            fail(req, PIDPROC_STEP_OTHER, errno);
    }
    /* dup2 onto the same number would keep FD_CLOEXEC: clear it instead. */
    const int src[3] = {in, out, err};
    for (int target = 0; target < 3; target++) {
        if (src[target] == target) {
            if (set_inheritable(target, 1) < 0)
                fail(req, PIDPROC_STEP_OTHER, errno);
        } else if (src[target] != -1 && dup2(src[target], target) < 0) {
            fail(req, PIDPROC_STEP_OTHER, errno);
        }
    }

    if (req->cwd && chdir(req->cwd) < 0)
        fail(req, PIDPROC_STEP_CHDIR, errno);
    if (req->umask >= 0)
        umask((mode_t)req->umask);
    if (req->restore_signals) {
        signal(SIGPIPE, SIG_DFL);
        signal(SIGXFSZ, SIG_DFL);
    }
    if (req->new_session && setsid() < 0)
        fail(req, PIDPROC_STEP_OTHER, errno);
    if (req->pgid >= 0 && setpgid(0, req->pgid) < 0)
        fail(req, PIDPROC_STEP_OTHER, errno);

    /* Groups, then gid, then uid: once the uid is dropped the others can no
     * longer be changed.  Raw syscalls, see the contract above.  Each step
     * is read back (see ids_are): a drop that did not happen is a failure,
     * never a program run with the caller's privileges. */
    if (req->n_groups >= 0) {
        if (syscall(SYS_setgroups, req->n_groups, req->groups) < 0)
            fail(req, PIDPROC_STEP_OTHER, errno);
        if (!groups_are(req))
            fail(req, PIDPROC_STEP_OTHER, EPERM);
    }
    if (req->gid != -1) {
        if (syscall(SYS_setregid, (gid_t)req->gid, (gid_t)req->gid) < 0)
            fail(req, PIDPROC_STEP_OTHER, errno);
        if (!ids_are(SYS_getresgid, (unsigned int)req->gid))
            fail(req, PIDPROC_STEP_OTHER, EPERM);
    }
    if (req->uid != -1) {
        if (syscall(SYS_setreuid, (uid_t)req->uid, (uid_t)req->uid) < 0)
            fail(req, PIDPROC_STEP_OTHER, errno);
        if (!ids_are(SYS_getresuid, (unsigned int)req->uid))
            fail(req, PIDPROC_STEP_OTHER, EPERM);
    }

    /* The lifecycle options (_lifecycle.py), after the credentials: changing
     * the effective ids clears the parent-death signal (commit_creds).  Both
     * are one prctl, a plain syscall. */
    if (req->no_new_privs && syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) < 0)
        fail(req, PIDPROC_STEP_OTHER, errno);
    if (req->pdeathsig) {
        if (syscall(SYS_prctl, PR_SET_PDEATHSIG, (long)req->pdeathsig, 0L, 0L, 0L) < 0)
            fail(req, PIDPROC_STEP_OTHER, errno);
        /* The parent died between clone and the prctl: the signal it would
         * have sent will never come, so send it now.  Once set, the kernel
         * sends it (the keeper thread that cloned us exits only with the
         * process). */
        if (syscall(SYS_getppid) != req->parent_pid)
            (void)syscall(SYS_kill, syscall(SYS_getpid), req->pdeathsig);
    }

    if (req->close_fds)
        close_open_fds(req);

    /* Try each candidate as the stdlib does; report the first error that is
     * not "not there" (ENOENT/ENOTDIR), else the last one. */
    int saved = 0;
    char **envp = req->envp ? req->envp : environ;
    for (int i = 0; i < req->n_exec; i++) {
        execve(req->exec_paths[i], req->argv, envp);
        if (errno != ENOENT && errno != ENOTDIR && saved == 0)
            saved = errno;
    }
    fail(req, PIDPROC_STEP_EXEC, saved ? saved : (req->n_exec ? errno : ENOENT));
    return 255;
}
