/* The pidfd_spawn path: glibc 2.39+ does clone3(CLONE_PIDFD ...) itself.
 *
 * pidfd_spawn and pidfd_getpid are looked up with dlsym at run time, so one
 * build serves glibc 2.36 (where they are absent) and 2.39+ alike.  Python
 * only sends here requests that posix_spawn can express (no umask, no
 * uid/gid/groups, no preexec_fn, stdio sources outside 0..2); see
 * _backends.py.  Everything here runs in the parent: glibc's own child does
 * the file actions and the exec (sysdeps/unix/sysv/linux/spawni.c).
 *
 * pidfd_spawn reports every failure as one errno, without saying whether
 * the clone, a file action or the exec failed, and it execs one file where
 * the stdlib tries every PATH candidate.  So whenever this path cannot do
 * the request exactly as the stdlib would, nothing is run and the request
 * is answered with err_step = PIDPROC_STEP_EXEC: Python replays it on the
 * next path, whose child names the failing step and errno exactly.  That
 * covers a failed spawn (the child did not get as far as exec, so nothing
 * ran) and a file action glibc refuses to record (EBADF for a number at or
 * above RLIMIT_NOFILE, where the stdlib says EMFILE).
 *
 * When the exec fails, glibc reaps the child before returning; 2.39.0 also
 * leaked its pidfd (BZ 31695, fixed in 2.40): _backends.py does not use this
 * path on 2.39.
 *
 * pidfd_spawn returns the pidfd and not the pid, which pidfd_getpid then
 * reads from /proc/self/fdinfo; once the child has been reaped that says -1
 * and the number is lost for good.  So the path is not taken while SIGCHLD is
 * ignored (the kernel reaps at exit, which can come before the question) or
 * handled (a handler that reaps with waitpid(-1), as asyncio's old child
 * watchers did): the next path learns the pid from clone itself.  What is
 * left is a thread blocked in wait()/waitpid(-1) reaping a child that exits
 * within the few microseconds between the spawn and the question, see
 * PIDPROC_UNNAMED_PID.
 */
#include "_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <limits.h>
#include <spawn.h>
#include <string.h>
#include <unistd.h>

/* The pid reported for a child that ran, exited and was reaped by someone
 * else before it could be named.  The program has run: replaying it on
 * another path would run it twice.  The pidfd still answers for it (its
 * exit status included, Linux 6.15+); the number is above any pid_max, so
 * kill() or waitpid() on it can only fail (ESRCH/ECHILD), never reach
 * another process as -1 (everything) or 0 (our process group) would. */
#define PIDPROC_UNNAMED_PID INT_MAX

extern char **environ;

typedef int (*pidfd_spawn_fn)(int *, const char *, const posix_spawn_file_actions_t *,
                              const posix_spawnattr_t *, char *const[], char *const[]);

/* glibc's pidfd_spawn, or NULL (pidfd_getpid, the other half of the path,
 * comes from the toolkit, which offers it too). */
static pidfd_spawn_fn spawn_fn(void)
{
    static struct pidproc_glibc_fn spawn = {"pidfd_spawn", NULL, 0};
    return (pidfd_spawn_fn)pidproc_glibc_fn(&spawn);
}

static int child_pid(int pidfd, int *err);

/* pidfd_getpid reads /proc/self/fdinfo, so it needs a free fd itself: out
 * of them it fails for now, not because there is no /proc.  glibc answers
 * EBADF for every failure, so child_pid asks the fd table itself. */
static int out_of_fds(int err) { return err == EMFILE || err == ENFILE; }

/* Can a child be named here?  Tried on a pidfd of this process: 1 yes,
 * -ENOENT no, 0 this attempt says nothing (no fd was free: ask again). */
static int try_naming(void)
{
    long fd = syscall(__NR_pidfd_open, getpid(), 0);
    if (fd < 0)
        return 0;
    int err;
    int ok = child_pid((int)fd, &err) == getpid();
    close((int)fd);
    if (!ok && out_of_fds(err))
        return 0;
    return ok ? 1 : -ENOENT;
}

/* 1: usable.  0: this glibc has no pidfd_spawn/pidfd_getpid (both 2.39).
 * -ENOENT: a child could not be named here (no /proc for pidfd_getpid and
 * no PIDFD_GET_INFO, before Linux 6.13), seen on a pidfd of this process. */
int pidproc_pidfd_spawn_available(void)
{
    static volatile int named; /* 0 not known yet, 1 yes, -ENOENT no */
    if (spawn_fn() == NULL || pidproc_glibc_pidfd_getpid() == NULL)
        return 0;
    if (named == 0) {
        int saved = errno;
        int known = try_naming();
        errno = saved;
        if (known == 0)
            return 1; /* not known yet: ask again next time */
        named = known;
    }
    return named;
}

