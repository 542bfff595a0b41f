/* The pidfd_spawn path: glibc 2.39+ does clone3(CLONE_PIDFD ...) itself.
 *
 * pidfd_spawn is looked up with dlsym at run time, so one build serves
 * glibc 2.36 (where it is absent) and 2.39+ alike.  Python only sends here
 * requests that posix_spawn can express (no umask, no uid/gid/groups, no
 * preexec_fn, stdio sources outside 0..2); see _backends.py.
 *
 * pidfd_spawn reports every failure as one errno, without saying whether
 * the clone, a file action or the exec failed, and it tries one executable
 * where the stdlib tries every PATH candidate.  So any failure here is
 * reported as PIDPROC_STEP_EXEC and Python replays the request on the next
 * path, whose child names the failing step exactly.  Nothing ran, so the
 * replay has no side effect.
 */
#include "_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <spawn.h>
#include <unistd.h>

extern char **environ;

typedef int (*pidfd_getpid_fn)(int);
typedef int (*pidfd_spawn_fn)(int *, const char *, const posix_spawn_file_actions_t *,
                              const posix_spawnattr_t *, char *const[], char *const[]);

static pidfd_spawn_fn lookup(void)
{
    static pidfd_spawn_fn fn;
    static int looked;
    if (!looked) {
        fn = (pidfd_spawn_fn)dlsym(RTLD_DEFAULT, "pidfd_spawn");
        looked = 1;
    }
    return fn;
}

int pidproc_pidfd_spawn_available(void) { return lookup() != NULL; }

const char *pidproc_glibc_version(void) { return gnu_get_libc_version(); }

static int is_kept(const struct pidproc_spawn *req, int fd)
{
    for (int i = 0; i < req->n_keep_fds; i++)
        if (req->keep_fds[i] == fd)
            return 1;
    return 0;
}

static int add_actions(const struct pidproc_spawn *req, posix_spawn_file_actions_t *fa)
{
    int rc;
    /* dup2 onto itself clears FD_CLOEXEC (Austin Group issue 411, glibc 2.29+). */
    for (int i = 0; i < req->n_keep_fds; i++)
        if ((rc = posix_spawn_file_actions_adddup2(fa, req->keep_fds[i], req->keep_fds[i])))
            return rc;
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
            /* Closing a number that is not open is not an error for glibc. */
            for (int fd = 3; fd < top; fd++)
                if (!is_kept(req, fd) && (rc = posix_spawn_file_actions_addclose(fa, fd)))
                    return rc;
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
    if (req->new_session)
        flags |= POSIX_SPAWN_SETSID;
    if (req->pgid >= 0) {
        if ((rc = posix_spawnattr_setpgroup(attr, req->pgid)))
            return rc;
        flags |= POSIX_SPAWN_SETPGROUP;
    }
    return posix_spawnattr_setflags(attr, flags);
}

/* The first candidate that exists, as the stdlib's child would reach it. */
static const char *first_candidate(const struct pidproc_spawn *req)
{
    for (int i = 0; i < req->n_exec; i++) {
        if (faccessat(AT_FDCWD, req->exec_paths[i], F_OK, AT_EACCESS) == 0)
            return req->exec_paths[i];
        if (errno != ENOENT && errno != ENOTDIR)
            return req->exec_paths[i];
    }
    return NULL;
}

int pidproc_spawn_pidfd_spawn(struct pidproc_spawn *req)
{
    pidfd_spawn_fn spawn = lookup();
    if (!spawn)
        return -ENOSYS;

    int saved_errno = errno;
    pidproc_fill_vectors(req);
    req->pidfd = -1;
    req->pid = 0;
    req->err_step = PIDPROC_STEP_NONE;
    req->err_errno = 0;

    const char *path = first_candidate(req);
    if (!path) {
        req->err_step = PIDPROC_STEP_EXEC;
        req->err_errno = ENOENT;
        errno = saved_errno;
        return 0;
    }

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc)
        return rc;
    if ((rc = posix_spawnattr_init(&attr))) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    if ((rc = add_actions(req, &fa)) == 0 && (rc = set_attrs(req, &attr)) == 0) {
        int pidfd = -1;
        rc = spawn(&pidfd, path, &fa, &attr, req->argv, req->envp ? req->envp : environ);
        if (rc == 0 && pidfd >= 0) {
            /* Present whenever pidfd_spawn is (both 2.39). */
            pidfd_getpid_fn getpid_fn = (pidfd_getpid_fn)dlsym(RTLD_DEFAULT, "pidfd_getpid");
            req->pidfd = pidfd;
            req->pid = getpid_fn ? getpid_fn(pidfd) : -1;
        } else {
            if (pidfd >= 0)
                close(pidfd);
            req->err_step = PIDPROC_STEP_EXEC;
            req->err_errno = rc ? rc : EINVAL;
            rc = 0;
        }
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    errno = saved_errno;
    return rc;
}
