/* The parent's side of every spawn path, before and after the child exists.
 *
 * pidproc_prepare and pidproc_reap_failed are not about clone: the
 * pidfd_spawn path (glibc makes the child) starts with the same unpacking of
 * the request and ends the same way when its child must be reaped, so they
 * live here, beside neither path, rather than in _clone.c.  Everything here
 * runs in the parent thread: ordinary C, outside the child's
 * async-signal-safety contract (_child.c).
 */
#include "_internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

void pidproc_prepare(struct pidproc_spawn *req)
{
    /* The outputs: no pidfd, no child, no failure yet (the slot is checked
     * after clone: emulators have been seen ignoring CLONE_PIDFD). */
    req->pidfd = -1;
    req->pid = 0;
    req->err_step = PIDPROC_STEP_NONE;
    req->err_errno = 0;

    char *p = req->argv_buf;
    for (int i = 0; i < req->argc; i++) {
        req->argv[i] = p;
        while (*p++) {}
    }
    req->argv[req->argc] = NULL;
    if (req->envp) {
        p = req->envp_buf;
        for (int i = 0; i < req->envc; i++) {
            req->envp[i] = p;
            while (*p++) {}
        }
        req->envp[req->envc] = NULL;
    }
    p = req->exec_buf;
    for (int i = 0; i < req->n_exec; i++) {
        req->exec_paths[i] = p;
        while (*p++) {}
    }
    req->exec_paths[req->n_exec] = NULL;
}

void pidproc_reap_failed(struct pidproc_spawn *req)
{
    int saved = errno;
    if (req->pidfd >= 0 && (req->clone3_flags & PIDPROC_CLONE_AUTOREAP)) {
        /* Never waitable: the kernel reaps it (CLONE_AUTOREAP).  Wait until
         * it is gone (the pidfd turns readable), so that nothing is left. */
        struct pollfd pfd = {req->pidfd, POLLIN, 0};
        while (poll(&pfd, 1, -1) < 0 && errno == EINTR) {}
        close(req->pidfd);
    } else if (req->pidfd >= 0) {
        siginfo_t info;
        while (waitid((idtype_t)PIDPROC_P_PIDFD, (id_t)req->pidfd, &info, WEXITED) < 0 && errno == EINTR) {}
        close(req->pidfd);
    } else {
        while (waitpid(req->pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    req->pidfd = -1;
    req->pid = 0;
    errno = saved;
}