const char *pidproc_glibc_version(void) { return gnu_get_libc_version(); }

/* Set once the kernel answered PIDFD_GET_INFO with ENOTTY (before 6.13): a
 * fact about the kernel.  A benign race at worst asks once more. */
static int get_info_missing;

/* The child's pid.  The kernel answers itself since 6.13, in one syscall and
 * without an fd; before, pidfd_getpid reads /proc/self/fdinfo, which needs a
 * free fd and a /proc (a chroot or a sandbox may lack it).  -1 when neither
 * can; then *err is EMFILE/ENFILE if the fd table had no room, else 0. */
static int child_pid(int pidfd, int *err)
{
    int saved = errno;
    int pid = -1;
    *err = 0;
    if (!get_info_missing) {
        struct pidproc_pidfd_info info;
        memset(&info, 0, sizeof info);
        info.mask = PIDPROC_PIDFD_INFO_PID;
        if (ioctl(pidfd, PIDPROC_PIDFD_GET_INFO, &info) == 0) {
            if ((info.mask & PIDPROC_PIDFD_INFO_PID) && info.pid > 0)
                pid = (int)info.pid;
        } else if (errno == ENOTTY) {
            get_info_missing = 1;
        }
    }
    if (pid <= 0) {
        pid = pidproc_glibc_pidfd_getpid()(pidfd);
        if (pid <= 0) {
            pid = -1;
            int spare = fcntl(pidfd, F_DUPFD_CLOEXEC, 0);
            if (spare >= 0)
                close(spare);
            else
                *err = errno;
        }
    }
    errno = saved;
    return pid;
}

/* Before 6.13 naming the child opens /proc/self/fdinfo/N: one more fd than
 * the pidfd itself.  Hold one free until the spawn is done, so that a
 * table with exactly one free slot does not give it to the pidfd and then
 * leave the child nameless (and the spawn undone).  -1 with nothing held on
 * 6.13+, or when no fd is free at all (then the caller replays the request
 * on the next path, which needs no fd: it holds such a child by its pid). */
static int hold_fd_for_naming(int *held)
{
    *held = -1;
    if (!get_info_missing)
        return 0;
    int fd = open("/", O_PATH | O_CLOEXEC);
    if (fd < 0)
        return errno;
    *held = fd;
    return 0;
}

/* The stdlib's child tries each candidate in turn and runs the first one
 * execve accepts.  Pick the first one that exists and is executable, seen
 * from the directory the child will exec in (a relative path is resolved
 * after the chdir).  NULL: none qualifies, and the stdlib's child will say
 * why (the replay on the next path does exactly that). */
static const char *first_candidate(const struct pidproc_spawn *req)
{
    int dir = AT_FDCWD;
    if (req->cwd) {
        dir = open(req->cwd, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0)
            return NULL;
    }
    const char *found = NULL;
    for (int i = 0; i < req->n_exec && !found; i++)
        if (faccessat(dir, req->exec_paths[i], X_OK, AT_EACCESS) == 0)
            found = req->exec_paths[i];
    if (dir >= 0)
        close(dir);
    return found;
}

/* In the order the stdlib's child does them: pass_fds made inheritable,
 * stdio, cwd, then the other fds closed. */
static int add_actions(const struct pidproc_spawn *req, posix_spawn_file_actions_t *fa)
{
    int rc;
    /* dup2 onto itself clears FD_CLOEXEC (Austin Group issue 411, glibc 2.29+). */
    for (int i = 0; i < req->n_keep_fds; i++)
        if ((rc = posix_spawn_file_actions_adddup2(fa, req->keep_fds[i], req->keep_fds[i])))
            return rc;
    /* Python sends only sources that are -1, the target itself, or above 2,
     * so no dup2 here can overwrite a later one's source. */
    const int src[3] = {req->stdin_fd, req->stdout_fd, req->stderr_fd};
    for (int target = 0; target < 3; target++)
        if (src[target] != -1 && (rc = posix_spawn_file_actions_adddup2(fa, src[target], target)))
            return rc;
    if (req->cwd && (rc = posix_spawn_file_actions_addchdir_np(fa, req->cwd)))
        return rc;
    if (req->close_fds) {
        int first_free = 3;
        if (req->n_keep_fds > 0) {
            int top = req->keep_fds[req->n_keep_fds - 1];
            /* glibc's child ignores EBADF from a close action, so numbers
             * that are not open cost nothing but the action itself. */
            for (int fd = 3; fd < top; fd++)
                if (!pidproc_is_kept(req, fd) && (rc = posix_spawn_file_actions_addclose(fa, fd)))
                    return rc;
            if (top >= first_free)
                first_free = top + 1;
        }
        if ((rc = posix_spawn_file_actions_addclosefrom_np(fa, first_free)))
            return rc;
    }
    return 0;
}

