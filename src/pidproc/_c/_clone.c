/* The clone3 and legacy clone spawn paths.
 *
 * Both create the child with CLONE_VM | CLONE_VFORK | CLONE_PIDFD: no page
 * tables are copied (as vfork), the parent thread sleeps until the child
 * execs or exits, and the kernel hands back a pidfd for the child in the
 * same syscall, so there is no instant at which the child exists without a
 * handle that cannot be recycled.
 *
 * A spawn the keeper thread makes for another thread (die_with_parent, see
 * _lifecycle.c) swaps CLONE_VFORK for CLONE_CHILD_CLEARTID: the thread
 * that asked is the one that sleeps until the exec, on a word the kernel
 * zeroes and wakes from the child's execve or exit, and the keeper returns
 * from the clone at once.  That is one wake-up per spawn, as without the
 * keeper; a keeper asleep in CLONE_VFORK that then woke the asking thread
 * made two, the second often of an idle CPU (README.md, "What it costs").
 *
 * The child runs on a stack from the pool in _stack.c (mmap'd once, with a
 * guard page below it, and kept for the next spawn), taken before the clone
 * and given back when the parent thread (or the asking thread) wakes, which
 * is when the child has exec'd or exited.  Not a buffer in this function's
 * frame, as musl's posix_spawn has: a thread made with
 * threading.stack_size(32768), or a main thread under a small `ulimit -s`,
 * has no room for one.
 *
 * clone3 (kernel 5.3) needs a trampoline: with a new stack the child resumes
 * inside the syscall instruction on an empty stack, so it must not return
 * into C.  There is one for x86_64 and one for aarch64; other CPUs start
 * at clone.  CLONE_CLEAR_SIGHAND (5.5) resets the handlers in the kernel and
 * saves the child ~64 sigaction calls.  Legacy clone (CLONE_PIDFD since 5.2)
 * goes through glibc's clone(), which switches stacks itself.
 */
#include "_internal.h"

#include <errno.h>
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
#ifndef __NR_clone3
#define __NR_clone3 435
#endif


/* Before the clone: unpack the request, take a stack, block every signal
 * (no handler may run in the child before the handlers are reset).  0, or an
 * errno (ENOMEM) with nothing taken, errno as the caller had it.  h: NULL
 * when this thread asked; the keeper passes the asking thread's handover
 * (its signal mask is the one the child restores, and the child tells it
 * the pid, see _internal.h). */
