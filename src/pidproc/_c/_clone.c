/* The clone3 and legacy clone spawn paths.
 *
 * Both create the child with CLONE_VM | CLONE_VFORK | CLONE_PIDFD: no page
 * tables are copied (as vfork), the parent thread sleeps until the child
 * execs or exits, and the kernel hands back a pidfd for the child in the
 * same syscall, so there is no instant at which the child exists without a
 * handle that cannot be recycled.
 *
 * The child runs on a stack from the pool in _stack.c (mmap'd once, with a
 * guard page below it, and kept for the next spawn), taken before the clone
 * and given back when the parent thread wakes, which is when the child has
 * exec'd or exited.  Not a buffer in this function's frame, as musl's
 * posix_spawn has: a thread made with threading.stack_size(32768), or a
 * main thread under a small `ulimit -s`, has no room for one.
 *
 * clone3 (kernel 5.3) needs a trampoline: with a new stack the child resumes
 * inside the syscall instruction on an empty stack, so it must not return
 * into C.  CLONE_CLEAR_SIGHAND (5.5) resets the handlers in the kernel and
 * saves the child ~64 sigaction calls.  Legacy clone (CLONE_PIDFD since 5.2)
 * goes through glibc's clone(), which switches stacks itself.
 */
#include "_internal.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#define PIDPROC_CLONE_CLEAR_SIGHAND 0x100000000ULL
#define PIDPROC_CLONE_INTO_CGROUP 0x200000000ULL
#define PIDPROC_CLONE_AUTOREAP (1ULL << 34)
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#define PIDPROC_P_PIDFD 3

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
        /* Never waitable: the kernel reaps it.  Wait until it is gone
         * (the pidfd turns readable), so that nothing of it is left. */
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

/* After a successful clone: check the pidfd slot (Go found emulators that
 * ignore CLONE_PIDFD) and reap a child that failed before exec. */
static int finish(struct pidproc_spawn *req, long pid)
{
    req->pid = (int)pid;
    if (req->err_step != PIDPROC_STEP_NONE) {
        pidproc_reap_failed(req);
        return 0;
    }
    if (req->pidfd < 0) {
        /* Not yet reaped, so the PID is still this child's: race-free. */
        long fd = syscall(__NR_pidfd_open, (pid_t)pid, 0);
        req->pidfd = fd >= 0 ? (int)fd : -1;
    }
    return 0;
}

static int not_here(int err)
{
    return err == ENOSYS || err == EPERM || err == EINVAL;
}

/* A failed clone with lifecycle options (extra clone3 flags, a cgroup) says
 * nothing about the path itself: those were probed before they were asked
 * for, so an error here is this request's (EPERM into a cgroup, EBUSY from a
 * threaded one, ...) and is returned as an errno, never as "not here". */
static int has_extras(const struct pidproc_spawn *req)
{
    return req->clone3_flags != 0 || req->into_cgroup;
}

#if defined(__x86_64__)
/* struct clone_args up to CLONE_ARGS_SIZE_VER2 (the cgroup field, 5.7). */
struct clone_args_v2 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    uint64_t set_tid, set_tid_size, cgroup;
};
#define CLONE_ARGS_SIZE_VER0 64
#define CLONE_ARGS_SIZE_VER2 88

/* Returns the child's pid or -errno in the parent; the child calls fn(arg)
 * on its new stack and exits with its result, never returning here. */
static long clone3_call(struct clone_args_v2 *ca, size_t size, int (*fn)(void *), void *arg)
{
    register long rax __asm__("rax") = __NR_clone3;
    register void *rdi __asm__("rdi") = ca;
    register long rsi __asm__("rsi") = (long)size;
    register int (*rdx)(void *) __asm__("rdx") = fn;
    register void *r8 __asm__("r8") = arg;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        /* child: rsp is the 16-byte aligned top of the new stack */
        "xor %%ebp, %%ebp\n\t"
        "mov %%r8, %%rdi\n\t"
        "call *%%rdx\n\t"
        "mov %%eax, %%edi\n\t"
        "mov $231, %%eax\n\t"   /* exit_group */
        "syscall\n\t"
        "hlt\n"
        "1:\n\t"
        : "+r"(rax)
        : "r"(rdi), "r"(rsi), "r"(rdx), "r"(r8)
        : "rcx", "r11", "memory", "cc");
    return rax;
}