static int set_attrs(const struct pidproc_spawn *req, posix_spawnattr_t *attr)
{
    short flags = 0;
    int rc;
    if (req->restore_signals) {
        sigset_t def;
        sigemptyset(&def);
        sigaddset(&def, SIGPIPE);
        sigaddset(&def, SIGXFSZ);
        if ((rc = posix_spawnattr_setsigdefault(attr, &def)))
            return rc;
        flags |= POSIX_SPAWN_SETSIGDEF;
    }
    /* glibc's child calls setsid() before setpgid(), as the stdlib's does. */
    if (req->new_session)
        flags |= POSIX_SPAWN_SETSID;
    if (req->pgid >= 0) {
        if ((rc = posix_spawnattr_setpgroup(attr, req->pgid)))
            return rc;
        flags |= POSIX_SPAWN_SETPGROUP;
    }
    return posix_spawnattr_setflags(attr, flags);
}

/* SIGCHLD ignored or SA_NOCLDWAIT (the kernel reaps at exit), or handled
 * (the handler may reap): a child may be gone before it has been named. */
static int children_may_be_reaped_by_others(void)
{
    struct sigaction sa;
    if (sigaction(SIGCHLD, NULL, &sa) != 0)
        return 0;
    return sa.sa_handler != SIG_DFL || (sa.sa_flags & SA_NOCLDWAIT);
}

/* Nothing ran: let the next path do the request and report exactly. */
static int replay(struct pidproc_spawn *req, int err)
{
    req->err_step = PIDPROC_STEP_EXEC;
    req->err_errno = err;
    return 0;
}

/* The child exists and its pidfd is ours: name it (req->pid), or end it. */
static int name_child(struct pidproc_spawn *req, int pidfd)
{
    int err;
    int pid = child_pid(pidfd, &err);
    req->pidfd = pidfd;
    if (pid > 0) {
        req->pid = pid;
        return 0;
    }
    if (syscall(__NR_pidfd_send_signal, pidfd, 0, NULL, 0) != 0 && errno == ESRCH) {
        /* It ran, exited and was reaped by a foreign waitpid(-1). */
        req->pid = PIDPROC_UNNAMED_PID;
        return 0;
    }
    /* Alive and nameless: /proc went away after the probe in
     * pidproc_pidfd_spawn_available() on a kernel before 6.13.  Popen.pid is
     * not optional: end it, and have Python take the next path from now on. */
    (void)syscall(__NR_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    pidproc_reap_failed(req);
    /* Out of fds (another thread took the one held for naming): transient,
     * the stdlib then says what it says; else the path is unusable from now
     * on. */
    return out_of_fds(err) ? err : -ENOENT;
}

/* With the file actions and attributes initialised: fill them in, spawn,
 * name the child. */
static int spawn_with(struct pidproc_spawn *req, const char *path,
                      posix_spawn_file_actions_t *fa, posix_spawnattr_t *attr)
{
    int held = -1;
    int rc;
    if ((rc = add_actions(req, fa)) != 0 || (rc = set_attrs(req, attr)) != 0
        || (rc = hold_fd_for_naming(&held)) != 0)
        return replay(req, rc);
    int pidfd = -1;
    rc = spawn_fn()(&pidfd, path, fa, attr, req->argv, req->envp ? req->envp : environ);
    if (held >= 0)
        close(held);
    if (rc != 0 || pidfd < 0) {
        /* glibc has reaped the child (if there was one) and, from 2.40 on,
         * closed its pidfd; it never hands the pidfd out on failure. */
        return replay(req, rc ? rc : EINVAL);
    }
    return name_child(req, pidfd);
}

/* The whole path once the request is unpacked; errno is the caller's
 * business (pidproc_spawn_pidfd_spawn restores it on every exit). */
static int spawn_prepared(struct pidproc_spawn *req)
{
    if (children_may_be_reaped_by_others())
        return replay(req, ECHILD); /* the next path learns the pid from clone itself */
    const char *path = first_candidate(req);
    if (!path)
        return replay(req, ENOENT);

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc)
        return rc;
    if ((rc = posix_spawnattr_init(&attr)) == 0) {
        rc = spawn_with(req, path, &fa, &attr);
        posix_spawnattr_destroy(&attr);
    }
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

int pidproc_spawn_pidfd_spawn(struct pidproc_spawn *req)
{
    int available = pidproc_pidfd_spawn_available();
    if (available <= 0)
        return available ? available : -ENOSYS;

    int saved_errno = errno;
    pidproc_prepare(req);
    int rc = spawn_prepared(req);
    errno = saved_errno;
    return rc;
}