static int begin(struct pidproc_spawn *req, struct pidproc_clone_frame *f, const struct pidproc_handover *h)
{
    sigset_t all;
    f->saved_errno = errno;
    f->ctx = (struct pidproc_child){req, h ? h->child_mask : &f->old_mask, 0, h != NULL};
    pidproc_prepare(req);
    int rc = pidproc_stack_take(&f->stack);
    if (rc != 0) {
        errno = f->saved_errno;
        return rc;   /* ENOMEM: nothing created, the caller treats it as transient */
    }
    /* The keeper thread blocks every signal all its life. */
    if (!h) {
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &f->old_mask);
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

/* The request's half of the end: pid is the clone's result, err its errno
 * when pid < 0.  Checks the pidfd slot (Go found emulators that ignore
 * CLONE_PIDFD) and reaps a child that failed before exec. */
static int finish(struct pidproc_spawn *req, long pid, int err)
{
    if (pid < 0) {
        req->pidfd = -1;
        return not_here(err) && !has_extras(req) ? -err : err;
    }
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

int pidproc_clone_finish(struct pidproc_spawn *req, struct pidproc_clone_frame *f)
{
    pidproc_stack_put(&f->stack);
    if (req->pid == 0 && req->pidfd >= 0) {
        /* Killed (SIGKILL) before its first instruction stored the pid: it
         * is dying, and waitid names it without reaping it. */
        siginfo_t info = {0};
        int saved = errno;
        while (waitid((idtype_t)PIDPROC_P_PIDFD, (id_t)req->pidfd, &info, WEXITED | WNOWAIT) < 0
               && errno == EINTR) {}
        errno = saved;
        req->pid = info.si_pid;
    }
    if (req->pid <= 0) {
        /* No pid: no pidfd either (an emulator that ignores CLONE_PIDFD),
         * or the child was reaped already (SIGCHLD ignored).  Never hand
         * back pid 0, which signals would take for our own process group.
         * Transient, as a failed clone is. */
        if (req->pidfd >= 0)
            close(req->pidfd);
        req->pidfd = -1;
        req->pid = 0;
        return EAGAIN;
    }
    return finish(req, req->pid, 0);
}

/* After the clone.  The calling thread (no h) runs again when the child
 * has exec'd or exited (CLONE_VFORK), so the stack is free.  The keeper (h)
 * returns at once and finishes only a failed clone: a child made runs on
 * the frame's stack and reads its ctx, both the asking thread's from now
 * on, and shares the keeper's TLS, so errno is not touched either. */
static int end(struct pidproc_spawn *req, struct pidproc_clone_frame *f, long pid, int err,
               const struct pidproc_handover *h)
{
    if (h && pid >= 0)
        return 0;
    if (!h)
        pthread_sigmask(SIG_SETMASK, &f->old_mask, NULL);
    pidproc_stack_put(&f->stack);
    errno = f->saved_errno;
    return finish(req, pid, err);
}

#if defined(__x86_64__) || defined(__aarch64__)
/* struct clone_args up to CLONE_ARGS_SIZE_VER2 (the cgroup field, 5.7); the
 * same struct and syscall number (435) on both CPUs: clone3 is generic. */
struct clone_args_v2 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    uint64_t set_tid, set_tid_size, cgroup;
};
#define CLONE_ARGS_SIZE_VER0 64
#define CLONE_ARGS_SIZE_VER2 88

/* Returns the child's pid or -errno in the parent; the child calls fn(arg)
 * on its new stack and exits with its result, never returning here. */
#if defined(__x86_64__)
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
#else
static long clone3_call(struct clone_args_v2 *ca, size_t size, int (*fn)(void *), void *arg)
{
    /* The kernel preserves every register but x0 across svc, in the child
     * too, so fn and arg are still in x2 and x3 there. */
    register long x8 __asm__("x8") = __NR_clone3;
    register long x0 __asm__("x0") = (long)ca;
    register long x1 __asm__("x1") = (long)size;
    register int (*x2)(void *) __asm__("x2") = fn;
    register void *x3 __asm__("x3") = arg;
    __asm__ volatile(
        "svc #0\n\t"
        "cbnz x0, 1f\n\t"
        /* child: sp is the 16-byte aligned top of the new stack; a zero
         * frame pointer and link register end any unwinder's walk here */
        "mov x29, xzr\n\t"
        "mov x30, xzr\n\t"
        "mov x0, x3\n\t"
        "blr x2\n\t"
        "mov x8, #94\n\t"   /* exit_group, the status in x0 */
        "svc #0\n\t"
        "brk #0\n"
        "1:\n\t"
        : "+r"(x0)
        : "r"(x8), "r"(x1), "r"(x2), "r"(x3)
        : "memory", "cc");
    return x0;
}
#endif

/* Set once a kernel (5.3, 5.4) rejected CLONE_CLEAR_SIGHAND: a fact about
 * the kernel, so caching it is safe.  A benign race at worst retries. */
static int clear_sighand_rejected;

int pidproc_clone3_compiled(void) { return 1; }

static int clone3_spawn(struct pidproc_spawn *req, const struct pidproc_handover *h)
{
    struct pidproc_clone_frame own, *f = h ? h->frame : &own;
    int rc = begin(req, f, h);
    if (rc != 0)
        return rc;
    long pid;
    for (;;) {
        struct clone_args_v2 ca = {0};
        size_t size = CLONE_ARGS_SIZE_VER0;
        f->ctx.handlers_cleared = !clear_sighand_rejected;
        ca.flags = CLONE_VM | (h ? 0 : CLONE_VFORK) | CLONE_PIDFD | req->clone3_flags |
                   (f->ctx.handlers_cleared ? PIDPROC_CLONE_CLEAR_SIGHAND : 0);
        ca.pidfd = (uint64_t)(uintptr_t)&req->pidfd;
        if (h) {
            ca.flags |= CLONE_CHILD_CLEARTID;
            ca.child_tid = (uint64_t)(uintptr_t)h->exec_word;
        }
        /* An autoreaped child sends no exit signal: the kernel insists. */
        ca.exit_signal = (req->clone3_flags & PIDPROC_CLONE_AUTOREAP) ? 0 : SIGCHLD;
        ca.stack = (uint64_t)(uintptr_t)f->stack.base;   /* clone3: base and size */
        ca.stack_size = f->stack.size;
        if (req->into_cgroup) {
            ca.flags |= PIDPROC_CLONE_INTO_CGROUP;
            ca.cgroup = (uint64_t)(unsigned int)req->cgroup_fd;
            size = CLONE_ARGS_SIZE_VER2;
        }
        pid = clone3_call(&ca, size, pidproc_child_main, &f->ctx);
        /* With lifecycle flags an EINVAL may be theirs: the retry without
         * CLONE_CLEAR_SIGHAND is for plain requests only (see has_extras). */
        if (pid == -EINVAL && f->ctx.handlers_cleared && !has_extras(req)) {
            clear_sighand_rejected = 1;
            continue;
        }
        break;
    }
    return end(req, f, pid, pid < 0 ? (int)-pid : 0, h);
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

static int clone_spawn(struct pidproc_spawn *req, const struct pidproc_handover *h)
{
    struct pidproc_clone_frame own, *f = h ? h->frame : &own;
    if (has_extras(req)) {
        pidproc_prepare(req);
        return EINVAL;   /* clone3 alone takes these; Python never sends them here */
    }
    int rc = begin(req, f, h);
    if (rc != 0)
        return rc;
    /* glibc's clone() takes the top of the stack.  With CLONE_PIDFD the
     * kernel stores the pidfd through parent_tid; tls is unused. */
    int pid = clone(pidproc_child_main, f->stack.base + f->stack.size,
                    CLONE_VM | CLONE_PIDFD | SIGCHLD | (h ? CLONE_CHILD_CLEARTID : CLONE_VFORK),
                    &f->ctx, &req->pidfd, NULL, h ? h->exec_word : NULL);
    return end(req, f, pid, pid < 0 ? errno : 0, h);
}

int pidproc_spawn_clone(struct pidproc_spawn *req)
{
    if (req->via_keeper)
        return pidproc_keeper_call(clone_spawn, req);
    return clone_spawn(req, NULL);
}