/* Set once a kernel (5.3, 5.4) rejected CLONE_CLEAR_SIGHAND: a fact about
 * the kernel, so caching it is safe.  A benign race at worst retries. */
static int clear_sighand_rejected;

int pidproc_clone3_compiled(void) { return 1; }

static int clone3_spawn(struct pidproc_spawn *req, const sigset_t *child_mask)
{
    struct pidproc_stack stack;
    sigset_t all, old;
    struct pidproc_child ctx = {req, child_mask ? child_mask : &old, 0};
    int saved_errno = errno;
    int extras = has_extras(req);

    pidproc_prepare(req);
    int rc = pidproc_stack_take(&stack);
    if (rc != 0) {
        errno = saved_errno;
        return rc;   /* ENOMEM: nothing created, the caller treats it as transient */
    }

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    long pid;
    for (;;) {
        struct clone_args_v2 ca = {0};
        size_t size = CLONE_ARGS_SIZE_VER0;
        ctx.handlers_cleared = !clear_sighand_rejected;
        ca.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | req->clone3_flags |
                   (ctx.handlers_cleared ? PIDPROC_CLONE_CLEAR_SIGHAND : 0);
        ca.pidfd = (uint64_t)(uintptr_t)&req->pidfd;
        /* An autoreaped child sends no exit signal: the kernel insists. */
        ca.exit_signal = (req->clone3_flags & PIDPROC_CLONE_AUTOREAP) ? 0 : SIGCHLD;
        ca.stack = (uint64_t)(uintptr_t)stack.base;   /* clone3: base and size */
        ca.stack_size = stack.size;
        if (req->into_cgroup) {
            ca.flags |= PIDPROC_CLONE_INTO_CGROUP;
            ca.cgroup = (uint64_t)(unsigned int)req->cgroup_fd;
            size = CLONE_ARGS_SIZE_VER2;
        }
        pid = clone3_call(&ca, size, pidproc_child_main, &ctx);
        if (pid == -EINVAL && ctx.handlers_cleared && !extras) {
            clear_sighand_rejected = 1;
            continue;
        }
        break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pidproc_stack_put(&stack);   /* the child has exec'd or exited */
    errno = saved_errno;   /* the child ran on this thread's TLS */

    if (pid < 0) {
        req->pidfd = -1;
        return not_here((int)-pid) && !extras ? (int)pid : (int)-pid;
    }
    return finish(req, pid);
}

int pidproc_spawn_clone3(struct pidproc_spawn *req)
{
    if (req->via_keeper)
        return pidproc_keeper_call(clone3_spawn, req);
    return clone3_spawn(req, NULL);
}
#else
int pidproc_clone3_compiled(void) { return 0; }

int pidproc_spawn_clone3(struct pidproc_spawn *req)
{
    (void)req;
    return -ENOSYS;   /* no trampoline for this architecture: start at clone() */
}
#endif

static int clone_spawn(struct pidproc_spawn *req, const sigset_t *child_mask)
{
    struct pidproc_stack stack;
    sigset_t all, old;
    struct pidproc_child ctx = {req, child_mask ? child_mask : &old, 0};
    int saved_errno = errno;

    pidproc_prepare(req);
    if (has_extras(req))
        return EINVAL;   /* clone3 alone takes these; Python never sends them here */
    int rc = pidproc_stack_take(&stack);
    if (rc != 0) {
        errno = saved_errno;
        return rc;   /* ENOMEM: nothing created, the caller treats it as transient */
    }

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    /* glibc's clone() takes the top of the stack.  With CLONE_PIDFD the
     * kernel stores the pidfd through parent_tid. */
    int pid = clone(pidproc_child_main, stack.base + stack.size,
                    CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &ctx,
                    &req->pidfd);
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pidproc_stack_put(&stack);   /* the child has exec'd or exited */
    errno = saved_errno;

    if (pid < 0) {
        req->pidfd = -1;
        return not_here(clone_errno) ? -clone_errno : clone_errno;
    }
    return finish(req, pid);
}

int pidproc_spawn_clone(struct pidproc_spawn *req)
{
    if (req->via_keeper)
        return pidproc_keeper_call(clone_spawn, req);
    return clone_spawn(req, NULL);
}
